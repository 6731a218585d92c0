//! No zombies and no descriptor growth: a /24 loopback sweep run twice
//! in-process through the library, with `/proc/self/fd` counted around each
//! run and every child accounted for. A probe that leaked its stdout pipe or
//! its pidfd would add 254 descriptors per run; an unreaped child would show
//! up in `waitid`. One test in this file, so no other test's descriptors or
//! children interfere. Traffic: 127.0.0.0/24 only.

use std::net::Ipv4Addr;
use std::time::Duration;

use pinger::ping::{resolve_ping, PingParams};
use pinger::sweep::{self, PingProber, Stop, SweepConfig};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// A child of this process that has exited and was not reaped, or any child
/// at all when `exited_only` is false. Leaves it unreaped (`WNOWAIT`).
fn some_child(exited_only: bool) -> Option<libc::pid_t> {
    let mut flags = libc::WNOHANG | libc::WNOWAIT | libc::WEXITED;
    if !exited_only {
        flags |= libc::WSTOPPED | libc::WCONTINUED;
    }
    // SAFETY: a zeroed siginfo_t is a valid out-value for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: P_ALL ignores the id; `info` is valid for the call.
    let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, flags) };
    if ret == -1 {
        // ECHILD: no child at all.
        return None;
    }
    // SAFETY: waitid filled `info`; si_pid is 0 when no child matched.
    let pid = unsafe { info.si_pid() };
    (pid != 0).then_some(pid)
}

/// Any child of this process left, running or not.
fn any_child() -> bool {
    // ECHILD from waitpid(-1, WNOHANG) means none at all.
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG only inspects; status is a valid out-pointer.
    let ret = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    ret != -1
}

fn sweep_once() {
    let ping = resolve_ping(std::env::var_os("PATH").as_deref())
        .expect("this test needs ping: apt-get install iputils-ping");
    let cfg = SweepConfig {
        ping_program: ping,
        ping: PingParams::default(),
        retries: 0,
        interval: Duration::ZERO,
        concurrency: 256,
    };
    let hosts: Vec<Ipv4Addr> = (1..=254).map(|h| Ipv4Addr::new(127, 0, 0, h)).collect();
    let mut runner = tulip::Runner::new();
    let outcome = runner
        .run(async move {
            let before = open_fds();
            let outcome = sweep::run(hosts, &cfg, PingProber::new(), &Stop::new(), |_| {}).await;
            // Released by the sweep itself, not only when the loop closes.
            assert_eq!(open_fds(), before, "descriptors left open by the sweep");
            Ok(outcome)
        })
        .unwrap()
        .unwrap();
    assert_eq!(outcome.results.len(), 254);
    assert!(outcome.results.iter().all(|p| p.up));
    // Every child was reaped by the sweep itself, before the loop closed.
    assert_eq!(runner.get_loop().unwrap().unreaped_children(), 0);
    runner.close();
    assert_eq!(some_child(true), None, "a zombie child is left");
    assert!(!any_child(), "a child is left");
}

#[test]
fn a_loopback_sweep_leaves_no_zombie_and_no_descriptor() {
    let before = open_fds();
    sweep_once();
    let after_one = open_fds();
    sweep_once();
    let after_two = open_fds();
    assert_eq!(
        after_two, after_one,
        "descriptors grew from {after_one} to {after_two} over the second sweep"
    );
    assert_eq!(
        after_one, before,
        "descriptors grew from {before} to {after_one} over the first sweep"
    );
}
