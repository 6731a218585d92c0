//! Conformance of task cancellation: C1–C3 (asyncio's test_tasks:
//! `fut_waiter`, `must_cancel`, `cancelling`/`uncancel`, messages).
// `async move { inner.await }` spells out "a task whose body awaits".
#![allow(clippy::redundant_async_block)]

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{entries, iterate, log, push, soon};
use tulip::{Error, EventLoop, Future, Task};

/// Runs the loop until `task` is done (bounded by a 10 s guard timer).
fn finish<T: 'static>(lp: &EventLoop, task: &Task<T>) {
    let waiting = task.wait_done();
    let lp1 = lp.clone();
    // A panic in a callback goes to the exception handler, so the guard
    // stops the loop instead, and run_until_complete reports it.
    let guard = lp.call_later(10.0, move || lp1.stop()).unwrap();
    let res = lp.run_until_complete(async move { waiting.await });
    guard.cancel();
    res.expect("the task did not finish within 10 s");
}

// ===== C1 =====

// conformance: C1
#[test]
fn cancelling_a_task_cancels_the_future_it_awaits() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let l = log();
    let (f, l1) = (fut.clone(), l.clone());
    let task = lp
        .create_task(async move {
            match f.await {
                Ok(v) => push(&l1, format!("got {v}")),
                Err(e) => {
                    push(&l1, format!("await failed: cancelled={}", e.is_cancelled()));
                    return Err(e);
                }
            }
            Ok(())
        })
        .unwrap();
    iterate(&lp); // suspended on fut
    assert!(!fut.done());
    assert!(task.cancel());
    assert!(fut.cancelled(), "the fut_waiter was cancelled at once");
    finish(&lp, &task);
    assert_eq!(entries(&l), ["await failed: cancelled=true"]);
    assert!(task.cancelled());
    assert!(task.result().unwrap_err().is_cancelled());
    assert!(!task.cancel(), "cancel on a done task returns false");
}

// conformance: C1
#[test]
fn a_task_that_catches_the_cancel_and_returns_is_not_cancelled() {
    let lp = EventLoop::new().unwrap();
    let task = lp
        .create_task(async {
            match tulip::sleep(10.0).await {
                Err(e) if e.is_cancelled() => {
                    // Clean-up may await again after catching.
                    tulip::sleep(0.001).await?;
                    Ok("caught")
                }
                other => other.map(|()| "slept"),
            }
        })
        .unwrap();
    iterate(&lp);
    task.cancel();
    finish(&lp, &task);
    assert!(!task.cancelled());
    assert_eq!(task.result().unwrap(), "caught");
    assert_eq!(
        task.cancelling(),
        1,
        "the request still counts until uncancel"
    );
    iterate(&lp); // pops the cancelled timers
    assert_eq!(
        lp.scheduled_timer_count(),
        0,
        "the 10 s timer went with the sleep"
    );
}

// conformance: C1
#[test]
fn cancelling_a_task_that_awaits_a_task_cancels_the_inner_task() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let l1 = l.clone();
    let inner = lp
        .create_task(async move {
            let r = tulip::sleep(10.0).await;
            push(&l1, format!("inner cancelled={}", r.is_err()));
            r.map(|()| 1)
        })
        .unwrap();
    let i2 = inner.clone();
    let outer = lp.create_task(async move { i2.await }).unwrap();
    iterate(&lp);
    outer.cancel();
    finish(&lp, &outer);
    assert!(inner.cancelled() && outer.cancelled());
    assert_eq!(entries(&l), ["inner cancelled=true"]);
}

// conformance: C1
#[test]
fn an_inner_task_that_swallows_the_cancel_lets_the_outer_one_finish() {
    // asyncio leaves fut_waiter set: the awaited task may ignore the cancel.
    let lp = EventLoop::new().unwrap();
    let inner = lp
        .create_task(async {
            let _ = tulip::sleep(10.0).await; // swallowed
            Ok(7)
        })
        .unwrap();
    let i2 = inner.clone();
    let outer = lp.create_task(async move { i2.await }).unwrap();
    iterate(&lp);
    assert!(outer.cancel());
    finish(&lp, &outer);
    assert!(!inner.cancelled() && !outer.cancelled());
    assert_eq!(outer.result().unwrap(), 7);
}

// conformance: C1
#[test]
fn cancelling_a_task_in_wait_done_cancels_the_future_and_take_result_shows_it() {
    // The await-a-non-Clone-result pattern (`wait_done` + `take_result`,
    // as to_thread uses): the future is the fut_waiter, so the cancel
    // reaches it at once and take_result reports Cancelled.
    let lp = EventLoop::new().unwrap();
    let fut: Future<String> = lp.create_future();
    let f = fut.clone();
    let task = lp
        .create_task(async move {
            f.wait_done().await;
            f.take_result()
        })
        .unwrap();
    iterate(&lp);
    assert!(task.cancel_with("stop waiting"));
    assert!(fut.cancelled());
    finish(&lp, &task);
    assert!(task.cancelled());
    assert_eq!(
        task.result().unwrap_err().cancel_message(),
        Some("stop waiting")
    );
}

// ===== C2 =====

// conformance: C2
#[test]
fn a_cancel_before_the_first_step_means_the_body_never_runs() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let task = lp
        .create_task(async move {
            r.set(true);
            Ok(())
        })
        .unwrap();
    assert!(task.cancel_with("early"));
    assert!(!task.done(), "delivered at the step, not inline");
    iterate(&lp);
    assert!(task.cancelled());
    assert!(!ran.get(), "the body ran");
    assert_eq!(task.result().unwrap_err().cancel_message(), Some("early"));
}

// conformance: C2
#[test]
fn a_task_that_cancels_itself_sees_cancelled_at_its_next_await() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let l1 = l.clone();
    let task = lp
        .create_task(async move {
            let me = tulip::current_task().expect("inside a task");
            assert!(me.cancel());
            push(&l1, "still running after cancel()");
            let r = tulip::sleep(0.01).await;
            push(&l1, format!("sleep: {}", r.as_ref().unwrap_err()));
            r
        })
        .unwrap();
    finish(&lp, &task);
    assert_eq!(
        entries(&l),
        ["still running after cancel()", "sleep: cancelled"]
    );
    assert!(task.cancelled());
}

// conformance: C2
#[test]
fn a_self_cancel_before_a_bare_yield_is_delivered_after_it() {
    // sleep(0) has no fut_waiter: the must_cancel is thrown at the next step.
    let lp = EventLoop::new().unwrap();
    let task = lp
        .create_task(async {
            tulip::current_task().unwrap().cancel();
            tulip::sleep(0.0).await?;
            Ok("not cancelled")
        })
        .unwrap();
    finish(&lp, &task);
    assert!(task.cancelled());
}

// conformance: C2
#[test]
fn a_cancel_while_the_task_is_scheduled_is_delivered_at_its_await() {
    // The awaited future completes, then the task is cancelled before its
    // step runs: the future can't be cancelled any more, so must_cancel is
    // set and the resumed await raises Cancelled.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let f = fut.clone();
    let task = lp.create_task(async move { f.await }).unwrap();
    iterate(&lp);
    let (f2, t2) = (fut.clone(), task.clone());
    soon(&lp, move || {
        f2.set_result(1).unwrap();
        assert!(t2.cancel());
    });
    finish(&lp, &task);
    assert!(task.cancelled(), "{:?}", task.result());
}

// conformance: C2
#[test]
fn a_cancel_requested_right_before_the_body_returns_cancels_the_task() {
    // asyncio: "Task is cancelled right before coro stops".
    let lp = EventLoop::new().unwrap();
    let task = lp
        .create_task(async {
            tulip::current_task().unwrap().cancel();
            Ok(1)
        })
        .unwrap();
    finish(&lp, &task);
    assert!(task.cancelled());
}

// ===== C3 =====

// conformance: C3
#[test]
fn cancelling_counts_requests_and_uncancel_takes_them_back() {
    let lp = EventLoop::new().unwrap();
    let task = lp
        .create_task(async {
            let _ = tulip::sleep(10.0).await;
            let _ = tulip::sleep(10.0).await;
            Ok(())
        })
        .unwrap();
    iterate(&lp);
    assert_eq!(task.cancelling(), 0);
    task.cancel();
    task.cancel();
    assert_eq!(task.cancelling(), 2);
    assert_eq!(task.uncancel(), 1);
    assert_eq!(task.cancelling(), 1);
    assert_eq!(task.uncancel(), 0);
    assert_eq!(task.uncancel(), 0, "never below zero");
    iterate(&lp); // the first sleep swallowed its cancel; now on the second
    assert!(!task.done());
    task.cancel();
    assert_eq!(task.cancelling(), 1);
    finish(&lp, &task);
    assert!(!task.cancelled(), "both sleeps swallowed their cancel");
}

// conformance: C3
#[test]
fn uncancel_to_zero_clears_a_pending_must_cancel() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let task = lp
        .create_task(async move {
            r.set(true);
            Ok(3)
        })
        .unwrap();
    task.cancel(); // must_cancel: not started yet
    assert_eq!(task.uncancel(), 0);
    finish(&lp, &task);
    assert!(ran.get());
    assert_eq!(task.result().unwrap(), 3);

    // Not at zero: the cancel stays.
    let task = lp.create_task(async { Ok(4) }).unwrap();
    task.cancel();
    task.cancel();
    assert_eq!(task.uncancel(), 1);
    finish(&lp, &task);
    assert!(task.cancelled());
}

// conformance: C3
#[test]
fn cancel_carries_its_message_to_the_cancelled_error() {
    let lp = EventLoop::new().unwrap();
    // Through the fut_waiter.
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    let task = lp
        .create_task(async move {
            let r = tulip::sleep(10.0).await;
            *s.borrow_mut() = r
                .as_ref()
                .err()
                .and_then(|e| e.cancel_message().map(String::from));
            r
        })
        .unwrap();
    iterate(&lp);
    task.cancel_with("shutting down");
    finish(&lp, &task);
    assert_eq!(seen.borrow().as_deref(), Some("shutting down"));
    let err = task.result().unwrap_err();
    assert!(matches!(&err, Error::Cancelled(Some(m)) if &**m == "shutting down"));

    // Through must_cancel (the task is scheduled, no fut_waiter).
    let s = seen.clone();
    let task = lp
        .create_task(async move {
            let r = tulip::sleep(0.0).await;
            *s.borrow_mut() = r
                .as_ref()
                .err()
                .and_then(|e| e.cancel_message().map(String::from));
            r
        })
        .unwrap();
    iterate(&lp); // the task yielded and is scheduled again
    task.cancel_with("second");
    finish(&lp, &task);
    assert_eq!(seen.borrow().as_deref(), Some("second"));
    assert_eq!(task.result().unwrap_err().cancel_message(), Some("second"));
}

// conformance: C3
#[test]
fn a_task_ref_cancels_and_counts_like_the_task() {
    let lp = EventLoop::new().unwrap();
    let task = lp
        .create_task(async {
            tulip::sleep(10.0).await?;
            Ok(())
        })
        .unwrap();
    iterate(&lp);
    let r = task.as_ref();
    assert!(r.cancel_with("via ref"));
    assert_eq!(task.cancelling(), 1);
    assert_eq!(r.cancelling(), 1);
    finish(&lp, &task);
    assert!(r.cancelled() && r.done());
    assert_eq!(task.result().unwrap_err().cancel_message(), Some("via ref"));
}

/// `Task::wait_done` is asyncio's `await asyncio.wait([task])`: cancelling
/// the waiting task ends the wait at once with Cancelled, and the awaited
/// task keeps running.
// conformance: C1
#[test]
fn cancelling_a_task_parked_in_wait_done_ends_the_wait_not_the_awaited_task() {
    let (waited_err, slow_done, elapsed) = tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let slow = tulip::create_task(async {
            tulip::sleep(0.3).await?;
            Ok(7)
        })?;
        let watcher = {
            let slow = slow.clone();
            tulip::create_task(async move { slow.wait_done().await })?
        };
        tulip::sleep(0.0).await?;
        tulip::sleep(0.0).await?;
        let t0 = lp.time();
        watcher.cancel();
        let err = watcher.clone().await.unwrap_err();
        let elapsed = lp.time() - t0;
        let slow_done_then = slow.done();
        assert_eq!(slow.clone().await?, 7);
        Ok((err.is_cancelled(), slow_done_then, elapsed))
    })
    .unwrap();
    assert!(waited_err, "the wait ends with Cancelled");
    assert!(
        !slow_done,
        "the awaited task was not cancelled and still ran"
    );
    assert!(
        elapsed < 0.2,
        "the cancel took {elapsed:.3} s: it waited for the awaited task"
    );
}

// conformance: C3
#[test]
fn a_second_cancel_after_the_fut_waiter_was_cancelled_keeps_the_first_message() {
    // asyncio: the first cancel() cancels the fut_waiter ("one"); the
    // second finds it done and sets must_cancel ("two"). __wakeup then
    // calls __step(CancelledError("one")), and __step keeps an error that
    // is already a CancelledError: the body sees "one", and only once.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let f = fut.clone();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let task = lp
        .create_task(async move {
            let r = f.await;
            s.borrow_mut()
                .push(r.err().and_then(|e| e.cancel_message().map(String::from)));
            // Caught: the cancel was delivered once, the body goes on.
            tulip::sleep(0.0).await?;
            Ok(7)
        })
        .unwrap();
    iterate(&lp);
    assert!(task.cancel_with("one"));
    assert!(task.cancel_with("two"));
    assert_eq!(task.cancelling(), 2);
    finish(&lp, &task);
    assert_eq!(*seen.borrow(), [Some("one".to_string())]);
    assert_eq!(task.result().unwrap(), 7);

    // Not caught: the task ends cancelled with the message it saw.
    let fut: Future<u32> = lp.create_future();
    let f = fut.clone();
    let task = lp.create_task(async move { f.await }).unwrap();
    iterate(&lp);
    task.cancel_with("one");
    task.cancel_with("two");
    finish(&lp, &task);
    assert_eq!(task.result().unwrap_err().cancel_message(), Some("one"));
}

// conformance: C1
#[test]
fn a_second_cancel_goes_to_the_awaited_task_again() {
    // asyncio's Task.cancel leaves `_fut_waiter` set after cancelling it:
    // an awaited task that swallowed the first cancel gets the second one
    // too, and the awaiting task is not marked `must_cancel`.
    let lp = EventLoop::new().unwrap();
    let (fut1, fut2): (Future<u32>, Future<u32>) = (lp.create_future(), lp.create_future());
    let (f1, f2) = (fut1.clone(), fut2.clone());
    let inner = lp
        .create_task(async move {
            let _ = f1.await; // swallowed
            let _ = f2.await; // swallowed
            Ok(7)
        })
        .unwrap();
    let i2 = inner.clone();
    let outer = lp.create_task(async move { i2.await }).unwrap();
    iterate(&lp);
    assert!(outer.cancel());
    assert!(fut1.cancelled());
    iterate(&lp); // inner swallowed it and now waits on fut2
    assert!(!fut2.done());
    assert!(outer.cancel());
    assert!(
        fut2.cancelled(),
        "the second cancel did not reach the inner task"
    );
    finish(&lp, &outer);
    assert_eq!(inner.cancelling(), 2);
    assert!(!outer.cancelled());
    assert_eq!(outer.result().unwrap(), 7);
}

// conformance: C1
#[test]
fn a_cancel_after_a_spurious_wake_up_does_not_hit_a_stale_fut_waiter() {
    // The body polls `other` (which becomes the fut_waiter), is woken
    // spuriously and moves on without it. asyncio's __step starts with
    // `self._fut_waiter = None`: a cancel made after that step is the
    // task's own (must_cancel), and `other` is left alone.
    use std::future::Future as _;
    let lp = EventLoop::new().unwrap();
    let other: Future<u32> = lp.create_future();
    let mut o = other.clone();
    let task = lp
        .create_task(async move {
            let mut first = true;
            std::future::poll_fn(|cx| {
                if std::mem::take(&mut first) {
                    assert!(std::pin::Pin::new(&mut o).poll(cx).is_pending());
                    cx.waker().wake_by_ref(); // spurious: `other` is not done
                    return std::task::Poll::Pending;
                }
                std::task::Poll::Ready(())
            })
            .await;
            for _ in 0..1000 {
                tulip::sleep(0.0).await?; // a bare yield: no fut_waiter
            }
            Ok(())
        })
        .unwrap();
    iterate(&lp); // polls `other`
    iterate(&lp); // moves on, yields
    assert!(task.cancel());
    assert!(!other.cancelled(), "the cancel went to a stale fut_waiter");
    finish(&lp, &task);
    assert!(task.cancelled());
}

// conformance: C1
#[test]
fn a_cancel_that_finds_the_awaited_task_cancelled_gives_the_awaited_tasks_error() {
    // The awaited task ended cancelled ("inner") and the awaiting task is
    // cancelled ("outer") before it resumes: asyncio's __wakeup calls
    // __step(CancelledError("inner")), and __step keeps an error that is
    // already a CancelledError. The body sees the awaited task's, once.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let f = fut.clone();
    let inner = lp.create_task(async move { f.await }).unwrap();
    let i2 = inner.clone();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let outer = lp
        .create_task(async move {
            let r = i2.await;
            s.borrow_mut()
                .push(r.err().and_then(|e| e.cancel_message().map(String::from)));
            tulip::sleep(0.0).await?; // caught: delivered once
            Ok(1)
        })
        .unwrap();
    iterate(&lp);
    assert!(inner.cancel_with("inner"));
    iterate(&lp); // inner ends cancelled; outer is woken, not yet run
    assert!(inner.cancelled() && !outer.done());
    assert!(outer.cancel_with("outer"));
    finish(&lp, &outer);
    assert_eq!(*seen.borrow(), [Some("inner".to_string())]);
    assert_eq!(outer.result().unwrap(), 1);
}

/// A future outside the runtime: `Pending` `n` times (waking its task
/// each time), then ready. A task suspended on it has no fut_waiter.
fn foreign_pending(n: u32) -> impl std::future::Future<Output = ()> {
    let mut left = n;
    std::future::poll_fn(move |cx| {
        if left == 0 {
            return std::task::Poll::Ready(());
        }
        left -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
}

// conformance: C2
#[test]
fn a_cancel_not_taken_by_a_step_waits_for_the_next_await() {
    // The cancel is held (must_cancel) and thrown at the next step, which
    // suspends again outside the runtime without an await that takes it.
    // It must not be lost: the first runtime await after that raises it.
    let lp = EventLoop::new().unwrap();
    let l = log();
    let l1 = l.clone();
    let task = lp
        .create_task(async move {
            foreign_pending(2).await;
            let r = tulip::sleep(0.0).await;
            push(&l1, format!("sleep: {r:?}"));
            r
        })
        .unwrap();
    iterate(&lp); // suspended on the foreign future
    assert!(task.cancel());
    finish(&lp, &task);
    assert_eq!(entries(&l), ["sleep: Err(Cancelled(None))"]);
    assert!(task.cancelled());
}

// conformance: C2
#[test]
fn a_cancel_during_a_step_cancels_the_future_the_step_suspends_on() {
    // asyncio's __step: `if self._must_cancel: if
    // self._fut_waiter.cancel(msg=...): self._must_cancel = False`. A task
    // that cancels itself and then awaits a future nobody will complete
    // is cancelled at once, through that future.
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let f = fut.clone();
    let task = lp
        .create_task(async move {
            tulip::current_task().unwrap().cancel_with("self");
            f.await
        })
        .unwrap();
    iterate(&lp);
    assert!(fut.cancelled(), "the future the step suspended on");
    finish(&lp, &task);
    assert_eq!(task.result().unwrap_err().cancel_message(), Some("self"));
}

// conformance: C2
#[test]
fn a_cancel_thrown_into_a_body_that_then_returns_cancels_the_task() {
    // The task is cancelled while suspended outside the runtime; at its
    // next step the body returns without another await. asyncio throws the
    // CancelledError in where the coroutine is suspended, so an uncaught
    // cancel ends the task cancelled, not with the value.
    let lp = EventLoop::new().unwrap();
    let task = lp
        .create_task(async move {
            foreign_pending(1).await;
            Ok(5)
        })
        .unwrap();
    iterate(&lp);
    assert!(task.cancel());
    finish(&lp, &task);
    assert!(task.cancelled(), "{:?}", task.result());
}

/// A task whose body polls `other` (pending: it becomes the fut_waiter),
/// moves on without it in the same step (a select), then has `cancel` run
/// on it: the request must be a must_cancel, delivered at the next await,
/// never a cancel of `other`, which nobody awaits any more.
fn cancel_after_a_left_poll(cancel: impl FnOnce(tulip::TaskRef) -> tulip::Result<()> + 'static) {
    use std::future::Future as _;
    let lp = EventLoop::new().unwrap();
    let other: Future<u32> = lp.create_future();
    let mut o = other.clone();
    let l = log();
    let l1 = l.clone();
    let task = lp
        .create_task(async move {
            std::future::poll_fn(|cx| {
                assert!(std::pin::Pin::new(&mut o).poll(cx).is_pending());
                std::task::Poll::Ready(()) // the other branch won
            })
            .await;
            cancel(tulip::current_task().unwrap())?;
            let r = tulip::sleep(0.01).await;
            push(&l1, format!("sleep: {r:?}"));
            r
        })
        .unwrap();
    finish(&lp, &task);
    assert!(!other.cancelled(), "the cancel went to a stale fut_waiter");
    assert_eq!(entries(&l), ["sleep: Err(Cancelled(None))"]);
    assert!(task.cancelled());
}

// conformance: C2
#[test]
fn a_self_cancel_after_a_pending_poll_in_the_same_step_is_not_lost() {
    // asyncio's __step runs the body with `_fut_waiter = None`, so a task
    // cancelling itself sets must_cancel.
    cancel_after_a_left_poll(|me| {
        assert!(me.cancel());
        Ok(())
    });
}

// conformance: C2, C6
#[test]
fn an_eager_child_cancelling_its_creator_mid_step_is_not_lost() {
    // The cancel comes from an eager task the body starts: while the
    // child's first step runs, the creator's own step is still on the
    // stack (asyncio's creator has `_fut_waiter = None` then), so the
    // request is a must_cancel too.
    cancel_after_a_left_poll(|me| {
        let child = tulip::get_running_loop()?.create_task_with(
            async move { Ok(me.cancel()) },
            tulip::TaskOptions {
                eager: Some(true),
                ..Default::default()
            },
        )?;
        assert!(child.done(), "the eager child ran at once");
        Ok(())
    });
}
