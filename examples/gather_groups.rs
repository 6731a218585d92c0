//! S2.3 (seed 002): gather in groups, then gather the groups; with
//! `--cancel-group2`, the second group is cancelled first (the seed's
//! commented-out `group2.cancel()`).
//!
//! ```python
//! group1 = asyncio.gather(*[get_url_title('http://www.baidu.com') for i in range(3)])
//! group2 = asyncio.gather(*[get_url_title('http://www.hupu.com') for i in range(5)])
//! #group2.cancel()
//! loop.run_until_complete(asyncio.gather(group1, group2))
//! ```
//!
//! With `group2.cancel()`, group2's tasks are cancelled before they start
//! (they print nothing). The outer gather has `return_exceptions=False`, so
//! it fails with CancelledError as soon as group2 is done: group1 has only
//! printed its starts, and `run_until_complete` raises, which ends the
//! program with the error (exit status 1), as in CPython.

async fn get_url_title(url: &'static str) -> tulip::Result<&'static str> {
    println!("开始访问网站:{url}");
    tulip::sleep(2.0).await?;
    println!("网站访问成功");
    Ok("success")
}

fn main() -> tulip::Result<()> {
    let cancel_group2 = std::env::args().any(|a| a == "--cancel-group2");
    let lp = tulip::get_event_loop()?;
    lp.run_until_complete(async move {
        let group1 = tulip::gather((0..3).map(|_| get_url_title("http://www.baidu.com")));
        let group2 = tulip::gather((0..5).map(|_| get_url_title("http://www.hupu.com")));
        if cancel_group2 {
            group2.cancel(); // group2.cancel()
        }
        // A cancelled group2 makes this fail with Cancelled.
        tulip::gather!(group1, group2).await?;
        Ok(())
    })
}
