//! Conformance of the loop itself: L1–L8 (asyncio's test_base_events and
//! test_events). Iterations are counted by calling `run_once` by hand, so
//! each test says exactly which iteration a callback ran in.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{busy_callback, capture_reports, entries, log, push, soon, stop_after};
use tulip::{Error, EventLoop, ExceptionContext};

// ===== L1 =====

// conformance: L1
#[test]
fn call_soon_runs_callbacks_in_fifo_order() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for i in 0..1000 {
        let order = order.clone();
        soon(&lp, move || order.borrow_mut().push(i));
    }
    lp.run_once().unwrap();
    assert_eq!(*order.borrow(), (0..1000).collect::<Vec<_>>());
}

// conformance: L1
#[test]
fn call_soon_keeps_fifo_order_across_callbacks_and_tasks() {
    // A task's first step is a call_soon too: it takes its place in line.
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (a, b, c) = (l.clone(), l.clone(), l.clone());
    soon(&lp, move || push(&a, "cb1"));
    let _t = lp
        .create_task(async move {
            push(&b, "task");
            Ok(())
        })
        .unwrap();
    soon(&lp, move || push(&c, "cb2"));
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["cb1", "task", "cb2"]);
}

// ===== L2 =====

// conformance: L2
#[test]
fn callback_scheduled_during_an_iteration_runs_in_the_next_one() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    soon(&lp, move || {
        push(&l1, "a");
        let l2 = l1.clone();
        let lp2 = lp1.clone();
        soon(&lp1, move || {
            push(&l2, "b");
            let l3 = l2.clone();
            soon(&lp2, move || push(&l3, "c"));
        });
    });
    let l4 = l.clone();
    soon(&lp, move || push(&l4, "a2"));

    lp.run_once().unwrap();
    assert_eq!(
        entries(&l),
        ["a", "a2"],
        "iteration 1 runs only what was ready"
    );
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["a", "a2", "b"], "iteration 2");
    lp.run_once().unwrap();
    assert_eq!(entries(&l), ["a", "a2", "b", "c"], "iteration 3");
    assert_eq!(lp.ready_count(), 0);
}

// conformance: L2
#[test]
fn a_self_rescheduling_callback_runs_once_per_iteration() {
    let lp = EventLoop::new().unwrap();
    let n = busy_callback(&lp);
    for i in 1..=100 {
        lp.run_once().unwrap();
        assert_eq!(n.get(), i);
    }
}

// ===== L3 =====

// conformance: L3
#[test]
fn stop_lets_the_current_iteration_finish() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    soon(&lp, move || {
        push(&l1, "stopper");
        lp1.stop();
        let l = l1.clone();
        // Scheduled during the last iteration: does not run in this run.
        soon(&lp1, move || push(&l, "next run"));
    });
    let l2 = l.clone();
    soon(&lp, move || push(&l2, "after stop, same iteration"));
    lp.run_forever().unwrap();
    assert_eq!(entries(&l), ["stopper", "after stop, same iteration"]);
    assert!(!lp.is_running());
    // The callback left behind runs in the next run.
    let lp3 = lp.clone();
    soon(&lp, move || lp3.stop());
    lp.run_forever().unwrap();
    assert_eq!(
        entries(&l),
        ["stopper", "after stop, same iteration", "next run"]
    );
}

// conformance: L3
#[test]
fn stop_before_run_forever_gives_one_iteration_with_a_zero_timeout() {
    let lp = EventLoop::new().unwrap();
    // A far timer: a run that blocked in poll would wait for it.
    let far = lp.call_later(30.0, || panic!("must not fire")).unwrap();
    let n = busy_callback(&lp);
    // Nothing ready at all would make the poll block: stop must make it zero.
    lp.stop();
    let t0 = Instant::now();
    lp.run_forever().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "the poll blocked");
    assert_eq!(n.get(), 1, "exactly one iteration");

    // With nothing ready, stop() still gives a zero-timeout poll.
    let lp = EventLoop::new().unwrap();
    let _far = lp.call_later(30.0, || panic!("must not fire")).unwrap();
    lp.stop();
    let t0 = Instant::now();
    lp.run_forever().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "the poll blocked");
    far.cancel();
}

// conformance: L3
#[test]
fn the_one_iteration_after_an_early_stop_still_polls_for_io() {
    // The zero-timeout poll happens (even with callbacks ready, where
    // IO_POLL_INTERVAL would skip it): a readable fd's reader runs.
    let lp = EventLoop::new().unwrap();
    let (mut tx, rx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    lp.add_reader(rx.as_raw_fd(), move || c.set(true)).unwrap();
    // One iteration that polls, to start the IO_POLL_INTERVAL count afresh.
    soon(&lp, || ());
    lp.run_once().unwrap();
    tx.write_all(b"x").unwrap();
    soon(&lp, || ());
    lp.stop();
    lp.run_forever().unwrap();
    assert!(called.get(), "the stopping iteration did not poll");
    lp.remove_reader(rx.as_raw_fd()).unwrap();
}

// conformance: L3
#[test]
fn stop_flag_is_cleared_when_run_forever_returns() {
    let lp = EventLoop::new().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    // A second run goes on until it is stopped again: three iterations here.
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    soon(&lp, move || {
        push(&l1, "1");
        let (l2, lp2) = (l1.clone(), lp1.clone());
        soon(&lp1, move || {
            push(&l2, "2");
            let (l3, lp3) = (l2.clone(), lp2.clone());
            soon(&lp2, move || {
                push(&l3, "3");
                lp3.stop();
            });
        });
    });
    lp.run_forever().unwrap();
    assert_eq!(entries(&l), ["1", "2", "3"]);
}

// ===== L4 =====

// conformance: L4
#[test]
fn running_a_running_loop_again_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let errs = log();
    let (lp1, e1) = (lp.clone(), errs.clone());
    soon(&lp, move || {
        let r = lp1.run_forever();
        push(&e1, format!("run_forever: {}", r.unwrap_err()));
        let r = lp1.run_until_complete(async { Ok(()) });
        push(&e1, format!("run_until_complete: {}", r.unwrap_err()));
        lp1.stop();
    });
    lp.run_forever().unwrap();
    let errs = entries(&errs);
    assert_eq!(errs.len(), 2);
    for e in &errs {
        assert!(e.contains("already running"), "{e}");
    }
    // Nothing was left behind by the refused call.
    assert!(lp.all_tasks().is_empty());
}

// conformance: L4
#[test]
fn running_a_second_loop_inside_a_running_loop_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let other = EventLoop::new().unwrap();
    let errs = log();
    let (lp1, e1, other1) = (lp.clone(), errs.clone(), other.clone());
    soon(&lp, move || {
        let r = other1.run_forever();
        push(&e1, format!("{}", r.unwrap_err()));
        let r = other1.run_until_complete(async { Ok(()) });
        push(&e1, format!("{}", r.unwrap_err()));
        lp1.stop();
    });
    lp.run_forever().unwrap();
    let errs = entries(&errs);
    assert_eq!(errs.len(), 2);
    for e in &errs {
        assert!(e.contains("another loop is running"), "{e}");
    }
    // The refused run_until_complete created no task on the other loop.
    assert!(other.all_tasks().is_empty(), "a task was left behind");
    assert_eq!(other.ready_count(), 0);
}

// conformance: L4
#[test]
fn tulip_run_inside_a_running_loop_is_an_error_naming_itself() {
    // asyncio.run: "asyncio.run() cannot be called from a running event
    // loop", raised before it makes a runner or a loop; the outer run goes on.
    let inner_ran = Rc::new(Cell::new(false));
    let flag = inner_ran.clone();
    let errs = tulip::run(async move {
        let a = tulip::run(async move {
            flag.set(true);
            Ok(())
        });
        let b = tulip::run_with_factory(async { Ok(()) }, EventLoop::new);
        Ok([a, b].map(|r| r.unwrap_err().to_string()))
    })
    .unwrap();
    assert!(!inner_ran.get());
    assert!(
        errs[0].starts_with("tulip::run() cannot be called from a running event loop"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("tulip::run_with_factory() cannot be called from a running event loop"),
        "{errs:?}"
    );
}

// conformance: L4
#[test]
fn run_once_inside_a_running_loop_is_an_error() {
    // A nested iteration would run what the outer one has not reached yet
    // (breaking L2), and with nothing ready it would block in poll inside
    // a callback. asyncio's re-entrant run is refused: "This event loop is
    // already running"; and a loop cannot run while another one does.
    let lp = EventLoop::new().unwrap();
    let other = EventLoop::new().unwrap();
    let errs = log();
    let (lp1, e1, other1) = (lp.clone(), errs.clone(), other.clone());
    soon(&lp, move || {
        push(&e1, format!("{:?}", lp1.run_once()));
        push(&e1, format!("{:?}", other1.run_once()));
        lp1.stop();
    });
    // Something ready on each loop, so that a nested iteration (the bug)
    // does not block, and the next callback of the outer one.
    let ran = Rc::new(Cell::new(0));
    let (r1, r2) = (ran.clone(), ran.clone());
    soon(&lp, move || r1.set(r1.get() + 1));
    soon(&other, move || r2.set(r2.get() + 10));
    let (_dog, _) = stop_after(&lp, 10.0);
    lp.run_forever().unwrap();
    let errs = entries(&errs);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("already running"), "{errs:?}");
    assert!(errs[1].contains("another loop is running"), "{errs:?}");
    // Only the outer iteration ran the second callback, in its turn.
    assert_eq!(ran.get(), 1);
    // Outside any run, by hand, it still works.
    other.run_once().unwrap();
    assert_eq!(ran.get(), 11);
}

// conformance: L4
#[test]
fn loop_stopped_before_the_future_completed_is_reported() {
    let lp = EventLoop::new().unwrap();
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    let err = lp
        .run_until_complete(async {
            tulip::sleep(10.0).await?;
            Ok(1)
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::Runtime(m) if m.contains("stopped before future completed")),
        "{err:?}"
    );
    assert!(!lp.is_running());
}

// conformance: L4
#[test]
fn the_task_of_a_run_stopped_early_is_not_reported_as_destroyed_pending() {
    // asyncio's run_until_complete sets `_log_destroy_pending = False` on
    // the task it wraps a coroutine in: the caller never had that task, so
    // its being left pending when the loop goes is not reported.
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    let err = lp
        .run_until_complete(async {
            tulip::sleep(3600.0).await?;
            Ok(1)
        })
        .unwrap_err();
    assert!(err.to_string().contains("stopped before"), "{err:?}");
    assert_eq!(lp.all_tasks().len(), 1);
    lp.close().unwrap();
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());

    // A task the caller made is reported, as ever (C4).
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let t = lp
        .create_task(async {
            tulip::sleep(3600.0).await?;
            Ok(())
        })
        .unwrap();
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    lp.run_forever().unwrap();
    lp.close().unwrap();
    drop(t);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].message, "Task was destroyed but it is pending!");
}

// conformance: L4
#[test]
fn run_until_complete_returns_the_result_or_the_error() {
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.run_until_complete(async { Ok(5) }).unwrap(), 5);
    let err = lp
        .run_until_complete(async { Err::<(), _>(Error::msg("boom")) })
        .unwrap_err();
    assert_eq!(err.to_string(), "boom");
    // And the loop can be run again.
    assert_eq!(
        lp.run_until_complete(async { Ok("again") }).unwrap(),
        "again"
    );
}

// ===== L5 =====

// conformance: L5
#[test]
fn every_scheduling_call_fails_after_close() {
    let lp = EventLoop::new().unwrap();
    let handle = lp.handle();
    lp.close().unwrap();
    assert!(lp.is_closed());
    let (a, b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    assert!(matches!(lp.call_soon(|| ()), Err(Error::Closed)));
    assert!(matches!(lp.call_later(0.1, || ()), Err(Error::Closed)));
    assert!(matches!(lp.call_at(lp.time(), || ()), Err(Error::Closed)));
    assert!(matches!(lp.add_reader(fd, || ()), Err(Error::Closed)));
    assert!(matches!(lp.add_writer(fd, || ()), Err(Error::Closed)));
    assert!(matches!(lp.remove_reader(fd), Err(Error::Closed)));
    assert!(matches!(lp.remove_writer(fd), Err(Error::Closed)));
    assert!(matches!(
        lp.create_task(async { Ok(()) }),
        Err(Error::Closed)
    ));
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
    assert!(matches!(
        lp.run_until_complete(async { Ok(()) }),
        Err(Error::Closed)
    ));
    assert!(matches!(
        handle.call_soon_threadsafe(|| ()),
        Err(Error::Closed)
    ));
    assert!(matches!(handle.stop(), Err(Error::Closed)));
    assert!(handle.is_closed());
    // Closing twice is a no-op.
    lp.close().unwrap();
    drop((a, b));
}

// conformance: L5
#[test]
fn run_once_on_a_closed_loop_fails_instead_of_blocking() {
    // A closed loop has nothing left that could end a poll (its queues,
    // timers and registrations are gone, and `LoopHandle` refuses to wake
    // it), so an iteration would block in epoll_wait for ever. asyncio's
    // `_run_once` on a closed loop fails at once (its selector is None).
    // The loop lives on its own thread, so a hang fails the test instead.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let lp = EventLoop::new().unwrap();
        lp.close().unwrap();
        let _ = tx.send(lp.run_once().map_err(|e| e.to_string()));
    });
    let res = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("run_once on a closed loop blocked");
    assert!(res.is_err(), "{res:?}");
}

// conformance: L5
#[test]
fn close_drops_pending_callbacks_and_timers() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let (r1, r2) = (ran.clone(), ran.clone());
    soon(&lp, move || r1.set(true));
    let timer = lp.call_later(0.0, move || r2.set(true)).unwrap();
    lp.close().unwrap();
    assert_eq!(lp.ready_count(), 0);
    assert_eq!(lp.scheduled_timer_count(), 0);
    assert!(!ran.get());
    drop(timer);
    // One strong reference left: the closures were dropped with the queues.
    assert_eq!(Rc::strong_count(&ran), 1);
}

// conformance: L5
#[test]
fn close_on_a_running_loop_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let res = Rc::new(RefCell::new(None));
    let (lp1, r1) = (lp.clone(), res.clone());
    soon(&lp, move || {
        *r1.borrow_mut() = Some(lp1.close());
        lp1.stop();
    });
    lp.run_forever().unwrap();
    let r = res.borrow_mut().take().unwrap();
    assert!(
        matches!(&r, Err(Error::Runtime(m)) if m.contains("running")),
        "{r:?}"
    );
    assert!(!lp.is_closed());
    lp.close().unwrap();
}

// conformance: L5
#[test]
fn close_frees_a_loop_whose_exception_handler_holds_it() {
    // A handler that keeps its loop (to stop it, say) is a cycle CPython's
    // collector frees once the loop is closed; without one, close() must
    // break it, or the loop and its epoll and wake-up fds live for ever.
    let lp = EventLoop::new().unwrap();
    let alive = Rc::new(());
    // Reports made by close itself still reach the handler.
    let seen = Rc::new(Cell::new(0));
    let s = seen.clone();
    let (l, a) = (lp.clone(), alive.clone());
    lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        let _ = (&l, &a);
        s.set(s.get() + 1);
    }));
    drop(
        lp.create_task(async { tulip::sleep(3600.0).await })
            .unwrap(),
    );
    lp.close().unwrap();
    assert_eq!(
        seen.get(),
        1,
        "the pending task was reported to the handler"
    );
    drop(lp);
    assert_eq!(
        Rc::strong_count(&alive),
        1,
        "the closed loop was kept alive by its exception handler"
    );
}

// ===== L5: a loop dropped without close() =====

/// A loop nobody can reach any more, with a pending task, a pending timer
/// and a pending callback, none of which holds the loop itself.
fn abandoned_loop() -> (EventLoop, Rc<()>, Rc<RefCell<Vec<ExceptionContext>>>) {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let guard = Rc::new(());
    let never: tulip::Future<()> = lp.create_future();
    let (g1, g2, g3) = (guard.clone(), guard.clone(), guard.clone());
    let _task = lp
        .create_task(async move {
            let _g = g1;
            never.await
        })
        .unwrap();
    let _timer = lp.call_later(3600.0, move || drop(g2)).unwrap();
    lp.run_until_complete(async { tulip::sleep(0.0).await })
        .unwrap();
    soon(&lp, move || drop(g3));
    (lp, guard, reports)
}

// conformance: L5
#[test]
fn dropping_the_last_handle_of_an_unclosed_loop_closes_it() {
    // asyncio's BaseEventLoop.__del__ closes an unclosed loop. Here the
    // task holds the loop (through its future's core), and the loop holds
    // the task: without that, the cycle would keep both, and the loop's
    // fds, forever.
    let (lp, guard, reports) = abandoned_loop();
    let handle = lp.handle();
    assert_eq!(Rc::strong_count(&guard), 4);
    drop(lp);
    assert!(handle.is_closed());
    assert!(matches!(
        handle.call_soon_threadsafe(|| ()),
        Err(Error::Closed)
    ));
    // The task body, the timer's and the callback's closures are gone.
    assert_eq!(Rc::strong_count(&guard), 1);
    // The pending task was reported as asyncio's Task.__del__ does.
    let messages: Vec<String> = reports.borrow().iter().map(|c| c.message.clone()).collect();
    assert_eq!(messages, ["Task was destroyed but it is pending!"]);
}

// conformance: L5
#[test]
fn an_unclosed_loop_stays_open_while_a_user_still_holds_it() {
    let (lp, guard, _reports) = abandoned_loop();
    let other = lp.clone();
    drop(lp);
    assert!(!other.is_closed());
    assert_eq!(Rc::strong_count(&guard), 4);
    // Still fully usable; a future's get_loop() is a user's handle too.
    let fut: tulip::Future<u8> = other.create_future();
    let again = fut.get_loop();
    drop(other);
    assert!(!again.is_closed());
    let setter = fut.clone();
    soon(&again, move || setter.set_result(7).unwrap());
    assert_eq!(again.run_until_complete(fut).unwrap(), 7);
    drop(again);
    assert_eq!(Rc::strong_count(&guard), 1);
}

// conformance: L5
#[test]
fn futures_and_tasks_do_not_keep_a_loop_open() {
    // The loop is open while an `EventLoop` handle exists. A task or a
    // future is not such a handle (it would make every pending task keep
    // its loop forever): once the last handle is gone, the task's
    // get_loop() gives the closed loop, and the task was destroyed with it.
    let t = {
        let lp = EventLoop::new().unwrap();
        lp.create_task(async { Ok(1u32) }).unwrap()
    };
    let lp = t.get_loop();
    assert!(lp.is_closed());
    assert!(!t.done());
    assert!(matches!(lp.run_until_complete(t), Err(Error::Closed)));
}

// conformance: L5
#[test]
fn dropping_an_unclosed_loop_closes_its_connections() {
    // A task reading from a loopback connection when the loop is dropped:
    // the transport is closed with the loop, so the peer sees EOF.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lp = EventLoop::new().unwrap();
    let (reader, writer) = lp
        .run_until_complete(async move { tulip::open_connection("127.0.0.1", addr.port()).await })
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let _reading = lp
        .create_task(async move {
            let _keep = writer;
            reader.read(100).await
        })
        .unwrap();
    lp.run_until_complete(async { tulip::sleep(0.0).await })
        .unwrap();
    drop(lp);
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(peer.read(&mut buf).unwrap(), 0, "EOF once the loop is gone");
}

/// A value whose `Drop` panics (unless already unwinding).
struct PanicsOnDrop(&'static str);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("dropping {}", self.0);
        }
    }
}

static PANICKY_VALUE: tulip::ContextVar<Rc<PanicsOnDrop>> = tulip::ContextVar::new("panicky");

// conformance: L5, L6
#[test]
fn a_panicking_drop_at_close_is_reported_and_close_still_releases_everything() {
    // asyncio's close() clears _ready and _scheduled, and the pending tasks
    // and transports go with the collector: what a __del__ raises there is
    // printed ("Exception ignored in ..."), and the rest is released all
    // the same. Here each such panic is reported, and close() goes on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let (reader, writer) = lp
        .run_until_complete(async move { tulip::open_connection("127.0.0.1", addr.port()).await })
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let _reading = lp
        .create_task(async move {
            let _keep = writer;
            reader.read(100).await
        })
        .unwrap();
    // A pending task whose context holds a value that panics when dropped.
    let _waiting = lp
        .create_task(async {
            PANICKY_VALUE.set(Rc::new(PanicsOnDrop("a context value")))?;
            tulip::sleep(3600.0).await
        })
        .unwrap();
    lp.run_until_complete(async { tulip::sleep(0.0).await })
        .unwrap();
    // A callback and a timer that never run, holding such values.
    let (cb, timer) = (PanicsOnDrop("a callback"), PanicsOnDrop("a timer"));
    soon(&lp, move || drop(cb));
    let _ = lp.call_later(3600.0, move || drop(timer)).unwrap();
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.close()));
    assert!(matches!(closed, Ok(Ok(()))), "close() unwound");
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        peer.read(&mut buf).unwrap(),
        0,
        "EOF once the loop is closed"
    );
    let reports = reports.borrow();
    let mut dropped: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.error {
            Some(Error::Panic(m)) => Some(m.to_string()),
            _ => None,
        })
        .collect();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            "dropping a callback",
            "dropping a context value",
            "dropping a timer"
        ],
        "{reports:?}"
    );
}

/// A protocol that keeps its transport, as most do: the two hold each other.
struct KeepsTransport(RefCell<Option<Rc<dyn tulip::Transport>>>);

impl tulip::Protocol for KeepsTransport {
    fn connection_made(&self, transport: Rc<dyn tulip::Transport>) {
        *self.0.borrow_mut() = Some(transport);
    }
}

/// Connects a client to `server`, runs `lp` until the server has taken the
/// connection (`accepted` > 0), then drops the server's handle and the
/// loop without `close()`: the client must see EOF, and the listener must
/// be closed (L5, asyncio's `BaseEventLoop.__del__`).
fn drop_loop_with_a_client_connected(lp: EventLoop, server: tulip::Server, accepted: &Cell<u32>) {
    let addr = server.local_addrs()[0];
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    let (deadline, _) = stop_after(&lp, 5.0);
    while accepted.get() == 0 {
        lp.run_once().unwrap();
    }
    deadline.cancel();
    drop(server);
    drop(lp);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        client.read(&mut buf).unwrap(),
        0,
        "EOF once the loop is gone"
    );
    let err = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "the listener is closed"
    );
}

// conformance: L5
#[test]
fn dropping_an_unclosed_loop_closes_its_server_and_its_connections() {
    let lp = EventLoop::new().unwrap();
    let made = Rc::new(Cell::new(0));
    let m = made.clone();
    let server = lp
        .run_until_complete(async move {
            tulip::get_running_loop()?
                .create_server(
                    move || {
                        m.set(m.get() + 1);
                        Rc::new(KeepsTransport(RefCell::new(None)))
                    },
                    "127.0.0.1",
                    0,
                )
                .await
        })
        .unwrap();
    drop_loop_with_a_client_connected(lp, server, &made);
}

// conformance: L5
#[test]
fn dropping_an_unclosed_loop_closes_a_streams_server_and_its_handlers_connections() {
    // start_server: each connection's handler task waits in read() when
    // the loop is dropped.
    let lp = EventLoop::new().unwrap();
    let handling = Rc::new(Cell::new(0));
    let h = handling.clone();
    let server = lp
        .run_until_complete(async move {
            tulip::start_server(
                move |reader, _writer| {
                    h.set(h.get() + 1);
                    async move {
                        reader.read(100).await?;
                        Ok(())
                    }
                },
                "127.0.0.1",
                0,
            )
            .await
        })
        .unwrap();
    drop_loop_with_a_client_connected(lp, server, &handling);
}

// conformance: L5
#[test]
fn a_loop_left_as_the_threads_current_loop_is_left_alone_at_thread_exit() {
    // At thread exit the thread's locals are being destroyed; the loop is
    // not closed then (closing could touch them), and nothing panics.
    let closed = std::thread::spawn(|| {
        let (lp, _guard, _reports) = abandoned_loop();
        tulip::set_event_loop(Some(&lp));
        let handle = lp.handle();
        drop(lp);
        handle
    })
    .join()
    .expect("no panic at thread exit")
    .is_closed();
    assert!(!closed);
}

// conformance: L5
#[test]
fn get_event_loop_gives_the_threads_loop_even_once_it_is_closed() {
    // asyncio's policy `get_event_loop` returns the loop that was set,
    // whatever its state: a closed one then refuses calls (L5) instead of
    // being replaced behind the caller's back by a new loop.
    let lp = EventLoop::new().unwrap();
    tulip::set_event_loop(Some(&lp));
    lp.close().unwrap();
    let got = tulip::get_event_loop().unwrap();
    assert!(got.ptr_eq(&lp), "a new loop replaced the one that was set");
    assert!(got.is_closed());
    let fut: tulip::Future<u32> = tulip::Future::new();
    assert!(fut.get_loop().ptr_eq(&lp));
    tulip::set_event_loop(None);
}

// ===== L6 =====

// conformance: L6
#[test]
fn a_panicking_callback_goes_to_the_exception_handler_and_the_loop_runs_on() {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let l = log();
    soon(&lp, || panic!("kaboom"));
    let (l1, lp1) = (l.clone(), lp.clone());
    soon(&lp, move || {
        push(&l1, "same iteration");
        let l2 = l1.clone();
        let lp2 = lp1.clone();
        soon(&lp1, move || {
            push(&l2, "next iteration");
            lp2.stop();
        });
    });
    lp.run_forever().unwrap();
    assert_eq!(entries(&l), ["same iteration", "next iteration"]);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1);
    let ctx = &reports[0];
    assert!(
        ctx.message.starts_with("Exception in callback"),
        "{}",
        ctx.message
    );
    assert!(
        matches!(&ctx.error, Some(Error::Panic(m)) if &**m == "kaboom"),
        "{:?}",
        ctx.error
    );
    let handle = ctx.handle.as_deref().expect("the handle is described");
    assert!(
        handle.contains("loop_core.rs"),
        "names where it was created: {handle}"
    );
}

// conformance: L6
#[test]
fn the_default_handler_reports_message_error_and_handle() {
    // The default handler prints the context's Display to stderr.
    let ctx = ExceptionContext {
        message: "Exception in callback f".into(),
        error: Some(Error::msg("bad thing")),
        handle: Some("<Handle f created at x.rs:1>".into()),
        task: Some("<Task failed name='t'>".into()),
        future: Some("<Future failed>".into()),
        socket: Some("<listener>".into()),
        transport: Some("<transport>".into()),
    };
    let text = ctx.to_string();
    for part in [
        "Exception in callback f",
        "handle: <Handle f created at x.rs:1>",
        "task: <Task failed name='t'>",
        "future: <Future failed>",
        "socket: <listener>",
        "transport: <transport>",
        "error: bad thing",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text:?}");
    }
    // And a loop with the default handler survives a panicking callback.
    let lp = EventLoop::new().unwrap();
    soon(&lp, || panic!("reported on stderr"));
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    lp.run_forever().unwrap();
}

// conformance: L6
#[test]
fn the_default_handler_names_a_context_without_a_message() {
    // asyncio's default_exception_handler: `if not message: message =
    // 'Unhandled exception in event loop'`.
    let ctx = ExceptionContext {
        error: Some(Error::msg("bad thing")),
        ..Default::default()
    };
    assert_eq!(
        ctx.to_string(),
        "Unhandled exception in event loop\nerror: bad thing"
    );
}

// conformance: L6
#[test]
fn a_panicking_exception_handler_falls_back_to_the_default_one() {
    let lp = EventLoop::new().unwrap();
    let called = Rc::new(Cell::new(0));
    let c = called.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        c.set(c.get() + 1);
        panic!("the handler itself fails");
    }));
    soon(&lp, || panic!("first"));
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    lp.run_forever().unwrap();
    assert_eq!(called.get(), 1);
}

/// A user's error whose `Display` (and so `Debug`) panics.
#[derive(Debug)]
struct UnprintableError;

impl std::fmt::Display for UnprintableError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("cannot print this error");
    }
}

impl std::error::Error for UnprintableError {}

// conformance: L6
#[test]
fn an_error_that_panics_when_printed_does_not_take_the_default_handler_down() {
    // asyncio's call_exception_handler protects the default handler too
    // ('Exception in default exception handler' is logged) and never
    // raises but SystemExit/KeyboardInterrupt; here, an unretrieved task
    // error that cannot be printed is reported from the task's Drop, at the
    // end of its last step, outside any callback.
    let lp = EventLoop::new().unwrap();
    let ctx = ExceptionContext {
        message: "with an unprintable error".into(),
        error: Some(Error::Other(std::sync::Arc::new(UnprintableError))),
        ..Default::default()
    };
    lp.call_exception_handler(&ctx);
    let out = lp.run_until_complete(async {
        let t = tulip::create_task(async {
            Err::<(), _>(Error::Other(std::sync::Arc::new(UnprintableError)))
        })?;
        drop(t);
        for _ in 0..3 {
            tulip::sleep(0.0).await?;
        }
        Ok(7)
    });
    assert_eq!(out.unwrap(), 7);
    // A custom handler that panics falls back to the default one, which
    // prints the context: that must not unwind either.
    lp.set_exception_handler(Some(|_: &EventLoop, _: &ExceptionContext| {
        panic!("the handler itself fails")
    }));
    lp.call_exception_handler(&ctx);
    lp.close().unwrap();
}

// conformance: L6
#[test]
fn get_exception_handler_lets_a_new_handler_chain_to_the_old_one() {
    use tulip::BaseTransport;
    // asyncio's get_exception_handler: None while the default handler is
    // in use, else the very handler set, so a wrapper can pass reports on.
    // The report here comes from a protocol fed by a real loopback socket.
    struct PanicsOnData;
    impl tulip::Protocol for PanicsOnData {
        fn data_received(&self, _: &[u8]) {
            panic!("bug in data_received");
        }
    }
    let lp = EventLoop::new().unwrap();
    assert!(lp.get_exception_handler().is_none());
    let log = log();
    let l1 = log.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        push(&l1, format!("first: {}", ctx.message));
    }));
    let first = lp.get_exception_handler().expect("a handler was set");
    assert!(Rc::ptr_eq(&first, &lp.get_exception_handler().unwrap()));
    let (previous, l2) = (first.clone(), log.clone());
    lp.set_exception_handler(Some(move |lp: &EventLoop, ctx: &ExceptionContext| {
        push(&l2, "second");
        previous(lp, ctx);
    }));
    assert!(!Rc::ptr_eq(&first, &lp.get_exception_handler().unwrap()));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lp1 = lp.clone();
    lp.run_until_complete(async move {
        let (t, _) = lp1
            .create_connection(|| Rc::new(PanicsOnData), "127.0.0.1", port)
            .await?;
        let (mut peer, _) = listener.accept().map_err(Error::from)?;
        peer.write_all(b"boom").map_err(Error::from)?;
        for _ in 0..200 {
            if t.is_closing() {
                break;
            }
            tulip::sleep(0.005).await?;
        }
        assert!(t.is_closing(), "the panic did not close the transport");
        Ok(())
    })
    .unwrap();
    assert_eq!(
        entries(&log),
        [
            "second",
            "first: Fatal error: protocol.data_received() call failed."
        ]
    );
    lp.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    assert!(lp.get_exception_handler().is_none());
    lp.close().unwrap();
}

// ===== L7 =====
// ===== L7 =====

// conformance: L7
#[test]
fn interrupt_ends_run_forever_and_leaves_the_loop_reusable() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    soon(&lp, move || {
        push(&l1, "before");
        // A stop requested in the same iteration must not leak into the next run.
        lp1.stop();
        tulip::interrupt();
    });
    let l2 = l.clone();
    soon(&lp, move || push(&l2, "left in the queue"));
    let err = lp.run_forever().unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    assert!(!lp.is_running());
    assert!(tulip::try_running_loop().is_none());
    assert_eq!(entries(&l), ["before"]);

    // No stale stop flag: this run takes three iterations.
    let (l3, lp3) = (l.clone(), lp.clone());
    soon(&lp, move || {
        push(&l3, "1");
        let (l4, lp4) = (l3.clone(), lp3.clone());
        soon(&lp3, move || {
            push(&l4, "2");
            let lp5 = lp4.clone();
            soon(&lp4, move || lp5.stop());
        });
    });
    lp.run_forever().unwrap();
    assert_eq!(entries(&l), ["before", "left in the queue", "1", "2"]);
    assert_eq!(lp.run_until_complete(async { Ok(3) }).unwrap(), 3);
}

// conformance: L7
#[test]
fn interrupt_in_a_task_ends_run_until_complete_and_the_loop_runs_again() {
    let lp = EventLoop::new().unwrap();
    let err = lp
        .run_until_complete::<(), _>(async {
            tulip::sleep(0.0).await?;
            tulip::interrupt()
        })
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    assert!(!lp.is_running());
    let out = lp
        .run_until_complete(async {
            tulip::sleep(0.001).await?;
            Ok("fine")
        })
        .unwrap();
    assert_eq!(out, "fine");
}

// conformance: L7
#[test]
fn interrupt_after_the_future_finished_leaves_no_stale_stop() {
    // The task finishes and schedules run_until_complete's stop callback
    // behind an interrupting callback: the interrupt ends the run first, and
    // the stale stop callback must not end the next run.
    let lp = EventLoop::new().unwrap();
    let lp1 = lp.clone();
    let err = lp
        .run_until_complete(async move {
            soon(&lp1, || tulip::interrupt());
            Ok(1)
        })
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    let out = lp
        .run_until_complete(async {
            tulip::sleep(0.001).await?;
            tulip::sleep(0.0).await?;
            Ok(2)
        })
        .unwrap();
    assert_eq!(out, 2);
}

// conformance: L7
#[test]
fn interrupt_raised_by_the_exception_handler_ends_run_forever() {
    // asyncio's call_exception_handler re-raises KeyboardInterrupt from a
    // custom handler (`except (SystemExit, KeyboardInterrupt): raise`), so it
    // ends run_forever; it is not reported as an error of the handler.
    let lp = EventLoop::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        c.set(c.get() + 1);
        tulip::interrupt();
    }));
    soon(&lp, || panic!("reported to the handler"));
    let l = log();
    let l1 = l.clone();
    soon(&lp, move || push(&l1, "left in the queue"));
    let (guard, timed_out) = stop_after(&lp, 5.0);
    let res = lp.run_forever();
    assert!(!timed_out.get(), "the interrupt did not end the run");
    assert!(matches!(res, Err(Error::Interrupted)), "{res:?}");
    assert_eq!(calls.get(), 1);
    assert!(entries(&l).is_empty());
    // The loop stays usable; the rest of the iteration runs next time.
    lp.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    guard.cancel();
    let lp1 = lp.clone();
    soon(&lp, move || lp1.stop());
    lp.run_forever().unwrap();
    assert_eq!(entries(&l), ["left in the queue"]);
}

// conformance: L7
#[test]
fn interrupt_from_the_handler_of_an_explicit_call_exception_handler_ends_run_forever() {
    // asyncio's call_exception_handler re-raises KeyboardInterrupt (and
    // SystemExit) from a custom handler wherever it is called from, not only
    // for a failed callback: a callback that reports an error itself, or a
    // transport's _fatal_error, ends the run when the handler raises it.
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        s.borrow_mut().push(ctx.message.clone());
        if ctx.message == "reported by the callback" {
            tulip::interrupt();
        }
    }));
    let (lp1, l) = (lp.clone(), log());
    let l1 = l.clone();
    soon(&lp, move || {
        lp1.call_exception_handler(&ExceptionContext {
            message: "reported by the callback".into(),
            ..Default::default()
        });
        push(&l1, "after the report");
    });
    let (guard, timed_out) = stop_after(&lp, 5.0);
    let res = lp.run_forever();
    guard.cancel();
    assert!(!timed_out.get(), "the interrupt did not end the run");
    assert!(matches!(res, Err(Error::Interrupted)), "{res:?}");
    assert_eq!(*seen.borrow(), ["reported by the callback"]);
    assert!(
        entries(&l).is_empty(),
        "the callback went on after the interrupt"
    );
}

// ===== L8 =====

fn nonblocking_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

// conformance: L8
#[test]
fn a_reader_drains_its_socket_until_would_block() {
    let lp = EventLoop::new().unwrap();
    let (mut tx, rx) = nonblocking_pair();
    let rx = Rc::new(rx);
    let got = Rc::new(RefCell::new(Vec::<u8>::new()));
    let calls = Rc::new(Cell::new(0));
    let reader = {
        let (rx, got, calls, lp) = (rx.clone(), got.clone(), calls.clone(), lp.clone());
        move || {
            calls.set(calls.get() + 1);
            let mut buf = [0u8; 7];
            loop {
                match (&*rx).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.borrow_mut().extend_from_slice(&buf[..n]),
                    // Spurious readiness is fine: nothing to read, come back later.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
            if got.borrow().len() >= 3000 {
                lp.stop();
            }
        }
    };
    lp.add_reader(rx.as_raw_fd(), reader.clone()).unwrap();
    // A spurious call before any data arrived must not block or fail.
    soon(&lp, reader.clone());
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let p = payload.clone();
    let writer = std::thread::spawn(move || {
        for chunk in p.chunks(1000) {
            let mut off = 0;
            while off < chunk.len() {
                match tx.write(&chunk[off..]) {
                    Ok(n) => off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("write: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tx
    });
    let (guard, timed_out) = stop_after(&lp, 10.0);
    lp.run_forever().unwrap();
    guard.cancel();
    assert!(!timed_out.get(), "the reader never saw all the data");
    let _tx = writer.join().unwrap();
    assert_eq!(*got.borrow(), payload);
    assert!(calls.get() >= 2);
    assert!(lp.remove_reader(rx.as_raw_fd()).unwrap());
    assert!(!lp.remove_reader(rx.as_raw_fd()).unwrap());
}

// conformance: L8
#[test]
fn a_reader_that_does_not_drain_is_called_again_next_iteration() {
    // asyncio's selector is level-triggered: the reader runs on every
    // iteration while its fd stays readable.
    let lp = EventLoop::new().unwrap();
    let (mut tx, rx) = nonblocking_pair();
    let rx = Rc::new(rx);
    let reads = Rc::new(RefCell::new(Vec::new()));
    let calls = Rc::new(Cell::new(0));
    {
        let (rx, reads, calls) = (rx.clone(), reads.clone(), calls.clone());
        lp.add_reader(rx.as_raw_fd(), move || {
            let mut one = [0u8; 1];
            // Spurious calls (WouldBlock) would be tolerated, but show up in `calls`.
            calls.set(calls.get() + 1);
            if let Ok(1) = (&*rx).read(&mut one) {
                reads.borrow_mut().push(one[0]);
            }
        })
        .unwrap();
    }
    tx.write_all(b"abcde").unwrap();
    // A far guard timer: a run_once that waited for it would take 20 s.
    let guard = lp.call_later(20.0, || ()).unwrap();
    for i in 1..=5 {
        let t0 = Instant::now();
        lp.run_once().unwrap();
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "iteration {i} blocked"
        );
        assert_eq!(reads.borrow().len(), i, "one read per iteration");
    }
    assert_eq!(*reads.borrow(), b"abcde");
    // Drained: the next iteration does not call the reader.
    guard.cancel();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let _t = lp.call_later(0.03, move || f.set(true)).unwrap();
    while !fired.get() {
        lp.run_once().unwrap();
    }
    assert_eq!(reads.borrow().len(), 5);
    assert_eq!(calls.get(), 5, "not called once drained");
}

// conformance: L6, L8
#[test]
fn a_reader_that_panics_is_called_again_while_its_fd_stays_readable() {
    // The panic goes to the exception handler; the fd is still readable,
    // so (level-triggered) the reader runs again in the next iteration.
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let (mut tx, rx) = nonblocking_pair();
    let rx = Rc::new(rx);
    let calls = Rc::new(Cell::new(0));
    {
        let (rx, calls, lp1) = (rx.clone(), calls.clone(), lp.clone());
        lp.add_reader(rx.as_raw_fd(), move || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                panic!("reader fails before reading");
            }
            let mut buf = [0u8; 16];
            while (&*rx).read(&mut buf).is_ok() {}
            lp1.stop();
        })
        .unwrap();
    }
    tx.write_all(b"ping").unwrap();
    let (guard, timed_out) = stop_after(&lp, 10.0);
    lp.run_forever().unwrap();
    guard.cancel();
    assert!(
        !timed_out.get(),
        "the reader was not called again after it panicked"
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(reports.borrow().len(), 1);
    lp.remove_reader(rx.as_raw_fd()).unwrap();
}

// conformance: L8
#[test]
fn io_is_polled_at_least_every_io_poll_interval_iterations_under_load() {
    // The documented deviation: with callbacks always ready, epoll is
    // polled only every IO_POLL_INTERVAL iterations, never less often.
    let lp = EventLoop::new().unwrap();
    let n = busy_callback(&lp);
    let (mut tx, rx) = nonblocking_pair();
    let rx = Rc::new(rx);
    let seen_at = Rc::new(Cell::new(None::<u32>));
    {
        let (rx, seen_at, n) = (rx.clone(), seen_at.clone(), n.clone());
        lp.add_reader(rx.as_raw_fd(), move || {
            let mut buf = [0u8; 8];
            while (&*rx).read(&mut buf).is_ok() {}
            if seen_at.get().is_none() {
                seen_at.set(Some(n.get()));
            }
        })
        .unwrap();
    }
    for _ in 0..5 {
        lp.run_once().unwrap();
    }
    tx.write_all(b"x").unwrap();
    let written_at = n.get();
    let limit = tulip::event_loop::IO_POLL_INTERVAL + 2;
    for _ in 0..limit {
        lp.run_once().unwrap();
        if seen_at.get().is_some() {
            break;
        }
    }
    let seen = seen_at
        .get()
        .expect("the reader was starved by the callbacks");
    assert!(
        seen - written_at <= limit,
        "{} iterations",
        seen - written_at
    );
    lp.remove_reader(rx.as_raw_fd()).unwrap();
}

// conformance: L8
#[test]
fn a_writer_is_called_while_its_socket_is_writable() {
    let lp = EventLoop::new().unwrap();
    let (tx, _rx) = nonblocking_pair();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    let lp1 = lp.clone();
    let fd = tx.as_raw_fd();
    lp.add_writer(fd, move || {
        c.set(c.get() + 1);
        if c.get() == 3 {
            lp1.remove_writer(fd).unwrap();
            lp1.stop();
        }
    })
    .unwrap();
    let (guard, timed_out) = stop_after(&lp, 10.0);
    lp.run_forever().unwrap();
    guard.cancel();
    assert!(!timed_out.get(), "the writer was not called again");
    assert_eq!(calls.get(), 3);
    assert!(!lp.has_writer(fd));
}

// conformance: L8
#[test]
fn a_reader_removed_in_the_same_iteration_never_runs() {
    // Both fds are ready in one poll; the first callback removes the second
    // reader, whose handle already sits in the ready queue: it is skipped.
    let lp = EventLoop::new().unwrap();
    let (mut tx1, rx1) = nonblocking_pair();
    let (mut tx2, rx2) = nonblocking_pair();
    let l = log();
    let (fd1, fd2) = (rx1.as_raw_fd(), rx2.as_raw_fd());
    let first_ran = Rc::new(Cell::new(None::<i32>));
    for (fd, other) in [(fd1, fd2), (fd2, fd1)] {
        let (l, lp1, first) = (l.clone(), lp.clone(), first_ran.clone());
        lp.add_reader(fd, move || {
            push(&l, format!("reader {fd}"));
            if first.get().is_none() {
                first.set(Some(fd));
                lp1.remove_reader(other).unwrap();
            }
            lp1.remove_reader(fd).unwrap();
        })
        .unwrap();
    }
    tx1.write_all(b"x").unwrap();
    tx2.write_all(b"y").unwrap();
    let guard = lp.call_later(20.0, || ()).unwrap();
    lp.run_once().unwrap();
    guard.cancel();
    assert_eq!(l.borrow().len(), 1, "{:?}", entries(&l));
    assert!(!lp.has_reader(fd1) && !lp.has_reader(fd2));
    drop((rx1, rx2));
}

// conformance: L8
// conformance: L8
#[test]
fn a_reader_on_an_fd_number_reused_without_remove_reader_is_registered_afresh() {
    // The owner closed the fd without remove_reader, and the number now names
    // another file (dup2 does both at once, so no other thread can take the
    // number in between). epoll forgot the old file; the stale registration
    // must not make add_reader fail forever, nor run the stale callback.
    use std::os::fd::IntoRawFd;
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (old, _old_peer) = nonblocking_pair();
    let n = old.into_raw_fd();
    let l1 = l.clone();
    lp.add_reader(n, move || push(&l1, "stale")).unwrap();
    let (new, mut new_peer) = nonblocking_pair();
    // SAFETY: `n` and `new`'s fd are open fds this test owns; dup2 closes
    // the old file at `n` and makes `n` name `new`'s file.
    assert_eq!(unsafe { libc::dup2(new.as_raw_fd(), n) }, n);
    drop(new);
    let l2 = l.clone();
    let fresh = lp.add_reader(n, move || push(&l2, "fresh"));
    assert!(fresh.is_ok(), "{fresh:?}");
    new_peer.write_all(b"x").unwrap();
    let (guard, timed_out) = stop_after(&lp, 5.0);
    let (lp1, l3) = (lp.clone(), l.clone());
    while entries(&l3).is_empty() && !timed_out.get() {
        lp1.run_once().unwrap();
    }
    guard.cancel();
    assert_eq!(entries(&l), ["fresh"]);
    assert!(lp.remove_reader(n).unwrap());
    // SAFETY: `n` is open and owned by this test.
    unsafe { libc::close(n) };
}

#[test]
fn replacing_a_reader_cancels_the_old_callback() {
    let lp = EventLoop::new().unwrap();
    let (mut tx, rx) = nonblocking_pair();
    let rx = Rc::new(rx);
    let l = log();
    let fd = rx.as_raw_fd();
    let l1 = l.clone();
    lp.add_reader(fd, move || push(&l1, "old")).unwrap();
    let (l2, rx2, lp2) = (l.clone(), rx.clone(), lp.clone());
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 16];
        while (&*rx2).read(&mut buf).is_ok() {}
        push(&l2, "new");
        lp2.remove_reader(fd).unwrap();
        lp2.stop();
    })
    .unwrap();
    tx.write_all(b"data").unwrap();
    let (guard, timed_out) = stop_after(&lp, 10.0);
    lp.run_forever().unwrap();
    guard.cancel();
    assert!(!timed_out.get(), "the new reader never ran");
    assert_eq!(entries(&l), ["new"]);
}

// asyncio's Runner.close() does nothing to a runner that was never
// initialized (`if self._state is not _State.INITIALIZED: return`); only
// a runner whose loop was closed refuses to run ("Runner is closed").
#[test]
fn closing_a_runner_that_never_ran_leaves_it_usable_and_a_closed_one_refuses() {
    let mut runner = tulip::Runner::new();
    runner.close();
    assert_eq!(runner.run(async { Ok(1) }).unwrap(), 1);
    runner.close();
    let err = runner.run(async { Ok(2) }).unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(runner.get_loop().is_err());
}

/// Runs `f` when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[test]
fn a_reader_is_dropped_after_the_loop_lets_go_of_its_registrations() {
    // Removing or replacing a reader drops its callback, and with it what
    // the callback captured: the user's code, whose Drop may use the loop
    // (here: add a reader on another fd, as a RAII wrapper of a
    // registration would). asyncio's remove_reader drops the handle with
    // no lock held.
    let lp = EventLoop::new().unwrap();
    let (_tx, rx) = UnixStream::pair().unwrap();
    let (_tx2, rx2) = UnixStream::pair().unwrap();
    let (fd, fd2) = (rx.as_raw_fd(), rx2.as_raw_fd());
    let guarded_reader = |what: &'static str| {
        let (lp2, l) = (lp.clone(), log());
        let l2 = l.clone();
        let guard = OnDrop(move || {
            let added = lp2.add_reader(fd2, || ());
            push(&l2, format!("{what}: {}", added.is_ok()));
        });
        (
            move || {
                let _ = &guard;
            },
            l,
        )
    };
    // Removed.
    let (reader, l) = guarded_reader("removed");
    lp.add_reader(fd, reader).unwrap();
    assert!(lp.remove_reader(fd).unwrap());
    assert_eq!(entries(&l), ["removed: true"]);
    assert!(lp.remove_reader(fd2).unwrap());
    // Replaced by another reader.
    let (reader, l) = guarded_reader("replaced");
    lp.add_reader(fd, reader).unwrap();
    lp.add_reader(fd, || ()).unwrap();
    assert_eq!(entries(&l), ["replaced: true"]);
    assert!(lp.remove_reader(fd).unwrap());
    assert!(lp.remove_reader(fd2).unwrap());
    lp.close().unwrap();
}

#[test]
fn remove_reader_says_false_for_an_fd_that_has_only_a_writer_and_leaves_the_writer() {
    // asyncio's `_remove_reader` returns whether a reader was set; the
    // writer of the same fd stays registered.
    let lp = EventLoop::new().unwrap();
    let (_tx, rx) = nonblocking_pair();
    let fd = rx.as_raw_fd();
    let calls = Rc::new(Cell::new(0));
    let (c, lp1) = (calls.clone(), lp.clone());
    lp.add_writer(fd, move || {
        c.set(c.get() + 1);
        lp1.stop();
    })
    .unwrap();
    assert!(!lp.remove_reader(fd).unwrap(), "no reader was set");
    assert!(lp.has_writer(fd));
    let (guard, timed_out) = stop_after(&lp, 10.0);
    lp.run_forever().unwrap();
    guard.cancel();
    assert!(!timed_out.get(), "the writer never ran");
    assert_eq!(calls.get(), 1);
    assert!(lp.remove_writer(fd).unwrap());
    assert!(!lp.remove_writer(fd).unwrap());
    lp.close().unwrap();
}
