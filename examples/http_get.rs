//! Seed S2.19: HTTP GET over `open_connection` (no HTTP library), ten
//! requests printed as they complete (`as_completed`), then the elapsed
//! time. The site is the local one from `support/http_site.rs`.

#[path = "support/http_site.rs"]
mod http_site;

use std::time::Instant;

async fn get_url(url: String) -> tulip::Result<String> {
    // Fetch the page over a raw socket connection.
    let (host, port, path) =
        http_site::split_url(&url).ok_or_else(|| tulip::Error::msg("expected an http:// URL"))?;
    let (reader, writer) = tulip::open_connection(&host, port).await?;
    writer.write(
        format!("GET {path} HTTP/1.1\r\nHost:{host}\r\nConnection:close\r\n\r\n").as_bytes(),
    )?;
    let mut all_lines = Vec::new();
    // `async for raw_line in reader`
    while let Some(raw_line) = reader.next_line().await? {
        all_lines.push(String::from_utf8_lossy(&raw_line).into_owned());
    }
    Ok(all_lines.join("\n"))
}

fn main() {
    let start_time = Instant::now();
    let res = tulip::run(async {
        let (server, port) = http_site::start_local().await?;
        let url = format!("http://127.0.0.1:{port}/");
        let tasks: Vec<_> = (0..10)
            .map(|_| tulip::ensure_future(get_url(url.clone())))
            .collect::<tulip::Result<_>>()?;
        // Print each one as it completes.
        for task in tulip::as_completed(tasks, None) {
            let result = task.await?;
            println!("{result}");
        }
        server.close();
        Ok(())
    });
    if let Err(e) = res {
        eprintln!("http_get: {e}");
        std::process::exit(1);
    }
    println!("last time:{}", start_time.elapsed().as_secs_f64());
}
