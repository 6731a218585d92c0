//! The `sweep` group (issue 5): a ping sweep of `127.0.0.0/24`, loopback
//! only, by four programs:
//!
//! - pinger: this repo's tool (`target/release/pinger 127.0.0.0/24`);
//! - seed: the seed's asyncio script (`peers/sweep_seed.py`), changed only to
//!   take the prefix as an argument and sweep 127.0.0.x;
//! - fping: `fping -g 127.0.0.0/24 -i 0` (`-i 1` when not root, see [`fping_interval`]);
//! - floor: a shell that starts 254 `ping -c 1 -w 1 -W 1` in parallel and waits.
//!
//! Each is started with its output to /dev/null and reaped with `wait4`,
//! which gives the wall time and the peak RSS of the largest process in the
//! tree (what GNU time's "Maximum resident set size" reports).
//!
//! The `mostly-down` case ([`NetNs`], [`measure_down`]) sweeps a /24 inside a
//! throwaway network namespace instead; see there.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The network swept. Loopback only: never change this to a routed network.
pub const TARGET: &str = "127.0.0.0/24";

/// The floor's shell script.
pub const FLOOR_SCRIPT: &str = "for i in $(seq 1 254); do \
     ping -c 1 -w 1 -W 1 127.0.0.$i >/dev/null 2>&1 & done; wait";

/// fping's `-i`, the gap in ms between two probes: 0, as pinger's default
/// (pinger, the seed and the floor start every probe at once), when fping
/// allows it, that is as root; otherwise 1, the least fping takes from
/// other users, which leaves fping ~0.25 s of pacing that pinger has not.
pub fn fping_interval() -> &'static str {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        "0"
    } else {
        "1"
    }
}

/// The pinger binary next to this one (same target directory), if built.
pub fn pinger_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("pinger");
    p.is_file().then_some(p)
}

/// The argv of each contender, or why it can't run.
pub fn argv(contender: &str, python: &str, peers: &Path) -> Result<Vec<String>, String> {
    let s = |x: &str| x.to_string();
    match contender {
        "pinger" => pinger_path()
            .map(|p| vec![p.display().to_string(), s(TARGET)])
            .ok_or_else(|| {
                "target/release/pinger is not built (cargo build --release -p pinger)".into()
            }),
        "seed" => {
            let script = peers.join("sweep_seed.py");
            Ok(vec![s(python), script.display().to_string(), s("127.0.0.")])
        }
        "fping" => crate::spawn_group::which("fping")
            .map(|p| {
                vec![
                    p.display().to_string(),
                    s("-g"),
                    s(TARGET),
                    s("-i"),
                    s(fping_interval()),
                ]
            })
            .ok_or_else(|| "fping is not installed (bench/setup.sh)".into()),
        "floor" => {
            if crate::spawn_group::which("ping").is_none() {
                return Err("ping is not installed (apt-get install iputils-ping)".into());
            }
            Ok(vec![s("sh"), s("-c"), s(FLOOR_SCRIPT)])
        }
        _ => Err(format!("unknown sweep contender {contender}")),
    }
}

/// Runs `argv` once; returns the `RESULT` fields (wall s, peak RSS MiB, exit
/// code), or an error if it exits with another code than `want_exit` (a
/// tool that fails at once must not show as fast).
pub fn measure(argv: &[String], want_exit: i32) -> Result<String, String> {
    let t0 = Instant::now();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: waits for our own child; `ru` is a plain out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t0.elapsed().as_secs_f64();
    if r < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    if code != want_exit {
        return Err(format!("{} exited {code}, expected {want_exit}", argv[0]));
    }
    Ok(format!(
        "wall_s={wall:.4} rss_mib={:.1} exit={code}",
        ru.ru_maxrss as f64 / 1024.0
    ))
}

/// The `mostly-down` case: a /24 inside a throwaway network namespace where
/// 4 hosts answer (`.1` on `v0`, three /32s on `lo`) and the other 250 are
/// silent, timeout 1 s. Set up as pinger's test fixture
/// (`pinger/tests/common/netns.rs`). Traffic rule: every contender runs via
/// `ip netns exec`, so packets to the /24 never leave the namespace.
pub const DOWN_LO_HOSTS: [u8; 3] = [10, 77, 254];

/// A namespace `bench-sweep-<pid>` with `10.213.X.0/24`; deleted on drop
/// (also on error or panic).
pub struct NetNs {
    name: String,
    /// The third octet.
    x: u8,
}

impl NetNs {
    /// Creates and configures it; `Err` says why not (not root, no `ip netns`).
    pub fn create() -> Result<NetNs, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("n/a (needs root / ip netns)".into());
        }
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("bench-sweep-{pid}");
        ip(&["netns", "add", &name]).map_err(|e| format!("n/a (needs root / ip netns): {e}"))?;
        // From here on, Drop removes the namespace whatever happens.
        let ns = NetNs {
            name,
            x: ((pid ^ nanos) % 256) as u8,
        };
        let n = ns.name.as_str();
        ip(&[
            "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ])?;
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{}1/24", ns.prefix()),
            "dev",
            "v0",
        ])?;
        for h in DOWN_LO_HOSTS {
            ip(&[
                "-n",
                n,
                "addr",
                "add",
                &format!("{}{h}/32", ns.prefix()),
                "dev",
                "lo",
            ])?;
        }
        for link in ["lo", "v0", "v1"] {
            ip(&["-n", n, "link", "set", link, "up"])?;
        }
        Ok(ns)
    }

    /// `10.213.X.`
    pub fn prefix(&self) -> String {
        format!("10.213.{}.", self.x)
    }

    /// `ip netns exec NAME` followed by `argv`.
    pub fn wrap(&self, argv: Vec<String>) -> Vec<String> {
        let mut v = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ];
        v.extend(argv);
        v
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also destroys the veth pair inside it.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {e}", self.name);
        }
    }
}

/// Runs `ip ARGS...`; `Err` with its stderr if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The argv of each `mostly-down` contender for the /24 at `prefix`
/// (`10.213.X.`), to run inside the namespace.
pub fn down_argv(
    contender: &str,
    prefix: &str,
    python: &str,
    peers: &Path,
) -> Result<Vec<String>, String> {
    let s = |x: &str| x.to_string();
    let cidr = format!("{prefix}0/24");
    match contender {
        "pinger" => {
            argv("pinger", python, peers).map(|a| vec![a[0].clone(), cidr, s("-t"), s("1000")])
        }
        "seed" => {
            let script = peers.join("sweep_seed.py");
            Ok(vec![s(python), script.display().to_string(), s(prefix)])
        }
        "fping" => argv("fping", python, peers).map(|a| {
            let rest = ["-g", &cidr, "-t", "1000", "-r", "0", "-i", fping_interval()];
            std::iter::once(a[0].clone())
                .chain(rest.iter().map(|x| s(x)))
                .collect()
        }),
        _ => Err(format!("unknown sweep contender {contender}")),
    }
}

/// One round of `mostly-down` for `contender`: a fresh namespace, the tool run
/// inside it, the namespace removed. `Ok(None)` when namespaces are unavailable.
pub fn measure_down(contender: &str, python: &str, peers: &Path) -> Result<Option<String>, String> {
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(why) if why.starts_with("n/a") => return Ok(None),
        Err(why) => return Err(why),
    };
    let argv = down_argv(contender, &ns.prefix(), python, peers)?;
    // pinger and fping follow fping's exit codes: 1 when some host did not
    // answer. The seed script exits 0 whatever it found.
    let want_exit = if contender == "seed" { 0 } else { 1 };
    measure(&ns.wrap(argv), want_exit).map(Some)
}
