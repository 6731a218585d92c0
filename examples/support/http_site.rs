//! A small HTTP/1.1 site on `start_server`, and a small client on
//! `open_connection`: the local stand-in for the web sites the seed
//! programs fetch. Shared by the network examples with
//! `#[path = "support/http_site.rs"] mod http_site;`.
//!
//! The server speaks enough HTTP/1.1 for `wrk`, `curl` and the examples:
//! keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`),
//! `Content-Length` on every response, `GET` and `HEAD`. Paths:
//! - `/`: an index page linking to `/page/0` .. `/page/9`
//! - `/page/N`: a page with a few `href`s to other pages
//! - `/exercise_middleware_ip/N`: one line of text (seed S1.5)
//! - `/get`: a small JSON document (seed S3.15)
//! - `/path/page.html`: a small page (seed S3.24b)
//! - `/slow/MS`: answers after MS milliseconds
//! - `/plaintext`: `Hello, World!` (the benchmark path)
//! - anything else: 404
#![allow(dead_code)]

use std::fmt::Write as _;

use tulip::{Error, Result, Server, StreamReader, StreamWriter};

/// Starts the site on `host:port` (port 0: any free port).
pub async fn start(host: &str, port: u16) -> Result<Server> {
    tulip::start_server(handle_client, host, port).await
}

/// Starts the site on 127.0.0.1 with a free port; returns it and the port.
pub async fn start_local() -> Result<(Server, u16)> {
    let server = start("127.0.0.1", 0).await?;
    let port = server.local_addrs()[0].port();
    Ok((server, port))
}

/// One request: method, path, and whether the client wants the connection
/// kept. Borrowed from the request head: no allocation per request.
struct Request<'a> {
    method: &'a [u8],
    path: &'a [u8],
    keep_alive: bool,
}

/// Parses a request head with plain byte scans (the benchmark path runs
/// this once per request, so no `str` pattern machinery).
fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let line_end = head.iter().position(|&b| b == b'\r')?;
    let mut first = head[..line_end].split(|&b| b == b' ');
    let method = first.next()?;
    let path = first.next()?;
    let version = first.next()?;
    let mut keep_alive = version == b"HTTP/1.1";
    const CONNECTION: &[u8] = b"connection:";
    for line in head[line_end + 2..].split(|&b| b == b'\n') {
        if line.len() > CONNECTION.len()
            && line[..CONNECTION.len()].eq_ignore_ascii_case(CONNECTION)
        {
            let value = line[CONNECTION.len()..].trim_ascii();
            if value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    Some(Request {
        method,
        path,
        keep_alive,
    })
}

/// The whole `/plaintext` response, prebuilt (the benchmark path).
const PLAINTEXT_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: tulip\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, World!";

/// A response body: static for fixed pages, built for the others.
type Body = std::borrow::Cow<'static, str>;

/// The body and content type of `path`, or `None` for a 404.
async fn route(path: &str) -> Result<Option<(Body, &'static str)>> {
    if path == "/plaintext" {
        return Ok(Some(("Hello, World!".into(), "text/plain")));
    }
    if path == "/" {
        let mut body = String::from("<html><body><h1>tulip test site</h1>\n");
        for i in 0..10 {
            let _ = writeln!(body, "<a href=\"/page/{i}\">page {i}</a>");
        }
        body.push_str("</body></html>\n");
        return Ok(Some((body.into(), "text/html")));
    }
    if let Some(n) = path
        .strip_prefix("/page/")
        .and_then(|n| n.parse::<u32>().ok())
    {
        let mut body = format!("<html><body><h1>page {n}</h1>\n");
        for k in 1..=3 {
            let _ = writeln!(body, "<a href=\"/page/{}\">next {k}</a>", (n + k) % 10);
        }
        body.push_str("<a href=\"/\">home</a>\n</body></html>\n");
        return Ok(Some((body.into(), "text/html")));
    }
    if let Some(n) = path.strip_prefix("/exercise_middleware_ip/") {
        let body = format!("{{\"page\": \"{n}\", \"ip\": \"127.0.0.1\"}}");
        return Ok(Some((body.into(), "application/json")));
    }
    if path == "/path/page.html" {
        return Ok(Some((
            "<html><body>a page</body></html>\n".into(),
            "text/html",
        )));
    }
    if path == "/get" {
        return Ok(Some((
            "{\"url\": \"/get\", \"args\": {}}\n".into(),
            "application/json",
        )));
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tulip::sleep(ms as f64 / 1000.0).await?;
        return Ok(Some((format!("slept {ms} ms\n").into(), "text/plain")));
    }
    Ok(None)
}

/// Serves one connection: requests until the client closes or asks to.
/// One reusable output buffer; each response goes out in one `write`.
pub async fn handle_client(reader: StreamReader, writer: StreamWriter) -> Result<()> {
    let mut out = Vec::with_capacity(512);
    loop {
        let head = match reader.readuntil(b"\r\n\r\n").await {
            Ok(h) => h,
            // The client closed between requests, or vanished mid-request.
            Err(Error::IncompleteRead { .. }) => break,
            Err(e) if e.io_kind().is_some() => break,
            Err(e) => return Err(e),
        };
        let Some(req) = parse_request(&head) else {
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            break;
        };
        if req.keep_alive && req.method == b"GET" && req.path == b"/plaintext" {
            // The benchmark path: the same bytes route() + the code below make.
            writer.write(PLAINTEXT_KEEP_ALIVE)?;
            writer.drain().await?;
            continue;
        }
        let path = String::from_utf8_lossy(req.path);
        let (status, body, ctype) = match route(&path).await? {
            Some((body, ctype)) => ("200 OK", body, ctype),
            None => (
                "404 Not Found",
                format!("no page at {path}\n").into(),
                "text/plain",
            ),
        };
        out.clear();
        let conn = if req.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let _ = write!(
            Bytes(&mut out),
            "HTTP/1.1 {status}\r\nServer: tulip\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        if req.method != b"HEAD" {
            out.extend_from_slice(body.as_bytes());
        }
        writer.write(&out)?;
        writer.drain().await?;
        if !req.keep_alive {
            break;
        }
    }
    writer.close();
    Ok(())
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A response, as the client saw it.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header lines, without the status line.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET http://host:port/path` with one connection (`Connection: close`).
pub async fn get(host: &str, port: u16, path: &str) -> Result<Response> {
    let (reader, writer) = tulip::open_connection(host, port).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    writer.write(req.as_bytes())?;
    let (status, headers, length, _) = read_head(&reader).await?;
    let body = match length {
        Some(n) => reader.readexactly(n).await?,
        None => reader.read_to_eof().await?,
    };
    writer.close();
    writer.wait_closed().await?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Splits `http://host:port/path` into its parts (port 80 by default).
pub fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 80),
    };
    Some((host.to_owned(), port, path.to_owned()))
}

/// A tiny `aiohttp.ClientSession`: keep-alive connections to one host,
/// reused across requests (at most one request per connection at a time).
#[derive(Clone)]
pub struct Session {
    host: String,
    port: u16,
    idle: std::rc::Rc<std::cell::RefCell<Vec<(StreamReader, StreamWriter)>>>,
}

impl Session {
    /// A session for `http://host:port`.
    pub fn new(host: &str, port: u16) -> Session {
        Session {
            host: host.to_owned(),
            port,
            idle: Default::default(),
        }
    }

    /// `GET path` on a pooled connection (a new one if none is idle).
    pub async fn get(&self, path: &str) -> Result<Response> {
        let conn = self.idle.borrow_mut().pop();
        let (reader, writer) = match conn {
            Some(c) => c,
            None => tulip::open_connection(&self.host, self.port).await?,
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        writer.write(req.as_bytes())?;
        let (status, headers, length, close) = read_head(&reader).await?;
        let body = match length {
            Some(n) => reader.readexactly(n).await?,
            None => reader.read_to_eof().await?,
        };
        if !close && length.is_some() {
            self.idle.borrow_mut().push((reader, writer));
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Closes the idle connections.
    pub fn close(&self) {
        for (_, w) in self.idle.borrow_mut().drain(..) {
            w.close();
        }
    }
}

/// Reads a status line and headers: (status, headers, content length, close).
async fn read_head(
    reader: &StreamReader,
) -> Result<(u16, Vec<(String, String)>, Option<usize>, bool)> {
    let status_line = reader.readline().await?;
    let status = std::str::from_utf8(&status_line)
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::msg("bad status line"))?;
    let mut headers = Vec::new();
    let mut length = None;
    let mut close = false;
    loop {
        let line = reader.readline().await?;
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            }
            if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                close = true;
            }
            headers.push((k, v));
        }
    }
    Ok((status, headers, length, close))
}
