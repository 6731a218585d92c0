//! `pinger ... | head -1`: when the reader of stdout goes away, pinger ends
//! the way `cat`, `ls` or fping do, by SIGPIPE (which a shell reports as
//! 141 and prints nothing about), not with a "cannot write results: Broken
//! pipe" error and exit 4, as if the system had failed.
//!
//! Traffic: 127.0.0.1 only.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PINGER: &str = env!("CARGO_BIN_EXE_pinger");

/// How long pinger may take for one loopback host.
const LIMIT: Duration = Duration::from_secs(10);

/// A pipe whose read end is already closed: its write end, as stdout.
fn pipe_without_reader() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(ret, 0, "pipe2");
    // SAFETY: pipe2 just returned these two descriptors, owned by no one else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn a_closed_stdout_pipe_ends_pinger_by_sigpipe_without_an_error_message() {
    for format in [&[][..], &["--json"][..], &["--csv"][..]] {
        let mut child = Command::new(PINGER)
            .arg("127.0.0.1")
            .args(format)
            .stdin(Stdio::null())
            .stdout(Stdio::from(pipe_without_reader()))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pinger");
        let mut err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = wait_bounded(&mut child);
        let stderr = reader.join().unwrap();
        assert!(!stderr.contains("cannot write"), "{format:?}: {stderr}");
        assert_eq!(
            status.signal(),
            Some(libc::SIGPIPE),
            "{format:?}: {status:?}: {stderr}"
        );
    }
}

/// stderr's reader gone (`pinger 2>&1 | head -0`, a closed log pipe): the
/// messages pinger writes there are best effort, as its summary line
/// already is, so the sweep still runs and exits with its own code; no
/// panic (exit 101) at the first `pinger: ...` line.
#[test]
fn a_closed_stderr_pipe_changes_no_exit_code() {
    // A bad target (its error message), then the default sweep (its
    // "no target given" line), then an explicit target (only the summary).
    for (args, code) in [
        (&["1.2.3.x"][..], 3),
        (&["-q"][..], 0),
        (&["-q", "127.0.0.1"][..], 0),
    ] {
        let mut child = Command::new(PINGER)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(pipe_without_reader()))
            .spawn()
            .expect("spawn pinger");
        let status = wait_bounded(&mut child);
        assert_eq!(status.code(), Some(code), "{args:?}: {status:?}");
    }
}

/// Waits for `child` to exit, for at most `LIMIT` (then kills it and fails).
fn wait_bounded(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pinger did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
