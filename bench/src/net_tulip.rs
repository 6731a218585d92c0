//! tulip's side of the `net` group: the echo servers (a `Protocol` and a
//! `start_server` streams handler, the shapes of vmbench's asyncio servers)
//! and the command that starts `examples/http_server.rs`.

use std::cell::RefCell;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;

use tulip::{Protocol, StreamReader, StreamWriter, Transport};

/// Where cargo puts the http example next to this binary.
fn http_example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("examples").join("http_server");
    p.is_file().then_some(p)
}

/// The command that starts tulip's `kind` server (echo-protocol, echo-streams, http).
pub fn server_argv(ctx: &crate::Ctx, kind: &str) -> Result<Vec<String>, String> {
    match kind {
        "http" => http_example()
            .map(|p| vec![p.display().to_string(), "127.0.0.1:0".into()])
            .ok_or_else(|| {
                "examples/http_server is not built (cargo build --release --example http_server)"
                    .into()
            }),
        _ => Ok(vec![
            ctx.exe.clone(),
            "--serve".into(),
            "echo".into(),
            format!("tulip-{}", kind.trim_start_matches("echo-")),
        ]),
    }
}

/// vmbench's `EchoProtocol`: write back whatever arrives.
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

/// vmbench's streams echo handler: read up to 100 KiB, write it, drain.
async fn echo_streams(reader: StreamReader, writer: StreamWriter) -> tulip::Result<()> {
    loop {
        let data = match reader.read(102_400).await {
            Ok(d) => d,
            Err(_) => break,
        };
        if data.is_empty() {
            break;
        }
        writer.write(&data)?;
        if writer.drain().await.is_err() {
            break;
        }
    }
    writer.close();
    Ok(())
}

/// `bench --serve echo tulip-protocol|tulip-streams`.
pub fn serve(kind: &str, who: &str) -> std::io::Result<()> {
    if kind != "echo" {
        return Err(std::io::Error::other(format!(
            "no tulip {kind} server here"
        )));
    }
    let streams = match who {
        "tulip-protocol" => false,
        "tulip-streams" => true,
        _ => return Err(std::io::Error::other(format!("unknown server {who}"))),
    };
    let res = tulip::run(async move {
        let server = if streams {
            tulip::start_server(echo_streams, "127.0.0.1", 0).await?
        } else {
            let lp = tulip::get_running_loop()?;
            lp.create_server(|| Rc::new(EchoProtocol::default()), "127.0.0.1", 0)
                .await?
        };
        println!("LISTENING {}", server.local_addrs()[0].port());
        std::io::stdout().flush().ok();
        server.serve_forever().await
    });
    res.map_err(|e| std::io::Error::other(e.to_string()))
}
