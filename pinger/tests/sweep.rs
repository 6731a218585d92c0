//! The driver shape, with a fake [`Prober`]: one result per host, in address
//! order, retries only for silent hosts, and the concurrency window respected.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use pinger::ping::{PingCommand, PingParams};
use pinger::sweep::{run_blocking, Prober, SweepConfig};
use pinger::Error;

const UP: &[u8] = include_bytes!("data/up_loopback.txt");
const DOWN: &[u8] = include_bytes!("data/down_netns.txt");

/// Answers from a script: how many attempts each host stays silent for.
#[derive(Debug, Default)]
struct FakeProber {
    silent_for: HashMap<Ipv4Addr, u32>,
    calls: HashMap<Ipv4Addr, u32>,
    in_flight: usize,
    max_in_flight: usize,
    argv_seen: Vec<Vec<String>>,
}

impl Prober for FakeProber {
    type Running = Ipv4Addr;

    fn start(&mut self, cmd: &PingCommand) -> Result<Ipv4Addr, Error> {
        self.argv_seen.push(cmd.args.clone());
        self.in_flight += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
        Ok(cmd.args.last().unwrap().parse().unwrap())
    }

    fn wait(&mut self, ip: Ipv4Addr) -> Result<Vec<u8>, Error> {
        self.in_flight -= 1;
        let n = self.calls.entry(ip).or_default();
        *n += 1;
        let silent = self.silent_for.get(&ip).copied().unwrap_or(0);
        Ok(if *n > silent { UP } else { DOWN }.to_vec())
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

#[test]
fn one_sorted_result_per_host_and_window_respected() {
    let mut prober = FakeProber::default();
    prober
        .silent_for
        .insert(Ipv4Addr::new(10, 0, 0, 2), u32::MAX);
    let hosts = ips(&[1, 2, 3, 4, 5, 6, 7]);
    let mut seen = Vec::new();
    let results = run_blocking(&mut prober, &hosts, &cfg(0, 3), |p| seen.push(p.ip)).unwrap();
    assert_eq!(results.iter().map(|p| p.ip).collect::<Vec<_>>(), hosts);
    assert_eq!(seen.len(), hosts.len());
    assert_eq!(results.iter().filter(|p| !p.up).count(), 1);
    assert!(!results[1].up && results[1].rtt_ms.is_none());
    assert_eq!(results[0].rtt_ms, Some(0.021));
    assert_eq!(prober.max_in_flight, 3);
    assert_eq!(
        prober.argv_seen[0],
        ["-c", "1", "-w", "1", "-W", "1", "10.0.0.1"]
    );
}

#[test]
fn retries_only_silent_hosts_and_only_as_often_as_asked() {
    let mut prober = FakeProber::default();
    // .1 answers at once, .2 on its second attempt, .3 never.
    prober.silent_for.insert(Ipv4Addr::new(10, 0, 0, 2), 1);
    prober
        .silent_for
        .insert(Ipv4Addr::new(10, 0, 0, 3), u32::MAX);
    let results = run_blocking(&mut prober, &ips(&[3, 2, 1]), &cfg(2, 256), |_| {}).unwrap();
    let by_ip: Vec<(u8, bool, u32)> = results
        .iter()
        .map(|p| (p.ip.octets()[3], p.up, p.attempts))
        .collect();
    assert_eq!(by_ip, [(1, true, 1), (2, true, 2), (3, false, 3)]);
    assert_eq!(prober.calls[&Ipv4Addr::new(10, 0, 0, 3)], 3);
}

#[test]
fn empty_sweep_is_fine() {
    let results = run_blocking(&mut FakeProber::default(), &[], &cfg(0, 1), |_| {}).unwrap();
    assert!(results.is_empty());
}
