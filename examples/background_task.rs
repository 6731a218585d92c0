//! Seed 003, lines ~355–380 ("创建任务"), unlisted in seed-examples.md
//! (README id S3.8*): `create_task` schedules a task and returns at once;
//! `main` goes on, and the task runs in the background until it is awaited.
//!
//! ```python
//! async def task():
//!     print("Task started")
//!     await asyncio.sleep(2)
//!     print("Task finished")
//!
//! async def main():
//!     # 创建并调度任务
//!     task1 = asyncio.create_task(task())
//!     # 主函数不会等待任务完成,继续执行
//!     print("Task is running in the background")
//!     # 等待任务完成(可选的)
//!     await task1
//!
//! asyncio.run(main())
//! ```
//!
//! Run it with `cargo run --example background_task`; it takes 2 s. The
//! task's first step runs on the loop's next iteration, after `main` has
//! printed its line (the default task factory is lazy):
//!
//! ```text
//! Task is running in the background
//! Task started
//! Task finished
//! ```

async fn task() -> tulip::Result<()> {
    println!("Task started");
    tulip::sleep(2.0).await?;
    println!("Task finished");
    Ok(())
}

async fn main_() -> tulip::Result<()> {
    // Create and schedule the task.
    let task1 = tulip::create_task(task())?;
    // main does not wait for the task to finish: it goes on.
    println!("Task is running in the background");
    // Wait for the task to finish (optional in the seed's words; here, as
    // there, returning from main without it would cancel the task).
    task1.await
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
