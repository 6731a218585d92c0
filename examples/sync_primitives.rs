//! S3.26 (seed 003): Lock, Event, Condition, Semaphore and Barrier workers,
//! one small program each (2 + 2 + 1 + 2 + 0 s).

use tulip::{Barrier, Condition, Event, Lock, Result, Semaphore};

async fn lock_worker(lock: Lock, name: &'static str) -> Result<()> {
    let _g = lock.acquire().await?; // async with lock:
    println!("{name} 获得了锁");
    tulip::sleep(1.0).await?;
    println!("{name} 释放了锁");
    Ok(())
}

async fn waiter(event: Event) -> Result<()> {
    println!("等待事件设置...");
    event.wait().await?;
    println!("事件已设置!");
    Ok(())
}

async fn consumer(condition: Condition) -> Result<()> {
    let _g = condition.acquire().await?;
    println!("等待条件满足...");
    condition.wait().await?;
    println!("条件满足,开始消费数据");
    Ok(())
}

async fn producer(condition: Condition) -> Result<()> {
    tulip::sleep(1.0).await?;
    let _g = condition.acquire().await?;
    println!("条件已满足,通知消费者");
    condition.notify(1)
}

async fn sem_worker(sem: Semaphore, name: &'static str) -> Result<()> {
    let _p = sem.acquire().await?;
    println!("{name} 获得了访问权限");
    tulip::sleep(1.0).await?;
    println!("{name} 释放了访问权限");
    Ok(())
}

async fn barrier_worker(barrier: Barrier, name: &'static str) -> Result<()> {
    println!("{name} 到达屏障");
    barrier.wait().await?;
    println!("{name} 跨过屏障");
    Ok(())
}

fn main() -> Result<()> {
    println!("== Lock");
    tulip::run(async {
        let lock = Lock::new();
        tulip::gather(vec![
            lock_worker(lock.clone(), "Worker 1"),
            lock_worker(lock.clone(), "Worker 2"),
        ])
        .await?;
        Ok(())
    })?;
    println!("== Event");
    tulip::run(async {
        let event = Event::new();
        let _w = tulip::create_task(waiter(event.clone()))?;
        tulip::sleep(2.0).await?;
        println!("设置事件");
        event.set();
        Ok(())
    })?;
    println!("== Condition");
    tulip::run(async {
        let condition = Condition::new();
        tulip::gather!(consumer(condition.clone()), producer(condition.clone())).await?;
        Ok(())
    })?;
    println!("== Semaphore");
    tulip::run(async {
        let sem = Semaphore::new(2);
        let workers = ["Worker 1", "Worker 2", "Worker 3"].map(|n| sem_worker(sem.clone(), n));
        tulip::gather(workers).await?;
        Ok(())
    })?;
    println!("== Barrier");
    tulip::run(async {
        let barrier = Barrier::new(3);
        let workers =
            ["Worker 1", "Worker 2", "Worker 3"].map(|n| barrier_worker(barrier.clone(), n));
        tulip::gather(workers).await?;
        Ok(())
    })
}
