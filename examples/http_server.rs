//! The local HTTP/1.1 responder the network examples fetch from, and the
//! server of the `http` benchmark (`wrk -t1 -c64 http://127.0.0.1:8080/plaintext`).
//!
//! Usage: `cargo run --release --example http_server [HOST:PORT] [--for SECONDS] [--bench]`
//! (default 127.0.0.1:8080; port 0 picks a free port). It prints
//! `Serving on HOST:PORT` (with `--bench`: `LISTENING <port>`, the bench
//! harness's handshake), then serves until Ctrl-C, or for SECONDS.
//! Keep-alive and `Content-Length` on every response; see
//! `support/http_site.rs` for the paths.

#[path = "support/http_site.rs"]
mod http_site;

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut addr = "127.0.0.1:8080".to_string();
    let mut run_for: Option<f64> = None;
    let mut bench = false;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--bench" {
            bench = true;
            i += 1;
        } else if args[i] == "--for" {
            run_for = args.get(i + 1).and_then(|s| s.parse().ok());
            i += 2;
        } else {
            addr = args[i].clone();
            i += 1;
        }
    }
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let (host, port): (String, u16) = (host.to_owned(), port.parse().expect("a port number"));
    let res = tulip::run(async move {
        let server = http_site::start(&host, port).await?;
        for a in server.local_addrs() {
            if bench {
                println!("LISTENING {}", a.port());
            } else {
                println!("Serving on {a}");
            }
        }
        std::io::stdout().flush().ok();
        match run_for {
            Some(secs) => {
                tulip::sleep(secs).await?;
                server.close();
                Ok(())
            }
            None => server.serve_forever().await,
        }
    });
    if let Err(e) = res {
        if !e.is_cancelled() {
            eprintln!("http_server: {e}");
            std::process::exit(1);
        }
    }
}
