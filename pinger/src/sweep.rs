//! The sweep driver: probe every host, collect one [`Probe`] per host.
//!
//! This mirrors the seed's `main()`: one `ping` per host, all results gathered,
//! then printed. The shape is fixed here so the real, asynchronous probe can be
//! plugged in without touching targets, parsing or output.
//!
//! # The seam
//! Spawning is behind the [`Prober`] trait. Today the only implementation is
//! [`StdProber`] (blocking `std::process`), driven by [`run_blocking`], which keeps
//! up to `concurrency` children in flight and reaps them oldest first. **It is a
//! stand-in for manual checks only.** The real driver is asynchronous and lives on
//! tulip; it keeps the same inputs and outputs as [`run_blocking`]:
//!
//! ```text
//! async fn run(hosts: &[Ipv4Addr], cfg: &SweepConfig,
//!              on_result: impl FnMut(&Probe)) -> Result<Vec<Probe>, Error>
//!   for each host, as a task:      (a tulip::Semaphore of cfg.concurrency permits;
//!                                   cfg.interval between starts)
//!     let started = LocalTime::now();
//!     let cmd = PingCommand::new(&cfg.ping_program, &cfg.ping, ip);
//!     let stdout = tulip::subprocess spawn of cmd, stdout piped, read to end, wait;
//!     retry while !parse_reply(&stdout).up && attempt <= cfg.retries;
//!     Probe::from_output(started, ip, &stdout, attempts)  → on_result, collect
//!   sort the probes by address (finish_results)
//! ```
//! and adds what only an event loop can do well: Ctrl-C via `add_signal_handler`
//! (stop starting, kill and reap the children, return the partial results), and
//! waiting and retrying on EMFILE/EAGAIN at spawn.
//!
//! # Invariants
//! - Every host yields exactly one [`Probe`], whatever its retries; the results
//!   come back sorted by address.
//! - A host is retried only when it was down, at most `retries` times.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::error::{Error, EXIT_ALL_UP, EXIT_SOME_DOWN};
use crate::localtime::LocalTime;
use crate::ping::{parse_reply, PingCommand, PingParams};

/// How many probes run at once unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// One host's result: the seed's `(current_time, ip, up)` tuple, plus the RTT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Local time at which the host's first probe started (as the seed takes it).
    pub time: LocalTime,
    /// The host.
    pub ip: Ipv4Addr,
    /// Whether it answered (see [`crate::ping::is_up`]).
    pub up: bool,
    /// Round-trip time in milliseconds, if it answered and ping printed one.
    pub rtt_ms: Option<f64>,
    /// How many times `ping` ran for this host (1 + retries used).
    pub attempts: u32,
}

impl Probe {
    /// Builds the result for `ip` from the stdout of its last `ping`.
    pub fn from_output(time: LocalTime, ip: Ipv4Addr, stdout: &[u8], attempts: u32) -> Probe {
        let reply = parse_reply(stdout);
        Probe {
            time,
            ip,
            up: reply.up,
            rtt_ms: reply.rtt_ms,
            attempts,
        }
    }
}

/// Everything the driver needs besides the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// Absolute path of `ping` (see [`crate::ping::resolve_ping`]).
    pub ping_program: PathBuf,
    /// How each probe runs.
    pub ping: PingParams,
    /// Extra attempts for a host that stayed silent (`-r/--retry`).
    pub retries: u32,
    /// Minimum gap between two probe starts (`-i/--interval`).
    pub interval: Duration,
    /// Most probes in flight at once (`--concurrency`), at least 1.
    pub concurrency: usize,
}

/// Minimum, average and maximum round-trip times over the hosts that answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttStats {
    /// Fastest, in milliseconds.
    pub min_ms: f64,
    /// Mean, in milliseconds.
    pub avg_ms: f64,
    /// Slowest, in milliseconds.
    pub max_ms: f64,
}

/// The totals of a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Hosts probed.
    pub addresses: usize,
    /// Hosts that answered.
    pub up: usize,
    /// Hosts that did not.
    pub down: usize,
    /// `ping` runs, retries included.
    pub attempts: u64,
    /// Wall time of the sweep.
    pub elapsed: Duration,
    /// RTT statistics, when at least one host reported an RTT.
    pub rtt: Option<RttStats>,
}

impl Summary {
    /// Totals over `results`.
    pub fn from_results(results: &[Probe], elapsed: Duration) -> Summary {
        let up = results.iter().filter(|p| p.up).count();
        let rtts: Vec<f64> = results.iter().filter_map(|p| p.rtt_ms).collect();
        let rtt = (!rtts.is_empty()).then(|| RttStats {
            min_ms: rtts.iter().copied().fold(f64::INFINITY, f64::min),
            avg_ms: rtts.iter().sum::<f64>() / rtts.len() as f64,
            max_ms: rtts.iter().copied().fold(0.0, f64::max),
        });
        Summary {
            addresses: results.len(),
            up,
            down: results.len() - up,
            attempts: results.iter().map(|p| u64::from(p.attempts)).sum(),
            elapsed,
            rtt,
        }
    }
}

/// The exit code of a finished sweep, as fping: 0 when every host is up, 1 when
/// any is down; with `exit_zero_if_any_up`, 0 as soon as one host is up.
pub fn exit_code(summary: &Summary, exit_zero_if_any_up: bool) -> i32 {
    if summary.down == 0 || (exit_zero_if_any_up && summary.up > 0) {
        EXIT_ALL_UP
    } else {
        EXIT_SOME_DOWN
    }
}

/// Puts results in address order (the order of the output).
pub fn finish_results(results: &mut [Probe]) {
    results.sort_by_key(|p| p.ip);
}

// ===== the seam =====

/// Starts `ping` children and collects their output. **This is the seam** where
/// the tulip-based prober plugs in (see the module docs).
pub trait Prober {
    /// A probe in flight.
    type Running;

    /// Starts one `ping` as described by `cmd`, without waiting for it.
    fn start(&mut self, cmd: &PingCommand) -> Result<Self::Running, Error>;

    /// Waits for a started probe to exit, reaps it, and returns its stdout.
    fn wait(&mut self, running: Self::Running) -> Result<Vec<u8>, Error>;
}

/// Blocking prober over `std::process`. A stand-in for manual checks until the
/// tulip subprocess prober exists; production does this on the event loop.
#[derive(Debug, Default)]
pub struct StdProber;

/// A `ping` child started by [`StdProber`].
#[derive(Debug)]
pub struct StdRunning {
    ip: Ipv4Addr,
    child: Child,
}

impl Prober for StdProber {
    type Running = StdRunning;

    fn start(&mut self, cmd: &PingCommand) -> Result<StdRunning, Error> {
        // The last argument is always the address (see `PingParams::args`).
        let ip = cmd
            .args
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let child = cmd.to_std().spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::PingNotFound,
            _ => Error::Spawn { ip, source },
        })?;
        Ok(StdRunning { ip, child })
    }

    fn wait(&mut self, running: StdRunning) -> Result<Vec<u8>, Error> {
        let ip = running.ip;
        let output = running
            .child
            .wait_with_output()
            .map_err(|source| Error::Spawn { ip, source })?;
        Ok(output.stdout)
    }
}

/// A host waiting to be probed (again).
#[derive(Debug)]
struct Pending {
    ip: Ipv4Addr,
    attempt: u32,
    started: Option<LocalTime>,
}

/// Probes every host through `prober`, at most `cfg.concurrency` at once, calling
/// `on_result` as each host is decided; returns the results sorted by address.
///
/// Blocking stand-in for the async driver: children are reaped oldest first,
/// which is fine because every child ends by its own `-w` deadline.
pub fn run_blocking<P: Prober>(
    prober: &mut P,
    hosts: &[Ipv4Addr],
    cfg: &SweepConfig,
    mut on_result: impl FnMut(&Probe),
) -> Result<Vec<Probe>, Error> {
    let mut queue: VecDeque<Pending> = hosts
        .iter()
        .map(|&ip| Pending {
            ip,
            attempt: 1,
            started: None,
        })
        .collect();
    let mut in_flight: VecDeque<(Pending, P::Running)> = VecDeque::new();
    let mut results = Vec::with_capacity(hosts.len());
    let mut last_start: Option<Instant> = None;
    loop {
        // Fill the window, spacing starts by the interval.
        while in_flight.len() < cfg.concurrency.max(1) {
            let Some(mut next) = queue.pop_front() else {
                break;
            };
            if let Some(prev) = last_start {
                let due = prev + cfg.interval;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            last_start = Some(Instant::now());
            next.started.get_or_insert_with(LocalTime::now);
            let cmd = PingCommand::new(&cfg.ping_program, &cfg.ping, next.ip);
            let running = prober.start(&cmd)?;
            in_flight.push_back((next, running));
        }
        let Some((done, running)) = in_flight.pop_front() else {
            break;
        };
        let stdout = prober.wait(running)?;
        let started = done.started.unwrap_or_else(LocalTime::now);
        let probe = Probe::from_output(started, done.ip, &stdout, done.attempt);
        if !probe.up && done.attempt <= cfg.retries {
            // Silent host with retries left: probe it again later.
            queue.push_back(Pending {
                attempt: done.attempt + 1,
                ..done
            });
            continue;
        }
        on_result(&probe);
        results.push(probe);
    }
    finish_results(&mut results);
    Ok(results)
}
