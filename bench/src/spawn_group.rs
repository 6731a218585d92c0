//! The `spawn` group (issue 6): process creation and pipe throughput.
//!
//! - spawn: 2000 `true` processes in batches of 64: spawn 64, wait for the 64,
//!   repeat. µs per process.
//! - communicate: 100 MiB through `cat` (stdin and stdout piped), MB/s.
//!
//! Same shapes as `peers/spawn_bench.py`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::measure::{Clock, Span};

/// Processes in flight at once.
pub const BATCH: u64 = 64;

/// The cases: (name, default count, what it does). The count is processes
/// for `spawn` and MiB for `communicate`.
pub const CASES: &[(&str, u64, &str)] = &[
    ("spawn", 2000, "`true` spawned and waited for, 64 at a time"),
    (
        "communicate",
        100,
        "100 MiB pushed through `cat` with `communicate` (stdin and stdout piped)",
    ),
];

/// An absolute path for `prog`, looked up in PATH once.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Runs one case for one contender; returns the `RESULT` fields.
pub fn run(case: &str, contender: &str, n: u64) -> Result<String, String> {
    let true_path = which("true").ok_or("no `true` in PATH")?;
    let cat_path = which("cat").ok_or("no `cat` in PATH")?;
    let res = match (contender, case) {
        ("tulip", "spawn") => crate::spawn_tulip::spawn(&true_path, n),
        ("tulip", "communicate") => crate::spawn_tulip::communicate(&cat_path, n),
        ("tokio", "spawn") => tokio_spawn(&true_path, n),
        ("tokio", "communicate") => tokio_communicate(&cat_path, n),
        ("floor", "spawn") => floor_spawn(&true_path, n),
        ("floor", "communicate") => floor_communicate(&cat_path, n),
        _ => return Err(format!("no case {case} for {contender}")),
    }
    .map_err(|e| e.to_string())?;
    Ok(match case {
        "spawn" => format!(
            "us_per_proc={:.2} cpu_us_per_proc={:.2} procs={n} ns={}",
            res.wall_ns as f64 / n as f64 / 1000.0,
            res.cpu_ns as f64 / n as f64 / 1000.0,
            res.wall_ns
        ),
        _ => format!(
            "mb_per_s={:.1} mib={n} ns={}",
            n as f64 * 1024.0 * 1024.0 / 1e6 / (res.wall_ns as f64 / 1e9),
            res.wall_ns
        ),
    })
}

pub(crate) type R = Result<Span, Box<dyn std::error::Error>>;

/// The input of `communicate`: `mib` MiB of a repeating pattern.
pub fn payload(mib: u64) -> Vec<u8> {
    (0..mib * 1024 * 1024).map(|i| (i % 251) as u8).collect()
}

// ===== tokio current_thread =====

fn tokio_rt() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn tokio_spawn(prog: &std::path::Path, n: u64) -> R {
    let rt = tokio_rt()?;
    let prog = prog.to_path_buf();
    let t0 = Clock::start();
    rt.block_on(async move {
        let mut done = 0;
        while done < n {
            let k = BATCH.min(n - done);
            let mut kids = Vec::with_capacity(k as usize);
            for _ in 0..k {
                kids.push(tokio::process::Command::new(&prog).spawn()?);
            }
            for mut c in kids {
                let st = c.wait().await?;
                if !st.success() {
                    return Err(std::io::Error::other(format!("true exited {st}")));
                }
            }
            done += k;
        }
        Ok::<_, std::io::Error>(())
    })?;
    Ok(t0.stop())
}

fn tokio_communicate(prog: &std::path::Path, mib: u64) -> R {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio_rt()?;
    let data = payload(mib);
    let want = data.len();
    let prog = prog.to_path_buf();
    let t0 = Clock::start();
    let out = rt.block_on(async move {
        let mut c = tokio::process::Command::new(&prog)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut stdin = c.stdin.take().expect("piped");
        let mut stdout = c.stdout.take().expect("piped");
        let writer = tokio::spawn(async move {
            let r = stdin.write_all(&data).await;
            drop(stdin);
            r
        });
        let mut out = Vec::with_capacity(want);
        stdout.read_to_end(&mut out).await?;
        writer.await.map_err(std::io::Error::other)??;
        c.wait().await?;
        Ok::<_, std::io::Error>(out)
    })?;
    let span = t0.stop();
    crate::check_count("bytes back", out.len() as u64, want as u64)?;
    Ok(span)
}

// ===== the floor: std::process, blocking =====

fn floor_spawn(prog: &std::path::Path, n: u64) -> R {
    let t0 = Clock::start();
    let mut done = 0;
    while done < n {
        let k = BATCH.min(n - done);
        let kids: Vec<_> = (0..k)
            .map(|_| Command::new(prog).spawn())
            .collect::<Result<_, _>>()?;
        for mut c in kids {
            let st = c.wait()?;
            if !st.success() {
                return Err(format!("true exited {st}").into());
            }
        }
        done += k;
    }
    Ok(t0.stop())
}

fn floor_communicate(prog: &std::path::Path, mib: u64) -> R {
    let data = payload(mib);
    let want = data.len();
    let t0 = Clock::start();
    let mut c = Command::new(prog)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = c.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let mut out = Vec::with_capacity(want);
    c.stdout.take().expect("piped").read_to_end(&mut out)?;
    writer.join().map_err(|_| "writer panicked")??;
    c.wait()?;
    let span = t0.stop();
    crate::check_count("bytes back", out.len() as u64, want as u64)?;
    Ok(span)
}
