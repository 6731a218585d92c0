//! S3.27a (seed 003, "5 子进程"): `create_subprocess_shell`, then two
//! commands run at once.
//!
//! ```python
//! async def run(cmd):
//!     proc = await asyncio.create_subprocess_shell(
//!         cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
//!     stdout, stderr = await proc.communicate()
//!     print(f'[{cmd!r} exited with {proc.returncode}]')
//!     if stdout:
//!         print(f'[stdout]\n{stdout.decode()}')
//!     if stderr:
//!         print(f'[stderr]\n{stderr.decode()}')
//!
//! asyncio.run(run('ls ./'))
//!
//! async def main():
//!     await asyncio.gather(run('ls ./'), run('sleep 1; echo "hello"'))
//! asyncio.run(main())
//! ```

use tulip::subprocess::{create_subprocess_shell, Stdios};

/// Python's `repr()` of a str: single quotes unless it holds one.
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "\\'"))
    }
}

async fn run(cmd: &'static str) -> tulip::Result<()> {
    let mut proc = create_subprocess_shell(cmd, Stdios::piped_output()).await?;
    let (stdout, stderr) = proc.communicate(None).await?;
    println!(
        "[{} exited with {}]",
        py_repr(cmd),
        proc.returncode().unwrap_or_default()
    );
    if !stdout.is_empty() {
        println!("[stdout]\n{}", String::from_utf8_lossy(&stdout));
    }
    if !stderr.is_empty() {
        println!("[stderr]\n{}", String::from_utf8_lossy(&stderr));
    }
    Ok(())
}

async fn main2() -> tulip::Result<()> {
    // asyncio.gather(run(...), run(...)): both start now.
    let a = tulip::create_task(run("ls ./"))?;
    let b = tulip::create_task(run("sleep 1; echo \"hello\""))?;
    a.await?;
    b.await?;
    Ok(())
}

fn main() -> tulip::Result<()> {
    tulip::run(run("ls ./"))?;
    tulip::run(main2())
}
