//! Randomized (seeded, bounded) stress test: many tasks contend on a Lock, a
//! Semaphore and a Queue while a controller cancels them at random, and
//! timeout scopes cancel them too.
//!
//! Invariants checked:
//! - no double grant: at most 1 holder of the lock, at most `PERMITS` of the
//!   semaphore, at every moment;
//! - no lost wake-up: every worker finishes well within its bound, and the
//!   primitives end with no waiter left and all permits back;
//! - items are conserved: put == got + left in the queue.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::Rng;
use tulip::{create_task, sleep, timeout, wait_for, Lock, Queue, Result, Semaphore};

const WORKERS: usize = 40;
const OPS: usize = 250;
const PERMITS: usize = 3;

#[derive(Default)]
struct Stats {
    in_lock: Cell<usize>,
    in_sem: Cell<usize>,
    max_lock: Cell<usize>,
    max_sem: Cell<usize>,
    put: Cell<usize>,
    got: Cell<usize>,
    cancels_seen: Cell<usize>,
    timeouts_seen: Cell<usize>,
}

async fn yield_n(n: u64) -> Result<()> {
    for _ in 0..n {
        sleep(0.0).await?;
    }
    Ok(())
}

async fn one_op(
    op: u64,
    spin: u64,
    lock: &Lock,
    sem: &Semaphore,
    q: &Queue<u64>,
    st: &Stats,
) -> Result<()> {
    match op {
        0 => {
            let _g = lock.acquire().await?;
            st.in_lock.set(st.in_lock.get() + 1);
            st.max_lock.set(st.max_lock.get().max(st.in_lock.get()));
            let r = yield_n(spin).await;
            st.in_lock.set(st.in_lock.get() - 1);
            r
        }
        1 => {
            let _p = sem.acquire().await?;
            st.in_sem.set(st.in_sem.get() + 1);
            st.max_sem.set(st.max_sem.get().max(st.in_sem.get()));
            let r = yield_n(spin).await;
            st.in_sem.set(st.in_sem.get() - 1);
            r
        }
        2 => {
            timeout(0.001 * spin as f64).run(q.put(spin)).await?;
            st.put.set(st.put.get() + 1);
            Ok(())
        }
        _ => {
            timeout(0.001 * spin as f64).run(q.get()).await?;
            st.got.set(st.got.get() + 1);
            Ok(())
        }
    }
}

fn run_stress(seed: u64) {
    tulip::run(async move {
        let lock = Lock::new();
        let sem = Semaphore::new(PERMITS);
        let q: Queue<u64> = Queue::new(4);
        let st = Rc::new(Stats::default());
        let mut rng = Rng(seed);
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let (lock, sem, q, st) = (lock.clone(), sem.clone(), q.clone(), st.clone());
            let mut rng = Rng(seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            workers.push(create_task(async move {
                for _ in 0..OPS {
                    let (op, spin) = (rng.below(4), rng.below(3));
                    match one_op(op, spin, &lock, &sem, &q, &st).await {
                        Ok(()) => {}
                        Err(e) if e.is_cancelled() => {
                            st.cancels_seen.set(st.cancels_seen.get() + 1)
                        }
                        Err(e) if e.is_timeout() => {
                            st.timeouts_seen.set(st.timeouts_seen.get() + 1)
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })?);
        }
        // The controller: random cancels until every worker is done.
        let mut cancels = 0;
        while workers.iter().any(|t| !t.done()) {
            yield_n(rng.below(3)).await?;
            let t = &workers[rng.below(WORKERS as u64) as usize];
            if t.cancel() {
                cancels += 1;
            }
            assert!(st.in_lock.get() <= 1, "double grant of the lock");
            assert!(st.in_sem.get() <= PERMITS, "semaphore over-granted");
        }
        for t in workers {
            // A lost wake-up would leave a worker hanging: bounded wait.
            match wait_for(t.clone(), 5.0).await {
                Ok(()) => {}
                Err(e) if e.is_cancelled() => {}
                Err(e) => panic!("worker failed: {e}"),
            }
        }
        assert!(
            cancels > 100,
            "the controller cancelled too little: {cancels}"
        );
        eprintln!(
            "seed {seed:#x}: cancels {cancels} seen {} timeouts {} put {} got {}",
            st.cancels_seen.get(),
            st.timeouts_seen.get(),
            st.put.get(),
            st.got.get()
        );
        assert!(st.cancels_seen.get() > 0 && st.timeouts_seen.get() > 0);
        assert_eq!(st.max_lock.get(), 1);
        assert!(st.max_sem.get() <= PERMITS && st.max_sem.get() >= 2);
        assert!(!lock.locked(), "lock leaked");
        assert!(!format!("{lock:?}").contains("waiters"), "{lock:?}");
        assert_eq!(sem.value(), PERMITS, "permits lost or duplicated");
        assert!(!format!("{sem:?}").contains("waiters"), "{sem:?}");
        assert!(!format!("{q:?}").contains("_getters") && !format!("{q:?}").contains("_putters"));
        assert_eq!(
            st.put.get(),
            st.got.get() + q.qsize(),
            "items not conserved"
        );
        assert!(st.got.get() > 100);
        Ok(())
    })
    .unwrap();
}

#[test]
fn stress_lock_semaphore_queue_with_random_cancels() {
    for seed in [0x5EED_0001, 0xDEAD_BEEF, 0x1234_5678_9ABC] {
        run_stress(seed);
    }
}
