//! A tiny blocking HTTP server on 127.0.0.1 for the examples that stand in
//! for fetching a public web site: every request waits `delay`, then gets a
//! page whose `<title>` is the seed's. One thread per connection.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// The title of the seed's page.
pub const TITLE: &str = " Langzi - Never Setter 永不将就 - 致力于Python开发网络安全工具,分享Python底层与进阶知识，漏洞扫描器开发与爬虫开发 ";

/// Starts the server on an ephemeral port; returns its address.
pub fn start(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
                let mut line = String::new();
                // Read the request head up to the blank line.
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                    line.clear();
                }
                std::thread::sleep(delay);
                let body =
                    format!("<html><head><title>{TITLE}</title></head><body>hi</body></html>");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// The text between `<title>` and `</title>`, as the seed's regex finds it.
pub fn title_of(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(&html[start..end])
}
