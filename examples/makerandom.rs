//! S4.2 (seed 004): makerandom — three coroutines draw random numbers until
//! one beats their threshold, sleeping `idx + 1` s between tries; coloured
//! per coroutine (off with NO_COLOR). Python's `random.seed(444)` becomes
//! seeded xorshift streams, so runs are repeatable (the numbers differ from
//! CPython's Mersenne Twister). `--scale F` (or `TULIP_TIME_SCALE`) scales the sleeps.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/seeded_rng.rs"]
mod seeded_rng;

use cli::secs;
use seeded_rng::Rng;

/// ANSI colours: end, cyan, red, magenta.
fn colour(i: usize) -> &'static str {
    if std::env::var_os("NO_COLOR").is_some() {
        return "";
    }
    ["\x1b[0m", "\x1b[36m", "\x1b[91m", "\x1b[35m"][i]
}

async fn makerandom(idx: usize, threshold: u64) -> tulip::Result<u64> {
    let mut rng = Rng::new(idx as u64);
    let c = colour(idx + 1);
    println!("{c}Initiated makerandom({idx}).");
    let mut i = rng.randint_0_10();
    while i <= threshold {
        println!("{c}makerandom({idx}) == {i} too low; retrying.");
        tulip::sleep(secs(idx as f64 + 1.0)).await?;
        i = rng.randint_0_10();
    }
    println!("{c}---> Finished: makerandom({idx}) == {i}{}", colour(0));
    Ok(i)
}

fn main() -> tulip::Result<()> {
    let res = tulip::run(async {
        tulip::gather((0..3).map(|i| makerandom(i, 10 - i as u64 - 1))).await
    })?;
    println!();
    println!("r1: {}, r2: {}, r3: {}", res[0], res[1], res[2]);
    Ok(())
}
