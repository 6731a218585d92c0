//! A throwaway network namespace with a /24 where only a few hosts answer.
//!
//! Layout, inside a namespace named `pinger-t<pid>-<n>`:
//! - a veth pair `v0`/`v1` (the `dummy` link type is missing on our machines);
//!   `v0` carries `10.X.Y.1/24`, both ends and `lo` are up;
//! - the chosen host addresses are added to `lo` as /32s, so they answer;
//! - every other address of the /24 is routed out of `v0`, where nobody answers
//!   ARP, so pings to them time out.
//!
//! The up set is therefore [`GATEWAY_HOST`] plus the `lo` hosts; see
//! [`NetNs::up_hosts`].
//!
//! # Traffic rule
//! Packets to `10.X.Y.0/24` are only ever sent from inside the namespace (via
//! [`NetNs::command`]); the host's own network is never touched.
//!
//! # Cleanup
//! The namespace (and the veth pair in it) is deleted in `Drop`, so also when a
//! test fails or panics. A test killed by SIGKILL leaves it behind; remove such
//! leftovers with `ip netns list | grep pinger-t` and `ip netns del NAME`.
//!
//! # Skipping
//! [`NetNs::create`] returns `None` after printing a loud `SKIPPED` line only when
//! the process is not root or `ip netns add` itself fails. Any later failure
//! panics: on a machine that can make namespaces, a broken fixture is a bug.

use std::ffi::OsStr;
use std::io::Read;
use std::net::Ipv4Addr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The host number of `v0`'s own address; it answers too.
pub const GATEWAY_HOST: u8 = 1;

/// Bound on every `ip` command the fixture runs.
const IP_COMMAND_LIMIT: Duration = Duration::from_secs(10);

/// How often [`run_bounded`] checks whether the child has exited.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Namespaces created by this process so far; makes names and subnets unique.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// What a bounded command produced.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Finished {
    /// stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `cmd` to completion with stdout and stderr captured, killing it and
/// panicking if it runs longer than `limit`. Pipes are drained on threads, so
/// a chatty child cannot block on a full pipe.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Finished {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} ran longer than {limit:?}; killed");
        }
        std::thread::sleep(POLL_EVERY);
    };
    let elapsed = start.elapsed();
    Finished {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
        elapsed,
    }
}

/// Runs `ip ARGS...`, panicking with its stderr if it fails.
fn ip(args: &[&str]) {
    let done = run_bounded(Command::new("ip").args(args), IP_COMMAND_LIMIT);
    assert!(
        done.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        done.stderr_text().trim()
    );
}

/// Prints the loud skip line. Written to the stderr handle directly rather than
/// with `eprintln!`, so that libtest's output capture does not swallow it.
fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// A network namespace with a half-silent /24; deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    /// The first three octets of the /24.
    prefix: [u8; 3],
    /// Addresses that answer, sorted.
    up: Vec<Ipv4Addr>,
}

impl NetNs {
    /// Creates the namespace with `lo_hosts` (host numbers, 2 to 254) answering
    /// besides [`GATEWAY_HOST`]. `None` (after a loud `SKIPPED` line) when this
    /// machine cannot create namespaces; `test` names the test in that line.
    pub fn create(test: &str, lo_hosts: &[u8]) -> Option<NetNs> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            skip(test, "network namespaces need root (run the tests as root)");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("pinger-t{pid}-{n}");
        let added = Command::new("ip")
            .args(["netns", "add", &name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match added {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                skip(test, &format!("`ip netns add` failed: {}", why.trim()));
                return None;
            }
            Err(e) => {
                skip(test, &format!("cannot run `ip` (install iproute2): {e}"));
                return None;
            }
        }
        // From here on, Drop removes the namespace whatever happens.
        let prefix = [10, 100 + (pid % 100) as u8, (n % 256) as u8];
        let mut up: Vec<Ipv4Addr> = std::iter::once(GATEWAY_HOST)
            .chain(lo_hosts.iter().copied())
            .map(|h| Ipv4Addr::new(prefix[0], prefix[1], prefix[2], h))
            .collect();
        up.sort_unstable();
        up.dedup();
        let ns = NetNs { name, prefix, up };
        ns.configure(lo_hosts);
        Some(ns)
    }

    fn configure(&self, lo_hosts: &[u8]) {
        let ns = self.name.as_str();
        ip(&[
            "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        let gateway = format!("{}/24", self.addr(GATEWAY_HOST));
        ip(&["-n", ns, "addr", "add", &gateway, "dev", "v0"]);
        for &h in lo_hosts {
            assert!(
                (2..=254).contains(&h) && h != GATEWAY_HOST,
                "lo host {h} must be 2..=254"
            );
            let addr = format!("{}/32", self.addr(h));
            ip(&["-n", ns, "addr", "add", &addr, "dev", "lo"]);
        }
        for link in ["lo", "v0", "v1"] {
            ip(&["-n", ns, "link", "set", link, "up"]);
        }
    }

    /// The namespace's name, for `ip netns exec` or `ip -n`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The /24, as `10.X.Y.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}/24", self.addr(0))
    }

    /// Host `host` of the /24.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, host)
    }

    /// The addresses that answer: the gateway and the `lo` hosts, sorted.
    pub fn up_hosts(&self) -> &[Ipv4Addr] {
        &self.up
    }

    /// `ip netns exec NAME program`: a command that runs inside the namespace.
    /// Add arguments, then run it (for example with [`run_bounded`]).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also destroys the veth pair inside it.
        let result = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: could not delete namespace {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("warning: could not delete namespace {}: {e}", self.name),
        }
    }
}

/// Whether a namespace of that name exists right now.
pub fn exists(name: &str) -> bool {
    let done = run_bounded(Command::new("ip").args(["netns", "list"]), IP_COMMAND_LIMIT);
    done.stdout_text()
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}
