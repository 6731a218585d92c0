//! Seed S3.24a, the server half: a TCP echo server on streams. Each client
//! sends one message; the server prints it, echoes it and closes.
//!
//! Usage: `echo_server [PORT] [--clients N]` (default port 8888; port 0
//! picks a free one). With `--clients N` it stops after N clients (the seed
//! serves forever; the test needs an end).

#[path = "support/pyrepr.rs"]
mod pyrepr;

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use pyrepr::{addr_repr, str_repr};
use tulip::{ExtraInfo, StreamReader, StreamWriter};

async fn handle_echo(reader: StreamReader, writer: StreamWriter) -> tulip::Result<()> {
    let data = reader.read(100).await?;
    let message = String::from_utf8_lossy(&data).into_owned();
    // `{message!r}` and `{addr!r}`: Python's reprs, a quoted str and a tuple.
    let addr = match writer.get_extra_info("peername") {
        Some(ExtraInfo::Addr(a)) => addr_repr(&a),
        _ => "None".to_string(),
    };
    println!("Received {} from {addr}", str_repr(&message));
    println!("Send: {}", str_repr(&message));
    writer.write(&data)?;
    writer.drain().await?;
    println!("Close the connection");
    std::io::stdout().flush().ok();
    writer.close();
    writer.wait_closed().await
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(8888);
    let max_clients: Option<u32> = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok());
    let res = tulip::run(async move {
        let served = Rc::new(Cell::new(0u32));
        let done: tulip::Future<()> = tulip::get_running_loop()?.create_future();
        let (s2, d2) = (served.clone(), done.clone());
        let server = tulip::start_server(
            move |r, w| {
                let (served, done) = (s2.clone(), d2.clone());
                async move {
                    let res = handle_echo(r, w).await;
                    served.set(served.get() + 1);
                    if Some(served.get()) == max_clients && !done.done() {
                        done.set_result(())?;
                    }
                    res
                }
            },
            "127.0.0.1",
            port,
        )
        .await?;
        // `str(sock.getsockname())`: a Python tuple.
        let addrs: Vec<String> = server.local_addrs().iter().map(addr_repr).collect();
        println!("Serving on {}", addrs.join(", "));
        std::io::stdout().flush().ok();
        if max_clients.is_some() {
            done.await?;
            server.close();
            server.wait_closed().await
        } else {
            server.serve_forever().await
        }
    });
    if let Err(e) = res {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}
