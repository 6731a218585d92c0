//! tulip's side of the `net` group: the commands that start tulip's servers.
//! They are the project's own examples, so the benchmark measures exactly
//! the code a reader finds there: `examples/echo_bench_server.rs` (a
//! `Protocol` and a `start_server` streams handler, the shapes of vmbench's
//! asyncio servers) and `examples/http_server.rs`.

use std::path::PathBuf;

/// Where cargo puts example `name` next to this binary.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("examples").join(name);
    p.is_file().then_some(p)
}

/// The command that starts tulip's `kind` server (echo-protocol, echo-streams, http).
pub fn server_argv(kind: &str) -> Result<Vec<String>, String> {
    let (name, arg) = match kind {
        "http" => ("http_server", "127.0.0.1:0"),
        "echo-protocol" => ("echo_bench_server", "protocol"),
        "echo-streams" => ("echo_bench_server", "streams"),
        other => return Err(format!("no tulip {other} server")),
    };
    example(name)
        .map(|p| vec![p.display().to_string(), arg.into()])
        .ok_or_else(|| {
            format!("examples/{name} is not built (cargo build --release --example {name})")
        })
}
