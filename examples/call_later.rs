//! S2.14 (seed 002, "call_later"): callbacks scheduled after a delay; the
//! one at 5 s stops the loop.
//!
//! ```text
//! 预计消耗时间 1.0 s
//! 时间消耗完毕
//! 总共耗时:5.002613544464111
//! ```

use std::time::Instant;

use tulip::EventLoop;

fn callback(sleep_times: f64) {
    println!("预计消耗时间 {sleep_times:?} s");
}

fn stoploop(lp: &EventLoop) {
    println!("时间消耗完毕");
    lp.stop();
}

fn main() -> tulip::Result<()> {
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    // After 1 s, callback(1.0).
    let _ = lp.call_later(1.0, || callback(1.0))?;
    // After 5 s, stoploop(loop).
    let l = lp.clone();
    let _ = lp.call_later(5.0, move || stoploop(&l))?;
    lp.run_forever()?;
    println!("总共耗时:{:?}", start_time.elapsed().as_secs_f64());
    Ok(())
}
