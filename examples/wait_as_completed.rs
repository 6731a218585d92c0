//! S3.19 (seed 003): `wait(timeout=2, ALL_COMPLETED)` returns (done,
//! pending) without cancelling; `as_completed` in completion order; and
//! `as_completed(timeout=4)` giving TimeoutError for the rest. About
//! 2 + 3 + 4 = 9 s; `--scale 0.1` (or `TULIP_TIME_SCALE=0.1`) runs it faster.

#[path = "support/cli.rs"]
mod cli;

use cli::secs;
use tulip::{Result, ReturnWhen};

async fn example_task(name: &'static str, delay: f64) -> Result<&'static str> {
    println!("Task {name} started");
    tulip::sleep(secs(delay)).await?;
    println!("Task {name} completed");
    Ok(name)
}

fn main() -> Result<()> {
    tulip::run(async {
        let tasks = vec![
            tulip::create_task(example_task("A", 1.0))?,
            tulip::create_task(example_task("B", 2.0))?,
            tulip::create_task(example_task("C", 3.0))?,
        ];
        let (done, pending) = tulip::wait(tasks, Some(secs(2.0)), ReturnWhen::AllCompleted).await?;
        println!("\nResults:");
        for task in &done {
            println!("{} completed", task.result()?);
        }
        if !pending.is_empty() {
            println!("Pending tasks:");
            for task in &pending {
                println!("{task:?}");
            }
        }
        Ok(())
    })?;
    tulip::run(async {
        let tasks = vec![
            tulip::create_task(example_task("A", 3.0))?,
            tulip::create_task(example_task("B", 1.0))?,
            tulip::create_task(example_task("C", 2.0))?,
        ];
        // for completed_task in asyncio.as_completed(tasks):
        //     result = await completed_task
        for completed_task in tulip::as_completed(tasks, None) {
            let result = completed_task.await?;
            println!("Task {result} has finished");
        }
        Ok(())
    })?;
    tulip::run(async {
        let tasks = vec![
            tulip::create_task(example_task("A", 3.0))?,
            tulip::create_task(example_task("B", 5.0))?,
            tulip::create_task(example_task("C", 1.0))?,
        ];
        for completed_task in tulip::as_completed(tasks, Some(secs(4.0))) {
            match completed_task.await {
                Ok(name) => println!("Task {name} has finished"),
                Err(e) if e.is_timeout() => {
                    println!("Some tasks did not complete within the timeout period");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}
