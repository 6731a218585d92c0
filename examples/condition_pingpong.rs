//! S2.25 (seed 002): a Condition passing control between an "add" task and
//! a "reduce" task, one step a second. The seed loops forever; this runs for
//! `--seconds N` (default 5.5) and then stops.
//!
//! ```python
//! async def run(con, name, action):
//!     await con.acquire(); print('开始执行%s' % name)
//!     while True:
//!         await asyncio.sleep(1)
//!         num += 1 if action == 'add' else -1; print('当前num为：%s' % num)
//!         if num >= 5 or num <= 0:
//!             print('暂停执行%s' % name); con.notify(); await con.wait(); print('开始执行%s' % name)
//! ```

#[path = "support/cli.rs"]
mod cli;

use std::cell::Cell;
use std::rc::Rc;
use tulip::{Condition, ReturnWhen};

async fn run(
    con: Condition,
    num: Rc<Cell<i64>>,
    name: &'static str,
    add: bool,
) -> tulip::Result<()> {
    // The guard releases the lock when the task ends (here: cancelled at
    // the end of the bounded run), so the other task can re-acquire it.
    let _guard = con.acquire().await?;
    println!("开始执行{name}");
    loop {
        tulip::sleep(1.0).await?;
        num.set(num.get() + if add { 1 } else { -1 });
        println!("当前num为：{}", num.get());
        if num.get() >= 5 || num.get() <= 0 {
            println!("暂停执行{name}");
            con.notify(1)?;
            con.wait().await?;
            println!("开始执行{name}");
        }
    }
}

fn main() -> tulip::Result<()> {
    let limit = cli::seconds(5.5);
    tulip::run(async move {
        let condition = Condition::new();
        let num = Rc::new(Cell::new(0));
        let tasks = vec![
            run(condition.clone(), num.clone(), "任务A", false),
            run(condition.clone(), num.clone(), "任务B", true),
        ];
        // Bounded: wait() returns at the timeout; tulip::run cancels the rest.
        tulip::wait(tasks, Some(limit), ReturnWhen::AllCompleted).await?;
        Ok(())
    })
}
