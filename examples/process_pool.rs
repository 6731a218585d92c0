//! S2.20 (seed 002, "与多进程的结合"): a pool of worker processes
//! (aiomultiprocess's `Pool`) mapping a fetch over 30 URLs.
//!
//! The workers are subprocesses: this very example, re-executed with
//! `--worker`. A worker reads one URL per line on its stdin, fetches it
//! (blocking; the "site" is a local server on 127.0.0.1 that answers after
//! 0.1 s) and writes the page, one line, to its stdout. The parent keeps
//! four workers busy from one job list, one tulip task per worker, and
//! prints the results in the order of the URLs, then the cost time
//! (30 jobs / 4 workers x 0.1 s: about 0.8 s).
//!
//! ```python
//! async def request():
//!     url = 'https://www.baidu.com'
//!     urls = [url for _ in range(30)]
//!     async with Pool() as pool:
//!         result = await pool.map(get, urls)
//!         return result
//!
//! task = asyncio.ensure_future(request())
//! loop.run_until_complete(task)
//! print(task.result())
//! print('Cost time:', end - start)
//! ```

#[path = "support/title_server.rs"]
mod title_server;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulip::subprocess::{Command, Process, Stdio};

/// How many worker processes (aiomultiprocess: one per CPU).
const WORKERS: usize = 4;

/// The worker: one blocking GET per line of stdin, one page per line out.
fn worker_main() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for url in stdin.lock().lines() {
        let url = url?;
        let hostport = url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = TcpStream::connect(hostport)?;
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
        )?;
        let mut page = String::new();
        s.read_to_string(&mut page)?;
        let body = page.split("\r\n\r\n").nth(1).unwrap_or("");
        writeln!(out, "{body}")?;
        out.flush()?;
    }
    Ok(())
}

/// One worker's loop: take the next job, send it, read the answer.
async fn drive(
    worker: Process,
    jobs: Rc<RefCell<VecDeque<(usize, String)>>>,
    results: Rc<RefCell<Vec<String>>>,
) -> tulip::Result<()> {
    let stdin = worker.stdin.as_ref().expect("piped");
    let stdout = worker.stdout.as_ref().expect("piped");
    loop {
        let Some((i, url)) = jobs.borrow_mut().pop_front() else {
            break;
        };
        stdin.write(format!("{url}\n").as_bytes())?;
        stdin.drain().await?;
        let line = stdout.readline().await?;
        results.borrow_mut()[i] = String::from_utf8_lossy(&line).trim_end().to_string();
    }
    stdin.close();
    let rc = worker.wait().await?;
    if rc != 0 {
        return Err(tulip::Error::msg(format!("worker exited with {rc}")));
    }
    Ok(())
}

async fn request(url: String) -> tulip::Result<Vec<String>> {
    let urls: Vec<String> = (0..30).map(|_| url.clone()).collect();
    let jobs = Rc::new(RefCell::new(
        urls.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let results = Rc::new(RefCell::new(vec![String::new(); jobs.borrow().len()]));
    let exe = std::env::current_exe()?;
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let worker = Command::new(&exe)
            .arg("--worker")
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe)
            .kill_on_drop(true)
            .spawn()?;
        tasks.push(tulip::create_task(drive(
            worker,
            jobs.clone(),
            results.clone(),
        ))?);
    }
    for t in tasks {
        t.await?;
    }
    let out = results.borrow().clone();
    Ok(out)
}

fn main() -> tulip::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        return worker_main().map_err(tulip::Error::from);
    }
    let addr = title_server::start(Duration::from_millis(100));
    let start = Instant::now();
    let lp = tulip::get_event_loop()?;
    let task = lp.create_task(request(format!("http://{addr}/")))?;
    let waiter = task.clone();
    lp.run_until_complete(waiter)?;
    let result = task.result()?;
    let reprs: Vec<String> = result.iter().map(|s| format!("'{s}'")).collect();
    println!("[{}]", reprs.join(", "));
    println!("Cost time: {}", start.elapsed().as_secs_f64());
    lp.close()?;
    Ok(())
}
