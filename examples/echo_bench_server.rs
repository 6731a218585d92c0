//! The tulip servers of the `net` benchmark's echo cases (vmbench-shaped):
//! a protocol server (`data_received` writes the data back) and a streams
//! server (`read(102400)`, `write`, `drain`), on 127.0.0.1.
//!
//! Usage: `echo_bench_server protocol|streams [PORT]` (default port 0: a
//! free one). Prints `LISTENING <port>` (the bench harness's handshake),
//! then serves until killed.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use tulip::transports::prelude::*;
use tulip::{StreamReader, StreamWriter};

/// asyncio's classic echo protocol.
#[derive(Default)]
struct EchoProtocol {
    transport: RefCell<Option<Rc<dyn Transport>>>,
}

impl Protocol for EchoProtocol {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }

    fn data_received(&self, data: &[u8]) {
        if let Some(t) = &*self.transport.borrow() {
            let _ = t.write(data);
        }
    }

    fn connection_lost(&self, _exc: Option<tulip::Error>) {
        self.transport.borrow_mut().take();
    }
}

async fn echo_streams(reader: StreamReader, writer: StreamWriter) -> tulip::Result<()> {
    loop {
        let data = match reader.read(102_400).await {
            Ok(d) if !d.is_empty() => d,
            _ => break,
        };
        writer.write(&data)?;
        if writer.drain().await.is_err() {
            break;
        }
    }
    writer.close();
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "protocol".into());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let res = tulip::run(async move {
        let lp = tulip::get_running_loop()?;
        let server = match kind.as_str() {
            "protocol" => {
                lp.create_server(|| Rc::new(EchoProtocol::default()), "127.0.0.1", port)
                    .await?
            }
            "streams" => tulip::start_server(echo_streams, "127.0.0.1", port).await?,
            other => {
                return Err(tulip::Error::msg(format!(
                    "unknown kind {other:?}: use protocol or streams"
                )))
            }
        };
        println!("LISTENING {}", server.local_addrs()[0].port());
        std::io::stdout().flush()?;
        server.serve_forever().await
    });
    if let Err(e) = res {
        eprintln!("echo_bench_server: {e}");
        std::process::exit(1);
    }
}
