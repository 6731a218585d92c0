//! S1.3 (seed 001): `asyncio.run(asyncio.wait(list))` with no `main`.
//!
//! ```python
//! task_list = [nested(), nested()]
//! done, pending = asyncio.run(asyncio.wait(task_list))
//! ```

use tulip::ReturnWhen;

async fn nested() -> tulip::Result<&'static str> {
    println!("1");
    tulip::sleep(2.0).await?;
    println!("2");
    Ok("return")
}

fn main() -> tulip::Result<()> {
    let task_list = vec![nested(), nested()];
    let (done, pending) = tulip::run(tulip::wait(task_list, None, ReturnWhen::AllCompleted))?;
    println!("done: {}, pending: {}", done.len(), pending.len());
    Ok(())
}
