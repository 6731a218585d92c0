//! S3.16 (seed 003, "任务立即执行"): a million light tasks, created with
//! the eager task factory and then with the default one, timed.
//!
//! ```python
//! async def light_coro():
//!     pass
//!
//! async def main():
//!     print('Before running task group!')
//!     time0 = time.time()
//!     asyncio.get_event_loop().set_task_factory(asyncio.eager_task_factory)
//!     async with asyncio.TaskGroup() as tg:
//!         for _ in range(1000000):
//!             tg.create_task(light_coro())
//!     print(f'It took {time.time() - time0} to run!')
//!     print('After running task group with eager task factory!')
//!
//! asyncio.run(main())
//! ```
//!
//! The seed runs this twice, the second time with the `set_task_factory`
//! line commented out (and the same closing text). This port runs both, one
//! after the other. `cargo run --release --example eager_tasks -- N` runs N
//! tasks instead of a million (the tests use a smaller N).
//!
//! `tulip::TaskGroup::run` is `async with asyncio.TaskGroup() as tg`: the
//! closure is the block, and leaving it awaits every task of the group. An
//! eager task has finished by the time `create_task` returns; the group
//! still hears of it through a done callback, as asyncio's does (gh-128550).
//!
//! Expect the two timings close together here (about 0.25 and 0.29 s on
//! the project's 2-core VM), where asyncio's differ sevenfold: a tulip task
//! costs about 260 ns from `create_task` to done with the default factory
//! and 110 with the eager one, and the group's notification of a child
//! that is done already (one more turn in the ready queue, the finished
//! task kept until then) takes most of that saving back. In asyncio a
//! task's scheduled first step is what costs microseconds.
//!
//! ```text
//! Before running task group!
//! It took 1.201669692993164 to run!
//! After running task group with eager task factory!
//! Before running task group!
//! It took 8.283295392990112 to run!
//! After running task group with eager task factory!
//! ```

use std::time::Instant;

use tulip::TaskFactory;

async fn light_coro() -> tulip::Result<()> {
    Ok(())
}

async fn main_(n: usize, factory: TaskFactory) -> tulip::Result<()> {
    println!("Before running task group!");
    let time0 = Instant::now();
    tulip::get_event_loop()?.set_task_factory(factory);
    // async with asyncio.TaskGroup() as tg:
    tulip::TaskGroup::run(|tg| async move {
        for _ in 0..n {
            let _task = tg.create_task(light_coro())?;
        }
        Ok(())
    })
    .await?;
    println!("It took {:?} to run!", time0.elapsed().as_secs_f64());
    println!("After running task group with eager task factory!");
    Ok(())
}

fn main() -> tulip::Result<()> {
    let n = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|_| {
            tulip::Error::msg(format!("usage: eager_tasks [NUMBER_OF_TASKS], got {arg:?}"))
        })?,
        None => 1_000_000,
    };
    tulip::run(main_(n, TaskFactory::Eager))?;
    tulip::run(main_(n, TaskFactory::Default))
}
