//! What machine the numbers come from: CPU model and cores (from `lscpu`),
//! kernel, load, and the versions of the peers.

use std::process::Command;

fn run(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn lscpu_field(lscpu: &str, key: &str) -> Option<String> {
    lscpu.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A Markdown bullet list describing the machine and the contenders' versions.
pub fn describe(python: &str) -> String {
    let lscpu = run(&["lscpu"]).unwrap_or_default();
    let model = lscpu_field(&lscpu, "Model name").unwrap_or_else(|| "unknown CPU".into());
    let cpus = lscpu_field(&lscpu, "CPU(s)").unwrap_or_else(|| "?".into());
    let tpc = lscpu_field(&lscpu, "Thread(s) per core").unwrap_or_else(|| "?".into());
    let hv = lscpu_field(&lscpu, "Hypervisor vendor")
        .map(|h| format!(", virtualised ({h})"))
        .unwrap_or_default();
    let kernel = run(&["uname", "-r"]).unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        })
        .unwrap_or_else(|| "?".into());
    let py = run(&[python, "--version"]).unwrap_or_else(|| format!("{python}: not found"));
    let uv = run(&[python, "-c", "import uvloop; print(uvloop.__version__)"])
        .map(|v| format!("uvloop {v}"))
        .unwrap_or_else(|| "uvloop not installed".into());
    let rustc = run(&["rustc", "--version"]).unwrap_or_else(|| "rustc ?".into());
    format!(
        "- CPU: {model}, {cpus} CPUs ({tpc} thread(s) per core){hv}\n\
         - Memory: {mem}; kernel {kernel}\n\
         - Load average at start: {}\n\
         - {py}, {uv}; {rustc}; tokio {} (current_thread)\n",
        loadavg(),
        tokio_version(),
    )
}

/// tokio's version, read from the workspace's Cargo.lock.
fn tokio_version() -> String {
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"tokio\"" {
            if let Some(v) = lines.next().and_then(|v| v.split('"').nth(1)) {
                return v.to_string();
            }
        }
    }
    "1.x".into()
}
