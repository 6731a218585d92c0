//! S3.21 (seed 003, "2.2.11 跨线程调度"): `run_coroutine_threadsafe` into a
//! loop that runs in another thread; `result(timeout)`; cancel.
//!
//! The loop runs `run_forever` on its own thread. The main thread submits
//! a coroutine that takes 2 s and waits for it with a 3 s timeout: it gets
//! the result. Then (the seed's timeout branch) it submits the same
//! coroutine with a 0.5 s timeout, which expires: it cancels the task,
//! which the loop sees. Finally it stops the loop with
//! `call_soon_threadsafe` and joins the thread.
//!
//! tulip's loop is `!Send`, so instead of a coroutine object
//! `run_coroutine_threadsafe` takes a `Send` closure that makes the
//! coroutine on the loop's thread.
//!
//! ```python
//! async def example_coroutine():
//!     print("Coroutine started")
//!     await asyncio.sleep(2)
//!     print("Coroutine finished")
//!     return "Task result"
//!
//! loop = asyncio.new_event_loop()
//! loop_thread = threading.Thread(target=start_loop, args=(loop,)); loop_thread.start()
//! future = asyncio.run_coroutine_threadsafe(example_coroutine(), loop)
//! try:
//!     result = future.result(3)
//! except asyncio.TimeoutError:
//!     print('The coroutine took too long, cancelling the task...')
//!     future.cancel()
//! except Exception as exc:
//!     print(f'The coroutine raised an exception: {exc!r}')
//! else:
//!     print(f'The coroutine returned: {result!r}')
//! loop.call_soon_threadsafe(loop.stop)
//! loop_thread.join()
//! ```

use std::time::Duration;

use tulip::{run_coroutine_threadsafe, EventLoop, LoopHandle};

async fn example_coroutine() -> tulip::Result<String> {
    println!("Coroutine started");
    match tulip::sleep(2.0).await {
        Ok(()) => {
            println!("Coroutine finished");
            Ok("Task result".to_string())
        }
        Err(e) => {
            println!("Coroutine cancelled");
            Err(e)
        }
    }
}

fn start_loop(tx: std::sync::mpsc::Sender<LoopHandle>) {
    let lp = EventLoop::new().expect("new loop");
    tulip::set_event_loop(Some(&lp));
    tx.send(lp.handle()).expect("send the handle");
    lp.run_forever().expect("run_forever");
    lp.close().expect("close");
}

fn submit(handle: &LoopHandle, timeout: f64) {
    let future = run_coroutine_threadsafe(example_coroutine, handle);
    match future.result(Some(Duration::from_secs_f64(timeout))) {
        Err(e) if e.is_timeout() => {
            println!("The coroutine took too long, cancelling the task...");
            future.cancel();
        }
        Err(exc) => println!("The coroutine raised an exception: {exc:?}"),
        // `{result!r}`: Python's repr of a str is in single quotes.
        Ok(result) => println!("The coroutine returned: '{result}'"),
    }
}

fn main() {
    let (tx, rx) = std::sync::mpsc::channel();
    let loop_thread = std::thread::spawn(move || start_loop(tx));
    let handle = rx.recv().expect("the loop's handle");
    submit(&handle, 3.0);
    submit(&handle, 0.5);
    // Give the cancelled task a moment to report, then stop the loop.
    std::thread::sleep(Duration::from_millis(100));
    let stopper = handle.clone();
    let _ = handle
        .call_soon_threadsafe(move || {
            let _ = stopper.stop();
        })
        .expect("the loop is running");
    loop_thread.join().expect("the loop thread panicked");
}
