//! S3.13 (seed 003, `loop.time()`): print the date and time every second
//! for 5 seconds, timed with the loop's own monotonic clock.
//!
//! ```python
//! async def display_date():
//!     loop = asyncio.get_running_loop()
//!     end_time = loop.time() + 5.0
//!     while True:
//!         print(datetime.datetime.now())
//!         if (loop.time() + 1.0) >= end_time:
//!             break
//!         await asyncio.sleep(1)
//!
//! asyncio.run(display_date())
//! ```
//!
//! Prints five lines like `2024-05-01 14:00:29.123456`, one a second.

use std::time::{SystemTime, UNIX_EPOCH};

/// `datetime.datetime.now()` as `str()` prints it: local time, microseconds.
fn now() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    let secs = since_epoch.as_secs() as libc::time_t;
    // SAFETY: `libc::tm` is plain old data (integers and a nullable
    // pointer), for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call;
    // localtime_r (the re-entrant form) writes only into `tm`.
    unsafe { libc::localtime_r(&secs, &mut tm) };
    let micros = since_epoch.subsec_micros();
    let date = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    // Python leaves out a zero microsecond part.
    if micros == 0 {
        date
    } else {
        format!("{date}.{micros:06}")
    }
}

async fn display_date() -> tulip::Result<()> {
    let lp = tulip::get_running_loop()?;
    let end_time = lp.time() + 5.0;
    loop {
        println!("{}", now());
        if lp.time() + 1.0 >= end_time {
            break;
        }
        tulip::sleep(1.0).await?;
    }
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(display_date())
}
