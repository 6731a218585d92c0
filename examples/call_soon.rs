//! S2.13 (seed 002, "call_soon"): two callbacks scheduled with `call_soon`,
//! the second one stops the loop; `run_forever` since there is no coroutine.
//!
//! ```text
//! 预计消耗时间 5 s
//! 时间消耗完毕
//! 总共耗时:0.0010013580322265625
//! ```

use std::time::Instant;

use tulip::EventLoop;

fn callback(sleep_times: i32) {
    println!("预计消耗时间 {sleep_times} s");
}

fn stoploop(lp: &EventLoop) {
    println!("时间消耗完毕");
    lp.stop();
}

fn main() -> tulip::Result<()> {
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    // Runs callback at once...
    let _ = lp.call_soon(|| callback(5))?;
    // ...and stoploop right after it.
    let l = lp.clone();
    let _ = lp.call_soon(move || stoploop(&l))?;
    // run_forever: there is no coroutine to run until complete.
    lp.run_forever()?;
    println!("总共耗时:{:?}", start_time.elapsed().as_secs_f64());
    Ok(())
}
