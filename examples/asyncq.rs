//! S4.4 (seed 004): asyncq.py — producers put random items into a Queue,
//! consumers take them; `join()` waits until every item is processed, then
//! the consumers are cancelled. Flags `-p/--nprod` (default 5) and
//! `-c/--ncon` (default 10). The RNG is seeded xorshift streams (seed 444);
//! `--scale F` (or `TULIP_TIME_SCALE`) scales the sleeps.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/seeded_rng.rs"]
mod seeded_rng;

use cli::secs;
use seeded_rng::Rng;
use std::time::Instant;
use tulip::Queue;

/// `os.urandom(size).hex()`, from the same seeded generator.
async fn makeitem(size: usize, rng: &mut Rng) -> tulip::Result<String> {
    Ok((0..size)
        .map(|_| format!("{:02x}", rng.next_u64() as u8))
        .collect())
}

async fn randsleep(caller: &str, rng: &mut Rng) -> tulip::Result<()> {
    let i = rng.randint_0_10();
    println!("{caller} sleeping for {i} seconds.");
    tulip::sleep(secs(i as f64)).await
}

async fn produce(name: u32, q: Queue<(String, Instant)>) -> tulip::Result<()> {
    let mut rng = Rng::new(u64::from(name));
    let n = rng.randint_0_10();
    for _ in 0..n {
        randsleep(&format!("Producer {name}"), &mut rng).await?;
        let i = makeitem(5, &mut rng).await?;
        let t = Instant::now();
        q.put((i.clone(), t)).await?;
        println!("Producer {name} added <{i}> to queue.");
    }
    Ok(())
}

async fn consume(name: u32, q: Queue<(String, Instant)>) -> tulip::Result<()> {
    let mut rng = Rng::new(1000 + u64::from(name));
    loop {
        randsleep(&format!("Consumer {name}"), &mut rng).await?;
        let (i, t) = q.get().await?;
        println!(
            "Consumer {name} got element <{i}> in {:0.5} seconds.",
            t.elapsed().as_secs_f64()
        );
        q.task_done()?;
    }
}

fn flag(names: &[&str], default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| names.contains(&a.as_str()))
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> tulip::Result<()> {
    let nprod = flag(&["-p", "--nprod"], 5);
    let ncon = flag(&["-c", "--ncon"], 10);
    let start = Instant::now();
    tulip::run(async move {
        let q = Queue::new(0);
        let producers: Vec<_> = (0..nprod)
            .map(|n| tulip::create_task(produce(n, q.clone())))
            .collect::<tulip::Result<_>>()?;
        let consumers: Vec<_> = (0..ncon)
            .map(|n| tulip::create_task(consume(n, q.clone())))
            .collect::<tulip::Result<Vec<_>>>()?;
        tulip::gather(producers).await?;
        q.join().await?; // implicitly awaits the consumers, too
        for c in consumers {
            c.cancel();
        }
        Ok(())
    })?;
    println!(
        "Program completed in {:0.5} seconds.",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
