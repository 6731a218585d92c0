//! S4.3 (seed 004): chained.py — each chain awaits part1 then part2 (random
//! 0–10 s sleeps); the chains run concurrently. Arguments are the chain
//! numbers (default 1 2 3). The RNG is seeded xorshift streams (seed 444), so
//! runs are repeatable. `--scale F` (or `TULIP_TIME_SCALE`) scales the sleeps.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/seeded_rng.rs"]
mod seeded_rng;

use cli::secs;
use seeded_rng::Rng;
use std::time::Instant;

async fn part1(n: u32, rng: &mut Rng) -> tulip::Result<String> {
    let i = rng.randint_0_10();
    println!("part1({n}) sleeping for {i} seconds.");
    tulip::sleep(secs(i as f64)).await?;
    let result = format!("result{n}-1");
    println!("Returning part1({n}) == {result}.");
    Ok(result)
}

async fn part2(n: u32, arg: String, rng: &mut Rng) -> tulip::Result<String> {
    let i = rng.randint_0_10();
    println!("part2({n}, '{arg}') sleeping for {i} seconds.");
    tulip::sleep(secs(i as f64)).await?;
    let result = format!("result{n}-2 derived from {arg}");
    println!("Returning part2({n}, '{arg}') == {result}.");
    Ok(result)
}

async fn chain(n: u32) -> tulip::Result<()> {
    let start = Instant::now();
    let mut rng = Rng::new(u64::from(n));
    let p1 = part1(n, &mut rng).await?;
    let p2 = part2(n, p1, &mut rng).await?;
    let end = start.elapsed().as_secs_f64();
    println!("-->Chained result{n} => {p2} (took {end:0.2} seconds).");
    Ok(())
}

fn main() -> tulip::Result<()> {
    // Chain numbers; `--scale F` is not one.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args: Vec<u32> = raw
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || raw[i - 1] != "--scale")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if args.is_empty() {
        args = vec![1, 2, 3];
    }
    let start = Instant::now();
    tulip::run(async move {
        tulip::gather(args.into_iter().map(chain)).await?;
        Ok(())
    })?;
    println!(
        "Program finished in {:0.2} seconds.",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
