//! S3.6 (seed 003): `say_after` in a TaskGroup; leaving the group awaits
//! both tasks (~2 s).
//!
//! ```python
//! async with asyncio.TaskGroup() as tg:
//!     task1 = tg.create_task(say_after(1, 'hello'))
//!     task2 = tg.create_task(say_after(2, 'world'))
//!     print(f"started at {time.strftime('%X')}")
//! print(f"finished at {time.strftime('%X')}")
//! ```

#[path = "support/clock.rs"]
mod clock;

async fn say_after(delay: f64, what: &'static str) -> tulip::Result<()> {
    tulip::sleep(delay).await?;
    println!("{what}");
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        tulip::TaskGroup::run(|tg| async move {
            let _task1 = tg.create_task(say_after(1.0, "hello"))?;
            let _task2 = tg.create_task(say_after(2.0, "world"))?;
            println!("started at {}", clock::now_x_utc());
            Ok(())
        })
        .await?;
        println!("finished at {}", clock::now_x_utc());
        Ok(())
    })
}
