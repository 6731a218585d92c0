//! S2.28 (seed 002): a `Queue(maxsize=100)` between a producer of random
//! letters and a consumer printing one a second. The seed runs forever;
//! this stops after `--seconds N` (default 5.5). The letters come from a
//! seeded xorshift, so runs are repeatable.
//!
//! ```python
//! q = Queue(maxsize=100)
//! async def add():
//!     while 1: await q.put(random.choice(string.ascii_letters))
//! async def desc():
//!     while 1: res = await q.get(); print(res); await asyncio.sleep(1)
//! ```

#[path = "support/cli.rs"]
mod cli;

use std::cell::Cell;
use tulip::{Queue, ReturnWhen};

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0x2545_F491_4F6C_DD1D) };
}

/// `random.choice(string.ascii_letters)`, from a tiny xorshift64.
fn random_letter() -> char {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        LETTERS[(x % LETTERS.len() as u64) as usize] as char
    })
}

async fn add(q: Queue<char>) -> tulip::Result<()> {
    loop {
        q.put(random_letter()).await?;
    }
}

async fn desc(q: Queue<char>) -> tulip::Result<()> {
    loop {
        let res = q.get().await?;
        println!("{res}");
        tulip::sleep(1.0).await?;
    }
}

fn main() -> tulip::Result<()> {
    let limit = cli::seconds(5.5);
    tulip::run(async move {
        let q = Queue::new(100);
        let tasks = vec![
            tulip::create_task(add(q.clone()))?,
            tulip::create_task(desc(q.clone()))?,
        ];
        tulip::wait(tasks, Some(limit), ReturnWhen::AllCompleted).await?;
        println!("(stopped after {limit} s; {} letters queued)", q.qsize());
        Ok(())
    })
}
