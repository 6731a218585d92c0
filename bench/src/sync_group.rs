//! The `sync` group (issue 3): lock uncontended and contended, a bounded
//! queue, gather, taskgroup. Same shapes as `peers/sync_bench.py`.
//!
//! - lock-uncontended: one task, 1M acquire/release.
//! - lock-contended: 100 tasks, 1M acquisitions in all; each holds the lock
//!   across one `sleep(0)`, so the others queue on it and every acquisition
//!   is a hand-over to a waiter.
//! - queue: one producer, one consumer, 1M items through a queue of maxsize 100.
//! - gather: 100k trivial tasks gathered.
//! - taskgroup: 100k trivial tasks made in one `TaskGroup`, whose exit
//!   waits for them (no issue goal: it shows what a child costs a group).

use crate::measure::{Clock, Span};

/// How many tasks contend in `lock-contended`.
pub const CONTENDERS: u64 = 100;
/// The bounded queue's size in `queue`.
pub const QUEUE_MAXSIZE: usize = 100;

/// The cases: (name, default ops, what it does).
pub const CASES: &[(&str, u64, &str)] = &[
    (
        "lock-uncontended",
        1_000_000,
        "one task, 1M `acquire`/`release` of a free lock",
    ),
    (
        "lock-contended",
        1_000_000,
        "100 tasks, 1M acquisitions in all, each holding the lock across one `sleep(0)`",
    ),
    (
        "queue",
        1_000_000,
        "producer and consumer tasks passing 1M items through `Queue(maxsize=100)`",
    ),
    ("gather", 100_000, "gathering 100k trivial tasks"),
    (
        "taskgroup",
        100_000,
        "100k trivial tasks made in one `TaskGroup`, its exit waiting for them all",
    ),
];

/// Runs one case for one contender; returns the time `ops` operations took.
pub fn run(case: &str, contender: &str, ops: u64) -> Result<Span, String> {
    let res = match (contender, case) {
        ("tulip", _) => crate::sync_tulip::run(case, ops),
        ("tokio", "lock-uncontended") => tokio_lock_uncontended(ops),
        ("tokio", "lock-contended") => tokio_lock_contended(ops),
        ("tokio", "queue") => tokio_queue(ops),
        ("tokio", "gather") => tokio_gather(ops),
        ("tokio", "taskgroup") => tokio_taskgroup(ops),
        _ => return Err(format!("no case {case} for {contender}")),
    };
    res.map_err(|e| e.to_string())
}

pub(crate) type R = Result<Span, Box<dyn std::error::Error>>;

fn rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs `f` under a [`Clock`].
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (Span, T) {
    let t0 = Clock::start();
    let out = f();
    (t0.stop(), out)
}

// ===== tokio current_thread =====

fn tokio_lock_uncontended(n: u64) -> R {
    let rt = rt()?;
    let (ns, count) = timed(|| {
        rt.block_on(async move {
            let m = tokio::sync::Mutex::new(0u64);
            for _ in 0..n {
                *m.lock().await += 1;
            }
            m.into_inner()
        })
    });
    crate::check_count("lock acquisitions", count, n)?;
    Ok(ns)
}

fn tokio_lock_contended(n: u64) -> R {
    use std::sync::Arc;
    let rt = rt()?;
    let per = n / CONTENDERS;
    let (ns, count) = timed(|| {
        rt.block_on(async move {
            let m = Arc::new(tokio::sync::Mutex::new(0u64));
            let hs: Vec<_> = (0..CONTENDERS)
                .map(|_| {
                    let m = m.clone();
                    tokio::spawn(async move {
                        for _ in 0..per {
                            let mut g = m.lock().await;
                            *g += 1;
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.expect("task panicked");
            }
            let total = *m.lock().await;
            total
        })
    });
    crate::check_count("lock acquisitions", count, per * CONTENDERS)?;
    Ok(ns)
}

fn tokio_queue(n: u64) -> R {
    let rt = rt()?;
    let (ns, total) = timed(|| {
        rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(QUEUE_MAXSIZE);
            let p = tokio::spawn(async move {
                for i in 0..n {
                    tx.send(i).await.expect("receiver alive");
                }
            });
            let mut total = 0u64;
            for _ in 0..n {
                total += rx.recv().await.expect("sender alive");
            }
            p.await.expect("producer panicked");
            total
        })
    });
    crate::check_count("queue sum", total, n * (n.max(1) - 1) / 2)?;
    Ok(ns)
}

fn tokio_gather(n: u64) -> R {
    let rt = rt()?;
    let (ns, out) = timed(|| {
        rt.block_on(async move {
            // join_all-shaped: spawn them all, then collect the results in order.
            let hs: Vec<_> = (0..n).map(|j| tokio::spawn(async move { j })).collect();
            let mut out = Vec::with_capacity(n as usize);
            for h in hs {
                out.push(h.await.expect("task panicked"));
            }
            out
        })
    });
    // Every result, in argument order: the count of those in their place.
    let in_place = out.iter().zip(0..).filter(|&(&v, j)| v == j).count();
    crate::check_count("gathered in order", in_place as u64, n)?;
    Ok(ns)
}

/// tokio has no task group; a `JoinSet` is its nearest: spawn every task
/// into it, then join them all (in completion order).
fn tokio_taskgroup(n: u64) -> R {
    let rt = rt()?;
    let (ns, total) = timed(|| {
        rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for j in 0..n {
                set.spawn(async move { j });
            }
            let mut total = 0;
            while let Some(r) = set.join_next().await {
                total += r.expect("task panicked");
            }
            total
        })
    });
    crate::check_count("taskgroup sum", total, n * (n.max(1) - 1) / 2)?;
    Ok(ns)
}
