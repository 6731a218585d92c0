//! Seed S2.23: `Semaphore(2)` limits four fetches to two at a time; a done
//! callback on the gather prints the pages. Each fetch hits a page of the
//! local site that answers after 100 ms, so the run takes about 200 ms.

#[path = "support/http_site.rs"]
mod http_site;

use tulip::Semaphore;

async fn fetch(sem: Semaphore, port: u16, url: String) -> tulip::Result<String> {
    let _permit = sem.acquire().await?; // `async with sem:`
    let (_, _, path) = http_site::split_url(&url).expect("a local URL");
    let response = http_site::get("127.0.0.1", port, &path).await?;
    println!("{url}:{}", response.status);
    Ok(response.text())
}

fn main() {
    let res = tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let (server, port) = http_site::start_local().await?;
        let url = format!("http://127.0.0.1:{port}/slow/100");
        let sem = Semaphore::new(2);
        let tasks: Vec<_> = (0..4)
            .map(|_| tulip::ensure_future(fetch(sem.clone(), port, url.clone())))
            .collect::<tulip::Result<_>>()?;
        let gather_task = lp.create_task(tulip::gather(tasks))?;
        // def callback(future): for result in future.result(): print(result)
        gather_task.add_done_callback(|fut| {
            if let Ok(results) = fut.result() {
                for result in results {
                    print!("{result}");
                }
            }
        });
        gather_task.wait_done().await?;
        // Let the done callback run before the loop stops.
        tulip::sleep(0.0).await?;
        server.close();
        Ok(())
    });
    if let Err(e) = res {
        eprintln!("semaphore_fetch: {e}");
        std::process::exit(1);
    }
}
