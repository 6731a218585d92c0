//! Command-line options, spelled as fping spells them where fping has them.
//!
//! Usage errors from clap exit with 3 (fping's "invalid arguments"), not clap's
//! default 2; see [`clap_exit_code`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

use crate::error::{Error, EXIT_ALL_UP, EXIT_INVALID_ARGS};
use crate::output::{Filter, Format};
use crate::ping::{PingParams, MAX_TIMEOUT_MS};
use crate::sweep::{default_spawn_threads, SweepConfig, DEFAULT_CONCURRENCY};
use crate::targets::{
    expand_hosts, parse_target, read_target_file, ExpandOptions, Hosts, Target, DEFAULT_MAX_HOSTS,
    DEFAULT_TARGET,
};

/// Shown at the end of `--help`.
const AFTER_HELP: &str = "\
Targets:
  10.0.0.7              a single address
  10.0.0.1-10.0.0.50    a range, both ends included (short form: 10.0.0.1-50)
  192.168.31.0/24       a network; network and broadcast addresses are left out
                        below /31, as `fping -g` does
  With no target, pinger sweeps 127.0.0.0/24 (loopback).

Exit codes:
  0    every host answered (or --exit-zero-if-any-up and at least one did)
  1    at least one host did not answer
  3    invalid arguments (bad option, bad target, too many hosts)
  4    system failure (ping missing, cannot start ping, ping cannot send,
       unreadable target file)
  130  interrupted by Ctrl-C (SIGINT)
  143  stopped by SIGTERM (kill, timeout)
  141  killed by SIGPIPE (the reader of stdout went away, as with `| head`)
  129  stopped by SIGHUP (terminal or ssh session closed; not under nohup)";

/// Sweep IPv4 hosts with ping, many at once, on the tulip event loop.
#[derive(Debug, Clone, Parser)]
#[command(name = "pinger", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Addresses, ranges (a.b.c.d-e.f.g.h) or networks (a.b.c.d/n).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Read targets from FILE (`-`: standard input), one per line (its
    /// first word, as fping); `#` starts a comment (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Echo requests sent to each host.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,

    /// Time to wait for a reply, in milliseconds (ping -W, in seconds).
    #[arg(short = 't', long, default_value_t = 1000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_MS))]
    pub timeout: u64,

    /// Extra attempts for a host that did not answer.
    #[arg(short = 'r', long = "retry", default_value_t = 0, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retry: u32,

    /// Minimum gap between starting two probes, in milliseconds (at most
    /// ten minutes, as the timeout).
    #[arg(short = 'i', long, default_value_t = 0, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(0..=MAX_TIMEOUT_MS))]
    pub interval: u64,

    /// List only the hosts that answered.
    #[arg(short = 'a', long, conflicts_with = "unreach")]
    pub alive: bool,

    /// List only the hosts that did not answer.
    #[arg(short = 'u', long)]
    pub unreach: bool,

    /// List no host; print only the summary (with -a or -u, their list
    /// is still printed, as fping's `-aq`).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Print statistics on stderr at the end.
    #[arg(short = 's', long)]
    pub stats: bool,

    /// Show each host's round-trip time.
    #[arg(short = 'e', long)]
    pub elapsed: bool,

    /// Most probes in flight at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N",
          value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Threads that start the `ping` children (0: the event loop's own thread).
    #[arg(long, default_value_t = default_spawn_threads(), value_name = "N",
          value_parser = parse_spawn_threads)]
    pub spawn_threads: usize,

    /// Write JSON Lines: one record per host, then a summary record.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,

    /// Write CSV with a header line.
    #[arg(long)]
    pub csv: bool,

    /// Refuse sweeps larger than N hosts.
    #[arg(long, default_value_t = DEFAULT_MAX_HOSTS, value_name = "N")]
    pub max_hosts: u64,

    /// Accept a /0 network (the whole IPv4 internet).
    #[arg(long)]
    pub allow_zero_prefix: bool,

    /// Exit 0 when at least one host answered, even if others did not.
    #[arg(long)]
    pub exit_zero_if_any_up: bool,

    /// Never colour the output (NO_COLOR in the environment does the same).
    #[arg(long)]
    pub no_color: bool,
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a positive whole number")),
    }
}

fn parse_spawn_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_SPAWN_THREADS => Ok(n),
        _ => Err(format!(
            "`{s}` is not a whole number from 0 to {MAX_SPAWN_THREADS}"
        )),
    }
}

/// The most threads `--spawn-threads` accepts.
pub const MAX_SPAWN_THREADS: usize = 64;

/// Parses argv (program name first).
pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// The exit code for a clap error: 0 for `--help`/`--version`, otherwise 3.
pub fn clap_exit_code(err: &clap::Error) -> i32 {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_ALL_UP,
        _ => EXIT_INVALID_ARGS,
    }
}

/// The hosts to sweep, and whether they are the default loopback sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Sorted, distinct addresses, not written out.
    pub hosts: Hosts,
    /// True when no target was given and [`DEFAULT_TARGET`] is swept.
    pub defaulted: bool,
}

impl Cli {
    /// Parses every positional target and target file, then expands them.
    pub fn selection(&self) -> Result<Selection, Error> {
        let mut targets: Vec<Target> = Vec::new();
        for t in &self.targets {
            targets.push(parse_target(t)?);
        }
        for path in &self.files {
            targets.extend(read_target_file(path)?);
        }
        let defaulted = targets.is_empty();
        if defaulted {
            targets.push(parse_target(DEFAULT_TARGET)?);
        }
        let opts = ExpandOptions {
            max_hosts: self.max_hosts,
            allow_zero_prefix: self.allow_zero_prefix,
        };
        Ok(Selection {
            hosts: expand_hosts(&targets, &opts)?,
            defaulted,
        })
    }

    /// How each `ping` runs.
    pub fn ping_params(&self) -> PingParams {
        PingParams {
            count: self.count,
            timeout_ms: self.timeout,
        }
    }

    /// The driver's configuration, given where `ping` is.
    pub fn sweep_config(&self, ping_program: PathBuf) -> SweepConfig {
        SweepConfig {
            ping_program,
            ping: self.ping_params(),
            retries: self.retry,
            interval: Duration::from_millis(self.interval),
            concurrency: self.concurrency,
        }
    }

    /// The output format.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.csv {
            Format::Csv
        } else {
            Format::Table
        }
    }

    /// Which hosts get a line. `-a` and `-u` win over `-q`, as in fping,
    /// where `-q` only turns off the per-host lines that `-a`/`-u` have
    /// already replaced with their list (`fping -aq NET` lists the live
    /// hosts).
    pub fn filter(&self) -> Filter {
        if self.alive {
            Filter::Alive
        } else if self.unreach {
            Filter::Unreachable
        } else if self.quiet {
            Filter::Quiet
        } else {
            Filter::All
        }
    }
}
