//! The network-namespace fixture itself: addresses on `lo` answer, the rest of
//! the /24 stays silent, and the namespace is gone after drop, even after a
//! panic. Uses the system `ping` directly; only inside the test's namespace.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::{exists, run_bounded, NetNs, GATEWAY_HOST};
use pinger::ping::{parse_reply, PingParams};

/// `ping -c 1 -w 1 -W 1` ends by its own deadline; this is only a backstop.
const PING_LIMIT: Duration = Duration::from_secs(10);

fn ping_in(ns: &NetNs, host: u8) -> common::netns::Finished {
    let mut cmd = ns.command(ping_path());
    cmd.args(PingParams::default().args(ns.addr(host)))
        .env_clear()
        .env("LC_ALL", "C");
    run_bounded(&mut cmd, PING_LIMIT)
}

fn ping_path() -> std::path::PathBuf {
    pinger::ping::resolve_ping(std::env::var_os("PATH").as_deref())
        .expect("these tests need ping: apt-get install iputils-ping")
}

#[test]
fn lo_hosts_answer_and_the_rest_is_silent() {
    let Some(ns) = NetNs::create("lo_hosts_answer_and_the_rest_is_silent", &[10, 20, 200]) else {
        return;
    };
    assert_eq!(
        ns.up_hosts(),
        [
            ns.addr(GATEWAY_HOST),
            ns.addr(10),
            ns.addr(20),
            ns.addr(200)
        ]
    );
    for host in [GATEWAY_HOST, 10, 20, 200] {
        let done = ping_in(&ns, host);
        let reply = parse_reply(&done.stdout);
        assert!(
            reply.up,
            "{} should answer:\n{}",
            ns.addr(host),
            done.stdout_text()
        );
        assert!(done.status.success());
        assert!(reply.rtt_ms.is_some());
    }
    for host in [2, 50, 254] {
        let done = ping_in(&ns, host);
        let reply = parse_reply(&done.stdout);
        assert!(
            !reply.up,
            "{} should be silent:\n{}",
            ns.addr(host),
            done.stdout_text()
        );
        assert!(done.stdout_text().contains("100% packet loss"));
        assert_eq!(done.status.code(), Some(1));
        // The deadline, not some longer ARP timeout, ends the probe.
        assert!(done.elapsed < Duration::from_secs(3), "{:?}", done.elapsed);
    }
}

#[test]
fn commands_run_inside_the_namespace() {
    let Some(ns) = NetNs::create("commands_run_inside_the_namespace", &[7]) else {
        return;
    };
    let done = run_bounded(ns.command("ip").args(["-4", "addr", "show"]), PING_LIMIT);
    let text = done.stdout_text();
    assert!(text.contains(&format!("{}/32", ns.addr(7))), "{text}");
    assert!(
        text.contains(&format!("{}/24", ns.addr(GATEWAY_HOST))),
        "{text}"
    );
    assert!(text.contains("v0@v1"), "{text}");
    // The host namespace does not have the test addresses.
    let host = run_bounded(Command::new("ip").args(["-4", "addr", "show"]), PING_LIMIT);
    assert!(!host.stdout_text().contains(&ns.addr(7).to_string()));
}

#[test]
fn drop_removes_the_namespace() {
    let Some(ns) = NetNs::create("drop_removes_the_namespace", &[]) else {
        return;
    };
    let name = ns.name().to_string();
    assert!(exists(&name));
    drop(ns);
    assert!(!exists(&name), "{name} is still there");
}

#[test]
fn panic_still_removes_the_namespace() {
    let mut created = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Some(ns) = NetNs::create("panic_still_removes_the_namespace", &[5]) else {
            return;
        };
        created = Some(ns.name().to_string());
        panic!("deliberate failure inside a test using the fixture");
    }));
    let Some(name) = created else {
        return; // skipped
    };
    assert!(outcome.is_err());
    assert!(!exists(&name), "{name} survived the panic");
}
