//! Seed 003, lines ~2330–2367 (`server.py` of the StreamReader/StreamWriter
//! example), unlisted in seed-examples.md (README id S3.24a*), the server
//! half: each client sends one message; the server prints it, answers
//! `Hello, client!` and closes. `hello_client` is the other half.
//!
//! ```python
//! async def handle_client(reader, writer):
//!     data = await reader.read(100)
//!     message = data.decode()
//!     print(f"Received {message} from client.")
//!     writer.write(b"Hello, client!")
//!     await writer.drain()
//!     writer.close()
//!     await writer.wait_closed()
//!
//! async def tcp_server():
//!     server = await asyncio.start_server(handle_client, '127.0.0.1', 8888)
//!     print("Server running on 127.0.0.1:8888")
//!     async with server:
//!         await server.serve_forever()
//!
//! asyncio.run(tcp_server())
//! ```
//!
//! Run `cargo run --example hello_server`, then `cargo run --example
//! hello_client` in another terminal:
//!
//! ```text
//! Server running on 127.0.0.1:8888
//! Received Hello, server! from client.
//! ```
//!
//! Usage: `hello_server [PORT] [--clients N]`. As `echo_server` (S3.24a)
//! does, this port takes a port (default 8888, the seed's; 0 picks a free
//! one, which the tests use so that runs never clash) and prints the port
//! it got where the seed prints a fixed `8888`. With `--clients N` it stops
//! after N clients; the seed serves forever, and a test needs an end.

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use tulip::{StreamReader, StreamWriter};

async fn handle_client(reader: StreamReader, writer: StreamWriter) -> tulip::Result<()> {
    let data = reader.read(100).await?;
    let message = String::from_utf8_lossy(&data);
    println!("Received {message} from client.");
    std::io::stdout().flush().ok();
    writer.write(b"Hello, client!")?;
    writer.drain().await?;
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
                    let res = handle_client(r, w).await;
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
        let port = server.local_addrs().first().map_or(port, |a| a.port());
        println!("Server running on 127.0.0.1:{port}");
        std::io::stdout().flush().ok();
        // `async with server:` closes it on the way out.
        if max_clients.is_some() {
            done.await?;
            server.close();
            server.wait_closed().await
        } else {
            server.serve_forever().await
        }
    });
    if let Err(e) = res {
        eprintln!("hello_server: {e}");
        std::process::exit(1);
    }
}
