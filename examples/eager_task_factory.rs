//! Seed 003, lines ~1020–1045 ("任务立即执行", the example of
//! `eager_task_factory`), unlisted in seed-examples.md (README id S3.15*):
//! one task created by the eager task factory, named, then awaited.
//!
//! ```python
//! async def task():
//!     await asyncio.sleep(1)
//!     print("Task completed")
//!
//! async def main():
//!     loop = asyncio.get_running_loop()
//!     # 立即创建并调度任务
//!     task1 = asyncio.eager_task_factory(loop, task(), name="MyTask")
//!     await task1
//!
//! asyncio.run(main())
//! ```
//!
//! Run it with `cargo run --example eager_task_factory`; it prints
//! `Task completed` after 1 s, as the seed does.
//!
//! asyncio's `eager_task_factory(loop, coro, name=...)` is
//! `Task(coro, loop=loop, name=name, eager_start=True)`. In tulip that is
//! `loop.create_task_with(fut, TaskOptions { eager: Some(true), name, .. })`:
//! the task's first step runs inside `create_task_with`, up to its first
//! suspension (the sleep), instead of on the loop's next iteration. (The
//! factory for every task of a loop, `set_task_factory`, is `eager_tasks`.)
//!
//! The seed prints nothing that shows either the name or the eager start.
//! With `--show` this port also prints both, before awaiting the task:
//!
//! ```text
//! Task name: MyTask
//! Started in create_task: True
//! Task completed
//! ```
//!
//! (`task()` records that its first step ran, for that second line.)

use std::cell::Cell;

use tulip::TaskOptions;

thread_local! {
    /// Set by `task()`'s first step: was it run before `create_task_with`
    /// returned?
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

async fn task() -> tulip::Result<()> {
    STARTED.with(|s| s.set(true));
    tulip::sleep(1.0).await?;
    println!("Task completed");
    Ok(())
}

async fn main_(show: bool) -> tulip::Result<()> {
    let lp = tulip::get_running_loop()?;
    // Create the task and start it at once.
    let task1 = lp.create_task_with(
        task(),
        TaskOptions {
            eager: Some(true),
            name: Some("MyTask".into()),
            ..TaskOptions::default()
        },
    )?;
    if show {
        println!("Task name: {}", task1.name());
        let started = STARTED.with(|s| s.get());
        println!(
            "Started in create_task: {}",
            if started { "True" } else { "False" }
        );
    }
    task1.await
}

fn main() -> tulip::Result<()> {
    let show = std::env::args().skip(1).any(|a| a == "--show");
    tulip::run(main_(show))
}
