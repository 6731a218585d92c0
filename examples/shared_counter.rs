//! S2.21 (seed 002): a shared counter without locks — one thread, so no race.
//!
//! ```python
//! async def add():   for i in range(10): await asyncio.sleep(0.1); num += i
//! async def desc():  for i in range(10): await asyncio.sleep(0.2); num -= i
//! loop.run_until_complete(asyncio.wait([add(), desc()]))
//! print(num)  # 0
//! ```

use std::cell::Cell;
use std::rc::Rc;
use tulip::ReturnWhen;

async fn step(num: Rc<Cell<i64>>, delay: f64, sign: i64) -> tulip::Result<()> {
    for i in 0..10 {
        tulip::sleep(delay).await?;
        num.set(num.get() + sign * i);
    }
    Ok(())
}

fn main() -> tulip::Result<()> {
    let num = Rc::new(Cell::new(0));
    let lp = tulip::get_event_loop()?;
    let tasks = vec![step(num.clone(), 0.1, 1), step(num.clone(), 0.2, -1)];
    lp.run_until_complete(tulip::wait(tasks, None, ReturnWhen::AllCompleted))?;
    lp.close()?;
    println!("{}", num.get());
    Ok(())
}
