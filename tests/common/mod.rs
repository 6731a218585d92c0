//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The path of a compiled example (`cargo test` builds every example first).
pub fn example_path(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("current_exe");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}: run the tests with `cargo test`, which builds examples",
        path.display()
    );
    path
}

/// Runs an example with arguments, kills it after `limit`, and returns its
/// output and how long it took.
pub fn run_example(name: &str, args: &[&str], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let child = Command::new(example_path(name))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    // Bound the wait: a watchdog thread kills the child if it overruns.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().expect("wait example");
    let _ = tx.send(());
    let _ = watchdog.join();
    (out, start.elapsed())
}

/// The stdout of a run, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a run, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `elapsed` is within `[lo, hi]` seconds.
pub fn assert_elapsed(elapsed: Duration, lo: f64, hi: f64) {
    let s = elapsed.as_secs_f64();
    assert!(
        s >= lo && s <= hi,
        "took {s:.3} s, expected between {lo} and {hi} s"
    );
}
