//! S3.10 (seed 003): a task created in a given context (contextvars). The
//! value is set inside a copy of the current context with `ctx.run`, and the
//! task is created with `context=ctx`, so it sees the value while the main
//! task's own context never does.
//!
//! ```python
//! request_id = contextvars.ContextVar('request_id')
//! async def task_with_context():
//!     print(f"Task request_id: {request_id.get()}"); await asyncio.sleep(1)
//! async def main():
//!     ctx = contextvars.copy_context(); ctx.run(request_id.set, "12345")
//!     task = asyncio.create_task(task_with_context(), context=ctx); await task
//! ```

use tulip::{ContextVar, TaskOptions};

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

async fn task_with_context() -> tulip::Result<()> {
    let id = REQUEST_ID.get().unwrap_or_default();
    println!("Task request_id: {id}");
    tulip::sleep(1.0).await
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        let ctx = tulip::copy_context();
        ctx.run(|| REQUEST_ID.set("12345".to_string()))??;
        let task = tulip::get_running_loop()?.create_task_with(
            task_with_context(),
            TaskOptions {
                context: Some(ctx),
                ..TaskOptions::default()
            },
        )?;
        task.await?;
        // The main task's own context never saw the value.
        assert!(REQUEST_ID.get().is_none());
        Ok(())
    })
}
