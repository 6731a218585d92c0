//! S3.17 (seed 003): `shield` — cancelling the shield (the outer future)
//! does not cancel the task inside it; awaiting the cancelled shield raises
//! Cancelled. `tulip::run` then cancels the task that is still running, as
//! `asyncio.run` does, so "Task completed" is never printed.
//!
//! ```python
//! task = asyncio.create_task(example_task())
//! protected_task = asyncio.shield(task)
//! asyncio.create_task(cancel_task(protected_task))
//! try: result = await protected_task; print(f"Protected task finished with result: {result}")
//! except asyncio.CancelledError: print("Protected task was cancelled")
//! ```

async fn example_task() -> tulip::Result<&'static str> {
    println!("Task started");
    tulip::sleep(2.0).await?;
    println!("Task completed");
    Ok("Task result")
}

async fn cancel_task(task: tulip::Future<&'static str>) -> tulip::Result<()> {
    tulip::sleep(1.0).await?;
    println!("Cancelling task...");
    task.cancel();
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        let task = tulip::create_task(example_task())?;
        let protected_task = tulip::shield(task.clone());
        let _canceller = tulip::create_task(cancel_task(protected_task.clone()))?;
        match protected_task.await {
            Ok(result) => println!("Protected task finished with result: {result}"),
            Err(e) if e.is_cancelled() => {
                println!("Protected task was cancelled");
                assert!(!task.done(), "the shielded task is still running");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    })
}
