//! S3.5 (seed 003): `say_after` — awaited one after the other (~3 s), then
//! run concurrently as tasks (~2 s).
//!
//! ```python
//! async def say_after(delay, what):
//!     await asyncio.sleep(delay); print(what)
//! async def main():
//!     print(f"started at {time.strftime('%X')}")
//!     await say_after(1, 'hello'); await say_after(2, 'world')
//!     print(f"finished at {time.strftime('%X')}")
//! ```

#[path = "support/clock.rs"]
mod clock;

async fn say_after(delay: f64, what: &str) -> tulip::Result<()> {
    tulip::sleep(delay).await?;
    println!("{what}");
    Ok(())
}

fn main() -> tulip::Result<()> {
    // Sequential: 1 s + 2 s.
    tulip::run(async {
        println!("started at {}", clock::now_x_utc());
        say_after(1.0, "hello").await?;
        say_after(2.0, "world").await?;
        println!("finished at {}", clock::now_x_utc());
        Ok(())
    })?;
    // Concurrent: both tasks run at once, 2 s in all.
    tulip::run(async {
        let task1 = tulip::create_task(say_after(1.0, "hello"))?;
        let task2 = tulip::create_task(say_after(2.0, "world"))?;
        println!("started at {}", clock::now_x_utc());
        task1.await?;
        task2.await?;
        println!("finished at {}", clock::now_x_utc());
        Ok(())
    })
}
