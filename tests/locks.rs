//! Conformance tests for the locks: Lock, Condition, Semaphore,
//! BoundedSemaphore, Event, Barrier (S1–S4), including the cancellation races.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::settle;
use tulip::{
    create_task, sleep, Barrier, BoundedSemaphore, Condition, Error, Event, Lock, Semaphore, Task,
};

// ===== S1 Lock =====

#[test]
fn lock_grants_in_fifo_order() {
    // conformance: S1
    common::run_watched(async {
        let lock = Lock::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        let guard = lock.acquire().await?;
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (lock, order) = (lock.clone(), order.clone());
            tasks.push(create_task(async move {
                let _g = lock.acquire().await?;
                order.borrow_mut().push(i);
                sleep(0.0).await
            })?);
            sleep(0.0).await?; // queue them in order
        }
        drop(guard);
        for t in tasks {
            t.await?;
        }
        assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
        assert!(!lock.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn lock_release_grants_at_most_once_newcomer_waits() {
    // conformance: S1
    common::run_watched(async {
        let lock = Lock::new();
        let holders = Rc::new(Cell::new(0));
        let max = Rc::new(Cell::new(0));
        let g = lock.acquire().await?;
        let spawn = |lock: Lock, holders: Rc<Cell<i32>>, max: Rc<Cell<i32>>| {
            create_task(async move {
                let _g = lock.acquire().await?;
                holders.set(holders.get() + 1);
                max.set(max.get().max(holders.get()));
                sleep(0.0).await?;
                holders.set(holders.get() - 1);
                Ok(())
            })
        };
        let a = spawn(lock.clone(), holders.clone(), max.clone())?;
        sleep(0.0).await?;
        lock.release()?; // the waiter is woken, but has not run yet
        g.forget();
        assert!(!lock.locked());
        // A newcomer must not overtake the woken waiter.
        assert!(lock.try_acquire().is_none());
        let b = spawn(lock.clone(), holders.clone(), max.clone())?;
        a.await?;
        b.await?;
        assert_eq!(max.get(), 1);
        // Releasing an unlocked lock is an error that says how release()
        // is used.
        match lock.release() {
            Err(tulip::Error::Runtime(m)) => {
                assert!(m.starts_with("lock is not acquired: "), "{m}");
                assert!(m.contains("LockGuard::forget"), "{m}");
            }
            other => panic!("expected a Runtime error, got {other:?}"),
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn lock_release_wakes_only_the_first_of_several_waiters() {
    // conformance: S1
    // asyncio's release() calls `_wake_up_first()`: one waiter per release,
    // so with several queued, each holds the lock alone.
    common::run_watched(async {
        let lock = Lock::new();
        let holders = Rc::new(Cell::new(0));
        let max = Rc::new(Cell::new(0));
        let g = lock.acquire().await?;
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (lock, holders, max) = (lock.clone(), holders.clone(), max.clone());
            tasks.push(create_task(async move {
                let _g = lock.acquire().await?;
                holders.set(holders.get() + 1);
                max.set(max.get().max(holders.get()));
                sleep(0.0).await?;
                holders.set(holders.get() - 1);
                Ok(())
            })?);
        }
        settle().await?;
        drop(g);
        for t in tasks {
            t.await?;
        }
        assert_eq!(max.get(), 1, "two tasks held the lock at once");
        assert!(!lock.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn lock_acquire_after_a_release_waits_behind_the_woken_waiter() {
    // conformance: S1
    // asyncio's acquire() takes the fast path only when no waiter is
    // queued (`not self._locked and (self._waiters is None or
    // all(w.cancelled() for w in self._waiters))`): a newcomer calling
    // acquire() (not just try_acquire) between a release and the woken
    // waiter's run must queue behind it, not take the lock beside it.
    common::run_watched(async {
        let lock = Lock::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        let g = lock.acquire().await?;
        let (l2, o2) = (lock.clone(), order.clone());
        let a = create_task(async move {
            let _g = l2.acquire().await?;
            o2.borrow_mut().push("a");
            sleep(0.0).await?;
            o2.borrow_mut().push("a done");
            Ok(())
        })?;
        settle().await?;
        drop(g); // wakes a, which has not run yet
        let g = lock.acquire().await?; // a releases it after one step
        order.borrow_mut().push("main");
        drop(g);
        a.await?;
        assert_eq!(*order.borrow(), vec!["a", "a done", "main"]);
        assert!(!lock.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn lock_woken_then_cancelled_waiter_hands_lock_on() {
    // conformance: S1
    common::run_watched(async {
        let lock = Lock::new();
        let g = lock.acquire().await?;
        let (l2, l3) = (lock.clone(), lock.clone());
        let t2 = create_task(async move { l2.acquire().await.map(|g| g.forget()) })?;
        let t3 = create_task(async move {
            let _g = l3.acquire().await?;
            Ok("t3 got it")
        })?;
        settle().await?;
        drop(g); // wakes t2...
        t2.cancel(); // ...which is cancelled before it runs
        assert_eq!(tulip::wait_for(t3, 1.0).await?, "t3 got it");
        t2.wait_done().await?;
        assert!(t2.cancelled());
        assert!(!lock.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn lock_cancelled_waiter_is_removed() {
    // conformance: S1
    common::run_watched(async {
        let lock = Lock::new();
        let g = lock.acquire().await?;
        let l2 = lock.clone();
        let t = create_task(async move { l2.acquire().await.map(|_| ()) })?;
        settle().await?;
        t.cancel();
        t.wait_done().await?;
        assert!(format!("{lock:?}").ends_with("[locked]>"), "{lock:?}");
        drop(g);
        // Nobody is queued: the fast path takes it.
        assert!(lock.try_acquire().is_some());
        Ok(())
    })
    .unwrap();
}

// ===== S2 Condition =====

#[test]
fn condition_wait_reacquires_before_reraising_cancel() {
    // conformance: S2
    common::run_watched(async {
        let cond = Condition::new();
        let c2 = cond.clone();
        let seen = Rc::new(RefCell::new(None));
        let s = seen.clone();
        let t = create_task(async move {
            let g = c2.acquire().await?;
            let r = c2.wait().await;
            // The lock is held again when the error comes back.
            *s.borrow_mut() = Some((r.as_ref().err().cloned(), c2.locked()));
            drop(g);
            r
        })?;
        settle().await?;
        // Hold the lock while cancelling: the waiter must wait for it.
        let g = cond.acquire().await?;
        t.cancel_with("stop");
        settle().await?;
        assert!(seen.borrow().is_none(), "returned without the lock");
        drop(g);
        t.wait_done().await?;
        let (err, locked) = seen.borrow_mut().take().unwrap();
        let err = err.unwrap();
        assert!(err.is_cancelled());
        assert_eq!(err.cancel_message(), Some("stop"), "the same Cancelled");
        assert!(locked);
        assert!(!cond.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn condition_notify_n_and_all() {
    // conformance: S2
    common::run_watched(async {
        let cond = Condition::new();
        let woken = Rc::new(Cell::new(0));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (c, w) = (cond.clone(), woken.clone());
            tasks.push(create_task(async move {
                let _g = c.acquire().await?;
                c.wait().await?;
                w.set(w.get() + 1);
                Ok(())
            })?);
        }
        settle().await?;
        assert!(cond.notify(1).is_err(), "notify needs the lock");
        {
            let _g = cond.acquire().await?;
            cond.notify(2)?;
        }
        settle().await?;
        assert_eq!(woken.get(), 2);
        {
            let _g = cond.acquire().await?;
            cond.notify_all()?;
        }
        for t in tasks {
            t.await?;
        }
        assert_eq!(woken.get(), 5);
        Ok(())
    })
    .unwrap();
}

#[test]
fn condition_notify_skips_waiters_already_notified() {
    // conformance: S2
    // asyncio's `_notify(n)` counts only waiters not yet done: two
    // notify(1) calls before anyone runs wake two waiters, oldest first.
    common::run_watched(async {
        let cond = Condition::new();
        let order = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (c, o) = (cond.clone(), order.clone());
            tasks.push(create_task(async move {
                let _g = c.acquire().await?;
                c.wait().await?;
                o.borrow_mut().push(i);
                Ok(())
            })?);
            settle().await?; // queue them in order
        }
        {
            let _g = cond.acquire().await?;
            cond.notify(1)?;
            cond.notify(1)?;
        }
        settle().await?;
        assert_eq!(*order.borrow(), vec![0, 1]);
        {
            let _g = cond.acquire().await?;
            cond.notify(1)?;
        }
        for t in tasks {
            tulip::wait_for(t, 1.0).await?;
        }
        assert_eq!(*order.borrow(), vec![0, 1, 2]);
        Ok(())
    })
    .unwrap();
}

/// Two tasks wait on a condition; a notify reaches the first, which is
/// then cancelled: before it runs, or (`while_reacquiring`) once it runs
/// and waits for the lock the notifier holds. Either way the notify must
/// go on to the second waiter (asyncio's Condition.wait: `except
/// BaseException: self._notify(1)`).
fn notified_then_cancelled_passes_notify_on(while_reacquiring: bool) {
    common::run_watched(async move {
        let cond = Condition::new();
        let mk = |c: Condition| {
            create_task(async move {
                let _g = c.acquire().await?;
                c.wait().await
            })
        };
        let a = mk(cond.clone())?;
        let b = mk(cond.clone())?;
        settle().await?;
        {
            let _g = cond.acquire().await?;
            cond.notify(1)?; // reaches a
            if while_reacquiring {
                settle().await?; // a runs and waits for the lock we hold
                a.cancel();
                settle().await?;
            } else {
                a.cancel(); // before a runs
            }
        }
        a.wait_done().await?;
        assert!(a.cancelled());
        // No notify is lost: b is woken instead.
        tulip::wait_for(b.clone(), 1.0).await?;
        assert!(!cond.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn condition_notified_then_cancelled_passes_notify_on() {
    // conformance: S2
    notified_then_cancelled_passes_notify_on(false);
}

#[test]
fn condition_notified_then_cancelled_while_reacquiring_passes_notify_on() {
    // conformance: S2
    notified_then_cancelled_passes_notify_on(true);
}

#[test]
fn condition_wait_for_predicate() {
    // conformance: S2
    common::run_watched(async {
        let cond = Condition::new();
        let value = Rc::new(Cell::new(0));
        let (c, v) = (cond.clone(), value.clone());
        let t = create_task(async move {
            let _g = c.acquire().await?;
            c.wait_for(|| v.get() >= 3).await?;
            Ok(v.get())
        })?;
        for _ in 0..3 {
            sleep(0.001).await?;
            let _g = cond.acquire().await?;
            value.set(value.get() + 1);
            cond.notify_all()?;
        }
        assert_eq!(t.await?, 3);
        Ok(())
    })
    .unwrap();
}

// ===== S3 Semaphore, BoundedSemaphore, Event =====

#[test]
fn semaphore_is_fifo_and_counts() {
    // conformance: S3
    common::run_watched(async {
        let sem = Semaphore::new(2);
        let order = Rc::new(RefCell::new(Vec::new()));
        let p1 = sem.acquire().await?;
        let p2 = sem.acquire().await?;
        assert!(sem.locked());
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (s, o) = (sem.clone(), order.clone());
            tasks.push(create_task(async move {
                let _p = s.acquire().await?;
                o.borrow_mut().push(i);
                sleep(0.001).await
            })?);
            sleep(0.0).await?;
        }
        drop(p1);
        drop(p2);
        for t in tasks {
            t.await?;
        }
        assert_eq!(*order.borrow(), vec![0, 1, 2, 3]);
        assert_eq!(sem.value(), 2);
        Ok(())
    })
    .unwrap();
}

#[test]
fn semaphore_newcomer_waits_behind_a_granted_waiter_even_with_a_free_permit() {
    // conformance: S3
    // asyncio's `locked()` is `value == 0 or any(not w.cancelled() for w in
    // waiters)`: a granted waiter that has not run yet still counts, so a
    // newcomer queues behind it even though a permit is free (FIFO).
    common::run_watched(async {
        let sem = Semaphore::new(2);
        let order = Rc::new(RefCell::new(Vec::new()));
        let p1 = sem.acquire().await?;
        let p2 = sem.acquire().await?;
        let (s, o) = (sem.clone(), order.clone());
        let a = create_task(async move {
            let _p = s.acquire().await?;
            o.borrow_mut().push("a");
            Ok(())
        })?;
        settle().await?;
        drop(p1); // grants a, which has not run yet
        drop(p2); // a free permit, nobody left to grant it to
        assert_eq!(sem.value(), 1);
        assert!(sem.locked(), "a granted waiter is still queued");
        let _p = sem.acquire().await?; // waits until a has run
        order.borrow_mut().push("main");
        a.await?;
        assert_eq!(*order.borrow(), vec!["a", "main"]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn semaphore_woken_then_cancelled_passes_permit_on() {
    // conformance: S3
    common::run_watched(async {
        let sem = Semaphore::new(1);
        let p = sem.acquire().await?;
        let (s2, s3) = (sem.clone(), sem.clone());
        let t2: Task<()> = create_task(async move { s2.acquire().await.map(|p| p.forget()) })?;
        let t3 = create_task(async move { s3.acquire().await.map(|_| "t3") })?;
        settle().await?;
        drop(p);
        t2.cancel();
        assert_eq!(tulip::wait_for(t3, 1.0).await?, "t3");
        assert!(t2.cancelled() || t2.wait_done_cancelled().await);
        assert_eq!(sem.value(), 1, "no permit lost or duplicated");
        Ok(())
    })
    .unwrap();
}

trait DoneCancelled {
    async fn wait_done_cancelled(&self) -> bool;
}
impl<T: 'static> DoneCancelled for Task<T> {
    async fn wait_done_cancelled(&self) -> bool {
        let _ = self.wait_done().await;
        self.cancelled()
    }
}

#[test]
fn bounded_semaphore_release_beyond_initial_is_error() {
    // conformance: S3
    common::run_watched(async {
        let sem = BoundedSemaphore::new(2);
        let p = sem.acquire().await?;
        drop(p);
        assert_eq!(sem.value(), 2);
        let e = sem.release().unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert_eq!(sem.value(), 2);
        // A plain Semaphore may grow.
        let s = Semaphore::new(1);
        s.release()?;
        assert_eq!(s.value(), 2);
        Ok(())
    })
    .unwrap();
}

/// A permit dropped over a BoundedSemaphore's bound (the semaphore was
/// also released by hand) is not silent: asyncio's `async with` raises the
/// ValueError from `__aexit__`; a drop cannot, so it is reported.
#[test]
fn a_permit_dropped_over_the_bound_is_reported() {
    // conformance: S3
    common::run_watched(async {
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let sem = BoundedSemaphore::new(1);
        let permit = sem.acquire().await?;
        sem.release()?; // by hand: the value is back at the bound
        drop(permit);
        assert_eq!(sem.value(), 1, "never over the bound");
        let reports = reports.borrow();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(matches!(reports[0].error, Some(Error::InvalidArgument(_))));
        Ok(())
    })
    .unwrap();
}

#[test]
fn event_set_then_clear_still_wakes_waiters() {
    // conformance: S3
    common::run_watched(async {
        let ev = Event::new();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let e = ev.clone();
            tasks.push(create_task(async move { e.wait().await })?);
        }
        settle().await?;
        ev.set();
        ev.clear();
        for t in tasks {
            tulip::wait_for(t, 1.0).await?;
        }
        assert!(!ev.is_set());
        // A new waiter now blocks.
        let e = ev.clone();
        let r = tulip::wait_for(async move { e.wait().await }, 0.01).await;
        assert!(r.unwrap_err().is_timeout());
        Ok(())
    })
    .unwrap();
}

// ===== S4 Barrier =====

#[test]
fn barrier_passes_parties_in_phases() {
    // conformance: S4
    common::run_watched(async {
        let b = Barrier::new(3);
        for phase in 0..3 {
            let mut tasks = Vec::new();
            for _ in 0..3 {
                let b = b.clone();
                tasks.push(create_task(async move { b.wait().await })?);
            }
            settle().await?;
            let mut idx = Vec::new();
            for t in tasks {
                idx.push(t.await?);
            }
            idx.sort();
            assert_eq!(idx, vec![0, 1, 2], "phase {phase}");
            assert_eq!(b.n_waiting(), 0);
        }
        assert_eq!(b.parties(), 3);
        // Two waiting: n_waiting counts them.
        let t1 = create_task({
            let b = b.clone();
            async move { b.wait().await }
        })?;
        let t2 = create_task({
            let b = b.clone();
            async move { b.wait().await }
        })?;
        settle().await?;
        assert_eq!(b.n_waiting(), 2);
        b.wait().await?;
        t1.await?;
        t2.await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn barrier_newcomer_blocks_while_the_barrier_drains() {
    // conformance: S4
    // asyncio's `_block()`: a task arriving while the previous phase is
    // still draining waits for it to empty, and then counts toward the
    // next phase; it never joins the phase that is leaving.
    common::run_watched(async {
        let b = Barrier::new(3);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let b = b.clone();
            tasks.push(create_task(async move { b.wait().await })?);
        }
        settle().await?;
        let done = tasks.iter().filter(|t| t.done()).count();
        assert_eq!(done, 3, "the fourth task passed with the draining phase");
        assert_eq!(b.n_waiting(), 1);
        let last = tasks.pop().unwrap();
        assert!(!last.done());
        let mut idx = Vec::new();
        for t in tasks {
            idx.push(t.await?);
        }
        idx.sort();
        assert_eq!(idx, vec![0, 1, 2]);
        // The fourth opens the next phase: two more complete it.
        let (b1, b2) = (b.clone(), b.clone());
        let t1 = create_task(async move { b1.wait().await })?;
        let t2 = create_task(async move { b2.wait().await })?;
        assert_eq!(tulip::wait_for(last, 1.0).await?, 0);
        tulip::wait_for(t1, 1.0).await?;
        tulip::wait_for(t2, 1.0).await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn barrier_abort_breaks_all_waiters_and_reset_repairs() {
    // conformance: S4
    common::run_watched(async {
        let b = Barrier::new(3);
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let b = b.clone();
            tasks.push(create_task(async move { b.wait().await })?);
        }
        settle().await?;
        b.abort().await?;
        assert!(b.broken());
        for t in tasks {
            t.wait_done().await?;
            assert!(matches!(t.result(), Err(Error::BrokenBarrier)));
        }
        assert!(matches!(b.wait().await, Err(Error::BrokenBarrier)));
        b.reset().await?;
        assert!(!b.broken());

        // reset() with waiters: they get BrokenBarrier, and the barrier works after.
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let b = b.clone();
            tasks.push(create_task(async move { b.wait().await })?);
        }
        settle().await?;
        b.reset().await?;
        for t in tasks {
            t.wait_done().await?;
            assert!(matches!(t.result(), Err(Error::BrokenBarrier)));
        }
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let b = b.clone();
            tasks.push(create_task(async move { b.wait().await })?);
        }
        for t in tasks {
            t.await?;
        }
        Ok(())
    })
    .unwrap();
}

/// After `abort()` every later `wait()` fails, the one that would complete
/// a phase too (here the only party): it must not pass the barrier.
#[test]
fn an_aborted_barrier_breaks_the_waiter_that_would_complete_a_phase() {
    // conformance: S4
    common::run_bounded(5.0, async {
        let b = Barrier::new(1);
        assert_eq!(b.wait().await?, 0, "one party passes at once");
        b.abort().await?;
        assert!(matches!(b.wait().await, Err(Error::BrokenBarrier)));
        assert!(b.broken());
        b.reset().await?;
        assert_eq!(b.wait().await?, 0);
        Ok(())
    });
}

#[test]
fn stale_guard_never_releases_another_holder() {
    // conformance: S1
    common::run_watched(async {
        let lock = Lock::new();
        let g = lock.acquire().await?;
        lock.release()?; // explicit release while the guard lives
        let l2 = lock.clone();
        let holder = create_task(async move {
            let _g = l2.acquire().await?;
            sleep(0.02).await
        })?;
        settle().await?;
        assert!(lock.locked());
        drop(g); // stale: must not release the holder's acquisition
        assert!(lock.locked(), "a stale guard released another task's lock");
        holder.await?;
        assert!(!lock.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn condition_waiter_dropped_after_notify_passes_it_on() {
    // conformance: S2
    common::run_watched(async {
        use std::future::Future as _;
        let cond = Condition::new();
        let woken = Rc::new(Cell::new(0));
        // This task's own wait, polled once by hand, so it can be dropped.
        let g = cond.acquire().await?;
        let mut mine = Box::pin(cond.wait());
        std::future::poll_fn(|cx| {
            assert!(mine.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        assert!(!cond.locked(), "wait() released the lock");
        let (c2, w2) = (cond.clone(), woken.clone());
        let other = create_task(async move {
            let _g = c2.acquire().await?;
            c2.wait().await?;
            w2.set(w2.get() + 1);
            Ok(())
        })?;
        settle().await?;
        {
            let _g2 = cond.acquire().await?;
            cond.notify(1)?; // reaches `mine`, queued first...
            drop(mine); // ...which is dropped: the notify goes to `other`
        }
        drop(g); // stale guard (the wait never re-acquired): releases nothing
        tulip::wait_for(other, 1.0).await?;
        assert_eq!(woken.get(), 1);
        assert!(!cond.locked());
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_stale_guard_from_an_abandoned_condition_wait_never_releases_a_later_holder() {
    // conformance: S1, S2
    common::run_watched(async {
        use std::future::Future as _;
        let cond = Condition::new();
        // A waits on the condition, holding the first acquisition.
        let (ca, a_done) = (cond.clone(), Rc::new(Cell::new(false)));
        let a_flag = a_done.clone();
        let a = create_task(async move {
            let _g = ca.acquire().await?;
            ca.wait().await?;
            a_flag.set(true);
            Ok(())
        })?;
        settle().await?;
        // B, polled once by hand: it takes the (second) acquisition and
        // waits too, releasing the lock; its guard stays inside the future.
        let cb = cond.clone();
        let mut b = Box::pin(async move {
            let _g = cb.acquire().await?;
            cb.wait().await
        });
        std::future::poll_fn(|cx| {
            assert!(b.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        // A is notified, re-acquires, finishes and releases.
        {
            let _g = cond.acquire().await?;
            cond.notify(1)?;
        }
        tulip::wait_for(a, 1.0).await?;
        assert!(a_done.get());
        // D takes the lock; then B's future is dropped, and with it B's
        // guard, whose acquisition ended when B's wait released the lock.
        let d = cond.acquire().await?;
        drop(b);
        assert!(cond.locked(), "B's stale guard released D's hold");
        drop(d);
        assert!(!cond.locked());
        Ok(())
    })
    .unwrap();
}

// ===== Loop binding (asyncio's `_LoopBoundMixin`) =====

/// Whether `fut` fails at once with asyncio's `RuntimeError: ... is bound
/// to a different event loop` (bounded: a wait that blocks instead fails).
async fn bound_elsewhere<T>(fut: impl std::future::Future<Output = tulip::Result<T>>) -> bool {
    let r = tulip::timeout(1.0).run(fut).await;
    matches!(r, Err(Error::Runtime(m)) if m.contains("bound to a different event loop"))
}

#[test]
fn a_primitive_waited_on_in_one_loop_refuses_to_wait_in_another() {
    // conformance: S1, S2, S3, S4
    // asyncio's primitives are `_LoopBoundMixin`s: the first wait binds
    // them to the running loop (`_get_loop()`), and a wait from another
    // loop raises RuntimeError instead of queueing a future of that loop
    // behind ones the first loop may never wake. The fast paths do not
    // call `_get_loop()`, so they still work from anywhere.
    let lock = Lock::new();
    let ev = Event::new();
    let cond = Condition::new();
    let sem = Semaphore::new(0);
    let barrier = Barrier::new(2);
    {
        let (lock, ev, cond, sem, barrier) = (
            lock.clone(),
            ev.clone(),
            cond.clone(),
            sem.clone(),
            barrier.clone(),
        );
        common::run_watched(async move {
            let g = lock.acquire().await?;
            let l2 = lock.clone();
            let t = create_task(async move { l2.acquire().await.map(drop) })?;
            settle().await?; // t waits: the lock is bound to this loop
            drop(g);
            t.await?;
            let e2 = ev.clone();
            let t = create_task(async move { e2.wait().await })?;
            settle().await?;
            ev.set();
            t.await?;
            let c2 = cond.clone();
            let t = create_task(async move {
                let _g = c2.acquire().await?;
                c2.wait().await
            })?;
            settle().await?;
            {
                let _g = cond.acquire().await?;
                cond.notify_all()?;
            }
            t.await?;
            let s2 = sem.clone();
            let t = create_task(async move { s2.acquire().await.map(|p| p.forget()) })?;
            settle().await?;
            sem.release()?;
            t.await?;
            let b2 = barrier.clone();
            let t = create_task(async move { b2.wait().await })?;
            barrier.wait().await?;
            t.await?;
            Ok(())
        })
        .unwrap();
    }
    common::run_watched(async move {
        // The fast paths need no loop.
        let g = lock.acquire().await?;
        assert!(bound_elsewhere(lock.acquire()).await);
        drop(g);
        ev.set();
        ev.wait().await?;
        ev.clear();
        assert!(bound_elsewhere(ev.wait()).await);
        assert!(!cond.locked());
        {
            let _g = cond.acquire().await?;
            assert!(bound_elsewhere(cond.wait()).await);
            assert!(cond.locked(), "the lock is held again after the error");
        }
        assert!(!cond.locked());
        sem.release()?;
        sem.acquire().await?.forget();
        assert!(bound_elsewhere(sem.acquire()).await);
        // The barrier's condition is bound: its first wait must block.
        assert!(bound_elsewhere(barrier.wait()).await);
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.broken());
        Ok(())
    })
    .unwrap();
}
