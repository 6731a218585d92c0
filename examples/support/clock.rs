//! `time.strftime('%X')` for the examples: the local wall-clock time, HH:MM:SS.

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
