//! S2.9 (seed 002, `run_forever` and `stop`): `loop.stop()` called from a
//! coroutine stops the loop too early; a gather plus a done callback that
//! stops the loop waits for everything.
//!
//! Part 1 (the problem):
//!
//! ```python
//! async def do_some_work(loop, x):
//!     print('Waiting ' + str(x))
//!     await asyncio.sleep(x)
//!     print('Done')
//!     loop.stop()
//!
//! asyncio.ensure_future(do_some_work(loop, 1))
//! asyncio.ensure_future(do_some_work(loop, 3))
//! loop.run_forever()      # stopped by the first one, after 1 s
//! ```
//!
//! Part 2 (the fix): `gather(do_some_work(1), do_some_work(3))` with
//! `add_done_callback(partial(callback, loop=loop))`, where the callback
//! prints the future and stops the loop (3 s).
//!
//! `asyncio.gather` belongs to another part of tulip (the combinators); here
//! its `_GatheringFuture` is built by hand the way gather builds it: a
//! future, and a done callback on each child that sets the future's result
//! once the last child is done. The seed's output starts with "Waiting 3",
//! from Python 3.6's gather, which went through a `set`; asyncio since 3.7
//! starts the children in argument order, as this port does.
//!
//! ```text
//! Waiting 1
//! Waiting 3
//! Done
//! Done
//! <_GatheringFuture finished result=[None, None]>
//! ```

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tulip::{EventLoop, Future};

async fn do_some_work_and_stop(lp: EventLoop, x: f64) -> tulip::Result<()> {
    println!("Waiting {x}");
    tulip::sleep(x).await?;
    println!("Done");
    lp.stop();
    Ok(())
}

async fn do_some_work(x: f64) -> tulip::Result<()> {
    println!("Waiting {x}");
    tulip::sleep(x).await?;
    println!("Done");
    Ok(())
}

/// A stand-in for `asyncio.gather(*coros)`: one task per coroutine, and a
/// future finished with every result once the last child is done.
fn gather(
    lp: &EventLoop,
    coros: Vec<impl std::future::Future<Output = tulip::Result<()>> + 'static>,
) -> tulip::Result<Future<Vec<()>>> {
    let outer: Future<Vec<()>> = lp.create_future();
    let n = coros.len();
    let left = Rc::new(Cell::new(n));
    let results = Rc::new(RefCell::new(vec![(); n]));
    for coro in coros {
        let task = lp.create_task(coro)?;
        let (outer, left, results) = (outer.clone(), left.clone(), results.clone());
        task.add_done_callback(move |t| {
            if let Err(e) = t.result() {
                let _ = outer.set_exception(e);
                return;
            }
            left.set(left.get() - 1);
            if left.get() == 0 && !outer.done() {
                let _ = outer.set_result(results.borrow().clone());
            }
        });
    }
    Ok(outer)
}

fn callback(future: &Future<Vec<()>>, lp: &EventLoop) {
    let result = future.result().unwrap_or_default();
    let items: Vec<&str> = result.iter().map(|()| "None").collect();
    println!("<_GatheringFuture finished result=[{}]>", items.join(", "));
    lp.stop();
}

fn main() -> tulip::Result<()> {
    // Part 1: the first coroutine to finish stops the loop for everyone.
    let lp = EventLoop::new()?;
    let _t1 = lp.create_task(do_some_work_and_stop(lp.clone(), 1.0))?;
    let t3 = lp.create_task(do_some_work_and_stop(lp.clone(), 3.0))?;
    lp.run_forever()?;
    // The 3 s task never got to print "Done"; put it away quietly.
    t3.cancel();
    let _ = lp.run_until_complete(async move {
        t3.wait_done().await?;
        Ok(())
    });
    lp.close()?;

    // Part 2: gather, and a done callback that stops the loop.
    let lp = tulip::get_event_loop()?;
    let task = gather(&lp, vec![do_some_work(1.0), do_some_work(3.0)])?;
    let stopper = lp.clone();
    // functools.partial(callback, loop=loop)
    task.add_done_callback(move |fut| callback(fut, &stopper));
    lp.run_forever()?;
    Ok(())
}
