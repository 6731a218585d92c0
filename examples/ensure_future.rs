//! S2.4 (seed 002): `ensure_future` + `gather` + `result()`.
//!
//! ```python
//! group1 = asyncio.ensure_future(get_url_title('http://www.baidu.com'))
//! loop.run_until_complete(asyncio.gather(group1))
//! print(group1.result())
//! ```

async fn get_url_title(url: &'static str) -> tulip::Result<&'static str> {
    println!("开始访问网站:{url}");
    tulip::sleep(2.0).await?;
    println!("网站访问成功");
    Ok("success")
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    // ensure_future needs a loop to create the task on: inside one, as asyncio's does.
    let group1 = lp.run_until_complete(async {
        tulip::ensure_future(get_url_title("http://www.baidu.com"))
    })?;
    let g = group1.clone();
    lp.run_until_complete(async move { tulip::gather(vec![g]).await })?;
    println!("{}", group1.result()?);
    Ok(())
}
