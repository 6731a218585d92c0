//! Signal handlers on the loop. Signal dispositions are process-wide, so this
//! file is its own test binary and its tests are serialized by a lock.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tulip::signals::has_default_disposition;
use tulip::{Error, EventLoop};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `sig` to this process from another thread after `delay`.
fn send_later(sig: i32, delay: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        // SAFETY: kill() with our own pid and a valid signal.
        unsafe { libc::kill(libc::getpid(), sig) };
    })
}

// conformance: R1
#[test]
fn handler_runs_while_the_loop_blocks_in_poll() {
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    let got = Rc::new(Cell::new(0));
    let (g, stopper) = (got.clone(), lp.clone());
    lp.add_signal_handler(libc::SIGUSR1, move || {
        g.set(g.get() + 1);
        stopper.stop();
    })
    .unwrap();
    // Nothing else is scheduled: the loop blocks in epoll_wait with no
    // timeout. A far watchdog thread only bounds the test.
    let watchdog = lp.handle();
    let sender = send_later(libc::SIGUSR1, Duration::from_millis(50));
    let w = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let _ = watchdog.stop();
    });
    let start = Instant::now();
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert_eq!(got.get(), 1, "the handler did not run");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    lp.close().unwrap();
    drop(w);
}

// conformance: R1
#[test]
fn bad_signal_numbers_are_errors() {
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    for sig in [0, -1, 65, 1000] {
        let err = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{sig}: {err:?}");
        let err = lp.remove_signal_handler(sig).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{sig}: {err:?}");
    }
    for sig in [libc::SIGKILL, libc::SIGSTOP] {
        let err = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{sig}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("cannot be caught"), "{msg}");
        assert!(
            msg.contains("handle another signal, such as SIGTERM"),
            "{msg}"
        );
    }
    lp.close().unwrap();
}

// conformance: R1
#[test]
fn the_signals_the_c_library_reserves_are_invalid_numbers() {
    // asyncio's `_check_signal` wants `sig in signal.valid_signals()`,
    // which Python builds with `sigfillset`: on glibc that leaves out 32
    // and 33, kept for its threads (SIGRTMIN starts above them). asyncio
    // raises ValueError for them from add *and* remove; tulip called add's
    // failing sigaction "cannot be caught" and said remove had no handler.
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    let reserved: Vec<i32> = (libc::SIGSYS + 1..libc::SIGRTMIN()).collect();
    assert!(
        !reserved.is_empty(),
        "glibc reserves signals below SIGRTMIN"
    );
    for sig in reserved {
        let err = lp.add_signal_handler(sig, || {}).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{sig}: {err:?}");
        let err = lp.remove_signal_handler(sig).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{sig}: {err:?}");
    }
    // The real-time signals from SIGRTMIN on are valid and can be caught.
    lp.add_signal_handler(libc::SIGRTMIN(), || {}).unwrap();
    assert!(lp.remove_signal_handler(libc::SIGRTMIN()).unwrap());
    assert!(has_default_disposition(libc::SIGRTMIN()));
    lp.close().unwrap();
}

// conformance: R1
#[test]
fn removing_a_handler_restores_the_default_disposition() {
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    assert!(has_default_disposition(libc::SIGUSR2));
    assert!(!lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    lp.add_signal_handler(libc::SIGUSR2, || {}).unwrap();
    assert!(!has_default_disposition(libc::SIGUSR2));
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    assert!(has_default_disposition(libc::SIGUSR2));
    assert!(!lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    lp.close().unwrap();
}

// conformance: R1
#[test]
fn closing_the_loop_removes_its_handlers() {
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    lp.add_signal_handler(libc::SIGUSR2, || {}).unwrap();
    lp.add_signal_handler(libc::SIGHUP, || {}).unwrap();
    lp.close().unwrap();
    assert!(has_default_disposition(libc::SIGUSR2));
    assert!(has_default_disposition(libc::SIGHUP));
    // L5: signal calls on a closed loop are errors.
    assert!(matches!(
        lp.add_signal_handler(libc::SIGUSR2, || {}),
        Err(Error::Closed)
    ));
    assert!(matches!(
        lp.remove_signal_handler(libc::SIGUSR2),
        Err(Error::Closed)
    ));
}

// conformance: R1
#[test]
fn a_new_handler_replaces_the_old_one_and_each_signal_is_delivered() {
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    let first = Rc::new(Cell::new(0));
    let second = Rc::new(Cell::new(0));
    let f = first.clone();
    lp.add_signal_handler(libc::SIGUSR1, move || f.set(f.get() + 1))
        .unwrap();
    let (s, stopper) = (second.clone(), lp.clone());
    lp.add_signal_handler(libc::SIGUSR1, move || {
        s.set(s.get() + 1);
        if s.get() == 3 {
            stopper.stop();
        }
    })
    .unwrap();
    let sender = std::thread::spawn(|| {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(30));
            // SAFETY: kill() with our own pid and a valid signal.
            unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        }
    });
    let bound = lp.clone();
    let _watchdog = lp.call_later(10.0, move || bound.stop()).unwrap();
    lp.run_forever().unwrap();
    sender.join().unwrap();
    assert_eq!((first.get(), second.get()), (0, 3));
    lp.close().unwrap();
}

// conformance: R1
#[test]
fn a_loop_dropped_at_thread_exit_leaves_no_handler_writing_to_its_closed_pipe() {
    let _s = serial();
    // A loop left in `set_event_loop` when its thread ends is dropped
    // while the thread's locals are destroyed, without `close()` (see
    // `EventLoop`'s `Drop`); its wake-up pipe is closed then. The C handler
    // must not be left pointing at those fd numbers, which the next pipe or
    // socket of the process reuses.
    std::thread::spawn(|| {
        let lp = EventLoop::new().unwrap();
        lp.add_signal_handler(libc::SIGUSR2, || {}).unwrap();
        tulip::set_event_loop(Some(&lp));
    })
    .join()
    .unwrap();
    // The fd numbers the loop freed (its epoll fd, eventfd and pipe) are
    // the lowest free ones: these pipes take them again.
    let pipes: Vec<_> = (0..4).map(|_| std::io::pipe().unwrap()).collect();
    let caught = !has_default_disposition(libc::SIGUSR2);
    let mut written = 0;
    if caught {
        // SAFETY: raise() sends a signal to this very thread; its handler
        // is still installed, so it does not terminate the process.
        unsafe { libc::raise(libc::SIGUSR2) };
        // SAFETY: restores the default disposition the loop should have.
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_DFL) };
        for (r, _) in &pipes {
            use std::os::fd::AsRawFd;
            let mut buf = [0u8; 8];
            // SAFETY: a non-blocking read into `buf`, of at most its length.
            written += unsafe {
                let fd = r.as_raw_fd();
                libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK);
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len()).max(0)
            };
        }
    }
    drop(pipes);
    assert!(
        !caught,
        "SIGUSR2 is still caught after its loop was dropped ({written} byte(s) went to an unrelated pipe)"
    );
}

// conformance: R1
#[test]
fn a_panicking_signal_handler_is_reported_under_its_own_name() {
    // asyncio's _handle_signal schedules the handle add_signal_handler made
    // for the callback, so a failure is reported as "Exception in callback
    // <the handler>". tulip named its own scheduling closure
    // (signals::SignalState::handle_signal::{{closure}}, created in
    // signals.rs) instead.
    fn failing_handler() {
        panic!("boom from a signal handler");
    }
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    let reports = Rc::new(std::cell::RefCell::new(Vec::new()));
    let (r, stopper) = (reports.clone(), lp.clone());
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &tulip::ExceptionContext| {
        r.borrow_mut().push(ctx.clone());
        stopper.stop();
    }));
    let line = line!() + 1;
    lp.add_signal_handler(libc::SIGUSR2, failing_handler)
        .unwrap();
    // SAFETY: raise() sends a signal to this very thread.
    let _ = lp.call_soon(|| unsafe {
        libc::raise(libc::SIGUSR2);
    });
    let watchdog = lp.call_later(5.0, {
        let lp = lp.clone();
        move || lp.stop()
    });
    lp.run_forever().unwrap();
    watchdog.unwrap().cancel();
    assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    lp.close().unwrap();
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let ctx = &reports[0];
    assert!(ctx.message.contains("failing_handler"), "{}", ctx.message);
    let handle = ctx.handle.as_deref().unwrap_or_default();
    assert!(
        handle.contains(&format!("tests/signals.rs:{line}")),
        "{handle}"
    );
}

// conformance: R1
/// A handled signal does not interrupt the program's blocking system calls:
/// asyncio's `add_signal_handler` calls `signal.siginterrupt(sig, False)`,
/// so a `read` the signal lands in is restarted, not failed with `EINTR`.
#[test]
fn a_handled_signal_restarts_an_interrupted_blocking_read() {
    use std::os::fd::AsRawFd;
    let _s = serial();
    let lp = EventLoop::new().unwrap();
    lp.add_signal_handler(libc::SIGUSR1, || {}).unwrap();
    let (r, mut w) = std::io::pipe().unwrap();
    // SAFETY: pthread_self cannot fail.
    let me = unsafe { libc::pthread_self() };
    // The signal lands in the read below, then a byte ends it.
    let helper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: `me` is the test thread, alive until it joins us.
        unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
        std::thread::sleep(Duration::from_millis(100));
        std::io::Write::write_all(&mut w, b"x").unwrap();
    });
    let mut buf = [0u8; 1];
    // SAFETY: a blocking read into `buf`, of at most its length.
    let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
    let err = std::io::Error::last_os_error();
    helper.join().unwrap();
    assert!(lp.remove_signal_handler(libc::SIGUSR1).unwrap());
    lp.close().unwrap();
    assert_eq!(n, 1, "read failed: {err}");
}

// conformance: R1
#[test]
fn removing_a_handler_another_loop_took_over_leaves_that_loops_handler() {
    let _s = serial();
    // Dispositions are process-wide: the last loop to add a handler for a
    // signal gets it (the module's invariant: `WAKEUP_FDS[sig]` is the pipe
    // of the loop that has a handler for it). Removing the older loop's
    // handler, or closing that loop, restored SIG_DFL and cleared the
    // wake-up fd under the newer loop, which never heard of the signal again
    // (and a SIGUSR1 would then have killed the process). SIGWINCH is
    // ignored by default, so this test survives the bug.
    let sig = libc::SIGWINCH;
    let old = EventLoop::new().unwrap();
    old.add_signal_handler(sig, || {}).unwrap();
    let lp = EventLoop::new().unwrap();
    let got = Rc::new(Cell::new(0));
    let (g, stopper) = (got.clone(), lp.clone());
    lp.add_signal_handler(sig, move || {
        g.set(g.get() + 1);
        stopper.stop();
    })
    .unwrap();
    assert!(old.remove_signal_handler(sig).unwrap());
    assert!(
        !has_default_disposition(sig),
        "the newer loop's handler is gone"
    );
    old.close().unwrap();
    assert!(
        !has_default_disposition(sig),
        "the newer loop's handler is gone"
    );
    let (guard, timed_out) = {
        let t = Rc::new(Cell::new(false));
        let (t2, stopper) = (t.clone(), lp.clone());
        let h = lp
            .call_later(10.0, move || {
                t2.set(true);
                stopper.stop();
            })
            .unwrap();
        (h, t)
    };
    // SAFETY: raise() sends a signal to this very thread.
    let _ = lp
        .call_soon(move || unsafe {
            libc::raise(sig);
        })
        .unwrap();
    lp.run_forever().unwrap();
    guard.cancel();
    assert!(!timed_out.get(), "the signal never reached the newer loop");
    assert_eq!(got.get(), 1);
    assert!(lp.remove_signal_handler(sig).unwrap());
    assert!(has_default_disposition(sig));
    lp.close().unwrap();
}

/// A handler added where a context value is current runs in a copy of it,
/// as asyncio's handler `Handle` takes `copy_context()`.
#[test]
fn a_handler_runs_in_a_copy_of_the_context_it_was_added_in() {
    static TAG: tulip::ContextVar<&str> = tulip::ContextVar::new("tag");
    let _s = serial();
    let seen = tulip::run(async {
        let lp = tulip::get_running_loop()?;
        TAG.set("added here")?;
        let got = lp.create_future::<Option<&str>>();
        let g = got.clone();
        lp.add_signal_handler(libc::SIGUSR2, move || {
            if !g.done() {
                let _ = g.set_result(TAG.get());
            }
        })?;
        TAG.set("later")?;
        // SAFETY: kill() with our own pid and a valid signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR2) };
        let v = tulip::timeout(5.0).run(got).await?;
        lp.remove_signal_handler(libc::SIGUSR2)?;
        Ok(v)
    })
    .unwrap();
    assert_eq!(seen, Some("added here"));
}
