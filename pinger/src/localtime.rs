//! Wall-clock timestamps in local time, formatted like the seed's
//! `time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())`.
//!
//! The conversion to local time is libc's `localtime_r`, in `unsafe`; the
//! only other `unsafe` in pinger is `sweep`'s exit-at-once `kill`/`waitpid`
//! and `main`'s `sigaction` query for SIGHUP and SIGPIPE reset.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down local time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime {
    /// Full year, e.g. 2024.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 60 (leap second).
    pub second: u8,
}

impl LocalTime {
    /// The current local time.
    pub fn now() -> LocalTime {
        LocalTime::from_system_time(SystemTime::now())
    }

    /// Converts a `SystemTime` to local time (times before 1970 clamp to 1970).
    pub fn from_system_time(t: SystemTime) -> LocalTime {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let secs = libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX);
        // SAFETY: `tm` is plain old data, so all-zero is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call and not aliased;
        // `localtime_r` is the re-entrant variant and writes only into `tm`.
        let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
        if !ok {
            // Out of range for the C library: fall back to the epoch.
            return LocalTime::from_ymd_hms(1970, 1, 1, 0, 0, 0);
        }
        LocalTime::from_ymd_hms(
            tm.tm_year + 1900,
            (tm.tm_mon + 1) as u8,
            tm.tm_mday as u8,
            tm.tm_hour as u8,
            tm.tm_min as u8,
            tm.tm_sec as u8,
        )
    }

    /// Builds a time from its parts (not validated; for tests and fixed data).
    pub fn from_ymd_hms(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Self {
        LocalTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }
}

impl fmt::Display for LocalTime {
    /// `YYYY-mm-dd HH:MM:SS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_strftime() {
        let t = LocalTime::from_ymd_hms(2024, 3, 7, 9, 5, 1);
        assert_eq!(t.to_string(), "2024-03-07 09:05:01");
    }

    #[test]
    fn now_is_plausible() {
        let t = LocalTime::now();
        assert!(t.year >= 2024, "{t}");
        assert!((1..=12).contains(&t.month));
        assert_eq!(t.to_string().len(), 19);
    }
}
