//! Seed S3.24c: `socketpair()` + `open_connection(sock=rsock)`; data sent
//! on the other end by a `call_soon` callback.

use std::io::Write;

async fn wait_for_data() -> tulip::Result<()> {
    // The running loop, for the low-level API.
    let lp = tulip::get_running_loop()?;
    // A pair of connected sockets.
    let (rsock, wsock) = std::os::unix::net::UnixStream::pair()?;
    // Register the open socket to wait for data.
    let (reader, writer) = tulip::open_connection_sock(rsock).await?;
    // Simulate the reception of data from the network.
    let _ = lp.call_soon(move || {
        (&wsock).write_all(b"abc").expect("send");
        // wsock is closed when this callback ends, as the seed closes it.
    })?;
    // Wait for data.
    let data = reader.read(100).await?;
    // Got data, we are done: close the socket.
    println!("Received: {}", String::from_utf8_lossy(&data));
    writer.close();
    writer.wait_closed().await
}

fn main() {
    if let Err(e) = tulip::run(wait_for_data()) {
        eprintln!("socketpair: {e}");
        std::process::exit(1);
    }
}
