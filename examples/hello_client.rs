//! Seed 003, lines ~2300–2328 (`client.py` of the StreamReader/StreamWriter
//! example), unlisted in seed-examples.md (README id S3.24a*), the client
//! half: connect, send `Hello, server!`, print the answer, close. Run
//! `hello_server` first.
//!
//! ```python
//! async def tcp_client():
//!     reader, writer = await asyncio.open_connection('127.0.0.1', 8888)
//!     print("Connection established.")
//!     writer.write(b'Hello, server!')
//!     await writer.drain()
//!     data = await reader.read(100)
//!     print(f'Received: {data.decode()}')
//!     writer.close()
//!     await writer.wait_closed()
//!
//! asyncio.run(tcp_client())
//! ```
//!
//! ```text
//! Connection established.
//! Received: Hello, client!
//! ```
//!
//! Usage: `hello_client [PORT]` (default 8888, the seed's): the tests
//! point it at a server on a free port.

async fn tcp_client(port: u16) -> tulip::Result<()> {
    let (reader, writer) = tulip::open_connection("127.0.0.1", port).await?;
    println!("Connection established.");
    writer.write(b"Hello, server!")?;
    writer.drain().await?;
    let data = reader.read(100).await?;
    println!("Received: {}", String::from_utf8_lossy(&data));
    writer.close();
    writer.wait_closed().await
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8888);
    if let Err(e) = tulip::run(tcp_client(port)) {
        eprintln!("hello_client: {e}");
        std::process::exit(1);
    }
}
