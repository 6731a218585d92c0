//! Ctrl-C (SIGINT to the pinger process), SIGTERM or SIGHUP, in the middle of a
//! sweep of a namespace /24 whose silent hosts would keep their probes busy
//! for 5 s: exit 130 (143 for SIGTERM) soon after the signal, the hosts
//! decided so far printed, the summary printed, and every `ping` child
//! killed and reaped.
//!
//! The test makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so a
//! `ping` that pinger left behind, running or zombie, is re-parented to the
//! test when pinger exits, where `waitid` sees it. `ip netns exec` execs
//! pinger in its own process, so the child's pid is pinger's.
//!
//! The tests share the subreaper and the process table, so they take turns.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::netns::NetNs;

const PINGER: &str = env!("CARGO_BIN_EXE_pinger");

/// One test at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

/// How long to wait for the silent probes to be running.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long pinger may take to exit after the signal.
const EXIT_LIMIT: Duration = Duration::from_secs(3);
/// When a second signal counts as a second one: past pinger's 100 ms
/// within which copies of the first are the same request.
const SECOND_SIGNAL_AFTER: Duration = Duration::from_millis(150);

fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag, nothing else.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(ret, 0, "prctl(PR_SET_CHILD_SUBREAPER)");
}

/// The pids of `pid`'s children. The kernel lists each child under the
/// thread that spawned it: pinger's spawn threads, or the loop's thread with
/// `--spawn-threads 0`.
fn children_of(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Processes whose command line is `ping ...` with an address in `prefix`.
fn pings_to(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ping = argv.first().is_some_and(|a| a.ends_with("ping"));
        if is_ping && argv.iter().any(|a| a.starts_with(prefix)) {
            found.push(argv.join(" "));
        }
    }
    found
}

/// The children re-parented to this process: reaps the exited ones and
/// returns their wait statuses; panics if one still runs.
fn reap_reparented() -> Vec<i32> {
    let mut statuses = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: WNOHANG never blocks; status is a valid out-pointer.
        match unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
            -1 => return statuses, // ECHILD: none left
            0 => panic!("a child pinger started is still running"),
            _ => statuses.push(status),
        }
    }
}

fn signal(pid: u32, signo: i32) {
    // SAFETY: kill(2) with a pid we spawned and have not reaped.
    let ret = unsafe { libc::kill(pid as libc::pid_t, signo) };
    assert_eq!(ret, 0, "kill({pid}, {signo})");
}

/// Kills and reaps pinger if the test fails before it exited.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for `child` to exit, at most `limit`; kills it and panics otherwise.
fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pinger did not exit within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// When to send the signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    /// Once every silent probe is running.
    AllRunning,
    /// As soon as the first silent probe runs: mid-burst, while pinger is
    /// still starting the others.
    FirstRunning,
}

/// Starts `pinger ARGS` in the namespace, waits until its silent probes are
/// running (all of them, or the first one), sends it `signals` SIGINTs, and
/// checks everything. Returns (stdout, stderr, whether the default SIGINT
/// action ended pinger).
fn interrupt_sweep(
    test: &str,
    signals: usize,
    when: When,
    extra_args: &[&str],
) -> Option<(String, String, bool)> {
    stop_sweep(test, libc::SIGINT, signals, when, extra_args)
}

/// [`interrupt_sweep`] with signal `signo` (SIGINT or SIGTERM): pinger must
/// exit 128 + `signo`, or die by `signo` for a second signal that lands
/// after the sweep has stopped.
fn stop_sweep(
    test: &str,
    signo: i32,
    signals: usize,
    when: When,
    extra_args: &[&str],
) -> Option<(String, String, bool)> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    become_subreaper();
    let ns = NetNs::create(test, &[10, 77])?;
    let cidr = ns.cidr();
    let mut cmd = ns.command(PINGER);
    // These tests are about pinger's handling of the stop signals, which it
    // leaves alone when one is ignored at start (`nohup`, a background job
    // of a script): give it their default dispositions, whatever the test
    // runner inherited (CI started under `nohup ... &` ignores SIGHUP and
    // SIGINT, and `ip netns exec` passes that on).
    // SAFETY: between fork and exec the closure only calls signal(2), which
    // is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for signo in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(signo, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let child = cmd
        .args([cidr.as_str(), "--json", "-t", "5000"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip netns exec pinger");
    let mut child = Reap(child);
    let child = &mut child.0;
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });

    // The 3 live hosts answer at once; the 251 silent ones keep a `ping`
    // each for 5 s. Wait until all 251 run (or the first), as children of
    // pinger (not of `ip`: it exec'd pinger).
    let prefix = format!("{}.", cidr.rsplit_once('.').unwrap().0);
    let silent: BTreeSet<String> = (1..=254u8)
        .map(|h| ns.addr(h))
        .filter(|a| !ns.up_hosts().contains(a))
        .map(|a| a.to_string())
        .collect();
    let wanted = match when {
        When::AllRunning => silent.len(),
        When::FirstRunning => 1,
    };
    let start = Instant::now();
    loop {
        let running: BTreeSet<String> = pings_to(&prefix)
            .iter()
            .filter_map(|cmdline| cmdline.rsplit(' ').next().map(String::from))
            .filter(|ip| silent.contains(ip))
            .collect();
        if running.len() >= wanted {
            break;
        }
        assert!(
            start.elapsed() < START_LIMIT,
            "{} of {} silent probes running after {START_LIMIT:?}",
            running.len(),
            silent.len()
        );
        std::thread::sleep(Duration::from_millis(if wanted == 1 { 1 } else { 10 }));
    }
    assert!(std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .ends_with("pinger"));
    assert!(children_of(pid).len() >= wanted);

    let signalled = Instant::now();
    for i in 0..signals {
        if i > 0 {
            // Copies of a stop signal within pinger's 100 ms of the first
            // are one request (`timeout` sends two); a second one is sent
            // later. The stop is usually over by then, and the signal's
            // default action ends pinger: `a_second_sigint_exits_at_once_
            // while_the_stop_is_stuck` covers the exit at once.
            std::thread::sleep(SECOND_SIGNAL_AFTER);
        }
        signal(pid, signo);
    }
    let status = wait_bounded(child, EXIT_LIMIT);
    let took = signalled.elapsed();
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();

    // 128 + signo, or, for a second signal that lands after the sweep has
    // stopped (pinger hands it back to the default action for its last
    // microseconds of output), death by that signal, which a shell also
    // reports as 128 + signo. Either way "exits at once"; what is left is checked below.
    let by_sigint = status.signal() == Some(signo);
    assert!(
        status.code() == Some(128 + signo) || (signals > 1 && by_sigint),
        "{status:?}: {stderr}"
    );
    assert!(took < EXIT_LIMIT, "{took:?}");
    // Nothing left: no ping to our /24 anywhere, and no child re-parented to
    // us (running or zombie) now that pinger is gone.
    assert_eq!(pings_to(&prefix), Vec::<String>::new());
    // No child re-parented to us: pinger reaped every one itself, even when
    // it exited at once on a second Ctrl-C.
    assert_eq!(
        reap_reparented(),
        Vec::<i32>::new(),
        "pinger left zombies behind"
    );
    drop(ns);
    Some((stdout, stderr, by_sigint))
}

/// Two SIGINTs a few ms apart: pinger exits at once (or ends the normal
/// interrupted way, if the sweep was done stopping before the second one),
/// and leaves nothing behind (checked in `interrupt_sweep`).
fn second_sigint(test: &str, when: When, extra_args: &[&str]) {
    second_signal(test, libc::SIGINT, when, extra_args);
}

/// [`second_sigint`] with signal `signo`.
fn second_signal(test: &str, signo: i32, when: When, extra_args: &[&str]) {
    let Some((_, stderr, by_sigint)) = stop_sweep(test, signo, 2, when, extra_args) else {
        return;
    };
    // Nothing is promised when the second signal ended pinger by its
    // default action (see `interrupt_sweep`).
    assert!(
        by_sigint || stderr.contains("again, exiting") || stderr.contains("interrupted: "),
        "{stderr}"
    );
}

#[test]
fn sigint_prints_the_partial_results_and_exits_130() {
    partial_results_then_exit(
        "sigint_prints_the_partial_results_and_exits_130",
        libc::SIGINT,
    );
}

/// SIGTERM, as `kill` and `timeout` send it, stops the sweep the same way
/// and exits 143 (128 + SIGTERM), instead of leaving the running `ping`s
/// to their own deadline.
#[test]
fn sigterm_prints_the_partial_results_and_exits_143() {
    partial_results_then_exit(
        "sigterm_prints_the_partial_results_and_exits_143",
        libc::SIGTERM,
    );
}

/// SIGHUP (the terminal or the ssh session went away) stops the sweep as
/// SIGTERM does and exits 129: the `ping`s run in a process group of their
/// own, so the hangup reaches only pinger, and a silent host's `ping` would
/// otherwise outlive it until its own deadline (hours with a large `-c`).
#[test]
fn sighup_stops_the_sweep_leaves_no_ping_and_exits_129() {
    partial_results_then_exit(
        "sighup_stops_the_sweep_leaves_no_ping_and_exits_129",
        libc::SIGHUP,
    );
}

/// A second SIGTERM exits at once and leaves nothing behind.
#[test]
fn a_second_sigterm_exits_at_once_and_still_leaves_nothing() {
    second_signal(
        "a_second_sigterm_exits_at_once_and_still_leaves_nothing",
        libc::SIGTERM,
        When::AllRunning,
        &[],
    );
}

/// One `signo` once every silent probe runs: the three live hosts and the
/// summary are printed, and the exit code is 128 + `signo` (checked in
/// `stop_sweep`).
fn partial_results_then_exit(test: &str, signo: i32) {
    let Some((stdout, stderr, _)) = stop_sweep(test, signo, 1, When::AllRunning, &[]) else {
        return;
    };
    // The hosts decided before the signal: exactly the three live ones.
    let ips: Vec<Ipv4Addr> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"ip\":"))
        .map(|l| l[7..].split('"').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ips.len(), 3, "{stdout}");
    assert!(
        stdout.lines().all(|l| !l.contains("\"up\":false")),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("{\"summary\":{\"addresses\":3,\"up\":3,\"down\":0"),
        "{last}"
    );
    assert!(
        stderr.contains("interrupted: 3 of 254 addresses decided"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 addresses (3 up, 0 down) in "),
        "{stderr}"
    );
}

#[test]
fn a_second_sigint_exits_at_once_and_still_leaves_nothing() {
    second_sigint(
        "a_second_sigint_exits_at_once_and_still_leaves_nothing",
        When::AllRunning,
        &[],
    );
}

/// Mid-burst, some `ping`s are being started on pinger's spawn threads when
/// the signal lands: those spawns finish, and their children are killed
/// and reaped like the others.
#[test]
fn sigint_while_probes_are_still_starting_leaves_nothing() {
    let Some((stdout, stderr, _)) = interrupt_sweep(
        "sigint_while_probes_are_still_starting_leaves_nothing",
        1,
        When::FirstRunning,
        &[],
    ) else {
        return;
    };
    assert!(stderr.contains("interrupted: "), "{stderr}");
    assert!(
        stdout.lines().all(|l| !l.contains("\"up\":false")),
        "a silent host cannot be decided within 5 s: {stdout}"
    );
}

/// The same with the second Ctrl-C, which exits without running the loop
/// again: a spawn in flight on a spawn thread still leaves no child behind.
#[test]
fn a_second_sigint_while_probes_are_still_starting_leaves_nothing() {
    second_sigint(
        "a_second_sigint_while_probes_are_still_starting_leaves_nothing",
        When::FirstRunning,
        &[],
    );
}

/// With `--spawn-threads 0` the loop's own thread starts every `ping`.
#[test]
fn a_second_sigint_mid_burst_leaves_nothing_with_spawns_on_the_loop_thread() {
    second_sigint(
        "a_second_sigint_mid_burst_leaves_nothing_with_spawns_on_the_loop_thread",
        When::FirstRunning,
        &["--spawn-threads", "0"],
    );
}

/// A second Ctrl-C, well after the first, while the orderly stop is stuck,
/// exits at once (128 + SIGINT), and leaves no child of pinger's behind. The
/// stand-in `ping` leaves a grandchild holding its stdout open, so after the
/// first Ctrl-C kills it pinger waits (up to 2 s) for that pipe to end.
#[test]
fn a_second_sigint_exits_at_once_while_the_stop_is_stuck() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    become_subreaper();
    let dir = std::env::temp_dir().join(format!("pinger-stuck-stop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("pid");
    let script = format!(
        "#!/bin/sh\nsleep 3 &\necho $$ > '{}.tmp'\nmv '{0}.tmp' '{0}'\nexec sleep 5\n",
        pid_file.display()
    );
    std::fs::write(dir.join("ping"), script).unwrap();
    std::fs::set_permissions(dir.join("ping"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = std::process::Command::new(PINGER);
    cmd.args(["127.0.0.1", "-t", "5000"]).env("PATH", &dir);
    // SAFETY: between fork and exec the closure only calls signal(2).
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let child = &mut child.0;
    let start = Instant::now();
    let stand_in: libc::pid_t = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().unwrap();
        }
        assert!(start.elapsed() < START_LIMIT, "the stand-in never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Its group: the stand-in's own, with its grandchild in it.
    let kill_group = || {
        // SAFETY: kill(2) on the process group of the stand-in we started.
        unsafe { libc::kill(-stand_in, libc::SIGKILL) };
    };

    signal(child.id(), libc::SIGINT);
    // The first Ctrl-C is handled once the stand-in is killed (and reaped).
    let alive = || {
        std::fs::read_to_string(format!("/proc/{stand_in}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| !r.trim_start().starts_with('Z'))
        })
    };
    while alive() {
        if start.elapsed() > START_LIMIT {
            kill_group();
            panic!("the first Ctrl-C did not kill the stand-in");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(SECOND_SIGNAL_AFTER);
    let second = Instant::now();
    signal(child.id(), libc::SIGINT);
    let status = wait_bounded(child, EXIT_LIMIT);
    let took = second.elapsed();
    kill_group();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(
        status.code(),
        Some(EXIT_CODE_SIGINT),
        "{status:?}: {stderr}"
    );
    assert!(stderr.contains("interrupted again, exiting"), "{stderr}");
    // At once: not after the 2 s the stop would have waited.
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The grandchild, killed above, is re-parented to us (reaped here once
    // it is dead); nothing else is.
    let mut reaped = Vec::new();
    let deadline = Instant::now() + EXIT_LIMIT;
    loop {
        let mut status = 0;
        // SAFETY: WNOHANG never blocks; status is a valid out-pointer.
        match unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
            -1 => break, // ECHILD: none left
            0 => {
                assert!(Instant::now() < deadline, "a child is still running");
                std::thread::sleep(Duration::from_millis(1));
            }
            pid => reaped.push(pid),
        }
    }
    assert!(reaped.len() <= 1, "pinger left children behind: {reaped:?}");
}

const EXIT_CODE_SIGINT: i32 = 128 + libc::SIGINT;
