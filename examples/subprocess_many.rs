//! S3.27f (seed 003, "示例五"): several shell commands at once, gathered,
//! with their return codes; about 2 s in all (the longest command).
//!
//! ```python
//! async def run_command(cmd):
//!     process = await asyncio.create_subprocess_shell(cmd, stdout=PIPE, stderr=PIPE)
//!     stdout, stderr = await process.communicate()
//!     return cmd, process.returncode, stdout.decode().strip(), stderr.decode().strip()
//!
//! async def main():
//!     commands = ['echo "Hello, World!"', 'sleep 1; echo "Task 1 completed"',
//!                 'sleep 2; echo "Task 2 completed"']
//!     results = await asyncio.gather(*[run_command(cmd) for cmd in commands])
//!     for cmd, returncode, stdout, stderr in results:
//!         print(f'\n[Command: {cmd}]')
//!         print(f'Return code: {returncode}')
//!         print(f'[stdout] {stdout}')
//!         if stderr:
//!             print(f'[stderr] {stderr}')
//! ```

use tulip::subprocess::{create_subprocess_shell, Stdios};

async fn run_command(cmd: &'static str) -> tulip::Result<(String, i32, String, String)> {
    let mut process = create_subprocess_shell(cmd, Stdios::piped_output()).await?;
    let (stdout, stderr) = process.communicate(None).await?;
    Ok((
        cmd.to_string(),
        process.returncode().unwrap_or_default(),
        String::from_utf8_lossy(&stdout).trim().to_string(),
        String::from_utf8_lossy(&stderr).trim().to_string(),
    ))
}

async fn main_() -> tulip::Result<()> {
    let commands = [
        "echo \"Hello, World!\"",
        "sleep 1; echo \"Task 1 completed\"",
        "sleep 2; echo \"Task 2 completed\"",
    ];
    // asyncio.gather: all start now; results in argument order.
    let tasks = commands
        .into_iter()
        .map(|cmd| tulip::create_task(run_command(cmd)))
        .collect::<tulip::Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await?);
    }
    for (cmd, returncode, stdout, stderr) in results {
        println!("\n[Command: {cmd}]");
        println!("Return code: {returncode}");
        println!("[stdout] {stdout}");
        if !stderr.is_empty() {
            println!("[stderr] {stderr}");
        }
    }
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(main_())
}
