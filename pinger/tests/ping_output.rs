//! The ping argv and the output parser, on samples captured from iputils-ping
//! (`LC_ALL=C ping -c 1 -w 1 -W 1 ...`); see `tests/data/README.md`.

use std::net::Ipv4Addr;

use pinger::ping::{is_up, parse_reply, parse_rtt_ms, resolve_ping, PingCommand, PingParams};

const UP_LOOPBACK: &str = include_str!("data/up_loopback.txt");
const UP_LOOPBACK_COUNT3: &str = include_str!("data/up_loopback_count3.txt");
const UP_NETNS_LO: &str = include_str!("data/up_netns_lo.txt");
const DOWN_NETNS: &str = include_str!("data/down_netns.txt");
const DOWN_NETNS_COUNT2: &str = include_str!("data/down_netns_count2.txt");
const UNREACHABLE_STDERR: &str = include_str!("data/unreachable_stderr.txt");

#[test]
fn up_samples_are_up_with_rtt() {
    let r = parse_reply(UP_LOOPBACK.as_bytes());
    assert!(r.up);
    assert_eq!(r.rtt_ms, Some(0.021));
    let r = parse_reply(UP_NETNS_LO.as_bytes());
    assert!(r.up);
    assert_eq!(r.rtt_ms, Some(0.023));
}

#[test]
fn rtt_prefers_the_summary_average() {
    // Three replies; the summary's avg wins over the first `time=`.
    assert_eq!(parse_rtt_ms(UP_LOOPBACK_COUNT3), Some(0.029));
}

#[test]
fn rtt_falls_back_to_the_reply_line() {
    let text = "PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.\n\
                64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=12.5 ms\n";
    assert_eq!(parse_rtt_ms(text), Some(12.5));
    // Large times are printed without decimals.
    let text = "64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=1234 ms\n";
    assert_eq!(parse_rtt_ms(text), Some(1234.0));
    // busybox spelling of the summary.
    let text = "round-trip min/avg/max = 0.100/0.200/0.300 ms\n";
    assert_eq!(parse_rtt_ms(text), Some(0.2));
    assert_eq!(parse_rtt_ms("no numbers here\n"), None);
}

#[test]
fn down_samples_are_down_without_rtt() {
    for sample in [DOWN_NETNS, DOWN_NETNS_COUNT2] {
        assert!(sample.contains("100% packet loss"));
        let r = parse_reply(sample.as_bytes());
        assert!(!r.up, "{sample}");
        assert_eq!(r.rtt_ms, None);
    }
}

#[test]
fn empty_output_is_down() {
    // `ping: connect: Network is unreachable` goes to stderr; stdout is empty.
    assert!(UNREACHABLE_STDERR.starts_with("ping: connect"));
    assert!(!is_up(""));
    assert!(!is_up("\n"));
    assert!(!parse_reply(b"").up);
}

#[test]
fn partial_loss_is_up_like_the_seed() {
    let text = "3 packets transmitted, 1 received, 66.6667% packet loss, time 2003ms\n";
    assert!(is_up(text));
    let text = "1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms\n";
    assert!(!is_up(text));
}

#[test]
fn invalid_utf8_is_decoded_lossily() {
    let mut bytes = UP_LOOPBACK.as_bytes().to_vec();
    bytes.insert(0, 0xff);
    assert!(parse_reply(&bytes).up);
}

#[test]
fn default_args_are_the_seeds() {
    let args = PingParams::default().args(Ipv4Addr::new(192, 168, 31, 7));
    assert_eq!(args, ["-c", "1", "-w", "1", "-W", "1", "192.168.31.7"]);
}

#[test]
fn timeout_maps_to_fractional_seconds() {
    let p = |count, timeout_ms| PingParams { count, timeout_ms };
    assert_eq!(p(1, 1000).timeout_arg(), "1");
    assert_eq!(p(1, 250).timeout_arg(), "0.25");
    assert_eq!(p(1, 1).timeout_arg(), "0.001");
    assert_eq!(p(1, 1500).timeout_arg(), "1.5");
    assert_eq!(p(1, 2010).timeout_arg(), "2.01");
}

#[test]
fn deadline_covers_count_and_timeout() {
    let p = |count, timeout_ms| PingParams { count, timeout_ms };
    assert_eq!(p(1, 1000).deadline_secs(), 1);
    assert_eq!(p(1, 250).deadline_secs(), 1);
    assert_eq!(p(1, 1500).deadline_secs(), 2);
    assert_eq!(p(3, 1000).deadline_secs(), 3);
    assert_eq!(p(3, 200).deadline_secs(), 3);
    assert_eq!(
        p(4, 500).args(Ipv4Addr::LOCALHOST),
        ["-c", "4", "-w", "4", "-W", "0.5", "127.0.0.1"]
    );
}

#[test]
fn command_has_a_cleared_environment() {
    let cmd = PingCommand::new(
        std::path::Path::new("/usr/bin/ping"),
        &PingParams::default(),
        Ipv4Addr::LOCALHOST,
    );
    assert_eq!(cmd.env, [("LC_ALL", "C")]);
    let std_cmd = cmd.to_std();
    let envs: Vec<_> = std_cmd.get_envs().collect();
    assert_eq!(envs.len(), 1);
    assert_eq!(std_cmd.get_args().last().unwrap(), "127.0.0.1");
}

#[test]
fn resolve_ping_searches_path_and_reports_missing() {
    let dir = std::env::temp_dir().join(format!("pinger-resolve-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("ping");
    std::fs::write(&fake, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let path = std::env::join_paths([dir.join("empty"), bin.clone()]).unwrap();
    assert_eq!(resolve_ping(Some(&path)).unwrap(), fake);

    // Not executable: skipped.
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = resolve_ping(Some(&path)).unwrap_err();
    assert!(
        err.to_string().contains("apt-get install iputils-ping"),
        "{err}"
    );
    assert_eq!(err.exit_code(), pinger::error::EXIT_SYSTEM_FAILURE);
    std::fs::remove_dir_all(&dir).unwrap();
}
