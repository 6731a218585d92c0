//! Runs the area-E seed example S0 (`examples/sweep.rs`, seed 000) on
//! loopback and checks its output against the seed's format and timing;
//! then inside a throwaway network namespace where most hosts are silent
//! (pinger's fixture), for the red lines and the one-second total. Traffic
//! goes to 127.0.0.0/8 and to the namespace's own /24 only.

mod common;

#[path = "../pinger/tests/common/netns.rs"]
#[allow(dead_code)]
mod netns;

use std::time::Duration;

use common::{assert_elapsed, example_path, run_example, stderr, stdout};

/// `('2024-03-07 09:05:01', '127.0.0.7', True)` → (time, ip, up).
fn parse_tuple(inner: &str) -> (String, String, bool) {
    let body = inner
        .strip_prefix("('")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a tuple: {inner:?}"));
    let (time, rest) = body.split_once("', '").expect("time, ip");
    let (ip, up) = rest.split_once("', ").expect("ip, up");
    let up = match up {
        "True" => true,
        "False" => false,
        other => panic!("bad bool {other:?}"),
    };
    (time.to_string(), ip.to_string(), up)
}

/// Checks the seed's whole output for hosts `prefix`1..=`count`, all up.
fn check_all_up(text: &str, prefix: &str, count: u32) {
    let lines: Vec<&str> = text.lines().collect();
    let n = count as usize;
    assert_eq!(lines.len(), 2 * n + 1, "{text}");

    // One `ping ...` line per host, printed as each coroutine starts.
    for (i, line) in lines[..n].iter().enumerate() {
        assert_eq!(*line, format!("ping -c 1 -w 1 -W 1 {prefix}{}", i + 1));
    }

    // One coloured tuple per host: green (32) for up, as the seed's
    // "\033[1;{};1m{}\033[0m".format(color_code, r.result()).
    let mut ips = Vec::new();
    for line in &lines[n..2 * n] {
        let inner = line
            .strip_prefix("\x1b[1;32;1m")
            .and_then(|s| s.strip_suffix("\x1b[0m"))
            .unwrap_or_else(|| panic!("not a green result line: {line:?}"));
        let (time, ip, up) = parse_tuple(inner);
        assert!(up, "{ip} is down: {line:?}");
        // '%Y-%m-%d %H:%M:%S'
        let b = time.as_bytes();
        assert_eq!(b.len(), 19, "{time}");
        for (i, c) in b.iter().enumerate() {
            match i {
                4 | 7 => assert_eq!(*c, b'-', "{time}"),
                10 => assert_eq!(*c, b' ', "{time}"),
                13 | 16 => assert_eq!(*c, b':', "{time}"),
                _ => assert!(c.is_ascii_digit(), "{time}"),
            }
        }
        ips.push(ip);
    }
    let want: Vec<String> = (1..=count).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(ips, want);

    // '所有IO任务总耗时%.5f秒'
    let last = lines[2 * n];
    let secs = last
        .strip_prefix("所有IO任务总耗时")
        .and_then(|s| s.strip_suffix("秒"))
        .unwrap_or_else(|| panic!("bad total line {last:?}"));
    let (_, decimals) = secs.split_once('.').expect("a decimal point");
    assert_eq!(decimals.len(), 5, "{last}");
    let secs: f64 = secs.parse().unwrap();
    assert!(secs > 0.0 && secs < 5.0, "{last}");
}

#[test]
fn s0_sweep_of_loopback_is_all_up_in_the_seeds_format() {
    let (out, took) = run_example("sweep", &[], Duration::from_secs(30));
    assert!(out.status.success(), "{:?}\n{}", out.status, stderr(&out));
    check_all_up(&stdout(&out), "127.0.0.", 255);
    // 255 pings at once: loopback answers at once, so well under the 1 s
    // a single silent host would cost; far from 255 sequential pings.
    assert_elapsed(took, 0.0, 5.0);
}

#[test]
fn s0_sweep_takes_a_prefix_and_a_count() {
    let (out, took) = run_example("sweep", &["127.0.3.", "8"], Duration::from_secs(20));
    assert!(out.status.success(), "{:?}\n{}", out.status, stderr(&out));
    check_all_up(&stdout(&out), "127.0.3.", 8);
    assert_elapsed(took, 0.0, 3.0);
}

/// A COUNT out of 1..=255 (or not a number) is refused with a message and
/// exit 2, before any ping, not a Rust panic.
#[test]
fn s0_sweep_refuses_a_bad_count() {
    for bad in ["0", "300", "ten"] {
        let (out, _) = run_example("sweep", &["127.0.3.", bad], Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains("COUNT must be a number from 1 to 255"));
        assert!(stdout(&out).is_empty(), "no ping ran: {}", stdout(&out));
    }
}

#[test]
fn s0_sweep_of_a_mostly_silent_subnet_takes_one_timeout() {
    let Some(ns) = netns::NetNs::create(
        "s0_sweep_of_a_mostly_silent_subnet_takes_one_timeout",
        &[7, 30],
    ) else {
        return;
    };
    let cidr = ns.cidr(); // 10.X.Y.0/24
    let prefix = &cidr[..cidr.len() - "0/24".len()];
    let mut cmd = ns.command(example_path("sweep"));
    cmd.args([prefix, "30"]);
    let done = netns::run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(done.status.success(), "{}", done.stderr_text());
    let text = done.stdout_text();
    let results: Vec<&str> = text.lines().filter(|l| l.starts_with('\x1b')).collect();
    assert_eq!(results.len(), 30, "{text}");
    let mut up = Vec::new();
    for line in &results {
        let (green, inner) = match line.strip_prefix("\x1b[1;32;1m") {
            Some(rest) => (true, rest),
            None => (
                false,
                line.strip_prefix("\x1b[1;31;1m")
                    .unwrap_or_else(|| panic!("neither green nor red: {line:?}")),
            ),
        };
        let (_, ip, is_up) = parse_tuple(inner.strip_suffix("\x1b[0m").unwrap());
        assert_eq!(green, is_up, "{line:?}");
        if is_up {
            up.push(ip);
        }
    }
    let want: Vec<String> = [1, 7, 30].iter().map(|h| format!("{prefix}{h}")).collect();
    assert_eq!(up, want);
    // 27 silent hosts, each `ping -w 1`: about one second in all, not 27.
    let last = text.lines().last().unwrap();
    let secs: f64 = last
        .strip_prefix("所有IO任务总耗时")
        .and_then(|s| s.strip_suffix("秒"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.9..3.0).contains(&secs), "{last}");
    assert_elapsed(done.elapsed, 0.9, 4.0);
}
