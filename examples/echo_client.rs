//! Seed S3.24a, the client half: connect, send a message, print the echo.
//!
//! Usage: `echo_client [PORT] [MESSAGE]` (default 8888, "Hello World!").
//! Run `echo_server` first.

#[path = "support/pyrepr.rs"]
mod pyrepr;

async fn tcp_echo_client(port: u16, message: String) -> tulip::Result<()> {
    let (reader, writer) = tulip::open_connection("127.0.0.1", port).await?;
    // `{message!r}`: Python's repr of a str (single quotes).
    println!("Send: {}", pyrepr::str_repr(&message));
    writer.write(message.as_bytes())?;
    writer.drain().await?;
    let data = reader.read(100).await?;
    println!(
        "Received: {}",
        pyrepr::str_repr(&String::from_utf8_lossy(&data))
    );
    println!("Close the connection");
    writer.close();
    writer.wait_closed().await
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8888);
    let message = args.next().unwrap_or_else(|| "Hello World!".into());
    if let Err(e) = tulip::run(tcp_echo_client(port, message)) {
        eprintln!("echo_client: {e}");
        std::process::exit(1);
    }
}
