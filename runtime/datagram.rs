//! Datagram endpoints: UDP and Unix datagram sockets. Mirrors
//! `_SelectorDatagramTransport` in `Lib/asyncio/selector_events.py` and
//! `create_datagram_endpoint` in `base_events.py` (whose `family=AF_UNIX`
//! branch is [`EventLoop::create_unix_datagram_endpoint`] here).
//!
//! Each readiness edge receives datagrams (into the thread's shared read
//! buffer, 256 KiB) until `WouldBlock`, or at most `MAX_RECVS_PER_EDGE`
//! (64, then the rest on the next iteration), and hands each
//! one to `datagram_received(&buf[..n], addr)`. `sendto` sends at once when
//! nothing is queued; a datagram the kernel refuses (`WouldBlock`) is
//! queued and sent by an edge-triggered writer. Send and receive errors go
//! to `error_received`: the endpoint stays open, as in asyncio. Starting
//! and closing are the shared `_SelectorTransport` plumbing of
//! `selector_transport.rs`, as for stream transports.
//!
//! # Invariants
//! - Datagrams are sent whole and in order; the queue holds copies of the
//!   datagrams not sent yet, and `buffer_size` is the sum of their lengths
//!   plus `HEADER_SIZE` (8) for each.
//! - The writer is registered while the queue is non-empty; it is removed
//!   once the queue is empty, by that run of the writer or, after a failed
//!   send, by the next one (scheduled at once, as asyncio's level-triggered
//!   selector calls `_sendto_ready` again).
//! - As for stream transports, the socket is closed only after both
//!   registrations are gone, and `connection_lost` is called once: the
//!   connection is finished by one call only (the writer leaves a `close()`
//!   or `abort()` made from `resume_writing` to the call it scheduled).
//! - Every address handed to the protocol or to the socket is of the
//!   socket's kind (IP or Unix): `sendto` refuses an address of the other
//!   kind. Between IPv4 and IPv6 the kernel decides, and its refusal goes
//!   to `error_received`, as in asyncio.
//! - A UDP endpoint's local and remote addresses are of one family:
//!   addresses of two families are refused before any socket is made, and
//!   names are resolved (off the loop's thread) and paired by family as
//!   asyncio's `addr_infos` does.
//! - A protocol callback that panics while receiving goes to the loop's
//!   exception handler, and the endpoint reads on in the next iteration
//!   (asyncio's selector reports the socket again): datagrams already
//!   queued are not left waiting for a new edge.
//! - An endpoint that `create_datagram_endpoint` made but does not return
//!   (the wait for `connection_made` failed, was cancelled, or was
//!   dropped) is closed.
//! - `pause_writing` is called when `buffer_size` grows above the
//!   high-water mark (`set_write_buffer_limits`, 64 KiB by default; also
//!   when new marks put it above), and `resume_writing` when the writer
//!   drains it to the low-water mark: once per crossing, as asyncio's
//!   `_FlowControlMixin`.
//! - A panicking `pause_writing`/`resume_writing` is reported and the
//!   endpoint goes on (asyncio's `_maybe_pause_protocol`): `sendto` does
//!   not unwind, and a closing endpoint still flushes and loses its
//!   connection.
//!
//! # Deviations from asyncio
//! - `sendto(data, None)` on an endpoint with no remote address is an
//!   `Error::InvalidArgument`, and the endpoint stays open. asyncio calls
//!   `socket.sendto(data, None)`, whose `TypeError` goes to `_fatal_error`,
//!   which closes the endpoint.
//! - An endpoint over a socket that was connected before it was wrapped
//!   (`create_datagram_endpoint_sock`, or `DatagramSocketTransport::new`
//!   without an address) takes its peer as its remote address: `sendto` to
//!   another address is an `Error::InvalidArgument`, as on an endpoint made
//!   with a `remote_addr`. asyncio has no `_address` there. It skips the
//!   check and `send()`s to the peer, ignoring the address.
//! - Once `connection_lost` is scheduled (`close()` with nothing queued,
//!   `abort()`, a fatal error), `sendto` drops the datagram on every
//!   endpoint. asyncio drops it only on an endpoint with a remote address.
//!   On the others it still sends on the closing socket until
//!   `_call_connection_lost` closes it.
//! - No `pause_reading`/`resume_reading`: asyncio's
//!   `_SelectorDatagramTransport` inherits them from `_SelectorTransport`,
//!   but `DatagramTransport` does not promise them, and neither does tulip.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::rc::{Rc, Weak};

use crate::error::{os_error_with_context, panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt};
use crate::futures::Future;
use crate::protocols::DatagramProtocol;
use crate::reactor::Side;
use crate::selector_events::{put_read_buf, take_read_buf};
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::transports::{BaseTransport, DatagramAddr, DatagramTransport, ExtraInfo, WriteLimits};

/// How many datagrams one readiness edge receives before yielding.
const MAX_RECVS_PER_EDGE: usize = 64;

/// What each queued datagram adds to the write buffer size on top of its
/// bytes (asyncio's `_header_size`, 3.12+): the high-water mark bounds a
/// queue of tiny, or empty, datagrams too.
const HEADER_SIZE: usize = 8;

// ===== DatagramSocket =====

/// The socket of a [`DatagramSocketTransport`]: UDP or Unix datagrams.
#[derive(Debug)]
pub enum DatagramSocket {
    /// A UDP socket.
    Udp(UdpSocket),
    /// A Unix-domain datagram socket.
    Unix(UnixDatagram),
}

impl From<UdpSocket> for DatagramSocket {
    fn from(s: UdpSocket) -> Self {
        DatagramSocket::Udp(s)
    }
}

impl From<UnixDatagram> for DatagramSocket {
    fn from(s: UnixDatagram) -> Self {
        DatagramSocket::Unix(s)
    }
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            DatagramSocket::Udp(s) => s.as_raw_fd(),
            DatagramSocket::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl DatagramSocket {
    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            DatagramSocket::Udp(s) => s.set_nonblocking(true),
            DatagramSocket::Unix(s) => s.set_nonblocking(true),
        }
    }

    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, DatagramAddr)> {
        match self {
            DatagramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, a.into())),
            DatagramSocket::Unix(s) => s.recv_from(buf).map(|(n, a)| (n, a.into())),
        }
    }

    /// Sends to the connected peer.
    fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.send(data),
            DatagramSocket::Unix(s) => s.send(data),
        }
    }

    /// Sends to `addr`, which `sendto` checked is of the socket's family.
    fn send_to(&self, data: &[u8], addr: &DatagramAddr) -> io::Result<usize> {
        match (self, addr) {
            (DatagramSocket::Udp(s), DatagramAddr::Inet(a)) => s.send_to(data, a),
            (DatagramSocket::Unix(s), DatagramAddr::Unix(a)) => s.send_to_addr(data, a),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send to {addr}: it is not of the socket's address family"),
            )),
        }
    }

    /// True if `addr` is of this socket's family.
    fn fits(&self, addr: &DatagramAddr) -> bool {
        matches!(
            (self, addr),
            (DatagramSocket::Udp(_), DatagramAddr::Inet(_))
                | (DatagramSocket::Unix(_), DatagramAddr::Unix(_))
        )
    }

    /// The connected peer (getpeername), if the socket is connected.
    fn peer_addr(&self) -> Option<DatagramAddr> {
        match self {
            DatagramSocket::Udp(s) => s.peer_addr().ok().map(DatagramAddr::from),
            DatagramSocket::Unix(s) => s.peer_addr().ok().map(DatagramAddr::from),
        }
    }

    fn sockname(&self) -> Option<ExtraInfo> {
        match self {
            DatagramSocket::Udp(s) => s.local_addr().ok().map(ExtraInfo::Addr),
            DatagramSocket::Unix(s) => s.local_addr().ok().map(ExtraInfo::UnixAddr),
        }
    }
}

// ===== DatagramOptions =====

/// The socket keyword arguments of asyncio's `create_datagram_endpoint`:
/// `reuse_port` and `allow_broadcast` (for
/// [`EventLoop::create_datagram_endpoint_with`] and
/// [`EventLoop::create_datagram_endpoint_host`]; asyncio's `sock=` is
/// [`EventLoop::create_datagram_endpoint_sock`]), and `family`: the
/// addresses a name resolves to (`create_datagram_endpoint_host`), the
/// family an address given as it is must have, and, with no address at
/// all, the socket's family.
///
/// The defaults are asyncio's: neither option set, and any family
/// (`AF_UNSPEC`).
///
/// ```
/// use std::rc::Rc;
/// use tulip::{BaseTransport, DatagramOptions};
/// struct Nothing;
/// impl tulip::DatagramProtocol for Nothing {}
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     // Two endpoints on one port: the kernel spreads the datagrams.
///     let opts = DatagramOptions::new().reuse_port(true);
///     let local = "127.0.0.1:0".parse().unwrap();
///     let (a, _) = lp.create_datagram_endpoint_with(|| Rc::new(Nothing), Some(local), None, &opts).await?;
///     let local = a.get_extra_info("sockname").and_then(|i| i.as_addr());
///     let (b, _) = lp.create_datagram_endpoint_with(|| Rc::new(Nothing), local, None, &opts).await?;
///     assert_eq!(b.get_extra_info("sockname").and_then(|i| i.as_addr()), local);
///     a.close();
///     b.close();
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatagramOptions {
    reuse_port: bool,
    allow_broadcast: bool,
    family: crate::AddressFamily,
}

impl DatagramOptions {
    /// asyncio's defaults (see the type's docs).
    pub fn new() -> DatagramOptions {
        DatagramOptions::default()
    }

    /// asyncio's `family=`: the local and remote host names resolve to
    /// addresses of this family only, an address given as it is must be
    /// of it (else the resolver's error), and with neither address the
    /// socket is of this family (`Inet6`: bound to `[::]:0`).
    pub fn family(mut self, family: crate::AddressFamily) -> DatagramOptions {
        self.family = family;
        self
    }

    /// `SO_REUSEPORT` before `bind`: several sockets (of this or other
    /// processes, each with the option set) may bind the same address and
    /// port; the kernel balances the datagrams between them.
    pub fn reuse_port(mut self, on: bool) -> DatagramOptions {
        self.reuse_port = on;
        self
    }

    /// `SO_BROADCAST`: the endpoint may send to broadcast addresses. As in
    /// asyncio, a `remote_addr` is then not connected to: it is where
    /// `sendto(data, None)` sends (with `sendto(2)`), `peername` is `None`,
    /// and datagrams from any sender are received.
    pub fn allow_broadcast(mut self, on: bool) -> DatagramOptions {
        self.allow_broadcast = on;
        self
    }
}

// ===== DatagramSocketTransport =====

/// asyncio's `_SelectorDatagramTransport`: a UDP or Unix datagram socket
/// driven by the loop.
pub struct DatagramSocketTransport {
    /// The loop, socket, protocol and closing flags (asyncio's `_SelectorTransport`).
    base: TransportBase<DatagramSocket, Rc<dyn DatagramProtocol>>,
    /// Where `sendto(data, None)` sends (asyncio's `_address`): the
    /// `remote_addr`, or the peer of a socket that was connected already.
    address: Option<DatagramAddr>,
    /// Whether the socket is connected (asyncio's `_extra['peername']`):
    /// it then sends with `send(2)`. An endpoint that allows broadcast has
    /// an `address` but no connection, and sends to it with `sendto(2)`.
    connected: bool,
    /// asyncio's `_extra['sockname']`, taken when the transport is made:
    /// still known once the socket is closed.
    sockname: Option<ExtraInfo>,
    /// Whether the socket is a Unix one (for error messages once it is gone).
    unix: bool,
    buffer: RefCell<VecDeque<(Vec<u8>, Option<DatagramAddr>)>>,
    buffer_size: Cell<usize>,
    limits: Cell<WriteLimits>,
    me: Weak<DatagramSocketTransport>,
}

impl EventLoop {
    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr)`: a UDP socket bound to `local_addr` (default: any
    /// address, of the remote's family) and connected to `remote_addr` if
    /// given. Returns once `connection_made` has been called. Addresses of
    /// two families are an [`Error::InvalidArgument`] (asyncio's
    /// `ValueError`).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tulip::{BaseTransport, DatagramAddr};
    /// #[derive(Default)]
    /// struct Got(RefCell<Vec<u8>>);
    /// impl tulip::DatagramProtocol for Got {
    ///     fn datagram_received(&self, data: &[u8], _: DatagramAddr) {
    ///         self.0.borrow_mut().extend_from_slice(data);
    ///     }
    /// }
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let local = "127.0.0.1:0".parse().unwrap();
    ///     let (t, got) = lp.create_datagram_endpoint(|| Rc::new(Got::default()), Some(local), None).await?;
    ///     let addr = t.get_extra_info("sockname").and_then(|i| i.as_addr()).unwrap();
    ///     std::net::UdpSocket::bind("127.0.0.1:0")?.send_to(b"hi", addr)?;
    ///     tulip::sleep(0.05).await?;
    ///     assert_eq!(&*got.0.borrow(), b"hi");
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint<P, F>(
        &self,
        protocol_factory: F,
        local_addr: Option<SocketAddr>,
        remote_addr: Option<SocketAddr>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let options = DatagramOptions::default();
        self.create_datagram_endpoint_with(protocol_factory, local_addr, remote_addr, &options)
            .await
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr, reuse_port=..., allow_broadcast=...)`:
    /// [`create_datagram_endpoint`](EventLoop::create_datagram_endpoint)
    /// with [`DatagramOptions`], set on the socket before `bind`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramOptions, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let opts = DatagramOptions::new().allow_broadcast(true);
    ///     let (t, _) = lp
    ///         .create_datagram_endpoint_with(|| Rc::new(Nothing), None, Some(peer.local_addr()?), &opts)
    ///         .await?;
    ///     // Not connected: sent with sendto(2) to the remote address.
    ///     assert!(t.get_extra_info("peername").is_none());
    ///     t.sendto(b"hi", None)?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(peer.recv(&mut buf)?, 2);
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint_with<P, F>(
        &self,
        protocol_factory: F,
        local_addr: Option<SocketAddr>,
        remote_addr: Option<SocketAddr>,
        options: &DatagramOptions,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        // asyncio resolves each address with `family=`: one of the other
        // family is the resolver's error, before any socket is made.
        for a in local_addr.iter().chain(remote_addr.iter()) {
            if !options.family.matches(a) {
                return Err(options.family.none_for(&a.ip().to_string()));
            }
        }
        // asyncio pairs the two addresses by family, and raises ValueError
        // when no family has both (before making any socket).
        if let (Some(l), Some(r)) = (local_addr, remote_addr) {
            if l.is_ipv4() != r.is_ipv4() {
                return Err(Error::invalid_argument(format!(
                    "can not get address information: local_addr {l} and remote_addr {r} are of different address families; give both as IPv4 or both as IPv6"
                )));
            }
        }
        let local = match (local_addr, remote_addr) {
            (Some(l), _) => l,
            (None, Some(SocketAddr::V6(_))) => "[::]:0".parse().expect("literal"),
            // asyncio's `family=AF_INET6` with neither address: an
            // AF_INET6 socket (`addr_pairs_info = (((family, proto),
            // (None, None)),)`).
            (None, None) if options.family == crate::AddressFamily::Inet6 => {
                "[::]:0".parse().expect("literal")
            }
            (None, _) => "0.0.0.0:0".parse().expect("literal"),
        };
        // asyncio connects to `remote_addr` unless broadcast is allowed;
        // either way the transport sends there (`r_addr`).
        let sock = crate::sys::udp_socket(
            Some(local),
            remote_addr,
            !options.allow_broadcast,
            options.reuse_port,
            options.allow_broadcast,
        )?;
        let remote = remote_addr.map(DatagramAddr::from);
        self.make_datagram_transport(protocol_factory, sock.into(), remote)
            .await
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory,
    /// local_addr=(host, port), remote_addr=(host, port), ...)`: as
    /// [`create_datagram_endpoint_with`](EventLoop::create_datagram_endpoint_with),
    /// each address given as a host name (or an IP address in text) and a
    /// port, resolved with [`getaddrinfo`](EventLoop::getaddrinfo) off the
    /// loop's thread.
    ///
    /// As asyncio does, the addresses are paired by family (IPv4, IPv6, in
    /// the order the resolver gave them, the local address's first): a
    /// family is a candidate only if it has an address for each one given,
    /// and the first candidate whose socket can be made, bound and
    /// connected is used; if none can, the first error is returned. No
    /// candidate (`("127.0.0.1", 0)` and `("::1", 53)`) is an
    /// [`Error::InvalidArgument`] (asyncio's `ValueError('can not get
    /// address information')`). Without a local address, the socket is
    /// not bound before it connects (the kernel picks the address, as in
    /// asyncio); with neither, it is bound to `0.0.0.0:0`, as by
    /// [`create_datagram_endpoint`](EventLoop::create_datagram_endpoint)
    /// (to `[::]:0` with [`DatagramOptions::family`] `Inet6`).
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramOptions, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let peer = std::net::UdpSocket::bind("127.0.0.1:0")?;
    ///     let port = peer.local_addr()?.port();
    ///     let (t, _) = lp
    ///         .create_datagram_endpoint_host(
    ///             || Rc::new(Nothing),
    ///             Some(("localhost", 0)),
    ///             Some(("127.0.0.1", port)),
    ///             &DatagramOptions::new(),
    ///         )
    ///         .await?;
    ///     t.sendto(b"hi", None)?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(peer.recv(&mut buf)?, 2);
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint_host<P, F>(
        &self,
        protocol_factory: F,
        local_addr: Option<(&str, u16)>,
        remote_addr: Option<(&str, u16)>,
        options: &DatagramOptions,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        if local_addr.is_none() && remote_addr.is_none() {
            return self
                .create_datagram_endpoint_with(protocol_factory, None, None, options)
                .await;
        }
        let mut locals = Vec::new();
        if let Some((host, port)) = local_addr {
            locals = self.getaddrinfo_family(host, port, options.family).await?;
        }
        let mut remotes = Vec::new();
        if let Some((host, port)) = remote_addr {
            remotes = self.getaddrinfo_family(host, port, options.family).await?;
        }
        let pairs = pair_by_family(
            &locals,
            &remotes,
            local_addr.is_some(),
            remote_addr.is_some(),
        );
        if pairs.is_empty() {
            return Err(Error::invalid_argument(format!(
                "can not get address information: local_addr {locals:?} and remote_addr {remotes:?} have no address family in common; give both as IPv4 or both as IPv6"
            )));
        }
        // asyncio's `for ... in addr_pairs_info: try: ... except OSError:
        // exceptions.append(exc) else: break`, then `raise exceptions[0]`.
        let mut first_error = None;
        for (local, remote) in pairs {
            match crate::sys::udp_socket(
                local,
                remote,
                !options.allow_broadcast,
                options.reuse_port,
                options.allow_broadcast,
            ) {
                Ok(sock) => {
                    let remote = remote.map(DatagramAddr::from);
                    return self
                        .make_datagram_transport(protocol_factory, sock.into(), remote)
                        .await;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("one pair at least").into())
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory, sock=sock)`:
    /// an endpoint on an existing datagram socket (UDP or Unix), bound and
    /// set up by the caller. As in asyncio, no address is given: a socket
    /// connected already sends to its peer (`sendto(data, None)`, and
    /// `peername`), any other needs an address for each datagram. Returns
    /// once `connection_made` has been called.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::{BaseTransport, DatagramTransport};
    /// struct Nothing;
    /// impl tulip::DatagramProtocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let (a, b) = std::os::unix::net::UnixDatagram::pair()?;
    ///     let (t, _) = lp.create_datagram_endpoint_sock(|| Rc::new(Nothing), a).await?;
    ///     t.sendto(b"hi", None)?;
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(b.recv(&mut buf)?, 2);
    ///     t.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_datagram_endpoint_sock<P, F>(
        &self,
        protocol_factory: F,
        sock: impl Into<DatagramSocket>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        self.make_datagram_transport(protocol_factory, sock.into(), None)
            .await
    }

    /// asyncio's `create_datagram_endpoint(protocol_factory, local_addr,
    /// remote_addr, family=socket.AF_UNIX)`: a Unix datagram socket, bound
    /// to the path `local_path` if given and connected to `remote_path` if
    /// given. Returns once `connection_made` has been called.
    ///
    /// - A stale socket file at `local_path` is removed first, as asyncio
    ///   does; any other file there makes the bind fail (`AddrInUse`), and
    ///   the error says so. The socket file stays after the endpoint
    ///   closes (as in asyncio): remove it, or let the next bind do it.
    /// - A peer can only answer a socket that has a path: give `local_path`
    ///   to receive replies.
    /// - Connecting to a path where nothing is bound fails with `NotFound`
    ///   (no file) or `ConnectionRefused` (a stale socket file).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use tulip::transports::prelude::*;
    ///
    /// /// Answers every datagram with its upper-case copy.
    /// #[derive(Default)]
    /// struct Shout(RefCell<Option<Rc<dyn DatagramTransport>>>);
    /// impl DatagramProtocol for Shout {
    ///     fn connection_made(&self, t: Rc<dyn DatagramTransport>) {
    ///         *self.0.borrow_mut() = Some(t);
    ///     }
    ///     fn datagram_received(&self, data: &[u8], addr: DatagramAddr) {
    ///         let t = self.0.borrow().clone().unwrap();
    ///         t.sendto(&data.to_ascii_uppercase(), Some(addr)).unwrap();
    ///     }
    /// }
    ///
    /// tulip::run(async {
    ///     let dir = std::env::temp_dir().join(format!("tulip-doc-dgram-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let (server, client) = (dir.join("server.sock"), dir.join("client.sock"));
    ///     let lp = tulip::get_running_loop()?;
    ///     let (st, _) = lp
    ///         .create_unix_datagram_endpoint(|| Rc::new(Shout::default()), Some(&server), None)
    ///         .await?;
    ///     let me = std::os::unix::net::UnixDatagram::bind(&client)?;
    ///     me.send_to(b"hi", &server)?;
    ///     let mut buf = [0u8; 16];
    ///     me.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    ///     // The loop must run to answer: receive in a thread.
    ///     let reply = tulip::to_thread(move || me.recv(&mut buf).map(|n| buf[..n].to_vec())).await??;
    ///     assert_eq!(reply, b"HI");
    ///     st.close();
    ///     std::fs::remove_dir_all(&dir)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_unix_datagram_endpoint<P, F>(
        &self,
        protocol_factory: F,
        local_path: Option<&Path>,
        remote_path: Option<&Path>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let sock = match local_path {
            Some(path) => {
                crate::base_events_net::remove_stale_socket(path);
                UnixDatagram::bind(path).map_err(|e| bind_error(e, path))?
            }
            None => UnixDatagram::unbound()?,
        };
        let remote = match remote_path {
            Some(path) => {
                sock.connect(path).map_err(|e| {
                    os_error_with_context(e, format!("connect call failed ({})", path.display()))
                })?;
                Some(DatagramAddr::from_path(path)?)
            }
            None => None,
        };
        self.make_datagram_transport(protocol_factory, sock.into(), remote)
            .await
    }

    /// asyncio's `_make_datagram_transport` and the wait for its waiter.
    async fn make_datagram_transport<P, F>(
        &self,
        protocol_factory: F,
        sock: DatagramSocket,
        remote: Option<DatagramAddr>,
    ) -> Result<(Rc<DatagramSocketTransport>, Rc<P>)>
    where
        P: DatagramProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let protocol = protocol_factory();
        let waiter: Future<()> = self.create_future();
        let t = DatagramSocketTransport::new(
            self,
            sock,
            protocol.clone(),
            remote,
            Some(waiter.clone()),
        )?;
        // asyncio's `except: transport.close(); raise`, also when this
        // future is dropped at the await: the endpoint is registered with
        // the loop, and would otherwise stay bound with nobody holding it.
        let close = CloseUnlessMade(&t);
        waiter.await?;
        std::mem::forget(close);
        Ok((t, protocol))
    }
}

/// asyncio's `addr_infos` of `create_datagram_endpoint`: the resolved
/// addresses joined by family, in the order the families first appear
/// (the local addresses first). As asyncio's `addr_infos[key][idx] =
/// address` does, the last address of a family wins on each side. A family
/// is kept only if it has an address for each side that was given
/// (`has_local`, `has_remote`).
fn pair_by_family(
    locals: &[SocketAddr],
    remotes: &[SocketAddr],
    has_local: bool,
    has_remote: bool,
) -> Vec<(Option<SocketAddr>, Option<SocketAddr>)> {
    // (is IPv4, local, remote), at most one per family.
    let mut families: Vec<(bool, Option<SocketAddr>, Option<SocketAddr>)> = Vec::new();
    let sides = [(locals, true), (remotes, false)];
    for (addrs, local) in sides {
        for a in addrs {
            let i = match families.iter().position(|f| f.0 == a.is_ipv4()) {
                Some(i) => i,
                None => {
                    families.push((a.is_ipv4(), None, None));
                    families.len() - 1
                }
            };
            if local {
                families[i].1 = Some(*a);
            } else {
                families[i].2 = Some(*a);
            }
        }
    }
    families
        .into_iter()
        .filter(|(_, l, r)| (l.is_some() || !has_local) && (r.is_some() || !has_remote))
        .map(|(_, l, r)| (l, r))
        .collect()
}

/// Closes the transport of a `make_datagram_transport` that did not return
/// it (its wait failed, was cancelled, or was dropped).
struct CloseUnlessMade<'a>(&'a Rc<DatagramSocketTransport>);

impl Drop for CloseUnlessMade<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A failed bind on `path`, saying what is in the way when it can (also
/// the Unix stream server's, in `base_events_net`).
pub(crate) fn bind_error(e: io::Error, path: &Path) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let in_the_way = e.kind() == io::ErrorKind::AddrInUse
        && std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_socket());
    let context = if in_the_way {
        format!(
            "cannot bind on address {}: the path exists and is not a socket (remove it, or choose another path)",
            path.display()
        )
    } else {
        format!(
            "error while attempting to bind on address {}",
            path.display()
        )
    };
    os_error_with_context(e, context)
}

impl DatagramSocketTransport {
    /// Wraps a bound (and maybe connected) datagram socket: makes it
    /// non-blocking, then calls `connection_made` on the next iteration and
    /// starts receiving. `address` is where `sendto(data, None)` sends
    /// (asyncio's `address`): with `send(2)` if the socket is connected,
    /// else with `sendto(2)`. With `address` `None`, a socket
    /// that is already connected has its peer asked of it (getpeername, as
    /// asyncio's `_extra['peername']`), so `sendto(data, None)` sends there.
    pub fn new(
        lp: &EventLoop,
        sock: impl Into<DatagramSocket>,
        protocol: Rc<dyn DatagramProtocol>,
        address: Option<DatagramAddr>,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<DatagramSocketTransport>> {
        let sock = sock.into();
        sock.set_nonblocking()?;
        let unix = matches!(sock, DatagramSocket::Unix(_));
        // asyncio's `sock=` path passes no address, and the transport still
        // sends to the peer of a connected socket and reports it.
        let peer = sock.peer_addr();
        let connected = peer.is_some();
        let address = address.or(peer);
        if let Some(a) = &address {
            if !sock.fits(a) {
                return Err(Error::invalid_argument(format!(
                    "the peer address {a} is not of the socket's family: give an IP address for a UDP socket, a path for a Unix one"
                )));
            }
        }
        let sockname = sock.sockname();
        let t = Rc::new_cyclic(|me| DatagramSocketTransport {
            base: TransportBase::new(lp, sock, protocol),
            address,
            connected,
            sockname,
            unix,
            buffer: RefCell::new(VecDeque::new()),
            buffer_size: Cell::new(0),
            limits: Cell::new(WriteLimits::default()),
            me: me.clone(),
        });
        t.schedule_start(waiter)?;
        t.register_fd();
        Ok(t)
    }

    fn read_ready(&self) {
        let mut buf = take_read_buf();
        let rearm = ReadAgainOnUnwind(self);
        self.recv_loop(&mut buf);
        drop(rearm);
        put_read_buf(buf);
    }

    /// Reads on in the next iteration, without waiting for a new edge.
    fn read_again(&self) {
        if let Some(me) = self.rc() {
            let _ = self.base.lp.call_soon(move || me.read_ready());
        }
    }

    fn recv_loop(&self, buf: &mut [u8]) {
        for _ in 0..MAX_RECVS_PER_EDGE {
            if self.base.conn_lost.get() > 0 || self.base.closing.get() {
                return;
            }
            let res = match &*self.base.sock.borrow() {
                Some(s) => s.recv_from(buf),
                None => return,
            };
            match res {
                Ok((k, addr)) => {
                    if let Some(p) = self.base.protocol() {
                        p.datagram_received(&buf[..k], addr);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if let Some(p) = self.base.protocol() {
                        p.error_received(e.into());
                    }
                }
            }
        }
        // Fairness: the rest on the next iteration.
        self.read_again();
    }

    /// asyncio's `if self._extra['peername']: send(data) else:
    /// sendto(data, addr)`, where `addr` defaults to `_address`.
    fn send_one(&self, data: &[u8], addr: Option<&DatagramAddr>) -> io::Result<usize> {
        match &*self.base.sock.borrow() {
            Some(s) => match addr.or(self.address.as_ref()) {
                Some(a) if !self.connected => s.send_to(data, a),
                _ => s.send(data),
            },
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// asyncio's `_sendto_ready` returns after a failed send, and its
    /// level-triggered selector calls it again on the next iteration for
    /// the datagrams still queued (or, with none left, to remove the writer
    /// and finish a `close()`). An edge is reported once: this schedules
    /// that next run, which does nothing if the writer is gone by then
    /// (`abort()`).
    fn write_again(&self) {
        if let Some(me) = self.rc() {
            let _ = self.base.lp.call_soon(move || {
                if me.base.writer_registered.get() {
                    me.write_ready();
                }
            });
        }
    }

    /// Calls a flow-control method of the protocol; a panic is reported
    /// and the endpoint goes on (asyncio's `_maybe_pause_protocol` and
    /// `_maybe_resume_protocol`), so that it never unwinds through
    /// `sendto`, nor out of the writer before a closing endpoint's
    /// `connection_lost`. `Interrupt` (Ctrl-C) goes on unwinding.
    fn flow_call(&self, what: &str, f: fn(&dyn DatagramProtocol)) {
        let Some(p) = self.base.protocol() else {
            return;
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&*p))) {
            if payload.is::<Interrupt>() {
                std::panic::resume_unwind(payload);
            }
            self.base.lp.call_exception_handler(&ExceptionContext {
                message: format!("protocol.{what}() failed"),
                error: Some(Error::Panic(panic_message(&*payload))),
                transport: Some(format!("{self:?}")),
                ..Default::default()
            });
        }
    }

    fn write_ready(&self) {
        loop {
            let front = self.buffer.borrow_mut().pop_front();
            let Some((data, addr)) = front else { break };
            match self.send_one(&data, addr.as_ref()) {
                Ok(_) => self
                    .buffer_size
                    .set(self.buffer_size.get() - (data.len() + HEADER_SIZE)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Try again on the next edge; the protocol may still
                    // resume now, as asyncio's `break` does.
                    self.buffer.borrow_mut().push_front((data, addr));
                    break;
                }
                Err(e) => {
                    self.buffer_size
                        .set(self.buffer_size.get() - (data.len() + HEADER_SIZE));
                    // Scheduled first, so that a panicking error_received
                    // does not strand the rest either.
                    self.write_again();
                    if let Some(p) = self.base.protocol() {
                        p.error_received(e.into());
                    }
                    return;
                }
            }
        }
        let mut l = self.limits.get();
        if l.maybe_resume(self.buffer_size.get()) {
            self.limits.set(l);
            self.flow_call("resume_writing", |p| p.resume_writing());
        }
        // What the kernel refused waits for the next edge, and
        // resume_writing may have queued a datagram (its `sendto` found the
        // writer registered and did not add it again): asyncio removes the
        // writer only if the buffer is empty. resume_writing may also have
        // closed or aborted the endpoint: then `connection_lost` is
        // scheduled already, and the writer is gone. Finishing the
        // connection here as well (as asyncio's `_sendto_ready` does,
        // calling `_call_connection_lost` a second time) would close the
        // socket now, and leave the scheduled call to run on a closed fd
        // number, removing the reader of whatever socket has it by then (N4).
        if !self.buffer.borrow().is_empty() || self.base.conn_lost.get() > 0 {
            return;
        }
        self.base.remove_writer();
        if self.base.closing.get() {
            self.call_connection_lost(None);
        }
    }
}

/// asyncio's `_read_ready` lets what `datagram_received` or
/// `error_received` raises go to the loop's exception handler, and its
/// level-triggered selector then reports the socket again for the datagrams
/// still queued. An edge is reported once: when a protocol callback panics
/// out of [`DatagramSocketTransport::read_ready`], this guard schedules the
/// next read itself, so the queued datagrams do not wait for another one
/// to arrive.
struct ReadAgainOnUnwind<'a>(&'a DatagramSocketTransport);

impl Drop for ReadAgainOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.read_again();
        }
    }
}

impl SelectorTransport for DatagramSocketTransport {
    type Sock = DatagramSocket;
    type Proto = Rc<dyn DatagramProtocol>;

    fn base(&self) -> &TransportBase<DatagramSocket, Rc<dyn DatagramProtocol>> {
        &self.base
    }

    fn rc(&self) -> Option<Rc<DatagramSocketTransport>> {
        self.me.upgrade()
    }

    fn connection_made(this: Rc<DatagramSocketTransport>, protocol: &Rc<dyn DatagramProtocol>) {
        protocol.connection_made(this);
    }

    fn connection_lost(protocol: &Rc<dyn DatagramProtocol>, exc: Option<Error>) {
        protocol.connection_lost(exc);
    }

    fn wants_reader(&self) -> bool {
        self.base.conn_lost.get() == 0 && !self.base.closing.get()
    }

    fn read_ready(&self) {
        DatagramSocketTransport::read_ready(self);
    }

    fn write_buffer_is_empty(&self) -> bool {
        self.buffer.borrow().is_empty()
    }

    fn clear_write_buffer(&self) {
        self.buffer.borrow_mut().clear();
        self.buffer_size.set(0);
    }
}

impl BaseTransport for DatagramSocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "sockname" => self.sockname.clone(),
            // asyncio's getpeername(): none for an endpoint that allows
            // broadcast, whose remote address is not connected to.
            "peername" => self
                .address
                .as_ref()
                .filter(|_| self.connected)
                .map(|a| match a {
                    DatagramAddr::Inet(a) => ExtraInfo::Addr(*a),
                    DatagramAddr::Unix(a) => ExtraInfo::UnixAddr(a.clone()),
                }),
            "socket" => self.base.sock_fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.base.closing.get()
    }

    fn close(&self) {
        self.close_transport();
    }
}

impl DatagramTransport for DatagramSocketTransport {
    fn sendto(&self, data: &[u8], addr: Option<DatagramAddr>) -> Result<()> {
        if let (Some(a), Some(peer)) = (&addr, &self.address) {
            if a != peer {
                return Err(Error::InvalidArgument(
                    format!("invalid address {a}: must be None or {peer}, the address this endpoint sends to").into(),
                ));
            }
        }
        if let Some(a) = &addr {
            if a.as_inet().is_some() == self.unix {
                let (want, got) = match self.unix {
                    true => ("a Unix path", "an IP address"),
                    false => ("an IP address", "a Unix path"),
                };
                return Err(Error::InvalidArgument(
                    format!("invalid address {a}: this endpoint sends to {want}, not {got}").into(),
                ));
            }
        }
        if addr.is_none() && self.address.is_none() {
            return Err(Error::InvalidArgument(
                "an address is needed: the endpoint is not connected; pass one to sendto, or create the endpoint with a remote_addr".into(),
            ));
        }
        if self.base.conn_lost.get() > 0 {
            self.base.conn_lost.set(self.base.conn_lost.get() + 1);
            return Ok(());
        }
        if self.buffer.borrow().is_empty() {
            match self.send_one(data, addr.as_ref()) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.base.writer_registered.get() {
                        if let Some(me) = self.rc() {
                            let fd = self.base.fd;
                            self.base
                                .lp
                                .add_io_edge(fd, Side::Write, move || me.write_ready())?;
                            self.base.writer_registered.set(true);
                        }
                    }
                }
                Err(e) => {
                    if let Some(p) = self.base.protocol() {
                        p.error_received(e.into());
                    }
                    return Ok(());
                }
            }
        }
        self.buffer.borrow_mut().push_back((data.to_vec(), addr));
        self.buffer_size
            .set(self.buffer_size.get() + data.len() + HEADER_SIZE);
        let mut l = self.limits.get();
        if l.maybe_pause(self.buffer_size.get()) {
            self.limits.set(l);
            self.flow_call("pause_writing", |p| p.pause_writing());
        }
        Ok(())
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn get_write_buffer_size(&self) -> usize {
        self.buffer_size.get()
    }

    /// asyncio's `_FlowControlMixin.set_write_buffer_limits`: the new marks,
    /// then `_maybe_pause_protocol` (a queue already above the new `high`
    /// pauses the protocol at once; resuming waits for the writer).
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let mut l = self.limits.get();
        l.set(high, low)?;
        let pause = l.maybe_pause(self.buffer_size.get());
        self.limits.set(l);
        if pause {
            self.flow_call("pause_writing", |p| p.pause_writing());
        }
        Ok(())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        let l = self.limits.get();
        (l.low, l.high)
    }

    fn get_protocol(&self) -> Option<Rc<dyn DatagramProtocol>> {
        self.base.protocol()
    }

    fn set_protocol(&self, protocol: Rc<dyn DatagramProtocol>) -> Result<()> {
        self.base.set_protocol(protocol);
        Ok(())
    }
}

impl fmt::Debug for DatagramSocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramSocketTransport")
            .field("fd", &self.base.fd)
            .field("peer", &self.address.as_ref().map(|a| a.to_string()))
            .field("closing", &self.base.closing.get())
            .field("queued", &self.buffer.borrow().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::pair_by_family;
    use std::net::SocketAddr;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_paired_by_family_as_asyncio_joins_addr_infos() {
        // "localhost" resolving to ::1 then 127.0.0.1, a remote with only
        // an IPv4 address: only IPv4 has both.
        let locals = [a("[::1]:0"), a("127.0.0.1:0")];
        let remotes = [a("127.0.0.1:9")];
        assert_eq!(
            pair_by_family(&locals, &remotes, true, true),
            [(Some(a("127.0.0.1:0")), Some(a("127.0.0.1:9")))]
        );
        // Both families: in the order they first appear, the local side's
        // first; the last address of a family wins (`addr_infos[key][idx]
        // = address`).
        let remotes = [a("127.0.0.2:9"), a("[::1]:9"), a("127.0.0.3:9")];
        assert_eq!(
            pair_by_family(&locals, &remotes, true, true),
            [
                (Some(a("[::1]:0")), Some(a("[::1]:9"))),
                (Some(a("127.0.0.1:0")), Some(a("127.0.0.3:9"))),
            ]
        );
        // A side not given needs no address.
        assert_eq!(
            pair_by_family(&[], &remotes, false, true),
            [(None, Some(a("127.0.0.3:9"))), (None, Some(a("[::1]:9")))]
        );
        assert!(pair_by_family(&[a("127.0.0.1:0")], &[a("[::1]:9")], true, true).is_empty());
    }
}
