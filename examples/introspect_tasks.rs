//! S3.22 (seed 003, "检查 & 管理协程/任务执行状态"): `current_task()` and
//! `all_tasks()`.
//!
//! The seed's two programs, run one after the other:
//!
//! ```python
//! async def task():
//!     current_task = asyncio.current_task()
//!     print(f"Current task: {current_task}")
//!     await asyncio.sleep(1)
//!     print("Coroutine finished")
//!
//! async def main():
//!     await task()
//!
//! asyncio.run(main())
//! ```
//!
//! ```python
//! async def task(name):
//!     print(f"{name} started")
//!     await asyncio.sleep(2)
//!     print(f"{name} finished")
//!
//! async def main():
//!     task1 = asyncio.create_task(task("Task 1"))
//!     task2 = asyncio.create_task(task("Task 2"))
//!     tasks = asyncio.all_tasks()
//!     print(f"All tasks: {tasks}")
//!     await task1
//!     await task2
//!
//! asyncio.run(main())
//! ```
//!
//! A task prints as `<Task pending name='Task-1'>`: asyncio also shows the
//! coroutine and the source line, which a Rust future does not carry.
//! `all_tasks()` is a set in Python; it prints here in braces too.
//!
//! ```text
//! Current task: <Task pending name='Task-1'>
//! Coroutine finished
//! All tasks: {<Task pending name='Task-2'>, <Task pending name='Task-3'>, <Task pending name='Task-4'>}
//! Task 1 started
//! Task 2 started
//! Task 1 finished
//! Task 2 finished
//! ```

async fn current() -> tulip::Result<()> {
    // The task that is running now.
    let current_task = tulip::current_task();
    match current_task {
        Some(t) => println!("Current task: {t:?}"),
        None => println!("Current task: None"),
    }
    // Simulates asynchronous work.
    tulip::sleep(1.0).await?;
    println!("Coroutine finished");
    Ok(())
}

async fn main1() -> tulip::Result<()> {
    current().await
}

async fn task(name: &'static str) -> tulip::Result<()> {
    println!("{name} started");
    tulip::sleep(2.0).await?;
    println!("{name} finished");
    Ok(())
}

async fn main2() -> tulip::Result<()> {
    let task1 = tulip::create_task(task("Task 1"))?;
    let task2 = tulip::create_task(task("Task 2"))?;
    // Every task that is not done yet.
    let tasks = tulip::all_tasks();
    let shown: Vec<String> = tasks.iter().map(|t| format!("{t:?}")).collect();
    println!("All tasks: {{{}}}", shown.join(", "));
    task1.await?;
    task2.await?;
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main1())?;
    tulip::run(main2())
}
