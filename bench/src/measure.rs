//! What a child measures: wall time and CPU time (user + system) of the
//! timed part, and the process's peak RSS.
//!
//! CPU time is less sensitive than wall time to other processes taking the
//! core away (the bench machine is shared), and it leaves out time asleep
//! (the 50 ms of the timers case); wall time is what a user waits.

use std::time::Instant;

/// Wall and CPU nanoseconds of one measured span.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    /// Elapsed wall-clock time.
    pub wall_ns: u64,
    /// User + system CPU time of the whole process over the span.
    pub cpu_ns: u64,
}

/// A started measurement.
#[derive(Debug)]
pub struct Clock {
    wall: Instant,
    cpu: u64,
}

impl Clock {
    /// Starts measuring now.
    pub fn start() -> Clock {
        Clock {
            cpu: cpu_ns(),
            wall: Instant::now(),
        }
    }

    /// The span since `start`.
    pub fn stop(&self) -> Span {
        let wall_ns = self.wall.elapsed().as_nanos() as u64;
        Span {
            wall_ns,
            cpu_ns: cpu_ns().saturating_sub(self.cpu),
        }
    }
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage fills the struct we pass; all-zero is a valid rusage.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    }
}

fn tv_ns(tv: libc::timeval) -> u64 {
    tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000
}

/// User + system CPU time of this process so far.
pub fn cpu_ns() -> u64 {
    let ru = rusage();
    tv_ns(ru.ru_utime) + tv_ns(ru.ru_stime)
}

/// This process's peak resident set size, in MiB.
pub fn peak_rss_mib() -> f64 {
    rusage().ru_maxrss as f64 / 1024.0
}
