//! tulip's side of the `sync` group: `Lock`, `Queue`, `gather`, `TaskGroup`.

use std::cell::Cell;
use std::rc::Rc;

use crate::sync_group::{timed, CONTENDERS, QUEUE_MAXSIZE, R};

/// True: tulip has Lock, Queue and gather.
pub const AVAILABLE: bool = true;

/// Runs one `sync` case on tulip.
pub fn run(case: &str, ops: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let (span, res) = match case {
        "lock-uncontended" => timed(|| lp.run_until_complete(lock_uncontended(ops))),
        "lock-contended" => timed(|| lp.run_until_complete(lock_contended(ops))),
        "queue" => timed(|| lp.run_until_complete(queue(ops))),
        "gather" => timed(|| lp.run_until_complete(gather(ops))),
        "taskgroup" => timed(|| lp.run_until_complete(taskgroup(ops))),
        _ => return Err(format!("no case {case} for tulip").into()),
    };
    let (got, want) = res?;
    crate::check_count(case, got, want)?;
    lp.close()?;
    Ok(span)
}

async fn lock_uncontended(n: u64) -> tulip::Result<(u64, u64)> {
    let lock = tulip::Lock::new();
    let mut count = 0;
    for _ in 0..n {
        let _g = lock.acquire().await?;
        count += 1;
    }
    Ok((count, n))
}

async fn lock_contended(n: u64) -> tulip::Result<(u64, u64)> {
    let lock = tulip::Lock::new();
    let per = n / CONTENDERS;
    let held = Rc::new(Cell::new(0u64));
    let mut ts = Vec::new();
    for _ in 0..CONTENDERS {
        let (lock, held) = (lock.clone(), held.clone());
        ts.push(tulip::create_task(async move {
            for _ in 0..per {
                let _g = lock.acquire().await?;
                held.set(held.get() + 1);
                // Hold the lock across a yield, so the others queue up on it.
                tulip::sleep(0.0).await?;
            }
            Ok(())
        })?);
    }
    for t in ts {
        t.await?;
    }
    Ok((held.get(), per * CONTENDERS))
}

async fn queue(n: u64) -> tulip::Result<(u64, u64)> {
    let q = tulip::Queue::new(QUEUE_MAXSIZE);
    let qp = q.clone();
    let producer = tulip::create_task(async move {
        for i in 0..n {
            qp.put(i).await?;
        }
        Ok(())
    })?;
    let mut total = 0u64;
    for _ in 0..n {
        total += q.get().await?;
    }
    producer.await?;
    Ok((total, n * (n.max(1) - 1) / 2))
}

async fn gather(n: u64) -> tulip::Result<(u64, u64)> {
    let out = tulip::gather((0..n).map(|j| async move { Ok(j) })).await?;
    // Every result, in argument order: the count of those in their place.
    let in_place = out.iter().zip(0..).filter(|&(&v, j)| v == j).count();
    Ok((in_place as u64, n))
}

async fn taskgroup(n: u64) -> tulip::Result<(u64, u64)> {
    let tasks = tulip::TaskGroup::run(|tg| async move {
        (0..n)
            .map(|j| tg.create_task(async move { Ok(j) }))
            .collect::<tulip::Result<Vec<_>>>()
    })
    .await?;
    let total = tasks
        .iter()
        .map(|t| t.result())
        .sum::<tulip::Result<u64>>()?;
    Ok((total, n * (n.max(1) - 1) / 2))
}
