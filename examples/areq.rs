//! Seed S4.5, `areq.py`: read URLs from `urls.txt`, fetch each page
//! concurrently, collect the `href`s of each, and append `source<TAB>link`
//! rows to `foundurls.txt`. Logs go to stderr as `HH:MM:SS LEVEL:areq: ...`.
//!
//! Usage: `areq [DIR]` (default: a new directory in the temp dir). The
//! URLs point at the local site (`support/http_site.rs`), including a page
//! that answers 404 and a port where nothing listens, the seed's two
//! failure cases. The file writes are plain blocking appends (the seed
//! uses aiofiles; each write here is a few hundred bytes).

#[path = "support/http_site.rs"]
mod http_site;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use http_site::Session;

/// `logging` with the seed's format, on stderr.
fn log(level: &str, msg: &str) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    eprintln!("{h:02}:{m:02}:{s:02} {level}:areq: {msg}");
}

/// `re.compile(r'href="(.*?)"').findall(html)`.
fn find_hrefs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("href=\"") {
        rest = &rest[i + 6..];
        match rest.find('"') {
            Some(j) => {
                out.push(&rest[..j]);
                rest = &rest[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// `urllib.parse.urljoin` for the links this site has: absolute URLs and
/// absolute paths.
fn urljoin(base: &str, link: &str) -> Option<String> {
    if link.starts_with("http://") || link.starts_with("https://") {
        return Some(link.to_owned());
    }
    let (host, port, _) = http_site::split_url(base)?;
    link.starts_with('/')
        .then(|| format!("http://{host}:{port}{link}"))
}

/// Why a fetch failed: a status (`raise_for_status()`), or the client.
enum FetchError {
    Status(u16),
    Client(tulip::Error),
}

/// GET request wrapper to fetch page HTML.
async fn fetch_html(url: &str) -> Result<String, FetchError> {
    let (host, port, path) = http_site::split_url(url)
        .ok_or_else(|| FetchError::Client(tulip::Error::msg("not an http:// URL")))?;
    let resp = Session::new(&host, port)
        .get(&path)
        .await
        .map_err(FetchError::Client)?;
    if !(200..300).contains(&resp.status) {
        return Err(FetchError::Status(resp.status));
    }
    log(
        "INFO",
        &format!("Got response [{}] for URL: {url}", resp.status),
    );
    Ok(resp.text())
}

/// Find HREFs in the HTML of `url`.
async fn parse(url: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let html = match fetch_html(url).await {
        Ok(h) => h,
        Err(FetchError::Status(status)) => {
            log(
                "ERROR",
                &format!("aiohttp exception for {url} [{status}]: Not Found"),
            );
            return found;
        }
        Err(FetchError::Client(e)) => {
            log("ERROR", &format!("aiohttp exception for {url} [None]: {e}"));
            return found;
        }
    };
    for link in find_hrefs(&html) {
        match urljoin(url, link) {
            Some(abs) => {
                found.insert(abs);
            }
            None => log("ERROR", &format!("Error parsing URL: {link}")),
        }
    }
    log("INFO", &format!("Found {} links for {url}", found.len()));
    found
}

/// Write the found HREFs from `url` to `file`.
async fn write_one(file: PathBuf, url: String) -> tulip::Result<()> {
    let res = parse(&url).await;
    if res.is_empty() {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(&file)?;
    for p in &res {
        writeln!(f, "{url}\t{p}")?;
    }
    log("INFO", &format!("Wrote results for source URL: {url}"));
    Ok(())
}

/// Crawl & write concurrently to `file` for multiple `urls`.
async fn bulk_crawl_and_write(file: PathBuf, urls: BTreeSet<String>) -> tulip::Result<()> {
    let tasks = urls.into_iter().map(|url| write_one(file.clone(), url));
    tulip::gather(tasks).await?;
    Ok(())
}

async fn main_async(here: PathBuf) -> tulip::Result<()> {
    let (server, port) = http_site::start_local().await?;
    // A port where nothing listens: the seed's unreachable host.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let url_list = [
        format!("{base}/"),
        format!("{base}/this-url-will-404.html"),
        format!("{base}/page/1"),
        format!("{base}/page/5"),
        format!("http://127.0.0.1:{dead_port}/"),
        format!("{base}/path/page.html"),
    ];
    std::fs::write(here.join("urls.txt"), url_list.join("\n") + "\n")?;

    let urls: BTreeSet<String> = std::fs::read_to_string(here.join("urls.txt"))?
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    let outpath = here.join("foundurls.txt");
    std::fs::write(&outpath, "source_url\tparsed_url\n")?;
    bulk_crawl_and_write(outpath, urls).await?;
    server.close();
    Ok(())
}

fn main() {
    let here: PathBuf = std::env::args_os()
        .nth(1)
        .map(Into::into)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tulip-areq-{}", std::process::id())));
    if let Err(e) = std::fs::create_dir_all(&here) {
        eprintln!("areq: cannot create {}: {e}", here.display());
        std::process::exit(1);
    }
    if let Err(e) = tulip::run(main_async(here.clone())) {
        eprintln!("areq: {e}");
        std::process::exit(1);
    }
    println!("{}", here.join("foundurls.txt").display());
}
