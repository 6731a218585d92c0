//! S2.15 (seed 002, "call_at"): callbacks scheduled at points of the loop's
//! own clock, `loop.time()`.
//!
//! The seed's listing ends before `run_forever()` and the final print; its
//! output shows both, so they are here.
//!
//! ```text
//! 传入loop.time()时间为: 3989.39 s
//! 传入loop.time()时间为: 3991.39 s
//! 时间消耗完毕
//! 总共耗时:5.002060174942017
//! ```

use std::time::Instant;

use tulip::EventLoop;

fn callback(lp: &EventLoop) {
    println!("传入loop.time()时间为: {:?} s", lp.time());
}

fn stoploop(lp: &EventLoop) {
    println!("时间消耗完毕");
    lp.stop();
}

fn main() -> tulip::Result<()> {
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    // The loop's internal clock.
    let now = lp.time();
    let l = lp.clone();
    let _ = lp.call_at(now + 1.0, move || callback(&l))?;
    let l = lp.clone();
    let _ = lp.call_at(now + 3.0, move || callback(&l))?;
    let l = lp.clone();
    let _ = lp.call_at(now + 5.0, move || stoploop(&l))?;
    lp.run_forever()?;
    println!("总共耗时:{:?}", start_time.elapsed().as_secs_f64());
    Ok(())
}
