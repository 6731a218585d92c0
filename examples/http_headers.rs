//! Seed S3.24b: a HEAD request, printing the response headers.
//!
//! Usage: `http_headers [http://127.0.0.1:PORT/path]`. Without a URL it
//! starts the local test site and queries `/path/page.html` on it (TLS,
//! the seed's `https` branch, is out of scope).

#[path = "support/http_site.rs"]
mod http_site;

async fn print_http_headers(url: String) -> tulip::Result<()> {
    let (host, port, path) =
        http_site::split_url(&url).ok_or_else(|| tulip::Error::msg("expected an http:// URL"))?;
    let (reader, writer) = tulip::open_connection(&host, port).await?;
    let query = format!("HEAD {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    writer.write(query.as_bytes())?;
    while let Some(line) = reader.next_line().await? {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        if !line.is_empty() {
            println!("HTTP header> {line}");
        }
    }
    // Ignore the body, close the socket.
    writer.close();
    writer.wait_closed().await
}

fn main() {
    let url = std::env::args().nth(1);
    let res = tulip::run(async move {
        match url {
            Some(url) => print_http_headers(url).await,
            None => {
                let (server, port) = http_site::start_local().await?;
                print_http_headers(format!("http://127.0.0.1:{port}/path/page.html")).await?;
                server.close();
                Ok(())
            }
        }
    });
    if let Err(e) = res {
        eprintln!("http_headers: {e}");
        std::process::exit(1);
    }
}
