//! S3.11 (seed 003, "创建任务"): cancelling a task that catches
//! `CancelledError`, cleans up, and re-raises it.
//!
//! ```python
//! async def my_task():
//!     print("Task started")
//!     try:
//!         await asyncio.sleep(5)
//!     except asyncio.CancelledError:
//!         print("Task was cancelled!")
//!         raise
//!     print("Task finished")
//!
//! async def main():
//!     task = asyncio.create_task(my_task())
//!     await asyncio.sleep(2)
//!     task.cancel()
//!     try:
//!         await task
//!     except asyncio.CancelledError:
//!         print("Task has been cancelled")
//!
//! asyncio.run(main())
//! ```

async fn my_task() -> tulip::Result<()> {
    println!("Task started");
    // A long-running task.
    if let Err(e) = tulip::sleep(5.0).await {
        if e.is_cancelled() {
            println!("Task was cancelled!");
        }
        return Err(e); // raise
    }
    println!("Task finished");
    Ok(())
}

async fn main_() -> tulip::Result<()> {
    let task = tulip::create_task(my_task())?;
    tulip::sleep(2.0).await?; // let the task run for a while
    task.cancel();
    // Wait for the task, catching the cancellation.
    match task.await {
        Err(e) if e.is_cancelled() => println!("Task has been cancelled"),
        other => other?,
    }
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
