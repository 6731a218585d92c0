//! The loop's low-level socket coroutines and name resolution. Mirrors
//! `BaseSelectorEventLoop.sock_recv`, `sock_recv_into`, `sock_sendall`,
//! `sock_connect`, `sock_accept`, and asyncio 3.11's `sock_sendto`,
//! `sock_recvfrom`, `sock_recvfrom_into` in `Lib/asyncio/selector_events.py`
//! (for UDP, and as `*_unix` functions for Unix datagram sockets),
//! and `getaddrinfo` (with its `family=`: [`AddressFamily`]),
//! `getnameinfo` (run in the executor) in `base_events.py`.
//! `sock_connect` on a socket the caller made is
//! [`EventLoop::sock_connect_socket`].
//!
//! Each coroutine tries the operation first; on `WouldBlock` it waits for
//! the fd with a one-shot reader or writer ([`EventLoop::wait_readable`]),
//! then tries again, as asyncio's `_sock_recv` callbacks do. The loop is
//! one helper, `sock_retry`, shared by all of them.
//!
//! # Invariants
//! - A wait's reader/writer is removed however the wait ends (result,
//!   error, cancellation, or drop of the awaiting future), unless it was
//!   already removed or replaced by another wait on the same fd (asyncio's
//!   `_sock_read_done` checks `handle.cancelled()`): that one stays.
//! - The sockets must be non-blocking. In debug mode a blocking socket is
//!   refused with `Error::InvalidArgument`, as asyncio's debug mode raises
//!   `ValueError`. (`sock_connect_socket` takes its socket, and makes it
//!   non-blocking itself.)
//! - A wait never replaces a transport's reader or writer: the fd of a
//!   socket transport that is not closing is refused with `Error::Runtime`
//!   before the wait starts, as asyncio's `_ensure_fd_no_transport` raises
//!   `RuntimeError` (an operation that succeeds at once is not checked,
//!   as in asyncio).
//! - Name resolution never blocks the loop: `getaddrinfo` and
//!   `getnameinfo` run in the loop's default executor, as in asyncio.
//!
//! # Behaviours to know
//! - Two waits on one fd and side at once (two `sock_recv` on one socket,
//!   from two tasks): the second one's reader replaces the first one's,
//!   which asyncio's `_add_reader` cancels, so the first waits until it is
//!   cancelled itself, seeing no data. asyncio behaves the same way. Keep one
//!   reader (and one writer) per socket at a time.
//! - *Deviation:* [`sock_connect_unix`](EventLoop::sock_connect_unix) (and
//!   so `create_unix_connection`) to a listener whose backlog is full fails
//!   at once with an `Io` error of kind `WouldBlock` (`EAGAIN`, "Resource
//!   temporarily unavailable"). Linux does not start such a connect, so
//!   there is nothing to wait for. asyncio waits for writability, reads
//!   `SO_ERROR` 0, and returns a socket that is not connected (its
//!   `getpeername()` fails with `ENOTCONN`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixDatagram};
use std::panic::Location;
use std::path::Path;

use crate::error::{bind_error, os_error_with_context, Result};
use crate::event_loop::EventLoop;
use crate::events::Handle;
use crate::futures::Future;
use crate::reactor::{Side, Trigger};
use crate::sys::ConnectFromError;

/// asyncio's `family=` argument (`socket.AF_UNSPEC`, `AF_INET`,
/// `AF_INET6`): which addresses a name may resolve to, for
/// [`getaddrinfo_family`](EventLoop::getaddrinfo_family) and the `family`
/// option of [`ConnectOptions`](crate::ConnectOptions),
/// [`ServerOptions`](crate::ServerOptions) and
/// [`DatagramOptions`](crate::DatagramOptions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// Any family (`AF_UNSPEC`, asyncio's default).
    #[default]
    Unspec,
    /// IPv4 only (`AF_INET`).
    Inet,
    /// IPv6 only (`AF_INET6`).
    Inet6,
}

impl AddressFamily {
    /// True if `addr` is of this family.
    pub fn matches(self, addr: &SocketAddr) -> bool {
        match self {
            AddressFamily::Unspec => true,
            AddressFamily::Inet => addr.is_ipv4(),
            AddressFamily::Inet6 => addr.is_ipv6(),
        }
    }

    /// The error for a host with no address of this family (the
    /// resolver's `EAI_ADDRFAMILY`).
    pub(crate) fn none_for(self, host: &str) -> crate::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{host}: no {} address (address family for hostname not supported); \
                 ask for another family, or for any with AddressFamily::Unspec",
                self.name()
            ),
        )
        .into()
    }

    /// The family's name, as people say it.
    pub fn name(self) -> &'static str {
        match self {
            AddressFamily::Unspec => "any",
            AddressFamily::Inet => "IPv4",
            AddressFamily::Inet6 => "IPv6",
        }
    }
}

/// Removes the one-shot reader or writer of a wait.
struct RemoveOnDrop<'a> {
    lp: &'a EventLoop,
    fd: RawFd,
    write: bool,
    /// The wait's own reader or writer.
    handle: Handle,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        // asyncio's `_sock_read_done`/`_sock_write_done`: a cancelled handle
        // was removed already, or replaced by a later wait on the same fd
        // (another task's `sock_recv`); removing now would strand that one.
        if self.handle.cancelled() {
            return;
        }
        let _ = if self.write {
            self.lp.remove_writer(self.fd)
        } else {
            self.lp.remove_reader(self.fd)
        };
    }
}

impl EventLoop {
    async fn wait_fd(&self, fd: RawFd, write: bool) -> Result<()> {
        let fut: Future<()> = self.create_future();
        let setter = fut.clone();
        let cb = move || {
            if !setter.done() {
                let _ = setter.set_result(());
            }
        };
        // asyncio's `_ensure_fd_no_transport(fd)` before it waits: the
        // one-shot reader or writer would replace a transport's own.
        self.ensure_fd_no_transport(fd)?;
        let side = if write { Side::Write } else { Side::Read };
        let handle = self.add_io(fd, side, cb, Trigger::Level, Location::caller())?;
        let _guard = RemoveOnDrop {
            lp: self,
            fd,
            write,
            handle,
        };
        fut.await
    }

    /// Waits until `fd` is readable (a one-shot `add_reader`).
    pub async fn wait_readable(&self, fd: RawFd) -> Result<()> {
        self.wait_fd(fd, false).await
    }

    /// Waits until `fd` is writable (a one-shot `add_writer`).
    pub async fn wait_writable(&self, fd: RawFd) -> Result<()> {
        self.wait_fd(fd, true).await
    }

    /// asyncio's `sock_recv(sock, n)`: receives up to `n` bytes from a
    /// non-blocking socket; an empty vector means EOF.
    ///
    /// ```
    /// use std::io::Write;
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    ///     a.set_nonblocking(true)?;
    ///     b.write_all(b"ping")?;
    ///     assert_eq!(lp.sock_recv(&a, 100).await?, b"ping");
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn sock_recv<S>(&self, sock: &S, n: usize) -> Result<Vec<u8>>
    where
        S: AsRawFd,
        for<'a> &'a S: Read,
    {
        let mut buf = vec![0u8; n];
        let k = self.sock_recv_into(sock, &mut buf).await?;
        buf.truncate(k);
        Ok(buf)
    }

    /// asyncio's `sock_recv_into(sock, buf)`: receives into `buf`, returns
    /// how many bytes (0 at EOF).
    pub async fn sock_recv_into<S>(&self, sock: &S, buf: &mut [u8]) -> Result<usize>
    where
        S: AsRawFd,
        for<'a> &'a S: Read,
    {
        self.sock_retry(sock.as_raw_fd(), false, || { sock }.read(buf))
            .await
    }

    /// asyncio's `sock_sendall(sock, data)`: sends all of `data`.
    pub async fn sock_sendall<S>(&self, sock: &S, data: &[u8]) -> Result<()>
    where
        S: AsRawFd,
        for<'a> &'a S: Write,
    {
        // Checked whatever the data, as asyncio does (`sock_retry` checks
        // again per chunk; an empty send never reaches it).
        self.check_nonblocking(sock.as_raw_fd())?;
        let mut data = data;
        while !data.is_empty() {
            let n = self
                .sock_retry(sock.as_raw_fd(), true, || { sock }.write(data))
                .await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// asyncio's `sock_connect(sock, address)`, creating the socket (std
    /// has no unconnected sockets): a non-blocking connect to `addr`,
    /// waiting for it to complete. The stream is non-blocking. To connect
    /// a socket of your own (options set, bound), see
    /// [`sock_connect_socket`](EventLoop::sock_connect_socket).
    ///
    /// A failed connect is an `Io` error of the OS error's kind that names
    /// the address, as asyncio's `Connect call failed ('127.0.0.1', 80)`:
    /// `connect call failed (127.0.0.1:80): Connection refused (os error
    /// 111)` ([`Error::raw_os_error`](crate::Error::raw_os_error) still
    /// gives the errno).
    pub async fn sock_connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        self.sock_connect_from(addr, None).await
    }

    /// [`sock_connect`](EventLoop::sock_connect), the socket first bound to
    /// `local_addr` if given (asyncio's `_connect_sock` with `local_addr`).
    /// A failed bind names the local address: `error while attempting to
    /// bind on address 127.0.0.1:8080: Address in use (os error 98)`.
    pub(crate) async fn sock_connect_from(
        &self,
        addr: SocketAddr,
        local_addr: Option<SocketAddr>,
    ) -> Result<TcpStream> {
        let failed = |e: io::Error| -> crate::Error {
            os_error_with_context(e, format!("connect call failed ({addr})")).into()
        };
        let stream = match local_addr {
            None => mio::net::TcpStream::connect(addr).map_err(failed)?,
            Some(local) => match crate::sys::tcp_connect_from(local, addr) {
                Ok(s) => mio::net::TcpStream::from_std(s),
                Err(ConnectFromError::Connect(e)) => return Err(failed(e)),
                Err(ConnectFromError::Bind(e)) => return Err(bind_error(e, &local).into()),
            },
        };
        // Dropped (closed) on every early return, a cancel included.
        self.wait_writable(stream.as_raw_fd()).await?;
        if let Some(e) = stream.take_error().map_err(failed)? {
            return Err(failed(e));
        }
        match stream.peer_addr() {
            Ok(_) => Ok(stream.into()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                let err = stream.take_error().map_err(failed)?.unwrap_or(e);
                Err(failed(err))
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// asyncio's `sock_connect(sock, address)` on a socket the caller made
    /// and configured (options set, bound to a local address, ...):
    /// `sock` is an unconnected `AF_INET` or `AF_INET6` stream socket,
    /// which this makes non-blocking, connects to `addr`, and hands back
    /// as a non-blocking `TcpStream` once connected (asyncio's
    /// `_sock_connect` and `_sock_connect_cb`: wait for writability, then
    /// read `SO_ERROR`). [`sock_connect`](EventLoop::sock_connect) makes
    /// its own socket instead.
    ///
    /// asyncio leaves the socket the caller's and wants it non-blocking
    /// already; here the socket is taken, so it is made non-blocking, and
    /// it is closed if the connect fails or the wait is cancelled (a
    /// socket whose connect failed cannot be connected again anyway).
    /// Another kind of socket, or an address of another family, is an
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument); a failed
    /// connect names the address, as `sock_connect`'s does.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = listener.local_addr()?;
    ///     // A socket std cannot make: unconnected, for the caller to configure.
    ///     // SAFETY: socket takes three integers and returns a new fd or -1.
    ///     let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    ///     assert!(raw >= 0);
    ///     // SAFETY: the fd is new and owned by nobody else.
    ///     let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    ///     let stream = lp.sock_connect_socket(sock, addr).await?;
    ///     assert_eq!(stream.peer_addr()?, addr);
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn sock_connect_socket(
        &self,
        sock: impl Into<OwnedFd>,
        addr: SocketAddr,
    ) -> Result<TcpStream> {
        let fd: OwnedFd = sock.into();
        let family = match addr {
            SocketAddr::V4(_) => libc::AF_INET,
            SocketAddr::V6(_) => libc::AF_INET6,
        };
        let (domain, ty) = crate::sys::socket_kind(&fd)?;
        if ty != libc::SOCK_STREAM || !matches!(domain, libc::AF_INET | libc::AF_INET6) {
            return Err(crate::error::Error::invalid_argument(
                "sock_connect_socket needs an AF_INET or AF_INET6 stream socket \
                 (sock_connect_unix connects a Unix one)",
            ));
        }
        if domain != family {
            return Err(crate::error::Error::invalid_argument(format!(
                "cannot connect {} socket to {addr}: make the socket of the address's family",
                if domain == libc::AF_INET {
                    "an AF_INET"
                } else {
                    "an AF_INET6"
                },
            )));
        }
        let failed = |e: io::Error| -> crate::Error {
            os_error_with_context(e, format!("connect call failed ({addr})")).into()
        };
        crate::sys::set_nonblocking(&fd)?;
        let connected = crate::sys::start_connect(&fd, &addr).map_err(failed)?;
        // From here the fd is the stream's: closed on every early return,
        // a cancel included.
        let stream = TcpStream::from(fd);
        if connected {
            return Ok(stream);
        }
        self.wait_writable(stream.as_raw_fd()).await?;
        if let Some(e) = stream.take_error().map_err(failed)? {
            return Err(failed(e));
        }
        match stream.peer_addr() {
            Ok(_) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                let err = stream.take_error().map_err(failed)?.unwrap_or(e);
                Err(failed(err))
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// asyncio's `sock_connect` for a Unix socket path.
    pub async fn sock_connect_unix(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<std::os::unix::net::UnixStream> {
        let stream = mio::net::UnixStream::connect(path)?;
        self.wait_writable(stream.as_raw_fd()).await?;
        if let Some(e) = stream.take_error()? {
            return Err(e.into());
        }
        Ok(stream.into())
    }

    /// asyncio's `sock_accept(sock)`: accepts one connection on a
    /// non-blocking listener. The new stream is non-blocking.
    pub async fn sock_accept(&self, listener: &TcpListener) -> Result<(TcpStream, SocketAddr)> {
        let accept = || again_if_aborted(listener.accept());
        let (s, addr) = self.sock_retry(listener.as_raw_fd(), false, accept).await?;
        s.set_nonblocking(true)?;
        Ok((s, addr))
    }

    /// asyncio's `sock_accept(sock)` on a Unix stream listener: accepts one
    /// connection on a non-blocking `UnixListener`. The new stream is
    /// non-blocking.
    ///
    /// ```
    /// use std::os::unix::net::UnixListener;
    /// tulip::run(async {
    ///     let dir = std::env::temp_dir().join(format!("tulip-doc-accept-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let path = dir.join("l.sock");
    ///     let listener = UnixListener::bind(&path)?;
    ///     listener.set_nonblocking(true)?;
    ///     let lp = tulip::get_running_loop()?;
    ///     let client = lp.sock_connect_unix(&path).await?;
    ///     let (server, _) = lp.sock_accept_unix(&listener).await?;
    ///     lp.sock_sendall(&client, b"hi").await?;
    ///     assert_eq!(lp.sock_recv(&server, 2).await?, b"hi");
    ///     std::fs::remove_dir_all(&dir)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn sock_accept_unix(
        &self,
        listener: &std::os::unix::net::UnixListener,
    ) -> Result<(std::os::unix::net::UnixStream, UnixSocketAddr)> {
        let accept = || again_if_aborted(listener.accept());
        let (s, addr) = self.sock_retry(listener.as_raw_fd(), false, accept).await?;
        s.set_nonblocking(true)?;
        Ok((s, addr))
    }

    /// asyncio's `sock_sendto(sock, data, address)` (3.11): sends one
    /// datagram to `addr` from a non-blocking UDP socket, waiting while the
    /// send buffer is full; returns how many bytes were sent.
    ///
    /// ```
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let a = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     a.set_nonblocking(true)?;
    ///     b.set_nonblocking(true)?;
    ///     lp.sock_sendto(&a, b"ping", b.local_addr()?).await?;
    ///     let (data, from) = lp.sock_recvfrom(&b, 100).await?;
    ///     assert_eq!((&data[..], from), (&b"ping"[..], a.local_addr()?));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn sock_sendto(
        &self,
        sock: &UdpSocket,
        data: &[u8],
        addr: SocketAddr,
    ) -> Result<usize> {
        self.sock_retry(sock.as_raw_fd(), true, || sock.send_to(data, addr))
            .await
    }

    /// asyncio's `sock_recvfrom(sock, bufsize)` (3.11): receives one
    /// datagram of at most `n` bytes (the rest of a longer one is
    /// discarded) from a non-blocking UDP socket, and who sent it.
    pub async fn sock_recvfrom(&self, sock: &UdpSocket, n: usize) -> Result<(Vec<u8>, SocketAddr)> {
        let mut buf = vec![0u8; n];
        let (k, addr) = self.sock_recvfrom_into(sock, &mut buf).await?;
        buf.truncate(k);
        Ok((buf, addr))
    }

    /// asyncio's `sock_recvfrom_into(sock, buf)` (3.11): receives one
    /// datagram into `buf` (the rest of a longer one is discarded); returns
    /// how many bytes were stored and who sent it. Pass `&mut buf[..n]`
    /// for asyncio's `nbytes`.
    pub async fn sock_recvfrom_into(
        &self,
        sock: &UdpSocket,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr)> {
        self.sock_retry(sock.as_raw_fd(), false, || sock.recv_from(buf))
            .await
    }

    /// asyncio's `sock_sendto(sock, data, address)` (3.11) on a Unix
    /// datagram socket (`AF_UNIX`, where asyncio's address is a path):
    /// sends one datagram to the socket bound at `path` from a non-blocking
    /// `UnixDatagram`, waiting while it cannot be sent; returns how many
    /// bytes were sent. Nothing bound at `path` is an error (`NotFound`, or
    /// `ConnectionRefused` for a stale socket file).
    ///
    /// ```
    /// use std::os::unix::net::UnixDatagram;
    /// tulip::run(async {
    ///     let dir = std::env::temp_dir().join(format!("tulip-doc-sockudg-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let (pa, pb) = (dir.join("a.sock"), dir.join("b.sock"));
    ///     let (a, b) = (UnixDatagram::bind(&pa)?, UnixDatagram::bind(&pb)?);
    ///     a.set_nonblocking(true)?;
    ///     b.set_nonblocking(true)?;
    ///     let lp = tulip::get_running_loop()?;
    ///     lp.sock_sendto_unix(&a, b"ping", &pb).await?;
    ///     let (data, from) = lp.sock_recvfrom_unix(&b, 100).await?;
    ///     assert_eq!(data, b"ping");
    ///     assert_eq!(from.as_pathname(), Some(pa.as_path()));
    ///     std::fs::remove_dir_all(&dir)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn sock_sendto_unix(
        &self,
        sock: &UnixDatagram,
        data: &[u8],
        path: impl AsRef<Path>,
    ) -> Result<usize> {
        let path = path.as_ref();
        self.sock_retry(sock.as_raw_fd(), true, || sock.send_to(data, path))
            .await
    }

    /// asyncio's `sock_recvfrom(sock, bufsize)` (3.11) on a Unix datagram
    /// socket: receives one datagram of at most `n` bytes (the rest of a
    /// longer one is discarded) from a non-blocking `UnixDatagram`, and the
    /// sender's address (its path, or unnamed for a sender that never
    /// bound one).
    pub async fn sock_recvfrom_unix(
        &self,
        sock: &UnixDatagram,
        n: usize,
    ) -> Result<(Vec<u8>, UnixSocketAddr)> {
        let mut buf = vec![0u8; n];
        let (k, addr) = self.sock_recvfrom_into_unix(sock, &mut buf).await?;
        buf.truncate(k);
        Ok((buf, addr))
    }

    /// asyncio's `sock_recvfrom_into(sock, buf)` (3.11) on a Unix datagram
    /// socket: receives one datagram into `buf` (the rest of a longer one
    /// is discarded); returns how many bytes were stored and the sender's
    /// address.
    pub async fn sock_recvfrom_into_unix(
        &self,
        sock: &UnixDatagram,
        buf: &mut [u8],
    ) -> Result<(usize, UnixSocketAddr)> {
        self.sock_retry(sock.as_raw_fd(), false, || sock.recv_from(buf))
            .await
    }

    /// The shape of every `sock_*` coroutine: try `op`; on `WouldBlock`
    /// wait until `fd` is readable (writable if `write`) and try again; on
    /// `Interrupted` try again at once. The wait's reader or writer is
    /// removed however it ends (see [`wait_readable`](EventLoop::wait_readable)).
    async fn sock_retry<T>(
        &self,
        fd: RawFd,
        write: bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> Result<T> {
        self.check_nonblocking(fd)?;
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            self.wait_fd(fd, write).await?;
        }
    }

    /// asyncio's debug-mode check in every `sock_*` coroutine: `if
    /// self._debug and sock.gettimeout() != 0: raise ValueError("the socket
    /// must be non-blocking")`. Outside debug mode a blocking socket is not
    /// checked (one `fcntl` per call saved), and blocks the loop.
    pub(crate) fn check_nonblocking(&self, fd: RawFd) -> Result<()> {
        if self.debug() && !crate::sys::is_nonblocking(fd)? {
            return Err(crate::error::Error::invalid_argument(
                "the socket must be non-blocking: call set_nonblocking(true) on it first \
                 (a blocking socket would block the event loop)",
            ));
        }
        Ok(())
    }

    /// asyncio's `getaddrinfo(host, port)`: IP literals at once; names with
    /// std's resolver in the loop's default executor
    /// ([`run_in_executor`](EventLoop::run_in_executor)), as asyncio does,
    /// so the loop never blocks and a burst of lookups shares the pool's
    /// bounded threads instead of starting one thread each.
    pub async fn getaddrinfo(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        self.getaddrinfo_family(host, port, AddressFamily::Unspec)
            .await
    }

    /// asyncio's `getaddrinfo(host, port, family=...)`: only the addresses
    /// of `family`. None of them (a name with only IPv6 addresses asked for
    /// IPv4, or an IP literal of the other family) is an error that says
    /// so, as the resolver's `EAI_ADDRFAMILY`/`EAI_NONAME`.
    ///
    /// ```
    /// use tulip::AddressFamily;
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let v4 = lp.getaddrinfo_family("127.0.0.1", 80, AddressFamily::Inet).await?;
    ///     assert_eq!(v4, ["127.0.0.1:80".parse().unwrap()]);
    ///     assert!(lp.getaddrinfo_family("127.0.0.1", 80, AddressFamily::Inet6).await.is_err());
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn getaddrinfo_family(
        &self,
        host: &str,
        port: u16,
        family: AddressFamily,
    ) -> Result<Vec<SocketAddr>> {
        let addrs = self.getaddrinfo_any(host, port).await?;
        if family == AddressFamily::Unspec {
            return Ok(addrs);
        }
        let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| family.matches(a)).collect();
        if kept.is_empty() {
            return Err(family.none_for(host));
        }
        Ok(kept)
    }

    async fn getaddrinfo_any(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = host.to_owned();
        let fut = self.run_in_executor(None, move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.collect::<Vec<_>>())
        })?;
        match fut.take_when_done().await? {
            Ok(addrs) if addrs.is_empty() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("getaddrinfo() returned empty list for {host:?} port {port}: the name has no address"),
            )
            .into()),
            Ok(addrs) => Ok(addrs),
            Err(e) => Err(os_error_with_context(e, format!("cannot resolve {host:?} port {port}")).into()),
        }
    }

    /// asyncio's `getnameinfo(sockaddr, flags=0)`: the `(host, service)`
    /// names of `addr`, from libc's `getnameinfo` run in the loop's default
    /// executor ([`run_in_executor`](EventLoop::run_in_executor)), so the
    /// loop never blocks on the resolver. `flags` are [`NI_NUMERICHOST`],
    /// [`NI_NUMERICSERV`], [`NI_NAMEREQD`] and [`NI_DGRAM`] ORed together,
    /// or 0. An address with no name comes back in numeric form, unless
    /// `NI_NAMEREQD` makes that an error.
    ///
    /// A failure is an [`Error::Io`](crate::Error::Io) that names the
    /// address, the flags and the `EAI_*` code, with `gai_strerror`'s text:
    /// `getnameinfo(127.0.0.1:80, flags=0x40000) failed: Bad value for
    /// ai_flags (EAI_BADFLAGS); pass 0 or tulip::NI_* flags ORed together`
    /// (its kind is `InvalidInput`; `NotFound` for a missing name).
    ///
    /// ```
    /// use tulip::{NI_NUMERICHOST, NI_NUMERICSERV};
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let addr = "127.0.0.1:8080".parse().unwrap();
    ///     let names = lp.getnameinfo(addr, NI_NUMERICHOST | NI_NUMERICSERV).await?;
    ///     assert_eq!(names, ("127.0.0.1".to_string(), "8080".to_string()));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn getnameinfo(&self, addr: SocketAddr, flags: i32) -> Result<(String, String)> {
        let fut = self.run_in_executor(None, move || crate::sys::getnameinfo(&addr, flags))?;
        Ok(fut.take_when_done().await??)
    }
}

/// [`EventLoop::getnameinfo`]'s flag: the host as a numeric address, not
/// a name (`socket.NI_NUMERICHOST`).
pub const NI_NUMERICHOST: i32 = libc::NI_NUMERICHOST;
/// [`EventLoop::getnameinfo`]'s flag: the service as a port number, not a
/// name (`socket.NI_NUMERICSERV`).
pub const NI_NUMERICSERV: i32 = libc::NI_NUMERICSERV;
/// [`EventLoop::getnameinfo`]'s flag: fail with `EAI_NONAME` when the host
/// has no name, instead of returning its numeric form
/// (`socket.NI_NAMEREQD`).
pub const NI_NAMEREQD: i32 = libc::NI_NAMEREQD;
/// [`EventLoop::getnameinfo`]'s flag: the service name of a UDP port, for
/// the few ports whose UDP and TCP names differ (`socket.NI_DGRAM`).
pub const NI_DGRAM: i32 = libc::NI_DGRAM;

impl<T: 'static> Future<T> {
    /// Waits until done and moves the result out (for non-`Clone` results
    /// with a single reader).
    ///
    /// Raises a cancel that reached the task once the future was done but
    /// before the task ran (the future could not be cancelled any more),
    /// as asyncio's `await fut` does: the task never sees the result.
    pub(crate) async fn take_when_done(&self) -> Result<T> {
        self.wait_done().await;
        if let Some(err) = crate::tasks::take_throw() {
            return Err(err);
        }
        self.take_result()
    }
}

/// An accept whose connection vanished before it was taken
/// (`ECONNABORTED`) is tried again at once, as asyncio's server accept
/// loop (`_accept_connection`) goes on past `ConnectionAbortedError`.
fn again_if_aborted<T>(accepted: io::Result<T>) -> io::Result<T> {
    match accepted {
        Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {
            Err(io::Error::from(io::ErrorKind::Interrupted))
        }
        other => other,
    }
}
