//! The narrow libc layer under the subprocess, signal and thread modules,
//! under the servers' listening sockets and the datagram endpoints' sockets
//! (which need options before `bind`, and a `listen` backlog, that std
//! does not offer), under `sock_connect_socket` (the kind of a socket the
//! caller made, and a non-blocking `connect` on it), and under
//! `getnameinfo`, which std does not offer either, and the loop's clock.
//!
//! Their libc calls go through here and come back as an `io::Result`, the
//! way mio's `syscall!` helper does it. The exception is `signals.rs`, which
//! makes its `sigaction` and signal-set (`sigfillset`, `sigismember`)
//! calls, and its C handler's `write(2)`, itself.
//! Nothing here knows about the event loop.
//!
//! This module mirrors no asyncio file: asyncio makes these calls through
//! Python's own `os`, `socket` and `signal` modules (`os.pidfd_open`,
//! `os.waitpid`, `os.sendfile`, `socket.setsockopt`, `socket.getnameinfo`).
//!
//! # Invariants
//! - Each function returns `Err(io::Error::last_os_error())` exactly when the
//!   call failed; `EINTR` is retried where the call is restartable. The
//!   exception is `getnameinfo`, which reports its `EAI_*` code instead
//!   (with `gai_strerror`'s text), and the OS error only for `EAI_SYSTEM`.
//! - File descriptors are returned as `OwnedFd`, so they are closed on every
//!   path, errors included (no fd leaks on a failed spawn, P3).

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
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

/// True if `O_NONBLOCK` is set on `fd`.
pub(crate) fn is_nonblocking(fd: RawFd) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads the flags of an fd; a bad fd is EBADF.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
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

/// `sendfile(2)`: copies up to `count` bytes of `in_fd`, from `*offset`, to
/// the socket `out_fd`, and advances `*offset` by what was sent. The file
/// position of `in_fd` is not changed. Retries `EINTR`; `Ok(0)` is the end
/// of the file. A non-blocking `out_fd` that is full gives `WouldBlock`.
pub(crate) fn sendfile(
    out_fd: RawFd,
    in_fd: RawFd,
    offset: &mut libc::off_t,
    count: usize,
) -> io::Result<usize> {
    loop {
        // SAFETY: `offset` is a valid, exclusive pointer to an `off_t` the
        // kernel reads and updates; the fds are only used by the kernel.
        let n = unsafe { libc::sendfile(out_fd, in_fd, offset, count) };
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

// ===== sockets =====

/// `addr` as a C `sockaddr_in`/`sockaddr_in6`, with its length.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: an all-zero sockaddr_in is a valid value.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: sockaddr_storage is big enough and aligned for any sockaddr.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: an all-zero sockaddr_in6 is a valid value.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is big enough and aligned for any sockaddr.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// `setsockopt(fd, level, name, &value, sizeof(int))`.
fn setsockopt_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a valid c_int, and its size is passed with it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// A non-blocking, close-on-exec TCP socket of `addr`'s family, neither
/// bound nor connected.
fn tcp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    inet_socket(addr, libc::SOCK_STREAM)
}

/// A non-blocking, close-on-exec socket of `addr`'s family and type `kind`
/// (`SOCK_STREAM`, `SOCK_DGRAM`), neither bound nor connected.
fn inet_socket(addr: &SocketAddr, kind: libc::c_int) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let ty = kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket takes three integers and returns a new fd or -1.
    let fd = cvt(unsafe { libc::socket(family, ty, 0) })?;
    // SAFETY: the kernel just handed us this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The libc calls that take a socket address: `bind`, `connect`.
type SockaddrCall =
    unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int;

/// `call(fd, addr)`: `bind` or `connect` with `addr` as a C sockaddr.
fn sockaddr_call(call: SockaddrCall, fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes, which bind
    // and connect only read; `fd` is an open socket.
    cvt(unsafe {
        call(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    Ok(())
}

/// A non-blocking, close-on-exec TCP socket bound to `addr` but not yet
/// listening (the `Server` calls [`listen`] when it starts serving), with
/// the options asyncio's `create_server` sets before `bind`: `SO_REUSEADDR`,
/// `SO_REUSEPORT`, and `IPV6_V6ONLY` on IPv6 (no dual-stack socket).
pub(crate) fn tcp_bind(
    addr: SocketAddr,
    reuse_address: bool,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let fd = tcp_socket(&addr)?;
    if reuse_address {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if reuse_port {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if addr.is_ipv6() {
        setsockopt_int(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    sockaddr_call(libc::bind, &fd, &addr)?;
    Ok(TcpListener::from(fd))
}

/// The socket of asyncio's `create_datagram_endpoint`: a non-blocking,
/// close-on-exec UDP socket of the family of `local` (else `remote`), with
/// `SO_REUSEPORT` and `SO_BROADCAST` as asked, then bound to `local` if
/// given, and connected to `remote` if given (and `connect`).
pub(crate) fn udp_socket(
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    connect: bool,
    reuse_port: bool,
    allow_broadcast: bool,
) -> io::Result<UdpSocket> {
    let Some(family) = local.or(remote) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unexpected address family: give a local or a remote address",
        ));
    };
    let fd = inet_socket(&family, libc::SOCK_DGRAM)?;
    if reuse_port {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    }
    if allow_broadcast {
        setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)?;
    }
    if let Some(local) = local {
        sockaddr_call(libc::bind, &fd, &local)?;
    }
    if let (Some(remote), true) = (remote, connect) {
        // A datagram connect only records the peer: it never blocks.
        sockaddr_call(libc::connect, &fd, &remote)?;
    }
    Ok(UdpSocket::from(fd))
}

/// Why [`tcp_connect_from`] failed: binding to the local address, or
/// starting the connect.
pub(crate) enum ConnectFromError {
    /// `socket` or `connect` failed.
    Connect(io::Error),
    /// `bind` to the local address failed.
    Bind(io::Error),
}

/// A non-blocking TCP socket of `remote`'s family, bound to `local`, whose
/// connect to `remote` has started (asyncio's `_connect_sock` with
/// `local_addr`). The caller waits for it to become writable, as after
/// mio's `TcpStream::connect`.
pub(crate) fn tcp_connect_from(
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<TcpStream, ConnectFromError> {
    let fd = tcp_socket(&remote).map_err(ConnectFromError::Connect)?;
    sockaddr_call(libc::bind, &fd, &local).map_err(ConnectFromError::Bind)?;
    match sockaddr_call(libc::connect, &fd, &remote) {
        Ok(()) => {}
        // A non-blocking connect goes on in the background (an interrupted
        // one too): writability tells when it is done.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => {}
        Err(e) => return Err(ConnectFromError::Connect(e)),
    }
    Ok(TcpStream::from(fd))
}

/// `getsockopt(fd, level, name)` of an `int` option.
fn getsockopt_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid out-pointers, and `len` says
    // how many bytes `value` has room for; getsockopt writes no further.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// The family (`SO_DOMAIN`: `AF_INET`, ...) and type (`SO_TYPE`:
/// `SOCK_STREAM`, ...) of a socket; `ENOTSOCK` for any other fd.
pub(crate) fn socket_kind(fd: &impl AsRawFd) -> io::Result<(i32, i32)> {
    let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let ty = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    Ok((domain, ty))
}

/// `connect(fd, addr)` on a non-blocking socket: `Ok(true)` if it is
/// connected at once, `Ok(false)` if the connect goes on in the background
/// (`EINPROGRESS`, or `EINTR`: writability then tells when it is done,
/// and `SO_ERROR` how).
pub(crate) fn start_connect(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<bool> {
    match sockaddr_call(libc::connect, fd, addr) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, on)`: TCP keep-alive probes on
/// a connected socket.
pub(crate) fn set_keepalive(sock: &impl AsRawFd, on: bool) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_KEEPALIVE, on.into())
}

/// `listen(fd, backlog)`: makes a bound socket listen, or resizes the
/// accept queue of one that already does.
pub(crate) fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes two integers.
    cvt(unsafe { libc::listen(fd, backlog) })?;
    Ok(())
}

// ===== names =====

/// glibc's `NI_MAXSERV`, which the libc crate does not define.
const NI_MAXSERV: usize = 32;

/// `getnameinfo(addr, flags)`: `(host, service)` of `addr` (as Python's
/// `socket.getnameinfo`). May block on the resolver: call it off the loop
/// thread. A failure is [`gai_error`](crate::error::gai_error)'s error of
/// the `EAI_*` code, or the OS error for `EAI_SYSTEM`.
pub(crate) fn getnameinfo(addr: &SocketAddr, flags: i32) -> io::Result<(String, String)> {
    let (storage, len) = sockaddr(addr);
    let mut host = [0u8; libc::NI_MAXHOST as usize];
    let mut serv = [0u8; NI_MAXSERV];
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes, which
    // getnameinfo only reads; `host` and `serv` are writable for the
    // lengths passed with them, and getnameinfo writes no further.
    let code = unsafe {
        libc::getnameinfo(
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
            host.as_mut_ptr().cast(),
            host.len() as libc::socklen_t,
            serv.as_mut_ptr().cast(),
            serv.len() as libc::socklen_t,
            flags,
        )
    };
    let what = || format!("getnameinfo({addr}, flags={flags:#x})");
    match code {
        0 => Ok((c_string(&host), c_string(&serv))),
        libc::EAI_SYSTEM => Err(crate::error::os_error_with_context(
            io::Error::last_os_error(),
            what(),
        )),
        code => Err(crate::error::gai_error(&what(), code, &gai_strerror(code))),
    }
}

/// The text up to the first NUL of a buffer libc filled in (all of it if
/// there is none), with invalid UTF-8 replaced.
fn c_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `gai_strerror(code)`: what an `EAI_*` code means, in words.
fn gai_strerror(code: i32) -> String {
    // SAFETY: gai_strerror takes any integer and returns a pointer to a
    // static string (glibc's "Unknown error" for codes it does not know).
    let text = unsafe { libc::gai_strerror(code) };
    if text.is_null() {
        return format!("unknown getnameinfo error {code}");
    }
    // SAFETY: `text` is a non-null, NUL-terminated static string that
    // nothing frees or changes.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// `CLOCK_MONOTONIC` in seconds: asyncio's `time.monotonic()`, the clock
/// `Instant::now()` reads too, without `Instant`'s checked arithmetic on
/// the way to an `f64` (the loop reads it on every `call_later`).
pub(crate) fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable `timespec`; `CLOCK_MONOTONIC` is
    // always available on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
