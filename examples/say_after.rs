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

/// `time.strftime('%X')` (UTC here: no time-zone database in the dependency set).
fn now_x() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

async fn say_after(delay: f64, what: &str) -> tulip::Result<()> {
    tulip::sleep(delay).await?;
    println!("{what}");
    Ok(())
}

fn main() -> tulip::Result<()> {
    // Sequential: 1 s + 2 s.
    tulip::run(async {
        println!("started at {}", now_x());
        say_after(1.0, "hello").await?;
        say_after(2.0, "world").await?;
        println!("finished at {}", now_x());
        Ok(())
    })?;
    // Concurrent: both tasks run at once, 2 s in all.
    tulip::run(async {
        let task1 = tulip::create_task(say_after(1.0, "hello"))?;
        let task2 = tulip::create_task(say_after(2.0, "world"))?;
        println!("started at {}", now_x());
        task1.await?;
        task2.await?;
        println!("finished at {}", now_x());
        Ok(())
    })
}
