//! The async driver on a tulip loop, with scripted [`Prober`]s (no `ping`,
//! no network): one sorted result per host, the concurrency window, retries
//! of silent hosts only, the interval between starts, stopping mid-sweep,
//! and a fatal error ending the sweep. Then [`PingProber`] against stand-in
//! `ping` programs, for the driver's own deadline.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use pinger::ping::{PingCommand, PingParams};
use pinger::sweep::{self, Attempt, Outcome, PingProber, Prober, Stop, SweepConfig};
use pinger::Error;

const UP: &[u8] = include_bytes!("data/up_loopback.txt");
const DOWN: &[u8] = include_bytes!("data/down_netns.txt");

/// What the scripted prober saw.
#[derive(Debug, Default)]
struct Log {
    calls: HashMap<Ipv4Addr, u32>,
    in_flight: usize,
    max_in_flight: usize,
    argv_seen: Vec<Vec<String>>,
    /// Loop time of each start.
    starts: Vec<f64>,
    /// Probes that ended by cancellation.
    cancelled: usize,
}

/// Answers from a script: each host stays silent for some attempts, each
/// attempt takes some time (a cancellable tulip sleep), one host may fail.
#[derive(Debug, Default, Clone)]
struct Scripted {
    silent_for: HashMap<Ipv4Addr, u32>,
    delay: HashMap<Ipv4Addr, f64>,
    default_delay: f64,
    fail_on: Option<Ipv4Addr>,
    log: Rc<RefCell<Log>>,
}

impl Prober for Scripted {
    async fn probe(&self, cmd: &PingCommand, _limit: Duration) -> Result<Attempt, Error> {
        let ip = cmd.ip;
        {
            let mut log = self.log.borrow_mut();
            log.argv_seen.push(cmd.args.clone());
            log.starts.push(tulip::get_running_loop().unwrap().time());
            log.in_flight += 1;
            log.max_in_flight = log.max_in_flight.max(log.in_flight);
        }
        let delay = self.delay.get(&ip).copied().unwrap_or(self.default_delay);
        let slept = tulip::sleep(delay).await;
        let mut log = self.log.borrow_mut();
        log.in_flight -= 1;
        if let Err(e) = slept {
            log.cancelled += 1;
            return Err(Error::EventLoop(e));
        }
        if self.fail_on == Some(ip) {
            return Err(Error::PingNotFound);
        }
        let n = log.calls.entry(ip).or_default();
        *n += 1;
        let silent = self.silent_for.get(&ip).copied().unwrap_or(0);
        Ok(Attempt {
            stdout: if *n > silent { UP } else { DOWN }.to_vec(),
            cut_short: false,
        })
    }
}

fn cfg(retries: u32, concurrency: usize) -> SweepConfig {
    SweepConfig {
        ping_program: "/usr/bin/ping".into(),
        ping: PingParams::default(),
        retries,
        interval: Duration::ZERO,
        concurrency,
    }
}

fn ips(lasts: &[u8]) -> Vec<Ipv4Addr> {
    lasts.iter().map(|&l| Ipv4Addr::new(10, 0, 0, l)).collect()
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

/// Runs a sweep on a fresh loop; `stop_after` (seconds) stops it from a timer.
fn sweep_with<P: Prober + 'static>(
    hosts: &[Ipv4Addr],
    cfg: &SweepConfig,
    prober: P,
    stop_after: Option<f64>,
) -> (Result<Outcome, Error>, Vec<Ipv4Addr>, Duration) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let (hosts, cfg) = (hosts.to_vec(), cfg.clone());
    let start = Instant::now();
    let mut runner = tulip::Runner::new();
    let out = runner
        .run(async move {
            let stop = Stop::new();
            if let Some(t) = stop_after {
                let stopper = stop.clone();
                let _ = tulip::get_running_loop()?.call_later(t, move || stopper.stop())?;
            }
            let on_result = move |p: &sweep::Probe| s.borrow_mut().push(p.ip);
            Ok(sweep::run(hosts, &cfg, prober, &stop, on_result).await)
        })
        .unwrap();
    let lp = runner.get_loop().unwrap();
    assert_eq!(lp.unreaped_children(), 0);
    runner.close();
    let seen = seen.borrow().clone();
    (out, seen, start.elapsed())
}

#[test]
fn one_sorted_result_per_host_and_window_respected() {
    let mut prober = Scripted {
        default_delay: 0.005,
        ..Scripted::default()
    };
    prober.silent_for.insert(ip(2), u32::MAX);
    // Finish in reverse order, to see the final sort.
    for (i, h) in ips(&[1, 2, 3, 4, 5, 6, 7]).into_iter().enumerate() {
        prober.delay.insert(h, 0.002 * (8 - i) as f64);
    }
    let log = prober.log.clone();
    let hosts = ips(&[1, 2, 3, 4, 5, 6, 7]);
    let (out, seen, _) = sweep_with(&hosts, &cfg(0, 3), prober, None);
    let out = out.unwrap();
    assert!(!out.interrupted);
    let results = out.results;
    assert_eq!(results.iter().map(|p| p.ip).collect::<Vec<_>>(), hosts);
    assert_eq!(seen.len(), hosts.len());
    assert_ne!(seen, hosts, "on_result streams in completion order");
    assert_eq!(results.iter().filter(|p| !p.up).count(), 1);
    assert!(!results[1].up && results[1].rtt_ms.is_none());
    assert_eq!(results[0].rtt_ms, Some(0.021));
    let log = log.borrow();
    assert_eq!(log.max_in_flight, 3);
    assert_eq!(
        log.argv_seen[0],
        ["-c", "1", "-w", "1", "-W", "1", "10.0.0.1"]
    );
}

#[test]
fn the_window_bounds_a_large_sweep() {
    let prober = Scripted {
        default_delay: 0.001,
        ..Scripted::default()
    };
    let log = prober.log.clone();
    let hosts: Vec<Ipv4Addr> = (0..2000u32)
        .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
        .collect();
    let (out, seen, _) = sweep_with(&hosts, &cfg(0, 64), prober, None);
    let results = out.unwrap().results;
    assert_eq!(results.len(), 2000);
    assert_eq!(seen.len(), 2000);
    assert!(results.windows(2).all(|w| w[0].ip < w[1].ip));
    assert_eq!(log.borrow().max_in_flight, 64);
}

#[test]
fn retries_only_silent_hosts_and_only_as_often_as_asked() {
    let mut prober = Scripted::default();
    // .1 answers at once, .2 on its second attempt, .3 never.
    prober.silent_for.insert(ip(2), 1);
    prober.silent_for.insert(ip(3), u32::MAX);
    let log = prober.log.clone();
    let (out, _, _) = sweep_with(&ips(&[3, 2, 1]), &cfg(2, 256), prober, None);
    let by_ip: Vec<(u8, bool, u32)> = out
        .unwrap()
        .results
        .iter()
        .map(|p| (p.ip.octets()[3], p.up, p.attempts))
        .collect();
    assert_eq!(by_ip, [(1, true, 1), (2, true, 2), (3, false, 3)]);
    assert_eq!(log.borrow().calls[&ip(3)], 3);
    assert_eq!(log.borrow().calls[&ip(1)], 1);
}

#[test]
fn interval_spaces_every_start_retries_included() {
    let mut prober = Scripted::default();
    prober.silent_for.insert(ip(2), 1);
    let log = prober.log.clone();
    let mut c = cfg(1, 256);
    c.interval = Duration::from_millis(40);
    let (out, _, took) = sweep_with(&ips(&[1, 2, 3]), &c, prober, None);
    assert_eq!(out.unwrap().results.len(), 3);
    let starts = log.borrow().starts.clone();
    assert_eq!(starts.len(), 4, "three hosts and one retry");
    for w in starts.windows(2) {
        assert!(w[1] - w[0] >= 0.039, "starts too close: {starts:?}");
    }
    assert!(took >= Duration::from_millis(115), "{took:?}");
}

#[test]
fn empty_sweep_is_fine() {
    let (out, seen, _) = sweep_with(&[], &cfg(0, 1), Scripted::default(), None);
    let out = out.unwrap();
    assert!(out.results.is_empty() && seen.is_empty() && !out.interrupted);
}

#[test]
fn stop_keeps_the_decided_hosts_and_cancels_the_rest_at_once() {
    let mut prober = Scripted {
        default_delay: 30.0,
        ..Scripted::default()
    };
    prober.delay.insert(ip(1), 0.001);
    prober.delay.insert(ip(2), 0.002);
    let log = prober.log.clone();
    let hosts: Vec<Ipv4Addr> = (1..=50).map(ip).collect();
    let (out, seen, took) = sweep_with(&hosts, &cfg(0, 10), prober, Some(0.1));
    let out = out.unwrap();
    assert!(out.interrupted);
    let got: Vec<Ipv4Addr> = out.results.iter().map(|p| p.ip).collect();
    assert_eq!(got, [ip(1), ip(2)]);
    assert_eq!(seen, [ip(1), ip(2)]);
    let log = log.borrow();
    // Two windows' worth started (10, and 2 more as .1 and .2 finished), the
    // other 38 never; every slow one was cancelled, none is left running.
    assert_eq!(log.argv_seen.len(), 12);
    assert_eq!(log.cancelled, 10);
    assert_eq!(log.in_flight, 0);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn stop_between_attempts_reports_the_last_attempt() {
    let mut prober = Scripted {
        default_delay: 0.001,
        ..Scripted::default()
    };
    prober.silent_for.insert(ip(1), u32::MAX);
    let mut c = cfg(5, 4);
    c.interval = Duration::from_millis(100); // the retry waits for its slot
    let (out, _, _) = sweep_with(&[ip(1)], &c, prober, Some(0.05));
    let out = out.unwrap();
    assert!(out.interrupted);
    assert_eq!(out.results.len(), 1);
    assert!(!out.results[0].up);
    assert_eq!(out.results[0].attempts, 1);
}

#[test]
fn a_fatal_error_ends_the_sweep_and_is_returned() {
    let mut prober = Scripted {
        default_delay: 30.0,
        fail_on: Some(ip(3)),
        ..Scripted::default()
    };
    prober.delay.insert(ip(3), 0.01);
    let log = prober.log.clone();
    let hosts: Vec<Ipv4Addr> = (1..=20).map(ip).collect();
    let (out, _, took) = sweep_with(&hosts, &cfg(0, 5), prober, None);
    assert!(matches!(out, Err(Error::PingNotFound)), "{out:?}");
    let log = log.borrow();
    assert_eq!(log.argv_seen.len(), 5, "nothing started after the failure");
    assert_eq!(log.cancelled, 4);
    assert_eq!(log.in_flight, 0);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

// ===== PingProber against stand-in programs =====

/// An executable shell script standing in for `ping`, in a directory of
/// its own that is removed with it.
struct FakePing {
    dir: PathBuf,
}

impl FakePing {
    fn path(&self) -> PathBuf {
        self.dir.join("ping")
    }
}

impl Drop for FakePing {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a [`FakePing`] running `body`.
fn fake_ping(name: &str, body: &str) -> FakePing {
    let dir = std::env::temp_dir().join(format!("pinger-sweep-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = FakePing { dir };
    let path = fake.path();
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

fn fake_cfg(program: PathBuf, timeout_ms: u64) -> SweepConfig {
    SweepConfig {
        ping_program: program,
        ping: PingParams {
            count: 1,
            timeout_ms,
        },
        retries: 0,
        interval: Duration::ZERO,
        concurrency: 256,
    }
}

#[test]
fn a_probe_past_the_timeout_is_killed_reaped_and_down() {
    // Prints ping's header, then hangs far beyond -w: only the driver's own
    // deadline ends it.
    let hang = fake_ping(
        "hang",
        "echo 'PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.'\nexec sleep 30",
    );
    let hosts = ips(&[1, 2, 3]);
    let (out, _, took) = sweep_with(&hosts, &fake_cfg(hang.path(), 200), PingProber::new(), None);
    let out = out.unwrap();
    assert_eq!(out.results.len(), 3);
    assert!(out.results.iter().all(|p| !p.up), "{:?}", out.results);
    // 200 ms + grace, not the 30 s of the child nor a whole second.
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(900), "{took:?}");
}

#[test]
fn a_probe_cut_short_after_a_reply_is_up() {
    let replied = fake_ping(
        "replied",
        "echo 'PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.'\n\
         echo '64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.250 ms'\nexec sleep 30",
    );
    let (out, _, took) = sweep_with(
        &ips(&[1]),
        &fake_cfg(replied.path(), 150),
        PingProber::new(),
        None,
    );
    let results = out.unwrap().results;
    assert!(results[0].up);
    assert_eq!(results[0].rtt_ms, Some(0.25));
    assert!(took < Duration::from_millis(900), "{took:?}");
}

#[test]
fn a_missing_program_is_ping_not_found() {
    let cfg = fake_cfg("/nonexistent/ping".into(), 1000);
    let (out, _, _) = sweep_with(&ips(&[1, 2]), &cfg, PingProber::new(), None);
    assert!(matches!(out, Err(Error::PingNotFound)), "{out:?}");
}

#[test]
fn the_real_ping_on_loopback() {
    let ping = pinger::ping::resolve_ping(std::env::var_os("PATH").as_deref())
        .expect("these tests need ping: apt-get install iputils-ping");
    let hosts: Vec<Ipv4Addr> = (1..=14).map(|h| Ipv4Addr::new(127, 0, 0, h)).collect();
    // Spawned from the default spawn threads, from one, and from the loop's
    // own thread.
    for prober in [
        PingProber::new(),
        PingProber::with_spawn_threads(1),
        PingProber::with_spawn_threads(0),
    ] {
        let threads = prober.spawn_threads();
        let (out, _, took) = sweep_with(&hosts, &fake_cfg(ping.clone(), 1000), prober, None);
        let results = out.unwrap().results;
        assert_eq!(results.len(), 14, "{threads} spawn threads");
        assert!(results.iter().all(|p| p.up && p.rtt_ms.is_some()));
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}

#[test]
fn spawn_threads_of_a_prober() {
    let default = pinger::sweep::default_spawn_threads();
    assert_eq!(PingProber::new().spawn_threads(), default);
    assert_eq!(PingProber::with_spawn_threads(3).spawn_threads(), 3);
    assert_eq!(PingProber::with_spawn_threads(0).spawn_threads(), 0);
}

#[test]
fn a_probe_past_the_timeout_is_killed_with_spawns_on_the_loop_thread() {
    let hang = fake_ping(
        "hang0",
        "echo 'PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.'\nexec sleep 30",
    );
    let hosts = ips(&[1, 2, 3]);
    let prober = PingProber::with_spawn_threads(0);
    let (out, _, took) = sweep_with(&hosts, &fake_cfg(hang.path(), 200), prober, None);
    let out = out.unwrap();
    assert_eq!(out.results.len(), 3);
    assert!(out.results.iter().all(|p| !p.up), "{:?}", out.results);
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(900), "{took:?}");
}

/// A `ping` that says it cannot send at all (one host's, here, while the
/// others still hang) ends the sweep as a fatal error: the others are
/// killed and reaped at once, not left to their timeout, and no host is
/// reported down. From the spawn threads and from the loop thread.
#[test]
fn a_ping_that_cannot_send_ends_the_sweep_and_kills_the_others() {
    let fake = fake_ping(
        "cannot-send",
        "case \"$7\" in\n\
         10.0.0.1) echo \"$0: socket: Operation not permitted\" >&2; exit 2;;\n\
         *) echo 'PING' ; exec sleep 30;;\n\
         esac",
    );
    for threads in [2, 0] {
        let hosts = ips(&[1, 2, 3, 4, 5, 6]);
        let prober = PingProber::with_spawn_threads(threads);
        // The sweep itself checks that every child was reaped.
        let (out, seen, took) = sweep_with(&hosts, &fake_cfg(fake.path(), 10_000), prober, None);
        match out {
            Err(Error::PingCannotSend { program, line }) => {
                assert_eq!(program, fake.path());
                assert_eq!(
                    line,
                    format!("{}: socket: Operation not permitted", fake.path().display())
                );
            }
            other => panic!("{threads} spawn threads: {other:?}"),
        }
        assert!(seen.is_empty(), "reported: {seen:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
