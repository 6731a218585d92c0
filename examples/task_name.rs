//! S3.9 (seed 003, "创建任务"): a task created with a name, and
//! `get_name()`.
//!
//! ```python
//! async def my_named_task():
//!     await asyncio.sleep(1)
//!     print("Named Task completed")
//!
//! async def main():
//!     task = asyncio.create_task(my_named_task(), name="MyUniqueTask")
//!     print(f"Task Name: {task.get_name()}")
//!     await task
//!
//! asyncio.run(main())
//! ```

async fn my_named_task() -> tulip::Result<()> {
    tulip::sleep(1.0).await?;
    println!("Named Task completed");
    Ok(())
}

async fn main_() -> tulip::Result<()> {
    // Create and name the task.
    let task = tulip::create_task_named(my_named_task(), "MyUniqueTask")?;
    println!("Task Name: {}", task.name());
    task.await
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
