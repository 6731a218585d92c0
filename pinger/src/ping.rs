//! Running `ping` and reading what it says: the argv we build, and the parser for
//! iputils' output (run with `LC_ALL=C`).
//!
//! This mirrors the seed's `ping -c 1 -w 1 -W 1 IP` and its verdict: a host is
//! down iff the output contains `100% packet loss`. One addition: empty output
//! (ping failed before printing anything, e.g. "network is unreachable" goes to
//! stderr only) is also down, where the seed would have said up.
//!
//! # Option mapping
//! | pinger                  | ping                                              |
//! |-------------------------|---------------------------------------------------|
//! | `-c/--count N`          | `-c N`                                            |
//! | `-t/--timeout MS`       | `-W MS/1000`, in seconds; iputils takes fractions, so `-t 250` is `-W 0.25` |
//! | (derived)               | `-w ceil(((N-1) * 1000 + MS) / 1000)`: ping's own deadline, covering N packets sent 1 s apart plus the wait for the last reply |
//!
//! With the defaults (`-c 1 -t 1000`) this is exactly the seed's `-c 1 -w 1 -W 1`.
//! iputils' `-w` takes whole seconds only, and once `-w` is given ping keeps
//! waiting until that deadline; so a timeout below one second still lets a silent
//! host take up to one second. The driver therefore enforces the timeout itself
//! (see [`crate::sweep::probe_limit`]): it kills a `ping` still running at the
//! deadline and reads what it printed with [`parse_cut_short`].
//!
//! What ping writes on stderr is read too, from one pipe shared by all the
//! children: a line saying that ping cannot send at all ([`cannot_send`])
//! ends the sweep with an error, rather than reporting every host down.
//!
//! # Invariants
//! - The target is the last argv element and is a formatted [`Ipv4Addr`]: digits
//!   and dots, never starting with `-`, never passed through a shell.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The text that marks a host as down, exactly as the seed matches it.
pub const LOSS_MARKER: &str = "100% packet loss";

/// ping's default gap between packets when `-c` is above 1, in milliseconds.
pub const PING_INTERVAL_MS: u64 = 1_000;

/// The largest `-t/--timeout` accepted, in milliseconds (ten minutes; iputils'
/// own ceiling for `-W` is about 2147 s).
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// The environment `ping` runs with: nothing but `LC_ALL=C`, so that its output
/// is the English text this module parses.
pub const PING_ENV: [(&str, &str); 1] = [("LC_ALL", "C")];

/// Where to look for `ping` when `PATH` is unset.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// How each `ping` child is asked to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingParams {
    /// Echo requests per probe (`-c`), at least 1.
    pub count: u32,
    /// How long to wait for a reply, in milliseconds (`-W`), at least 1.
    pub timeout_ms: u64,
}

impl Default for PingParams {
    /// The seed's probe: one packet, one second.
    fn default() -> Self {
        PingParams {
            count: 1,
            timeout_ms: 1_000,
        }
    }
}

impl PingParams {
    /// ping's `-w` deadline in whole seconds (see the module docs), at least 1.
    pub fn deadline_secs(&self) -> u64 {
        let count = u64::from(self.count.max(1));
        let total_ms = (count - 1) * PING_INTERVAL_MS + self.timeout_ms.max(1);
        total_ms.div_ceil(1_000).max(1)
    }

    /// ping's `-W` value: the timeout in seconds, as a decimal with no trailing
    /// zeros (`1000` → `"1"`, `250` → `"0.25"`, `1` → `"0.001"`).
    pub fn timeout_arg(&self) -> String {
        let ms = self.timeout_ms.max(1);
        let (secs, frac) = (ms / 1_000, ms % 1_000);
        if frac == 0 {
            secs.to_string()
        } else {
            let frac = format!("{frac:03}");
            format!("{secs}.{}", frac.trim_end_matches('0'))
        }
    }

    /// The argv after the program name: `-c COUNT -w DEADLINE -W TIMEOUT IP`.
    pub fn args(&self, ip: Ipv4Addr) -> Vec<String> {
        vec![
            "-c".into(),
            self.count.max(1).to_string(),
            "-w".into(),
            self.deadline_secs().to_string(),
            "-W".into(),
            self.timeout_arg(),
            ip.to_string(),
        ]
    }
}

/// One fully built `ping` invocation: what the prober spawns, as argv, with a
/// cleared environment. Never goes through a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingCommand {
    /// The host probed (also the last argument).
    pub ip: Ipv4Addr,
    /// Absolute path of `ping`, from [`resolve_ping`].
    pub program: PathBuf,
    /// Arguments after the program name (see [`PingParams::args`]).
    pub args: Vec<String>,
    /// The complete environment: [`PING_ENV`].
    pub env: &'static [(&'static str, &'static str)],
}

impl PingCommand {
    /// Builds the command probing `ip` once.
    pub fn new(program: &Path, params: &PingParams, ip: Ipv4Addr) -> PingCommand {
        PingCommand {
            ip,
            program: program.to_path_buf(),
            args: params.args(ip),
            env: &PING_ENV,
        }
    }

    /// The same command as a tulip [`Command`](tulip::subprocess::Command):
    /// environment cleared and set to [`PING_ENV`], stdin `/dev/null`, stdout
    /// piped, stderr to `stderr` (the driver gives every child the write end
    /// of one shared pipe, see [`cannot_send`]), killed if its `Process` is
    /// dropped early, and in a process group of its own, so that a Ctrl-C at
    /// the terminal reaches only pinger, which then stops the children itself.
    pub fn to_command(&self, stderr: tulip::subprocess::Stdio) -> tulip::subprocess::Command {
        use std::os::unix::process::CommandExt;
        use tulip::subprocess::{Command, Stdio};
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().copied())
            .stdin(Stdio::DevNull)
            .stdout(Stdio::Pipe)
            .stderr(stderr)
            .kill_on_drop(true);
        cmd.as_std_mut().process_group(0);
        cmd
    }
}

/// What one probe found out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingReply {
    /// Whether the host answered, by the seed's rule.
    pub up: bool,
    /// Round-trip time in milliseconds, when the host answered and ping printed one.
    pub rtt_ms: Option<f64>,
}

/// The seed's verdict: up unless the output says `100% packet loss`; empty
/// output (ping failed) is down too.
pub fn is_up(stdout: &str) -> bool {
    !stdout.trim().is_empty() && !stdout.contains(LOSS_MARKER)
}

/// The round-trip time in milliseconds: the average from the
/// `rtt min/avg/max/mdev = a/b/c/d ms` line when there is one, otherwise the
/// first `time=X ms` of a reply line.
pub fn parse_rtt_ms(stdout: &str) -> Option<f64> {
    summary_avg(stdout).or_else(|| first_reply_time(stdout))
}

/// `rtt min/avg/max/mdev = 0.028/0.030/0.040/0.005 ms` → `0.030`.
/// (busybox writes `round-trip min/avg/max = ...`, which also matches.)
fn summary_avg(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.contains("min/avg/max"))?;
    let (_, values) = line.split_once('=')?;
    let avg = values.trim().split('/').nth(1)?;
    finite(avg.trim())
}

/// `64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.045 ms` → `0.045`.
fn first_reply_time(stdout: &str) -> Option<f64> {
    stdout.lines().find_map(reply_time)
}

/// The `time=X ms` of one line, if it has one.
fn reply_time(line: &str) -> Option<f64> {
    let (_, rest) = line.split_once("time=")?;
    let number = rest
        .split(|c: char| c != '.' && !c.is_ascii_digit())
        .next()?;
    finite(number)
}

/// The mean of the reply lines' times: what ping's `rtt min/avg/max` line
/// would have given as the average (iputils averages every reply,
/// duplicates included), had it lived to print it.
fn mean_reply_time(stdout: &str) -> Option<f64> {
    let times: Vec<f64> = stdout
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(reply_time)
        .collect();
    (!times.is_empty()).then(|| times.iter().sum::<f64>() / times.len() as f64)
}

fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Whether any line is an echo reply (`64 bytes from 10.0.0.1: ... time=0.045 ms`).
pub fn has_reply_line(stdout: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.contains(" bytes from ") && l.contains("time="))
}

/// Reads the stdout of a `ping` that the driver killed at its deadline, so
/// without the statistics the seed's rule looks at: up iff a reply line made
/// it out before the kill, and the RTT is the average of the replies that
/// did (as the statistics would have had it).
pub fn parse_cut_short(stdout: &[u8]) -> PingReply {
    let text = String::from_utf8_lossy(stdout);
    let up = has_reply_line(&text);
    PingReply {
        up,
        rtt_ms: if up { mean_reply_time(&text) } else { None },
    }
}

/// Whether a line `ping` wrote on its stderr says that it cannot send at
/// all, so that every host would look down whatever the network: it has no
/// raw socket (neither root, nor setuid, nor `cap_net_raw`) and may not use
/// an unprivileged ping socket (`net.ipv4.ping_group_range`), or a sandbox
/// forbids either. iputils then exits with status 2 after
/// `ping: socket: Operation not permitted` (or `Permission denied`), and
/// since 2021 adds `ping: => missing cap_net_raw+p capability or setuid?`;
/// older ones say `icmp open socket: ...`, busybox
/// `permission denied (are you root?)`, inetutils
/// `Lacking privilege for icmp socket.`. A failed capability call
/// (`cap_set_proc: Operation not permitted`) means the same.
///
/// Deliberately narrow: `sendmsg: Operation not permitted` (a firewall
/// rule against one destination), `connect: Network is unreachable` (no
/// route) and the like are about one host, which is then down.
pub fn cannot_send(line: &str) -> bool {
    let line = line.trim_end();
    let lower = line.to_ascii_lowercase();
    if lower.contains("cap_net_raw")
        || lower.contains("(are you root?)")
        || lower.contains("lacking privilege for icmp socket")
    {
        return true;
    }
    // `PROGRAM: CALL: strerror(EPERM or EACCES)`.
    ["Operation not permitted", "Permission denied"]
        .iter()
        .filter_map(|msg| line.strip_suffix(msg)?.strip_suffix(": "))
        .any(|before| {
            let call = before.rsplit(": ").next().unwrap_or(before);
            call.ends_with("socket")
                || call.starts_with("cap_")
                || matches!(call, "setuid" | "seteuid" | "prctl")
        })
}

/// Reads ping's stdout (bytes, decoded lossily as the seed decodes UTF-8).
pub fn parse_reply(stdout: &[u8]) -> PingReply {
    let text = String::from_utf8_lossy(stdout);
    let up = is_up(&text);
    PingReply {
        up,
        rtt_ms: if up { parse_rtt_ms(&text) } else { None },
    }
}

/// Finds `ping` once, as an absolute path, in `path_var` (the value of `PATH`;
/// a conventional list when it is unset).
pub fn resolve_ping(path_var: Option<&OsStr>) -> Result<PathBuf, Error> {
    let fallback = OsStr::new(FALLBACK_PATH);
    let dirs = path_var.filter(|p| !p.is_empty()).unwrap_or(fallback);
    std::env::split_paths(dirs)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("ping"))
        .find(|candidate| is_executable(candidate))
        .ok_or(Error::PingNotFound)
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
