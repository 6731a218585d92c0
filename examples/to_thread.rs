//! S3.20 (seed 003, "2.2.10 线程化异步任务"): `asyncio.to_thread`.
//!
//! Part 1: a blocking `blocking_io` (1 s) in a thread, gathered with a 1 s
//! `sleep` on the loop: about 1 s in all, not 2. Part 2: three blocking
//! calls of 1, 3 and 2 s in threads, gathered: about 3 s, the longest one.
//!
//! ```python
//! def blocking_io():
//!     print(f"start blocking_io at {time.strftime('%X')}")
//!     time.sleep(1)
//!     print(f"blocking_io complete at {time.strftime('%X')}")
//!
//! async def main():
//!     print(f"started main at {time.strftime('%X')}")
//!     await asyncio.gather(asyncio.to_thread(blocking_io), asyncio.sleep(1))
//!     print(f"finished main at {time.strftime('%X')}")
//!
//! def blocking_io(name, delay): ...
//! async def main():
//!     await asyncio.gather(
//!         asyncio.to_thread(blocking_io, 'A', 1),
//!         asyncio.to_thread(blocking_io, 'B', 3),
//!         asyncio.to_thread(blocking_io, 'C', 2))
//! ```
//!
//! ```text
//! started main at 11:19:16
//! Task A start blocking_io at 11:19:16
//! Task B start blocking_io at 11:19:16
//! Task C start blocking_io at 11:19:16
//! Task A blocking_io complete at 11:19:17
//! Task C blocking_io complete at 11:19:18
//! Task B blocking_io complete at 11:19:19
//! finished main at 11:19:19
//! ```

#[path = "support/clock.rs"]
mod clock;

use std::time::Duration;

use tulip::to_thread;

fn blocking_io() {
    println!("start blocking_io at {}", clock::now_x());
    // Note that time.sleep() can be replaced with any blocking IO-bound
    // operation, such as file operations.
    std::thread::sleep(Duration::from_secs(1));
    println!("blocking_io complete at {}", clock::now_x());
}

fn blocking_io_named(name: &str, delay: u64) {
    println!("Task {name} start blocking_io at {}", clock::now_x());
    std::thread::sleep(Duration::from_secs(delay));
    println!("Task {name} blocking_io complete at {}", clock::now_x());
}

async fn main1() -> tulip::Result<()> {
    println!("started main at {}", clock::now_x());
    // gather(to_thread(blocking_io), sleep(1)): both start now.
    let t = tulip::create_task(to_thread(blocking_io))?;
    tulip::sleep(1.0).await?;
    t.await?;
    println!("finished main at {}", clock::now_x());
    Ok(())
}

async fn main2() -> tulip::Result<()> {
    println!("started main at {}", clock::now_x());
    let mut tasks = Vec::new();
    for (name, delay) in [("A", 1), ("B", 3), ("C", 2)] {
        tasks.push(tulip::create_task(to_thread(move || {
            blocking_io_named(name, delay)
        }))?);
    }
    for t in tasks {
        t.await?;
    }
    println!("finished main at {}", clock::now_x());
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main1())?;
    tulip::run(main2())?;
    Ok(())
}
