//! Seed 003, lines ~2905–2930 (the example of `create_subprocess_shell`),
//! unlisted in seed-examples.md (README id S3.27b*): a shell pipeline,
//! `ls -l | grep test`, with both outputs piped and read by `communicate`.
//!
//! ```python
//! async def run_shell_command():
//!     # 启动一个子进程并执行命令
//!     process = await asyncio.create_subprocess_shell(
//!         'ls -l | grep test',
//!         stdout=asyncio.subprocess.PIPE,
//!         stderr=asyncio.subprocess.PIPE)
//!     # 异步地获取标准输出和标准错误
//!     stdout, stderr = await process.communicate()
//!     if stdout:
//!         print(f'[stdout]\n{stdout.decode()}')
//!     if stderr:
//!         print(f'[stderr]\n{stderr.decode()}')
//!     # 打印子进程的退出状态码
//!     print(f'Return code: {process.returncode}')
//!
//! asyncio.run(run_shell_command())
//! ```
//!
//! Run it with `cargo run --example subprocess_grep`: the pipeline lists
//! the directory it runs in, so from the crate's root it finds `tests`
//! (the seed's directory held a `test`):
//!
//! ```text
//! [stdout]
//! drwxrwxr-x 2 bolean bolean 4096 Nov 11 15:06 test
//!
//! Return code: 0
//! ```
//!
//! (The empty line is the seed's: `ls` ends its line, and `print` adds
//! another.) Where no line matches, `grep` prints nothing and exits with 1:
//! the program then prints only `Return code: 1`. `grep test` matches
//! whole lines of `ls -l`, so an owner or group with `test` in its name
//! matches too. The test runs the program in directories of its own
//! making, for an output it can predict; the program itself, like the
//! seed, takes no arguments.

use tulip::subprocess::{create_subprocess_shell, Stdios};

async fn run_shell_command() -> tulip::Result<()> {
    // Start a child running the shell command.
    let mut process = create_subprocess_shell("ls -l | grep test", Stdios::piped_output()).await?;
    // Read its stdout and stderr, without blocking the loop.
    let (stdout, stderr) = process.communicate(None).await?;
    if !stdout.is_empty() {
        println!("[stdout]\n{}", String::from_utf8_lossy(&stdout));
    }
    if !stderr.is_empty() {
        println!("[stderr]\n{}", String::from_utf8_lossy(&stderr));
    }
    // The child's exit status.
    println!("Return code: {}", process.returncode().unwrap_or_default());
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(run_shell_command())
}
