//! S2.16 (seed 002, "call_soon_threadsafe"): the thread-safe `call_soon`,
//! used from another thread.
//!
//! The seed only describes it ("used like call_soon, but when threads are
//! involved"), so this port writes the program the S2.13 pattern implies: a
//! real worker thread waits 1 s (blocking, as threads may), then hands both
//! callbacks to the loop with `call_soon_threadsafe`, which wakes the loop
//! from its poll. The loop thread runs them in order.
//!
//! ```python
//! def worker(loop):
//!     time.sleep(1)
//!     loop.call_soon_threadsafe(callback, 1)
//!     loop.call_soon_threadsafe(stoploop, loop)
//!
//! threading.Thread(target=worker, args=(loop,)).start()
//! loop.run_forever()
//! ```
//!
//! ```text
//! 预计消耗时间 1 s
//! 时间消耗完毕
//! 总共耗时:1.0012149810791016
//! ```

use std::time::{Duration, Instant};

use tulip::LoopHandle;

fn callback(sleep_times: i32) {
    println!("预计消耗时间 {sleep_times} s");
}

fn stoploop() {
    println!("时间消耗完毕");
    // The callback runs on the loop's thread, where the loop is running.
    tulip::get_running_loop()
        .expect("called on the loop")
        .stop();
}

fn worker(lp: LoopHandle) -> tulip::Result<()> {
    std::thread::sleep(Duration::from_secs(1));
    let _ = lp.call_soon_threadsafe(|| callback(1))?;
    let _ = lp.call_soon_threadsafe(stoploop)?;
    Ok(())
}

fn main() -> tulip::Result<()> {
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    // The loop itself stays on this thread; other threads get a LoopHandle.
    let handle = lp.handle();
    let t = std::thread::spawn(move || worker(handle));
    lp.run_forever()?;
    t.join().expect("the worker thread panicked")?;
    println!("总共耗时:{:?}", start_time.elapsed().as_secs_f64());
    Ok(())
}
