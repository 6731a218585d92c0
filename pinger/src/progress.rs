//! The live progress line on stderr, drawn only when stderr is a terminal.
//!
//! # Invariants
//! - When disabled, nothing is ever written.
//! - The line is redrawn in place (`\r` + clear to end of line) and is cleared
//!   by [`Progress::finish`], so it never mixes with the summary.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Fastest redraw rate; faster updates are skipped (the last one always draws).
pub const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Erases the current terminal line and returns to its start.
const CLEAR_LINE: &str = "\r\x1b[K";

/// The progress text: `[ 120/254] 12 up, 108 down, 0.52 s`.
pub fn progress_line(done: usize, total: usize, up: usize, elapsed: Duration) -> String {
    let width = total.to_string().len();
    format!(
        "[{done:>width$}/{total}] {up} up, {} down, {:.2} s",
        done.saturating_sub(up),
        elapsed.as_secs_f64()
    )
}

/// A progress line on stderr.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    total: usize,
    start: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A progress line for `total` hosts, enabled iff stderr is a terminal.
    pub fn new(total: usize) -> Progress {
        Progress::with_enabled(total, std::io::stderr().is_terminal())
    }

    /// A progress line for `total` hosts, explicitly enabled or not.
    pub fn with_enabled(total: usize, enabled: bool) -> Progress {
        Progress {
            enabled,
            total,
            start: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }

    /// Whether anything will be drawn.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Reports `done` hosts decided, `up` of them up; redraws at most every
    /// [`REDRAW_EVERY`], and always for the last host.
    pub fn update(&mut self, done: usize, up: usize) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let due = self
            .last_draw
            .is_none_or(|last| now.duration_since(last) >= REDRAW_EVERY);
        if !due && done < self.total {
            return;
        }
        self.last_draw = Some(now);
        let line = progress_line(done, self.total, up, now.duration_since(self.start));
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a failed write to stderr is not worth an error.
        let _ = write!(err, "{CLEAR_LINE}{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line, if one was drawn.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{CLEAR_LINE}");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
