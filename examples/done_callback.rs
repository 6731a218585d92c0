//! S2.7 (seed 002, "简单案例(回调函数)"): `add_done_callback` with a bound
//! argument (`functools.partial(call_back, url=...)`).
//!
//! In Rust the partial is a closure that captures `url`; the loop still
//! calls it with the task, as asyncio calls `call_back(future, url=...)`.
//!
//! ```text
//! 开始访问网站:http://www.test.com
//! 网站访问成功
//! 检测网址:http://www.test.com状态正常
//! 获取结果:success
//! ```

use tulip::Task;

async fn get_url_title(url: &str) -> tulip::Result<&'static str> {
    println!("开始访问网站:{url}");
    tulip::sleep(2.0).await?;
    println!("网站访问成功");
    Ok("success")
}

fn call_back(_future: &Task<&'static str>, url: &str) {
    println!("检测网址:{url}状态正常");
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    let get_future = lp.create_task(get_url_title("http://www.test.com"))?;
    // partial(call_back, url='http://www.test.com')
    let url = "http://www.test.com";
    get_future.add_done_callback(move |fut| call_back(fut, url));
    lp.run_until_complete(get_future.clone())?;
    println!("获取结果:{}", get_future.result()?);
    Ok(())
}
