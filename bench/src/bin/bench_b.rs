//! Area B's benchmark cases (issue 3, "Speed"): lock, queue and gather, as
//! tulip runs them. `bench/py/bench_b.py` runs the same cases on asyncio
//! (and uvloop, if installed) for the ratios.
//!
//! `cargo run -p bench --release --bin bench_b` prints one line per case:
//! `name seconds`. Each case is run 3 times; the best time is printed.

use std::time::Instant;

use tulip::{Lock, Queue, Result};

/// 1M uncontended `acquire`/`release` pairs (`async with lock: pass`).
async fn lock_uncontended() -> Result<()> {
    let lock = Lock::new();
    for _ in 0..1_000_000 {
        let _g = lock.acquire().await?;
    }
    Ok(())
}

/// 100 tasks contending for 1M acquisitions in total; each holder yields
/// once (`await asyncio.sleep(0)`) so that the others queue up.
async fn lock_contended() -> Result<()> {
    let lock = Lock::new();
    let tasks = (0..100)
        .map(|_| {
            let l = lock.clone();
            tulip::create_task(async move {
                for _ in 0..10_000 {
                    let _g = l.acquire().await?;
                    tulip::sleep(0.0).await?;
                }
                Ok(())
            })
        })
        .collect::<Result<Vec<_>>>()?;
    tulip::gather(tasks).await?;
    Ok(())
}

/// A producer and a consumer passing 1M items through `Queue(maxsize=100)`.
async fn queue_1m() -> Result<()> {
    let q = Queue::new(100);
    let q2 = q.clone();
    let producer = tulip::create_task(async move {
        for i in 0..1_000_000u64 {
            q2.put(i).await?;
        }
        Ok(())
    })?;
    let mut sum = 0u64;
    for _ in 0..1_000_000u64 {
        sum += q.get().await?;
    }
    producer.await?;
    assert_eq!(sum, 499_999_500_000);
    Ok(())
}

/// `gather` of 100k trivial coroutines (each wrapped in a task).
async fn gather_100k() -> Result<()> {
    let out = tulip::gather((0..100_000u64).map(|i| async move { Ok(i) })).await?;
    assert_eq!(out.len(), 100_000);
    Ok(())
}

fn best_of_3<F, Fut>(name: &str, case: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let fut = case();
        let start = Instant::now();
        tulip::run(fut)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!("{name} {best:.4}");
    Ok(())
}

fn main() -> Result<()> {
    best_of_3("lock_uncontended_1m", lock_uncontended)?;
    best_of_3("lock_contended_100x10k", lock_contended)?;
    best_of_3("queue_1m_maxsize100", queue_1m)?;
    best_of_3("gather_100k", gather_100k)?;
    Ok(())
}
