//! S3.27b (seed 003, "5.1 创建子进程" and "示例二"): `create_subprocess_exec`
//! + `communicate`.
//!
//! The seed lists `./test`, a directory holding an empty `test.py`; this
//! port makes that directory in a fresh temporary place and runs `ls` there
//! (with `LC_ALL=C`, so `总用量 0` reads `total 0`). Then it runs
//! `echo 'Hello, World!'`.
//!
//! ```python
//! process = await asyncio.create_subprocess_exec(
//!     'ls', '-l', './test',
//!     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
//! stdout, stderr = await process.communicate()
//! print(f'[stdout]\n{stdout.decode()}')
//! if stderr:
//!     print(f'[stderr]\n{stderr.decode()}')
//! print(f'Return code: {process.returncode}')
//!
//! process = await asyncio.create_subprocess_exec(
//!     'echo', 'Hello, World!', stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
//! stdout, stderr = await process.communicate()
//! print(f'[stdout] {stdout.decode().strip()}')
//! ...
//! ```

use tulip::subprocess::{create_subprocess_exec, Command, Stdios};

async fn run_subprocess(dir: std::path::PathBuf) -> tulip::Result<()> {
    // 启动一个子进程并执行 "ls -l" 命令
    let mut process = Command::new("ls")
        .args(["-l", "./test"])
        .current_dir(&dir)
        .env("LC_ALL", "C")
        .stdios(Stdios::piped_output())
        .spawn()?;
    // 异步读取标准输出和标准错误
    let (stdout, stderr) = process.communicate(None).await?;
    println!("[stdout]\n{}", String::from_utf8_lossy(&stdout));
    if !stderr.is_empty() {
        println!("[stderr]\n{}", String::from_utf8_lossy(&stderr));
    }
    println!("Return code: {}", process.returncode().unwrap_or_default());
    Ok(())
}

async fn run_command() -> tulip::Result<()> {
    let mut process =
        create_subprocess_exec("echo", ["Hello, World!"], Stdios::piped_output()).await?;
    let (stdout, stderr) = process.communicate(None).await?;
    println!("[stdout] {}", String::from_utf8_lossy(&stdout).trim());
    if !stderr.is_empty() {
        println!("[stderr] {}", String::from_utf8_lossy(&stderr).trim());
    }
    println!("Return code: {}", process.returncode().unwrap_or_default());
    Ok(())
}

fn main() -> tulip::Result<()> {
    let dir = std::env::temp_dir().join(format!("tulip-subprocess-exec-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("test"))?;
    std::fs::write(dir.join("test").join("test.py"), "")?;
    let res = tulip::run(run_subprocess(dir.clone())).and_then(|()| tulip::run(run_command()));
    let _ = std::fs::remove_dir_all(&dir);
    res
}
