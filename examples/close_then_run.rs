//! S2.10 (seed 002, `loop.close()`): a loop runs as often as you like until
//! it is closed; running it after `close()` is an error.
//!
//! ```python
//! loop.run_until_complete(do_some_work(loop, 1))
//! loop.run_until_complete(do_some_work(loop, 3))
//! loop.close()
//! loop.run_until_complete(do_some_work(loop, 3))  # 此处异常
//! ```
//!
//! The last call raises, and the Python script dies with
//! `RuntimeError: Event loop is closed`. This port prints that line to
//! stderr, as the uncaught exception does, and exits with status 1.
//!
//! `do_some_work` calls `loop.stop()` and returns in the same step, so
//! run_until_complete's own stop callback is still queued when the first
//! run ends. CPython 3.11 runs that stale callback in the second run, which
//! then fails with "Event loop stopped before Future completed"; tulip
//! disarms it (see `EventLoop::run_until_complete`), so the second run
//! completes as the tutorial intends.
//!
//! ```text
//! Waiting 1
//! Done
//! Waiting 3
//! Done
//! ```

use tulip::{Error, EventLoop};

async fn do_some_work(lp: EventLoop, x: f64) -> tulip::Result<()> {
    println!("Waiting {x}");
    tulip::sleep(x).await?;
    println!("Done");
    lp.stop();
    Ok(())
}

fn main() {
    let lp = tulip::get_event_loop().expect("a new event loop");
    lp.run_until_complete(do_some_work(lp.clone(), 1.0))
        .expect("first run");
    lp.run_until_complete(do_some_work(lp.clone(), 3.0))
        .expect("second run");
    lp.close().expect("close");
    // 此处异常: the loop is closed.
    match lp.run_until_complete(do_some_work(lp.clone(), 3.0)) {
        Err(Error::Closed) => {
            eprintln!("RuntimeError: Event loop is closed");
            std::process::exit(1);
        }
        other => panic!("running a closed loop gave {other:?}"),
    }
}
