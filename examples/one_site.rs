//! S2.1 (seed 002, "简单案例(访问一个网站)"): one coroutine run with
//! `loop.run_until_complete`, and the time it took.
//!
//! The seed's "visit" of www.baidu.com is already a stand-in,
//! `asyncio.sleep(2)`: nothing touches the network here either.
//!
//! ```text
//! 开始访问网站:www.baidu.com
//! 网站访问成功
//! 消耗时间:2.00264835357666
//! ```

use std::time::Instant;

async fn get_url_title(url: &str) -> tulip::Result<()> {
    println!("开始访问网站:{url}");
    // Simulates the time the visit takes, without blocking the loop.
    tulip::sleep(2.0).await?;
    println!("网站访问成功");
    Ok(())
}

fn main() -> tulip::Result<()> {
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    // Blocks until the coroutine is done, like a thread's join().
    lp.run_until_complete(get_url_title("www.baidu.com"))?;
    let elapsed = start_time.elapsed().as_secs_f64();
    println!("消耗时间:{elapsed:?}");
    Ok(())
}
