//! S4.1 (seed 004): countasync.py — three `count()`s gathered: One One One,
//! Two Two Two, in about 1 s.
//!
//! ```python
//! async def count():
//!     print("One"); await asyncio.sleep(1); print("Two")
//! async def main():
//!     await asyncio.gather(count(), count(), count())
//! ```

use std::time::Instant;

async fn count() -> tulip::Result<()> {
    println!("One");
    tulip::sleep(1.0).await?;
    println!("Two");
    Ok(())
}

fn main() -> tulip::Result<()> {
    let s = Instant::now();
    tulip::run(async {
        tulip::gather(vec![count(), count(), count()]).await?;
        Ok(())
    })?;
    let elapsed = s.elapsed().as_secs_f64();
    println!("{} executed in {elapsed:0.2} seconds.", file!());
    Ok(())
}
