//! Command-line plumbing shared by the examples: `--scale F` for the seeds'
//! sleeps, and `--seconds N` for the seeds that run forever. Shared with
//! `#[path = "support/cli.rs"] mod cli;`.
#![allow(dead_code)]

/// Seconds, scaled by `--scale F` or else `TULIP_TIME_SCALE` (default 1:
/// the seed's timings).
pub fn secs(s: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    let flag = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1).cloned());
    let scale = flag.or_else(|| std::env::var("TULIP_TIME_SCALE").ok());
    s * scale.and_then(|v| v.parse().ok()).unwrap_or(1.0)
}

/// How long to run: `--seconds N`, or `default`.
pub fn seconds(default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
