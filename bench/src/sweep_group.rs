//! The `sweep` group (issue 5): a ping sweep of `127.0.0.0/24`, loopback
//! only, by four programs:
//!
//! - pinger: this repo's tool (`target/release/pinger 127.0.0.0/24`);
//! - seed: the seed's asyncio script (`peers/sweep_seed.py`), changed only to
//!   take the prefix as an argument and sweep 127.0.0.x;
//! - fping: `fping -g 127.0.0.0/24 -i 1`;
//! - floor: a shell that starts 254 `ping -c 1 -w 1 -W 1` in parallel and waits.
//!
//! Each is started with its output to /dev/null and reaped with `wait4`,
//! which gives the wall time and the peak RSS of the largest process in the
//! tree (what GNU time's "Maximum resident set size" reports).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The network swept. Loopback only: never change this to a routed network.
pub const TARGET: &str = "127.0.0.0/24";

/// The floor's shell script.
pub const FLOOR_SCRIPT: &str = "for i in $(seq 1 254); do \
     ping -c 1 -w 1 -W 1 127.0.0.$i >/dev/null 2>&1 & done; wait";

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
            .map(|p| vec![p.display().to_string(), s("-g"), s(TARGET), s("-i"), s("1")])
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

/// Runs `argv` once; returns the `RESULT` fields (wall s, peak RSS MiB, exit code).
pub fn measure(argv: &[String]) -> Result<String, String> {
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
    Ok(format!(
        "wall_s={wall:.4} rss_mib={:.1} exit={code}",
        ru.ru_maxrss as f64 / 1024.0
    ))
}
