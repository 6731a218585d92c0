//! Conformance tests for the combinators: gather, wait, as_completed,
//! shield, wait_for, timeout scopes, TaskGroup (K1–K7).

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tulip::{
    as_completed, create_task, current_task, gather, get_running_loop, shield, sleep, timeout,
    timeout_at, wait, wait_for, Error, Result, ReturnWhen, TaskGroup,
};

async fn after<T>(delay: f64, v: T) -> Result<T> {
    sleep(delay).await?;
    Ok(v)
}

async fn fail_after(delay: f64, msg: &'static str) -> Result<u32> {
    sleep(delay).await?;
    Err(Error::msg(msg))
}

// ===== K1 gather =====

#[test]
fn gather_keeps_argument_order() {
    // conformance: K1
    let out =
        tulip::run(async { gather(vec![after(0.03, 1), after(0.01, 2), after(0.02, 3)]).await })
            .unwrap();
    assert_eq!(out, vec![1, 2, 3]);
}

#[test]
fn gather_heterogeneous_tuple() {
    // conformance: K1
    let out = tulip::run(async { tulip::gather!(after(0.02, 1u8), after(0.01, "two")).await });
    assert_eq!(out.unwrap(), (1u8, "two"));
}

#[test]
fn gather_first_error_propagates_and_siblings_keep_running() {
    // conformance: K1
    tulip::run(async {
        let slow = create_task(after(0.05, 7u32))?;
        let r = gather(vec![
            tulip::Child::Task(slow.clone()),
            tulip::Child::new(fail_after(0.01, "boom")),
        ])
        .await;
        assert_eq!(r.unwrap_err().to_string(), "boom");
        assert!(!slow.done(), "gather does not cancel siblings on error");
        assert_eq!(slow.await?, 7);
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelling_gather_cancels_children() {
    // conformance: K1
    tulip::run(async {
        let a = create_task(after(10.0, 1u32))?;
        let b = create_task(after(10.0, 2u32))?;
        let g = gather(vec![a.clone(), b.clone()]);
        sleep(0.0).await?;
        assert!(g.cancel());
        let r = g.await;
        assert!(r.unwrap_err().is_cancelled());
        assert!(a.cancelled() && b.cancelled());
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelling_task_awaiting_gather_cancels_children() {
    // conformance: K1
    tulip::run(async {
        let a = create_task(after(10.0, 1u32))?;
        let b = create_task(after(10.0, 2u32))?;
        let (a2, b2) = (a.clone(), b.clone());
        let waiter = create_task(async move { gather(vec![a2, b2]).await })?;
        sleep(0.01).await?;
        waiter.cancel();
        assert!(waiter.wait_done_err().await.is_cancelled());
        assert!(a.cancelled() && b.cancelled());
        Ok(())
    })
    .unwrap();
}

/// Small helper: await a task's outcome as an error.
trait WaitErr {
    async fn wait_done_err(&self) -> Error;
}

impl<T: Clone + 'static + std::fmt::Debug> WaitErr for tulip::Task<T> {
    async fn wait_done_err(&self) -> Error {
        self.wait_done()
            .await
            .expect("the awaiting task is not cancelled");
        self.result().unwrap_err()
    }
}

#[test]
fn gather_return_exceptions_reports_cancelled_child() {
    // conformance: K1
    tulip::run(async {
        let a = create_task(after(0.01, 1u32))?;
        let b = create_task(after(10.0, 2u32))?;
        let c = create_task(fail_after(0.01, "bad"))?;
        let g = gather(vec![a, b.clone(), c]).return_exceptions();
        sleep(0.0).await?;
        b.cancel();
        let out = g.await?;
        assert_eq!(*out[0].as_ref().unwrap(), 1);
        assert!(out[1].as_ref().unwrap_err().is_cancelled());
        assert_eq!(out[2].as_ref().unwrap_err().to_string(), "bad");
        Ok(())
    })
    .unwrap();
}

// ===== K2 wait =====

#[test]
fn wait_return_when_variants_and_timeout() {
    // conformance: K2
    // The children finish when the test says so (each awaits a future the
    // test completes), not at racing sleeps: only the timeout is a timer.
    tulip::run(async {
        let lp = get_running_loop()?;
        type Children = (Vec<tulip::Task<u32>>, Vec<tulip::Future<u32>>);
        let mk = || -> Result<Children> {
            let futs: Vec<tulip::Future<u32>> = (0..3).map(|_| lp.create_future()).collect();
            let tasks = futs
                .iter()
                .map(|f| {
                    let f = f.clone();
                    create_task(f)
                })
                .collect::<Result<_>>()?;
            Ok((tasks, futs))
        };
        let (ts, fs) = mk()?;
        fs[0].set_result(1)?;
        let (done, pending) = wait(ts.clone(), None, ReturnWhen::FirstCompleted).await?;
        assert_eq!((done.len(), pending.len()), (1, 2));
        assert_eq!(done[0].result()?, 1);

        let (ts, fs) = mk()?;
        fs[0].set_result(1)?;
        fs[1].set_exception(Error::msg("x"))?;
        let (done, pending) = wait(ts.clone(), None, ReturnWhen::FirstException).await?;
        assert_eq!((done.len(), pending.len()), (2, 1));

        let (ts, fs) = mk()?;
        fs[0].set_result(1)?;
        fs[1].set_exception(Error::msg("x"))?;
        let (done, pending) = wait(ts.clone(), Some(0.05), ReturnWhen::AllCompleted).await?;
        assert_eq!((done.len(), pending.len()), (2, 1));
        // wait cancels nothing
        assert!(!pending[0].cancelled() && !pending[0].done());

        fs[2].set_result(3)?;
        let (done, pending) = wait(ts, None, ReturnWhen::AllCompleted).await?;
        assert_eq!((done.len(), pending.len()), (3, 0));
        Ok(())
    })
    .unwrap();
}

#[test]
fn wait_cancelled_does_not_cancel_children() {
    // conformance: K2
    tulip::run(async {
        let child = create_task(after(0.05, 1u32))?;
        let c2 = child.clone();
        let w = create_task(async move {
            wait(vec![c2], None, ReturnWhen::AllCompleted)
                .await
                .map(|_| ())
        })?;
        sleep(0.01).await?;
        w.cancel();
        w.wait_done().await?;
        assert!(w.cancelled());
        assert_eq!(child.await?, 1);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_wait_dropped_mid_wait_cancels_its_timer_and_removes_its_callbacks() {
    // conformance: K2
    // asyncio's `finally:` runs when the coroutine is closed; a dropped
    // `wait` must do the same, or each pending child keeps a callback that
    // holds the child itself until it finishes.
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let fut: tulip::Future<u32> = lp.create_future();
        {
            let w = wait(vec![fut.clone()], Some(1000.0), ReturnWhen::AllCompleted);
            let mut w = std::pin::pin!(w);
            std::future::poll_fn(|cx| {
                assert!(std::future::Future::poll(w.as_mut(), cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            assert_eq!(format!("{fut:?}"), "<Future pending cb=[1]>");
        }
        assert_eq!(format!("{fut:?}"), "<Future pending>");
        sleep(0.0).await?; // the cancelled timer leaves the heap
        assert_eq!(lp.scheduled_timer_count(), 0);
        Ok(())
    })
    .unwrap();
}

// ===== K3 as_completed =====

#[test]
fn as_completed_yields_in_completion_order_then_timeouts() {
    // conformance: K3
    tulip::run(async {
        let mut it = as_completed(vec![after(0.03, 3), after(0.01, 1), after(0.02, 2)], None);
        let mut got = vec![];
        while let Some(r) = it.next().await {
            got.push(r?);
        }
        assert_eq!(got, vec![1, 2, 3]);

        let mut it = as_completed(
            vec![after(0.01, 1), after(1.0, 2), after(1.0, 3)],
            Some(0.05),
        );
        assert_eq!(it.next().await.unwrap()?, 1);
        assert!(it.next().await.unwrap().unwrap_err().is_timeout());
        assert!(it.next().await.unwrap().unwrap_err().is_timeout());
        assert!(it.next().await.is_none());
        Ok(())
    })
    .unwrap();
}

// ===== K4 shield =====

#[test]
fn shield_keeps_inner_running_when_outer_cancelled() {
    // conformance: K4
    tulip::run(async {
        let inner = create_task(after(0.03, 9u32))?;
        let i2 = inner.clone();
        let outer = create_task(async move { shield(i2).await })?;
        sleep(0.01).await?;
        outer.cancel();
        outer.wait_done().await?;
        assert!(outer.cancelled());
        assert!(!inner.done());
        assert_eq!(inner.await?, 9);
        Ok(())
    })
    .unwrap();
}

#[test]
fn shield_of_a_done_future_is_the_done_future() {
    // conformance: K4
    // asyncio: `if inner.done(): return inner` -- nothing left to shield,
    // so the result is done at once and cannot be cancelled.
    tulip::run(async {
        let inner = create_task(async { Ok(5u32) })?;
        inner.wait_done().await?;
        let outer = shield(inner.clone());
        assert!(outer.done());
        assert!(!outer.cancel(), "a done shield cannot be cancelled");
        assert_eq!(outer.await?, 5);

        let lp = get_running_loop()?;
        let fut: tulip::Future<u32> = lp.create_future();
        fut.set_exception(Error::msg("boom"))?;
        let outer = shield(fut.clone());
        assert!(outer.done());
        assert!(!outer.cancel());
        assert_eq!(outer.await.unwrap_err().to_string(), "boom");
        Ok(())
    })
    .unwrap();
}

#[test]
fn shield_cancelled_outer_leaves_a_late_inner_error_reported() {
    // conformance: K4, F3
    // asyncio's _outer_done_callback removes _inner_done_callback: an error
    // the inner task raises after the outer was cancelled is nobody's, so
    // it is reported as never retrieved.
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let go = tulip::Event::new();
        let g = go.clone();
        let outer = shield(async move {
            g.wait().await?;
            Err::<u32, _>(Error::msg("late"))
        });
        sleep(0.0).await?;
        assert!(outer.cancel());
        go.set();
        for _ in 0..10 {
            sleep(0.0).await?;
        }
        Ok(())
    })
    .unwrap();
    let got: Vec<String> = reports.borrow().iter().map(|c| c.message.clone()).collect();
    assert!(
        got.iter()
            .any(|m| m.contains("exception was never retrieved")),
        "the late inner error was swallowed: {got:?}"
    );
    lp.close().unwrap();
}

// ===== K5 wait_for =====

#[test]
fn wait_for_nonpositive_timeout_never_starts_coroutine() {
    // conformance: K5
    tulip::run(async {
        let started = Rc::new(Cell::new(false));
        let s = started.clone();
        let r = wait_for(
            async move {
                s.set(true);
                Ok(1)
            },
            0.0,
        )
        .await;
        assert!(r.unwrap_err().is_timeout());
        sleep(0.01).await?;
        assert!(!started.get());
        Ok(())
    })
    .unwrap();
}

#[test]
fn wait_for_nonpositive_timeout_on_a_future_returns_its_result_or_cancels_it() {
    // conformance: K5
    // asyncio: `fut = ensure_future(fut); if fut.done(): return fut.result()`,
    // else `_cancel_and_wait(fut)` and TimeoutError.
    tulip::run(async {
        let lp = get_running_loop()?;
        let done: tulip::Future<u32> = lp.create_future();
        done.set_result(7)?;
        assert_eq!(wait_for(done.clone(), 0.0).await?, 7);

        let pending: tulip::Future<u32> = lp.create_future();
        let r = wait_for(pending.clone(), 0.0).await;
        assert!(r.unwrap_err().is_timeout());
        assert!(
            pending.cancelled(),
            "the future is cancelled, not left pending"
        );
        Ok(())
    })
    .unwrap();
}

/// asyncio: `fut = ensure_future(task)`; not done, so `_cancel_and_wait`
/// waits until the task has handled the cancel (here it takes the task a
/// timer's worth of iterations), and a task that suppressed the cancel
/// gives its value. Returning right after `cancel()` would find the task
/// still pending.
#[test]
fn wait_for_nonpositive_timeout_on_a_pending_task_waits_for_its_cancel() {
    // conformance: K5
    common::run_bounded(5.0, async {
        let swallow = create_task(async {
            match sleep(10.0).await {
                Err(e) if e.is_cancelled() => {
                    sleep(0.01).await?;
                    Ok(5u32)
                }
                other => other.map(|_| 0),
            }
        })?;
        sleep(0.0).await?; // suspended in its sleep
        assert_eq!(wait_for(swallow.clone(), 0.0).await?, 5);
        assert!(swallow.done() && !swallow.cancelled());

        let cleaned_up = Rc::new(Cell::new(false));
        let c = cleaned_up.clone();
        let reraise = create_task(async move {
            if let Err(e) = sleep(10.0).await {
                sleep(0.01).await?;
                c.set(true);
                return Err(e);
            }
            Ok(1u32)
        })?;
        sleep(0.0).await?;
        let r = wait_for(reraise.clone(), -1.0).await;
        assert!(r.unwrap_err().is_timeout());
        assert!(cleaned_up.get(), "returned before the task's cleanup ran");
        assert!(reraise.cancelled());
        Ok(())
    });
}

#[test]
fn wait_for_waits_for_inner_cancel_and_returns_suppressed_value() {
    // conformance: K5
    tulip::run(async {
        // The inner task takes 20 ms to clean up after its cancel.
        let cleaned = Rc::new(Cell::new(false));
        let c = cleaned.clone();
        let inner = create_task(async move {
            match sleep(10.0).await {
                Err(e) if e.is_cancelled() => {
                    sleep(0.02).await?;
                    c.set(true);
                    Err(e)
                }
                r => r.map(|_| 0u32),
            }
        })?;
        let r = wait_for(inner, 0.01).await;
        assert!(r.unwrap_err().is_timeout());
        assert!(
            cleaned.get(),
            "wait_for returned before the inner cancel finished"
        );

        // An inner task that swallows the cancel: its value comes back.
        let inner = create_task(async move {
            match sleep(10.0).await {
                Err(_) => Ok(42u32),
                Ok(()) => Ok(0),
            }
        })?;
        assert_eq!(wait_for(inner, 0.01).await?, 42);
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn wait_for_never_swallows_outer_cancel() {
    // conformance: K5
    tulip::run(async {
        let w = create_task(async { wait_for(after(10.0, 1u32), 5.0).await })?;
        sleep(0.01).await?;
        w.cancel();
        assert!(w.wait_done_err().await.is_cancelled());
        assert!(w.cancelled());
        Ok(())
    })
    .unwrap();
}

// ===== K6 timeout scopes =====

#[test]
fn only_expired_scope_raises_timeout() {
    // conformance: K6
    tulip::run(async {
        // Inner expires: inner gives Timeout, outer is untouched.
        let inner_seen = Rc::new(RefCell::new(None));
        let s = inner_seen.clone();
        let outer = timeout(10.0);
        let o2 = outer.clone();
        o2.run(async move {
            let r = timeout(0.01).run(sleep(10.0)).await;
            *s.borrow_mut() = Some(r.unwrap_err().is_timeout());
            Ok(())
        })
        .await?;
        assert_eq!(*inner_seen.borrow(), Some(true));
        assert!(!outer.expired());

        // Outer expires: the inner scope sees Cancelled, the outer gives Timeout.
        let s = inner_seen.clone();
        let r = timeout(0.01)
            .run(async move {
                let r = timeout(10.0).run(sleep(10.0)).await;
                *s.borrow_mut() = Some(r.as_ref().unwrap_err().is_cancelled());
                r
            })
            .await;
        assert!(r.unwrap_err().is_timeout());
        assert_eq!(*inner_seen.borrow(), Some(true));
        // The task is not left cancelled.
        assert_eq!(current_task().unwrap().cancelling(), 0);
        sleep(0.001).await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn foreign_cancel_stays_cancelled_inside_timeout() {
    // conformance: K6
    tulip::run(async {
        let t = create_task(async { timeout(10.0).run(sleep(10.0)).await })?;
        sleep(0.01).await?;
        t.cancel();
        assert!(t.wait_done_err().await.is_cancelled());
        Ok(())
    })
    .unwrap();
}

#[test]
fn timeout_reschedule_expired_and_timeout_at() {
    // conformance: K6
    tulip::run(async {
        let lp = get_running_loop()?;
        let cm = timeout(None);
        assert_eq!(cm.when(), None);
        assert!(cm.reschedule(Some(1.0)).is_err(), "not entered yet");
        let inside = cm.clone();
        let r = cm
            .clone()
            .run(async move {
                let lp = get_running_loop()?;
                inside.reschedule(Some(lp.time() + 0.01))?;
                sleep(10.0).await
            })
            .await;
        assert!(r.unwrap_err().is_timeout());
        assert!(cm.expired());
        assert!(cm.reschedule(None).is_err(), "expired scopes cannot change");

        let start = lp.time();
        let r = timeout_at(lp.time() + 0.02).run(sleep(10.0)).await;
        assert!(r.unwrap_err().is_timeout());
        assert!(lp.time() - start >= 0.015);

        // A deadline in the past expires at once.
        let r = timeout_at(lp.time() - 1.0).run(sleep(10.0)).await;
        assert!(r.unwrap_err().is_timeout());

        // Done in time: the value comes back, not expired.
        let cm = timeout(1.0);
        assert_eq!(cm.clone().run(after(0.001, 5)).await?, 5);
        assert!(!cm.expired());
        Ok(())
    })
    .unwrap();
}

// ===== K7 TaskGroup =====

#[test]
fn taskgroup_error_cancels_siblings_and_body_and_groups_errors() {
    // conformance: K7
    tulip::run(async {
        let sibling_cancelled = Rc::new(Cell::new(false));
        let body_cancelled = Rc::new(Cell::new(false));
        let (s, b) = (sibling_cancelled.clone(), body_cancelled.clone());
        let r: Result<()> = TaskGroup::run(|tg| async move {
            let _task = tg.create_task(fail_after(0.01, "first"))?;
            let _task = tg.create_task(fail_after(0.01, "second"))?;
            let _task = tg.create_task(async move {
                let r = sleep(10.0).await;
                s.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
                r
            })?;
            let r = sleep(10.0).await;
            b.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
            r
        })
        .await;
        match r.unwrap_err() {
            Error::Group { errors, .. } => {
                let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                assert_eq!(msgs, vec!["first", "second"]);
            }
            e => panic!("expected a group, got {e:?}"),
        }
        assert!(sibling_cancelled.get() && body_cancelled.get());
        // The parent's cancelling level is preserved.
        assert_eq!(current_task().unwrap().cancelling(), 0);
        sleep(0.001).await?;
        Ok(())
    })
    .unwrap();
}

/// asyncio's `_on_task_done` calls `_abort()` at once: the siblings'
/// cancel is requested before the body even sees its own `Cancelled`, not
/// only once the body has ended (here the body looks before it ends).
#[test]
fn taskgroup_first_child_error_cancels_the_siblings_at_once() {
    // conformance: K7
    common::run_bounded(5.0, async {
        let seen = Rc::new(Cell::new(None));
        let s = seen.clone();
        let r: Result<()> = TaskGroup::run(|tg| async move {
            let sibling = tg.create_task(after(10.0, 1u32))?;
            let _failing = tg.create_task(fail_after(0.01, "boom"))?;
            let r = sleep(10.0).await;
            s.set(Some((
                r.as_ref().is_err_and(|e| e.is_cancelled()),
                sibling.cancelling(),
            )));
            r
        })
        .await;
        assert!(matches!(r, Err(Error::Group { .. })), "{r:?}");
        assert_eq!(
            seen.get(),
            Some((true, 1)),
            "(body cancelled, sibling's cancel requests) when the body saw its cancel"
        );
        Ok(())
    });
}

#[test]
fn taskgroup_hears_of_an_eager_child_that_failed_at_create_task_only_through_the_ready_queue() {
    // conformance: K7, C6
    // CPython since gh-128550: `create_task` always adds the done callback,
    // even for a child the eager factory has already run to its end, so a
    // child failing eagerly cannot cancel the parent (or shut the group)
    // before `create_task` has returned; the body learns of it at its
    // next await, as of any child.
    tulip::run(async {
        let lp = get_running_loop()?;
        lp.set_task_factory(tulip::TaskFactory::Eager);
        let after_failure = Rc::new(Cell::new(None));
        let seen = after_failure.clone();
        let r: Result<()> = TaskGroup::run(|tg| async move {
            let failed = tg.create_task(async { Err::<(), _>(Error::msg("eager")) })?;
            assert!(failed.done());
            // Not yet cancelled, and the group still takes children.
            let parent_level = current_task().unwrap().cancelling();
            let more = tg.create_task(async { Ok(1) }).is_ok();
            seen.set(Some((parent_level, more)));
            sleep(10.0).await // cancelled by the group
        })
        .await;
        lp.set_task_factory(tulip::TaskFactory::Default);
        assert_eq!(after_failure.get(), Some((0, true)));
        match r.unwrap_err() {
            Error::Group { errors, .. } => {
                let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                assert_eq!(msgs, vec!["eager"]);
            }
            e => panic!("expected a group, got {e:?}"),
        }
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn taskgroup_hears_of_a_child_before_the_done_callbacks_added_after_create_task() {
    // conformance: K7
    // asyncio's `create_task` adds `_on_task_done` first, so a done
    // callback the caller adds afterwards finds the child out of the
    // group's `_tasks` already; the same for a child done (eagerly) at
    // `create_task`, whose notification is queued before the callback.
    for factory in [tulip::TaskFactory::Default, tulip::TaskFactory::Eager] {
        let seen = tulip::run(async move {
            get_running_loop()?.set_task_factory(factory);
            let seen = Rc::new(RefCell::new(Vec::new()));
            let s = seen.clone();
            TaskGroup::run(|tg| async move {
                for i in 0..3 {
                    let c = tg.create_task(async move {
                        if i == 1 {
                            sleep(0.0).await?;
                        }
                        Ok(())
                    })?;
                    let (tg2, s2) = (tg.clone(), s.clone());
                    c.add_done_callback(move |_| s2.borrow_mut().push((i, tg2.len())));
                }
                Ok(())
            })
            .await?;
            let out = seen.borrow().clone();
            Ok(out)
        })
        .unwrap();
        // Children 0 and 2 are heard of in one iteration (Eager: done
        // inside create_task, their notifications queued there), 1 in the
        // next; each callback runs right after its child's notification.
        assert_eq!(seen, [(0, 2), (2, 1), (1, 0)], "{factory:?}");
    }
}

#[test]
fn taskgroup_body_panic_cancels_children_and_comes_back_in_the_group() {
    // conformance: K7, C5
    // asyncio: any exception in the `async with` body reaches __aexit__,
    // which cancels the children, waits for them, and raises the group.
    // A panic is the task's error (C5), so the body's panic must not leave
    // the children running on their own.
    tulip::run(async {
        let child_cancelled = Rc::new(Cell::new(false));
        let c = child_cancelled.clone();
        let parent = create_task(async move {
            TaskGroup::run(|tg| async move {
                let _child = tg.create_task(async move {
                    let r = sleep(10.0).await;
                    c.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
                    r
                })?;
                sleep(0.0).await?;
                panic!("body broke");
                #[allow(unreachable_code)]
                Ok(())
            })
            .await
        })?;
        parent.wait_done().await?;
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        assert!(child_cancelled.get(), "the child was left running");
        match parent.result().unwrap_err() {
            Error::Group { errors, .. } => {
                assert_eq!(errors.len(), 1);
                assert!(matches!(&errors[0], Error::Panic(m) if &**m == "body broke"));
            }
            e => panic!("expected a group, got {e:?}"),
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn taskgroup_create_task_after_failure_or_exit_is_an_error() {
    // conformance: K7
    tulip::run(async {
        let keep = Rc::new(RefCell::new(None));
        let k = keep.clone();
        // Checked after the group: a failed assert inside the body would
        // only be one more error in the group, which is expected anyway.
        let refused = Rc::new(Cell::new(None));
        let rf = refused.clone();
        let r: Result<()> = TaskGroup::run(|tg| async move {
            *k.borrow_mut() = Some(tg.clone());
            let _task = tg.create_task(fail_after(0.0, "x"))?;
            let r = sleep(1.0).await;
            rf.set(Some(tg.create_task(after(0.0, 1)).is_err()));
            r
        })
        .await;
        match r {
            Err(Error::Group { errors, .. }) => {
                let msgs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                assert_eq!(msgs, ["x"]);
            }
            other => panic!("expected a group, got {other:?}"),
        }
        assert_eq!(refused.get(), Some(true), "shutting down");
        let tg = keep.borrow_mut().take().unwrap();
        assert!(tg.create_task(after(0.0, 1)).is_err(), "finished");

        let out = TaskGroup::run(|tg| async move {
            let a = tg.create_task(after(0.01, 1))?;
            let b = tg.create_task(after(0.02, 2))?;
            Ok((a, b))
        })
        .await?;
        assert_eq!((out.0.result()?, out.1.result()?), (1, 2));
        Ok(())
    })
    .unwrap();
}

#[test]
fn taskgroup_outer_cancel_propagates_and_keeps_level() {
    // conformance: K7
    tulip::run(async {
        let child_cancelled = Rc::new(Cell::new(false));
        let c = child_cancelled.clone();
        let t = create_task(async move {
            TaskGroup::run(|tg| async move {
                let _task = tg.create_task(async move {
                    let r = sleep(10.0).await;
                    c.set(r.is_err());
                    r
                })?;
                sleep(10.0).await
            })
            .await
        })?;
        sleep(0.01).await?;
        t.cancel();
        assert!(t.wait_done_err().await.is_cancelled());
        assert!(t.cancelled());
        assert!(child_cancelled.get());
        Ok(())
    })
    .unwrap();
}

#[test]
fn nested_scopes_with_the_same_deadline_leave_no_stray_cancel() {
    // conformance: K6
    tulip::run(async {
        let lp = get_running_loop()?;
        let when = lp.time() + 0.01;
        let inner_seen = Rc::new(Cell::new(false));
        let s = inner_seen.clone();
        let r = timeout_at(when)
            .run(async move {
                let r = timeout_at(when).run(sleep(10.0)).await;
                s.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
                r
            })
            .await;
        // The outer scope expired too, so only it may claim the timeout.
        assert!(r.unwrap_err().is_timeout());
        assert!(inner_seen.get());
        assert_eq!(current_task().unwrap().cancelling(), 0);
        // No cancel is left pending for the next await.
        sleep(0.001).await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropped_expired_scope_takes_its_cancel_back() {
    // conformance: K6
    tulip::run(async {
        use std::future::Future as _;
        let mut scope = Box::pin(timeout(0.0).run(sleep(10.0)));
        std::future::poll_fn(|cx| {
            assert!(scope.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        // The deadline passes: the scope cancels this task.
        for _ in 0..3 {
            let _ = sleep(0.0).await;
        }
        assert_eq!(current_task().unwrap().cancelling(), 1);
        drop(scope); // abandoned while expiring
        assert_eq!(current_task().unwrap().cancelling(), 0);
        sleep(0.001).await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_can_yield_the_children_themselves() {
    // conformance: K3
    tulip::run(async {
        let slow = create_task(after(0.02, "slow"))?;
        let fast = create_task(after(0.01, "fast"))?;
        let mut it = as_completed(vec![slow.clone(), fast.clone()], None);
        let first = it.next_done().await.unwrap()?;
        assert!(first.task().unwrap().ptr_eq(&fast));
        assert_eq!(first.result()?, "fast");
        assert_eq!(it.len(), 1);
        assert_eq!(it.next().await.unwrap()?, "slow");
        assert!(it.is_empty());
        Ok(())
    })
    .unwrap();
}

// ===== K3 as_completed as an iterator of awaitables =====

#[test]
fn as_completed_for_loop_of_awaitables_in_completion_order() {
    // conformance: K3
    tulip::run(async {
        // for f in as_completed(aws): result = await f
        let it = as_completed(vec![after(0.03, 3), after(0.01, 1), after(0.02, 2)], None);
        assert_eq!((it.len(), it.size_hint()), (3, (3, Some(3))));
        let (mut got, mut yielded) = (vec![], 0);
        for fut in it {
            yielded += 1;
            got.push(fut.await?);
        }
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(yielded, 3, "exactly one awaitable per child");

        // A failed child's error is what its awaitable gives.
        let mut it = as_completed(
            vec![
                create_task(fail_after(0.01, "bad"))?,
                create_task(after(0.02, 2u32))?,
            ],
            None,
        );
        let first = Iterator::next(&mut it).unwrap();
        assert_eq!(first.await.unwrap_err().to_string(), "bad");
        assert_eq!(Iterator::next(&mut it).unwrap().await?, 2);
        assert!(Iterator::next(&mut it).is_none());
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_awaitables_count_is_shared_with_async_next() {
    // conformance: K3
    tulip::run(async {
        let children: Vec<_> = (1..=4u32)
            .map(|i| create_task(after(0.005 * f64::from(i), i)))
            .collect::<Result<_>>()?;
        // Taking the awaitables without awaiting them: exactly four.
        assert_eq!(as_completed(children.clone(), None).count(), 4);

        // async for, then for, then async for: one count.
        let mut it = as_completed(children.clone(), None);
        assert_eq!(it.next().await.unwrap()?, 1);
        let mut rest = vec![];
        for fut in (&mut it).take(2) {
            rest.push(fut.await?);
        }
        assert_eq!(rest, vec![2, 3]);
        assert_eq!(it.len(), 1);
        assert_eq!(it.next_done().await.unwrap()?.result()?, 4);
        assert!(it.next().await.is_none());
        assert!(Iterator::next(&mut it).is_none());
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_awaitables_after_the_timeout_give_timeout_and_cancel_nothing() {
    // conformance: K3
    tulip::run(async {
        let lp = get_running_loop()?;
        let slow = create_task(after(10.0, 9u32))?;
        let children = vec![
            create_task(after(0.01, 1u32))?,
            create_task(after(0.02, 2u32))?,
            slow.clone(),
            create_task(after(10.0, 8u32))?,
        ];
        let t0 = lp.time();
        let mut out = vec![];
        for fut in as_completed(children.clone(), Some(0.05)) {
            // The first awaitable is awaited after the deadline: the two
            // results that came before it are still yielded first.
            if out.is_empty() {
                sleep(0.1).await?;
            }
            out.push(fut.await.map_err(|e| e.is_timeout()));
        }
        assert_eq!(out, vec![Ok(1), Ok(2), Err(true), Err(true)]);
        assert!(lp.time() - t0 < 1.0, "bounded by the timeout");
        // as_completed cancels nothing, not even on timeout.
        assert!(!slow.done());
        for c in &children {
            c.cancel();
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_awaitables_outlive_the_iterator_and_keep_its_timeout() {
    // conformance: K3
    tulip::run(async {
        let lp = get_running_loop()?;
        let slow = create_task(after(10.0, 1u32))?;
        let futs: Vec<_> = as_completed(vec![slow.clone()], Some(0.02)).collect();
        assert_eq!(futs.len(), 1);
        let t0 = lp.time();
        let mut fut = futs.into_iter().next().unwrap();
        assert!((&mut fut).await.unwrap_err().is_timeout());
        assert!(lp.time() - t0 < 1.0, "the timer outlived the AsCompleted");
        // An awaitable gives one answer.
        assert!(matches!((&mut fut).await, Err(Error::InvalidState(_))));
        slow.cancel();
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_awaitables_awaited_concurrently_are_served_in_order() {
    // conformance: K3
    tulip::run(async {
        // gather(*as_completed(aws)): each awaitable in its own task, all
        // waiting at once; they are served in the order they wait.
        let out = gather(as_completed(
            vec![after(0.03, 3), after(0.01, 1), after(0.02, 2)],
            None,
        ))
        .await?;
        assert_eq!(out, vec![1, 2, 3]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelling_the_task_awaiting_an_as_completed_awaitable_leaves_children_running() {
    // conformance: K3, C1
    tulip::run(async {
        let children = vec![
            create_task(after(0.01, 1u32))?,
            create_task(after(0.05, 2u32))?,
            create_task(after(0.06, 3u32))?,
        ];
        let seen = Rc::new(RefCell::new(vec![]));
        let (cs, s) = (children.clone(), seen.clone());
        let reader = create_task(async move {
            for fut in as_completed(cs, None) {
                let v = fut.await?;
                s.borrow_mut().push(v);
            }
            Ok(())
        })?;
        sleep(0.02).await?;
        reader.cancel(); // mid-iteration, while it awaits the second result
        assert!(reader.wait_done_err().await.is_cancelled());
        assert_eq!(*seen.borrow(), vec![1]);
        assert!(children.iter().all(|c| !c.cancelled()));
        assert!(!children[1].done() && !children[2].done());
        assert_eq!(children[1].clone().await?, 2);
        assert_eq!(children[2].clone().await?, 3);
        Ok(())
    })
    .unwrap();
}

#[test]
fn an_awaitable_woken_then_cancelled_passes_its_result_on() {
    // conformance: K3, C1
    tulip::run(async {
        let lp = get_running_loop()?;
        let first = create_task(after(0.01, 1u32))?;
        let second = create_task(after(0.2, 2u32))?;
        let mut it = as_completed(vec![first.clone(), second.clone()], None);
        let (a, b) = (
            Iterator::next(&mut it).unwrap(),
            Iterator::next(&mut it).unwrap(),
        );
        let x = create_task(a)?;
        sleep(0.0).await?; // x waits first
        let y = create_task(b)?;
        sleep(0.0).await?;
        // `first`'s completion wakes x (as_completed's callback runs first);
        // this later callback cancels x before x runs.
        let x2 = x.clone();
        first.add_done_callback(move |_| {
            x2.cancel();
        });
        let t0 = lp.time();
        assert!(x.wait_done_err().await.is_cancelled());
        // y got `first`'s result at once, not when `second` completed.
        assert_eq!(y.await?, 1);
        assert!(lp.time() - t0 < 0.1 && !second.done());
        assert_eq!(it.len(), 0);
        second.cancel();
        Ok(())
    })
    .unwrap();
}

// ===== K2 wait: the order of (done, pending) =====

#[test]
fn wait_returns_done_and_pending_in_argument_order() {
    // conformance: K2
    tulip::run(async {
        // Completion order is c, b, a: the reverse of the arguments.
        let a = create_task(after(0.03, 'a'))?;
        let b = create_task(after(0.02, 'b'))?;
        let c = create_task(after(0.01, 'c'))?;
        let d = create_task(after(10.0, 'd'))?;
        let args = vec![d.clone(), a.clone(), b.clone(), c.clone()];
        let (done, pending) = wait(args.clone(), Some(0.015), ReturnWhen::AllCompleted).await?;
        let names = |v: &[tulip::Child<char>]| -> Vec<String> {
            v.iter().map(|c| c.task().unwrap().name()).collect()
        };
        assert_eq!(names(&done), vec![c.name()]);
        assert_eq!(names(&pending), [&d, &a, &b].map(|t| t.name()));

        let (done, pending) = wait(args, Some(0.05), ReturnWhen::AllCompleted).await?;
        assert_eq!(names(&done), [&a, &b, &c].map(|t| t.name()));
        assert!(done[0].task().unwrap().ptr_eq(&a));
        assert_eq!(names(&pending), vec![d.name()]);

        // A child passed twice is there twice (asyncio's set: once).
        let (done, pending) =
            wait(vec![a.clone(), a.clone()], None, ReturnWhen::AllCompleted).await?;
        assert_eq!((done.len(), pending.len()), (2, 0));
        d.cancel();
        Ok(())
    })
    .unwrap();
}

#[test]
fn gathers_done_callback_runs_in_its_registration_place() {
    // conformance: K1, F2. asyncio's gather registers one done callback per
    // child; the child's callbacks then run in registration order. tulip
    // runs gather's without allocating a handle (the child's own cell goes
    // into the ready queue), and must keep that order: at `before` neither
    // gather has heard of the child, at `between` the first has and the
    // second (registered after `between`) has not, at `after` both have.
    type G = tulip::Gather<Vec<tulip::Child<u32>>>;
    let seen = tulip::run(async {
        let child: tulip::Future<u32> = tulip::Future::new();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let gs: Rc<RefCell<Vec<G>>> = Rc::default();
        let note = |tag: &'static str| {
            let (seen, gs) = (seen.clone(), gs.clone());
            move |_: &tulip::Future<u32>| {
                let done: Vec<bool> = gs.borrow().iter().map(|g| g.done()).collect();
                seen.borrow_mut().push((tag, done));
            }
        };
        child.add_done_callback(note("before"));
        gs.borrow_mut().push(gather(vec![child.clone()]));
        child.add_done_callback(note("between"));
        gs.borrow_mut().push(gather(vec![child.clone()]));
        child.add_done_callback(note("after"));
        child.set_result(5)?;
        sleep(0.0).await?; // one iteration: every done callback ran
        assert!(gs.borrow().iter().all(|g| g.done()));
        let out = seen.borrow().clone();
        Ok(out)
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            ("before", vec![false, false]),
            ("between", vec![true, false]),
            ("after", vec![true, true]),
        ]
    );
}

// ===== gather's notifications when the loop closes or is interrupted =====

/// One loop iteration with a zero timeout.
fn iterate(lp: &tulip::EventLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

// conformance: K1
#[test]
fn closing_the_loop_with_a_childs_notification_queued_frees_the_gather() {
    // The notification holds the gather, the gather holds the child: a
    // cycle that only running, or dropping, the notification breaks. asyncio
    // drops the `_done_callback` handle with `_ready` at close.
    let lp = tulip::EventLoop::new().unwrap();
    let probe = Rc::new(());
    let weak = Rc::downgrade(&probe);
    let f: tulip::Future<Rc<()>> = lp.create_future();
    let g = {
        tulip::set_event_loop(Some(&lp));
        let g = gather(vec![f.clone()]);
        tulip::set_event_loop(None);
        g
    };
    f.set_result(probe).unwrap(); // queued, not run
    drop(g);
    drop(f);
    lp.close().unwrap();
    assert!(
        weak.upgrade().is_none(),
        "the child's result (and the gather) leaked"
    );
}

// conformance: K1
#[test]
fn a_childs_error_left_unretrieved_when_run_ends_is_still_reported() {
    // The child fails in run()'s last iteration; its notification never
    // runs. The child is freed all the same, and reports its error as
    // never retrieved (F3).
    let reports = tulip::run(async move {
        let reports = common::capture_reports(&get_running_loop()?);
        drop(gather(vec![async {
            Err::<u32, _>(Error::msg("child failed"))
        }]));
        Ok(reports)
    })
    .unwrap();
    let reports: Vec<String> = reports.borrow().iter().map(|c| c.message.clone()).collect();
    assert!(
        reports.iter().any(|m| m.contains("never retrieved")),
        "{reports:?}"
    );
}

/// Interrupts the loop when woken (the KeyboardInterrupt stand-in).
struct InterruptWaker;

impl std::task::Wake for InterruptWaker {
    fn wake(self: std::sync::Arc<Self>) {
        tulip::interrupt();
    }
}

// conformance: K1
#[test]
fn an_interrupt_in_one_notification_leaves_the_next_ones_for_the_next_run() {
    use std::future::Future as _;
    // Two gathers of one future: the first completes and wakes a waker
    // that interrupts the loop. asyncio leaves the second `_done_callback`
    // in `_ready`, and it runs when the loop runs again.
    let lp = tulip::EventLoop::new().unwrap();
    tulip::set_event_loop(Some(&lp));
    let f: tulip::Future<u32> = lp.create_future();
    let mut g1 = gather(vec![f.clone()]);
    let w = std::task::Waker::from(std::sync::Arc::new(InterruptWaker));
    let mut cx = std::task::Context::from_waker(&w);
    assert!(std::pin::Pin::new(&mut g1).poll(&mut cx).is_pending());
    let g2 = gather(vec![f.clone()]);
    tulip::set_event_loop(None);
    f.set_result(7).unwrap();
    lp.stop();
    assert!(matches!(lp.run_forever(), Err(Error::Interrupted)));
    assert!(g1.done());
    assert!(!g2.done());
    iterate(&lp);
    assert!(
        g2.done(),
        "gather 2's notification was lost with the interrupt"
    );
    lp.close().unwrap();
}

// conformance: L7, K1
#[test]
fn notifications_left_by_an_interrupt_run_before_the_rest_of_the_iteration() {
    use std::future::Future as _;
    // The future's done callbacks (gather 1's and gather 2's) were queued
    // before `later`; gather 1's interrupts the loop. asyncio leaves gather
    // 2's `_done_callback` in `_ready` ahead of `later`, in order, so the
    // next run runs it first: `later` sees gather 2 done.
    let lp = tulip::EventLoop::new().unwrap();
    tulip::set_event_loop(Some(&lp));
    let f: tulip::Future<u32> = lp.create_future();
    let mut g1 = gather(vec![f.clone()]);
    let w = std::task::Waker::from(std::sync::Arc::new(InterruptWaker));
    let mut cx = std::task::Context::from_waker(&w);
    assert!(std::pin::Pin::new(&mut g1).poll(&mut cx).is_pending());
    let g2 = Rc::new(gather(vec![f.clone()]));
    tulip::set_event_loop(None);
    f.set_result(7).unwrap();
    let seen = Rc::new(Cell::new(None));
    let (s, g) = (seen.clone(), g2.clone());
    let _later = lp.call_soon(move || s.set(Some(g.done()))).unwrap();
    lp.stop();
    assert!(matches!(lp.run_forever(), Err(Error::Interrupted)));
    assert!(g1.done());
    assert_eq!(seen.get(), None, "the interrupt ended the iteration");
    iterate(&lp);
    assert_eq!(
        seen.get(),
        Some(true),
        "the callback queued after the notifications ran before them"
    );
    lp.close().unwrap();
}

#[test]
fn a_taskgroup_dropped_mid_body_cancels_its_children_and_leaves_the_parent_alone() {
    // conformance: K7
    // asyncio: a coroutine closed inside `async with TaskGroup()` runs
    // __aexit__, whose _abort() cancels the children; with `_aborting` set,
    // a child that fails later never cancels the parent. A dropped
    // `TaskGroup::run` is that exit path.
    tulip::run(async {
        use std::future::Future as _;
        let child_cancelled = Rc::new(Cell::new(false));
        let c = child_cancelled.clone();
        let mut group = Box::pin(TaskGroup::run(|tg| async move {
            let _child = tg.create_task(async move {
                let r = sleep(0.01).await;
                c.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
                r?;
                Err::<(), _>(Error::msg("late"))
            })?;
            sleep(10.0).await
        }));
        std::future::poll_fn(|cx| {
            assert!(group.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        sleep(0.0).await?; // the child starts its sleep
        drop(group);
        // A stray cancel from the orphaned group would end this sleep.
        sleep(0.05).await?;
        assert!(child_cancelled.get(), "the child was left running");
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_taskgroup_dropped_after_it_cancelled_the_parent_takes_the_cancel_back() {
    // conformance: K7
    // The group's cancel of the parent (parent_cancel_requested) is always
    // matched by one uncancel() on the way out; a dropped group is a way out.
    tulip::run(async {
        use std::future::Future as _;
        let mut group = Box::pin(TaskGroup::run(|tg| async move {
            let _child = tg.create_task(fail_after(0.0, "boom"))?;
            sleep(10.0).await
        }));
        std::future::poll_fn(|cx| {
            assert!(group.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        // The child fails while this task waits elsewhere: the group's
        // cancel of the parent lands here.
        let r = sleep(10.0).await;
        assert!(r.unwrap_err().is_cancelled());
        assert_eq!(current_task().unwrap().cancelling(), 1);
        drop(group);
        assert_eq!(current_task().unwrap().cancelling(), 0);
        sleep(0.001).await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_timeout_removes_the_callbacks_of_the_children_left() {
    // conformance: K3
    // asyncio 3.13's _handle_timeout removes _handle_completion from every
    // future still to do: nothing of the iterator stays on them (a callback
    // that held the child itself kept a never-resolved future alive).
    tulip::run(async {
        let lp = get_running_loop()?;
        let fut: tulip::Future<u32> = lp.create_future();
        let task = create_task(after(10.0, 2u32))?;
        let done = create_task(after(0.0, 3u32))?;
        let mut it = as_completed(
            vec![
                tulip::Child::Future(fut.clone()),
                tulip::Child::Task(task.clone()),
                tulip::Child::Task(done.clone()),
            ],
            Some(0.01),
        );
        assert_eq!(it.next().await.unwrap()?, 3);
        assert!(it.next().await.unwrap().unwrap_err().is_timeout());
        assert_eq!(format!("{fut:?}"), "<Future pending>");
        assert_eq!(task.callback_count(), 0);
        assert!(it.next().await.unwrap().unwrap_err().is_timeout());
        assert!(it.next().await.is_none());
        task.cancel();
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_cancelled_gather_with_return_exceptions_keeps_the_cancel_message() {
    // conformance: K1
    // asyncio: once every child is done, a gather whose cancel reached a
    // child ends with `fut._make_cancelled_error()` of the last child,
    // which carries the message of the cancel (CancelledError('bye')).
    tulip::run(async {
        let t = create_task(async {
            let g = gather(vec![sleep(10.0), sleep(10.0)]).return_exceptions();
            Ok(g.await.unwrap_err())
        })?;
        sleep(0.01).await?;
        t.cancel_with("bye");
        t.wait_done().await?;
        match t.result()? {
            Error::Cancelled(Some(m)) => assert_eq!(&*m, "bye"),
            e => panic!("expected Cancelled('bye'), got {e:?}"),
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_gather_whose_last_child_swallowed_the_cancel_keeps_the_cancel_message() {
    // conformance: K1, C3
    // Found by the differential fuzzer (scripts/difffuzz). asyncio's
    // `fut._make_cancelled_error()` on a last child that was NOT cancelled
    // is CancelledError(its `_cancel_message`): the message its cancel
    // left when it was delivered as a must_cancel (the child was running).
    // Here the child cancels its own parent, which cancels the gather and
    // so the child, with "bye"; the child swallows it; the gather still
    // ends Cancelled('bye'), in 3.12 and 3.13.
    tulip::run(async {
        let parent: Rc<RefCell<Option<tulip::TaskRef>>> = Rc::default();
        let p = parent.clone();
        let t = create_task(async move {
            let child = async move {
                let me = p.borrow().clone().expect("the parent is known");
                me.cancel_with("bye");
                // The cancel reached this child as a must_cancel: swallow it.
                assert!(sleep(0.0).await.unwrap_err().is_cancelled());
                Ok(1)
            };
            Ok(gather(vec![child]).await.unwrap_err())
        })?;
        *parent.borrow_mut() = Some(t.as_ref());
        t.wait_done().await?;
        match t.result()? {
            Error::Cancelled(Some(m)) => assert_eq!(&*m, "bye"),
            e => panic!("expected Cancelled('bye'), got {e:?}"),
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_second_cancel_meeting_a_cancelled_gather_gives_the_gathers_own_cancelled() {
    // conformance: K1, C3
    // Found by the differential fuzzer (scripts/difffuzz). The first
    // cancel reaches the child; the second finds it done, so it is a
    // must_cancel. When the task wakes, the gather is decided with the
    // child's CancelledError('bye'), and asyncio's __step keeps an error
    // that is already a CancelledError instead of throwing a new one
    // (as tulip's own futures and tasks do): the body sees 'bye'.
    tulip::run(async {
        let f: tulip::Future<u32> = get_running_loop()?.create_future();
        let g = f.clone();
        let t = create_task(async move { Ok(gather(vec![g]).await.unwrap_err()) })?;
        sleep(0.0).await?;
        t.cancel_with("bye");
        t.cancel();
        match t.clone().await? {
            Error::Cancelled(Some(m)) => assert_eq!(&*m, "bye"),
            e => panic!("expected Cancelled('bye'), got {e:?}"),
        }
        assert!(f.cancelled());
        Ok(())
    })
    .unwrap();
}

#[test]
fn gather_registers_on_each_child_before_making_the_next_one() {
    // conformance: K1, C6
    // Found by the differential fuzzer (scripts/difffuzz). asyncio's
    // gather adds its done callback to each child as soon as it has made
    // it, so an eager child that starts a gather of its own on an earlier
    // child registers after the outer gather: when that child fails, the
    // outer gather hears first (['outer', 'inner'], 3.12 and 3.13).
    tulip::run(async {
        get_running_loop()?.set_task_factory(tulip::TaskFactory::Eager);
        let log: Rc<RefCell<Vec<&str>>> = Rc::default();
        let t1 = create_task(async {
            sleep(0.01).await?;
            Err::<u32, _>(Error::msg("boom"))
        })?;
        let (l1, l2, t1b, t1c) = (log.clone(), log.clone(), t1.clone(), t1.clone());
        let outer = create_task(async move {
            let mut inner = Some(async move {
                let r = gather(vec![t1c]).await;
                l1.borrow_mut().push("inner");
                r.map(|_| 0)
            });
            // The children are made one by one, as the gather takes them.
            let children = (0..2).map(|i| match i {
                0 => tulip::Child::Task(t1b.clone()),
                _ => tulip::Child::new(inner.take().expect("once")),
            });
            let r = gather(children).await;
            l2.borrow_mut().push("outer");
            r.map(|_| ())
        })?;
        assert!(outer.wait_done().await.is_ok());
        sleep(0.02).await?;
        assert_eq!(*log.borrow(), ["outer", "inner"]);
        assert!(t1.exception()?.is_some());
        Ok(())
    })
    .unwrap();
}

#[test]
fn gather_macro_registers_on_each_child_before_making_the_next_one() {
    // conformance: K1, C6
    // gather! as gather above: the outer gather hears of t1 first.
    tulip::run(async {
        get_running_loop()?.set_task_factory(tulip::TaskFactory::Eager);
        let log: Rc<RefCell<Vec<&str>>> = Rc::default();
        let t1 = create_task(async {
            sleep(0.01).await?;
            Err::<u32, _>(Error::msg("boom"))
        })?;
        let (l1, l2, t1b, t1c) = (log.clone(), log.clone(), t1.clone(), t1.clone());
        let outer = create_task(async move {
            let inner = async move {
                let r = gather(vec![t1c]).await;
                l1.borrow_mut().push("inner");
                r.map(|_| "x")
            };
            let r = tulip::gather!(t1b, inner).await;
            l2.borrow_mut().push("outer");
            r.map(|_| ())
        })?;
        assert!(outer.wait_done().await.is_ok());
        sleep(0.02).await?;
        assert_eq!(*log.borrow(), ["outer", "inner"]);
        assert!(t1.exception()?.is_some());
        Ok(())
    })
    .unwrap();
}

#[test]
fn as_completed_made_before_its_loop_runs_keeps_its_timeout() {
    // conformance: K3
    // asyncio's _AsCompletedIterator takes its loop with get_event_loop(),
    // running or not, and starts the timer on it: the timeout holds for an
    // iterator made before run_until_complete.
    let lp = tulip::new_event_loop().unwrap();
    let fut: tulip::Future<u32> = lp.create_future();
    let mut it = as_completed(vec![fut.clone()], Some(0.01));
    let r = lp
        .run_until_complete(async move {
            // A bound on the wait: without the timer, this scope ends it.
            timeout(2.0).run(async { Ok(it.next().await) }).await
        })
        .unwrap();
    assert!(r.unwrap().unwrap_err().is_timeout());
    assert_eq!(format!("{fut:?}"), "<Future pending>");
    lp.close().unwrap();
}

#[test]
fn a_failed_gather_nobody_awaited_reports_its_error() {
    // conformance: K1, F3
    // asyncio's _done_callback retrieves the child's error and sets it on
    // the outer future; an outer future nobody awaits logs
    // "_GatheringFuture exception was never retrieved" when it goes. A
    // gather that is awaited retrieves it and reports nothing.
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let g = gather(vec![fail_after(0.0, "awaited")]);
        assert_eq!(g.await.unwrap_err().to_string(), "awaited");
        let g = gather(vec![fail_after(0.0, "dropped")]);
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        assert!(g.done());
        drop(g);
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<_> = reports
        .borrow()
        .iter()
        .map(|c| (c.message.clone(), c.error.as_ref().map(|e| e.to_string())))
        .collect();
    assert_eq!(
        got,
        vec![(
            "_GatheringFuture exception was never retrieved".to_string(),
            Some("dropped".to_string())
        )]
    );
}

#[test]
fn a_group_child_failing_after_its_parent_finished_is_reported_as_itself() {
    // conformance: K7
    // asyncio's _on_task_done: 'Task <child> has errored out but its parent
    // task <parent> is already completed', with the failing child as the
    // context's task.
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    let child = Rc::new(RefCell::new(None));
    let slot = child.clone();
    lp.run_until_complete(async move {
        let parent = tulip::create_task_named(
            async move {
                use std::future::Future as _;
                let mut group = Box::pin(TaskGroup::run(|tg| async move {
                    *slot.borrow_mut() = Some(tg.create_task_named(
                        async {
                            let _ = sleep(10.0).await; // swallows the cancel
                            sleep(0.01).await?;
                            Err::<(), _>(Error::msg("late"))
                        },
                        "the-child",
                    )?);
                    sleep(10.0).await
                }));
                std::future::poll_fn(|cx| {
                    assert!(group.as_mut().poll(cx).is_pending());
                    std::task::Poll::Ready(())
                })
                .await;
                sleep(0.0).await?;
                drop(group);
                Ok(())
            },
            "the-parent",
        )?;
        parent.wait_done().await?;
        let child = child.borrow().clone().unwrap();
        child.wait_done().await?;
        for _ in 0..3 {
            sleep(0.0).await?; // the group's done callback runs
        }
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<_> = reports
        .borrow()
        .iter()
        .map(|c| (c.message.clone(), c.task.clone()))
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let (message, task) = &got[0];
    assert!(
        message.contains("the-child") && message.contains("the-parent"),
        "{message}"
    );
    assert!(
        task.as_deref().unwrap_or("").contains("the-child"),
        "{task:?}"
    );
}

#[test]
fn gather_a_cancelled_child_ends_it_at_once_with_cancelled() {
    // conformance: K1
    // asyncio's _done_callback without return_exceptions: a child that
    // was cancelled (not by the gather) sets CancelledError on the outer
    // future at once, like any child error; the siblings keep running.
    tulip::run(async {
        let a = create_task(after(10.0, 1u32))?;
        let b = create_task(after(10.0, 2u32))?;
        let g = gather(vec![a.clone(), b.clone()]);
        sleep(0.0).await?;
        a.cancel();
        let r = wait_for(g, 1.0).await;
        assert!(r.unwrap_err().is_cancelled());
        assert!(!b.done(), "gather does not cancel siblings");
        b.cancel();
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_child_error_after_the_gather_failed_is_marked_retrieved() {
    // conformance: K1
    // asyncio's _done_callback, once the outer future is done, calls
    // `fut.exception()` on each later child: a second child error is
    // retrieved by the gather and never reported, even if nobody else
    // keeps that child.
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let g = gather(vec![fail_after(0.0, "first"), fail_after(0.01, "second")]);
        assert_eq!(g.await.unwrap_err().to_string(), "first");
        sleep(0.05).await?; // the second fails meanwhile; its task goes
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<String> = reports.borrow().iter().map(|c| c.message.clone()).collect();
    assert_eq!(got, Vec::<String>::new());
}

#[test]
fn wait_first_exception_ignores_a_cancelled_child() {
    // conformance: K2
    // asyncio's _on_completion: FIRST_EXCEPTION returns on a child that
    // `not f.cancelled() and f.exception() is not None`; a cancelled
    // child is done, not failed, so the wait goes on.
    tulip::run(async {
        let a = create_task(after(10.0, 1u32))?;
        let gate = tulip::Event::new();
        let g2 = gate.clone();
        let b = create_task(async move {
            g2.wait().await?;
            Err(Error::msg("b failed"))
        })?;
        let c = create_task(after(10.0, 3u32))?;
        let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
        let w = create_task(async move {
            let (done, pending) =
                wait(vec![a2, b2, c2], Some(5.0), ReturnWhen::FirstException).await?;
            Ok((done.len(), pending.len()))
        })?;
        sleep(0.0).await?;
        a.cancel();
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        assert!(a.cancelled());
        assert!(!w.done(), "FIRST_EXCEPTION returned on a cancelled child");
        gate.set(); // now b fails
        assert_eq!(wait_for(w, 1.0).await?, (2, 1));
        assert!(!c.done());
        c.cancel();
        Ok(())
    })
    .unwrap();
}

#[test]
fn shield_mirrors_the_inner_result_error_and_cancel() {
    // conformance: K4
    // asyncio's _inner_done_callback: when the outer future is not
    // cancelled, it takes the inner one's result or exception, and is
    // cancelled if the inner one was (`if inner.cancelled(): outer.cancel()`).
    tulip::run(async {
        let outer = shield(after(0.0, 7u32));
        assert!(!outer.done());
        assert_eq!(wait_for(outer, 1.0).await?, 7);

        let outer = shield(fail_after(0.0, "inner failed"));
        let e = wait_for(outer, 1.0).await.unwrap_err();
        assert_eq!(e.to_string(), "inner failed");

        let inner = create_task(after(10.0, 1u32))?;
        let outer = shield(inner.clone());
        sleep(0.0).await?;
        inner.cancel();
        let o2 = outer.clone();
        let e = wait_for(o2, 1.0).await.unwrap_err();
        assert!(e.is_cancelled());
        assert!(
            outer.cancelled(),
            "the outer future is cancelled, not failed"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn an_expired_scope_lets_another_error_of_the_body_through() {
    // conformance: K6
    // asyncio's Timeout.__aexit__ turns only a CancelledError into
    // TimeoutError; any other exception the body raises after the
    // deadline (here, while it handles the cancel) propagates as it is.
    tulip::run(async {
        let cm = timeout(0.01);
        let r: Result<u32> = cm
            .clone()
            .run(async {
                match sleep(10.0).await {
                    Err(e) if e.is_cancelled() => Err(Error::msg("cleanup failed")),
                    r => r.map(|_| 0),
                }
            })
            .await;
        assert_eq!(r.unwrap_err().to_string(), "cleanup failed");
        assert!(cm.expired());
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_taskgroup_child_may_create_a_sibling_while_the_group_exits() {
    // conformance: K7
    // asyncio's create_task refuses only `if self._exiting and not
    // self._tasks`: while the body has returned but children still run,
    // a child may add a sibling, and the group waits for it too.
    tulip::run(async {
        let sibling = Rc::new(RefCell::new(None));
        let s = sibling.clone();
        TaskGroup::run(|tg| async move {
            let tg2 = tg.clone();
            let _task = tg.create_task(async move {
                // The body has returned by now: the group is exiting.
                *s.borrow_mut() = Some(tg2.create_task(after(0.01, 5u32))?);
                Ok(())
            })?;
            Ok(())
        })
        .await?;
        let sibling = sibling
            .borrow_mut()
            .take()
            .expect("the sibling was created");
        assert!(sibling.done(), "the group waited for the sibling");
        assert_eq!(sibling.result()?, 5);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_parent_cancelled_while_its_taskgroup_exits_cancels_the_children() {
    // conformance: K7
    // asyncio's _aexit: the parent cancelled while it waits for the
    // children (`except CancelledError: if not self._aborting:`) aborts
    // them and propagates the Cancelled.
    tulip::run(async {
        let child_cancelled = Rc::new(Cell::new(false));
        let c = child_cancelled.clone();
        let t = create_task(async move {
            TaskGroup::run(|tg| async move {
                let _task = tg.create_task(async move {
                    let r = sleep(10.0).await;
                    c.set(r.is_err());
                    r
                })?;
                Ok(()) // the group now waits for the child
            })
            .await
        })?;
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        t.cancel();
        let t2 = t.clone();
        wait_for(async move { t2.wait_done().await }, 1.0).await?;
        assert!(t.cancelled());
        assert!(child_cancelled.get());
        Ok(())
    })
    .unwrap();
}

#[test]
fn taskgroup_errors_win_over_an_outside_cancel_which_stays_pending() {
    // conformance: K7
    // asyncio's _aexit: a Cancelled is propagated only if there are no
    // errors; with errors the group raises them, and (`if
    // self._parent_task.cancelling(): uncancel(); cancel()`) the outside
    // cancel stays pending at the same level: the next await sees it.
    tulip::run(async {
        let t = create_task(async move {
            let r: Result<()> = TaskGroup::run(|tg| async move {
                let _task = tg.create_task(async move {
                    match sleep(10.0).await {
                        Err(e) if e.is_cancelled() => Err(Error::msg("failed on cancel")),
                        r => r,
                    }
                })?;
                Ok(())
            })
            .await;
            let is_group = matches!(&r, Err(Error::Group { .. }));
            let level = current_task().unwrap().cancelling();
            let next = sleep(0.0).await.map_err(|e| e.is_cancelled());
            Ok((is_group, level, next))
        })?;
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        t.cancel();
        let (is_group, level, next) = wait_for(t, 1.0).await?;
        assert!(is_group, "the errors come back, not the Cancelled");
        assert_eq!(level, 1);
        assert_eq!(next, Err(true), "the outside cancel is still pending");
        Ok(())
    })
    .unwrap();
}

#[test]
fn rescheduling_a_timeout_later_drops_the_old_deadline() {
    // conformance: K6
    // asyncio's reschedule() cancels the old `_timeout_handler` before it
    // sets the new one: a postponed deadline no longer fires at the old time.
    tulip::run(async {
        let cm = timeout(0.01);
        let inside = cm.clone();
        let out = cm
            .clone()
            .run(async move {
                let lp = get_running_loop()?;
                inside.reschedule(Some(lp.time() + 10.0))?;
                sleep(0.05).await?;
                Ok(1u32)
            })
            .await?;
        assert_eq!(out, 1);
        assert!(!cm.expired());
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_timeout_is_expired_already_inside_the_body_it_cancelled() {
    // conformance: K6
    // asyncio's expired() is true from `_on_timeout` on (EXPIRING), so the
    // body handling the cancel can tell that its deadline passed.
    tulip::run(async {
        let cm = timeout(0.01);
        let inside = cm.clone();
        let r: Result<bool> = cm
            .clone()
            .run(async move {
                let r = sleep(10.0).await;
                assert!(r.unwrap_err().is_cancelled());
                Ok(inside.expired())
            })
            .await;
        assert!(r?, "expired() was false inside the body");
        assert!(cm.expired());
        // The swallowed cancel: the task is not left cancelled.
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_scope_whose_cancel_was_never_thrown_leaves_no_stray_cancel() {
    // conformance: K6, C3
    // The deadline passes while the body is suspended outside the runtime
    // (no fut_waiter): the scope's cancel is a must_cancel, taken by the
    // next step but not thrown, as the body resumes on a foreign future
    // and ends without another runtime await. The scope's uncancel() brings
    // the count back to zero, which drops the undelivered cancel: the task
    // is not left cancelled afterwards.
    tulip::run(async {
        let mut left = 1;
        let foreign = std::future::poll_fn(move |cx| {
            if left == 0 {
                return std::task::Poll::Ready(());
            }
            left -= 1;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        });
        let cm = timeout(0.0);
        let out = cm
            .clone()
            .run(async move {
                foreign.await;
                Ok(1u32)
            })
            .await?;
        assert_eq!(out, 1);
        assert!(cm.expired());
        assert_eq!(current_task().unwrap().cancelling(), 0);
        let r = sleep(0.001).await;
        assert!(r.is_ok(), "a stray cancel after the scope: {r:?}");
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_gather_with_return_exceptions_retrieves_its_childrens_errors() {
    // conformance: K1, F3
    // asyncio's _done_callback, in return_exceptions mode, builds the
    // results list (`res = fut.exception()` for every child) when the last
    // child is done: every child's error is retrieved then, and the outer
    // future holds a list, not an error. Nothing is reported, even if
    // nobody awaits the gather.
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let g = gather(vec![fail_after(0.0, "boom"), fail_after(0.0, "bang")]).return_exceptions();
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        assert!(g.done());
        drop(g);
        for _ in 0..5 {
            sleep(0.0).await?;
        }
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<_> = reports.borrow().iter().map(|c| c.message.clone()).collect();
    assert!(got.is_empty(), "reported: {got:?}");
}

// ===== K1: children that are done when the gather is made =====

/// asyncio 3.12's gather runs `_done_callback` at once for a child that is
/// done when the gather is made (a future already set, an eager task that
/// finished): a gather of done children is done at once, and awaiting it
/// does not suspend.
// conformance: K1
#[test]
fn a_gather_of_done_children_is_done_at_once() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let (a, b) = (lp.create_future::<u32>(), lp.create_future::<u32>());
        a.set_result(1)?;
        b.set_result(2)?;
        let g = gather(vec![a, b]);
        assert!(g.done(), "decided at once");
        // Awaiting it does not yield: a callback scheduled before has not run.
        let ran = Rc::new(Cell::new(false));
        let r2 = ran.clone();
        let _h = lp.call_soon(move || r2.set(true))?;
        assert_eq!(g.await?, vec![1, 2]);
        assert!(!ran.get(), "the await did not yield to the loop");
        Ok(())
    });
}

/// A done child's error decides the gather at once, so a cancel right
/// after finds it done and cancels nothing: the pending child runs on, as
/// asyncio's `outer.cancel()` returns False then.
// conformance: K1
#[test]
fn a_done_childs_error_decides_the_gather_before_a_cancel() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let failed = lp.create_future::<u32>();
        failed.set_exception(Error::msg("boom"))?;
        let pending = lp.create_future::<u32>();
        let g = gather(vec![failed, pending.clone()]);
        assert!(!g.cancel(), "decided: nothing to cancel");
        assert!(!pending.cancelled(), "the pending child runs on");
        let err = g.await.unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        pending.set_result(5)?;
        Ok(())
    });
}

/// `return_exceptions()` comes after `gather()` returns, and still
/// applies to the children that were done then.
// conformance: K1
#[test]
fn return_exceptions_applies_to_children_done_before_it() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let (failed, ok) = (lp.create_future::<u32>(), lp.create_future::<u32>());
        failed.set_exception(Error::msg("boom"))?;
        ok.set_result(1)?;
        let g = gather(vec![failed, ok]).return_exceptions();
        assert!(g.done());
        let out = g.await?;
        assert!(matches!(&out[0], Err(e) if e.to_string().contains("boom")));
        assert_eq!(out[1].as_ref().ok(), Some(&1));
        Ok(())
    });
}

/// The children done when the gather is made are counted once each,
/// whether the first look at the gather is a poll or their notification,
/// and whatever finishes later is counted as usual (no child skipped, none
/// counted twice): eager tasks, futures set before or after.
// conformance: K1, C6
#[test]
fn children_done_at_gather_time_are_counted_once() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let eager = |v: u32| {
            lp.create_task_with(
                async move { Ok(v) },
                tulip::TaskOptions {
                    eager: Some(true),
                    ..Default::default()
                },
            )
        };
        // 1. Not looked at before the notifications run; the pending child
        //    finishes before they do.
        let (a, b) = (eager(1)?, lp.create_future::<u32>());
        let g = gather(vec![tulip::Child::Task(a), tulip::Child::Future(b.clone())]);
        b.set_result(2)?;
        sleep(0.0).await?;
        sleep(0.0).await?;
        assert!(g.done());
        assert_eq!(g.await?, vec![1, 2]);
        // 2. The pending child finishes after the first notification ran.
        let (a, b) = (eager(3)?, lp.create_future::<u32>());
        let g = gather(vec![tulip::Child::Task(a), tulip::Child::Future(b.clone())]);
        sleep(0.0).await?;
        assert!(!g.done(), "one child to go");
        b.set_result(4)?;
        sleep(0.0).await?;
        assert!(g.done());
        assert_eq!(g.await?, vec![3, 4]);
        // 3. A tuple gather, looked at first by a poll.
        let (x, y) = (eager(5)?, lp.create_future::<&str>());
        let yy = y.clone();
        let _setter = create_task(async move {
            sleep(0.0).await?;
            yy.set_result("six")
        })?;
        let out = tulip::gather!(x, y).await?;
        assert_eq!(out, (5, "six"));
        Ok(())
    });
}

/// asyncio's gather marks each task it makes for a coroutine with
/// `fut._log_destroy_pending = False` ("the caller can't control it"): a
/// loop closed with such a child pending reports nothing. A task the caller
/// made and passed in is still reported, as asyncio does.
// conformance: K1, C4
#[test]
fn a_task_gather_made_for_a_plain_future_is_not_reported_pending_at_close() {
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let mine = create_task(after(100.0, 0u32))?;
        let g1 = gather(vec![mine]);
        let g2 = gather(vec![after(100.0, 1u32), after(100.0, 2)]);
        let g3 = tulip::gather!(after(100.0, 3u32), after(100.0, "four"));
        sleep(0.0).await?;
        drop((g1, g2, g3));
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<String> = reports.borrow().iter().map(|c| c.message.clone()).collect();
    assert_eq!(
        got,
        ["Task was destroyed but it is pending!"],
        "only the task the caller made is reported"
    );
}

/// asyncio's `shield(task)` of a done task is the task itself (`if
/// inner.done(): return inner`): its error is reported once, and only if
/// nobody retrieved it. A failed task already awaited, then shielded and
/// dropped, is not reported; one nobody ever looked at still is.
// conformance: K4, F3
#[test]
fn shield_of_a_done_failed_task_reports_its_error_only_if_unretrieved() {
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let seen = create_task(async { Err::<u32, _>(Error::msg("seen")) })?;
        assert!(seen.clone().await.is_err());
        drop(shield(seen));
        let unseen = create_task(async { Err::<u32, _>(Error::msg("unseen")) })?;
        unseen.wait_done().await?;
        drop(shield(unseen));
        sleep(0.0).await?;
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<String> = reports
        .borrow()
        .iter()
        .map(|c| {
            format!(
                "{}: {:?}",
                c.message,
                c.error.as_ref().map(|e| e.to_string())
            )
        })
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("never retrieved") && got[0].contains("unseen"),
        "{got:?}"
    );
}

/// The deviation `shield`'s docs state for a done, failed task: its copy
/// takes over the report, so reading the error through the shield counts
/// (as in asyncio, where the shield *is* the task), but reading it only
/// through the task after shielding does not: the copy still reports it
/// once when dropped (asyncio: never). Pinned so that the docs stay true.
// conformance: K4, F3
#[test]
fn shield_of_a_done_failed_task_hands_its_report_to_the_copy() {
    let lp = tulip::new_event_loop().unwrap();
    let reports = common::capture_reports(&lp);
    lp.run_until_complete(async {
        let via_shield = create_task(async { Err::<u32, _>(Error::msg("via shield")) })?;
        via_shield.wait_done().await?;
        let outer = shield(via_shield.clone());
        assert!(outer.result().is_err());
        drop((outer, via_shield));
        let via_task = create_task(async { Err::<u32, _>(Error::msg("via task")) })?;
        via_task.wait_done().await?;
        let outer = shield(via_task.clone());
        assert!(via_task.result().is_err());
        drop((outer, via_task));
        sleep(0.0).await?;
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    let got: Vec<String> = reports
        .borrow()
        .iter()
        .map(|c| {
            format!(
                "{}: {:?}",
                c.message,
                c.error.as_ref().map(|e| e.to_string())
            )
        })
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].contains("never retrieved") && got[0].contains("via task"),
        "{got:?}"
    );
}

// ===== second review: behaviours pinned against CPython 3.13 =====

/// asyncio's `wait(set())` raises ValueError ("Set of Tasks/Futures is
/// empty.") before it waits at all.
// conformance: K2
#[test]
fn wait_with_no_children_is_an_invalid_argument() {
    common::run_bounded(5.0, async {
        let r = wait(
            Vec::<tulip::Future<u32>>::new(),
            Some(0.01),
            ReturnWhen::FirstCompleted,
        )
        .await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        Ok(())
    });
}

/// A future passed to gather twice gives its result in both places; the
/// gather is done when it is (asyncio keeps one callback per distinct
/// future, tulip one per place: the same outcome), done or pending, and
/// cancelling the gather cancels it.
// conformance: K1
#[test]
fn gather_of_the_same_future_twice_gives_its_result_twice() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let f = lp.create_future::<u32>();
        let g = gather(vec![f.clone(), f.clone()]);
        sleep(0.0).await?;
        assert!(!g.done());
        f.set_result(3)?;
        assert_eq!(g.await?, vec![3, 3]);

        let t = create_task(after(0.0, 4u32))?;
        assert_eq!(gather(vec![t.clone(), t]).await?, vec![4, 4]);

        let done = lp.create_future::<u32>();
        done.set_result(5)?;
        let g = gather(vec![done.clone(), done]);
        assert!(g.done());
        assert_eq!(g.await?, vec![5, 5]);

        let p = lp.create_future::<u32>();
        let g = gather(vec![p.clone(), p.clone()]).return_exceptions();
        assert!(g.cancel());
        assert!(p.cancelled());
        assert!(g.await.unwrap_err().is_cancelled());
        Ok(())
    });
}

/// `_GatheringFuture.cancel()` returns False when no child could be
/// cancelled: every child done, even if the gather has not counted them
/// yet. Nothing is cancelled and the results come back; a task awaiting
/// such a gather and cancelled then gets the cancel at its next step.
// conformance: K1, C2
#[test]
fn gather_cancel_is_false_once_every_child_is_done() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let (a, b) = (lp.create_future::<u32>(), lp.create_future::<u32>());
        let g = gather(vec![a.clone(), b.clone()]);
        sleep(0.0).await?;
        a.set_result(1)?;
        b.set_result(2)?;
        assert!(!g.cancel(), "every child is done");
        assert_eq!(g.await?, vec![1, 2]);

        let (a, b) = (lp.create_future::<u32>(), lp.create_future::<u32>());
        let (a2, b2) = (a.clone(), b.clone());
        let t = create_task(async move { gather(vec![a2, b2]).await })?;
        sleep(0.0).await?;
        a.set_result(1)?;
        b.set_result(2)?;
        assert!(t.cancel(), "the task takes the cancel as a must_cancel");
        assert!(t.wait_done_err().await.is_cancelled());
        Ok(())
    });
}

/// asyncio's `reschedule(None)` cancels the timer (the scope never
/// expires); a deadline already past is `call_soon(_on_timeout)`: the scope
/// expires at the next iteration, and the task is not left cancelled.
// conformance: K6
#[test]
fn timeout_reschedule_to_none_disarms_it_and_into_the_past_expires_it() {
    common::run_bounded(5.0, async {
        let lp = get_running_loop()?;
        let cm = timeout(0.01);
        let inside = cm.clone();
        let out = cm
            .clone()
            .run(async move {
                inside.reschedule(None)?;
                sleep(0.03).await?;
                Ok(1u32)
            })
            .await?;
        assert_eq!(out, 1);
        assert!(!cm.expired());
        assert_eq!(cm.when(), None);

        let cm = timeout(None);
        let inside = cm.clone();
        let r: Result<()> = cm
            .clone()
            .run(async move {
                inside.reschedule(Some(lp.time() - 5.0))?;
                sleep(10.0).await
            })
            .await;
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(cm.expired());
        assert_eq!(current_task().unwrap().cancelling(), 0);
        assert!(sleep(0.0).await.is_ok(), "no stray cancel");
        Ok(())
    });
}

/// The scope expires and a foreign cancel arrives in the same iteration,
/// in either order: the scope's uncancel() leaves the count at 1, so the
/// body's Cancelled stays Cancelled (CPython 3.13: `CancelledError`,
/// `cancelling() == 1`), and that cancel was delivered: the next await
/// goes through.
// conformance: K6, C3
#[test]
fn an_expiry_and_a_foreign_cancel_in_one_iteration_stay_cancelled() {
    common::run_bounded(5.0, async {
        for cancel_first in [false, true] {
            let t = create_task(async move {
                let lp = get_running_loop()?;
                let me = current_task().unwrap();
                let cm = timeout(None);
                let (inside, me2) = (cm.clone(), me.clone());
                let r: Result<()> = cm
                    .run(async move {
                        let cancel = move || {
                            me2.cancel();
                        };
                        if cancel_first {
                            let _ = lp.call_soon(cancel)?;
                            inside.reschedule(Some(lp.time() - 1.0))?;
                        } else {
                            inside.reschedule(Some(lp.time() - 1.0))?;
                            let _ = lp.call_soon(cancel)?;
                        }
                        sleep(10.0).await
                    })
                    .await;
                let level = me.cancelling();
                let next = sleep(0.0).await;
                Ok((r.map_err(|e| e.is_cancelled()), level, next.is_ok()))
            })?;
            assert_eq!(
                t.await?,
                (Err(true), 1, true),
                "cancel_first={cancel_first}"
            );
        }
        Ok(())
    });
}

/// CPython 3.13's `test_nested_groups_both_cancelled`: an inner group's
/// child and an outer group's child fail together. Each group cancelled
/// the parent once; the inner one raises its group with the outer's
/// cancel still counted (`cancelling() == 1`) and pending, and the outer
/// one takes it back: both groups raise their own errors, and the parent
/// ends at level 0.
// conformance: K7
#[test]
fn nested_task_groups_failing_together_keep_each_level() {
    common::run_bounded(5.0, async {
        let inner_level = Rc::new(Cell::new(u32::MAX));
        let il = inner_level.clone();
        let r: Result<()> = TaskGroup::run(|outer| async move {
            let r: Result<()> = TaskGroup::run(|inner| async move {
                let _inner_child = inner.create_task(async {
                    sleep(0.0).await?;
                    Err::<(), _>(Error::msg("RuntimeError"))
                })?;
                let _outer_child = outer.create_task(async {
                    sleep(0.0).await?;
                    Err::<(), _>(Error::msg("ValueError"))
                })?;
                Ok(())
            })
            .await;
            match r {
                Err(Error::Group { errors, .. }) => {
                    assert_eq!(errors.len(), 1);
                    assert_eq!(errors[0].to_string(), "RuntimeError");
                }
                other => panic!("the inner group: {other:?}"),
            }
            il.set(current_task().unwrap().cancelling());
            Ok(())
        })
        .await;
        assert_eq!(inner_level.get(), 1);
        match r {
            Err(Error::Group { errors, .. }) => {
                assert_eq!(errors.len(), 1);
                assert_eq!(errors[0].to_string(), "ValueError");
            }
            other => panic!("the outer group: {other:?}"),
        }
        assert_eq!(current_task().unwrap().cancelling(), 0);
        assert!(sleep(0.0).await.is_ok(), "no stray cancel");
        Ok(())
    });
}

/// An outside cancel of the parent and a child's error, while the group
/// waits for its children on exit (CPython 3.13):
/// - in the same iteration, the cancel comes first: the group aborts, the
///   failing child is cancelled before it can raise, and the group raises
///   Cancelled (level 1, delivered);
/// - the child fails first: the group raises its errors, and the outside
///   cancel stays pending (level 1), for the next await.
// conformance: K7, C3
#[test]
fn an_outside_cancel_and_a_child_error_while_the_group_exits() {
    common::run_bounded(5.0, async {
        for child_first in [false, true] {
            let lp = get_running_loop()?;
            let go = lp.create_future::<()>();
            let g2 = go.clone();
            let t = create_task(async move {
                let me = current_task().unwrap();
                let r: Result<()> = TaskGroup::run(|tg| async move {
                    let _failing = tg.create_task(async move {
                        g2.await?;
                        Err::<(), _>(Error::msg("v"))
                    })?;
                    let _sleeper = tg.create_task(sleep(10.0))?;
                    Ok(())
                })
                .await;
                let is_group = matches!(&r, Err(Error::Group { .. }));
                let level = me.cancelling();
                let next = sleep(0.0).await.is_ok();
                Ok((r.is_err(), is_group, level, next))
            })?;
            sleep(0.0).await?;
            sleep(0.0).await?;
            if child_first {
                go.set_result(())?;
                sleep(0.0).await?;
                t.cancel();
            } else {
                t.cancel();
                go.set_result(())?;
            }
            let got = t.await?;
            let want = if child_first {
                (true, true, 1, false)
            } else {
                (true, false, 1, true)
            };
            assert_eq!(got, want, "child_first={child_first}");
        }
        Ok(())
    });
}
