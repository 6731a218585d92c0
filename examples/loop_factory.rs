//! S3.3 (seed 003, "运行 asyncio 程序"): `asyncio.run(coro, loop_factory=...)`
//! with a custom loop factory.
//!
//! The seed passes `uvloop.new_event_loop`; tulip has one kind of loop, so
//! the factory here builds a tulip loop in debug mode (asyncio's
//! `loop.set_debug(True)`), the kind of tweak a factory exists for. The
//! task checks that it runs on a loop from the factory.
//!
//! ```text
//! Task started
//! Task finished
//! ```

use tulip::EventLoop;

async fn task() -> tulip::Result<()> {
    println!("Task started");
    assert!(
        tulip::get_running_loop()?.debug(),
        "runs on the factory's loop"
    );
    tulip::sleep(1.0).await?;
    println!("Task finished");
    Ok(())
}

fn new_event_loop() -> tulip::Result<EventLoop> {
    let lp = EventLoop::new()?;
    lp.set_debug(true);
    Ok(lp)
}

fn main() -> tulip::Result<()> {
    // Use a custom event loop factory.
    tulip::run_with_factory(task(), new_event_loop)
}
