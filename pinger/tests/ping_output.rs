//! The ping argv and the output parser, on samples captured from iputils-ping
//! (`LC_ALL=C ping -c 1 -w 1 -W 1 ...`); see `tests/data/README.md`.

use std::net::Ipv4Addr;

use pinger::ping::{
    cannot_send, is_up, parse_cut_short, parse_reply, parse_rtt_ms, resolve_ping, PingCommand,
    PingParams,
};
use pinger::sweep::probe_limit;
use std::time::Duration;

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
    let text = "PING 127.0.0.9 (127.0.0.9) 56(84) bytes of data.\n\
                64 bytes from 127.0.0.9: icmp_seq=1 ttl=64 time=12.5 ms\n";
    assert_eq!(parse_rtt_ms(text), Some(12.5));
    // Large times are printed without decimals.
    let text = "64 bytes from 127.0.0.9: icmp_seq=1 ttl=64 time=1234 ms\n";
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
    assert_eq!(cmd.ip, Ipv4Addr::LOCALHOST);
    let mut tulip_cmd = cmd.to_command(tulip::subprocess::Stdio::DevNull);
    let std_cmd = tulip_cmd.as_std_mut();
    let envs: Vec<_> = std_cmd.get_envs().collect();
    assert_eq!(
        envs,
        [(
            std::ffi::OsStr::new("LC_ALL"),
            Some(std::ffi::OsStr::new("C"))
        )]
    );
    assert_eq!(std_cmd.get_program(), "/usr/bin/ping");
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

#[test]
fn a_ping_killed_at_its_deadline_is_up_only_if_a_reply_made_it_out() {
    // Killed before any reply: just the header, no statistics.
    let header = b"PING 10.0.0.5 (10.0.0.5) 56(84) bytes of data.\n";
    let r = parse_cut_short(header);
    assert!(!r.up && r.rtt_ms.is_none());
    // The seed's rule alone would call that up (no "100% packet loss").
    assert!(parse_reply(header).up);
    // Killed after a reply (a -c 3 probe cut short): up, with that reply's time.
    let one_reply = b"PING 10.0.0.5 (10.0.0.5) 56(84) bytes of data.\n\
        64 bytes from 10.0.0.5: icmp_seq=1 ttl=64 time=0.123 ms\n";
    let r = parse_cut_short(one_reply);
    assert!(r.up);
    assert_eq!(r.rtt_ms, Some(0.123));
    // Killed after several replies (a -c 3 probe whose last one is late):
    // their average, as ping's own `rtt min/avg/max` line would have said
    // and as `rtt_ms` is documented, not the first reply's time.
    let two_replies = b"PING 10.0.0.5 (10.0.0.5) 56(84) bytes of data.\n\
        64 bytes from 10.0.0.5: icmp_seq=1 ttl=64 time=1.00 ms\n\
        64 bytes from 10.0.0.5: icmp_seq=2 ttl=64 time=3.00 ms\n";
    let r = parse_cut_short(two_replies);
    assert!(r.up);
    assert_eq!(r.rtt_ms, Some(2.0));
    assert!(!parse_cut_short(b"").up);
    // An ICMP error is not a reply.
    let unreachable = b"From 10.0.0.1 icmp_seq=1 Destination Host Unreachable\n";
    assert!(!parse_cut_short(unreachable).up);
}

#[test]
fn the_driver_deadline_is_the_timeout_not_whole_seconds() {
    let p = |count, timeout_ms| PingParams { count, timeout_ms };
    let grace = pinger::sweep::KILL_GRACE;
    assert_eq!(probe_limit(&p(1, 250)), Duration::from_millis(250) + grace);
    assert_eq!(
        probe_limit(&p(1, 1000)),
        Duration::from_millis(1000) + grace
    );
    assert_eq!(probe_limit(&p(3, 200)), Duration::from_millis(2200) + grace);
    // ping's own -w stays whole seconds, and never earlier than the driver's.
    assert_eq!(p(1, 250).deadline_secs(), 1);
}

/// iputils' stderr when it cannot send at all (captured: a copy of
/// `ping` without its file capability, run as nobody and as root without
/// `cap_net_raw`), and the other wordings of the same failure.
#[test]
fn cannot_send_knows_a_ping_without_a_socket() {
    let nobody = include_str!("data/cannot_send_stderr.txt");
    let root = include_str!("data/cannot_send_root_stderr.txt");
    let judged = |text: &str| text.lines().map(cannot_send).collect::<Vec<_>>();
    assert_eq!(judged(nobody), [false, true, true]);
    assert_eq!(judged(root), [false, true]);
    for line in [
        "ping: socket: Operation not permitted",
        "/usr/bin/ping: socket: Permission denied\n",
        "ping: icmp open socket: Operation not permitted",
        "ping: => missing cap_net_raw+p capability or setuid?",
        "ping: cap_set_proc: Operation not permitted",
        "ping: permission denied (are you root?)",
        "ping: Lacking privilege for icmp socket.",
    ] {
        assert!(cannot_send(line), "{line:?}");
    }
}

/// Errors about one host are that host down, not a broken `ping`: no
/// route, a firewall rule against one destination, a broadcast address.
#[test]
fn cannot_send_leaves_errors_about_one_host_alone() {
    for line in [
        UNREACHABLE_STDERR.trim_end(),
        "ping: sendmsg: Operation not permitted",
        "/usr/bin/ping: connect: Permission denied",
        "ping: sendmsg: Network is unreachable",
        "ping: socket: Too many open files",
        "ping: socktype: SOCK_RAW",
        "Do you want to ping broadcast? Then -b. If not, check your local firewall rules",
        "",
    ] {
        assert!(!cannot_send(line), "{line:?}");
    }
}
