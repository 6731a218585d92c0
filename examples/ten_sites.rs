//! S2.2 (seed 002): ten "site visits" (2 s each, a local stand-in: sleep)
//! under `wait`; about 2 s in total.
//!
//! ```python
//! tasks = [get_url_title('http://www.test.com') for i in range(10)]
//! loop.run_until_complete(asyncio.wait(tasks))
//! ```

use std::time::Instant;
use tulip::ReturnWhen;

async fn get_url_title(url: &'static str) -> tulip::Result<()> {
    println!("开始访问网站:{url}");
    tulip::sleep(2.0).await?; // the stand-in for the fetch
    println!("网站访问成功");
    Ok(())
}

fn main() -> tulip::Result<()> {
    let start = Instant::now();
    let lp = tulip::get_event_loop()?;
    let tasks: Vec<_> = (0..10)
        .map(|_| get_url_title("http://www.test.com"))
        .collect();
    lp.run_until_complete(tulip::wait(tasks, None, ReturnWhen::AllCompleted))?;
    println!("消耗时间:{}", start.elapsed().as_secs_f64());
    Ok(())
}
