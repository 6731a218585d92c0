//! S1.1 (seed 001): `count()` gathered three times — one one one, then two two two.
//!
//! ```python
//! async def count():
//!     print('one'); await asyncio.sleep(2); print('two')
//! async def main():
//!     await asyncio.gather(count(), count(), count())
//! ```

async fn count() -> tulip::Result<()> {
    println!("one");
    tulip::sleep(2.0).await?;
    println!("two");
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(async {
        tulip::gather(vec![count(), count(), count()]).await?;
        Ok(())
    })
}
