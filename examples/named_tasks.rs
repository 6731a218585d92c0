//! S1.2 (seed 001): named tasks under `wait(ALL_COMPLETED)`, then the done set.
//!
//! ```python
//! task_list = [asyncio.create_task(nested(), name='n1'),
//!              asyncio.create_task(nested(), name='n2')]
//! done, pending = await asyncio.wait(task_list, timeout=None, return_when=ALL_COMPLETED)
//! ```

use tulip::ReturnWhen;

async fn nested() -> tulip::Result<&'static str> {
    println!("1");
    tulip::sleep(2.0).await?;
    println!("2");
    Ok("return")
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        let task_list = vec![
            tulip::create_task_named(nested(), "n1")?,
            tulip::create_task_named(nested(), "n2")?,
        ];
        let (done, _pending) = tulip::wait(task_list, None, ReturnWhen::AllCompleted).await?;
        println!("{done:?}");
        Ok(())
    })
}
