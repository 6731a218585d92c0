//! S3.10 (seed 003): a per-task context value (contextvars). A task runs in
//! a copy of its creator's context, so it sees the request id set before it
//! was created; its own changes stay its own.
//!
//! ```python
//! request_id = contextvars.ContextVar('request_id')
//! async def task_with_context():
//!     print(f"Task request_id: {request_id.get()}"); await asyncio.sleep(1)
//! async def main():
//!     ctx = contextvars.copy_context(); ctx.run(request_id.set, "12345")
//!     task = asyncio.create_task(task_with_context(), context=ctx); await task
//! ```

use tulip::ContextVar;

static REQUEST_ID: ContextVar<String> = ContextVar::new("request_id");

async fn task_with_context() -> tulip::Result<()> {
    let id = REQUEST_ID.get().unwrap_or_default();
    println!("Task request_id: {id}");
    tulip::sleep(1.0).await
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        // asyncio's copy_context() + ctx.run(set): here, a helper task sets
        // the value in its own context and creates the task from there.
        let setter = tulip::create_task(async {
            REQUEST_ID.set("12345".to_string())?;
            tulip::create_task(task_with_context())
        })?;
        let task = setter.take_result_when_done().await?;
        task.await?;
        // The main task's own context never saw the value.
        assert!(REQUEST_ID.get().is_none());
        Ok(())
    })
}

/// Awaits a task whose result is not `Clone` (a `Task`) and moves it out.
trait TakeWhenDone<T> {
    async fn take_result_when_done(self) -> tulip::Result<T>;
}

impl<T: 'static> TakeWhenDone<T> for tulip::Task<T> {
    async fn take_result_when_done(self) -> tulip::Result<T> {
        self.wait_done().await?;
        self.take_result()
    }
}
