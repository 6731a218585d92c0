//! S1.4 (seed 001, "Future 对象"): a future made with `loop.create_future()`
//! and given its result by another task.
//!
//! ```python
//! async def after(fut):
//!     await asyncio.sleep(2)
//!     fut.set_result('1')
//!
//! async def main():
//!     loop = asyncio.get_running_loop()
//!     fut = loop.create_future()
//!     await loop.create_task(after(fut))
//!     data = await fut
//! ```
//!
//! The seed prints nothing, and neither does this port: it takes 2 s, and
//! `data` holds `"1"` at the end (checked with an assertion, which prints
//! nothing either).

use tulip::Future;

async fn after(fut: Future<&'static str>) -> tulip::Result<()> {
    tulip::sleep(2.0).await?;
    fut.set_result("1")?;
    Ok(())
}

async fn main_() -> tulip::Result<()> {
    let lp = tulip::get_running_loop()?;
    let fut = lp.create_future();
    // Add the function that sets `fut` to the tasks and wait for it.
    lp.create_task(after(fut.clone()))?.await?;
    // `fut` has its result by now, so this await does not suspend.
    let data = fut.await?;
    assert_eq!(data, "1");
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
