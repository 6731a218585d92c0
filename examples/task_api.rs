//! S3.23 (seed 003, "Task 对象"): the Task API, one method after another —
//! `get_name`/`set_name`, `add_done_callback`, `done`, `result`,
//! `exception`, `cancel`, `cancelled`, `get_loop`.
//!
//! The seed lists the methods with one-line snippets (`if task.done():
//! print("Task is complete.")`, `def on_task_done(task): print("Task
//! completed!")`, ...). This port strings them into one program that uses
//! each snippet as written:
//!
//! ```python
//! async def work(x):
//!     await asyncio.sleep(0.5)
//!     if x < 0:
//!         raise ValueError("negative input")
//!     return x * 2
//!
//! def on_task_done(task):
//!     print("Task completed!")
//!
//! async def main():
//!     task = asyncio.create_task(work(21))
//!     print(f"Task name: {task.get_name()}")
//!     task.set_name("doubler")
//!     print(f"Renamed to: {task.get_name()}")
//!     task.add_done_callback(on_task_done)
//!     await task
//!     if task.done():
//!         print("Task is complete.")
//!     print(f"Result: {task.result()}")
//!
//!     failing = asyncio.create_task(work(-1))
//!     await asyncio.wait([failing])
//!     if failing.done() and failing.exception():
//!         print(f"Task raised an exception: {failing.exception()}")
//!
//!     slow = asyncio.create_task(asyncio.sleep(10))
//!     await asyncio.sleep(0.1)
//!     slow.cancel()                     # try to cancel the task
//!     try:
//!         await slow
//!     except asyncio.CancelledError:
//!         pass
//!     if slow.cancelled():
//!         print("Task was cancelled.")
//!
//!     loop = task.get_loop()
//!     print(f"Task loop: {loop}")
//!
//! asyncio.run(main())
//! ```
//!
//! ```text
//! Task name: Task-2
//! Renamed to: doubler
//! Task completed!
//! Task is complete.
//! Result: 42
//! Task raised an exception: negative input
//! Task was cancelled.
//! Task loop: <EventLoop running=True closed=False debug=False>
//! ```

use tulip::{EventLoop, Task};

async fn work(x: i64) -> tulip::Result<i64> {
    tulip::sleep(0.5).await?;
    if x < 0 {
        return Err(tulip::Error::InvalidArgument("negative input".into()));
    }
    Ok(x * 2)
}

fn on_task_done(_task: &Task<i64>) {
    println!("Task completed!");
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The loop as asyncio's repr shows it.
fn loop_repr(lp: &EventLoop) -> String {
    format!(
        "<EventLoop running={} closed={} debug={}>",
        py_bool(lp.is_running()),
        py_bool(lp.is_closed()),
        py_bool(lp.debug())
    )
}

/// `str(exc)` in Python is the bare message.
fn message(err: &tulip::Error) -> String {
    match err {
        tulip::Error::InvalidArgument(m) => m.to_string(),
        other => other.to_string(),
    }
}

async fn main_() -> tulip::Result<()> {
    let task = tulip::create_task(work(21))?;
    println!("Task name: {}", task.name());
    task.set_name("doubler");
    println!("Renamed to: {}", task.name());
    task.add_done_callback(on_task_done);
    task.clone().await?;
    if task.done() {
        println!("Task is complete.");
    }
    println!("Result: {}", task.result()?);

    let failing = tulip::create_task(work(-1))?;
    failing.wait_done().await?; // asyncio.wait([failing])
    if failing.done() {
        if let Some(exc) = failing.exception()? {
            println!("Task raised an exception: {}", message(&exc));
        }
    }

    let slow = tulip::create_task(tulip::sleep(10.0))?;
    tulip::sleep(0.1).await?;
    slow.cancel(); // try to cancel the task
    match slow.clone().await {
        Err(e) if e.is_cancelled() => {}
        other => other?,
    }
    if slow.cancelled() {
        println!("Task was cancelled.");
    }

    let lp = task.get_loop();
    println!("Task loop: {}", loop_repr(&lp));
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
