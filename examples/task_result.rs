//! S2.5 (seed 002, "简单案例(获取返回值)"): `loop.create_task`, then
//! `run_until_complete(task)` and `task.result()`.
//!
//! ```text
//! 开始访问网站:http://www.test.com
//! 网站访问成功
//! 获取结果:success
//! 消耗时间:2.0019724369049072
//! ```

use std::time::Instant;

async fn get_url_title(url: &str) -> tulip::Result<&'static str> {
    println!("开始访问网站:{url}");
    tulip::sleep(2.0).await?;
    println!("网站访问成功");
    Ok("success")
}

fn main() -> tulip::Result<()> {
    let start_time = Instant::now();
    let lp = tulip::get_event_loop()?;
    let get_future = lp.create_task(get_url_title("http://www.test.com"))?;
    lp.run_until_complete(get_future.clone())?;
    println!("获取结果:{}", get_future.result()?);
    println!("消耗时间:{:?}", start_time.elapsed().as_secs_f64());
    Ok(())
}
