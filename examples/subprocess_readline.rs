//! S3.27d (seed 003, "示例一"): read one line from a child's stdout, then
//! `wait()`.
//!
//! The seed asks a Python child for `datetime.datetime.now()`; `date` with
//! the same format does it without needing Python.
//!
//! ```python
//! code = 'import datetime; print(datetime.datetime.now())'
//! proc = await asyncio.create_subprocess_exec(
//!     sys.executable, '-c', code, stdout=asyncio.subprocess.PIPE)
//! data = await proc.stdout.readline()
//! line = data.decode('ascii').rstrip()
//! await proc.wait()
//! return line
//!
//! date = asyncio.run(get_date())
//! print(f"Current date: {date}")
//! ```

use tulip::subprocess::{Command, Stdio};

async fn get_date() -> tulip::Result<String> {
    // 创建子进程，重定向标准输出至一个管道中
    let proc = Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S.%6N")
        .stdout(Stdio::Pipe)
        .spawn()?;
    // 读取一行输出
    let data = proc.stdout.as_ref().expect("piped").readline().await?;
    let line = String::from_utf8_lossy(&data).trim_end().to_string();
    // 等待子进程退出
    proc.wait().await?;
    Ok(line)
}

fn main() -> tulip::Result<()> {
    let date = tulip::run(get_date())?;
    println!("Current date: {date}");
    Ok(())
}
