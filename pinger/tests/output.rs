//! Table, JSON Lines and CSV formatting, the summary line, stats, colour rules,
//! the progress formatter, and exit-code mapping.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::time::Duration;

use pinger::error::{EXIT_ALL_UP, EXIT_SOME_DOWN};
use pinger::localtime::LocalTime;
use pinger::output::{
    csv_field, csv_record, json_record, json_string, json_summary, stats_block, summary_line,
    table_header, table_row, use_color, write_results, Filter, Format, OutputOptions, CSV_HEADER,
};
use pinger::progress::{progress_line, Progress};
use pinger::sweep::{exit_code, finish_results, Probe, Summary};

fn t() -> LocalTime {
    LocalTime::from_ymd_hms(2024, 3, 7, 9, 5, 1)
}

fn probe(last: u8, up: bool, rtt_ms: Option<f64>) -> Probe {
    Probe {
        time: t(),
        ip: Ipv4Addr::new(127, 0, 0, last),
        up,
        rtt_ms,
        attempts: 1,
    }
}

fn sample() -> (Vec<Probe>, Summary) {
    let mut results = vec![
        probe(3, false, None),
        probe(1, true, Some(0.045)),
        probe(2, true, Some(1.5)),
    ];
    finish_results(&mut results);
    let summary = Summary::from_results(&results, Duration::from_millis(1042));
    (results, summary)
}

fn render(opts: OutputOptions) -> String {
    let (results, summary) = sample();
    let mut out = Vec::new();
    write_results(&mut out, &results, &summary, &opts).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn table_in_address_order() {
    let text = render(OutputOptions::default());
    assert_eq!(
        text,
        "TIME                 ADDRESS          STATE\n\
         2024-03-07 09:05:01  127.0.0.1        up\n\
         2024-03-07 09:05:01  127.0.0.2        up\n\
         2024-03-07 09:05:01  127.0.0.3        down\n"
    );
}

#[test]
fn table_with_rtt_column() {
    let text = render(OutputOptions {
        elapsed: true,
        ..OutputOptions::default()
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], table_header(true));
    assert_eq!(lines[0], "TIME                 ADDRESS          STATE  RTT");
    assert_eq!(
        lines[1],
        "2024-03-07 09:05:01  127.0.0.1        up     0.045 ms"
    );
    assert_eq!(lines[3], "2024-03-07 09:05:01  127.0.0.3        down   -");
}

#[test]
fn table_colour_is_the_seeds() {
    assert_eq!(
        table_row(&probe(1, true, None), true, false),
        "\x1b[1;32;1m2024-03-07 09:05:01  127.0.0.1        up\x1b[0m"
    );
    assert_eq!(
        table_row(&probe(1, false, None), true, false),
        "\x1b[1;31;1m2024-03-07 09:05:01  127.0.0.1        down\x1b[0m"
    );
    assert!(!render(OutputOptions::default()).contains('\x1b'));
}

#[test]
fn colour_rules() {
    assert!(use_color(true, None, false));
    assert!(!use_color(false, None, false), "not a tty");
    assert!(
        !use_color(true, Some(OsStr::new("1")), false),
        "NO_COLOR set"
    );
    assert!(
        use_color(true, Some(OsStr::new("")), false),
        "empty NO_COLOR ignored"
    );
    assert!(!use_color(true, None, true), "--no-color");
}

#[test]
fn filters() {
    let only = |filter| {
        render(OutputOptions {
            filter,
            ..OutputOptions::default()
        })
    };
    let alive = only(Filter::Alive);
    assert!(alive.contains("127.0.0.1") && alive.contains("127.0.0.2"));
    assert!(!alive.contains("127.0.0.3"));
    let unreach = only(Filter::Unreachable);
    assert!(!unreach.contains("127.0.0.1") && unreach.contains("127.0.0.3"));
    assert_eq!(only(Filter::Quiet), "");
}

#[test]
fn json_lines() {
    let text = render(OutputOptions {
        format: Format::Json,
        ..OutputOptions::default()
    });
    assert_eq!(
        text,
        "{\"ip\":\"127.0.0.1\",\"up\":true,\"rtt_ms\":0.045,\"time\":\"2024-03-07 09:05:01\"}\n\
         {\"ip\":\"127.0.0.2\",\"up\":true,\"rtt_ms\":1.500,\"time\":\"2024-03-07 09:05:01\"}\n\
         {\"ip\":\"127.0.0.3\",\"up\":false,\"rtt_ms\":null,\"time\":\"2024-03-07 09:05:01\"}\n\
         {\"summary\":{\"addresses\":3,\"up\":2,\"down\":1,\"elapsed_s\":1.042,\
         \"targets\":3,\"interrupted\":false}}\n"
    );
    // Quiet JSON still carries the summary.
    let quiet = render(OutputOptions {
        format: Format::Json,
        filter: Filter::Quiet,
        ..OutputOptions::default()
    });
    assert_eq!(quiet.lines().count(), 1);
    assert!(quiet.starts_with("{\"summary\":"));
}

#[test]
fn json_never_writes_nan() {
    let p = probe(1, true, Some(f64::NAN));
    assert!(json_record(&p).contains("\"rtt_ms\":null"));
    let (_, summary) = sample();
    assert!(json_summary(&summary).ends_with("}}"));
}

#[test]
fn json_string_escapes() {
    assert_eq!(json_string("plain"), "\"plain\"");
    assert_eq!(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_eq!(json_string("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
    assert_eq!(
        json_string("\u{0}\u{1f}\u{7f}"),
        "\"\\u0000\\u001f\\u007f\""
    );
    assert_eq!(json_string("\u{2028}é"), "\"\\u2028é\"");
}

#[test]
fn csv_records() {
    let text = render(OutputOptions {
        format: Format::Csv,
        ..OutputOptions::default()
    });
    assert_eq!(
        text,
        "ip,up,rtt_ms,time\n\
         127.0.0.1,true,0.045,2024-03-07 09:05:01\n\
         127.0.0.2,true,1.500,2024-03-07 09:05:01\n\
         127.0.0.3,false,,2024-03-07 09:05:01\n"
    );
    assert_eq!(
        CSV_HEADER.split(',').count(),
        csv_record(&probe(1, true, None)).split(',').count()
    );
}

#[test]
fn csv_field_quoting() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
}

#[test]
fn summary_line_exact() {
    let s = Summary {
        addresses: 254,
        up: 12,
        down: 242,
        attempts: 254,
        elapsed: Duration::from_millis(1040),
        rtt: None,
        targets: 0,
        interrupted: false,
    };
    assert_eq!(
        summary_line(&s),
        "254 addresses (12 up, 242 down) in 1.04 s"
    );
    let one = Summary {
        addresses: 1,
        up: 1,
        down: 0,
        ..s
    };
    assert_eq!(summary_line(&one), "1 address (1 up, 0 down) in 1.04 s");
    // A few milliseconds (a small loopback sweep) do not read as nothing.
    let quick = Summary {
        elapsed: Duration::from_micros(4_300),
        ..one
    };
    assert_eq!(summary_line(&quick), "1 address (1 up, 0 down) in 0.004 s");
}

#[test]
fn summary_and_stats_from_results() {
    let (_, summary) = sample();
    assert_eq!((summary.addresses, summary.up, summary.down), (3, 2, 1));
    let rtt = summary.rtt.unwrap();
    assert_eq!((rtt.min_ms, rtt.max_ms), (0.045, 1.5));
    assert!((rtt.avg_ms - 0.7725).abs() < 1e-9);
    let stats = stats_block(&summary);
    for needle in [
        "3 targets",
        "2 alive",
        "1 unreachable",
        "3 ping runs",
        "0.045 ms (min round trip time)",
        "1.500 ms (max round trip time)",
        "1.042 s (elapsed real time)",
    ] {
        assert!(stats.contains(needle), "{needle:?} in\n{stats}");
    }
    assert!(!stats.contains("interruption"), "{stats}");
    // Cut short: `targets` is what was given, and the block says how many
    // of them were decided.
    let cut = stats_block(&Summary {
        targets: 254,
        interrupted: true,
        ..summary
    });
    assert!(cut.contains("254 targets"), "{cut}");
    assert!(cut.contains("3 decided before the interruption"), "{cut}");
}

#[test]
fn exit_codes_follow_fping() {
    let s = |up, down| Summary {
        addresses: up + down,
        up,
        down,
        attempts: 0,
        elapsed: Duration::ZERO,
        rtt: None,
        targets: 0,
        interrupted: false,
    };
    assert_eq!(exit_code(&s(3, 0), false), EXIT_ALL_UP);
    assert_eq!(exit_code(&s(2, 1), false), EXIT_SOME_DOWN);
    assert_eq!(exit_code(&s(0, 3), false), EXIT_SOME_DOWN);
    assert_eq!(exit_code(&s(2, 1), true), EXIT_ALL_UP);
    assert_eq!(exit_code(&s(0, 3), true), EXIT_SOME_DOWN);
}

#[test]
fn progress_formatter() {
    assert_eq!(
        progress_line(120, 254, 12, Duration::from_millis(520)),
        "[120/254] 12 up, 108 down, 0.52 s"
    );
    assert_eq!(
        progress_line(7, 254, 7, Duration::ZERO),
        "[  7/254] 7 up, 0 down, 0.00 s"
    );
    // Disabled progress never draws (nothing to observe but that it is off).
    let mut p = Progress::with_enabled(10, false);
    p.update(1, 1);
    p.finish();
    assert!(!p.is_enabled());
}
