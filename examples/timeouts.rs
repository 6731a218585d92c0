//! S3.18 (seed 003): `timeout`, `timeout(None)` + `reschedule` + `expired`,
//! `timeout_at`, and `wait_for` — each a 3 s task under a 2 s (or 3 s)
//! limit. About 2 + 3 + 2 + 2 = 9 s; `--scale 0.1` (or `TULIP_TIME_SCALE=0.1`) runs it faster.

#[path = "support/cli.rs"]
mod cli;

use cli::secs;
use tulip::Result;

async fn example_task() -> Result<&'static str> {
    println!("Task started");
    tulip::sleep(secs(3.0)).await?;
    println!("Task completed");
    Ok("Task result")
}

async fn long_running_task() -> Result<()> {
    println!("Task started");
    tulip::sleep(secs(5.0)).await?;
    println!("Task completed");
    Ok(())
}

fn main() -> Result<()> {
    // async with asyncio.timeout(2): ...
    tulip::run(async {
        match tulip::timeout(secs(2.0)).run(example_task()).await {
            Ok(result) => println!("Task finished with result: {result}"),
            Err(e) if e.is_timeout() => {
                println!("Task took too long and was cancelled due to timeout.")
            }
            Err(e) => return Err(e),
        }
        Ok(())
    })?;
    // async with asyncio.timeout(None) as cm: cm.reschedule(loop.time() + 3)
    tulip::run(async {
        let cm = tulip::timeout(None);
        let inside = cm.clone();
        let r = cm
            .clone()
            .run(async move {
                let new_deadline = tulip::get_running_loop()?.time() + secs(3.0);
                inside.reschedule(Some(new_deadline))?;
                long_running_task().await
            })
            .await;
        match r {
            Err(e) if e.is_timeout() => {} // except TimeoutError: pass
            other => other?,
        }
        if cm.expired() {
            println!("Looks like we haven't finished on time.");
        }
        Ok(())
    })?;
    // async with asyncio.timeout_at(loop.time() + 2): ...
    tulip::run(async {
        let when = tulip::get_running_loop()?.time() + secs(2.0);
        match tulip::timeout_at(when).run(example_task()).await {
            Ok(result) => println!("Task finished with result: {result}"),
            Err(e) if e.is_timeout() => println!("Task was cancelled due to timeout."),
            Err(e) => return Err(e),
        }
        Ok(())
    })?;
    // await asyncio.wait_for(example_task(), timeout=2.0)
    tulip::run(async {
        match tulip::wait_for(example_task(), secs(2.0)).await {
            Ok(result) => println!("Task finished with result: {result}"),
            Err(e) if e.is_timeout() => {
                println!("Task took too long and was cancelled due to timeout.")
            }
            Err(e) => return Err(e),
        }
        Ok(())
    })
}
