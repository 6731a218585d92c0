//! Runs every area-C example (network I/O: S1.5, S2.19, S2.23, S3.15,
//! S3.24a-c, S3.25, S4.5, the HTTP responder and the benchmark's echo
//! servers, and S3.24a*, a seed program that seed-examples.md does not list)
//! and checks its output.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_elapsed, example_path, run_example, stderr, stdout};

/// Starts a long-running example and returns it with the port from its
/// first line (see [`spawn_server_all`]); the rest of its output is read
/// in the background and dropped, so the server never blocks on stdout.
fn spawn_server(name: &str, args: &[&str]) -> (Child, u16, String) {
    let (Server { child, .. }, port, first) = spawn_server_all(name, args);
    (child, port, first)
}

/// A long-running example whose output after its first line is kept.
struct Server {
    child: Child,
    /// The rest of its stdout, once it has exited.
    rest: std::thread::JoinHandle<String>,
}

/// Like [`spawn_server`], but keeps the rest of the output: the port is
/// the last number of the first line (`... 127.0.0.1:PORT` or
/// `... ('127.0.0.1', PORT)`).
fn spawn_server_all(name: &str, args: &[&str]) -> (Server, u16, String) {
    let mut child = Command::new(example_path(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server example");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("first line");
    let port = first
        .trim()
        .trim_end_matches(')')
        .rsplit([':', ' '])
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        rest
    });
    (Server { child, rest }, port, first)
}

/// Waits for a child with a deadline, killing it if it overruns.
fn wait_bounded(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("example did not exit in {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn echo_server_and_client() {
    let (mut server, port, first) = spawn_server_all("echo_server", &["0", "--clients", "2"]);
    // The seed prints `str(sock.getsockname())`, a Python tuple.
    assert_eq!(
        first.trim_end(),
        format!("Serving on ('127.0.0.1', {port})")
    );
    let p = port.to_string();
    // The seed prints the messages with `{message!r}`: Python's repr of a
    // str, in single quotes (double quotes when it holds a single one).
    let msgs = [("Hello World!", "'Hello World!'"), ("it's", "\"it's\"")];
    for (msg, repr) in msgs {
        let (out, _) = run_example("echo_client", &[&p, msg], Duration::from_secs(20));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            format!("Send: {repr}\nReceived: {repr}\nClose the connection\n")
        );
    }
    assert!(wait_bounded(&mut server.child, 20).success());
    let rest = server.rest.join().expect("the reader thread");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 6, "{rest}");
    for (i, (_, repr)) in msgs.iter().enumerate() {
        let part = &lines[3 * i..3 * i + 3];
        // `{addr!r}` of the peername: `('127.0.0.1', PORT)`.
        let from = format!("Received {repr} from ('127.0.0.1', ");
        assert!(
            part[0].starts_with(&from) && part[0].ends_with(')'),
            "{rest}"
        );
        assert_eq!(part[1], format!("Send: {repr}"), "{rest}");
        assert_eq!(part[2], "Close the connection", "{rest}");
    }
}

/// Seed 003, lines ~2300–2367 (unlisted; S3.24a* in the README): the
/// `client.py` / `server.py` pair, one message each way.
#[test]
fn hello_server_and_client() {
    let (mut server, port, first) = spawn_server_all("hello_server", &["0", "--clients", "1"]);
    // The seed prints its fixed port; the port here is the one it got.
    assert_eq!(
        first.trim_end(),
        format!("Server running on 127.0.0.1:{port}")
    );
    let (out, took) = run_example(
        "hello_client",
        &[&port.to_string()],
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Connection established.\nReceived: Hello, client!\n"
    );
    // One round trip on the loopback: no waiting anywhere.
    assert_elapsed(took, 0.0, 5.0);
    assert!(wait_bounded(&mut server.child, 20).success());
    let rest = server.rest.join().expect("the reader thread");
    assert_eq!(rest, "Received Hello, server! from client.\n");
}

#[test]
fn http_server_keep_alive_and_paths() {
    let (mut server, port, first) = spawn_server("http_server", &["127.0.0.1:0", "--for", "20"]);
    assert!(first.starts_with("Serving on 127.0.0.1:"), "{first}");
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Two requests on one keep-alive connection, then a 404 that closes it.
    conn.write_all(
        b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /page/2 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    conn.write_all(b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    conn.read_to_string(&mut all).unwrap();
    let responses: Vec<&str> = all.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(responses.len(), 3, "{all}");
    assert!(responses[0].starts_with("200 OK"));
    assert!(responses[0].contains("Content-Length: 13\r\n"));
    assert!(responses[0].ends_with("Hello, World!"));
    assert!(responses[1].contains("href=\"/page/3\""));
    assert!(responses[2].starts_with("404 Not Found"));
    assert!(responses[2].contains("Connection: close"));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn http_headers() {
    let (out, _) = run_example("http_headers", &[], Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "HTTP header> HTTP/1.1 200 OK\nHTTP header> Server: tulip\n\
         HTTP header> Content-Type: text/html\nHTTP header> Content-Length: 33\n\
         HTTP header> Connection: close\n"
    );
}

#[test]
fn socketpair() {
    let (out, _) = run_example("socketpair", &[], Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Received: abc\n");
}

#[test]
fn unix_echo() {
    let (out, _) = run_example("unix_echo", &[], Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Server running on "));
    for i in 1..=3 {
        assert!(lines.contains(&format!("Server received: Hello, server! ({i})").as_str()));
        assert!(lines.contains(&format!("Client {i} received: Hello, client!").as_str()));
    }
    assert_eq!(
        lines.last(),
        Some(&"Server closed; socket file removed: true")
    );
}

#[test]
fn echo_bench_server_both_kinds() {
    for kind in ["protocol", "streams"] {
        let (mut server, port, first) = spawn_server("echo_bench_server", &[kind]);
        assert!(first.starts_with("LISTENING "), "{first}");
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let msg: Vec<u8> = (0..100 * 1024).map(|i| (i % 253) as u8).collect();
        for _ in 0..3 {
            conn.write_all(&msg).unwrap();
            let mut back = vec![0u8; msg.len()];
            conn.read_exact(&mut back).unwrap();
            assert!(back == msg, "{kind}: echoed bytes differ");
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}

#[test]
fn http_server_bench_handshake() {
    let (mut server, port, first) =
        spawn_server("http_server", &["127.0.0.1:0", "--bench", "--for", "20"]);
    assert_eq!(first.trim(), format!("LISTENING {port}"));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn queue_crawler() {
    let (out, _) = run_example("queue_crawler", &[], Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut pages: Vec<u32> = text
        .lines()
        .map(|l| {
            let n = l.split('"').nth(3).expect("a page number");
            n.parse().expect("a number")
        })
        .collect();
    pages.sort_unstable();
    assert_eq!(
        pages,
        (0..1000).collect::<Vec<_>>(),
        "every page exactly once"
    );
}

#[test]
fn http_get() {
    let (out, _) = run_example("http_get", &[], Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 10);
    assert_eq!(text.matches("<a href=\"/page/9\">").count(), 10);
    let last = text.lines().last().unwrap_or_default();
    let secs: f64 = last
        .strip_prefix("last time:")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad last line {last:?}"));
    assert!(secs < 10.0);
}

#[test]
fn semaphore_fetch() {
    let (out, elapsed) = run_example("semaphore_fetch", &[], Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    for l in &lines[..4] {
        assert!(
            l.starts_with("http://127.0.0.1:") && l.ends_with("/slow/100:200"),
            "{l}"
        );
    }
    assert!(lines[4..].iter().all(|l| *l == "slept 100 ms"));
    // Four 100 ms fetches, two at a time: about 200 ms, never 100 or 400.
    common::assert_elapsed(elapsed, 0.2, 0.2 + SLACK);
}

/// Slack above a timing: process start-up, a loaded machine.
const SLACK: f64 = 1.5;

#[test]
fn gather_fetch() {
    let (out, _) = run_example("gather_fetch", &[], Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    let mut fetched: Vec<&str> = lines[..3].to_vec();
    fetched.sort_unstable();
    assert!(fetched[0].starts_with("Fetching: http://127.0.0.1:"));
    assert_eq!(
        &lines[3..],
        [
            "Content 1 length: 342",
            "Content 2 length: 28",
            "Content 3 length: 151"
        ]
    );
}

#[test]
fn areq() {
    let dir = std::env::temp_dir().join(format!("tulip-areq-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().expect("utf-8 temp dir");
    let (out, _) = run_example("areq", &[d], Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert_eq!(
        log.matches("INFO:areq: Got response [200]").count(),
        4,
        "{log}"
    );
    assert!(
        log.contains("/this-url-will-404.html [404]: Not Found"),
        "{log}"
    );
    // asyncio's wording: `Connect call failed ('127.0.0.1', PORT)`.
    assert!(
        log.contains("[None]: connect call failed (127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("Connection refused"), "{log}");
    assert!(
        log.contains("Found 10 links for http://127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("Found 0 links for"), "{log}");
    assert_eq!(
        log.matches("Wrote results for source URL").count(),
        3,
        "{log}"
    );
    let tsv = std::fs::read_to_string(dir.join("foundurls.txt")).expect("foundurls.txt");
    let rows: Vec<&str> = tsv.lines().collect();
    assert_eq!(rows[0], "source_url\tparsed_url");
    // 10 links on the index, 4 on each of two pages.
    assert_eq!(rows.len(), 1 + 10 + 4 + 4, "{tsv}");
    assert!(rows[1..].iter().all(|r| r.split('\t').count() == 2));
    let _ = std::fs::remove_dir_all(&dir);
}
