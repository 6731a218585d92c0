//! Conformance of timers and sleep: T1–T4 (asyncio's test_base_events,
//! test_events and test_tasks). Iterations are counted with `run_once`.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{busy_callback, entries, log, push, soon};
use tulip::{Error, EventLoop, TimerHandle};

/// Runs iterations until `done` is true; returns how many it took.
/// Bounded: fails the test after `max` iterations.
fn iterations_until(lp: &EventLoop, done: &Rc<Cell<bool>>, max: u32) -> u32 {
    let mut n = 0;
    while !done.get() {
        assert!(n < max, "not done after {max} iterations");
        lp.run_once().unwrap();
        n += 1;
    }
    n
}

/// One `run_once` that does not wait in poll: a no-op callback is ready,
/// so the poll timeout is zero.
fn run_one_iteration(lp: &EventLoop) {
    soon(lp, || ());
    lp.run_once().unwrap();
}

/// A live head timer at 100 s and `n` more behind it, at 200 s, 201 s, ...
fn head_and_rest(lp: &EventLoop, n: usize) -> (TimerHandle, Vec<TimerHandle>) {
    let head = lp.call_later(100.0, || ()).unwrap();
    let rest = (0..n)
        .map(|i| lp.call_later(200.0 + i as f64, || ()).unwrap())
        .collect();
    (head, rest)
}

/// Checks that the loop counts no cancelled timer it no longer holds: with
/// exactly half of 200 new timers cancelled, the heap must not be rebuilt,
/// which a count drifted upwards would tip over half.
fn assert_no_drifted_cancel_count(lp: &EventLoop) {
    let (head, rest) = head_and_rest(lp, 199);
    for h in &rest[..100] {
        h.cancel(); // exactly half of 200: no rebuild
    }
    run_one_iteration(lp);
    assert_eq!(
        lp.scheduled_timer_count(),
        200,
        "rebuilt on a drifted count"
    );
    head.cancel();
    for h in &rest {
        h.cancel();
    }
}

// ===== T1 =====

// conformance: T1
#[test]
fn timers_fire_in_when_order_with_ties_in_scheduling_order() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let t = lp.time();
    let done = Rc::new(Cell::new(false));
    for (when, name) in [
        (0.030, "c"),
        (0.010, "a1"),
        (0.020, "b"),
        (0.010, "a2"),
        (0.010, "a3"),
        (0.030, "d"),
    ] {
        let l = l.clone();
        let _ = lp.call_at(t + when, move || push(&l, name)).unwrap();
    }
    let d = done.clone();
    let _ = lp.call_at(t + 0.031, move || d.set(true)).unwrap();
    iterations_until(&lp, &done, 10_000);
    assert_eq!(entries(&l), ["a1", "a2", "a3", "b", "c", "d"]);
}

// conformance: T1
#[test]
fn negative_delays_are_allowed_and_ordered() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    for (delay, name) in [(-1.0, "-1"), (-2.0, "-2"), (0.0, "0"), (-1.5, "-1.5")] {
        let l = l.clone();
        let _ = lp.call_later(delay, move || push(&l, name)).unwrap();
    }
    // Every one of them is due now: one iteration runs them all, in `when` order.
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["-2", "-1.5", "-1", "0"]);
}

// conformance: T1
#[test]
fn minus_zero_and_zero_are_the_same_deadline_so_ties_keep_scheduling_order() {
    // asyncio's heap compares `when`s with `<`, to which -0.0 and 0.0 are
    // equal: the timer scheduled first fires first, whichever zero it got.
    let lp = EventLoop::new().unwrap();
    let l = log();
    for (when, name) in [(0.0, "zero"), (-0.0, "minus zero"), (0.0, "zero again")] {
        let l = l.clone();
        let _ = lp.call_at(when, move || push(&l, name)).unwrap();
    }
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["zero", "minus zero", "zero again"]);
}

// conformance: T1
#[test]
fn call_later_accepts_durations_and_rejects_nan() {
    let lp = EventLoop::new().unwrap();
    let before = lp.time();
    let h = lp.call_later(Duration::from_millis(250), || ()).unwrap();
    assert!(h.when() >= before + 0.25 && h.when() < lp.time() + 0.25 + 1e-6);
    assert!(matches!(
        lp.call_later(f64::NAN, || ()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        lp.call_at(f64::NAN, || ()),
        Err(Error::InvalidArgument(_))
    ));
    h.cancel();
}

// conformance: T1
#[test]
fn a_burst_of_due_timers_runs_in_deadline_order_ties_in_scheduling_order() {
    // 1000 timers that are all due by the next iteration take run_once's
    // sort path (one sort instead of a heap pop each); the order must be
    // exactly the heap's: by deadline, ties by scheduling order. Every
    // third is cancelled, and none of those may run.
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(std::cell::RefCell::new(Vec::new()));
    let base = lp.time() - 1.0; // in the past: all due
    let mut expected = Vec::new();
    let mut handles = Vec::new();
    for i in 0..1000u32 {
        let when = base + f64::from((i * 7919) % 50) * 1e-3; // 50 distinct deadlines
        let r = ran.clone();
        handles.push(lp.call_at(when, move || r.borrow_mut().push(i)).unwrap());
        if i % 3 != 0 {
            expected.push((((i * 7919) % 50), i));
        }
    }
    for (i, h) in handles.iter().enumerate() {
        if i % 3 == 0 {
            h.cancel();
        }
    }
    expected.sort(); // by deadline, then by scheduling order
    let expected: Vec<u32> = expected.into_iter().map(|(_, i)| i).collect();
    lp.run_once().unwrap();
    assert_eq!(*ran.borrow(), expected);
    assert_eq!(lp.scheduled_timer_count(), 0);
    // The heap is empty and nothing is counted as cancelled any more: a new
    // timer behaves as on a fresh loop.
    let r = ran.clone();
    let _late = lp
        .call_later(0.0, move || r.borrow_mut().push(9999))
        .unwrap();
    lp.run_once().unwrap();
    assert_eq!(ran.borrow().last(), Some(&9999));
}

// conformance: T1
#[test]
fn when_many_but_not_all_timers_are_due_they_still_run_in_heap_order() {
    // 2000 timers in the past and 2000 due 20-70 ms from now. The first
    // iteration pops the due ones until it has taken 1/32 of the heap, then
    // takes the rest of them in one pass (split off, sort, heapify the
    // others). The order over all iterations must be exactly the heap's:
    // by deadline, ties by scheduling order; cancelled ones never run.
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(std::cell::RefCell::new(Vec::new()));
    let past = lp.time() - 1.0;
    let future = lp.time() + 0.020;
    let mut expected = Vec::new();
    let mut handles = Vec::new();
    for i in 0..4000u32 {
        let (base, slot) = if i % 2 == 0 { (past, 0) } else { (future, 1) };
        let tick = (i * 7919) % 50;
        let r = ran.clone();
        let when = base + f64::from(tick) * 1e-3;
        handles.push(lp.call_at(when, move || r.borrow_mut().push(i)).unwrap());
        if i % 3 != 0 {
            expected.push((slot, tick, i));
        }
    }
    for h in handles.iter().step_by(3) {
        h.cancel();
    }
    expected.sort(); // past before future, then deadline, then scheduling order
    let expected: Vec<u32> = expected.into_iter().map(|(_, _, i)| i).collect();
    let due_at_once = expected.iter().filter(|&&i| i % 2 == 0).count();

    lp.run_once().unwrap();
    assert!(
        ran.borrow().len() >= due_at_once,
        "the past ones all ran at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while lp.scheduled_timer_count() > 0 {
        assert!(Instant::now() < deadline, "timers still pending after 10 s");
        lp.run_once().unwrap();
    }
    assert_eq!(*ran.borrow(), expected);
}

// conformance: T1
#[test]
fn timer_handles_compare_by_when_and_equal_only_themselves() {
    // asyncio's TimerHandle orders by `when` (__lt__, __gt__), hashes by
    // `when`, and is equal to a handle with the same when, callback, args
    // and cancelled flag; __le__ is `<` or `==`. Closures cannot be
    // compared, so a handle equals only itself (and its clones).
    use std::cmp::Ordering;
    use std::collections::HashSet;
    let lp = EventLoop::new().unwrap();
    let early = lp.call_at(10.0, || ()).unwrap();
    let late = lp.call_at(20.0, || ()).unwrap();
    let tie = lp.call_at(10.0, || ()).unwrap();
    let same = early.clone();

    assert_eq!(
        [early < late, early <= late, early > late, early >= late],
        [true, true, false, false]
    );
    assert!(early != late);
    assert_eq!(early.partial_cmp(&late), Some(Ordering::Less));
    // The same `when`, another callback: neither equal nor ordered, as in
    // asyncio (a < b, a <= b, a > b, a >= b, a == b are all False).
    assert!(early != tie);
    assert_eq!(
        [early < tie, early <= tie, early > tie, early >= tie],
        [false; 4]
    );
    assert_eq!(early.partial_cmp(&tie), None);
    // A handle is equal to itself, cancelled or not.
    assert!(early == same && early <= same && early >= same);
    assert_eq!(early.partial_cmp(&same), Some(Ordering::Equal));
    early.cancel();
    assert!(early == same);

    // Hashable, by `when`: a set finds a handle by its clone.
    let set: HashSet<TimerHandle> = [early.clone(), late.clone(), tie.clone()].into();
    assert_eq!(set.len(), 3);
    assert!(set.contains(&same));
    late.cancel();
    tie.cancel();
}

// ===== T2 =====

// conformance: T2
#[test]
fn a_cancelled_timer_never_runs() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let l1 = l.clone();
    let h = lp.call_later(0.0, move || push(&l1, "cancelled")).unwrap();
    let l2 = l.clone();
    let _keep = lp.call_later(0.0, move || push(&l2, "kept")).unwrap();
    h.cancel();
    assert!(h.cancelled());
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["kept"]);

    // Cancelled after it became due but before it ran (same iteration).
    let l3 = l.clone();
    let victim = lp.call_later(0.0, move || push(&l3, "victim")).unwrap();
    let _canceller = {
        let victim = victim.clone();
        // Scheduled earlier (-1), so it runs first in the iteration.
        lp.call_later(-1.0, move || victim.cancel()).unwrap()
    };
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["kept"]);
    assert!(victim.cancelled());
}

// conformance: T2
#[test]
fn cancelled_timers_at_the_head_of_the_heap_are_popped() {
    let lp = EventLoop::new().unwrap();
    let far = lp.call_later(3600.0, || ()).unwrap();
    let heads: Vec<_> = (0..50)
        .map(|i| lp.call_later(10.0 + i as f64, || ()).unwrap())
        .collect();
    assert_eq!(lp.scheduled_timer_count(), 51);
    for h in &heads {
        h.cancel();
    }
    // Something ready, so the iteration does not block.
    run_one_iteration(&lp);
    assert_eq!(
        lp.scheduled_timer_count(),
        1,
        "the cancelled head was popped"
    );
    far.cancel();
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 0);
}

// conformance: T2
#[test]
fn cancelled_timers_popped_from_the_head_are_uncounted() {
    // asyncio's head-popping does `_timer_cancelled_count -= 1` for each
    // cancelled handle it pops: otherwise the count drifts upwards, and a
    // later heap is rebuilt while only half of it is cancelled.
    let lp = EventLoop::new().unwrap();
    let heads: Vec<_> = (0..50)
        .map(|i| lp.call_later(10.0 + i as f64, || ()).unwrap())
        .collect();
    for h in &heads {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 0, "all popped from the head");
    assert_no_drifted_cancel_count(&lp);
}

// conformance: T2
#[test]
fn the_heap_is_rebuilt_when_more_than_half_of_over_100_timers_are_cancelled() {
    let lp = EventLoop::new().unwrap();
    // The head stays live, so head-popping alone removes nothing.
    let (head, rest) = head_and_rest(&lp, 199);
    assert_eq!(lp.scheduled_timer_count(), 200);

    // Exactly half cancelled: not "more than half", no rebuild.
    for h in &rest[..100] {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 200);

    // One more: 101 of 200 cancelled, the heap is rebuilt.
    rest[100].cancel();
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 99);

    // The count of cancelled timers restarted from zero after the rebuild:
    // cancelling 40 more of 99 (not more than half) rebuilds nothing.
    for h in &rest[101..141] {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 99);

    // Cancelling twice counts once.
    for h in &rest[101..141] {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 99);
    head.cancel();
    for h in &rest {
        h.cancel();
    }
}

// conformance: T2
#[test]
fn a_rebuild_that_leaves_over_100_timers_restarts_the_cancelled_count() {
    // After a rebuild the heap holds only live timers, and none of them
    // counts as cancelled: asyncio's `_timer_cancelled_count = 0`. With
    // more than 100 timers left, a count kept from before would tip the
    // next iteration into another rebuild when few more are cancelled.
    let lp = EventLoop::new().unwrap();
    let (head, rest) = head_and_rest(&lp, 299);
    for h in &rest[..151] {
        h.cancel(); // 151 of 300: more than half
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 149, "rebuilt");
    // 10 of 149 cancelled: not more than half, so only head-popping,
    // which removes nothing behind the live head.
    for h in &rest[151..161] {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(
        lp.scheduled_timer_count(),
        149,
        "rebuilt again: the count of cancelled timers did not restart"
    );
    head.cancel();
    for h in &rest {
        h.cancel();
    }
}

// conformance: T2
#[test]
fn at_most_100_timers_are_never_rebuilt_only_popped() {
    let lp = EventLoop::new().unwrap();
    let (head, rest) = head_and_rest(&lp, 99);
    for h in &rest {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 100, "100 timers: no rebuild");
    head.cancel();
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 0, "all cancelled heads popped");
}

// conformance: T2
#[test]
fn cancelling_a_timer_that_already_fired_does_not_count_as_cancelled() {
    // Otherwise the cancelled-timer count would drift and trigger rebuilds
    // (or keep dead entries) at the wrong time.
    let lp = EventLoop::new().unwrap();
    let fired: Vec<_> = (0..150)
        .map(|_| lp.call_later(-1.0, || ()).unwrap())
        .collect();
    lp.run_once().unwrap();
    assert_eq!(lp.scheduled_timer_count(), 0);
    for h in &fired {
        h.cancel(); // too late: they ran
    }
    let (head, rest) = head_and_rest(&lp, 149);
    // 60 of 150 cancelled: with a drifted count (150 + 60) it would rebuild.
    for h in &rest[..60] {
        h.cancel();
    }
    run_one_iteration(&lp);
    assert_eq!(lp.scheduled_timer_count(), 150);
    head.cancel();
    for h in &rest {
        h.cancel();
    }
}

// conformance: T2
#[test]
fn a_cancelled_timer_leaving_the_heap_as_due_is_uncounted() {
    // The cancelled timer is not at the head in step 1 (a live one is
    // earlier), so it leaves the heap in step 4 with the due timers. It must
    // stop counting as "cancelled in the heap", or the count drifts and a
    // later heap is rebuilt while only half of it is cancelled.
    let lp = EventLoop::new().unwrap();
    let _live = lp.call_later(-2.0, || ()).unwrap();
    let cancelled = lp.call_later(-1.0, || panic!("cancelled")).unwrap();
    cancelled.cancel();
    lp.run_once().unwrap();
    assert_eq!(lp.scheduled_timer_count(), 0);
    assert_no_drifted_cancel_count(&lp);
}

// conformance: T2
#[test]
fn a_due_timer_cancelled_before_its_turn_neither_runs_nor_stays_counted() {
    // Both timers are due in the same iteration; the first cancels the
    // second while it waits in the ready queue. It must not run, and once
    // the iteration is over it must no longer count as a cancelled timer
    // the loop holds, or a later heap is rebuilt while only half cancelled.
    let lp = EventLoop::new().unwrap();
    let victim: Rc<std::cell::RefCell<Option<TimerHandle>>> = Rc::default();
    let v = victim.clone();
    let _first = lp
        .call_later(-2.0, move || v.borrow().as_ref().unwrap().cancel())
        .unwrap();
    *victim.borrow_mut() = Some(lp.call_later(-1.0, || panic!("cancelled")).unwrap());
    lp.set_exception_handler(Some(|_: &EventLoop, c: &tulip::ExceptionContext| {
        panic!("unexpected: {c}")
    }));
    lp.run_once().unwrap();
    assert_eq!(lp.scheduled_timer_count(), 0);
    assert_no_drifted_cancel_count(&lp);
}

// conformance: T2
#[test]
fn due_timers_an_interrupt_left_in_the_ready_queue_are_not_counted_as_cancelled() {
    // asyncio's step 4 clears `_scheduled` on every timer it moves to
    // `_ready`, and `TimerHandle.cancel` counts only a `_scheduled` one: an
    // interrupt that cuts the run short leaves due timers in `_ready`,
    // which count neither then nor when cancelled afterwards.
    let lp = EventLoop::new().unwrap();
    let _interrupt = lp.call_later(-2.0, || tulip::interrupt()).unwrap();
    let left: Vec<_> = (0..150)
        .map(|_| lp.call_later(-1.0, || panic!("cancelled")).unwrap())
        .collect();
    for h in &left[..75] {
        h.cancel(); // in the heap: counted, until step 4 takes it out
    }
    assert!(matches!(lp.run_once(), Err(Error::Interrupted)));
    assert_eq!(lp.scheduled_timer_count(), 0);
    assert_eq!(
        lp.ready_count(),
        150,
        "the due timers wait in the ready queue"
    );
    for h in &left[75..] {
        h.cancel(); // in the ready queue: not counted
    }
    assert_no_drifted_cancel_count(&lp);
}

// ===== T3 =====

// conformance: T3
#[test]
fn a_tiny_timer_does_not_busy_spin() {
    let lp = EventLoop::new().unwrap();
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let _t = lp.call_later(1e-6, move || d.set(true)).unwrap();
    let n = iterations_until(&lp, &done, 1000);
    assert!(n <= 3, "a 1e-6 s timer took {n} iterations");

    // A 2 ms timer: the poll sleeps for it instead of spinning.
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let _t = lp.call_later(0.002, move || d.set(true)).unwrap();
    let n = iterations_until(&lp, &done, 1000);
    assert!(n <= 3, "a 2 ms timer took {n} iterations");
}

// conformance: T3
#[test]
fn a_tiny_sleep_takes_only_a_few_iterations() {
    // The task starts on the running loop (sleep needs it to make its
    // timer); then the loop is stepped by hand and the iterations counted.
    let lp = EventLoop::new().unwrap();
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let _task = lp
        .create_task(async move {
            tulip::sleep(1e-6).await?;
            d.set(true);
            Ok(())
        })
        .unwrap();
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    lp.run_forever().unwrap(); // one iteration: the task made its timer
    assert!(!done.get());
    assert_eq!(lp.scheduled_timer_count(), 1);
    // The timer fires, then the woken task resumes (off the running loop its
    // wake-up takes the thread-safe path, one more iteration).
    let n = iterations_until(&lp, &done, 1000);
    assert!(n <= 4, "a 1e-6 s sleep took {n} iterations");
}

// conformance: T3
#[test]
fn the_poll_timeout_is_the_time_to_the_earliest_live_timer() {
    let lp = EventLoop::new().unwrap();
    // A cancelled timer earlier than the live one must not wake the poll.
    let early = lp.call_later(0.01, || panic!("cancelled")).unwrap();
    early.cancel();
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let _t = lp.call_later(0.15, move || d.set(true)).unwrap();
    let t0 = Instant::now();
    let n = iterations_until(&lp, &done, 1000);
    let took = t0.elapsed();
    assert_eq!(n, 1, "one poll, sleeping until the live timer");
    assert!(took >= Duration::from_millis(140), "woke early: {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "slept far too long: {took:?}"
    );
}

// conformance: T3
#[test]
fn the_poll_timeout_is_capped_at_24_hours() {
    // A timer centuries away: the timeout is capped (an uncapped one would
    // overflow the Duration and the epoll timeout). Another thread wakes
    // the blocked poll after 50 ms.
    let lp = EventLoop::new().unwrap();
    assert_eq!(tulip::event_loop::MAXIMUM_SELECT_TIMEOUT, 24.0 * 3600.0);
    let far = lp.call_at(1e300, || panic!("never")).unwrap();
    let inf = lp.call_at(f64::INFINITY, || panic!("never")).unwrap();
    let handle = lp.handle();
    let waker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let _ = handle.call_soon_threadsafe(|| ()).unwrap();
    });
    let t0 = Instant::now();
    // The iteration blocks in poll until the thread's call arrives.
    lp.run_once().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    waker.join().unwrap();
    far.cancel();
    inf.cancel();
}

// conformance: T3
#[test]
fn timers_due_within_the_clock_resolution_fire_in_the_same_iteration() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let when = lp.time() + 0.02;
    for name in ["x", "y"] {
        let l = l.clone();
        let _ = lp.call_at(when, move || push(&l, name)).unwrap();
    }
    // 0.1 ns later: within the clock resolution of `when`. (The real clock
    // can't be stopped between the two, so this shows that timers that are
    // due together are moved to the ready queue together, in one pass.)
    let l1 = l.clone();
    let _ = lp.call_at(when + 1e-10, move || push(&l1, "z")).unwrap();
    let mut n = 0;
    while l.borrow().is_empty() {
        lp.run_once().unwrap();
        n += 1;
        assert!(n < 1000);
    }
    assert_eq!(entries(&l), ["x", "y", "z"], "all fired in one iteration");
    // A timer due right now fires on the very next iteration.
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let _ = lp.call_at(lp.time(), move || d.set(true)).unwrap();
    assert_eq!(iterations_until(&lp, &done, 10), 1);
}

// conformance: T3
#[test]
fn timers_fire_on_time_while_callbacks_keep_the_loop_busy() {
    // Polls are skipped under load (IO_POLL_INTERVAL), timers are not.
    let lp = EventLoop::new().unwrap();
    let _count = busy_callback(&lp);
    let fired_after = Rc::new(Cell::new(None));
    let f = fired_after.clone();
    let t0 = Instant::now();
    let _t = lp
        .call_later(0.02, move || f.set(Some(t0.elapsed())))
        .unwrap();
    while fired_after.get().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the timer never fired"
        );
        lp.run_once().unwrap();
    }
    let took = fired_after.get().unwrap();
    assert!(took >= Duration::from_millis(19), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

// ===== T4 =====

// conformance: T4
#[test]
fn sleep_zero_yields_exactly_once() {
    // The task schedules c1 and then yields. In the next iteration c1 runs
    // (it was queued first), then the task resumes; c1's follow-up c2 runs an
    // iteration later. Yielding twice would put c2 before "resumed".
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    lp.run_until_complete(async move {
        let (l2, lp2) = (l1.clone(), lp1.clone());
        soon(&lp1, move || {
            push(&l2, "c1");
            let l3 = l2.clone();
            soon(&lp2, move || push(&l3, "c2"));
        });
        tulip::sleep(0.0).await?;
        push(&l1, "resumed");
        tulip::sleep(0.0).await?;
        tulip::sleep(0.0).await?;
        Ok(())
    })
    .unwrap();
    assert_eq!(entries(&l), ["c1", "resumed", "c2"]);
}

// conformance: T4
#[test]
fn sleep_zero_reschedules_the_task_after_its_whole_step() {
    // asyncio's __step calls `call_soon(self.__step)` for a bare yield once
    // `coro.send()` has returned: what the same step schedules after the
    // yield point (here a body that goes on after polling sleep(0)) runs
    // before the task's next step.
    use std::future::Future as _;
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    lp.run_until_complete(async move {
        let mut nap = Box::pin(tulip::sleep(0.0));
        let mut first = true;
        std::future::poll_fn(|cx| {
            let polled = nap.as_mut().poll(cx);
            if std::mem::take(&mut first) {
                assert!(polled.is_pending(), "sleep(0) yields once");
                let l2 = l1.clone();
                soon(&lp1, move || push(&l2, "scheduled in the same step"));
                return std::task::Poll::Pending;
            }
            polled
        })
        .await?;
        push(&l1, "resumed");
        Ok(())
    })
    .unwrap();
    assert_eq!(entries(&l), ["scheduled in the same step", "resumed"]);
}

// conformance: T4
#[test]
fn sleep_zero_interleaves_tasks_round_robin() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    lp.run_until_complete(async move {
        let mut tasks = Vec::new();
        for name in ["a", "b", "c"] {
            let l = l1.clone();
            tasks.push(lp1.create_task(async move {
                for i in 0..3 {
                    push(&l, format!("{name}{i}"));
                    tulip::sleep(0.0).await?;
                }
                Ok(())
            })?);
        }
        for t in tasks {
            t.await?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(
        entries(&l),
        ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]
    );
}

// conformance: T4
#[test]
fn sleep_zero_under_a_combinators_own_waker_wakes_that_waker() {
    // tulip's sleep(0) normally skips the waker: the task step reschedules
    // itself, as asyncio's bare `yield` does. A combinator that polls its
    // children with wakers of its own (to learn *which* child is ready) must
    // still see its waker woken, or it would never poll that child again.
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Counting(Waker, AtomicUsize);
    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.wake_by_ref();
        }
    }
    /// Polls `inner` with its own waker, and only after that waker fired.
    struct OwnWaker<F> {
        inner: std::pin::Pin<Box<F>>,
        mine: Option<Arc<Counting>>,
        polls: usize,
    }
    impl<F: std::future::Future> std::future::Future for OwnWaker<F> {
        type Output = (F::Output, usize, usize);
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = &mut *self;
            if let Some(m) = &this.mine {
                if m.1.load(Ordering::SeqCst) < this.polls {
                    return Poll::Pending; // not woken: don't poll the child
                }
            }
            let mine = this
                .mine
                .get_or_insert_with(|| Arc::new(Counting(cx.waker().clone(), AtomicUsize::new(0))))
                .clone();
            this.polls += 1;
            let waker = Waker::from(mine.clone());
            match this.inner.as_mut().poll(&mut Context::from_waker(&waker)) {
                Poll::Ready(v) => Poll::Ready((v, this.polls, mine.1.load(Ordering::SeqCst))),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    let lp = EventLoop::new().unwrap();
    let stopper = lp.clone();
    // Bounded: without the wake, the task would hang forever.
    let _guard = lp.call_later(5.0, move || stopper.stop()).unwrap();
    let (res, polls, wakes) = lp
        .run_until_complete(async {
            Ok(OwnWaker {
                inner: Box::pin(tulip::sleep(0.0)),
                mine: None,
                polls: 0,
            }
            .await)
        })
        .unwrap();
    res.unwrap();
    assert_eq!(
        (polls, wakes),
        (2, 1),
        "one yield, one wake of the combinator's waker"
    );
}

// conformance: T4
#[test]
fn a_negative_sleep_acts_as_sleep_zero() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    let timers_before = lp.scheduled_timer_count();
    lp.run_until_complete(async move {
        let (l2, lp2) = (l1.clone(), lp1.clone());
        soon(&lp1, move || {
            push(&l2, "c1");
            let l3 = l2.clone();
            soon(&lp2, move || push(&l3, "c2"));
        });
        tulip::sleep(-5.0).await?;
        push(&l1, "resumed");
        assert_eq!(lp1.scheduled_timer_count(), 0, "no timer for sleep(<=0)");
        tulip::sleep(0.0).await?;
        Ok(())
    })
    .unwrap();
    assert_eq!(entries(&l), ["c1", "resumed", "c2"]);
    assert_eq!(timers_before, 0);
}

// conformance: T4
#[test]
fn a_nan_sleep_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let err = lp
        .run_until_complete(async { tulip::sleep(f64::NAN).await })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

// conformance: T4
#[test]
fn sleep_waits_at_least_its_delay() {
    let lp = EventLoop::new().unwrap();
    let t0 = Instant::now();
    lp.run_until_complete(async {
        tulip::sleep(0.05).await?;
        tulip::sleep(Duration::from_millis(50)).await
    })
    .unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A finished sleep leaves no timer behind.
    assert_eq!(lp.scheduled_timer_count(), 0);
}

/// asyncio's `TimerHandle.__repr__`: `<TimerHandle when=… callback …>`
/// while live, `<TimerHandle cancelled when=…>` once cancelled (the
/// callback is gone).
#[test]
fn timer_handle_debug_reads_like_asyncios_repr() {
    fn tick() {}
    let lp = EventLoop::new().unwrap();
    let t = lp.call_at(12.5, tick).unwrap();
    let live = format!("{t:?}");
    assert!(live.starts_with("<TimerHandle when=12.500000 "), "{live}");
    assert!(live.contains("tick"), "{live}");
    t.cancel();
    let gone = format!("{t:?}");
    assert!(
        gone.starts_with("<TimerHandle cancelled when=12.500000 created at "),
        "{gone}"
    );
    assert!(!gone.contains("tick"), "{gone}");
    lp.close().unwrap();
}
