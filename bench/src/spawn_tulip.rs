//! tulip's side of the `spawn` group: `create_subprocess_exec` + `wait`,
//! and `communicate`.

use std::path::Path;

use tulip::subprocess::{Stdio, Stdios};

use crate::measure::Clock;
use crate::spawn_group::{payload, BATCH, R};

/// True: tulip has subprocesses.
pub const AVAILABLE: bool = true;
/// Why the tulip column would be n/a.
pub const MISSING: &str = "";

/// `n` × `prog`, 64 at a time: spawn the batch, then wait for each.
pub fn spawn(prog: &Path, n: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let prog = prog.to_path_buf();
    let t0 = Clock::start();
    lp.run_until_complete(async move {
        let mut done = 0;
        while done < n {
            let k = BATCH.min(n - done);
            let mut kids = Vec::with_capacity(k as usize);
            for _ in 0..k {
                let none: [&str; 0] = [];
                kids.push(tulip::create_subprocess_exec(&prog, none, Stdios::default()).await?);
            }
            for p in kids {
                let code = p.wait().await?;
                if code != 0 {
                    return Err(tulip::Error::Runtime(format!("true exited {code}").into()));
                }
            }
            done += k;
        }
        Ok(())
    })?;
    let span = t0.stop();
    lp.close()?;
    Ok(span)
}

/// `mib` MiB through `prog` (cat) with `communicate`.
pub fn communicate(prog: &Path, mib: u64) -> R {
    let lp = tulip::EventLoop::new()?;
    let data = payload(mib);
    let want = data.len() as u64;
    let prog = prog.to_path_buf();
    let t0 = Clock::start();
    let got = lp.run_until_complete(async move {
        let stdio = Stdios {
            stdin: Stdio::Pipe,
            stdout: Stdio::Pipe,
            stderr: Stdio::Inherit,
        };
        let none: [&str; 0] = [];
        let mut p = tulip::create_subprocess_exec(&prog, none, stdio).await?;
        let (out, _) = p.communicate(Some(&data)).await?;
        Ok(out.len() as u64)
    })?;
    let span = t0.stop();
    crate::check_count("bytes back", got, want)?;
    lp.close()?;
    Ok(span)
}
