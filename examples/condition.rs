//! S2.24 (seed 002): Condition — `notify(n)` from a producer, then
//! `notify_all` from a second one.
//!
//! ```python
//! async def consumer(cond, name, second):
//!     await asyncio.sleep(second)
//!     async with cond:
//!         print('{}: 正在等待'.format(name)); await cond.wait(); print('{}: 得到响应'.format(name))
//! async def prodecer(cond):
//!     print(f'producer准备sleep 2秒'); await asyncio.sleep(2)
//!     for n in range(1, 3):
//!         async with cond: print('生产者 {} 号'.format(n)); cond.notify(n=n)
//!         await asyncio.sleep(0.1)
//! ```

use tulip::{Condition, ReturnWhen};

async fn consumer(cond: Condition, name: &'static str, second: f64) -> tulip::Result<()> {
    tulip::sleep(second).await?;
    let _g = cond.acquire().await?;
    println!("{name}: 正在等待");
    cond.wait().await?;
    println!("{name}: 得到响应");
    Ok(())
}

async fn producer(cond: Condition) -> tulip::Result<()> {
    println!("producer准备sleep 2秒");
    tulip::sleep(2.0).await?;
    for n in 1..3 {
        {
            let _g = cond.acquire().await?;
            println!("生产者 {n} 号");
            cond.notify(n)?;
        }
        tulip::sleep(0.1).await?;
    }
    Ok(())
}

async fn producer2(cond: Condition) -> tulip::Result<()> {
    println!("producer2准备sleep 2秒");
    tulip::sleep(2.0).await?;
    let _g = cond.acquire().await?;
    println!("释放信号量，通知所有消费者");
    cond.notify_all()
}

fn consumers(cond: &Condition) -> Vec<impl std::future::Future<Output = tulip::Result<()>>> {
    ["c1", "c2"]
        .into_iter()
        .enumerate()
        .map(|(index, name)| consumer(cond.clone(), name, index as f64))
        .collect()
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        let condition = Condition::new();
        let task = tulip::create_task(producer(condition.clone()))?;
        tulip::wait(consumers(&condition), None, ReturnWhen::AllCompleted).await?;
        task.cancel();
        println!("---分割线---");
        let task = tulip::create_task(producer2(condition.clone()))?;
        tulip::wait(consumers(&condition), None, ReturnWhen::AllCompleted).await?;
        task.cancel();
        Ok(())
    })
}
