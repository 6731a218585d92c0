//! S3.1 (seed 003, "示例"): hello world with a sleep, run by `asyncio.run`.
//!
//! ```python
//! async def main():
//!     print('Hello ...')
//!     await asyncio.sleep(1)
//!     print('... World!')
//!
//! asyncio.run(main())
//! ```

async fn main_() -> tulip::Result<()> {
    println!("Hello ...");
    tulip::sleep(1.0).await?;
    println!("... World!");
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
