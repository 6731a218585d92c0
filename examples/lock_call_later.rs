//! S2.22 (seed 002): a Lock released by a `call_later` callback.
//!
//! ```python
//! lock = asyncio.Lock(); await lock.acquire(); print('线程锁已上锁')
//! loop.call_later(0.5, functools.partial(unlock, lock))
//! await asyncio.wait([test('任务1', lock), test('任务2', lock)])
//! ```

use tulip::{Lock, ReturnWhen};

fn unlock(lock: &Lock) {
    lock.release().expect("the lock is held");
    println!("线程锁已释放");
}

async fn test(name: &'static str, lock: Lock) -> tulip::Result<()> {
    println!("{name}等待线程释放");
    lock.acquire().await?.forget(); // asyncio style: acquire() ... release()
    println!("{name}线程锁上锁");
    lock.release()?;
    println!("{name}线程锁释放");
    Ok(())
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    let l = lp.clone();
    lp.run_until_complete(async move {
        let lock = Lock::new();
        lock.acquire().await?.forget();
        println!("线程锁已上锁");
        let held = lock.clone();
        let _ = l.call_later(0.5, move || unlock(&held))?;
        let tasks = vec![test("任务1", lock.clone()), test("任务2", lock.clone())];
        tulip::wait(tasks, None, ReturnWhen::AllCompleted).await?;
        Ok(())
    })?;
    lp.close()
}
