//! Stress tests of the core: a million timers, eight threads of
//! `call_soon_threadsafe`, and 100k tasks cancelling each other.
//!
//! The full sizes run with `cargo test --release --test stress`; debug
//! builds (plain `cargo test`) divide them by [`DEBUG_SCALE`] to stay within
//! a few seconds on a small machine.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{stop_after, Rng};
use tulip::{EventLoop, TaskRef};

/// How much smaller the debug-build runs are.
const DEBUG_SCALE: usize = 4;

fn scaled(full: usize) -> usize {
    if cfg!(debug_assertions) {
        full / DEBUG_SCALE
    } else {
        full
    }
}

#[test]
fn a_million_timers_half_cancelled_keep_the_heap_bounded() {
    // conformance: T2 (at scale)
    let n = scaled(1_000_000);
    let lp = EventLoop::new().unwrap();
    let fired = Rc::new(Cell::new(0usize));
    let wrong = Rc::new(Cell::new(0usize));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = lp.time();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (f, w) = (fired.clone(), wrong.clone());
        // Even timers get cancelled: they count as "wrong" if they ever run.
        let cb = move || {
            if i % 2 == 0 {
                w.set(w.get() + 1)
            } else {
                f.set(f.get() + 1)
            }
        };
        handles.push(lp.call_at(start + rng.unit() * 0.05, cb).unwrap());
    }
    for h in handles.iter().step_by(2) {
        h.cancel();
    }
    let live_total = n / 2;
    drop(handles);
    assert_eq!(lp.scheduled_timer_count(), n);

    let mut iterations = 0usize;
    let mut peak_ratio: f64 = 0.0;
    let t0 = Instant::now();
    while fired.get() < live_total {
        assert!(t0.elapsed() < Duration::from_secs(60), "timers stalled");
        let live_before = live_total - fired.get();
        lp.run_once().unwrap();
        iterations += 1;
        let heap = lp.scheduled_timer_count();
        // After step 1, either the heap is small, or at most half of it is
        // cancelled, so it holds at most twice the live timers.
        let bound = (2 * live_before).max(tulip::event_loop::MIN_SCHEDULED_TIMER_HANDLES + 1);
        assert!(
            heap <= bound,
            "iteration {iterations}: {heap} timers in the heap for {live_before} live ones"
        );
        if live_before > 1000 {
            peak_ratio = peak_ratio.max(heap as f64 / live_before as f64);
        }
    }
    assert_eq!(fired.get(), live_total);
    assert_eq!(wrong.get(), 0);
    assert!(peak_ratio <= 2.0, "peak heap/live ratio {peak_ratio}");
    // Everything is gone once the last timer fired.
    lp.call_soon(|| ()).map(drop).unwrap();
    lp.run_once().unwrap();
    assert!(lp.scheduled_timer_count() <= tulip::event_loop::MIN_SCHEDULED_TIMER_HANDLES);
}

#[test]
fn timers_cancelled_while_the_loop_runs_are_swept() {
    // conformance: T2 (at scale): cancellations that happen during the run
    // (as with sleeps cut short) are counted and swept too.
    let n = scaled(200_000);
    let lp = EventLoop::new().unwrap();
    let start = lp.time();
    let mut rng = Rng(42);
    let handles: Rc<RefCell<Vec<tulip::TimerHandle>>> = Rc::new(RefCell::new(Vec::new()));
    let fired = Rc::new(Cell::new(0usize));
    for _ in 0..n {
        let f = fired.clone();
        let h = lp
            .call_at(start + 0.01 + rng.unit() * 0.05, move || f.set(f.get() + 1))
            .unwrap();
        handles.borrow_mut().push(h);
    }
    // A callback in the first iteration cancels 3 out of 4 timers.
    let hs = handles.clone();
    lp.call_soon(move || {
        for (i, h) in hs.borrow().iter().enumerate() {
            if i % 4 != 0 {
                h.cancel();
            }
        }
    })
    .map(drop)
    .unwrap();
    lp.run_once().unwrap();
    // The next iteration rebuilds the heap: only the live quarter is left.
    lp.call_soon(|| ()).map(drop).unwrap();
    lp.run_once().unwrap();
    let live = n.div_ceil(4);
    assert!(
        lp.scheduled_timer_count() <= live,
        "{} timers for {live} live ones",
        lp.scheduled_timer_count()
    );
    let t0 = Instant::now();
    while fired.get() < live {
        assert!(t0.elapsed() < Duration::from_secs(60), "timers stalled");
        lp.run_once().unwrap();
    }
    assert_eq!(fired.get(), live);
}

thread_local! {
    /// On the loop thread: the next sequence number expected from each sender.
    static NEXT: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

#[test]
fn call_soon_threadsafe_from_8_threads_loses_nothing() {
    // conformance: H1 (at scale)
    const THREADS: usize = 8;
    let per_thread = scaled(100_000);
    let lp = EventLoop::new().unwrap();
    NEXT.with(|n| *n.borrow_mut() = vec![0; THREADS]);
    TOTAL.with(|t| t.set(0));
    let out_of_order = Arc::new(AtomicBool::new(false));
    let start = Arc::new(std::sync::Barrier::new(THREADS));
    let senders: Vec<_> = (0..THREADS)
        .map(|tid| {
            let handle = lp.handle();
            let start = start.clone();
            let ooo = out_of_order.clone();
            std::thread::spawn(move || {
                start.wait();
                for seq in 0..per_thread {
                    let ooo = ooo.clone();
                    let _ = handle
                        .call_soon_threadsafe(move || {
                            let in_order = NEXT.with(|n| {
                                let mut n = n.borrow_mut();
                                let ok = n[tid] == seq;
                                n[tid] = seq + 1;
                                ok
                            });
                            if !in_order {
                                ooo.store(true, Ordering::Relaxed);
                            }
                            let total = TOTAL.with(|t| {
                                t.set(t.get() + 1);
                                t.get()
                            });
                            if total == THREADS * per_thread {
                                tulip::get_running_loop().unwrap().stop();
                            }
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    let (guard, timed_out) = stop_after(&lp, 60.0);
    lp.run_forever().unwrap();
    for s in senders {
        s.join().unwrap();
    }
    guard.cancel();
    assert!(!timed_out.get(), "calls were lost");
    assert_eq!(TOTAL.with(|t| t.get()), THREADS * per_thread);
    assert!(
        !out_of_order.load(Ordering::Relaxed),
        "a sender's calls ran out of order"
    );
    NEXT.with(|n| assert!(n.borrow().iter().all(|&x| x == per_thread)));
}

#[test]
fn tasks_cancelling_each_other_add_up() {
    // conformance: C1, C2 (at scale)
    let n = scaled(100_000);
    let lp = EventLoop::new().unwrap();
    let refs: Rc<RefCell<Vec<TaskRef>>> = Rc::new(RefCell::new(Vec::with_capacity(n)));
    // hit[i]: some cancel() of task i returned true.
    let hit: Rc<RefCell<Vec<bool>>> = Rc::new(RefCell::new(vec![false; n]));
    let lp1 = lp.clone();
    let (refs1, hit1) = (refs.clone(), hit.clone());
    let guard = lp.call_later(120.0, {
        let lp = lp.clone();
        move || lp.stop()
    });
    let (finished, cancelled) = lp
        .run_until_complete(async move {
            let mut tasks = Vec::with_capacity(n);
            for i in 0..n {
                let (refs, hit) = (refs1.clone(), hit1.clone());
                tasks.push(lp1.create_task(async move {
                    tulip::sleep(0.0).await?;
                    // Cancel another task: some are still pending, some done.
                    let target = (i * 7 + 1 + i / 3) % n;
                    if target != i {
                        let t = refs.borrow()[target].clone();
                        if t.cancel() {
                            hit.borrow_mut()[target] = true;
                        }
                    }
                    tulip::sleep(0.0).await?;
                    if i % 5 == 0 {
                        // A fifth of them also wait on a timer.
                        tulip::sleep(0.001).await?;
                    }
                    Ok(i)
                })?);
            }
            refs1.borrow_mut().extend(tasks.iter().map(|t| t.as_ref()));
            let (mut finished, mut cancelled) = (0usize, 0usize);
            for t in &tasks {
                t.wait_done().await?;
                if t.cancelled() {
                    cancelled += 1;
                } else {
                    assert_eq!(t.result()?, finished + cancelled);
                    finished += 1;
                }
            }
            Ok((finished, cancelled))
        })
        .expect("the tasks did not all finish within the guard time");
    guard.unwrap().cancel();
    assert_eq!(finished + cancelled, n);
    let hits = hit.borrow().iter().filter(|&&h| h).count();
    assert_eq!(
        cancelled, hits,
        "every accepted cancel ended its task cancelled"
    );
    assert!(
        cancelled > n / 10 && finished > n / 10,
        "{finished} finished, {cancelled} cancelled"
    );
    for (i, r) in refs.borrow().iter().enumerate() {
        assert!(r.done());
        assert_eq!(r.cancelled(), hit.borrow()[i], "task {i}");
    }
    assert!(lp.all_tasks().is_empty());
}

// conformance: L2, T2
#[test]
fn the_ready_queue_and_the_timer_heap_give_back_a_bursts_memory() {
    /// One iteration that waits for a timer 0.15 s away: the loop, idle
    /// for a while, gives a burst's memory back then.
    fn idle_once(lp: &EventLoop) {
        let _ = lp.call_later(0.15, || ()).unwrap();
        lp.run_once().unwrap();
    }
    // asyncio's `_ready` deque frees its blocks as it empties, and its
    // `_scheduled` list shrinks as the heap does. A million callbacks or
    // timers once must not hold their peak for the life of the loop (the
    // ready queue kept 16 MiB, the heap 32 MiB).
    if common::rerun_alone("the_ready_queue_and_the_timer_heap_give_back_a_bursts_memory") {
        return;
    }
    const N: usize = 1 << 20;
    let lp = EventLoop::new().unwrap();
    common::iterate(&lp);
    let before = common::heap_in_use();
    let ran = Rc::new(Cell::new(0usize));
    for _ in 0..N {
        let r = ran.clone();
        let _ = lp.call_soon(move || r.set(r.get() + 1)).unwrap();
    }
    common::iterate(&lp);
    assert_eq!(ran.get(), N);
    // The memory goes back when the loop next has nothing ready.
    idle_once(&lp);
    let kept = common::heap_in_use().saturating_sub(before);
    assert!(
        kept < 1 << 20,
        "the empty ready queue still holds {kept} bytes"
    );

    // Timers far in the future, all cancelled: the sweep empties the heap.
    let timers: Vec<_> = (0..N)
        .map(|_| lp.call_later(3600.0, || ()).unwrap())
        .collect();
    for t in &timers {
        t.cancel();
    }
    drop(timers);
    common::iterate(&lp);
    assert_eq!(lp.scheduled_timer_count(), 0);
    idle_once(&lp);
    let kept = common::heap_in_use().saturating_sub(before);
    assert!(
        kept < 4 << 20,
        "the empty timer heap still holds {kept} bytes"
    );
    lp.close().unwrap();
}
