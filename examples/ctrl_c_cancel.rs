//! S2.8 (seed 002, "取消协程任务"): Ctrl-C cancels every task, then `stop()`,
//! `run_forever()` (one more iteration, so the cancellations are
//! delivered) and `close()`.
//!
//! Python turns SIGINT into `KeyboardInterrupt` inside
//! `run_until_complete`. tulip's analogue is [`tulip::interrupt`] called from
//! a SIGINT handler on the loop: `run_until_complete` then returns
//! `Error::Interrupted` and the loop stays usable (L7).
//!
//! ```python
//! async def get_time_sleep(t):
//!     print('开始运行，等待:{}s'.format(t))
//!     await asyncio.sleep(t)
//!     print('运行结束')
//!
//! tasks = [get_time_sleep(1), get_time_sleep(2), get_time_sleep(3)]
//! try:
//!     loop.run_until_complete(asyncio.wait(tasks))
//! except KeyboardInterrupt:
//!     all_tasks = asyncio.Task.all_tasks()
//!     for task in all_tasks:
//!         print('开始取消协程{}'.format(task))
//!         task.cancel()
//!     loop.stop()
//!     loop.run_forever()
//! finally:
//!     loop.close()
//! ```
//!
//! Press Ctrl-C after the first "运行结束" (the tests send SIGINT then).

use tulip::{Error, EventLoop};

async fn get_time_sleep(t: u64) -> tulip::Result<()> {
    println!("开始运行，等待:{t}s");
    tulip::sleep(t as f64).await?;
    println!("运行结束");
    Ok(())
}

fn run(lp: &EventLoop) -> tulip::Result<()> {
    // KeyboardInterrupt: Ctrl-C interrupts the run at once.
    lp.add_signal_handler(libc::SIGINT, || tulip::interrupt())?;
    let tasks = [1, 2, 3]
        .map(|t| lp.create_task(get_time_sleep(t)))
        .into_iter()
        .collect::<tulip::Result<Vec<_>>>()?;
    // asyncio.wait(tasks): a task that waits on one future, resolved when
    // all of them are done (so cancelling it cancels that future).
    let all_done = lp.create_future::<()>();
    let left = std::rc::Rc::new(std::cell::Cell::new(tasks.len()));
    for t in &tasks {
        let (left, all_done) = (left.clone(), all_done.clone());
        t.add_done_callback(move |_| {
            left.set(left.get() - 1);
            if left.get() == 0 && !all_done.done() {
                let _ = all_done.set_result(());
            }
        });
    }
    let res = lp.run_until_complete(all_done);
    match res {
        Err(Error::Interrupted) => {
            // 当检测到键盘输入 ctrl c 的时候
            for task in lp.all_tasks() {
                println!("开始取消协程{task:?}");
                task.cancel();
            }
            lp.stop();
            lp.run_forever()?;
            Ok(())
        }
        other => other,
    }
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    let res = run(&lp);
    lp.close()?; // finally
    res
}
