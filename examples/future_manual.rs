//! S3.8 (seed 003, "手动创建和完成 Future"): a Future created by hand and
//! given its result by a task.
//!
//! ```python
//! async def set_future_value(fut):
//!     await asyncio.sleep(1)
//!     fut.set_result("Future result")
//!
//! async def main():
//!     fut = asyncio.Future()
//!     await asyncio.create_task(set_future_value(fut))
//!     print(fut.result())
//!
//! asyncio.run(main())
//! ```

use tulip::Future;

async fn set_future_value(fut: Future<&'static str>) -> tulip::Result<()> {
    tulip::sleep(1.0).await?; // simulates an asynchronous operation
    fut.set_result("Future result")?;
    Ok(())
}

async fn main_() -> tulip::Result<()> {
    // Create the Future (on the running loop, as asyncio.Future() does).
    let fut = Future::new();
    // Start a task to set the Future's value, and wait for it.
    tulip::create_task(set_future_value(fut.clone()))?.await?;
    // Read the Future's result.
    println!("{}", fut.result()?);
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
