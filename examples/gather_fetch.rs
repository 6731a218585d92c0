//! Seed S3.15: `gather` over three downloads, then the length of each
//! result, in the order of the URLs. The three pages come from the local
//! site (`support/http_site.rs`) instead of public ones.

#[path = "support/http_site.rs"]
mod http_site;

use http_site::Session;

async fn fetch(session: Session, url: String) -> tulip::Result<String> {
    let (_, _, path) = http_site::split_url(&url).expect("a local URL");
    let response = session.get(&path).await?;
    println!("Fetching: {url}");
    Ok(response.text())
}

fn main() {
    let res = tulip::run(async {
        let (server, port) = http_site::start_local().await?;
        let urls = [
            format!("http://127.0.0.1:{port}/"),
            format!("http://127.0.0.1:{port}/get"),
            format!("http://127.0.0.1:{port}/page/1"),
        ];
        let session = Session::new("127.0.0.1", port);
        let results =
            tulip::gather(urls.iter().map(|url| fetch(session.clone(), url.clone()))).await?;
        for (i, content) in results.iter().enumerate() {
            println!("Content {} length: {}", i + 1, content.len());
        }
        session.close();
        server.close();
        Ok(())
    });
    if let Err(e) = res {
        eprintln!("gather_fetch: {e}");
        std::process::exit(1);
    }
}
