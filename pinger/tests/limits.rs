//! Resource exhaustion at spawn: with a tiny open-file limit (`ulimit -n`),
//! `EMFILE` on spawn is waited out and retried. No crash, no host lost. With
//! a limit too small for even one probe, a clear error and exit 4.
//! Traffic: 127.0.0.0/8 only.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use common::netns::{run_bounded, Finished};

const PINGER: &str = env!("CARGO_BIN_EXE_pinger");

/// Runs pinger under `sh -c 'ulimit -n N; exec pinger ARGS'`.
fn pinger_with_nofile(nofile: u32, args: &[&str]) -> Finished {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(PINGER)
        .args(args);
    run_bounded(&mut cmd, Duration::from_secs(60))
}

#[test]
fn emfile_on_spawn_is_waited_out_and_no_host_is_lost() {
    // 24 descriptors: a few for stdio and the loop, then two per child (its
    // stdout pipe and its pidfd), so barely ten children fit at once, far
    // below --concurrency.
    let done = pinger_with_nofile(24, &["127.0.0.0/26", "--concurrency", "1000", "--json"]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr_text());
    let stdout = done.stdout_text();
    let up: BTreeSet<Ipv4Addr> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"ip\":") && l.contains("\"up\":true"))
        .map(|l| l[7..].split('"').next().unwrap().parse().unwrap())
        .collect();
    let want: BTreeSet<Ipv4Addr> = (1..=62).map(|h| Ipv4Addr::new(127, 0, 0, h)).collect();
    assert_eq!(up, want, "{stdout}");
    assert!(
        done.stderr_text().contains("62 addresses (62 up, 0 down)"),
        "{}",
        done.stderr_text()
    );
}

#[test]
fn a_limit_too_small_for_any_probe_is_exit_4_with_advice() {
    let done = pinger_with_nofile(8, &["127.0.0.1-4", "-q"]);
    assert_eq!(done.status.code(), Some(4), "{}", done.stderr_text());
    let stderr = done.stderr_text();
    assert!(stderr.contains("Too many open files"), "{stderr}");
    assert!(stderr.contains("ulimit -n"), "{stderr}");
}
