//! S3.27c (seed 003, "示例三"): `create_subprocess_shell` with a pipeline.
//!
//! ```python
//! process = await asyncio.create_subprocess_shell(
//!     'echo "Hello, World!" | grep World',
//!     stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
//! stdout, stderr = await process.communicate()
//! print(f'[stdout] {stdout.decode().strip()}')
//! if stderr:
//!     print(f'[stderr] {stderr.decode().strip()}')
//! print(f'Return code: {process.returncode}')
//! ```

use tulip::subprocess::{create_subprocess_shell, Stdios};

async fn run_shell_command() -> tulip::Result<()> {
    // 运行带有管道的 shell 命令
    let mut process = create_subprocess_shell(
        "echo \"Hello, World!\" | grep World",
        Stdios::piped_output(),
    )
    .await?;
    let (stdout, stderr) = process.communicate(None).await?;
    println!("[stdout] {}", String::from_utf8_lossy(&stdout).trim());
    if !stderr.is_empty() {
        println!("[stderr] {}", String::from_utf8_lossy(&stderr).trim());
    }
    println!("Return code: {}", process.returncode().unwrap_or_default());
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(run_shell_command())
}
