//! The `loop` group (issue 2): callbacks, chain, timers, tasks, switch.
//!
//! Each case is written four times here (tulip, tokio current_thread, the
//! floor) and twice in `peers/loop_bench.py` (asyncio, uvloop), doing the
//! same work in the same shape. Every function returns the elapsed
//! nanoseconds of the measured part only: building the loop or runtime and
//! drawing the random delays happen before the clock starts.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::floor;
use crate::measure::{Clock, Span};

/// Tasks are created in batches of this many, then each is awaited in order
/// (gather-shaped, without needing gather).
pub const TASK_BATCH: u64 = 1000;
/// The `switch` case runs this many tasks, each yielding `ops / SWITCH_TASKS` times.
pub const SWITCH_TASKS: u64 = 100;
/// Timer delays are uniform in `[0, MAX_DELAY)` seconds.
pub const MAX_DELAY: f64 = 0.050;

/// The cases, in table order: (name, default ops, goal ns/op, what it does).
pub const CASES: &[(&str, u64, f64, &str)] = &[
    (
        "callbacks",
        1_000_000,
        25.0,
        "1M `call_soon` of a counter callback, then run to completion",
    ),
    (
        "chain",
        1_000_000,
        40.0,
        "each callback schedules the next with `call_soon`: one op per loop iteration",
    ),
    (
        "timers",
        1_000_000,
        200.0,
        "1M `call_later` at random delays in [0, 50 ms), every other one cancelled; \
         clock stops when the last live timer fires (so 50 ms of the wall time is waiting)",
    ),
    (
        "tasks",
        1_000_000,
        120.0,
        "1M trivial tasks, created in batches of 1000 and each awaited (gather-shaped)",
    ),
    (
        "switch",
        1_000_000,
        40.0,
        "100 tasks each yielding with `sleep(0)`; one op = one yield",
    ),
];

/// The delays of the `timers` case: a fixed xorshift sequence, so every
/// contender gets the same ones (`peers/loop_bench.py` computes the same).
pub fn random_delays(n: u64) -> Vec<f64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64 * MAX_DELAY
        })
        .collect()
}

/// Runs one case for one contender; returns the time `ops` operations took.
pub fn run(case: &str, contender: &str, ops: u64) -> Result<Span, String> {
    let ns = match (contender, case) {
        ("tulip", "callbacks") => tulip_callbacks(ops),
        ("tulip", "chain") => tulip_chain(ops),
        ("tulip", "timers") => tulip_timers(ops),
        ("tulip", "tasks") => tulip_tasks(ops),
        ("tulip", "switch") => tulip_switch(ops),
        ("tokio", "callbacks") => tokio_callbacks(ops),
        ("tokio", "chain") => tokio_chain(ops),
        ("tokio", "timers") => tokio_timers(ops),
        ("tokio", "tasks") => tokio_tasks(ops),
        ("tokio", "switch") => tokio_switch(ops),
        ("floor", "callbacks") => floor_callbacks(ops),
        ("floor", "chain") => floor_chain(ops),
        ("floor", "timers") => floor_timers(ops),
        ("floor", "tasks") => floor_tasks(ops),
        ("floor", "switch") => floor_switch(ops),
        _ => return Err(format!("no case {case} for {contender}")),
    };
    ns.map_err(|e| e.to_string())
}

type R = Result<Span, Box<dyn std::error::Error>>;

use crate::check_count as check;

// ===== tulip =====

fn tulip_callbacks(n: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let count = Rc::new(Cell::new(0u64));
    let t0 = Clock::start();
    for _ in 0..n {
        let c = count.clone();
        let _ = lp.call_soon(move || c.set(c.get() + 1))?;
    }
    let stopper = lp.clone();
    let _ = lp.call_soon(move || stopper.stop())?;
    lp.run_forever()?;
    let ns = t0.stop();
    check("callbacks", count.get(), n)?;
    lp.close()?;
    Ok(ns)
}

fn tulip_chain(n: u64) -> R {
    fn step(lp: tulip::EventLoop, left: u64) {
        if left == 0 {
            lp.stop();
        } else {
            let next = lp.clone();
            let _ = lp.call_soon(move || step(next, left - 1));
        }
    }
    let lp = tulip::EventLoop::new()?;
    let t0 = Clock::start();
    let first = lp.clone();
    let _ = lp.call_soon(move || step(first, n))?;
    lp.run_forever()?;
    let ns = t0.stop();
    lp.close()?;
    Ok(ns)
}

fn tulip_timers(n: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let delays = random_delays(n);
    let live = n - n / 2;
    let fired = Rc::new(Cell::new(0u64));
    let t0 = Clock::start();
    let mut handles = Vec::with_capacity(n as usize);
    for &d in &delays {
        let f = fired.clone();
        let lp2 = lp.clone();
        handles.push(lp.call_later(d, move || {
            f.set(f.get() + 1);
            if f.get() == live {
                lp2.stop();
            }
        })?);
    }
    for h in handles.iter().step_by(2) {
        h.cancel();
    }
    drop(handles);
    lp.run_forever()?;
    let ns = t0.stop();
    check("timers fired", fired.get(), live)?;
    lp.close()?;
    Ok(ns)
}

fn tulip_tasks(n: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let t0 = Clock::start();
    let sum = lp.run_until_complete(async move {
        let mut sum = 0u64;
        let mut i = 0;
        while i < n {
            let batch = TASK_BATCH.min(n - i);
            let mut ts = Vec::with_capacity(batch as usize);
            for j in i..i + batch {
                ts.push(tulip::create_task(async move { Ok(j) })?);
            }
            for t in ts {
                sum += t.await?;
            }
            i += batch;
        }
        Ok(sum)
    })?;
    let ns = t0.stop();
    check("tasks sum", sum, n * (n.max(1) - 1) / 2)?;
    lp.close()?;
    Ok(ns)
}

fn tulip_switch(n: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let per = n / SWITCH_TASKS;
    let t0 = Clock::start();
    let total = lp.run_until_complete(async move {
        let mut ts = Vec::new();
        for _ in 0..SWITCH_TASKS {
            ts.push(tulip::create_task(async move {
                for _ in 0..per {
                    tulip::sleep(0.0).await?;
                }
                Ok(per)
            })?);
        }
        let mut total = 0;
        for t in ts {
            total += t.await?;
        }
        Ok(total)
    })?;
    let ns = t0.stop();
    check("switches", total, per * SWITCH_TASKS)?;
    lp.close()?;
    Ok(ns)
}

// ===== tokio current_thread =====
// tokio has no callback API: `callbacks` and `chain` use its nearest thing,
// a spawned task whose body is the callback (detached: nobody awaits it).

fn tokio_rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn tokio_callbacks(n: u64) -> R {
    let rt = tokio_rt()?;
    let count = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let c2 = count.clone();
    let t0 = Clock::start();
    rt.block_on(async move {
        for _ in 0..n {
            let c = c2.clone();
            let d = done.clone();
            tokio::spawn(async move {
                if c.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    d.notify_one();
                }
            });
        }
        done.notified().await;
    });
    let ns = t0.stop();
    check("callbacks", count.load(Ordering::Relaxed), n)?;
    Ok(ns)
}

fn tokio_chain(n: u64) -> R {
    fn step(left: u64, done: Arc<tokio::sync::Notify>) {
        tokio::spawn(async move {
            if left == 0 {
                done.notify_one();
            } else {
                step(left - 1, done);
            }
        });
    }
    let rt = tokio_rt()?;
    let done = Arc::new(tokio::sync::Notify::new());
    let t0 = Clock::start();
    rt.block_on(async move {
        step(n, done.clone());
        done.notified().await;
    });
    Ok(t0.stop())
}

fn tokio_timers(n: u64) -> R {
    use tokio_util::time::DelayQueue;
    let rt = tokio_rt()?;
    let delays = random_delays(n);
    let live = n - n / 2;
    let fired = Rc::new(Cell::new(0u64));
    let f2 = fired.clone();
    let t0 = Clock::start();
    rt.block_on(async move {
        // A boxed callback per timer, called when it expires: the same work
        // as tulip's `call_later` and the floor's heap of boxed closures.
        let mut q: DelayQueue<Box<dyn FnOnce()>> = DelayQueue::with_capacity(n as usize);
        let mut keys = Vec::with_capacity(n as usize);
        for &d in &delays {
            let f = f2.clone();
            let cb: Box<dyn FnOnce()> = Box::new(move || f.set(f.get() + 1));
            keys.push(q.insert(cb, Duration::from_secs_f64(d)));
        }
        for k in keys.iter().step_by(2) {
            q.remove(k);
        }
        drop(keys);
        while f2.get() < live {
            match std::future::poll_fn(|cx| q.poll_expired(cx)).await {
                Some(e) => (e.into_inner())(),
                None => break,
            }
        }
    });
    let ns = t0.stop();
    check("timers fired", fired.get(), live)?;
    Ok(ns)
}

fn tokio_tasks(n: u64) -> R {
    let rt = tokio_rt()?;
    let t0 = Clock::start();
    let sum = rt.block_on(async move {
        let mut sum = 0u64;
        let mut i = 0;
        while i < n {
            let batch = TASK_BATCH.min(n - i);
            let mut ts = Vec::with_capacity(batch as usize);
            for j in i..i + batch {
                ts.push(tokio::spawn(async move { j }));
            }
            for t in ts {
                sum += t.await.expect("task panicked");
            }
            i += batch;
        }
        sum
    });
    let ns = t0.stop();
    check("tasks sum", sum, n * (n.max(1) - 1) / 2)?;
    Ok(ns)
}

fn tokio_switch(n: u64) -> R {
    let rt = tokio_rt()?;
    let per = n / SWITCH_TASKS;
    let t0 = Clock::start();
    let total = rt.block_on(async move {
        let ts: Vec<_> = (0..SWITCH_TASKS)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..per {
                        tokio::task::yield_now().await;
                    }
                    per
                })
            })
            .collect();
        let mut total = 0;
        for t in ts {
            total += t.await.expect("task panicked");
        }
        total
    });
    let ns = t0.stop();
    check("switches", total, per * SWITCH_TASKS)?;
    Ok(ns)
}

// ===== the floor =====

fn floor_callbacks(n: u64) -> R {
    let count = Rc::new(Cell::new(0u64));
    let t0 = Clock::start();
    let mut q: VecDeque<Box<dyn FnOnce()>> = VecDeque::new();
    for _ in 0..n {
        let c = count.clone();
        q.push_back(Box::new(move || c.set(c.get() + 1)));
    }
    while let Some(f) = q.pop_front() {
        f();
    }
    let ns = t0.stop();
    check("callbacks", count.get(), n)?;
    Ok(ns)
}

type Queue = Rc<RefCell<VecDeque<Box<dyn FnOnce()>>>>;

fn floor_chain(n: u64) -> R {
    fn step(q: Queue, left: u64, count: Rc<Cell<u64>>) {
        count.set(count.get() + 1);
        if left > 0 {
            let q2 = q.clone();
            q.borrow_mut()
                .push_back(Box::new(move || step(q2, left - 1, count)));
        }
    }
    let q: Queue = Rc::new(RefCell::new(VecDeque::new()));
    let count = Rc::new(Cell::new(0u64));
    let t0 = Clock::start();
    let (q2, c2) = (q.clone(), count.clone());
    q.borrow_mut().push_back(Box::new(move || step(q2, n, c2)));
    loop {
        let Some(f) = q.borrow_mut().pop_front() else {
            break;
        };
        f();
    }
    let ns = t0.stop();
    check("chain", count.get(), n + 1)?;
    Ok(ns)
}

fn floor_timers(n: u64) -> R {
    use std::cmp::Reverse;
    let delays = random_delays(n);
    let fired = Rc::new(Cell::new(0u64));
    let t0 = Clock::start();
    // A heap of (deadline, slot); a cancelled timer's slot is emptied.
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::with_capacity(n as usize);
    let mut slots: Vec<Option<Box<dyn FnOnce()>>> = Vec::with_capacity(n as usize);
    for (i, &d) in delays.iter().enumerate() {
        let f = fired.clone();
        slots.push(Some(Box::new(move || f.set(f.get() + 1))));
        heap.push(Reverse((Instant::now() + Duration::from_secs_f64(d), i)));
    }
    for s in slots.iter_mut().step_by(2) {
        *s = None;
    }
    while let Some(&Reverse((when, i))) = heap.peek() {
        let now = Instant::now();
        if when > now {
            std::thread::sleep(when - now);
            continue;
        }
        heap.pop();
        if let Some(f) = slots[i].take() {
            f();
        }
    }
    let ns = t0.stop();
    check("timers fired", fired.get(), n - n / 2)?;
    Ok(ns)
}

fn floor_tasks(n: u64) -> R {
    let t0 = Clock::start();
    let sum = floor::block_on(async move {
        let mut sum = 0u64;
        let mut i = 0;
        while i < n {
            let batch = TASK_BATCH.min(n - i);
            let mut ts = Vec::with_capacity(batch as usize);
            for j in i..i + batch {
                ts.push(floor::spawn(async move { j }));
            }
            for t in ts {
                sum += t.await;
            }
            i += batch;
        }
        sum
    });
    let ns = t0.stop();
    check("tasks sum", sum, n * (n.max(1) - 1) / 2)?;
    Ok(ns)
}

fn floor_switch(n: u64) -> R {
    let per = n / SWITCH_TASKS;
    let t0 = Clock::start();
    let total = floor::block_on(async move {
        let ts: Vec<_> = (0..SWITCH_TASKS)
            .map(|_| {
                floor::spawn(async move {
                    for _ in 0..per {
                        floor::yield_now().await;
                    }
                    per
                })
            })
            .collect();
        let mut total = 0;
        for t in ts {
            total += t.await;
        }
        total
    });
    let ns = t0.stop();
    check("switches", total, per * SWITCH_TASKS)?;
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contender_runs_every_case_small() {
        for &(case, ..) in CASES {
            for who in ["tulip", "tokio", "floor"] {
                let ops = if case == "timers" { 2_000 } else { 10_000 };
                run(case, who, ops).unwrap_or_else(|e| panic!("{who} {case}: {e}"));
            }
        }
    }

    #[test]
    fn delays_are_in_range_and_repeatable() {
        let a = random_delays(1000);
        assert_eq!(a, random_delays(1000));
        assert!(a.iter().all(|&d| (0.0..MAX_DELAY).contains(&d)));
    }
}
