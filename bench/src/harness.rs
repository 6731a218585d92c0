//! The harness: runs every contender of a case as a child process, round
//! after round, takes the median, and prints the tables.
//!
//! Every contender is a command that prints one line
//! `RESULT key=value key=value ...` on stdout (or `SKIP reason` when it can't
//! run here). tulip, tokio and the floor are this very binary re-run with
//! `--child`; asyncio and uvloop are the Python scripts in `bench/peers/`.
//! Running each measurement in a fresh process keeps the contenders
//! symmetric (no allocator state or warm caches carried from one to the
//! next) and turns a crash or a hang into an "n/a" instead of a dead run.
//!
//! # Method
//! - Round `r` runs each contender once, in an order rotated by `r`, so slow
//!   drifts of the machine (other builds starting, thermal) spread over all
//!   contenders instead of landing on one.
//! - The table shows the median of the rounds and the spread
//!   (`±` half of max − min, as a percentage of the median).
//! - Ratios are always "how many times better tulip is": peer ÷ tulip for
//!   times, tulip ÷ peer for rates. Above 1 means tulip wins.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One metric a case reports (the `RESULT` key, how to show it, which way is better).
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// Key in the `RESULT` line.
    pub key: &'static str,
    /// Column label / unit shown after the number.
    pub unit: &'static str,
    /// True for times and sizes, false for rates.
    pub lower_is_better: bool,
}

impl Metric {
    /// A time or size: lower is better.
    pub const fn lower(key: &'static str, unit: &'static str) -> Metric {
        Metric {
            key,
            unit,
            lower_is_better: true,
        }
    }

    /// A rate: higher is better.
    pub const fn higher(key: &'static str, unit: &'static str) -> Metric {
        Metric {
            key,
            unit,
            lower_is_better: false,
        }
    }
}

/// ns per operation: the unit of the `loop` and `sync` groups.
pub const NS_PER_OP: Metric = Metric {
    key: "ns_per_op",
    unit: "ns/op",
    lower_is_better: true,
};

/// CPU time (user + system) per operation.
pub const CPU_NS_PER_OP: Metric = Metric {
    key: "cpu_ns_per_op",
    unit: "cpu ns/op",
    lower_is_better: true,
};

/// Peak resident set size of the measuring process.
pub const RSS_MIB: Metric = Metric {
    key: "rss_mib",
    unit: "peak RSS MiB",
    lower_is_better: true,
};

/// A goal for tulip in one case.
#[derive(Clone, Debug)]
pub enum Goal {
    /// The primary metric must be at most (lower-is-better) or at least this.
    Absolute(f64),
    /// tulip must be at least this many times better than the named contender.
    Ratio(&'static str, f64),
    /// The same on another metric than the primary one.
    RatioOn(Metric, &'static str, f64),
    /// An absolute bound on another metric than the primary one.
    AbsoluteOn(Metric, f64),
}

/// How to start one contender of one case.
#[derive(Debug)]
pub enum Launch {
    /// Run this argv (the first element is the program).
    Run(Vec<String>),
    /// This contender can't run here; the reason is shown in the table.
    Unavailable(String),
}

/// One contender of one case.
#[derive(Debug)]
pub struct Contender {
    /// Column name: tulip, asyncio, uvloop, tokio, floor, ...
    pub name: String,
    /// How to start it.
    pub launch: Launch,
}

/// One benchmark case: a row of the table.
#[derive(Debug)]
pub struct Case {
    /// Short name (`callbacks`, `lock-contended`, ...).
    pub name: String,
    /// One line saying what is measured.
    pub what: String,
    /// The metric the ratios and goals use.
    pub primary: Metric,
    /// Other metrics shown alongside (latency percentiles, RSS, ...).
    pub extra: Vec<Metric>,
    /// Goals for tulip.
    pub goals: Vec<Goal>,
    /// The contenders, tulip first.
    pub contenders: Vec<Contender>,
    /// Notes printed under the table (what a peer does differently).
    pub notes: Vec<String>,
}

/// The outcome of one contender over all rounds.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Every round's values, by key.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Why there is no number, if there isn't one.
    pub unavailable: Option<String>,
}

impl Outcome {
    /// Median of one key, if measured.
    pub fn median(&self, key: &str) -> Option<f64> {
        self.samples.get(key).and_then(|v| median(v))
    }

    /// Half the range of one key as a fraction of its median.
    pub fn spread(&self, key: &str) -> Option<f64> {
        let v = self.samples.get(key)?;
        let m = median(v)?;
        let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (m > 0.0).then(|| (hi - lo) / 2.0 / m)
    }
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// What one child run printed.
#[derive(Debug, PartialEq)]
pub enum ChildOutput {
    /// `RESULT k=v ...`
    Result(BTreeMap<String, f64>),
    /// `SKIP reason`
    Skip(String),
}

/// Finds the `RESULT`/`SKIP` line in a child's stdout.
pub fn parse_child_output(stdout: &str) -> Option<ChildOutput> {
    for line in stdout.lines().rev() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("RESULT ") {
            let mut map = BTreeMap::new();
            for kv in rest.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    if let Ok(x) = v.parse::<f64>() {
                        map.insert(k.to_string(), x);
                    }
                }
            }
            return Some(ChildOutput::Result(map));
        }
        if let Some(rest) = line.strip_prefix("SKIP") {
            return Some(ChildOutput::Skip(rest.trim().to_string()));
        }
    }
    None
}

/// Options of a whole run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rounds per case (the median is taken over them).
    pub runs: usize,
    /// Per child process, after which it is killed and reported as n/a.
    pub timeout: Duration,
    /// Print each child's command line.
    pub verbose: bool,
}

/// Runs one child with a timeout; returns its stdout or why it failed.
fn run_child(argv: &[String], timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("wait failed: {e}")),
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    match status {
        None => Err(format!("timed out after {:.0} s", timeout.as_secs_f64())),
        // A child that failed after printing its RESULT line (a check or a
        // teardown that raised) has no number to compare either.
        Some(st) if !st.success() => {
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!("exited with {st}: {}", tail.join(" / ")))
        }
        Some(_) => Ok(stdout),
    }
}

/// Runs every contender of `case` for `opts.runs` rounds.
pub fn run_case(case: &Case, opts: &RunOptions) -> Vec<Outcome> {
    let n = case.contenders.len();
    let mut outcomes = vec![Outcome::default(); n];
    for (o, c) in outcomes.iter_mut().zip(&case.contenders) {
        if let Launch::Unavailable(why) = &c.launch {
            o.unavailable = Some(why.clone());
        }
    }
    for round in 0..opts.runs {
        for k in 0..n {
            let i = (k + round) % n;
            let c = &case.contenders[i];
            let Launch::Run(argv) = &c.launch else {
                continue;
            };
            if outcomes[i].unavailable.is_some() {
                continue;
            }
            if opts.verbose {
                eprintln!("  $ {}", argv.join(" "));
            }
            let t0 = Instant::now();
            let res = run_child(argv, opts.timeout);
            let took = t0.elapsed().as_secs_f64();
            match res.map(|s| parse_child_output(&s)) {
                Ok(Some(ChildOutput::Result(map))) => {
                    let shown = map
                        .get(case.primary.key)
                        .map(|v| format!("{} {}", fmt_num(*v), case.primary.unit))
                        .unwrap_or_else(|| "?".into());
                    eprintln!(
                        "  [{}/{}] {:<10} {:<18} {shown}  ({took:.1} s)",
                        round + 1,
                        opts.runs,
                        case.name,
                        c.name
                    );
                    for (k, v) in map {
                        outcomes[i].samples.entry(k).or_default().push(v);
                    }
                }
                Ok(Some(ChildOutput::Skip(why))) => {
                    eprintln!("  {:<10} {:<18} n/a: {why}", case.name, c.name);
                    outcomes[i].unavailable = Some(why);
                }
                Ok(None) => {
                    let why = "printed no RESULT line".to_string();
                    eprintln!("  {:<10} {:<18} n/a: {why}", case.name, c.name);
                    outcomes[i].unavailable = Some(why);
                }
                Err(why) => {
                    eprintln!("  {:<10} {:<18} n/a: {why}", case.name, c.name);
                    outcomes[i].unavailable = Some(why);
                }
            }
        }
    }
    outcomes
}

/// A number with about three significant digits.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// "how many times better tulip is than `peer`" for metric `m`.
pub fn ratio(m: &Metric, tulip: f64, peer: f64) -> f64 {
    if m.lower_is_better {
        peer / tulip
    } else {
        tulip / peer
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

/// The verdict on one goal, one line.
pub fn goal_line(case: &Case, outcomes: &[Outcome], goal: &Goal) -> String {
    let bound = |m: &Metric, g: f64| {
        format!(
            "{} {} {}",
            if m.lower_is_better { "≤" } else { "≥" },
            fmt_num(g),
            m.unit
        )
    };
    let rel = |peer: &str, want: f64| {
        if want < 1.0 {
            format!("within {} of {peer}", fmt_ratio(1.0 / want))
        } else if want == 1.0 {
            format!("at least as good as {peer}")
        } else {
            format!("≥ {} better than {peer}", fmt_ratio(want))
        }
    };
    let (m, what) = match goal {
        Goal::Absolute(g) => (case.primary, bound(&case.primary, *g)),
        Goal::AbsoluteOn(m, g) => (*m, bound(m, *g)),
        Goal::Ratio(peer, want) => (case.primary, rel(peer, *want)),
        Goal::RatioOn(m, peer, want) => (*m, format!("{}: {}", m.unit, rel(peer, *want))),
    };
    let Some(t) = outcomes.first().and_then(|o| o.median(m.key)) else {
        return format!(
            "- {}: goal {what}: not checked (no tulip number)",
            case.name
        );
    };
    match goal {
        Goal::Absolute(g) | Goal::AbsoluteOn(_, g) => {
            let met = if m.lower_is_better { t <= *g } else { t >= *g };
            let by = ratio(&m, t, *g);
            let verdict = if met {
                format!("**met** ({} under budget)", pct(1.0 - 1.0 / by))
            } else {
                format!("**missed** by {}", fmt_ratio(1.0 / by))
            };
            format!(
                "- {}: goal {what}, tulip {} {}: {verdict}",
                case.name,
                fmt_num(t),
                m.unit
            )
        }
        Goal::Ratio(peer, want) | Goal::RatioOn(_, peer, want) => {
            let idx = case.contenders.iter().position(|c| c.name == *peer);
            match idx.and_then(|i| outcomes[i].median(m.key)) {
                None => format!("- {}: goal {what}: not checked ({peer} n/a)", case.name),
                Some(p) => {
                    let r = ratio(&m, t, p);
                    let verdict = if r >= *want {
                        "**met**".to_string()
                    } else {
                        format!("**missed** (short by {})", fmt_ratio(want / r))
                    };
                    format!(
                        "- {}: goal {what}, got {} (tulip {} vs {} {}): {verdict}",
                        case.name,
                        fmt_ratio(r),
                        fmt_num(t),
                        fmt_num(p),
                        m.unit
                    )
                }
            }
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// The Markdown tables of a group: values (median ± spread), then ratios,
/// then goals and n/a reasons.
pub fn markdown(group: &str, cases: &[(Case, Vec<Outcome>)]) -> String {
    let mut s = String::new();
    if cases.is_empty() {
        return s;
    }
    // Columns: the union of contender names, in first-seen order.
    let mut cols: Vec<String> = Vec::new();
    for (c, _) in cases {
        for k in &c.contenders {
            if !cols.contains(&k.name) {
                cols.push(k.name.clone());
            }
        }
    }
    let _ = writeln!(s, "### {group}\n");
    // Values.
    let _ = write!(s, "| case | unit |");
    for c in &cols {
        let _ = write!(s, " {c} |");
    }
    let _ = writeln!(s);
    let _ = write!(s, "|---|---|");
    for _ in &cols {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    for (case, outs) in cases {
        for m in std::iter::once(&case.primary).chain(&case.extra) {
            let _ = write!(s, "| {} | {} |", case.name, m.unit);
            for col in &cols {
                let cell = match case.contenders.iter().position(|k| &k.name == col) {
                    None => "".to_string(),
                    Some(i) => match (outs[i].median(m.key), &outs[i].unavailable) {
                        (Some(v), _) => match outs[i].spread(m.key) {
                            Some(sp) if sp >= 0.005 => format!("{} ±{}", fmt_num(v), pct(sp)),
                            _ => fmt_num(v),
                        },
                        (None, Some(_)) => "n/a".to_string(),
                        (None, None) => "–".to_string(),
                    },
                };
                let _ = write!(s, " {cell} |");
            }
            let _ = writeln!(s);
        }
    }
    // Ratios.
    let peers: Vec<&String> = cols.iter().skip(1).collect();
    if !peers.is_empty() {
        let _ = writeln!(
            s,
            "\nRatios: how many times better {} is (above 1: {} wins).\n",
            cols[0], cols[0]
        );
        let _ = write!(s, "| case |");
        for p in &peers {
            let _ = write!(s, " vs {p} |");
        }
        let _ = writeln!(s);
        let _ = write!(s, "|---|");
        for _ in &peers {
            let _ = write!(s, "---:|");
        }
        let _ = writeln!(s);
        for (case, outs) in cases {
            let m = &case.primary;
            let t = outs.first().and_then(|o| o.median(m.key));
            let _ = write!(s, "| {} |", case.name);
            for p in &peers {
                let cell = match case.contenders.iter().position(|k| &k.name == *p) {
                    None => "".to_string(),
                    Some(i) => match (t, outs[i].median(m.key)) {
                        (Some(t), Some(v)) => fmt_ratio(ratio(m, t, v)),
                        _ => "n/a".to_string(),
                    },
                };
                let _ = write!(s, " {cell} |");
            }
            let _ = writeln!(s);
        }
    }
    // Goals.
    let goals: Vec<String> = cases
        .iter()
        .flat_map(|(c, o)| c.goals.iter().map(move |g| goal_line(c, o, g)))
        .collect();
    if !goals.is_empty() {
        let _ = writeln!(s, "\nGoals:\n");
        for g in goals {
            let _ = writeln!(s, "{g}");
        }
    }
    // What each case measures, notes, and why something is n/a.
    let _ = writeln!(s, "\nCases:\n");
    for (case, outs) in cases {
        let _ = writeln!(s, "- **{}**: {}", case.name, case.what);
        for n in &case.notes {
            let _ = writeln!(s, "  - {n}");
        }
        for (k, o) in case.contenders.iter().zip(outs) {
            if let Some(why) = &o.unavailable {
                let _ = writeln!(s, "  - {} n/a: {why}", k.name);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn parses_result_and_skip_lines() {
        let out = "noise\nRESULT ns_per_op=12.5 ops=1000000 junk\n";
        let Some(ChildOutput::Result(m)) = parse_child_output(out) else {
            panic!("no result");
        };
        assert_eq!(m["ns_per_op"], 12.5);
        assert_eq!(m["ops"], 1e6);
        assert_eq!(
            parse_child_output("SKIP uvloop is not installed\n"),
            Some(ChildOutput::Skip("uvloop is not installed".into()))
        );
        assert_eq!(parse_child_output("nothing"), None);
    }

    #[test]
    fn ratios_point_the_same_way_for_times_and_rates() {
        assert_eq!(ratio(&NS_PER_OP, 10.0, 20.0), 2.0);
        let rate = Metric {
            key: "rps",
            unit: "req/s",
            lower_is_better: false,
        };
        assert_eq!(ratio(&rate, 200.0, 100.0), 2.0);
    }

    #[test]
    fn a_failed_child_is_an_error_even_with_a_result_line() {
        let argv: Vec<String> = ["sh", "-c", "echo RESULT ns_per_op=1; exit 1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(run_child(&argv, Duration::from_secs(10)).is_err());
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_panic() {
        let r = run_child(
            &["/nonexistent/program".to_string()],
            Duration::from_secs(1),
        );
        assert!(r.is_err());
    }
}
