//! Option parsing: fping's spellings, defaults, conflicts, and exit code 3 for
//! usage errors.

use std::time::Duration;

use pinger::cli::{clap_exit_code, parse_args};
use pinger::error::{
    exit_code_for_signal, EXIT_ALL_UP, EXIT_INTERRUPTED, EXIT_INVALID_ARGS, EXIT_TERMINATED,
};
use pinger::output::{Filter, Format};

fn parse(args: &[&str]) -> Result<pinger::cli::Cli, clap::Error> {
    parse_args(std::iter::once("pinger").chain(args.iter().copied()))
}

fn usage_error(args: &[&str]) -> clap::Error {
    let err = parse(args).expect_err(&format!("{args:?} should be refused"));
    assert_eq!(clap_exit_code(&err), EXIT_INVALID_ARGS, "{args:?}");
    err
}

#[test]
fn defaults_mirror_the_seed() {
    let cli = parse(&[]).unwrap();
    assert_eq!(cli.ping_params(), pinger::ping::PingParams::default());
    let cfg = cli.sweep_config("/usr/bin/ping".into());
    assert_eq!(cfg.concurrency, 256);
    assert_eq!(cfg.retries, 0);
    assert_eq!(cfg.interval, Duration::ZERO);
    assert_eq!(cli.spawn_threads, pinger::sweep::default_spawn_threads());
    assert_eq!(cli.format(), Format::Table);
    assert_eq!(cli.filter(), Filter::All);
}

#[test]
fn no_target_sweeps_loopback() {
    let sel = parse(&[]).unwrap().selection().unwrap();
    assert!(sel.defaulted);
    assert_eq!(sel.hosts.len(), 254);
    assert_eq!(
        sel.hosts.iter().next(),
        Some(std::net::Ipv4Addr::new(127, 0, 0, 1))
    );
}

#[test]
fn fping_spellings() {
    let cli = parse(&[
        "-c",
        "3",
        "-t",
        "250",
        "-r",
        "2",
        "-i",
        "10",
        "-a",
        "-s",
        "-e",
        "--concurrency",
        "8",
        "--json",
        "--max-hosts",
        "10",
        "--exit-zero-if-any-up",
        "--no-color",
        "127.0.1.1-5",
    ])
    .unwrap();
    assert_eq!(
        (cli.count, cli.timeout, cli.retry, cli.interval),
        (3, 250, 2, 10)
    );
    assert!(cli.alive && cli.stats && cli.elapsed && cli.exit_zero_if_any_up && cli.no_color);
    assert_eq!(cli.concurrency, 8);
    assert_eq!(cli.format(), Format::Json);
    assert_eq!(cli.filter(), Filter::Alive);
    let sel = cli.selection().unwrap();
    assert!(!sel.defaulted);
    assert_eq!(sel.hosts.len(), 5);

    let long = parse(&[
        "--count",
        "2",
        "--timeout",
        "500",
        "--retry",
        "1",
        "--interval",
        "5",
        "--unreach",
        "--stats",
        "--elapsed",
        "--csv",
    ])
    .unwrap();
    assert_eq!(long.filter(), Filter::Unreachable);
    assert_eq!(long.format(), Format::Csv);
    assert_eq!(parse(&["-q"]).unwrap().filter(), Filter::Quiet);
}

#[test]
fn spawn_threads_from_zero_to_sixty_four() {
    for n in [0, 1, 64] {
        let cli = parse(&["--spawn-threads", &n.to_string()]).unwrap();
        assert_eq!(cli.spawn_threads, n);
    }
    let default = pinger::sweep::default_spawn_threads();
    assert!((2..=8).contains(&default), "{default}");
    usage_error(&["--spawn-threads", "65"]);
    usage_error(&["--spawn-threads", "-1"]);
    usage_error(&["--spawn-threads", "x"]);
}

#[test]
fn max_hosts_is_applied_to_selection() {
    let err = parse(&["--max-hosts", "3", "127.0.1.1-127.0.1.4"])
        .unwrap()
        .selection()
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_INVALID_ARGS);
    assert!(err.to_string().contains("--max-hosts 4"), "{err}");
}

#[test]
fn bad_targets_exit_3() {
    for target in [
        "127.0.1.256",
        "::1",
        "example.com",
        "127.0.1.9-127.0.1.1",
        "0.0.0.0/0",
    ] {
        let err = parse(&[target]).unwrap().selection().unwrap_err();
        assert_eq!(err.exit_code(), EXIT_INVALID_ARGS, "{target}: {err}");
    }
}

#[test]
fn usage_errors_exit_3() {
    usage_error(&["--bogus"]);
    usage_error(&["-c", "0"]);
    usage_error(&["-c", "x"]);
    usage_error(&["-t", "0"]);
    usage_error(&["--concurrency", "0"]);
    usage_error(&["--json", "--csv"]);
    usage_error(&["-a", "-u"]);
    usage_error(&["-f"]);
    // An interval past ten minutes (the timeout's bound) is a typo, not a
    // sweep that should sit for ages between two probes.
    usage_error(&["-i", "600001"]);
    usage_error(&["-i", "18446744073709551615"]);
    assert!(parse(&["-i", "600000", "127.0.0.1"]).is_ok());
}

#[test]
fn quiet_with_alive_or_unreach_lists_those_hosts_as_fping() {
    // `fping -aq` (or `-qa -g NET`) is the usual way to list live hosts;
    // -a and -u decide the list, -q does not silence it.
    for (args, want) in [
        (&["-a", "-q"][..], Filter::Alive),
        (&["-q", "-a"][..], Filter::Alive),
        (&["-u", "-q"][..], Filter::Unreachable),
        (&["-q", "-u", "-s"][..], Filter::Unreachable),
    ] {
        let cli = parse(args).unwrap_or_else(|e| panic!("{args:?} refused: {e}"));
        assert_eq!(cli.filter(), want, "{args:?}");
    }
}

#[test]
fn a_dash_target_is_an_option_not_an_address() {
    // `-5` is refused by clap, and after `--` by the target parser.
    usage_error(&["-5"]);
    let err = parse(&["--", "-5"]).unwrap().selection().unwrap_err();
    assert_eq!(err.exit_code(), EXIT_INVALID_ARGS);
}

#[test]
fn help_and_version_exit_0_and_document_exit_codes() {
    let err = parse(&["--help"]).unwrap_err();
    assert_eq!(clap_exit_code(&err), EXIT_ALL_UP);
    let help = err.to_string();
    for needle in [
        "Exit codes:",
        "0    every host",
        "1    at least one",
        "3    invalid",
        "4    system failure",
        "130  interrupted by Ctrl-C",
        "143  stopped by SIGTERM",
        "--exit-zero-if-any-up",
        "127.0.0.0/24",
    ] {
        assert!(help.contains(needle), "{needle:?} in help");
    }
    assert_eq!(
        clap_exit_code(&parse(&["--version"]).unwrap_err()),
        EXIT_ALL_UP
    );
}

#[test]
fn a_signal_stopped_sweep_exits_128_plus_the_signal() {
    assert_eq!(exit_code_for_signal(libc::SIGINT), EXIT_INTERRUPTED);
    assert_eq!(exit_code_for_signal(libc::SIGTERM), EXIT_TERMINATED);
}
