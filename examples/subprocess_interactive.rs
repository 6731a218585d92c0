//! S3.27e (seed 003, "示例四"): an interactive child: write to its stdin,
//! `drain()`, `readline()` from its stdout, close its stdin, `wait()`.
//!
//! The seed drives `python3 -i`; this port drives `sh`, which reads
//! commands from its stdin the same way, so it needs no Python.
//!
//! ```python
//! process = await asyncio.create_subprocess_exec(
//!     'python3', '-i', stdin=PIPE, stdout=PIPE, stderr=PIPE)
//! process.stdin.write(b'print("Hello from child process")\n')
//! await process.stdin.drain()
//! stdout_line = await process.stdout.readline()
//! print(f'[stdout] {stdout_line.decode().strip()}')
//! process.stdin.close()
//! await process.wait()
//! print(f'Return code: {process.returncode}')
//! ```

use tulip::subprocess::{Command, Stdios};

async fn interact_with_subprocess() -> tulip::Result<()> {
    // 启动 shell 子进程
    let mut process = Command::new("sh").stdios(Stdios::piped()).spawn()?;
    // 向子进程发送命令
    let stdin = process.stdin.take().expect("piped");
    stdin.write(b"echo \"Hello from child process\"\n")?;
    stdin.drain().await?; // 确保命令被发送
                          // 读取子进程的输出
    let stdout_line = process.stdout.as_ref().expect("piped").readline().await?;
    println!("[stdout] {}", String::from_utf8_lossy(&stdout_line).trim());
    // 关闭子进程的标准输入，并等待它完成
    stdin.close();
    process.wait().await?;
    println!("Return code: {}", process.returncode().unwrap_or_default());
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(interact_with_subprocess())
}
