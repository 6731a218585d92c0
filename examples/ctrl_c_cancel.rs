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
//! Then the pending tasks are the `wait` (Task-1) and the 2 s and 3 s
//! sleepers (Task-3, Task-4), as in asyncio; a task prints without its
//! coroutine and source line, which a Rust future does not carry.

use tulip::{Error, EventLoop, ReturnWhen};

async fn get_time_sleep(t: u64) -> tulip::Result<()> {
    println!("开始运行，等待:{t}s");
    tulip::sleep(t as f64).await?;
    println!("运行结束");
    Ok(())
}

fn run(lp: &EventLoop) -> tulip::Result<()> {
    // KeyboardInterrupt: Ctrl-C interrupts the run at once.
    lp.add_signal_handler(libc::SIGINT, || tulip::interrupt())?;
    let tasks = vec![get_time_sleep(1), get_time_sleep(2), get_time_sleep(3)];
    // run_until_complete(asyncio.wait(tasks)): the wait becomes Task-1,
    // and it wraps the three coroutines in Task-2..4.
    let res = lp.run_until_complete(tulip::wait(tasks, None, ReturnWhen::AllCompleted));
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
        other => other.map(drop),
    }
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    let res = run(&lp);
    lp.close()?; // finally
    res
}
