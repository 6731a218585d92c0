//! Teaching example: the layer under subprocess streams. A child started
//! with std's `Command` talks to the loop through two pipe transports,
//! each under a protocol of our own, exactly as asyncio's
//! `loop.connect_write_pipe` and `loop.connect_read_pipe` do (and as
//! `create_subprocess_exec` does for you, with stream protocols on top).
//!
//! ```text
//! cargo run --example pipe_protocol
//! ```
//!
//! The write side sends three lines and then closes (EOF for the child);
//! the read side collects what comes back, line by line, and resolves a
//! future at `connection_lost`. The child is `sh`, echoing each line it
//! reads.

use std::cell::RefCell;
use std::process::{Command, Stdio};
use std::rc::Rc;

use tulip::{Error, Protocol, Transport, WriteTransport};

/// Prints each complete line of the child's output, and says when the
/// pipe ends.
struct Lines {
    partial: RefCell<Vec<u8>>,
    done: tulip::Future<()>,
}

impl Protocol for Lines {
    fn connection_made(&self, _transport: Rc<dyn Transport>) {
        println!("read pipe: connection_made");
    }

    fn data_received(&self, data: &[u8]) {
        // A chunk may hold several lines, or part of one.
        let mut partial = self.partial.borrow_mut();
        partial.extend_from_slice(data);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            println!(
                "read pipe: line {:?}",
                String::from_utf8_lossy(&line[..end])
            );
        }
    }

    fn eof_received(&self) -> bool {
        println!("read pipe: eof_received");
        false
    }

    fn connection_lost(&self, exc: Option<Error>) {
        println!("read pipe: connection_lost({exc:?})");
        let _ = self.done.set_result(());
    }
}

/// The write side's protocol: only flow control and the end matter here.
struct Feed;

impl Protocol for Feed {
    fn connection_lost(&self, exc: Option<Error>) {
        println!("write pipe: connection_lost({exc:?})");
    }
}

async fn main_task() -> tulip::Result<()> {
    let lp = tulip::get_running_loop()?;
    let mut child = Command::new("sh")
        .args(["-c", "while read line; do echo \"got: $line\"; done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");

    let done = lp.create_future();
    let d = done.clone();
    let (_reader, _lines) = lp
        .connect_read_pipe(
            move || {
                Rc::new(Lines {
                    partial: RefCell::new(Vec::new()),
                    done: d,
                })
            },
            stdout,
        )
        .await?;
    let (writer, _feed) = lp.connect_write_pipe(|| Rc::new(Feed), stdin).await?;

    // `write` never blocks: what the pipe cannot take now is buffered and
    // flushed by the loop. `write_eof` closes the pipe once it is flushed.
    for word in ["one", "two", "three"] {
        writer.write(format!("{word}\n").as_bytes())?;
    }
    writer.write_eof()?;

    // The child sees EOF, exits, and its stdout ends: connection_lost.
    tulip::wait_for(done, 10.0).await?;
    // Reaping a std `Child` blocks, so it goes to a worker thread.
    let status = tulip::to_thread(move || child.wait()).await??;
    println!("child exited: {}", status.code().unwrap_or(-1));
    Ok(())
}

fn main() {
    tulip::run(main_task()).unwrap();
}
