//! S2.18 (seed 002, "用socket完成异步编程(使用线程池)"): blocking socket code in
//! a thread pool.
//!
//! The seed opens a raw socket to a public site, sends an HTTP/1.1 request
//! by hand, reads until the server closes, cuts the headers off and prints
//! the `<title>`; ten of those run in a `ThreadPoolExecutor(3)`. Here the
//! server is a local one on 127.0.0.1 that answers after 0.3 s, started in
//! a thread; ten jobs on three threads take four rounds, about 1.2 s.
//!
//! ```python
//! client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
//! client.connect((host, 80))
//! client.send("GET {} HTTP/1.1\r\nHost:{}\r\nConnection:close\r\n\r\n"...)
//! while True: d = client.recv(1024) ...
//! html_data = data.split('\r\n\r\n')[1]
//! ...
//! p = ThreadPoolExecutor(3)
//! tasks = [loop.run_in_executor(p,get_url,'http://www.langzi.fun') for i in range(10)]
//! loop.run_until_complete(asyncio.wait(tasks))
//! print('last time:{}'.format(time.time() - start_time))
//! ```

#[path = "support/title_server.rs"]
mod title_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tulip::ThreadPool;

/// The seed's `get_url`: raw socket, `recv(1024)` until EOF, strip headers.
fn get_url(addr: SocketAddr, path: &str, host: &str) -> std::io::Result<()> {
    let mut client = TcpStream::connect(addr)?;
    client.write_all(
        format!("GET {path} HTTP/1.1\r\nHost:{host}\r\nConnection:close\r\n\r\n").as_bytes(),
    )?;
    let mut data = Vec::new();
    let mut d = [0u8; 1024];
    loop {
        let n = client.read(&mut d)?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&d[..n]);
    }
    let data = String::from_utf8_lossy(&data);
    let html_data = data.split("\r\n\r\n").nth(1).unwrap_or("");
    println!(
        "{}",
        title_server::title_of(html_data).unwrap_or("no title")
    );
    Ok(())
}

fn main() -> tulip::Result<()> {
    let addr = title_server::start(Duration::from_millis(300));
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    let p = ThreadPool::new(3)?; // 线程池 放3个线程
    let tasks = (0..10)
        .map(|_| lp.run_in_executor(Some(&p), move || get_url(addr, "/", "www.langzi.fun")))
        .collect::<tulip::Result<Vec<_>>>()?;
    lp.run_until_complete(async move {
        for t in tasks {
            t.wait_done().await;
            t.take_result()?.map_err(tulip::Error::from)?;
        }
        Ok(())
    })?;
    println!("last time:{}", start_time.elapsed().as_secs_f64());
    p.shutdown(true);
    lp.close()?;
    Ok(())
}
