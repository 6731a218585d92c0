//! `run()` and Ctrl-C (R2). asyncio's runner handles SIGINT only on the
//! main thread, so this test has no libtest harness: `main` runs each case
//! in turn on the main thread, and a helper thread sends the SIGINTs.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulip::signals::has_default_disposition;
use tulip::{Error, Runner};

/// Sends SIGINT to this process after each delay, from another thread.
fn sigint_after(delays: &'static [u64]) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for &ms in delays {
            std::thread::sleep(Duration::from_millis(ms));
            // SAFETY: kill() with our own pid and a valid signal.
            unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        }
    })
}

// conformance: R2
fn first_ctrl_c_cancels_the_main_task_and_run_returns_interrupted() {
    let other_cancelled = Rc::new(Cell::new(false));
    let main_saw_cancel = Rc::new(Cell::new(false));
    let (oc, ms) = (other_cancelled.clone(), main_saw_cancel.clone());
    let pool_job_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pj = pool_job_done.clone();
    let mut runner = Runner::new();
    let lp = runner.get_loop().unwrap();
    let sender = sigint_after(&[100]);
    let start = Instant::now();
    let res: tulip::Result<()> = runner.run(async move {
        assert!(
            !has_default_disposition(libc::SIGINT),
            "run() installs a SIGINT handler"
        );
        // A background task, and a thread-pool job still running at Ctrl-C.
        let _bg = tulip::create_task(async move {
            let r = tulip::sleep(60.0).await;
            oc.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
            r
        })?;
        let lp = tulip::get_running_loop()?;
        let _job = lp.run_in_executor(None, move || {
            std::thread::sleep(Duration::from_millis(300));
            pj.store(true, std::sync::atomic::Ordering::SeqCst);
        })?;
        let r = tulip::sleep(60.0).await;
        ms.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
        r
    });
    sender.join().unwrap();
    assert!(matches!(res, Err(Error::Interrupted)), "{res:?}");
    assert!(main_saw_cancel.get());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        has_default_disposition(libc::SIGINT),
        "the handler is removed after run()"
    );
    runner.close();
    // Cleanup: other tasks cancelled and awaited, pool joined, loop closed.
    assert!(other_cancelled.get());
    assert!(pool_job_done.load(std::sync::atomic::Ordering::SeqCst));
    assert!(lp.is_closed());
}

// conformance: R2
fn second_ctrl_c_interrupts_a_main_task_that_is_still_unwinding() {
    let sender = sigint_after(&[100, 150]);
    let start = Instant::now();
    let res: tulip::Result<()> = tulip::run(async {
        // Catch the first cancel and keep going, as a slow cleanup would.
        if let Err(e) = tulip::sleep(60.0).await {
            assert!(e.is_cancelled());
            tulip::sleep(60.0).await?;
        }
        Ok(())
    });
    sender.join().unwrap();
    assert!(matches!(res, Err(Error::Interrupted)), "{res:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(has_default_disposition(libc::SIGINT));
}

// conformance: R2
fn a_main_task_that_swallows_the_cancel_returns_its_value() {
    let sender = sigint_after(&[100]);
    let res = tulip::run(async {
        match tulip::sleep(60.0).await {
            Err(e) if e.is_cancelled() => {
                tulip::current_task().unwrap().uncancel();
                Ok(5)
            }
            other => other.map(|_| 0),
        }
    });
    sender.join().unwrap();
    assert_eq!(res.unwrap(), 5);
}

// conformance: R2
fn no_handler_off_the_main_thread() {
    std::thread::spawn(|| {
        tulip::run(async {
            assert!(has_default_disposition(libc::SIGINT));
            Ok(())
        })
        .unwrap();
    })
    .join()
    .unwrap();
}

// conformance: R2
fn a_user_sigint_handler_is_left_alone() {
    let mut runner = Runner::new();
    let lp = runner.get_loop().unwrap();
    let hits = Rc::new(Cell::new(0));
    let h = hits.clone();
    lp.add_signal_handler(libc::SIGINT, move || h.set(h.get() + 1))
        .unwrap();
    let sender = sigint_after(&[50]);
    let res = runner.run(async {
        tulip::sleep(0.3).await?;
        Ok(1)
    });
    sender.join().unwrap();
    assert_eq!(res.unwrap(), 1);
    assert_eq!(hits.get(), 1);
    assert!(lp.remove_signal_handler(libc::SIGINT).unwrap());
    runner.close();
}

// conformance: R2
fn a_ctrl_c_in_the_last_step_interrupts_that_run_not_the_next() {
    // The SIGINT arrives while the main task takes its last step. asyncio's
    // handler runs at once (a Python signal handler): it cancels the
    // running task, which then ends cancelled, and run() raises
    // KeyboardInterrupt. tulip's handler runs on the loop, which stopped
    // before it polled the wake-up pipe again: the byte stayed there, so
    // run() returned the value and the *next* run() of the runner was
    // cancelled by it at once.
    let mut runner = Runner::new();
    let first: tulip::Result<u32> = runner.run(async {
        // SAFETY: raise() sends SIGINT to this very thread.
        unsafe { libc::raise(libc::SIGINT) };
        Ok(1)
    });
    assert!(matches!(first, Err(Error::Interrupted)), "{first:?}");
    assert!(has_default_disposition(libc::SIGINT));
    let second: tulip::Result<u32> = runner.run(async {
        tulip::sleep(0.05).await?;
        Ok(2)
    });
    assert_eq!(
        second.unwrap(),
        2,
        "a stale Ctrl-C interrupted the next run"
    );
    runner.close();
}

// conformance: R2
/// Only a Ctrl-C turns a cancelled main task into an interrupt: a main
/// task cancelled by the program itself ends `run()` with the cancel, as
/// asyncio's `Runner.run` re-raises `CancelledError` when
/// `_interrupt_count` is 0. And when the Ctrl-C's cancel was caught but
/// another one ended the task (`uncancel()` leaves 1, not 0), it is the
/// cancel too, not `KeyboardInterrupt`.
fn a_cancel_that_is_not_the_ctrl_c_s_is_not_an_interrupt() {
    let res: tulip::Result<()> = tulip::run(async {
        tulip::current_task().unwrap().cancel();
        tulip::sleep(60.0).await
    });
    assert!(res.as_ref().is_err_and(|e| e.is_cancelled()), "{res:?}");
    let sender = sigint_after(&[100]);
    let res: tulip::Result<()> = tulip::run(async {
        // The Ctrl-C's cancel is caught; then the program cancels again.
        if let Err(e) = tulip::sleep(60.0).await {
            assert!(e.is_cancelled());
        }
        tulip::current_task().unwrap().cancel();
        tulip::sleep(60.0).await
    });
    sender.join().unwrap();
    assert!(res.as_ref().is_err_and(|e| e.is_cancelled()), "{res:?}");
    assert!(has_default_disposition(libc::SIGINT));
}

fn main() {
    let cases: [(&str, fn()); 7] = [
        (
            "a_cancel_that_is_not_the_ctrl_c_s_is_not_an_interrupt",
            a_cancel_that_is_not_the_ctrl_c_s_is_not_an_interrupt,
        ),
        (
            "a_ctrl_c_in_the_last_step_interrupts_that_run_not_the_next",
            a_ctrl_c_in_the_last_step_interrupts_that_run_not_the_next,
        ),
        (
            "first_ctrl_c_cancels_the_main_task_and_run_returns_interrupted",
            first_ctrl_c_cancels_the_main_task_and_run_returns_interrupted,
        ),
        (
            "second_ctrl_c_interrupts_a_main_task_that_is_still_unwinding",
            second_ctrl_c_interrupts_a_main_task_that_is_still_unwinding,
        ),
        (
            "a_main_task_that_swallows_the_cancel_returns_its_value",
            a_main_task_that_swallows_the_cancel_returns_its_value,
        ),
        (
            "no_handler_off_the_main_thread",
            no_handler_off_the_main_thread,
        ),
        (
            "a_user_sigint_handler_is_left_alone",
            a_user_sigint_handler_is_left_alone,
        ),
    ];
    // Names given on the command line filter the cases; libtest's own
    // options (and their values, such as `--test-threads 1`) are ignored.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<u64>().is_err())
        .collect();
    let mut passed = 0;
    for (name, case) in cases {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        print!("test {name} ... ");
        case();
        println!("ok");
        passed += 1;
    }
    println!("\ntest result: ok. {passed} passed; 0 failed (runner_sigint, on the main thread)");
}
