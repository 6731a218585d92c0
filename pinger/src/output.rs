//! Writing results: the human table (default), JSON Lines, CSV, the one-line
//! summary and the `-s` statistics.
//!
//! Colour follows the seed: the whole row in `\x1b[1;32;1m` (green) for up and
//! `\x1b[1;31;1m` (red) for down, reset with `\x1b[0m`.
//!
//! # Invariants
//! - Rows are written in the order given; callers pass results sorted by address.
//! - Every string written into JSON goes through [`json_string`], every CSV field
//!   through [`csv_field`]; no number written is NaN or infinite.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::sweep::{Probe, Summary};

/// The seed's colour for a host that answered.
pub const GREEN: &str = "\x1b[1;32;1m";
/// The seed's colour for a host that did not.
pub const RED: &str = "\x1b[1;31;1m";
/// Back to the terminal's default.
pub const RESET: &str = "\x1b[0m";

/// The CSV header line (without the newline).
pub const CSV_HEADER: &str = "ip,up,rtt_ms,time";

/// How results are written on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An aligned table with a header line.
    #[default]
    Table,
    /// JSON Lines: one record per host, then one summary record.
    Json,
    /// CSV with a header line.
    Csv,
}

/// Which hosts get a line of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filter {
    /// Every host.
    #[default]
    All,
    /// Only hosts that answered (`-a`).
    Alive,
    /// Only hosts that did not (`-u`).
    Unreachable,
    /// None (`-q`): only the summary.
    Quiet,
}

impl Filter {
    /// Whether `probe` gets a line.
    pub fn keeps(&self, probe: &Probe) -> bool {
        match self {
            Filter::All => true,
            Filter::Alive => probe.up,
            Filter::Unreachable => !probe.up,
            Filter::Quiet => false,
        }
    }
}

/// Everything that decides what the stdout output looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputOptions {
    /// Table, JSON Lines or CSV.
    pub format: Format,
    /// Which hosts are listed.
    pub filter: Filter,
    /// Whether the table is coloured (see [`use_color`]).
    pub color: bool,
    /// Whether the table shows the RTT column (`-e`).
    pub elapsed: bool,
}

/// Colour only when stdout is a terminal, `NO_COLOR` is unset or empty (as
/// <https://no-color.org> says), and `--no-color` was not given.
pub fn use_color(stdout_is_tty: bool, no_color_env: Option<&OsStr>, no_color_flag: bool) -> bool {
    let env_forbids = no_color_env.is_some_and(|v| !v.is_empty());
    stdout_is_tty && !env_forbids && !no_color_flag
}

// ===== table =====

/// The table's header line (without the newline).
pub fn table_header(elapsed: bool) -> String {
    let mut line = format!("{:<19}  {:<15}  {:<5}", "TIME", "ADDRESS", "STATE");
    if elapsed {
        line.push_str("  RTT");
    }
    line.trim_end().to_string()
}

/// One table row (without the newline), coloured if `color`.
pub fn table_row(probe: &Probe, color: bool, elapsed: bool) -> String {
    let state = if probe.up { "up" } else { "down" };
    let mut row = format!("{:<19}  {:<15}  {:<5}", probe.time, probe.ip, state);
    if elapsed {
        match probe.rtt_ms {
            Some(ms) => write!(row, "  {ms:.3} ms").expect("writing to a String"),
            None => row.push_str("  -"),
        }
    }
    let row = row.trim_end();
    if color {
        let code = if probe.up { GREEN } else { RED };
        format!("{code}{row}{RESET}")
    } else {
        row.to_string()
    }
}

// ===== JSON Lines =====

/// `s` as a JSON string literal, quotes included: `"`, `\` and control
/// characters escaped.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                write!(out, "\\u{:04x}", u32::from(c)).expect("writing to a String");
            }
            // U+2028/2029 are valid JSON but break JavaScript line parsing.
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number for `v`, or `null` when absent or not finite.
fn json_number(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "null".into(),
    }
}

/// One host's JSON record (without the newline):
/// `{"ip":"10.0.0.1","up":true,"rtt_ms":0.045,"time":"2024-03-07 09:05:01"}`.
pub fn json_record(probe: &Probe) -> String {
    format!(
        "{{\"ip\":{},\"up\":{},\"rtt_ms\":{},\"time\":{}}}",
        json_string(&probe.ip.to_string()),
        probe.up,
        json_number(probe.rtt_ms, 3),
        json_string(&probe.time.to_string()),
    )
}

/// The closing JSON record (without the newline):
/// `{"summary":{"addresses":254,"up":12,"down":242,"elapsed_s":1.042,"targets":254,"interrupted":false}}`.
/// `addresses` counts the hosts decided, `targets` those the sweep was
/// given; they differ only when `interrupted`, which a consumer of stdout
/// alone could not tell otherwise.
pub fn json_summary(summary: &Summary) -> String {
    format!(
        "{{\"summary\":{{\"addresses\":{},\"up\":{},\"down\":{},\"elapsed_s\":{},\
         \"targets\":{},\"interrupted\":{}}}}}",
        summary.addresses,
        summary.up,
        summary.down,
        json_number(Some(summary.elapsed.as_secs_f64()), 3),
        summary.targets,
        summary.interrupted,
    )
}

// ===== CSV =====

/// `s` as one CSV field (RFC 4180): quoted when it holds a comma, quote, or
/// line break, with quotes doubled.
pub fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// One host's CSV record (without the newline): `10.0.0.1,true,0.045,2024-...`;
/// the RTT field is empty when there is none.
pub fn csv_record(probe: &Probe) -> String {
    let rtt = match probe.rtt_ms {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => String::new(),
    };
    format!(
        "{},{},{},{}",
        csv_field(&probe.ip.to_string()),
        probe.up,
        csv_field(&rtt),
        csv_field(&probe.time.to_string()),
    )
}

// ===== whole outputs =====

/// Writes the stdout part of the results: the listed hosts in the chosen format,
/// and for JSON the summary record.
pub fn write_results(
    out: &mut impl Write,
    results: &[Probe],
    summary: &Summary,
    opts: &OutputOptions,
) -> io::Result<()> {
    let listed = results.iter().filter(|p| opts.filter.keeps(p));
    match opts.format {
        Format::Table => {
            if opts.filter != Filter::Quiet {
                writeln!(out, "{}", table_header(opts.elapsed))?;
            }
            for probe in listed {
                writeln!(out, "{}", table_row(probe, opts.color, opts.elapsed))?;
            }
        }
        Format::Json => {
            for probe in listed {
                writeln!(out, "{}", json_record(probe))?;
            }
            writeln!(out, "{}", json_summary(summary))?;
        }
        Format::Csv => {
            writeln!(out, "{CSV_HEADER}")?;
            for probe in listed {
                writeln!(out, "{}", csv_record(probe))?;
            }
        }
    }
    out.flush()
}

/// The summary for stderr (without the newline):
/// `254 addresses (12 up, 242 down) in 1.04 s` (three decimals below 0.1 s).
pub fn summary_line(summary: &Summary) -> String {
    let noun = if summary.addresses == 1 {
        "address"
    } else {
        "addresses"
    };
    format!(
        "{} {noun} ({} up, {} down) in {} s",
        summary.addresses,
        summary.up,
        summary.down,
        seconds(summary.elapsed)
    )
}

/// Seconds with two decimals, or three below 0.1 s (a small loopback sweep
/// takes a few milliseconds, which two decimals would show as `0.00`).
fn seconds(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 0.1 {
        format!("{s:.3}")
    } else {
        format!("{s:.2}")
    }
}

/// The `-s` statistics block for stderr, in the spirit of fping's, one fact a
/// line, ending with a newline.
pub fn stats_block(summary: &Summary) -> String {
    let mut s = String::new();
    let mut line = |value: String, what: &str| {
        writeln!(s, " {value:>10} {what}").expect("writing to a String");
    };
    line(summary.targets.to_string(), "targets");
    if summary.interrupted {
        line(
            summary.addresses.to_string(),
            "decided before the interruption",
        );
    }
    line(summary.up.to_string(), "alive");
    line(summary.down.to_string(), "unreachable");
    line(summary.attempts.to_string(), "ping runs (retries included)");
    if let Some(rtt) = summary.rtt {
        line(format!("{:.3} ms", rtt.min_ms), "(min round trip time)");
        line(format!("{:.3} ms", rtt.avg_ms), "(avg round trip time)");
        line(format!("{:.3} ms", rtt.max_ms), "(max round trip time)");
    }
    line(
        format!("{:.3} s", summary.elapsed.as_secs_f64()),
        "(elapsed real time)",
    );
    s
}
