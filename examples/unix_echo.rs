//! Seed S3.25: a Unix socket server (`start_unix_server`) and client
//! (`open_unix_connection`), in one program.
//!
//! Usage: `unix_echo [PATH]` (default: a socket in the temp directory).

use tulip::{StreamReader, StreamWriter};

async fn handle_client(reader: StreamReader, writer: StreamWriter) -> tulip::Result<()> {
    let data = reader.read(100).await?;
    println!("Server received: {}", String::from_utf8_lossy(&data));
    writer.write(b"Hello, client!")?;
    writer.drain().await?;
    writer.close();
    writer.wait_closed().await
}

async fn main_async(path: std::path::PathBuf) -> tulip::Result<()> {
    let server = tulip::start_unix_server(handle_client, &path).await?;
    println!("Server running on {}", path.display());
    for i in 1..=3 {
        let (reader, writer) = tulip::open_unix_connection(&path).await?;
        println!("Client {i}: connection established.");
        writer.write(format!("Hello, server! ({i})").as_bytes())?;
        writer.drain().await?;
        let data = reader.read(100).await?;
        println!("Client {i} received: {}", String::from_utf8_lossy(&data));
        writer.close();
        writer.wait_closed().await?;
    }
    server.close();
    server.wait_closed().await?;
    println!("Server closed; socket file removed: {}", !path.exists());
    Ok(())
}

fn main() {
    let path = std::env::args_os()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("tulip-unix-echo-{}.sock", std::process::id()))
        });
    if let Err(e) = tulip::run(main_async(path)) {
        eprintln!("unix_echo: {e}");
        std::process::exit(1);
    }
}
