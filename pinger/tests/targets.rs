//! Target parsing and expansion: the `fping -g` rules and every refusal.

use std::net::Ipv4Addr;
use std::path::Path;

use pinger::error::EXIT_INVALID_ARGS;
use pinger::targets::{
    count_hosts, expand, expand_hosts, parse_target, parse_target_file, ExpandOptions, Target,
};
use pinger::Error;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn hosts(targets: &[&str]) -> Result<Vec<Ipv4Addr>, Error> {
    let parsed: Vec<Target> = targets.iter().map(|t| parse_target(t).unwrap()).collect();
    expand(&parsed, &ExpandOptions::default())
}

fn err_text(input: &str) -> String {
    let err = parse_target(input).expect_err(input);
    assert_eq!(err.exit_code(), EXIT_INVALID_ARGS, "{err}");
    let text = err.to_string();
    assert_eq!(text, text.to_lowercase(), "messages are lowercase: {text}");
    text
}

#[test]
fn single_address() {
    assert_eq!(
        parse_target(" 10.0.0.7 ").unwrap(),
        Target::Single(ip("10.0.0.7"))
    );
    assert_eq!(hosts(&["10.0.0.7"]).unwrap(), vec![ip("10.0.0.7")]);
}

#[test]
fn cidr_24_leaves_out_network_and_broadcast() {
    let h = hosts(&["192.168.31.0/24"]).unwrap();
    assert_eq!(h.len(), 254);
    assert_eq!(h[0], ip("192.168.31.1"));
    assert_eq!(h[253], ip("192.168.31.254"));
}

#[test]
fn cidr_host_bits_are_masked() {
    assert_eq!(
        parse_target("192.168.31.77/24").unwrap(),
        Target::Cidr {
            network: ip("192.168.31.0"),
            prefix: 24
        }
    );
    assert_eq!(
        hosts(&["10.1.2.3/30"]).unwrap(),
        vec![ip("10.1.2.1"), ip("10.1.2.2")]
    );
}

#[test]
fn cidr_31_gives_both_and_32_gives_one() {
    assert_eq!(
        hosts(&["10.0.0.4/31"]).unwrap(),
        vec![ip("10.0.0.4"), ip("10.0.0.5")]
    );
    assert_eq!(
        hosts(&["10.0.0.5/31"]).unwrap(),
        vec![ip("10.0.0.4"), ip("10.0.0.5")]
    );
    assert_eq!(hosts(&["10.0.0.9/32"]).unwrap(), vec![ip("10.0.0.9")]);
}

#[test]
fn cidr_at_the_top_of_the_space() {
    let h = hosts(&["255.255.255.252/30"]).unwrap();
    assert_eq!(h, vec![ip("255.255.255.253"), ip("255.255.255.254")]);
    assert_eq!(
        hosts(&["255.255.255.255/32"]).unwrap(),
        vec![Ipv4Addr::BROADCAST]
    );
}

#[test]
fn zero_prefix_refused_unless_allowed() {
    let t = [parse_target("0.0.0.0/0").unwrap()];
    let err = expand(&t, &ExpandOptions::default()).unwrap_err();
    assert!(matches!(err, Error::ZeroPrefix { .. }), "{err:?}");
    assert!(err.to_string().contains("--allow-zero-prefix"), "{err}");
    assert_eq!(err.exit_code(), EXIT_INVALID_ARGS);

    // Allowed, the host limit still applies, and counting does not expand.
    let opts = ExpandOptions {
        allow_zero_prefix: true,
        ..ExpandOptions::default()
    };
    let err = expand(&t, &opts).unwrap_err();
    assert!(
        matches!(err, Error::TooManyHosts { count, .. } if count == (1u64 << 32) - 2),
        "{err:?}"
    );
    assert_eq!(count_hosts(&t), (1u64 << 32) - 2);
}

#[test]
fn host_limit_is_exact_and_raisable() {
    // A /16 is 65,534 hosts: allowed by default.
    assert_eq!(hosts(&["10.0.0.0/16"]).unwrap().len(), 65_534);
    // A /15 is above the default limit.
    let t = [parse_target("10.0.0.0/15").unwrap()];
    let err = expand(&t, &ExpandOptions::default()).unwrap_err();
    assert!(err.to_string().contains("--max-hosts 131070"), "{err}");
    let opts = ExpandOptions {
        max_hosts: 131_070,
        ..ExpandOptions::default()
    };
    assert_eq!(expand(&t, &opts).unwrap().len(), 131_070);
    // Overlap is counted once: two copies of a /16 stay under the limit.
    assert_eq!(
        hosts(&["10.0.0.0/16", "10.0.128.0/17"]).unwrap().len(),
        65_534
    );
}

#[test]
fn ranges_long_and_short() {
    let long = hosts(&["10.0.0.1-10.0.0.50"]).unwrap();
    assert_eq!(long.len(), 50);
    assert_eq!((long[0], long[49]), (ip("10.0.0.1"), ip("10.0.0.50")));
    assert_eq!(hosts(&["10.0.0.1-50"]).unwrap(), long);
    // Ranges keep .0 and .255: they are taken literally.
    assert_eq!(hosts(&["10.0.0.255-10.0.1.0"]).unwrap().len(), 2);
    assert_eq!(hosts(&["10.0.0.3-10.0.0.3"]).unwrap(), vec![ip("10.0.0.3")]);
}

#[test]
fn reversed_range_says_how_to_fix_it() {
    let text = err_text("10.0.0.50-10.0.0.1");
    assert!(text.contains("reversed"), "{text}");
    assert!(text.contains("10.0.0.1-10.0.0.50"), "{text}");
    let text = err_text("10.0.0.50-1");
    assert!(text.contains("10.0.0.1-10.0.0.50"), "{text}");
}

#[test]
fn duplicates_and_order() {
    let h = hosts(&["10.0.0.9", "10.0.0.0/29", "10.0.0.3-10.0.0.10", "10.0.0.1"]).unwrap();
    let want: Vec<Ipv4Addr> = (1..=10).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
    assert_eq!(h, want);
}

#[test]
fn bad_octets() {
    for (input, needle) in [
        ("10.0.0.256", "out of range 0-255"),
        ("10.0.0.999/24", "out of range 0-255"),
        ("10.0.0", "3 dot-separated parts"),
        ("10.0.0.1.5", "5 dot-separated parts"),
        ("10.0..1", "empty"),
        ("10.0.0.01", "leading zero"),
        ("10.0.0.+1", "not a decimal number"),
        ("10.0.0.1-300", "out of range 0-255"),
    ] {
        let text = err_text(input);
        assert!(text.contains(needle), "{input}: {text}");
        assert!(text.contains(input), "{input}: names the input: {text}");
    }
}

#[test]
fn bad_prefixes() {
    for input in [
        "10.0.0.0/33",
        "10.0.0.0/",
        "10.0.0.0/x",
        "10.0.0.0/-1",
        "10.0.0.0/024",
    ] {
        let text = err_text(input);
        assert!(text.contains("from 0 to 32"), "{input}: {text}");
    }
}

#[test]
fn ipv6_gets_a_clear_error() {
    for input in [
        "::1",
        "fe80::1/64",
        "2001:db8::1-2001:db8::5",
        "::ffff:10.0.0.1",
    ] {
        let err = parse_target(input).unwrap_err();
        assert!(matches!(err, Error::Ipv6 { .. }), "{input}: {err:?}");
        assert!(err.to_string().contains("ipv6"), "{err}");
    }
}

/// `10.0.0.1:80` is an ipv4 address with a port, not ipv6: the error says so.
#[test]
fn an_address_with_a_port_is_not_called_ipv6() {
    for input in ["10.0.0.1:80", "127.0.0.1:"] {
        let err = parse_target(input).unwrap_err();
        assert!(
            matches!(err, Error::InvalidTarget { .. }),
            "{input}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("no port") && !text.contains("ipv6"), "{text}");
    }
}

#[test]
fn hostnames_get_a_clear_error() {
    for input in ["localhost", "example.com", "router-1", "10.0.0.a"] {
        let err = parse_target(input).unwrap_err();
        assert!(matches!(err, Error::Hostname { .. }), "{input}: {err:?}");
        assert!(err.to_string().contains("resolve it first"), "{err}");
    }
}

#[test]
fn empty_and_dash_inputs_are_refused() {
    assert!(matches!(parse_target("  "), Err(Error::EmptyTarget)));
    for input in ["-c", "-1", "--", "-10.0.0.1"] {
        assert!(parse_target(input).is_err(), "{input}");
    }
}

#[test]
fn no_argv_element_can_start_with_a_dash() {
    // Whatever expands, the address we put in argv is digits and dots.
    for h in hosts(&["0.0.0.1-0.0.0.20", "255.255.255.240/28"]).unwrap() {
        let s = h.to_string();
        assert!(s.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{s}");
    }
}

#[test]
fn target_file_with_comments_and_blank_lines() {
    let text = "# lab hosts\n\n10.0.0.1\n  10.0.0.8/30   # a /30\n\t\n10.0.0.20-22\n10.0.0.1\n";
    let targets = parse_target_file(text, Path::new("hosts.txt")).unwrap();
    assert_eq!(targets.len(), 4);
    let h = expand(&targets, &ExpandOptions::default()).unwrap();
    let want: Vec<Ipv4Addr> = [1, 9, 10, 20, 21, 22]
        .iter()
        .map(|&i| Ipv4Addr::new(10, 0, 0, i))
        .collect();
    assert_eq!(h, want);
}

/// fping reads the first word of each line (`sscanf("%s")`), so a list
/// with a name or a note after each address (`10.0.0.1 router`, a hosts
/// file's layout) works with it; pinger read the whole line as the target
/// and called `10.0.0.1 router` a hostname to resolve.
#[test]
fn target_file_takes_the_first_word_of_each_line_as_fping() {
    let text = "10.0.0.1 router\n10.0.0.2\tgateway # upstairs\n  10.0.0.8/30  lab  \n";
    let targets = parse_target_file(text, Path::new("hosts.txt")).unwrap();
    assert_eq!(
        targets,
        vec![
            Target::Single(ip("10.0.0.1")),
            Target::Single(ip("10.0.0.2")),
            Target::Cidr {
                network: ip("10.0.0.8"),
                prefix: 30
            },
        ]
    );
}

#[test]
fn target_file_errors_name_file_and_line() {
    let err = parse_target_file("10.0.0.1\n# ok\nnot-an-ip\n", Path::new("hosts.txt")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("hosts.txt, line 3: "), "{text}");
    assert!(text.contains("hostname"), "{text}");
    assert_eq!(err.exit_code(), EXIT_INVALID_ARGS);

    let err = parse_target_file("# nothing\n\n", Path::new("empty.txt")).unwrap_err();
    assert!(matches!(err, Error::EmptyFile { .. }), "{err:?}");
}

/// Only the first word of a line is read (as fping), so `10.0.0.0 /24`,
/// a network written with a space, swept the one address 10.0.0.0 without
/// a word. A second word that is a prefix length is an error on its line
/// that shows the network written right; a note stays a note.
#[test]
fn a_prefix_length_after_a_space_is_an_error_not_a_note() {
    for (line, fixed) in [
        ("10.0.0.0 /24", "`10.0.0.0/24`"),
        ("10.0.0.0\t/24 # lab", "`10.0.0.0/24`"),
        ("10.0.0.0 / 24", "`10.0.0.0/24`"),
    ] {
        let text = format!("# lab\n10.0.0.1 router\n{line}\n");
        let err = parse_target_file(&text, Path::new("hosts.txt")).unwrap_err();
        assert!(matches!(err, Error::InFile { line: 3, .. }), "{err:?}");
        assert_eq!(err.exit_code(), EXIT_INVALID_ARGS);
        let msg = err.to_string();
        assert!(msg.starts_with("hosts.txt, line 3: "), "{msg}");
        assert!(msg.contains("prefix length"), "{msg}");
        assert!(msg.contains(&format!("write it as {fixed}")), "{msg}");
    }
    // Joined, the network must be valid too; if not, that is the error.
    let err = parse_target_file("10.0.0.0 /33", Path::new("hosts.txt")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("hosts.txt, line 1: "), "{msg}");
    assert!(msg.contains("`/33` must be a number from 0 to 32"), "{msg}");
    // After a range or a network, the prefix length has nothing to join.
    for line in ["10.0.0.1-50 /24", "10.0.0.0/24 /24"] {
        let err = parse_target_file(line, Path::new("hosts.txt")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("hosts.txt, line 1: "), "{msg}");
        assert!(msg.contains("remove the `/24`"), "{msg}");
    }
    // Notes that are not a prefix length are still notes.
    let text = "10.0.0.1 /srv/lab\n10.0.0.2 /\n10.0.0.3 /24x\n10.0.0.4 24\n";
    let targets = parse_target_file(text, Path::new("hosts.txt")).unwrap();
    assert_eq!(targets.len(), 4);
}

#[test]
fn target_file_from_disk_and_missing_file() {
    let dir = std::env::temp_dir().join(format!("pinger-targets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("targets.txt");
    std::fs::write(&path, "127.0.0.1\n127.0.0.2 # second\n").unwrap();
    let targets = pinger::targets::read_target_file(&path).unwrap();
    assert_eq!(targets.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();

    let err = pinger::targets::read_target_file(&dir.join("missing.txt")).unwrap_err();
    assert!(matches!(err, Error::ReadFile { .. }), "{err:?}");
    assert_eq!(err.exit_code(), pinger::error::EXIT_SYSTEM_FAILURE);
}

/// A target file saved with a UTF-8 byte order mark (Windows editors do
/// that) reads like any other: the mark is not part of the first target,
/// where it made an invisible, baffling "octet `127` is not a decimal number".
#[test]
fn target_file_that_is_not_utf8_is_read_as_fping_reads_it() {
    // An old hosts list with Latin-1 comments: fping reads it (bytes, not
    // text), so the comments' encoding cannot make the file "unreadable".
    let dir = std::env::temp_dir().join(format!("pinger-latin1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hosts.txt");
    std::fs::write(&path, b"# B\xfcro\n127.0.0.1\n127.0.0.2 # K\xfcche\n").unwrap();
    let read = pinger::targets::read_target_file(&path);
    // A stray byte in a target itself is a bad target, on its line: exit 3,
    // not a system failure.
    std::fs::write(&path, b"127.0.0.1\n127.0.0.\xb2\n").unwrap();
    let bad = pinger::targets::read_target_file(&path);
    std::fs::remove_dir_all(&dir).unwrap();

    let targets = read.unwrap();
    assert_eq!(
        targets,
        vec![
            Target::Single(ip("127.0.0.1")),
            Target::Single(ip("127.0.0.2"))
        ]
    );
    let err = bad.unwrap_err();
    assert!(matches!(err, Error::InFile { line: 2, .. }), "{err:?}");
    assert_eq!(err.exit_code(), EXIT_INVALID_ARGS);
}

#[test]
fn target_file_with_a_byte_order_mark_is_read() {
    let path = Path::new("hosts.txt");
    let targets = parse_target_file("\u{feff}10.0.0.1\r\n10.0.0.2\r\n", path).unwrap();
    assert_eq!(
        targets,
        vec![
            Target::Single(ip("10.0.0.1")),
            Target::Single(ip("10.0.0.2"))
        ]
    );
}

#[test]
fn hosts_are_walked_not_written_out() {
    // A /0 (allowed on purpose) is 2^32 - 2 addresses, counted and walked
    // from its interval; nothing proportional to it is allocated.
    let t = [parse_target("0.0.0.0/0").unwrap()];
    let opts = ExpandOptions {
        max_hosts: u64::MAX,
        allow_zero_prefix: true,
    };
    let all = expand_hosts(&t, &opts).unwrap();
    assert_eq!(all.len(), (1 << 32) - 2);
    let mut it = all.iter();
    assert_eq!(it.size_hint().0 as u64, (1 << 32) - 2);
    assert_eq!(it.next(), Some(ip("0.0.0.1")));
    assert_eq!(it.next(), Some(ip("0.0.0.2")));
    // Merged and in order across targets, as `expand` writes them out.
    let t: Vec<Target> = ["127.0.0.9", "127.0.0.1-3", "127.0.0.2-4"]
        .iter()
        .map(|s| parse_target(s).unwrap())
        .collect();
    let lazy = expand_hosts(&t, &ExpandOptions::default()).unwrap();
    let walked: Vec<Ipv4Addr> = lazy.iter().collect();
    assert_eq!(walked, expand(&t, &ExpandOptions::default()).unwrap());
    assert_eq!(lazy.len(), 5);
    assert_eq!(lazy.iter().size_hint(), (5, Some(5)));
}
