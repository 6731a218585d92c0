//! S2.27 (seed 002): a traffic light with an Event — green 5 s, red 5 s;
//! three cars pass on green and wait on red. The seed runs forever; this
//! stops after `--seconds N` (default 12). Colours are off with NO_COLOR.
//!
//! ```python
//! async def lighter(event):
//!     event.set()
//!     while True:
//!         print("绿灯亮..."); await asyncio.sleep(5); event.clear()
//!         print("红灯亮..."); await asyncio.sleep(5); event.set()
//! async def run(name, event):
//!     while True:
//!         if event.is_set(): print("一辆[%s] 呼啸开过..." % name); await asyncio.sleep(1)
//!         else:
//!             print("一辆[%s]开来，看到红灯，无奈的停下了..." % name)
//!             await event.wait(); print("[%s] 看到绿灯亮了，瞬间飞起....." % name)
//! ```

#[path = "support/cli.rs"]
mod cli;

use tulip::{Event, ReturnWhen};

fn paint(code: &str, text: &str) -> String {
    if std::env::var_os("NO_COLOR").is_some() {
        text.to_string()
    } else {
        format!("\x1b[{code};0m{text}\x1b[0m")
    }
}

async fn lighter(event: Event) -> tulip::Result<()> {
    let (green_time, red_time) = (5.0, 5.0);
    event.set(); // starts green
    loop {
        println!("{}", paint("32", " 绿灯亮..."));
        tulip::sleep(green_time).await?;
        event.clear();
        println!("{}", paint("31", " 红灯亮..."));
        tulip::sleep(red_time).await?;
        event.set();
    }
}

async fn run(name: &'static str, event: Event) -> tulip::Result<()> {
    loop {
        if event.is_set() {
            println!("一辆[{name}] 呼啸开过...");
            tulip::sleep(1.0).await?;
        } else {
            println!("一辆[{name}]开来，看到红灯，无奈的停下了...");
            event.wait().await?;
            println!("[{name}] 看到绿灯亮了，瞬间飞起.....");
        }
    }
}

fn main() -> tulip::Result<()> {
    let limit = cli::seconds(12.0);
    tulip::run(async move {
        let event = Event::new();
        let mut tasks: Vec<tulip::Task<()>> = Vec::new();
        for car in ["奔驰", "宝马", "奥迪"] {
            tasks.push(tulip::create_task(run(car, event.clone()))?);
        }
        tasks.push(tulip::create_task(lighter(event.clone()))?);
        tulip::wait(tasks, Some(limit), ReturnWhen::AllCompleted).await?;
        Ok(())
    })
}
