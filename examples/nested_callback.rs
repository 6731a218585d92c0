//! S2.12 (seed 002, "协程嵌套"): the result of a nested coroutine, read
//! through the task (with a done callback that reads it too).
//!
//! ```text
//! 开始执行传入参数相加:100 + 200
//! 300
//! ```

use tulip::Task;

async fn sum_tion(x: i64, y: i64) -> tulip::Result<i64> {
    println!("开始执行传入参数相加:{x} + {y}");
    tulip::sleep(1.0).await?;
    Ok(x + y)
}

async fn print_sum(x: i64, y: i64) -> tulip::Result<i64> {
    let result = sum_tion(x, y).await?;
    Ok(result)
}

fn callback(future: &Task<i64>) -> tulip::Result<i64> {
    future.result()
}

fn main() -> tulip::Result<()> {
    let lp = tulip::get_event_loop()?;
    // To get the value the nested coroutine returns, go through the task.
    let future = lp.create_task(print_sum(100, 200))?;
    future.add_done_callback(|f| {
        let _ = callback(f);
    });
    lp.run_until_complete(future.clone())?;
    println!("{}", future.result()?);
    lp.close()
}
