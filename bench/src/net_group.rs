//! The `net` group (issue 4): a vmbench-shaped echo test and an HTTP
//! responder under `wrk`, everything on 127.0.0.1.
//!
//! Each server runs in its own process, started by the measuring child:
//! `bench --serve KIND CONTENDER` for tulip, tokio and the floor,
//! `peers/net_servers.py` for asyncio and uvloop. A server binds
//! 127.0.0.1 on a free port and prints `LISTENING <port>`. The load comes
//! from the same client for every server: the blocking-socket echo client
//! below, or `wrk -t1 -c64`.
//!
//! The echo client is closed-loop: each client waits for its echo before
//! sending again, so throughput and *mean* latency are tied (Little's law:
//! mean = clients / msgs per s), while the median also depends on how the
//! server orders its connections. A server that serves one connection
//! several times in a row while the others wait gets a low median and a
//! high p99 for the same mean. So next to p50 and p99 the client reports
//! the mean, the slowest client's share of the messages (`worst_pct`:
//! 100 when every connection got its turn), and the server's CPU time per
//! message, read from `/proc/PID/stat` over the measured span.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Echo message sizes (bytes) and client concurrencies.
pub const ECHO_SIZES: &[(usize, &str)] = &[(1024, "1k"), (10 * 1024, "10k"), (100 * 1024, "100k")];
/// Concurrent echo clients.
pub const ECHO_CONCURRENCY: &[usize] = &[4, 10];
/// How long each echo measurement runs.
pub const ECHO_SECONDS: f64 = 2.0;
/// The tokio echo server's read buffer: vmbench's `read(102400)`. A 100
/// KiB message fills it exactly, and tokio only learns that a socket is
/// drained from a read that does *not* fill the buffer
/// (`tokio/src/io/poll_evented.rs`: `if 0 < n && n < len {
/// clear_readiness }`); so after each 100 KiB echo the task reads the same
/// socket again, and finds the client's next message whenever the client
/// ran in the meantime (on the server's CPU, woken by the echo). That
/// serves a connection up to 64 times in a row (tokio's coop budget of 128
/// reads and writes) while the others wait.
pub const TOKIO_ECHO_BUF: usize = 102_400;

/// The read buffer of the `tokio-256k` echo server: asyncio's `max_size`,
/// the size tulip's transports read with. No message fills it, so this
/// tokio server waits for epoll after every message, like tulip.
pub const TOKIO_ECHO_BUF_256K: usize = 256 * 1024;

/// wrk's arguments for the http case.
pub const WRK_ARGS: &[&str] = &["-t1", "-c64", "-d5s", "--latency"];

/// The path wrk asks for (tulip's example answers `Hello, World!` there).
pub const HTTP_PATH: &str = "/plaintext";

/// The canned HTTP response body.
pub const BODY: &[u8] = b"Hello, World!";

/// The full response to one request: byte for byte what tulip's
/// examples/http_server sends for `/plaintext`.
pub fn http_response() -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: tulip\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    r.extend_from_slice(BODY);
    r
}

/// `echo-10k-c4` → (10240, 4).
pub fn parse_echo_case(case: &str) -> Option<(usize, usize)> {
    let rest = case.strip_prefix("echo-")?;
    let (label, c) = rest.split_once("-c")?;
    let size = ECHO_SIZES.iter().find(|(_, l)| *l == label)?.0;
    Some((size, c.parse().ok()?))
}

// ===== starting and stopping a server =====

/// A server child process; killed on drop.
pub struct Server {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

impl Server {
    /// The server process's id (its CPU time is read from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a server could not be started: skip (the peer is missing) or fail.
pub enum StartError {
    /// The server printed `SKIP reason`.
    Skip(String),
    /// Anything else.
    Failed(String),
}

/// Starts `argv` and waits for its `LISTENING <port>` line.
pub fn start_server(argv: &[String]) -> Result<Server, StartError> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| StartError::Failed(format!("cannot start {}: {e}", argv[0])))?;
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let fail = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        why
    };
    // tulip's examples/http_server says `Serving on 127.0.0.1:PORT`.
    let line = line.map(|l| match l.strip_prefix("Serving on ") {
        Some(addr) => format!("LISTENING {}", addr.rsplit(':').next().unwrap_or("")),
        None => l,
    });
    match line {
        Ok(l) if l.starts_with("LISTENING ") => match l[10..].trim().parse() {
            Ok(port) => Ok(Server { child, port }),
            Err(_) => Err(StartError::Failed(fail(
                &mut child,
                format!("bad line {l:?}"),
            ))),
        },
        Ok(l) if l.starts_with("SKIP") => Err(StartError::Skip(fail(
            &mut child,
            l[4..].trim().to_string(),
        ))),
        Ok(l) => Err(StartError::Failed(fail(
            &mut child,
            format!("unexpected first line {l:?}"),
        ))),
        Err(_) => Err(StartError::Failed(fail(
            &mut child,
            "server printed no LISTENING line in 20 s".into(),
        ))),
    }
}

// ===== the echo client =====

/// Runs `concurrency` blocking clients against `port` for `seconds`, each
/// sending a `size`-byte message and reading it back, over and over.
/// Returns msgs/s, MiB/s, latency percentiles and mean in µs, the slowest
/// client's share (`worst_pct`) and, given the server's pid, the server's
/// CPU µs per message (`srv_cpu_us`).
pub fn echo_client(
    port: u16,
    size: usize,
    concurrency: usize,
    seconds: f64,
    server_pid: Option<u32>,
) -> Result<BTreeMap<String, f64>, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let cpu0 = server_pid.and_then(proc_cpu_seconds);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            std::thread::spawn(move || -> Result<Vec<u32>, String> {
                let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(10)))
                    .map_err(|e| e.to_string())?;
                let msg = vec![b'x'; size];
                let mut buf = vec![0u8; size];
                let mut lat = Vec::with_capacity(100_000);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    s.write_all(&msg).map_err(|e| format!("write: {e}"))?;
                    s.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
                    lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                }
                Ok(lat)
            })
        })
        .collect();
    let start = Instant::now();
    let mut per_client: Vec<Vec<u32>> = Vec::with_capacity(concurrency);
    for t in threads {
        per_client.push(
            t.join()
                .map_err(|_| "client thread panicked".to_string())??,
        );
    }
    let took = start.elapsed().as_secs_f64();
    let cpu1 = server_pid.and_then(proc_cpu_seconds);
    let mut m = echo_stats(&per_client, size, took)?;
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        m.insert("srv_cpu_us".into(), (b - a) * 1e6 / m["msgs"]);
    }
    m.remove("msgs");
    Ok(m)
}

/// The echo metrics of one run from each client's latencies (ns), in
/// completion order: `msgs_per_s`, `mib_per_s`, `p50_us`, `p99_us`,
/// `mean_us`, `worst_pct` (the slowest client's message count as a
/// percentage of the average per client) and `msgs` (the total).
pub fn echo_stats(
    per_client: &[Vec<u32>],
    size: usize,
    took: f64,
) -> Result<BTreeMap<String, f64>, String> {
    let mut all: Vec<u32> = per_client.iter().flatten().copied().collect();
    if all.is_empty() {
        return Err("no echo completed".into());
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let n = all.len() as f64;
    let mean_ns = all.iter().map(|&x| x as f64).sum::<f64>() / n;
    let fewest = per_client.iter().map(Vec::len).min().unwrap_or(0) as f64;
    let mut m = BTreeMap::new();
    m.insert("msgs".into(), n);
    m.insert("msgs_per_s".into(), n / took);
    m.insert(
        "mib_per_s".into(),
        n * size as f64 / took / (1024.0 * 1024.0),
    );
    m.insert("p50_us".into(), pct(0.50));
    m.insert("p99_us".into(), pct(0.99));
    m.insert("mean_us".into(), mean_ns / 1000.0);
    m.insert(
        "worst_pct".into(),
        100.0 * fewest / (n / per_client.len() as f64),
    );
    Ok(m)
}

/// User + system CPU seconds of process `pid` so far, from `/proc/PID/stat`.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3
    // (state): utime and stime are fields 14 and 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

// ===== wrk =====

/// Runs wrk against `port`; returns req/s and latency percentiles in ms.
/// Fails if wrk saw socket errors or non-2xx answers: those requests are
/// not the same work, so the rate is no number to compare.
pub fn run_wrk(port: u16) -> Result<BTreeMap<String, f64>, String> {
    let out = Command::new("wrk")
        .args(WRK_ARGS)
        .arg(format!("http://127.0.0.1:{port}{HTTP_PATH}"))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let m = parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output: {text}"))?;
    if m.get("errors").is_some_and(|&e| e > 0.0) {
        let what: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
            .collect();
        return Err(format!("wrk saw errors: {}", what.join("; ")));
    }
    Ok(m)
}

/// Reads `Requests/sec:` and the `--latency` distribution from wrk's output.
pub fn parse_wrk(text: &str) -> Option<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some("Requests/sec:"), Some(v)) => {
                m.insert("req_per_s".to_string(), v.parse().ok()?);
            }
            (Some("50%"), Some(v)) => {
                m.insert("p50_ms".to_string(), wrk_ms(v)?);
            }
            (Some("99%"), Some(v)) => {
                m.insert("p99_ms".to_string(), wrk_ms(v)?);
            }
            (Some("Socket"), Some("errors:")) | (Some("Non-2xx"), _) => {
                // Errors make the number meaningless for comparison; count them.
                let errs: f64 = line
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|x| x.parse::<f64>().ok())
                    .sum();
                *m.entry("errors".to_string()).or_insert(0.0) += errs;
            }
            _ => {}
        }
    }
    m.contains_key("req_per_s").then_some(m)
}

/// wrk's durations: `512.00us`, `1.20ms`, `2.00s`.
fn wrk_ms(v: &str) -> Option<f64> {
    if let Some(x) = v.strip_suffix("us") {
        x.parse::<f64>().ok().map(|x| x / 1000.0)
    } else if let Some(x) = v.strip_suffix("ms") {
        x.parse().ok()
    } else if let Some(x) = v.strip_suffix('s') {
        x.parse::<f64>().ok().map(|x| x * 1000.0)
    } else {
        None
    }
}

// ===== tokio current_thread servers =====

/// `bench --serve echo|http tokio|tokio-256k`: the echo server reads into
/// `read_buf` bytes ([`TOKIO_ECHO_BUF`] or [`TOKIO_ECHO_BUF_256K`]).
pub fn serve_tokio(kind: &str, read_buf: usize) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let kind = kind.to_string();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        println!("LISTENING {}", l.local_addr()?.port());
        std::io::stdout().flush()?;
        loop {
            let (mut s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            if kind == "echo" {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; read_buf];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            } else {
                tokio::spawn(async move {
                    let resp = http_response();
                    let mut buf = Vec::with_capacity(4096);
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Answer every complete request in the buffer.
                        while let Some(end) = find_head_end(&buf) {
                            buf.drain(..end);
                            if s.write_all(&resp).await.is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        }
    })
}

/// The end of the first request head (`\r\n\r\n`) in `buf`, past the separator.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

// ===== the floor: a raw epoll server =====

/// `bench --serve echo|http floor`: level-triggered epoll on non-blocking
/// sockets, one buffer per connection, no runtime. What wrk and the kernel
/// allow on this machine.
pub fn serve_floor(kind: &str) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, IntoRawFd};
    let http = kind == "http";
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    println!("LISTENING {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let lfd = listener.as_raw_fd();
    let resp = http_response();
    // SAFETY: plain syscalls on fds this function owns; every return is checked.
    unsafe {
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if ep < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: lfd as u64,
        };
        if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, lfd, &mut ev) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut bufs: BTreeMap<i32, Vec<u8>> = BTreeMap::new();
        let mut chunk = vec![0u8; 102_400];
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        loop {
            let n = libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1);
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in &events[..n as usize] {
                let fd = ev.u64 as i32;
                if fd == lfd {
                    while let Ok((s, _)) = listener.accept() {
                        let _ = s.set_nodelay(true);
                        let _ = s.set_nonblocking(true);
                        let cfd = s.into_raw_fd();
                        let mut cev = libc::epoll_event {
                            events: libc::EPOLLIN as u32,
                            u64: cfd as u64,
                        };
                        libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, cfd, &mut cev);
                        bufs.insert(cfd, Vec::new());
                    }
                    continue;
                }
                let r = libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len());
                if r <= 0 {
                    if r < 0
                        && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
                    {
                        continue;
                    }
                    libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
                    libc::close(fd);
                    bufs.remove(&fd);
                    continue;
                }
                let got = &chunk[..r as usize];
                if http {
                    let buf = bufs.entry(fd).or_default();
                    buf.extend_from_slice(got);
                    while let Some(end) = find_head_end(buf) {
                        buf.drain(..end);
                        write_all_blocking(fd, &resp);
                    }
                } else {
                    write_all_blocking(fd, got);
                }
            }
        }
    }
}

/// Writes everything, waiting with poll(2) if the socket buffer is full.
/// (A real server would buffer and wait for EPOLLOUT; these responses are
/// small or echoed in step with a closed-loop client, so it rarely waits.)
fn write_all_blocking(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: `data` is a live slice; `fd` is an open socket.
        let w = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if w > 0 {
            data = &data[w as usize..];
            continue;
        }
        if w < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 1000) };
            continue;
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "\
Running 5s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.26us  100.00us   5.00ms   90.00%
    Req/Sec   120.00k     5.00k  130.00k    80.00%
  Latency Distribution
     50%  480.00us
     75%  520.00us
     90%  600.00us
     99%    1.20ms
  600000 requests in 5.00s, 50.00MB read
Requests/sec: 120000.00
Transfer/sec:     10.00MB
";
        let m = parse_wrk(text).expect("parsed");
        assert_eq!(m["req_per_s"], 120000.0);
        assert!((m["p50_ms"] - 0.48).abs() < 1e-9);
        assert!((m["p99_ms"] - 1.2).abs() < 1e-9);
        assert!(parse_wrk("garbage").is_none());
        let bad = format!("{text}  Socket errors: connect 0, read 3, write 0, timeout 1\n");
        assert_eq!(parse_wrk(&bad).expect("parsed")["errors"], 4.0);
    }

    #[test]
    fn echo_stats_show_an_unfair_server() {
        // Two clients, 1 s: one served 30 times at 10 µs, the other 10
        // times at 100 µs. The median is the fast client's, the mean and
        // the worst share tell the rest.
        let fast = vec![10_000u32; 30];
        let slow = vec![100_000u32; 10];
        let m = echo_stats(&[fast, slow], 1024, 1.0).unwrap();
        assert_eq!(m["msgs"], 40.0);
        assert_eq!(m["msgs_per_s"], 40.0);
        assert_eq!(m["p50_us"], 10.0);
        assert_eq!(m["p99_us"], 100.0);
        assert!((m["mean_us"] - 32.5).abs() < 1e-9);
        assert!((m["worst_pct"] - 50.0).abs() < 1e-9);
        assert!(echo_stats(&[vec![], vec![]], 1024, 1.0).is_err());
    }

    #[test]
    fn reads_our_own_cpu_time() {
        let t = proc_cpu_seconds(std::process::id()).expect("/proc/self/stat");
        assert!(t >= 0.0);
        assert!(proc_cpu_seconds(u32::MAX).is_none());
    }

    #[test]
    fn reads_echo_case_names() {
        assert_eq!(parse_echo_case("echo-10k-c4"), Some((10 * 1024, 4)));
        assert_eq!(parse_echo_case("echo-100k-c10"), Some((100 * 1024, 10)));
        assert_eq!(parse_echo_case("http"), None);
    }

    #[test]
    fn the_response_is_well_formed() {
        let r = http_response();
        let head_end = find_head_end(&r).expect("a head");
        assert_eq!(&r[head_end..], BODY);
        let head = std::str::from_utf8(&r[..head_end]).unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", BODY.len())));
    }

    #[test]
    fn finds_request_heads() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
