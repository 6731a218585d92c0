//! The one error type of pinger, and how each error maps to an exit code.
//!
//! Messages are lowercase, say what went wrong, and say what to do about it.
//!
//! # Invariants
//! - Every variant is either an argument error (exit [`EXIT_INVALID_ARGS`]) or a
//!   system failure (exit [`EXIT_SYSTEM_FAILURE`]); [`Error::exit_code`] is the
//!   only place that decides which.
//! - A message quotes its cause, so the cause is never also the `source()`
//!   (a chain printer would show its text twice).

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Exit code: every host answered (or `--exit-zero-if-any-up` and one did).
pub const EXIT_ALL_UP: i32 = 0;
/// Exit code: at least one host did not answer.
pub const EXIT_SOME_DOWN: i32 = 1;
/// Exit code: invalid arguments (bad option, bad target, too many hosts).
pub const EXIT_INVALID_ARGS: i32 = 3;
/// Exit code: system failure (`ping` missing or unable to send, spawn
/// failed, unreadable file).
pub const EXIT_SYSTEM_FAILURE: i32 = 4;
/// Exit code: the sweep was interrupted by Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code: the sweep was stopped by SIGTERM (128 + SIGTERM), as `kill`
/// or `timeout` send it.
pub const EXIT_TERMINATED: i32 = 143;

/// The exit code for a sweep stopped by signal `signo`: the shell's 128 + n.
pub fn exit_code_for_signal(signo: i32) -> i32 {
    128 + signo
}

/// Everything that can go wrong in pinger.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A target was empty or only whitespace.
    EmptyTarget,
    /// A target is not an IPv4 address, range or CIDR.
    InvalidTarget {
        /// The text as given.
        input: String,
        /// What exactly is wrong with it, lowercase, no trailing period.
        reason: String,
    },
    /// A target is an IPv6 address or network.
    Ipv6 {
        /// The text as given.
        input: String,
    },
    /// A target looks like a hostname.
    Hostname {
        /// The text as given.
        input: String,
    },
    /// A range whose start comes after its end.
    ReversedRange {
        /// The text as given.
        input: String,
        /// The first address written.
        start: Ipv4Addr,
        /// The last address written.
        end: Ipv4Addr,
    },
    /// A `/0` network was given without the explicit allow flag.
    ZeroPrefix {
        /// The text as given.
        input: String,
    },
    /// The targets expand to more hosts than the limit allows.
    TooManyHosts {
        /// How many distinct hosts the targets expand to.
        count: u64,
        /// The limit in force.
        max: u64,
    },
    /// A line of a target file is invalid.
    InFile {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        source: Box<Error>,
    },
    /// A target file contains no target at all.
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// A target file could not be read.
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The `ping` program could not be found.
    PingNotFound,
    /// `ping` could not be started.
    Spawn {
        /// The address it was meant to probe.
        ip: Ipv4Addr,
        /// Why.
        source: io::Error,
    },
    /// `ping` cannot send at all (no raw socket and no ping socket for this
    /// user, see [`crate::ping::cannot_send`]): no host could be probed.
    PingCannotSend {
        /// The `ping` that was run.
        program: PathBuf,
        /// What it said on stderr.
        line: String,
    },
    /// Writing the results failed.
    Output(io::Error),
    /// The event loop failed, or (`Cancelled`) a probe was cancelled.
    EventLoop(tulip::Error),
}

impl Error {
    /// The process exit code for this error, following fping: 3 for invalid
    /// arguments, 4 for system failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::EmptyTarget
            | Error::InvalidTarget { .. }
            | Error::Ipv6 { .. }
            | Error::Hostname { .. }
            | Error::ReversedRange { .. }
            | Error::ZeroPrefix { .. }
            | Error::TooManyHosts { .. }
            | Error::InFile { .. }
            | Error::EmptyFile { .. } => EXIT_INVALID_ARGS,
            Error::ReadFile { .. }
            | Error::PingNotFound
            | Error::Spawn { .. }
            | Error::PingCannotSend { .. }
            | Error::Output(_)
            | Error::EventLoop(_) => EXIT_SYSTEM_FAILURE,
        }
    }

    /// True for the cancellation of a probe (an internal signal, never
    /// shown to the user).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::EventLoop(e) if e.is_cancelled())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EmptyTarget => write!(
                f,
                "empty target: give an ipv4 address, a range or a cidr, like 192.168.1.0/24"
            ),
            Error::InvalidTarget { input, reason } => write!(
                f,
                "invalid target `{input}`: {reason}; expected an ipv4 address (10.0.0.1), \
                 a range (10.0.0.1-10.0.0.50 or 10.0.0.1-50) or a cidr (10.0.0.0/24)"
            ),
            Error::Ipv6 { input } => write!(
                f,
                "`{input}` is ipv6, which pinger does not support; give an ipv4 address, \
                 range or cidr"
            ),
            Error::Hostname { input } => write!(
                f,
                "`{input}` looks like a hostname; pinger takes only ipv4 addresses, ranges \
                 and cidrs, so resolve it first (for example with `getent hosts {input}`)"
            ),
            Error::ReversedRange { input, start, end } => write!(
                f,
                "range `{input}` is reversed: {start} comes after {end}; write it as {end}-{start}"
            ),
            Error::ZeroPrefix { input } => write!(
                f,
                "`{input}` would sweep the whole ipv4 internet; pass --allow-zero-prefix \
                 (and a --max-hosts large enough) if you really mean it"
            ),
            Error::TooManyHosts { count, max } => write!(
                f,
                "targets expand to {count} hosts, more than the limit of {max}; narrow the \
                 targets or raise the limit with --max-hosts {count}"
            ),
            Error::InFile { path, line, source } => {
                write!(f, "{}, line {line}: {source}", path.display())
            }
            Error::EmptyFile { path } => write!(
                f,
                "target file `{}` has no targets; put one address, range or cidr per line \
                 (`#` starts a comment)",
                path.display()
            ),
            Error::ReadFile { path, source } => write!(
                f,
                "cannot read target file `{}`: {source}; check the path and its permissions",
                path.display()
            ),
            Error::PingNotFound => write!(
                f,
                "`ping` was not found in PATH; install it (on debian or ubuntu: \
                 `apt-get install iputils-ping`)"
            ),
            Error::Spawn { ip, source } => write!(
                f,
                "cannot start `ping` for {ip}: {source}; check that ping is executable and \
                 that the process and open-file limits (`ulimit -u`, `ulimit -n`) are not \
                 exhausted"
            ),
            Error::PingCannotSend { program, line } => write!(
                f,
                "`ping` cannot send echo requests here, so no host was probed \
                 (it said `{line}`); run pinger as root (in a container, one started with \
                 `--cap-add NET_RAW`), give ping the capability \
                 (`sudo setcap cap_net_raw+p {}`), or let your group use ping sockets \
                 (`sudo sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`)",
                program.display()
            ),
            Error::Output(source) => write!(
                f,
                "cannot write results: {source}; check that standard output can still be \
                 written to (a full disk, a closed terminal)"
            ),
            Error::EventLoop(source) => write!(
                f,
                "event loop failure: {source}; run pinger again, and report it as a bug if it \
                 happens again"
            ),
        }
    }
}

/// No `source()`: every message already quotes its cause (pinger prints
/// `{err}` alone, and the cause is what makes it actionable), and a cause
/// that is also the source is shown twice by a chain printer (anyhow's
/// `{:#}`). The cause is still in the variant's `source` field.
impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync() {
        assert_send_sync::<Error>();
    }

    /// The texts an error-chain printer (anyhow's `{:#}`) shows for `e`.
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut texts = vec![e.to_string()];
        let mut cause = e.source();
        while let Some(c) = cause {
            texts.push(c.to_string());
            cause = c.source();
        }
        texts
    }

    /// Each message already quotes its cause (pinger prints `{err}` alone,
    /// and the cause is what makes it actionable), so the cause is not also
    /// its `source()`: a chain printer would show that text twice.
    #[test]
    fn no_text_appears_twice_in_a_source_chain() {
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        let errors = [
            Error::InFile {
                path: "hosts.txt".into(),
                line: 3,
                source: Box::new(Error::Hostname {
                    input: "router".into(),
                }),
            },
            Error::ReadFile {
                path: "hosts.txt".into(),
                source: enoent(),
            },
            Error::Spawn {
                ip: Ipv4Addr::LOCALHOST,
                source: io::Error::from_raw_os_error(libc::EAGAIN),
            },
            Error::Output(io::Error::from_raw_os_error(libc::ENOSPC)),
            Error::EventLoop(tulip::Error::from(enoent())),
            Error::EventLoop(tulip::Error::Closed),
        ];
        for e in &errors {
            let texts = chain(e);
            for (i, later) in texts.iter().enumerate().skip(1) {
                for earlier in &texts[..i] {
                    assert!(
                        !earlier.contains(later.as_str()),
                        "`{later}` is printed twice in the chain {texts:?}"
                    );
                }
            }
        }
    }
}
