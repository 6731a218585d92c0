//! Seed S1.5: 100 workers drain a Queue of 1000 pages, each fetched from a
//! local HTTP server (the seed crawls a public site; this one starts
//! `support/http_site.rs` on 127.0.0.1). One shared `Session` keeps
//! connections alive, as aiohttp's `ClientSession` does.

#[path = "support/http_site.rs"]
mod http_site;

use http_site::Session;
use tulip::{Error, Queue};

/// Pages in the queue, and workers draining it (the seed's 1000 and 100).
const PAGES: u32 = 1000;
const WORKERS: usize = 100;

async fn get(session: Session, queue: Queue<u32>, template: String) -> tulip::Result<()> {
    loop {
        let page = match queue.get_nowait() {
            Ok(p) => p,
            Err(Error::QueueEmpty) => return Ok(()),
            Err(e) => return Err(e),
        };
        let url = template.replace("{page}", &page.to_string());
        let (_, _, path) = http_site::split_url(&url).expect("a local URL");
        let resp = session.get(&path).await?;
        println!("{}", resp.text());
    }
}

async fn main_async() -> tulip::Result<()> {
    let (server, port) = http_site::start_local().await?;
    let template = format!("http://127.0.0.1:{port}/exercise_middleware_ip/{{page}}");
    let session = Session::new("127.0.0.1", port);
    let queue = Queue::new(0);
    for page in 0..PAGES {
        queue.put_nowait(page)?;
    }
    let tasks = (0..WORKERS).map(|_| get(session.clone(), queue.clone(), template.clone()));
    let (done, _pending) = tulip::wait(tasks, None, tulip::ReturnWhen::AllCompleted).await?;
    for t in done {
        t.result()?;
    }
    session.close();
    server.close();
    Ok(())
}

fn main() {
    if let Err(e) = tulip::run(main_async()) {
        eprintln!("queue_crawler: {e}");
        std::process::exit(1);
    }
}
