//! S0 (seed 000, "subprocess 结合异步应用"): ping every host of a /24 at
//! once, one `ping` child per host, and print who answered in green or red.
//!
//! ```python
//! async def ping_call(num):
//!     current_time = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())
//!     ip = "192.168.31.%s" % num
//!     cmd = 'ping -c 1 -w 1 -W 1 %s' % ip
//!     print(cmd)
//!     proc = await asyncio.create_subprocess_exec('ping', '-c', '1', '-w', '1', '-W', '1', ip,
//!                                                 stdout=asyncio.subprocess.PIPE)
//!     result = await proc.stdout.read()
//!     regex = re.findall('100% packet loss', result.decode('utf-8'))
//!     if len(regex) == 0:
//!         return current_time, ip, True
//!     else:
//!         return current_time, ip, False
//!
//! async def main():
//!     tasks = []
//!     for i in range(1, 256):
//!         tasks.append(ping_call(i))
//!     done, pending = await asyncio.wait(tasks)
//!     for r in done:
//!         if r.result()[2]:
//!             color_code = 32
//!         else:
//!             color_code = 31
//!         info = "\033[1;{};1m{}\033[0m".format(color_code, r.result())
//!         print(info)
//!
//! if __name__ == '__main__':
//!     start = time.time()
//!     loop = asyncio.get_event_loop()
//!     try:
//!         loop.run_until_complete(main())
//!     finally:
//!         loop.close()
//!     print('所有IO任务总耗时%.5f秒' % float(time.time() - start))
//! ```
//!
//! Usage: `cargo run --example sweep [PREFIX [COUNT]]`. PREFIX defaults to
//! `127.0.0.` (loopback, safe anywhere; the seed used `192.168.31.`), COUNT
//! to 255: hosts PREFIX1 to PREFIX255, as `range(1, 256)` (another COUNT
//! than 1 to 255 exits 2 with a message). Only sweep
//! networks you are allowed to probe.
//!
//! Prints one `ping ...` line per host, then one coloured result per host,
//! `('2024-03-07 09:05:01', '127.0.0.1', True)` as Python prints the tuple,
//! then the total time (所有IO任务总耗时 = "total time of all I/O tasks").
//! About one second for a /24 where nobody answers, a fraction of one on
//! loopback: the pings overlap.

use std::time::Instant;

use tulip::subprocess::{create_subprocess_exec, Stdio, Stdios};
use tulip::ReturnWhen;

/// `time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())`.
fn current_time() -> String {
    // SAFETY: time(NULL) only returns the current time.
    let t = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: an all-zero tm is a valid out-value for localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes only `tm`.
    unsafe { libc::localtime_r(&t, &mut tm) };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

async fn ping_call(prefix: String, num: u32) -> tulip::Result<(String, String, bool)> {
    let current_time = current_time();
    let ip = format!("{prefix}{num}");
    // 超时时间为1秒，ping 1次 (wait at most 1 s, ping once)
    let cmd = format!("ping -c 1 -w 1 -W 1 {ip}");
    println!("{cmd}");
    let stdout_pipe = Stdios {
        stdout: Stdio::Pipe,
        ..Stdios::default()
    };
    let proc =
        create_subprocess_exec("ping", ["-c", "1", "-w", "1", "-W", "1", &ip], stdout_pipe).await?;
    let result = proc.stdout.as_ref().expect("piped").read_to_eof().await?;
    proc.wait().await?; // asyncio reaps in the background; we do it here

    // 通过匹配是否有100%关键字 (down iff ping says "100% packet loss")
    let up = !String::from_utf8_lossy(&result).contains("100% packet loss");
    Ok((current_time, ip, up))
}

async fn main_(prefix: String, count: u32) -> tulip::Result<()> {
    let tasks: Vec<_> = (1..=count).map(|i| ping_call(prefix.clone(), i)).collect();
    let (done, _pending) = tulip::wait(tasks, None, ReturnWhen::AllCompleted).await?;
    for r in done {
        let (time, ip, up) = r.result()?;
        let color_code = if up { 32 } else { 31 };
        // Python's str() of the tuple: ('2024-03-07 09:05:01', '127.0.0.1', True)
        let up = if up { "True" } else { "False" };
        let info = format!("('{time}', '{ip}', {up})");
        println!("\x1b[1;{color_code};1m{info}\x1b[0m");
    }
    Ok(())
}

fn main() -> tulip::Result<()> {
    let mut args = std::env::args().skip(1);
    let prefix = args.next().unwrap_or_else(|| "127.0.0.".to_string());
    let count: u32 = match args.next() {
        None => 255,
        Some(n) => match n.parse() {
            Ok(c @ 1..=255) => c,
            _ => {
                eprintln!("sweep: COUNT must be a number from 1 to 255, not {n:?}");
                std::process::exit(2);
            }
        },
    };
    let start = Instant::now();
    tulip::run(main_(prefix, count))?;
    println!("所有IO任务总耗时{:.5}秒", start.elapsed().as_secs_f64());
    Ok(())
}
