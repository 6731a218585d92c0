//! S3.7 (seed 003, "可等待对象"): a coroutine awaited by another prints 42,
//! and the same coroutine wrapped in a task and awaited prints 42 again.
//!
//! ```python
//! async def nested():
//!     return 42
//!
//! async def main():
//!     print(await nested())       # the coroutine
//!     task = asyncio.create_task(nested())
//!     print(await task)           # the task
//!
//! asyncio.run(main())
//! ```

async fn nested() -> tulip::Result<i32> {
    Ok(42)
}

async fn main_() -> tulip::Result<()> {
    // nested() alone does nothing: a Rust future, like a coroutine, runs
    // only when awaited.
    println!("{}", nested().await?);
    let task = tulip::create_task(nested())?;
    let result = task.await?;
    println!("{result}");
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
