//! S3.4 (seed 003, `asyncio.Runner`): one runner, several `run()` calls on
//! the same loop, `get_loop()`, and `close()` in a `finally`.
//!
//! The seed's two Runner listings, joined: `runner.run(main())` prints
//! "hello"; `runner.run(task())` prints "Task started"/"Task finished" on
//! the same loop; `close()` closes it.
//!
//! ```python
//! runner = asyncio.Runner(loop_factory=...)
//! try:
//!     runner.run(main())
//!     runner.run(task())
//!     loop = runner.get_loop()
//!     print(f"loop closed: {loop.is_closed()}")
//! finally:
//!     runner.close()
//! print(f"loop closed: {loop.is_closed()}")
//! ```
//!
//! ```text
//! hello
//! Task started
//! Task finished
//! same loop: True
//! loop closed: False
//! loop closed: True
//! ```

use tulip::{EventLoop, Runner};

async fn main_() -> tulip::Result<EventLoop> {
    tulip::sleep(1.0).await?;
    println!("hello");
    tulip::get_running_loop()
}

async fn task() -> tulip::Result<EventLoop> {
    println!("Task started");
    tulip::sleep(1.0).await?;
    println!("Task finished");
    tulip::get_running_loop()
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn main() -> tulip::Result<()> {
    // A Runner with a custom event loop factory.
    let mut runner = Runner::with_loop_factory(EventLoop::new);
    // try: ... finally: runner.close()  (Runner's Drop closes it too)
    let lp = (|| {
        let first = runner.run(main_())?;
        let second = runner.run(task())?;
        println!("same loop: {}", py_bool(first.ptr_eq(&second)));
        let lp = runner.get_loop()?;
        println!("loop closed: {}", py_bool(lp.is_closed()));
        Ok::<_, tulip::Error>(lp)
    })();
    runner.close();
    let lp = lp?;
    println!("loop closed: {}", py_bool(lp.is_closed()));
    Ok(())
}
