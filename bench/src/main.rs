//! `cargo run --release -p bench -- <group>...`: tulip side by side with
//! CPython asyncio, uvloop, tokio current_thread and the raw floor, in one run.
//!
//! See `bench/README.md` for the groups, the options and the method.

mod floor;
mod harness;
mod hw;
mod loop_group;
mod measure;
mod net_group;
mod net_tulip;
mod spawn_group;
mod spawn_tulip;
mod sweep_group;
mod sync_group;
mod sync_tulip;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::{
    Case, Contender, Goal, Launch, Outcome, RunOptions, CPU_NS_PER_OP, NS_PER_OP, RSS_MIB,
};

const GROUPS: &[&str] = &["loop", "sync", "net", "spawn", "sweep"];

const USAGE: &str = "\
usage: bench [GROUP...] [options]

groups: loop sync net spawn sweep all      (default: loop)

options:
  --runs N        rounds per case; the median is reported (default 5)
  --ops N         operations per case instead of each case's default
  --quick         3 rounds and a tenth of the operations (a smoke run)
  --case A,B      only these cases
  --only A,B      only these contenders (tulip is always kept)
  --timeout SECS  per child process (default 300)
  --md FILE       also write the Markdown report to FILE
  --python EXE    the Python for the asyncio/uvloop peers (default python3)
  --peers DIR     where the peer scripts are (default bench/peers)
  --nice N        run everything at this priority (e.g. -10 on a shared machine; needs root)
  -v              print each child's command line
";

/// Everything the groups need to build their cases.
pub struct Ctx {
    exe: String,
    python: String,
    peers: PathBuf,
    ops: Option<u64>,
    /// Multiplies every case's default ops (0.1 with --quick).
    scale: f64,
}

impl Ctx {
    /// The op count for a case whose default is `default`.
    pub fn ops(&self, default: u64) -> u64 {
        self.ops
            .unwrap_or_else(|| ((default as f64 * self.scale) as u64).max(1))
    }

    /// This binary, re-run as one contender of one case.
    pub fn child(&self, group: &str, case: &str, contender: &str, ops: u64) -> Contender {
        Contender {
            name: contender.to_string(),
            launch: Launch::Run(vec![
                self.exe.clone(),
                "--child".into(),
                group.into(),
                case.into(),
                contender.into(),
                "--ops".into(),
                ops.to_string(),
            ]),
        }
    }

    /// A Python peer script from `bench/peers/`.
    pub fn python(&self, name: &str, script: &str, args: &[String]) -> Contender {
        let path = self.peers.join(script);
        let launch = if !path.exists() {
            Launch::Unavailable(format!("{} is missing", path.display()))
        } else {
            let mut argv = vec![self.python.clone(), path.display().to_string()];
            argv.extend(args.iter().cloned());
            Launch::Run(argv)
        };
        Contender {
            name: name.to_string(),
            launch,
        }
    }
}

fn loop_cases(ctx: &Ctx) -> Vec<Case> {
    loop_group::CASES
        .iter()
        .map(|&(name, default_ops, goal, what)| {
            let ops = ctx.ops(default_ops);
            let py = |kind: &str| {
                ctx.python(
                    kind,
                    "loop_bench.py",
                    &[
                        "--loop".into(),
                        kind.into(),
                        "--case".into(),
                        name.into(),
                        "--ops".into(),
                        ops.to_string(),
                    ],
                )
            };
            let mut notes = Vec::new();
            match name {
                "callbacks" | "chain" => notes.push(
                    "tokio has no callback API: its column is a detached `tokio::spawn` per callback."
                        .to_string(),
                ),
                "timers" => notes.push(
                    "tokio: `tokio_util::time::DelayQueue` of boxed callbacks, insert/remove/poll_expired and call (its timer wheel); \
                     floor: a `BinaryHeap` of deadlines and boxed callbacks, sleeping until the next."
                        .to_string(),
                ),
                "tasks" | "switch" => notes.push(
                    "tokio: `tokio::spawn` + awaiting the `JoinHandle`, `yield_now`; floor: a 100-line \
                     `Rc` executor (VecDeque run queue, no cancellation, no I/O)."
                        .to_string(),
                ),
                _ => {}
            }
            Case {
                name: name.to_string(),
                what: format!("{what} ({} ops)", fmt_count(ops)),
                primary: NS_PER_OP,
                extra: vec![CPU_NS_PER_OP, RSS_MIB],
                goals: vec![
                    Goal::Absolute(goal),
                    Goal::AbsoluteOn(CPU_NS_PER_OP, goal),
                ],
                contenders: vec![
                    ctx.child("loop", name, "tulip", ops),
                    py("asyncio"),
                    py("uvloop"),
                    ctx.child("loop", name, "tokio", ops),
                    ctx.child("loop", name, "floor", ops),
                ],
                notes,
            }
        })
        .collect()
}

/// Fails unless a case counted what it should have: a benchmark that
/// loses work must not report a time.
pub fn check_count(what: &str, got: u64, want: u64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: counted {got}, expected {want}"))
    }
}

fn sync_cases(ctx: &Ctx) -> Vec<Case> {
    sync_group::CASES
        .iter()
        .map(|&(name, default_ops, what)| {
            let ops = ctx.ops(default_ops);
            let py = |kind: &str| {
                ctx.python(
                    kind,
                    "sync_bench.py",
                    &[
                        "--loop".into(),
                        kind.into(),
                        "--case".into(),
                        name.into(),
                        "--ops".into(),
                        ops.to_string(),
                    ],
                )
            };
            let mut tulip = ctx.child("sync", name, "tulip", ops);
            if !sync_tulip::AVAILABLE {
                tulip.launch = Launch::Unavailable(
                    "tulip's Lock/Queue/gather (area B) are not on main yet".into(),
                );
            }
            let notes = match name {
                "lock-uncontended" | "lock-contended" => vec!["tokio: `tokio::sync::Mutex`.".to_string()],
                "queue" => vec!["tokio: `tokio::sync::mpsc::channel(100)`.".to_string()],
                "gather" => vec![
                    "tokio: spawn them all, then await each `JoinHandle` in order (join_all-shaped)."
                        .to_string(),
                ],
                "taskgroup" => vec![
                    "no issue goal. tokio has no task group: a `JoinSet`, every task spawned into it, then `join_next` until empty."
                        .to_string(),
                ],
                _ => vec![],
            };
            Case {
                name: name.to_string(),
                what: format!("{what} ({} ops)", fmt_count(ops)),
                primary: NS_PER_OP,
                extra: vec![CPU_NS_PER_OP, RSS_MIB],
                goals: if name == "taskgroup" {
                    vec![]
                } else {
                    vec![
                        Goal::Ratio("asyncio", 30.0),
                        Goal::Ratio("tokio", 1.0),
                        Goal::RatioOn(CPU_NS_PER_OP, "asyncio", 30.0),
                        Goal::RatioOn(CPU_NS_PER_OP, "tokio", 1.0),
                    ]
                },
                contenders: vec![tulip, py("asyncio"), py("uvloop"), ctx.child("sync", name, "tokio", ops)],
                notes,
            }
        })
        .collect()
}

/// Metrics of the other groups.
const US_PER_PROC: harness::Metric = harness::Metric::lower("us_per_proc", "µs/process");
const CPU_US_PER_PROC: harness::Metric =
    harness::Metric::lower("cpu_us_per_proc", "cpu µs/process (parent only)");
const MB_PER_S: harness::Metric = harness::Metric::higher("mb_per_s", "MB/s");
const MSGS_PER_S: harness::Metric = harness::Metric::higher("msgs_per_s", "msgs/s");
const P50_US: harness::Metric = harness::Metric::lower("p50_us", "p50 µs");
const P99_US: harness::Metric = harness::Metric::lower("p99_us", "p99 µs");
const MEAN_US: harness::Metric = harness::Metric::lower("mean_us", "mean µs");
const WORST_PCT: harness::Metric = harness::Metric::higher("worst_pct", "slowest client %");
const SRV_CPU_US: harness::Metric = harness::Metric::lower("srv_cpu_us", "server cpu µs/msg");
const REQ_PER_S: harness::Metric = harness::Metric::higher("req_per_s", "req/s");
const P50_MS: harness::Metric = harness::Metric::lower("p50_ms", "p50 ms");
const P99_MS: harness::Metric = harness::Metric::lower("p99_ms", "p99 ms");
const WALL_S: harness::Metric = harness::Metric::lower("wall_s", "wall s");

fn spawn_cases(ctx: &Ctx) -> Vec<Case> {
    spawn_group::CASES
        .iter()
        .map(|&(name, default_n, what)| {
            let n = ctx.ops(default_n);
            let py = |kind: &str| {
                ctx.python(
                    kind,
                    "spawn_bench.py",
                    &[
                        "--loop".into(),
                        kind.into(),
                        "--case".into(),
                        name.into(),
                        "--ops".into(),
                        n.to_string(),
                    ],
                )
            };
            let mut tulip = ctx.child("spawn", name, "tulip", n);
            if !spawn_tulip::AVAILABLE {
                tulip.launch = Launch::Unavailable(spawn_tulip::MISSING.into());
            }
            let spawn = name == "spawn";
            Case {
                name: name.to_string(),
                what: if spawn {
                    format!("{} × {what}", fmt_count(n))
                } else {
                    what.replace("100 MiB", &format!("{n} MiB"))
                },
                primary: if spawn { US_PER_PROC } else { MB_PER_S },
                extra: if spawn { vec![CPU_US_PER_PROC] } else { vec![] },
                goals: if spawn {
                    vec![Goal::Ratio("floor", 1.0 / 1.05)]
                } else {
                    vec![]
                },
                contenders: vec![
                    tulip,
                    py("asyncio"),
                    py("uvloop"),
                    ctx.child("spawn", name, "tokio", n),
                    ctx.child("spawn", name, "floor", n),
                ],
                notes: if spawn {
                    vec!["tokio: `tokio::process::Command`; floor: std `Command::spawn` + `wait`, same batches.".into()]
                } else {
                    vec!["floor: std `Command` with a writer thread and a blocking `read_to_end`.".into()]
                },
            }
        })
        .collect()
}

fn sweep_cases(ctx: &Ctx) -> Vec<Case> {
    let contenders = ["pinger", "seed", "fping", "floor"]
        .iter()
        .map(|&who| Contender {
            name: who.to_string(),
            launch: match sweep_group::argv(who, &ctx.python, &ctx.peers) {
                Ok(_) => Launch::Run(vec![
                    ctx.exe.clone(),
                    "--child".into(),
                    "sweep".into(),
                    "all-up".into(),
                    who.into(),
                ]),
                Err(why) => Launch::Unavailable(why),
            },
        })
        .collect();
    let down = ["pinger", "seed", "fping"]
        .iter()
        .map(|&who| Contender {
            name: who.to_string(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            launch: match sweep_group::down_argv(who, "10.213.0.", &ctx.python, &ctx.peers) {
                Ok(_) if unsafe { libc::geteuid() } != 0 => {
                    Launch::Unavailable("needs root / ip netns".into())
                }
                Ok(_) => Launch::Run(vec![
                    ctx.exe.clone(),
                    "--child".into(),
                    "sweep".into(),
                    "mostly-down".into(),
                    who.into(),
                ]),
                Err(why) => Launch::Unavailable(why),
            },
        })
        .collect();
    let mostly_down = Case {
        name: "mostly-down".into(),
        what: "ping sweep of 10.213.X.0/24 in a network namespace (4 hosts up, 250 silent), timeout 1 s"
            .into(),
        primary: WALL_S,
        extra: vec![],
        goals: vec![Goal::Absolute(1.15)],
        contenders: down,
        notes: vec![
            "mostly-down: a fresh namespace per round (veth `v0`/`v1`, `10.213.X.1/24` on `v0`, .10/.77/.254 as /32s on `lo`; \
             set-up not timed), each tool run via `ip netns exec`: `pinger 10.213.X.0/24 -t 1000`, `sweep_seed.py 10.213.X.`, \
             `fping -g 10.213.X.0/24 -t 1000 -r 0 -i 0`. Goal: pinger within 1.15 s wall."
                .into(),
        ],
    };
    vec![Case {
        name: "all-up".into(),
        what: format!("ping sweep of {} (every host answers)", sweep_group::TARGET),
        primary: WALL_S,
        extra: vec![RSS_MIB],
        goals: vec![
            Goal::Ratio("floor", 1.0 / 1.1),
            Goal::Ratio("seed", 1.0),
            Goal::AbsoluteOn(RSS_MIB, 20.0),
        ],
        contenders,
        notes: vec![
            "pinger: `target/release/pinger 127.0.0.0/24`; seed: `peers/sweep_seed.py 127.0.0.` (the seed script, prefix made an argument); \
             fping: `fping -g 127.0.0.0/24 -i 0` (unpaced like pinger; `-i 1`, fping's least, when not root); floor: `sh -c` starting 254 `ping -c 1 -w 1 -W 1` in the background, then `wait`."
                .into(),
            "Peak RSS is wait4's ru_maxrss: the largest process of the tree (the tool itself or one of its pings). Goal: pinger under 20 MiB.".into(),
        ],
    }, mostly_down]
}

/// The echo sizes × concurrencies and the http case.
fn net_cases(ctx: &Ctx) -> Vec<Case> {
    let mut cases = Vec::new();
    let echo_who = [
        "tulip",
        "tulip-streams",
        "asyncio-protocol",
        "asyncio-streams",
        "uvloop-protocol",
        "uvloop-streams",
        "tokio",
        "tokio-256k",
        "floor",
    ];
    let contender = |case: &str, who: &str| -> Contender {
        let mut c = ctx.child("net", case, who, 0);
        if let Err(why) = net_server_argv(ctx, case, who) {
            c.launch = Launch::Unavailable(why);
        }
        c
    };
    for &c in net_group::ECHO_CONCURRENCY {
        for &(size, label) in net_group::ECHO_SIZES {
            let name = format!("echo-{label}-c{c}");
            cases.push(Case {
                what: format!(
                    "{c} blocking clients, each sending {} KiB and reading it back, for {} s",
                    size / 1024,
                    net_group::ECHO_SECONDS
                ),
                primary: MSGS_PER_S,
                extra: vec![P50_US, P99_US, MEAN_US, WORST_PCT, SRV_CPU_US],
                goals: vec![Goal::RatioOn(P50_US, "tokio", 1.0 / 1.1)],
                contenders: echo_who.iter().map(|w| contender(&name, w)).collect(),
                notes: vec![],
                name,
            });
        }
    }
    if let Some(first) = cases.first_mut() {
        first.notes.push(
            "tulip = tulip's Protocol server, tulip-streams = its start_server server; \
             the asyncio and uvloop servers are vmbench's (protocol and streams); \
             tokio = current_thread, a task per connection, reading into 102400 bytes (vmbench's \
             `read(102400)`); tokio-256k = the same server reading into 256 KiB (asyncio's max_size, \
             tulip's read size); floor = raw level-triggered epoll."
                .into(),
        );
        first.notes.push(
            "The client is closed-loop: mean latency = clients / (msgs/s). \
             `slowest client %` is the client with the fewest echoes, as a percentage of the \
             average per client (100 = every connection got its turn); `server cpu µs/msg` is the \
             server process's user + system time over the run, per message."
                .into(),
        );
    }
    let http_who = ["tulip", "asyncio", "uvloop", "tokio", "floor"];
    let wrk_missing = spawn_group::which("wrk").is_none();
    cases.push(Case {
        name: "http".into(),
        what: format!(
            "a keep-alive HTTP/1.1 responder under `wrk {}`",
            net_group::WRK_ARGS.join(" ")
        ),
        primary: REQ_PER_S,
        extra: vec![P50_MS, P99_MS],
        goals: vec![Goal::Ratio("tokio", 1.0), Goal::Ratio("uvloop", 1.4)],
        contenders: http_who
            .iter()
            .map(|w| {
                let mut c = contender("http", w);
                if wrk_missing {
                    c.launch = Launch::Unavailable("wrk is not installed (bench/setup.sh)".into());
                }
                c
            })
            .collect(),
        notes: vec![
            "tulip: examples/http_server.rs; asyncio, uvloop: the same responder on asyncio streams \
             (peers/net_servers.py); tokio: current_thread, a task per connection; floor: raw epoll, \
             the ceiling of what wrk and the kernel allow here. wrk and the server share the 2 cores."
                .into(),
        ],
    });
    cases
}

/// The server command of a `net` contender.
fn net_server_argv(ctx: &Ctx, case: &str, who: &str) -> Result<Vec<String>, String> {
    let kind = if case == "http" { "http" } else { "echo" };
    let me = |what: &str| {
        Ok(vec![
            ctx.exe.clone(),
            "--serve".into(),
            kind.into(),
            what.into(),
        ])
    };
    let py = |lp: &str, k: &str| {
        let script = ctx.peers.join("net_servers.py");
        Ok(vec![
            ctx.python.clone(),
            script.display().to_string(),
            "--loop".into(),
            lp.into(),
            "--kind".into(),
            k.into(),
        ])
    };
    match (kind, who) {
        (_, "tokio") => me("tokio"),
        ("echo", "tokio-256k") => me("tokio-256k"),
        (_, "floor") => me("floor"),
        ("echo", "tulip") => net_tulip::server_argv("echo-protocol"),
        ("echo", "tulip-streams") => net_tulip::server_argv("echo-streams"),
        ("http", "tulip") => net_tulip::server_argv("http"),
        ("echo", w) => {
            let (lp, k) = w.split_once('-').ok_or("bad contender")?;
            py(lp, &format!("echo-{k}"))
        }
        ("http", lp) => py(lp, "http"),
        _ => Err(format!("no server for {who}")),
    }
}

/// `--child net CASE WHO`: start the server, load it, print RESULT.
fn net_child(ctx: &Ctx, case: &str, who: &str) -> Result<String, String> {
    let argv = net_server_argv(ctx, case, who)?;
    let server = match net_group::start_server(&argv) {
        Ok(s) => s,
        Err(net_group::StartError::Skip(why)) => return Ok(format!("SKIP {why}")),
        Err(net_group::StartError::Failed(why)) => return Err(why),
    };
    let fields = if case == "http" {
        net_group::run_wrk(server.port)?
    } else {
        let (size, c) = net_group::parse_echo_case(case).ok_or("bad echo case")?;
        net_group::echo_client(
            server.port,
            size,
            c,
            net_group::ECHO_SECONDS,
            Some(server.pid()),
        )?
    };
    drop(server);
    Ok(fields
        .iter()
        .map(|(k, v)| format!("{k}={v:.3}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The cases of a group, or why the group can't run yet.
fn group_cases(group: &str, ctx: &Ctx) -> Result<Vec<Case>, String> {
    match group {
        "loop" => Ok(loop_cases(ctx)),
        "sync" => Ok(sync_cases(ctx)),
        "net" => Ok(net_cases(ctx)),
        "spawn" => Ok(spawn_cases(ctx)),
        "sweep" => Ok(sweep_cases(ctx)),
        _ => Err(format!("unknown group {group}")),
    }
}

/// `--child GROUP CASE CONTENDER --ops N`: measure once, print `RESULT ...`.
fn child_main(ctx: &Ctx, args: &[String]) -> i32 {
    let (Some(group), Some(case), Some(who)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: bench --child GROUP CASE CONTENDER --ops N");
        return 2;
    };
    let ops: u64 = args
        .iter()
        .position(|a| a == "--ops")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let res = match group.as_str() {
        "loop" => loop_group::run(case, who, ops).map(|ns| ns_line(ns, ops)),
        "sync" => sync_group::run(case, who, ops).map(|ns| ns_line(ns, ops)),
        "spawn" => spawn_group::run(case, who, ops),
        "net" => match net_child(ctx, case, who) {
            Ok(line) if line.starts_with("SKIP") => {
                println!("{line}");
                return 0;
            }
            other => other,
        },
        "sweep" if case == "mostly-down" => {
            match sweep_group::measure_down(who, &ctx.python, &ctx.peers) {
                Ok(None) => {
                    println!("SKIP n/a (needs root / ip netns)");
                    return 0;
                }
                other => other.map(Option::unwrap_or_default),
            }
        }
        "sweep" => sweep_group::argv(who, &ctx.python, &ctx.peers)
            .and_then(|argv| sweep_group::measure(&argv, 0)),
        _ => Err(format!("unknown group {group}")),
    };
    match res {
        Ok(line) => {
            println!("RESULT {line}");
            0
        }
        Err(e) => {
            eprintln!("bench child {group}/{case}/{who}: {e}");
            1
        }
    }
}

/// 1000000 as "1M", 100000 as "100k".
fn fmt_count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The `RESULT` fields of a per-op case.
fn ns_line(span: measure::Span, ops: u64) -> String {
    let per = |ns: u64| ns as f64 / ops.max(1) as f64;
    format!(
        "ns_per_op={:.3} cpu_ns_per_op={:.3} rss_mib={:.1} ops={ops} ns={}",
        per(span.wall_ns),
        per(span.cpu_ns),
        measure::peak_rss_mib(),
        span.wall_ns
    )
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let t = secs % 86400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        t / 3600,
        (t % 3600) / 60
    )
}

/// `--serve KIND WHO`: a server of the `net` group (prints `LISTENING port`).
fn serve_main(args: &[String]) -> i32 {
    let (Some(kind), Some(who)) = (args.first(), args.get(1)) else {
        eprintln!("usage: bench --serve echo|http tokio|tokio-256k|floor");
        return 2;
    };
    let res = match who.as_str() {
        "tokio" => net_group::serve_tokio(kind, net_group::TOKIO_ECHO_BUF),
        "tokio-256k" => net_group::serve_tokio(kind, net_group::TOKIO_ECHO_BUF_256K),
        "floor" => net_group::serve_floor(kind),
        _ => Err(std::io::Error::other(format!("unknown server {who}"))),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench --serve {kind} {who}: {e}");
            1
        }
    }
}

/// The context a child sees: the parent passes its choices down in the environment.
fn ctx_from_env(ops: Option<u64>, scale: f64) -> Ctx {
    Ctx {
        exe: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "bench".into()),
        python: std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into()),
        peers: std::env::var_os("BENCH_PEERS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))),
        ops,
        scale,
    }
}

/// Runs this process (and so every child) at nice `n`. With the kernel's
/// autogroups, nice only ranks processes within one session, so the
/// session's autogroup gets nice `n` too; its old value is returned, to be
/// put back at the end.
fn set_priority(n: i32) -> Result<Option<i32>, ()> {
    // SAFETY: setpriority on this process only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) } != 0 {
        eprintln!(
            "bench: cannot set nice {n}: {} (running at the default priority)",
            std::io::Error::last_os_error()
        );
        return Err(());
    }
    let before = std::fs::read_to_string("/proc/self/autogroup")
        .ok()
        .and_then(|s| s.split_whitespace().last()?.parse::<i32>().ok());
    match before {
        Some(b) if std::fs::write("/proc/self/autogroup", n.to_string()).is_ok() => Ok(Some(b)),
        _ => Ok(None),
    }
}

/// Builds the other binaries a group runs (pinger, tulip's http example),
/// so `cargo run -p bench -- all` needs nothing else first. A failed build
/// only leaves that contender n/a.
fn prebuild(groups: &[String]) {
    let mut jobs: Vec<(&str, Vec<&str>)> = Vec::new();
    if groups.iter().any(|g| g == "sweep") {
        jobs.push(("pinger", vec!["-p", "pinger", "--bin", "pinger"]));
    }
    if groups.iter().any(|g| g == "net") {
        jobs.push((
            "examples/http_server and echo_bench_server",
            vec![
                "-p",
                "tulip",
                "--example",
                "http_server",
                "--example",
                "echo_bench_server",
            ],
        ));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    for (what, args) in jobs {
        eprintln!("building {what} (release) ...");
        let out = std::process::Command::new(&cargo)
            .args(["build", "--release", "--quiet", "--manifest-path", manifest])
            .args(&args)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().find(|l| l.starts_with("error")).unwrap_or("");
                eprintln!("  could not build {what}: {last}");
            }
            Err(e) => eprintln!("  could not run {cargo}: {e}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child") => std::process::exit(child_main(&ctx_from_env(None, 1.0), &args[1..])),
        Some("--serve") => std::process::exit(serve_main(&args[1..])),
        _ => {}
    }
    let mut groups: Vec<String> = Vec::new();
    let mut opts = RunOptions {
        runs: 5,
        timeout: Duration::from_secs(300),
        verbose: false,
    };
    let mut ops = None;
    let mut quick = false;
    let mut only_cases: Option<Vec<String>> = None;
    let mut only_who: Option<Vec<String>> = None;
    let mut md_file: Option<PathBuf> = None;
    let mut nice: Option<i32> = None;
    let mut python = None;
    let mut peers = None;
    let mut it = args.into_iter();
    let list = |s: Option<String>| -> Vec<String> {
        s.unwrap_or_default()
            .split(',')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    while let Some(a) = it.next() {
        let num = |v: Option<String>, what: &str| -> u64 {
            v.and_then(|s| s.replace('_', "").parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("bench: {what} needs a number\n\n{USAGE}");
                    std::process::exit(2)
                })
        };
        match a.as_str() {
            "--runs" => opts.runs = num(it.next(), "--runs").max(1) as usize,
            "--ops" => ops = Some(num(it.next(), "--ops")),
            "--quick" => quick = true,
            "--timeout" => opts.timeout = Duration::from_secs(num(it.next(), "--timeout")),
            "--case" => only_cases = Some(list(it.next())),
            "--only" => only_who = Some(list(it.next())),
            "--md" => md_file = it.next().map(PathBuf::from),
            "--python" => python = it.next(),
            "--peers" => peers = it.next(),
            "-v" | "--verbose" => opts.verbose = true,
            "--nice" => {
                let v = it
                    .next()
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or_else(|| {
                        eprintln!("bench: --nice needs a number (e.g. -10)");
                        std::process::exit(2)
                    });
                nice = Some(v);
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            "all" => groups.extend(GROUPS.iter().map(|g| g.to_string())),
            g if GROUPS.contains(&g) => groups.push(g.to_string()),
            other => {
                eprintln!("bench: unknown argument {other:?}\n\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if groups.is_empty() {
        groups.push("loop".into());
    }
    if quick && ops.is_none() {
        opts.runs = opts.runs.min(3);
    }
    // Children read these back (ctx_from_env); set before any thread starts.
    if let Some(p) = &python {
        std::env::set_var("BENCH_PYTHON", p);
    }
    if let Some(p) = &peers {
        std::env::set_var("BENCH_PEERS", p);
    }
    let ctx = ctx_from_env(ops, if quick { 0.1 } else { 1.0 });
    prebuild(&groups);
    let autogroup_before = nice.and_then(|n| set_priority(n).map_err(|_| nice = None).ok()?);
    let python = ctx.python.clone();

    let mut report = String::new();
    report.push_str(&format!("## Results, {}\n\n", utc_now()));
    report.push_str(&hw::describe(&python));
    report.push_str(&format!(
        "- Method: each contender in its own process, {} rounds in rotated order, median shown \
         (± is half the max−min spread){}{}\n\n",
        opts.runs,
        match nice {
            Some(n) => format!("; all processes at nice {n}"),
            None => String::new(),
        },
        if quick {
            "; QUICK run (a tenth of the ops)"
        } else {
            ""
        }
    ));
    // The header goes out first, so a long run shows the machine at once.
    print!("{report}");

    for g in &groups {
        eprintln!("== {g}");
        let mut cases = match group_cases(g, &ctx) {
            Ok(c) => c,
            Err(why) => {
                let s = format!("### {g}\n\nn/a: {why}\n\n");
                print!("{s}");
                report.push_str(&s);
                continue;
            }
        };
        if let Some(only) = &only_cases {
            cases.retain(|c| only.contains(&c.name));
        }
        if let Some(only) = &only_who {
            for c in &mut cases {
                c.contenders
                    .retain(|k| k.name == "tulip" || only.contains(&k.name));
            }
        }
        let mut done: Vec<(Case, Vec<Outcome>)> = Vec::new();
        for case in cases {
            let out = harness::run_case(&case, &opts);
            done.push((case, out));
        }
        // One table per run of cases with the same contenders (net: echo, then http).
        let names = |c: &Case| {
            c.contenders
                .iter()
                .map(|k| k.name.clone())
                .collect::<Vec<_>>()
        };
        let mut chunks: Vec<Vec<(Case, Vec<Outcome>)>> = Vec::new();
        for item in done {
            match chunks.last_mut() {
                Some(last) if names(&last[0].0) == names(&item.0) => last.push(item),
                _ => chunks.push(vec![item]),
            }
        }
        let several = chunks.len() > 1;
        for chunk in &chunks {
            let title = if several {
                let stem = chunk[0].0.name.split('-').next().unwrap_or("");
                format!("{g}: {stem}")
            } else {
                g.clone()
            };
            let s = harness::markdown(&title, chunk);
            println!("{s}");
            report.push_str(&s);
            report.push('\n');
        }
    }
    let tail = format!("Load average at the end: {}\n", hw::loadavg());
    println!("{tail}");
    report.push_str(&tail);
    if let Some(prev) = autogroup_before {
        let _ = std::fs::write("/proc/self/autogroup", prev.to_string());
    }
    if let Some(f) = md_file {
        if let Err(e) = std::fs::write(&f, &report) {
            eprintln!("bench: cannot write {}: {e}", f.display());
        }
    }
}
