//! S2.6 (seed 002): the results of many tasks as a list.
//!
//! ```python
//! tasks = [loop.create_task(get_url_title('http://www.test.com')) for i in range(10)]
//! loop.run_until_complete(asyncio.wait(tasks))
//! print('获取结果:{}'.format([x.result() for x in tasks]))
//! ```

use std::time::Instant;
use tulip::ReturnWhen;

async fn get_url_title(url: &'static str) -> tulip::Result<&'static str> {
    println!("开始访问网站:{url}");
    tulip::sleep(2.0).await?;
    println!("网站访问成功");
    Ok("success")
}

fn main() -> tulip::Result<()> {
    let start = Instant::now();
    let lp = tulip::get_event_loop()?;
    let tasks = (0..10)
        .map(|_| lp.create_task(get_url_title("http://www.test.com")))
        .collect::<tulip::Result<Vec<_>>>()?;
    let t = tasks.clone();
    lp.run_until_complete(async move { tulip::wait(t, None, ReturnWhen::AllCompleted).await })?;
    let results = tasks
        .iter()
        .map(|x| x.result())
        .collect::<tulip::Result<Vec<_>>>()?;
    let shown: Vec<String> = results.iter().map(|r| format!("'{r}'")).collect();
    println!("获取结果:[{}]", shown.join(", "));
    println!("消耗时间:{}", start.elapsed().as_secs_f64());
    Ok(())
}
