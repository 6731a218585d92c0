//! S2.11 (seed 002, "协程嵌套"): a coroutine awaiting another one,
//! `print_sum` awaiting `sum_tion`.
//!
//! ```text
//! 开始执行传入参数相加:1000 + 2000
//! 3000
//! ```

async fn sum_tion(x: i64, y: i64) -> tulip::Result<i64> {
    println!("开始执行传入参数相加:{x} + {y}");
    // Simulates a 1 s wait.
    tulip::sleep(1.0).await?;
    Ok(x + y)
}

async fn print_sum(x: i64, y: i64) -> tulip::Result<()> {
    let result = sum_tion(x, y).await?;
    println!("{result}");
    Ok(())
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    lp.run_until_complete(print_sum(1000, 2000))?;
    lp.close()
}
