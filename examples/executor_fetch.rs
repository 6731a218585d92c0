//! S2.17 (seed 002, "用requests完成异步编程(使用线程池)"): blocking fetches in a
//! thread pool with `run_in_executor`.
//!
//! The seed fetches a public site ten times with `requests` in a
//! `ThreadPoolExecutor(5)`. Here the site is a local server on 127.0.0.1
//! that answers each request after 0.5 s, and the blocking fetch is plain
//! `std::net::TcpStream`; the shape is the seed's: ten jobs on a pool of
//! five threads, `run_until_complete` on waiting for them all, then the
//! elapsed time (two rounds of 0.5 s: about 1 s).
//!
//! ```python
//! p = ThreadPoolExecutor(5)
//! tasks = [loop.run_in_executor(p, get_url_title, 'http://www.langzi.fun') for i in range(10)]
//! loop.run_until_complete(asyncio.wait(tasks))
//! print(time.time() - start_time)
//! ```

#[path = "support/title_server.rs"]
mod title_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tulip::ThreadPool;

/// The seed's `get_url_title`: a blocking GET, then the page title.
fn get_url_title(addr: SocketAddr) {
    let title = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: www.langzi.fun\r\nConnection: close\r\n\r\n"
        )?;
        let mut page = String::new();
        s.read_to_string(&mut page)?;
        Ok(title_server::title_of(&page)
            .unwrap_or("no title")
            .to_string())
    })()
    .unwrap_or_else(|e| e.to_string());
    println!("{title}");
}

fn main() -> tulip::Result<()> {
    let addr = title_server::start(Duration::from_millis(500));
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    let p = ThreadPool::new(5)?;
    let tasks = (0..10)
        .map(|_| lp.run_in_executor(Some(&p), move || get_url_title(addr)))
        .collect::<tulip::Result<Vec<_>>>()?;
    lp.run_until_complete(async move {
        for t in tasks {
            t.await?;
        }
        Ok(())
    })?;
    println!("{}", start_time.elapsed().as_secs_f64());
    p.shutdown(true);
    lp.close()?;
    Ok(())
}
