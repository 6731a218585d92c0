//! Teaching example: two event loops on two threads. A loop is
//! single-threaded (its futures and tasks are `!Send`), so the only things
//! that cross are a `LoopHandle` and what goes through it. The main loop
//! sends a coroutine to a worker loop with `run_coroutine_threadsafe`, then
//! awaits the answer with `wrap_future` *without blocking*: its own tasks
//! keep running meanwhile. In asyncio:
//!
//! ```python
//! worker = asyncio.new_event_loop()
//! threading.Thread(target=worker.run_forever, name='worker').start()
//!
//! async def main():
//!     cf = asyncio.run_coroutine_threadsafe(compute(), worker)
//!     ticker = asyncio.create_task(tick(3))   # runs while we wait
//!     answer = await asyncio.wrap_future(cf)
//!     await ticker
//!     worker.call_soon_threadsafe(worker.stop)
//! ```
//!
//! ```text
//! cargo run --example two_loops
//! ```
//!
//! The worker's coroutine waits until the main loop has ticked three times
//! (a flag both threads can read), so the output shows the main loop
//! running while its task waits for the other thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn main() -> tulip::Result<()> {
    // The worker loop, on its own thread; its handle comes back to us.
    let (tx, rx) = std::sync::mpsc::channel();
    let worker =
        std::thread::Builder::new()
            .name("worker".into())
            .spawn(move || -> tulip::Result<()> {
                let lp = tulip::EventLoop::new()?;
                tx.send(lp.handle()).expect("main is waiting");
                lp.run_forever()?;
                lp.close()
            })?;
    let worker_loop = rx.recv().expect("the worker sends its handle");

    let ticked = Arc::new(AtomicBool::new(false));
    let handle = worker_loop.clone();
    let answer = tulip::run(async move {
        let go = ticked.clone();
        // Made on the worker's thread, run as a task of the worker's loop.
        let cf = tulip::run_coroutine_threadsafe(
            move || async move {
                while !go.load(Ordering::SeqCst) {
                    tulip::sleep(0.001).await?;
                }
                let thread = std::thread::current().name().unwrap_or("?").to_string();
                Ok((6 * 7, thread))
            },
            &handle,
        );
        println!("main: sent the job to the worker loop");
        let ticker = tulip::create_task(async move {
            for i in 1..=3 {
                println!("main: tick {i} (this loop runs while its task waits)");
                tulip::sleep(0.01).await?;
            }
            ticked.store(true, Ordering::SeqCst);
            Ok(())
        })?;
        let (value, thread) = tulip::wrap_future(&cf)?.await?;
        ticker.await?;
        println!("main: got {value}, computed on the thread named {thread:?}");
        handle.stop()?;
        Ok(value)
    })?;
    worker.join().expect("the worker thread ends")?;
    println!("both loops are closed; the answer was {answer}");
    Ok(())
}
