//! The narrow libc layer under the subprocess, signal and thread modules.
//!
//! Every libc call of those modules goes through here and comes back as an
//! `io::Result`, the way mio's `syscall!` helper does it. Nothing here knows
//! about the event loop.
//!
//! # Invariants
//! - Each function returns `Err(io::Error::last_os_error())` exactly when the
//!   call failed; `EINTR` is retried where the call is restartable.
//! - File descriptors are returned as `OwnedFd`, so they are closed on every
//!   path, errors included (no fd leaks on a failed spawn, P3).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Turns a libc return value into an `io::Result` (`-1` means failure).
fn cvt<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `pidfd_open(pid, 0)`: a file descriptor that refers to the process itself,
/// not to its (recyclable) number. Readable once the process has exited.
pub(crate) fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just handed us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(crate) fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed; the fd is only read by the kernel.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// `kill(pid, sig)`.
pub(crate) fn kill(pid: libc::pid_t, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers.
    cvt(unsafe { libc::kill(pid, sig) })?;
    Ok(())
}

/// asyncio's `waitstatus_to_exitcode`: the exit code, or `-signal`.
fn exitcode(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        status
    }
}

/// `waitpid(pid, WNOHANG)`: `Ok(Some(code))` once reaped, `Ok(None)` while
/// the child still runs.
pub(crate) fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<i32>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        match cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) }) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(exitcode(status))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Blocking `waitpid(pid, 0)`: reaps the child.
pub(crate) fn waitpid_blocking(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(exitcode(status)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Blocks until `pid` has exited, *without* reaping it
/// (`waitid(P_PID, pid, WEXITED | WNOWAIT)`): the pid stays reserved for us
/// until the loop thread reaps it, so it can never be recycled under a signal.
pub(crate) fn wait_exited_nowait(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value; waitid fills it in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer.
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        match cvt(ret) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A close-on-exec pipe: `(read end, write end)`, both blocking.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL only read and set the flags of an open fd.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// `dup(fd)` with close-on-exec.
pub(crate) fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: the new fd is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `read(2)` into `buf`, retrying `EINTR`.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match cvt(n) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `read(2)` appending to the spare capacity of `vec` (up to `max` bytes).
pub(crate) fn read_append(fd: RawFd, vec: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    vec.reserve(max);
    let spare = vec.spare_capacity_mut();
    let len = spare.len().min(max);
    loop {
        // SAFETY: the spare capacity is valid for `len` bytes of writes; read
        // only writes, and we only mark as initialized what it wrote.
        let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), len) };
        match cvt(n) {
            Ok(n) => {
                let n = n as usize;
                // SAFETY: read(2) initialized the first `n` spare bytes.
                unsafe { vec.set_len(vec.len() + n) };
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `write(2)` from `buf`, retrying `EINTR`.
pub(crate) fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        match cvt(n) {
            Ok(n) => return Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// True on the process's main thread (its thread id equals its pid).
pub(crate) fn is_main_thread() -> bool {
    // SAFETY: getpid and gettid take no arguments and cannot fail.
    unsafe { libc::getpid() as libc::c_long == libc::syscall(libc::SYS_gettid) }
}
