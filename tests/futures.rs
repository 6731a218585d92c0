//! Conformance of futures: F1–F4 (asyncio's test_futures).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::{capture_reports, entries, log, push, soon};
use tulip::{Error, EventLoop, Future};

// ===== F1 =====

// conformance: F1
#[test]
fn a_result_is_set_once() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    assert!(!fut.done());
    fut.set_result(1).unwrap();
    assert!(fut.done());
    assert!(matches!(fut.set_result(2), Err(Error::InvalidState(_))));
    assert!(matches!(
        fut.set_exception(Error::msg("late")),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(fut.result().unwrap(), 1, "the first result stays");
    assert!(fut.exception().unwrap().is_none());

    let failed: Future<u32> = lp.create_future();
    failed.set_exception(Error::msg("first")).unwrap();
    assert!(matches!(failed.set_result(3), Err(Error::InvalidState(_))));
    assert_eq!(failed.result().unwrap_err().to_string(), "first");
}

// conformance: F1
#[test]
fn result_and_exception_of_a_pending_future_are_invalid_state() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    assert!(matches!(fut.result(), Err(Error::InvalidState(_))));
    assert!(matches!(fut.exception(), Err(Error::InvalidState(_))));
}

// conformance: F1
#[test]
fn cancel_on_a_done_future_returns_false() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    fut.set_result(1).unwrap();
    assert!(!fut.cancel());
    assert!(!fut.cancelled());
    assert_eq!(fut.result().unwrap(), 1);

    let fut: Future<u32> = lp.create_future();
    assert!(fut.cancel_with(Some("why")));
    assert!(fut.cancelled() && fut.done());
    assert!(!fut.cancel(), "cancelling twice");
    assert!(matches!(fut.set_result(1), Err(Error::InvalidState(_))));
    let err = fut.result().unwrap_err();
    assert_eq!(err.cancel_message(), Some("why"));
    assert!(fut.exception().unwrap_err().is_cancelled());
}

// conformance: F1
#[test]
fn cancelled_cannot_be_set_as_an_error() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    assert!(fut.set_exception(Error::cancelled()).is_err());
    assert!(!fut.done());
    // On a done future the state is checked first, as asyncio does.
    fut.set_result(1).unwrap();
    assert!(matches!(
        fut.set_exception(Error::cancelled()),
        Err(Error::InvalidState(_))
    ));
}

// ===== F2 =====

// conformance: F2
#[test]
fn done_callbacks_are_scheduled_in_order_never_called_inline() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let l = log();
    for name in ["a", "b", "c"] {
        let l = l.clone();
        fut.add_done_callback(move |f| push(&l, format!("{name}={}", f.result().unwrap())));
    }
    fut.set_result(7).unwrap();
    assert!(entries(&l).is_empty(), "called inline by set_result");
    assert_eq!(lp.ready_count(), 3, "one call_soon per callback");
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["a=7", "b=7", "c=7"]);
}

// conformance: F2
#[test]
fn done_callbacks_run_after_callbacks_scheduled_before_the_result() {
    // They go through call_soon, so they queue behind what is already ready.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let l = log();
    let l1 = l.clone();
    fut.add_done_callback(move |_| push(&l1, "done callback"));
    let l2 = l.clone();
    soon(&lp, move || push(&l2, "earlier call_soon"));
    fut.set_result(1).unwrap();
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["earlier call_soon", "done callback"]);
}

// conformance: F2
#[test]
fn a_callback_added_to_a_done_future_is_scheduled_too() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    fut.cancel();
    let l = log();
    let l1 = l.clone();
    fut.add_done_callback(move |f| push(&l1, format!("cancelled={}", f.cancelled())));
    assert!(entries(&l).is_empty(), "called inline by add_done_callback");
    // Checked before the iteration: with nothing scheduled, run_once would
    // block in poll for ever instead of failing.
    assert_eq!(lp.ready_count(), 1, "not scheduled with call_soon");
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["cancelled=true"]);
}

// conformance: F2
#[test]
fn finishing_a_future_with_callbacks_on_a_closed_loop_fails_with_closed() {
    // asyncio's set_result/set_exception/cancel move the state first, then
    // `__schedule_callbacks` clears the list and `call_soon` raises
    // RuntimeError('Event loop is closed'): the future is done, its
    // callbacks are gone, and the caller hears of it. With no callback
    // nothing is scheduled, and nothing fails.
    let lp = EventLoop::new().unwrap();
    let held = Rc::new(());
    let with_callback = || {
        let fut: Future<u32> = lp.create_future();
        let h = held.clone();
        fut.add_done_callback(move |_| drop(h));
        fut
    };
    let (set, failed, cancelled) = (with_callback(), with_callback(), with_callback());
    let quiet: Future<u32> = lp.create_future();
    lp.close().unwrap();

    assert!(matches!(set.set_result(7), Err(Error::Closed)));
    assert_eq!(set.result().unwrap(), 7, "the result is set all the same");
    assert!(matches!(
        failed.set_exception(Error::msg("late")),
        Err(Error::Closed)
    ));
    assert_eq!(failed.exception().unwrap().unwrap().to_string(), "late");
    assert!(cancelled.cancel(), "the future was cancelled");
    assert!(cancelled.cancelled());
    assert_eq!(Rc::strong_count(&held), 1, "the callbacks were kept");
    quiet.set_result(1).unwrap();
    // A done future's state is checked first: InvalidState, not Closed.
    assert!(matches!(set.set_result(8), Err(Error::InvalidState(_))));
}

// conformance: F2
#[test]
fn remove_done_callback_returns_how_many_it_removed() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let l = log();
    let ids: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|name| {
            let l = l.clone();
            fut.add_done_callback(move |_| push(&l, name))
        })
        .collect();
    assert_eq!(fut.remove_done_callback(ids[1]), 1);
    assert_eq!(fut.remove_done_callback(ids[1]), 0);
    fut.set_result(0).unwrap();
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["a", "c"]);
    // On a done future there is nothing left to remove.
    assert_eq!(fut.remove_done_callback(ids[0]), 0);
}

/// Runs `f` when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

// conformance: F2
#[test]
fn a_removed_callback_is_dropped_after_the_future_lets_go_of_its_list() {
    // Dropping a removed callback runs the Drop of what it captured: the
    // user's code, which may use the same future (asyncio's list.remove
    // drops the callback with no lock held). It must find the future
    // usable, for one callback and for several.
    for others in [0, 2] {
        let lp = EventLoop::new().unwrap();
        let fut: Future<u32> = lp.create_future();
        let l = log();
        for _ in 0..others {
            let l = l.clone();
            let _ = fut.add_done_callback(move |_| push(&l, "other"));
        }
        let (f2, l2) = (fut.clone(), l.clone());
        let guard = OnDrop(move || {
            push(&l2, format!("dropped, done={}", f2.done()));
            let l3 = l2.clone();
            let _ = f2.add_done_callback(move |_| push(&l3, "added by the drop"));
        });
        let id = fut.add_done_callback(move |_| drop(guard));
        assert_eq!(fut.remove_done_callback(id), 1);
        fut.set_result(0).unwrap();
        lp.run_once().unwrap();
        let mut want = vec!["dropped, done=false".to_string()];
        want.extend(std::iter::repeat_n("other".to_string(), others));
        want.push("added by the drop".into());
        assert_eq!(entries(&l), want);
    }
}

// conformance: F2
#[test]
fn a_task_wakes_in_order_with_the_done_callbacks() {
    // A task awaiting the future is woken through the same list, so it
    // resumes in its registration order among the callbacks.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let l = log();
    let l1 = l.clone();
    fut.add_done_callback(move |_| push(&l1, "before"));
    let (f2, l2) = (fut.clone(), l.clone());
    let task = lp
        .create_task(async move {
            let v = f2.await?;
            push(&l2, format!("task got {v}"));
            Ok(())
        })
        .unwrap();
    let (l3, f3, lp1) = (l.clone(), fut.clone(), lp.clone());
    // On the running loop (a wake from off the loop takes the thread-safe
    // path, an iteration later): the task suspends in iteration 1, the
    // result is set in iteration 2, everything runs in iteration 3.
    soon(&lp, move || {
        f3.add_done_callback(move |_| push(&l3, "after"));
        let lp2 = lp1.clone();
        soon(&lp1, move || {
            f3.set_result(9).unwrap();
            let lp3 = lp2.clone();
            soon(&lp2, move || lp3.stop());
        });
    });
    lp.run_forever().unwrap();
    assert_eq!(entries(&l), ["before", "task got 9", "after"]);
    assert!(task.done());
}

/// A task whose body polls `fut` four times, woken spuriously after each
/// of the first three polls; returned once those polls have happened.
fn poll_four_times_spuriously(lp: &EventLoop, fut: &Future<u32>) -> tulip::Task<u32> {
    use std::future::Future as _;
    let mut f = fut.clone();
    let polls = Rc::new(Cell::new(0));
    let p = polls.clone();
    let task = lp
        .create_task(async move {
            std::future::poll_fn(|cx| {
                p.set(p.get() + 1);
                let r = std::pin::Pin::new(&mut f).poll(cx);
                if p.get() < 4 {
                    cx.waker().wake_by_ref(); // a spurious wake-up
                }
                r
            })
            .await
        })
        .unwrap();
    for _ in 0..6 {
        common::iterate(lp);
    }
    assert_eq!(polls.get(), 4);
    task
}

// conformance: F2
#[test]
fn a_task_that_polls_a_future_again_stays_registered_once() {
    // asyncio's task adds its `__wakeup` once per suspension. A body woken
    // spuriously polls the same pending future again: the task's waker
    // must replace its earlier registration, not pile up behind it.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let task = poll_four_times_spuriously(&lp, &fut);
    assert_eq!(format!("{fut:?}"), "<Future pending cb=[1]>");
    fut.set_result(5).unwrap();
    assert_eq!(lp.run_until_complete(task).unwrap(), 5);
}

// ===== F3 =====

// conformance: F3
#[test]
fn an_unretrieved_error_is_reported_when_the_future_is_dropped() {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let fut: Future<u32> = lp.create_future();
    fut.set_exception(Error::msg("lost")).unwrap();
    drop(fut);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].message, "Future exception was never retrieved");
    assert_eq!(reports[0].error.as_ref().unwrap().to_string(), "lost");
    assert!(reports[0].future.is_some());
}

// conformance: F3
#[test]
fn a_retrieved_error_or_a_cancellation_is_not_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);

    let by_exception: Future<u32> = lp.create_future();
    by_exception.set_exception(Error::msg("seen")).unwrap();
    assert!(by_exception.exception().unwrap().is_some());
    drop(by_exception);

    let by_result: Future<u32> = lp.create_future();
    by_result.set_exception(Error::msg("seen")).unwrap();
    assert!(by_result.result().is_err());
    drop(by_result);

    let by_await: Future<u32> = lp.create_future();
    by_await.set_exception(Error::msg("seen")).unwrap();
    let f = by_await.clone();
    assert!(lp.run_until_complete(f).is_err());
    drop(by_await);

    let cancelled: Future<u32> = lp.create_future();
    cancelled.cancel();
    drop(cancelled);

    let finished: Future<u32> = lp.create_future();
    finished.set_result(1).unwrap();
    drop(finished);

    let pending: Future<u32> = lp.create_future();
    drop(pending);

    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

// conformance: F3
#[test]
fn cancelling_a_failed_future_silences_its_unretrieved_error() {
    // asyncio's Future.cancel() starts with `self.__log_traceback = False`,
    // before its `if self._state != _PENDING: return False`.
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let fut: Future<u32> = lp.create_future();
    fut.set_exception(Error::msg("cancelled later")).unwrap();
    assert!(!fut.cancel(), "a done future is not cancelled");
    assert!(!fut.cancelled());
    drop(fut);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

// conformance: F3
#[test]
fn the_report_waits_for_the_last_reference() {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let fut: Future<u32> = lp.create_future();
    let other = fut.clone();
    fut.set_exception(Error::msg("lost")).unwrap();
    drop(fut);
    assert!(reports.borrow().is_empty());
    drop(other);
    assert_eq!(reports.borrow().len(), 1);
}

// ===== F4 =====

// conformance: F4
#[test]
fn awaiting_a_done_future_does_not_suspend() {
    // The task schedules a marker callback, then awaits a done future: had
    // it suspended, the marker would run before it resumes.
    let lp = EventLoop::new().unwrap();
    let done: Future<&str> = lp.create_future();
    done.set_result("ready").unwrap();
    let marker = Rc::new(Cell::new(false));
    let (m, lp1) = (marker.clone(), lp.clone());
    let out = lp
        .run_until_complete(async move {
            let m2 = m.clone();
            soon(&lp1, move || m2.set(true));
            let v = done.clone().await?;
            let v2 = done.await?; // twice: same result
            assert!(!m.get(), "the await suspended");
            Ok((v, v2))
        })
        .unwrap();
    assert_eq!(out, ("ready", "ready"));
}

// conformance: F4
#[test]
fn awaiting_a_done_task_does_not_suspend() {
    let lp = EventLoop::new().unwrap();
    let marker = Rc::new(Cell::new(false));
    let (m, lp1) = (marker.clone(), lp.clone());
    let out = lp
        .run_until_complete(async move {
            let inner = lp1.create_task(async { Ok(5) })?;
            tulip::sleep(0.0).await?; // the inner task runs and finishes
            tulip::sleep(0.0).await?;
            assert!(inner.done());
            let m2 = m.clone();
            soon(&lp1, move || m2.set(true));
            let v = inner.await?;
            assert!(!m.get(), "the await suspended");
            Ok(v)
        })
        .unwrap();
    assert_eq!(out, 5);
}

// conformance: F4
#[test]
fn awaiting_a_pending_future_suspends_until_it_is_done() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let setter = fut.clone();
    let _ = lp
        .call_later(0.01, move || setter.set_result(11).unwrap())
        .unwrap();
    assert_eq!(lp.run_until_complete(fut).unwrap(), 11);
}

// asyncio's Task.__step: a coroutine that yields a future of another loop
// gets "RuntimeError: Task ... got Future ... attached to a different loop"
// thrown in at once, instead of waiting on a loop that is not running.
#[test]
fn awaiting_a_pending_future_or_task_of_another_loop_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let other = EventLoop::new().unwrap();
    let foreign: Future<u32> = other.create_future();
    let foreign_task = other.create_task(async { Ok(1u32) }).unwrap();
    let (f, t) = (foreign.clone(), foreign_task.clone());
    let lp1 = lp.clone();
    let guard = lp.call_later(10.0, move || lp1.stop()).unwrap();
    let out = lp.run_until_complete(async move {
        let a = f.await;
        let b = t.await;
        Ok((a, b))
    });
    guard.cancel();
    let (a, b) = out.expect("the task waited on the other loop");
    for r in [a, b] {
        match r {
            Err(Error::Runtime(m)) => assert!(m.contains("different loop"), "{m}"),
            other => panic!("awaiting another loop's future gave {other:?}"),
        }
    }
    // Nothing was registered on the foreign future, which still works.
    assert!(!foreign.done());
    foreign.set_result(2).unwrap();
    assert_eq!(other.run_until_complete(foreign).unwrap(), 2);
    assert_eq!(other.run_until_complete(foreign_task).unwrap(), 1);
}

// conformance: F2
#[test]
fn many_tasks_awaiting_one_future_register_in_constant_time_each() {
    // Bounded: alone in a child process that is killed after a minute.
    if common::rerun_alone("many_tasks_awaiting_one_future_register_in_constant_time_each") {
        return;
    }
    // Each await checks in O(1) that its task is not registered yet: a scan
    // of the entries made n awaiters of one future O(n^2) (40k awaiters
    // took 418 ms; 200k would take seconds in release, minutes here).
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    const N: u32 = 200_000;
    let tasks: Vec<_> = (0..N)
        .map(|_| lp.create_task(fut.clone()).unwrap())
        .collect();
    common::iterate(&lp); // every task suspends on the future
    assert_eq!(format!("{fut:?}"), format!("<Future pending cb=[{N}]>"));
    fut.set_result(1).unwrap();
    let total = lp
        .run_until_complete(async move {
            let mut total = 0;
            for t in tasks {
                total += t.await?;
            }
            Ok(total)
        })
        .unwrap();
    assert_eq!(total, N);
}

// conformance: F2
#[test]
fn a_task_polling_again_stays_registered_once_among_many_awaiters() {
    // Past 32 entries the list keeps an index of its wakers: a spurious
    // re-poll must still find its own entry there.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let others: Vec<_> = (0..40)
        .map(|_| lp.create_task(fut.clone()).unwrap())
        .collect();
    common::iterate(&lp);
    let task = poll_four_times_spuriously(&lp, &fut);
    assert_eq!(format!("{fut:?}"), "<Future pending cb=[41]>");
    fut.set_result(5).unwrap();
    assert_eq!(lp.run_until_complete(task).unwrap(), 5);
    for t in others {
        assert_eq!(lp.run_until_complete(t).unwrap(), 5);
    }
}

/// A done callback added to a done future of a closed loop can never run:
/// asyncio's `add_done_callback` raises ("Event loop is closed"); tulip's
/// returns no `Result`, so the loop's exception handler hears of it.
// conformance: F2, L5
#[test]
fn a_callback_added_to_a_done_future_of_a_closed_loop_is_reported() {
    let lp = EventLoop::new().unwrap();
    let f = lp.create_future::<u32>();
    f.set_result(1).unwrap();
    lp.close().unwrap();
    // close() drops the handler it had; one set afterwards hears what comes.
    let reports = capture_reports(&lp);
    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let r2 = ran.clone();
    let _id = f.add_done_callback(move |_| r2.set(true));
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(matches!(reports[0].error, Some(Error::Closed)));
    assert!(!ran.get());
}
