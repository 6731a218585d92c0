//! `time.strftime('%X')` for the examples: the wall-clock time, HH:MM:SS.
//! Shared with `#[path = "support/clock.rs"] mod clock;`.
#![allow(dead_code)]

/// The local time now, as `HH:MM:SS`.
pub fn now_x() -> String {
    // SAFETY: time(NULL) only returns the current time.
    let t = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: an all-zero tm is a valid out-value for localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    unsafe { libc::localtime_r(&t, &mut tm) };
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// The UTC time now, as `HH:MM:SS` (no time-zone lookup).
pub fn now_x_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}
