//! Servers. Mirrors `create_server` and `Server` in
//! `Lib/asyncio/base_events.py`, `_accept_connection` in
//! `selector_events.py`, and `create_unix_server` in `unix_events.py`.
//! (Connections are made in [`base_events_connect`](crate::base_events_connect).)
//!
//! A server is a set of listening sockets, each with an edge-triggered
//! reader that accepts until `WouldBlock` and wraps every new connection in
//! a [`SocketTransport`] with a fresh protocol from the factory.
//!
//! A [`BufferedProtocol`] has functions of its own (asyncio passes either
//! kind to the same function): `create_server_buffered` and
//! `create_unix_server_buffered` (with [`ServerOptions`]), and
//! `create_server_buffered_sock`. They differ from their plain
//! counterparts only in the factory they build (`stream_factory` with
//! `StreamProtocol::plain` or `StreamProtocol::buffered`), then share the
//! binding and serving code.
//!
//! # Invariants
//! - `sockets` is `None` once the server is closed; a closed server never
//!   accepts again and never reopens. `close` closes the listening sockets
//!   then (unless the caller keeps one from [`Server::sockets`]): only the
//!   accept reader holds one strongly besides `sockets`, and `close`
//!   removes it; a pending accept continuation or retry holds it weakly.
//! - A server's socket listens with the server's backlog (asyncio's
//!   default: 100) from `start_serving` on, as asyncio's `_start_serving`
//!   calls `listen(backlog)`: a TCP server created with `start_serving`
//!   false is bound but refuses connections until then. TCP sockets get
//!   `SO_REUSEADDR`/`SO_REUSEPORT` before `bind`, as [`ServerOptions`] says.
//!   (A Unix socket listens from its creation: mio binds and listens in one
//!   call.)
//! - Closing a Unix server removes a socket file only with
//!   `cleanup_socket` (the default), and only the file whose inode was
//!   recorded when the server was made: the path it bound, or the path of
//!   the socket it was given (asyncio 3.13's `_unix_server_sockets`).
//! - The accept readers are registered exactly while `serving` is true
//!   (less an `ACCEPT_RETRY_DELAY` pause): nothing is accepted before
//!   `start_serving`, nor after `close`.
//! - With `keep_alive`, every accepted TCP socket has `SO_KEEPALIVE` set
//!   before its transport exists; one whose option cannot be set is
//!   reported and closed.
//! - `active_count` counts the server's transports whose `connection_lost`
//!   has not run; `wait_closed` returns once the server is closed and it is 0.
//! - An accept that fails for lack of resources (EMFILE, ENFILE, ENOBUFS,
//!   ENOMEM) stops accepting on that socket for [`ACCEPT_RETRY_DELAY`]
//!   instead of spinning; other accept errors are reported and the server
//!   keeps serving (N4). *Deviation:* the accept reader is edge-triggered,
//!   so after such an error it accepts again at the listener's next edge
//!   (the next connection to arrive), and connections already queued wait
//!   for it; asyncio's level-triggered selector retries at the next
//!   iteration (and, for an error that persists, at every one). On Linux a
//!   TCP `accept` rarely fails so: `ECONNABORTED` is skipped here, and
//!   `EPERM` comes from a security module's refusal.
//! - A protocol factory that panics costs its connection alone: the panic
//!   is reported, the accepted socket closed, and the server accepts on
//!   (also after an [`Interrupt`], in the next run: an edge is reported
//!   once).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use slab::Slab;

use crate::error::{bind_error, panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt, LoopRef};
use crate::futures::Future;
use crate::protocols::{BufferedProtocol, Protocol};
use crate::selector_events::{SocketTransport, StreamProtocol, StreamSocket};
use crate::transports::{BaseTransport, ExtraInfo, WriteTransport};

/// asyncio's default `backlog` for `create_server` and `create_unix_server`.
pub const DEFAULT_BACKLOG: u32 = 100;

/// How long accepting pauses after EMFILE and friends (asyncio's
/// `ACCEPT_RETRY_DELAY` is 1 s; tulip retries sooner).
pub const ACCEPT_RETRY_DELAY: f64 = 0.25;

/// How many connections one readiness edge accepts before yielding.
const MAX_ACCEPTS_PER_EDGE: usize = 128;

/// What a server calls for each connection: asyncio's `protocol_factory`.
pub type ProtocolFactory = Rc<dyn Fn() -> Rc<dyn Protocol>>;

/// What a server calls for each connection: a factory of either kind of
/// protocol.
type StreamFactory = Rc<dyn Fn() -> StreamProtocol>;

/// The socket keyword arguments of asyncio's `create_server` and
/// `start_server`: `family`, `backlog`, `reuse_address`, `reuse_port`,
/// `keep_alive` (3.13), and `start_serving`; and `create_unix_server`'s
/// `cleanup_socket` (3.13).
///
/// The defaults are asyncio's on Unix: addresses of any family
/// (`AF_UNSPEC`), a backlog of 100 ([`DEFAULT_BACKLOG`]), `SO_REUSEADDR`
/// on, `SO_REUSEPORT` off, `SO_KEEPALIVE` off, serving at once, a Unix
/// socket's file removed at close.
///
/// ```
/// use std::rc::Rc;
/// use tulip::ServerOptions;
/// struct Nothing;
/// impl tulip::Protocol for Nothing {}
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     // Two servers on one port: the kernel spreads the connections.
///     let opts = ServerOptions::new().reuse_port(true).backlog(16);
///     let a = lp.create_server_with(|| Rc::new(Nothing), "127.0.0.1", 0, &opts).await?;
///     let port = a.local_addrs()[0].port();
///     let b = lp.create_server_with(|| Rc::new(Nothing), "127.0.0.1", port, &opts).await?;
///     assert_eq!(b.local_addrs()[0].port(), port);
///     a.close();
///     b.close();
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    backlog: u32,
    reuse_address: bool,
    reuse_port: bool,
    keep_alive: bool,
    start_serving: bool,
    cleanup_socket: bool,
    family: crate::AddressFamily,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_address: true,
            reuse_port: false,
            keep_alive: false,
            start_serving: true,
            cleanup_socket: true,
            family: crate::AddressFamily::Unspec,
        }
    }
}

/// A [`ServerOptions`] setter of an option that is on or off.
macro_rules! flag {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, on: bool) -> ServerOptions {
            self.$name = on;
            self
        }
    };
}

impl ServerOptions {
    /// asyncio's `family=`: the host's name resolves to addresses of this
    /// family only; with host `""`, only that family's wildcard is bound
    /// (say [`AddressFamily::Inet`](crate::AddressFamily) for `0.0.0.0`
    /// alone).
    pub fn family(mut self, family: crate::AddressFamily) -> ServerOptions {
        self.family = family;
        self
    }

    /// asyncio's defaults (see the type's docs).
    pub fn new() -> ServerOptions {
        ServerOptions::default()
    }

    /// The `listen()` backlog: how many connections the kernel queues until
    /// the server accepts them (capped by `net.core.somaxconn`). Once the
    /// queue is full, Linux drops new SYNs and clients retry after a second.
    pub fn backlog(mut self, backlog: u32) -> ServerOptions {
        self.backlog = backlog;
        self
    }

    flag! {
        /// `SO_REUSEADDR`: bind even while connections of an earlier server on
        /// the port linger in `TIME_WAIT` (TCP only).
        reuse_address
    }

    flag! {
        /// `SO_REUSEPORT`: let several sockets (of this or other processes)
        /// bind the same address and port, each with the option set; the kernel
        /// balances connections between them (TCP only).
        reuse_port
    }

    flag! {
        /// `SO_KEEPALIVE` on every accepted connection (asyncio 3.13's
        /// `keep_alive`): the kernel probes a connection that stays idle, and
        /// ends it if the peer is gone (TCP only). asyncio sets the option on
        /// the listening socket, whose accepted sockets inherit it; tulip sets
        /// it on each accepted socket.
        keep_alive
    }

    flag! {
        /// Whether the server accepts at once (asyncio's `start_serving`,
        /// default true). With false, the TCP sockets are bound, so
        /// [`Server::sockets`] gives the port, but they do not listen yet
        /// (clients are refused) until [`Server::start_serving`] or
        /// [`Server::serve_forever`], as in asyncio.
        ///
        /// ```
        /// use std::rc::Rc;
        /// use tulip::ServerOptions;
        /// struct Nothing;
        /// impl tulip::Protocol for Nothing {}
        /// tulip::run(async {
        ///     let lp = tulip::get_running_loop()?;
        ///     let opts = ServerOptions::new().start_serving(false);
        ///     let server = lp.create_server_with(|| Rc::new(Nothing), "127.0.0.1", 0, &opts).await?;
        ///     assert!(!server.is_serving());
        ///     let port = server.local_addrs()[0].port(); // tell the clients
        ///     assert_ne!(port, 0);
        ///     server.start_serving()?;
        ///     assert!(server.is_serving());
        ///     server.close();
        ///     Ok(())
        /// }).unwrap();
        /// ```
        start_serving
    }

    flag! {
        /// Whether closing a Unix server removes its socket file (asyncio
        /// 3.13's `cleanup_socket`, default true), whether the server bound
        /// the path itself or was given a bound socket
        /// ([`EventLoop::create_unix_server_sock`]). As in asyncio, the
        /// file is removed only if it is still the one the socket was bound
        /// to (same inode): a server started on the path since keeps its
        /// own. A socket without a path (abstract or unnamed) has no file
        /// to remove. With false, the file stays (Unix only).
        cleanup_socket
    }

    /// The backlog as `listen()` takes it.
    fn listen_backlog(&self) -> i32 {
        i32::try_from(self.backlog).unwrap_or(i32::MAX)
    }
}

impl EventLoop {
    /// asyncio's `create_server(protocol_factory, host, port)`: binds every
    /// address `host` resolves to (port 0 picks a free port), and starts
    /// serving at once, with asyncio's defaults: `SO_REUSEADDR` and a
    /// backlog of 100 (see [`create_server_with`](EventLoop::create_server_with)).
    /// An empty `host` is every interface (asyncio's `host=''` or `None`):
    /// a socket on `0.0.0.0` and one on `[::]`.
    ///
    /// ```
    /// use std::rc::Rc;
    /// struct Nothing;
    /// impl tulip::Protocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let server = lp.create_server(|| Rc::new(Nothing), "127.0.0.1", 0).await?;
    ///     assert!(server.is_serving());
    ///     let addr = server.local_addrs()[0];
    ///     let _conn = std::net::TcpStream::connect(addr)?;
    ///     server.close();
    ///     server.wait_closed().await
    /// }).unwrap();
    /// ```
    pub async fn create_server<P, F>(
        &self,
        protocol_factory: F,
        host: &str,
        port: u16,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        self.create_server_with(protocol_factory, host, port, &ServerOptions::default())
            .await
    }

    /// asyncio's `create_server(protocol_factory, host, port, family=...,
    /// backlog=..., reuse_address=..., reuse_port=..., keep_alive=...,
    /// start_serving=...)`:
    /// [`create_server`](EventLoop::create_server) with [`ServerOptions`].
    ///
    /// Each address gets its own socket: options set, bound (IPv6 sockets
    /// with `IPV6_V6ONLY`), and listening with the backlog. An address the
    /// host does not have (`EADDRNOTAVAIL`) is skipped, as asyncio does;
    /// any other bind error fails the call, and names the address.
    pub async fn create_server_with<P, F>(
        &self,
        protocol_factory: F,
        host: &str,
        port: u16,
        options: &ServerOptions,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        self.create_server_hosts(protocol_factory, &[host], port, options)
            .await
    }

    /// asyncio's `create_server(protocol_factory, host, port, ...)` for a
    /// [`BufferedProtocol`]: as [`create_server_with`](EventLoop::create_server_with),
    /// and each connection's transport receives straight into the
    /// protocol's buffer (`get_buffer`, then `buffer_updated`). See
    /// [`BufferedProtocol`] for an example.
    pub async fn create_server_buffered<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl Fn() -> Rc<P> + 'static,
        host: &str,
        port: u16,
        options: &ServerOptions,
    ) -> Result<Server> {
        let listeners = self.bind_server_sockets(&[host], port, options).await?;
        let factory = stream_factory(protocol_factory, StreamProtocol::buffered);
        Server::new(self, listeners, factory, options, None)
    }

    /// asyncio's `create_server(protocol_factory, host=[h1, h2, ...], port)`:
    /// one server listening on every address of every host in `hosts`
    /// (asyncio's `host` may be a sequence). The hosts are resolved
    /// concurrently, as asyncio gathers its `getaddrinfo` calls, and an
    /// address two hosts share is bound once. The rest is
    /// [`create_server_with`](EventLoop::create_server_with)'s: an
    /// address the host does not have is skipped, and any other bind
    /// error closes the sockets bound so far and fails the call, naming
    /// the address ("error while attempting to bind on address ...").
    /// An empty host is every interface, here too (asyncio passes a `''`
    /// inside a sequence to `getaddrinfo`); an empty `hosts` binds nothing
    /// and fails ("could not bind on any address").
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::ServerOptions;
    /// struct Nothing;
    /// impl tulip::Protocol for Nothing {}
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let hosts = ["127.0.0.1", "127.0.0.2"];
    ///     let opts = ServerOptions::new();
    ///     // Port 0: each socket gets a free port of its own.
    ///     let server = lp.create_server_hosts(|| Rc::new(Nothing), &hosts, 0, &opts).await?;
    ///     assert_eq!(server.sockets().len(), 2);
    ///     for addr in server.local_addrs() {
    ///         let _conn = std::net::TcpStream::connect(addr)?;
    ///     }
    ///     server.close();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn create_server_hosts<P, F>(
        &self,
        protocol_factory: F,
        hosts: &[&str],
        port: u16,
        options: &ServerOptions,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        let listeners = self.bind_server_sockets(hosts, port, options).await?;
        let factory = stream_factory(protocol_factory, StreamProtocol::plain);
        Server::new(self, listeners, factory, options, None)
    }

    /// The sockets of `create_server`: one per distinct address of all the
    /// hosts, bound with the options (see
    /// [`create_server_with`](EventLoop::create_server_with)). Several
    /// hosts are resolved concurrently (asyncio's
    /// `infos = await tasks.gather(*fs)`).
    async fn bind_server_sockets(
        &self,
        hosts: &[&str],
        port: u16,
        options: &ServerOptions,
    ) -> Result<Vec<Listener>> {
        let family = options.family;
        if let [host] = hosts {
            let addrs = self.server_addrs(host, port, family).await?;
            return bind_addrs(addrs, options);
        }
        let resolving = hosts.iter().map(|host| {
            let (lp, host) = (self.clone(), host.to_string());
            async move { lp.server_addrs(&host, port, family).await }
        });
        let infos = crate::gather::gather(resolving.collect::<Vec<_>>()).await?;
        bind_addrs(infos.into_iter().flatten().collect(), options)
    }

    /// The addresses `create_server` binds for `host`.
    async fn server_addrs(
        &self,
        host: &str,
        port: u16,
        family: crate::AddressFamily,
    ) -> Result<Vec<SocketAddr>> {
        // asyncio's `if host == '': hosts = [None]`: every interface, as
        // getaddrinfo(None, port, family, flags=AI_PASSIVE) gives them (the
        // IPv4, then the IPv6 wildcard). A resolver asked for "" finds
        // nothing.
        if host.is_empty() {
            Ok([
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            ]
            .into_iter()
            .filter(|a| family.matches(a))
            .collect())
        } else {
            self.getaddrinfo_family(host, port, family).await
        }
    }

    /// asyncio's `create_server(protocol_factory, sock=sock)`: serves on an
    /// already bound socket. As in asyncio, the server calls `listen()` on it
    /// with the default backlog (100), and starts serving.
    pub fn create_server_sock<P, F>(&self, protocol_factory: F, sock: TcpListener) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        let factory = stream_factory(protocol_factory, StreamProtocol::plain);
        self.serve_sock(sock, factory)
    }

    /// asyncio's `create_server(protocol_factory, sock=sock)` for a
    /// [`BufferedProtocol`]: as [`create_server_sock`](EventLoop::create_server_sock)
    /// (the server calls `listen()` on the bound socket with the default
    /// backlog, 100, and serves at once), and each connection's transport
    /// receives straight into the protocol's buffer (`get_buffer`, then
    /// `buffer_updated`). See
    /// [`create_connection_buffered_sock`](EventLoop::create_connection_buffered_sock)
    /// for an example.
    pub fn create_server_buffered_sock<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl Fn() -> Rc<P> + 'static,
        sock: TcpListener,
    ) -> Result<Server> {
        let factory = stream_factory(protocol_factory, StreamProtocol::buffered);
        self.serve_sock(sock, factory)
    }

    /// `create_server(sock=sock)` for either kind of protocol.
    fn serve_sock(&self, sock: TcpListener, factory: StreamFactory) -> Result<Server> {
        sock.set_nonblocking(true)?;
        let options = ServerOptions::default();
        Server::new(self, vec![Listener::Tcp(sock)], factory, &options, None)
    }

    /// asyncio's `create_unix_server(protocol_factory, path)`. A stale
    /// socket file at `path` is removed first (as asyncio does); the file
    /// is removed again when the server closes, unless another server has
    /// replaced it by then (asyncio 3.13 compares the inode) or
    /// [`ServerOptions::cleanup_socket`] is false. The backlog is 100. On a
    /// socket the caller bound: [`create_unix_server_sock`](EventLoop::create_unix_server_sock).
    pub fn create_unix_server<P, F>(
        &self,
        protocol_factory: F,
        path: impl AsRef<Path>,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        self.create_unix_server_with(protocol_factory, path, &ServerOptions::default())
    }

    /// [`create_unix_server`](EventLoop::create_unix_server) with
    /// [`ServerOptions`]: the backlog, `start_serving` and `cleanup_socket`
    /// apply to Unix sockets, the others are for TCP.
    pub fn create_unix_server_with<P, F>(
        &self,
        protocol_factory: F,
        path: impl AsRef<Path>,
        options: &ServerOptions,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        let factory = stream_factory(protocol_factory, StreamProtocol::plain);
        self.serve_unix(path.as_ref(), factory, options)
    }

    /// asyncio's `create_unix_server(protocol_factory, path, backlog=...,
    /// start_serving=...)` for a [`BufferedProtocol`]: as
    /// [`create_unix_server_with`](EventLoop::create_unix_server_with) (a
    /// stale socket file at `path` is removed first, and the file again
    /// when the server closes; the backlog, `start_serving` and
    /// `cleanup_socket` of `options` apply), and each connection's transport receives straight
    /// into the protocol's buffer (`get_buffer`, then `buffer_updated`).
    /// See [`create_unix_connection_buffered`](EventLoop::create_unix_connection_buffered)
    /// for an example.
    pub fn create_unix_server_buffered<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl Fn() -> Rc<P> + 'static,
        path: impl AsRef<Path>,
        options: &ServerOptions,
    ) -> Result<Server> {
        let factory = stream_factory(protocol_factory, StreamProtocol::buffered);
        self.serve_unix(path.as_ref(), factory, options)
    }

    /// `create_unix_server` for either kind of protocol.
    fn serve_unix(
        &self,
        path: &Path,
        factory: StreamFactory,
        options: &ServerOptions,
    ) -> Result<Server> {
        remove_stale_socket(path);
        // asyncio names the path in the error (`Address {path!r} is already
        // in use`).
        let l =
            mio::net::UnixListener::bind(path).map_err(|e| crate::datagram::bind_error(e, path))?;
        serve_unix_listener(self, l.into(), path.to_path_buf(), factory, options)
    }

    /// asyncio's `create_unix_server(protocol_factory, sock=sock,
    /// backlog=..., start_serving=..., cleanup_socket=...)`: serves on an
    /// already bound Unix stream socket. As in asyncio, the server calls
    /// `listen()` on it with the backlog of `options`, and serves at once
    /// unless `start_serving` is false. With `cleanup_socket` (the
    /// default, as in asyncio 3.13), closing the server removes the
    /// socket's file if it is still the one the socket was bound to; the
    /// other options are for TCP.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use tulip::ServerOptions;
    /// struct Nothing;
    /// impl tulip::Protocol for Nothing {}
    /// tulip::run(async {
    ///     let dir = std::env::temp_dir().join(format!("tulip-doc-usock-{}", std::process::id()));
    ///     std::fs::create_dir_all(&dir)?;
    ///     let path = dir.join("server.sock");
    ///     let sock = std::os::unix::net::UnixListener::bind(&path)?;
    ///     let lp = tulip::get_running_loop()?;
    ///     let server = lp.create_unix_server_sock(|| Rc::new(Nothing), sock, &ServerOptions::new())?;
    ///     let _conn = std::os::unix::net::UnixStream::connect(&path)?;
    ///     server.close();
    ///     assert!(!path.exists()); // cleanup_socket
    ///     std::fs::remove_dir_all(&dir)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn create_unix_server_sock<P, F>(
        &self,
        protocol_factory: F,
        sock: UnixListener,
        options: &ServerOptions,
    ) -> Result<Server>
    where
        P: Protocol + 'static,
        F: Fn() -> Rc<P> + 'static,
    {
        let factory = stream_factory(protocol_factory, StreamProtocol::plain);
        self.serve_unix_sock(sock, factory, options)
    }

    /// asyncio's `create_unix_server(protocol_factory, sock=sock, ...)` for
    /// a [`BufferedProtocol`]: as
    /// [`create_unix_server_sock`](EventLoop::create_unix_server_sock), and
    /// each connection's transport receives straight into the protocol's
    /// buffer (`get_buffer`, then `buffer_updated`).
    pub fn create_unix_server_buffered_sock<P: BufferedProtocol + 'static>(
        &self,
        protocol_factory: impl Fn() -> Rc<P> + 'static,
        sock: UnixListener,
        options: &ServerOptions,
    ) -> Result<Server> {
        let factory = stream_factory(protocol_factory, StreamProtocol::buffered);
        self.serve_unix_sock(sock, factory, options)
    }

    /// `create_unix_server(sock=sock)` for either kind of protocol.
    fn serve_unix_sock(
        &self,
        sock: UnixListener,
        factory: StreamFactory,
        options: &ServerOptions,
    ) -> Result<Server> {
        sock.set_nonblocking(true)?;
        // asyncio's `path = sock.getsockname()`, skipped for an abstract
        // name; an unnamed socket has no path either. No path: nothing to
        // remove at close.
        let path = sock
            .local_addr()?
            .as_pathname()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        serve_unix_listener(self, sock, path, factory, options)
    }
}

/// The server of `create_unix_server`, on a bound socket whose file is at
/// `path` (empty if it has none).
fn serve_unix_listener(
    lp: &EventLoop,
    sock: UnixListener,
    path: PathBuf,
    factory: StreamFactory,
    options: &ServerOptions,
) -> Result<Server> {
    // asyncio 3.13's `if cleanup_socket: self._unix_server_sockets[sock] =
    // os.stat(path).st_ino`: close removes the file only while it is still
    // this one (a missing file records nothing).
    let inode = if options.cleanup_socket && !path.as_os_str().is_empty() {
        std::fs::metadata(&path).ok().map(|m| m.ino())
    } else {
        None
    };
    Server::new(
        lp,
        vec![Listener::Unix(sock, path)],
        factory,
        options,
        inode,
    )
}

/// Binds a socket on each distinct address, with the options (see
/// [`EventLoop::create_server_with`]). On an error, the sockets bound so
/// far are dropped (closed), as asyncio's `finally: if not completed:`
/// closes them.
fn bind_addrs(mut addrs: Vec<SocketAddr>, options: &ServerOptions) -> Result<Vec<Listener>> {
    // asyncio binds each distinct address once.
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    let mut listeners = Vec::new();
    for addr in &addrs {
        match crate::sys::tcp_bind(*addr, options.reuse_address, options.reuse_port) {
            Ok(l) => listeners.push(Listener::Tcp(l)),
            // Assume the family is not enabled (bpo-30945); asyncio
            // also skips an address whose socket cannot be made (a
            // kernel without IPv6: EAFNOSUPPORT).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
                ) =>
            {
                continue
            }
            Err(e) => return Err(bind_error(e, addr).into()),
        }
    }
    if listeners.is_empty() {
        return Err(Error::Io(
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "could not bind on any address out of {addrs:?}: use an address of this host"
                ),
            )
            .into(),
        ));
    }
    Ok(listeners)
}

/// A server's factory: calls `protocol_factory` for each connection, and
/// `kind` ([`StreamProtocol::plain`] or [`StreamProtocol::buffered`]) says
/// which kind of protocol the transport gets.
fn stream_factory<P: 'static>(
    protocol_factory: impl Fn() -> Rc<P> + 'static,
    kind: fn(Rc<P>) -> StreamProtocol,
) -> StreamFactory {
    Rc::new(move || kind(protocol_factory()))
}

/// Removes a socket file left by an earlier server (never a regular file).
/// As asyncio's `os.stat`, the check follows a symlink: a link to a socket
/// is removed (the link itself, as `os.remove` does), so the bind can
/// put the new socket in its place.
pub(crate) fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes the socket file a Unix server bound at `path`, if the file
/// there is still that one (`inode`), as asyncio 3.13's `_stop_serving`
/// does: a server started on the same path since (which removed this
/// file as stale) keeps its own.
fn remove_own_socket_file(path: &Path, inode: Option<u64>) {
    let Some(inode) = inode else {
        return;
    };
    if std::fs::metadata(path).is_ok_and(|m| m.ino() == inode) {
        let _ = std::fs::remove_file(path);
    }
}

// ===== Server =====

/// A listening socket of a [`Server`].
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix, with the path of its socket file (empty for a socket that
    /// has none: abstract or unnamed).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// A new connection, and its peer's address (asyncio's `peername`).
    fn accept(&self) -> io::Result<(StreamSocket, ExtraInfo)> {
        match self {
            Listener::Tcp(l) => l
                .accept()
                .map(|(s, a)| (StreamSocket::Tcp(s), ExtraInfo::Addr(a))),
            Listener::Unix(l, _) => l
                .accept()
                .map(|(s, a)| (StreamSocket::Unix(s), ExtraInfo::UnixAddr(a))),
        }
    }

    /// The address a TCP listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }
}

/// asyncio's `Server`: what `create_server` returns.
///
/// Cloning gives another handle to the same server.
///
/// ```
/// tulip::run(async {
///     let server = tulip::start_server(|_reader, writer| async move {
///         writer.write(b"hi\n")?;
///         writer.drain().await
///     }, "127.0.0.1", 0).await?;
///     let port = server.local_addrs()[0].port();
///     // async with server: await server.serve_forever(), in a task of its own
///     let s = server.clone();
///     let serving = tulip::create_task(async move { s.serve_forever().await })?;
///     let (reader, _writer) = tulip::open_connection("127.0.0.1", port).await?;
///     assert_eq!(reader.readline().await?, b"hi\n");
///     serving.cancel(); // serve_forever closes the server, then re-raises
///     assert!(matches!(serving.await, Err(tulip::Error::Cancelled(_))));
///     assert!(!server.is_serving() && server.sockets().is_empty());
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Rc<ServerInner>,
}

struct ServerInner {
    lp: LoopRef,
    factory: StreamFactory,
    /// `SO_KEEPALIVE` on accepted TCP connections.
    keep_alive: bool,
    /// For `listen()`, at `start_serving`.
    backlog: i32,
    /// `None` once closed.
    sockets: RefCell<Option<Vec<Rc<Listener>>>>,
    serving: Cell<bool>,
    active_count: Cell<usize>,
    /// `None` after the server closed and its last connection went.
    waiters: RefCell<Option<Vec<Future<()>>>>,
    serving_forever_fut: RefCell<Option<Future<()>>>,
    /// Live connections, for `close_clients`/`abort_clients`.
    clients: RefCell<Slab<Weak<SocketTransport>>>,
    /// The inode of a Unix listener's socket file when it was bound
    /// (asyncio's `_unix_server_sockets`); `None` for TCP.
    unix_inode: Option<u64>,
}

impl Server {
    /// The server on bound sockets; it listens and serves now unless
    /// `options` say not to. `unix_inode`: see `ServerInner::unix_inode`.
    fn new(
        lp: &EventLoop,
        listeners: Vec<Listener>,
        factory: StreamFactory,
        options: &ServerOptions,
        unix_inode: Option<u64>,
    ) -> Result<Server> {
        let server = Server {
            inner: Rc::new(ServerInner {
                lp: LoopRef::new(lp.clone()),
                factory,
                keep_alive: options.keep_alive,
                backlog: options.listen_backlog(),
                sockets: RefCell::new(Some(listeners.into_iter().map(Rc::new).collect())),
                serving: Cell::new(false),
                active_count: Cell::new(0),
                waiters: RefCell::new(Some(Vec::new())),
                serving_forever_fut: RefCell::new(None),
                clients: RefCell::new(Slab::new()),
                unix_inode,
            }),
        };
        if options.start_serving {
            server.start_serving()?;
        }
        Ok(server)
    }

    /// Starts accepting (asyncio's `start_serving`): `listen(backlog)` on
    /// each socket, and its accept reader. `create_server` does it, unless
    /// [`ServerOptions::start_serving`] is false; a no-op if serving
    /// already; an error once the server is closed.
    pub fn start_serving(&self) -> Result<()> {
        if self.inner.serving.get() {
            return Ok(());
        }
        let socks = match &*self.inner.sockets.borrow() {
            Some(s) => s.clone(),
            None => {
                return Err(Error::Runtime(
                    "server is closed: create a new one with create_server to accept again".into(),
                ))
            }
        };
        for l in &socks {
            crate::sys::listen(l.fd(), self.inner.backlog)?;
        }
        self.inner.serving.set(true);
        for l in socks {
            add_accept_reader(&self.inner, &l)?;
        }
        Ok(())
    }

    /// True while accepting connections: from `start_serving` (or
    /// `create_server`) until `close`.
    pub fn is_serving(&self) -> bool {
        self.inner.serving.get()
    }

    /// The listening sockets (empty once closed).
    pub fn sockets(&self) -> Vec<Rc<Listener>> {
        self.inner.sockets.borrow().clone().unwrap_or_default()
    }

    /// The TCP addresses the server listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets()
            .iter()
            .filter_map(|l| l.local_addr())
            .collect()
    }

    /// The loop the server runs on.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.lp.user_handle()
    }

    /// How many of the server's connections are still open.
    pub fn active_count(&self) -> usize {
        self.inner.active_count.get()
    }

    /// Stops listening and closes the listening sockets. Open connections
    /// are left alone (see [`close_clients`](Server::close_clients)).
    pub fn close(&self) {
        let Some(socks) = self.inner.sockets.borrow_mut().take() else {
            return;
        };
        for l in &socks {
            // Deregister before the fd is closed (N4).
            let _ = self.inner.lp.remove_reader(l.fd());
            if let Listener::Unix(_, path) = &**l {
                remove_own_socket_file(path, self.inner.unix_inode);
            }
        }
        drop(socks);
        self.inner.serving.set(false);
        let fut = self.inner.serving_forever_fut.borrow_mut().take();
        if let Some(f) = fut {
            f.cancel();
        }
        if self.inner.active_count.get() == 0 {
            wakeup(&self.inner);
        }
    }

    /// Closes every open connection of the server (asyncio 3.13).
    pub fn close_clients(&self) {
        for t in self.clients() {
            t.close();
        }
    }

    /// Aborts every open connection of the server (asyncio 3.13).
    pub fn abort_clients(&self) {
        for t in self.clients() {
            t.abort();
        }
    }

    fn clients(&self) -> Vec<Rc<SocketTransport>> {
        self.inner
            .clients
            .borrow()
            .iter()
            .filter_map(|(_, w)| w.upgrade())
            .collect()
    }

    /// Waits until the server is closed and all its connections are gone.
    pub async fn wait_closed(&self) -> Result<()> {
        let waiter: Future<()> = {
            let mut ws = self.inner.waiters.borrow_mut();
            let Some(ws) = ws.as_mut() else {
                return Ok(());
            };
            let w = self.inner.lp.create_future();
            ws.push(w.clone());
            w
        };
        waiter.await
    }

    /// Serves until cancelled; then closes the server and waits for it
    /// (asyncio's `serve_forever`).
    pub async fn serve_forever(&self) -> Result<()> {
        if self.inner.serving_forever_fut.borrow().is_some() {
            return Err(Error::Runtime(
                "server is already being awaited on serve_forever(): await that call, or close() the server to end it".into(),
            ));
        }
        if self.inner.sockets.borrow().is_none() {
            return Err(Error::Runtime(
                "server is closed: create a new one with create_server to serve again".into(),
            ));
        }
        self.start_serving()?;
        let fut: Future<()> = self.inner.lp.create_future();
        *self.inner.serving_forever_fut.borrow_mut() = Some(fut.clone());
        // asyncio's `finally: self._serving_forever_fut = None`, also when
        // this future is dropped while it waits.
        let reset = ResetServingForever(&self.inner);
        let res = fut.await;
        drop(reset);
        match res {
            Err(e) if e.is_cancelled() => {
                self.close();
                self.wait_closed().await?;
                Err(e)
            }
            other => other,
        }
    }
}

/// Clears `serving_forever_fut` when `serve_forever` stops waiting on it,
/// however it stops.
struct ResetServingForever<'a>(&'a ServerInner);

impl Drop for ResetServingForever<'_> {
    fn drop(&mut self) {
        let fut = self.0.serving_forever_fut.borrow_mut().take();
        drop(fut);
    }
}

/// asyncio's `Server._wakeup`.
fn wakeup(inner: &ServerInner) {
    let waiters = inner.waiters.borrow_mut().take();
    for w in waiters.into_iter().flatten() {
        if !w.done() {
            let _ = w.set_result(());
        }
    }
}

/// Registers the accept callback. It holds the server strongly, as
/// asyncio's does: a serving server lives until closed, even if every
/// `Server` handle is dropped.
fn add_accept_reader(inner: &Rc<ServerInner>, l: &Rc<Listener>) -> Result<()> {
    let server = inner.clone();
    let listener = l.clone();
    inner
        .lp
        .add_reader_edge(l.fd(), move || accept_connection(&server, &listener))
}

/// asyncio's `_accept_connection`: accept until `WouldBlock`.
fn accept_connection(inner: &Rc<ServerInner>, l: &Rc<Listener>) {
    let _rearm = AcceptAgainOnUnwind(inner, l);
    for _ in 0..MAX_ACCEPTS_PER_EDGE {
        if inner.sockets.borrow().is_none() {
            return;
        }
        let (sock, peername) = match l.accept() {
            Ok(accepted) => accepted,
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => return,
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                _ => {
                    accept_error(inner, l, e);
                    return;
                }
            },
        };
        accept_connection2(inner, sock, peername);
    }
    // More may be waiting: continue on the next iteration (an edge was
    // consumed).
    accept_soon(inner, l);
}

/// Accepts on in the next iteration, without waiting for a new edge. Weak:
/// a `close` meanwhile closes the socket at once.
fn accept_soon(inner: &Rc<ServerInner>, l: &Rc<Listener>) {
    let server = inner.clone();
    let listener = Rc::downgrade(l);
    let _ = inner.lp.call_soon(move || {
        if let Some(l) = listener.upgrade() {
            accept_connection(&server, &l);
        }
    });
}

/// The run ends ([`Interrupt`]) in the middle of an accept edge:
/// asyncio's level-triggered selector would report the listener again for
/// the connections still queued; an edge is reported once, so this
/// schedules the next accept itself.
struct AcceptAgainOnUnwind<'a>(&'a Rc<ServerInner>, &'a Rc<Listener>);

impl Drop for AcceptAgainOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            accept_soon(self.0, self.1);
        }
    }
}

fn accept_error(inner: &Rc<ServerInner>, l: &Rc<Listener>, e: io::Error) {
    let out_of_resources = matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    );
    inner.lp.call_exception_handler(&ExceptionContext {
        message: if out_of_resources {
            "socket.accept() out of system resource".into()
        } else {
            "error on accept(); the server keeps serving".into()
        },
        error: Some(e.into()),
        socket: Some(format!("{l:?}")),
        ..Default::default()
    });
    if !out_of_resources {
        return;
    }
    // Back off instead of spinning on a readable listener we cannot serve.
    // The retry holds the socket weakly: a `close` meanwhile closes it at
    // once, as asyncio's `_stop_serving` does.
    let _ = inner.lp.remove_reader(l.fd());
    let server = inner.clone();
    let listener = Rc::downgrade(l);
    let _ = inner
        .lp
        .call_later(ACCEPT_RETRY_DELAY, move || match listener.upgrade() {
            Some(l) if server.serving.get() => {
                let _ = add_accept_reader(&server, &l);
            }
            _ => {}
        });
}

/// asyncio's `_accept_connection2`, without its task: the transport calls
/// `connection_made` on the next iteration.
fn accept_connection2(inner: &Rc<ServerInner>, sock: StreamSocket, peername: ExtraInfo) {
    if let (true, StreamSocket::Tcp(s)) = (inner.keep_alive, &sock) {
        if let Err(e) = crate::sys::set_keepalive(s, true) {
            inner.lp.call_exception_handler(&ExceptionContext {
                message: "error setting SO_KEEPALIVE on an accepted connection; it is closed"
                    .into(),
                error: Some(e.into()),
                ..Default::default()
            });
            return;
        }
    }
    // asyncio makes the protocol in `_accept_connection2`'s `try:`: what
    // the factory raises costs this connection alone (its socket is
    // dropped, so closed) and is reported; the server accepts on.
    let protocol = match catch_unwind(AssertUnwindSafe(|| (inner.factory)())) {
        Ok(p) => p,
        Err(payload) => {
            if payload.is::<Interrupt>() {
                resume_unwind(payload);
            }
            inner.lp.call_exception_handler(&ExceptionContext {
                message: "Error on transport creation for incoming connection".into(),
                error: Some(Error::Panic(panic_message(&*payload))),
                ..Default::default()
            });
            return;
        }
    };
    let transport =
        match SocketTransport::with_protocol(&inner.lp, sock, protocol, None, Some(peername)) {
            Ok(t) => t,
            Err(e) => {
                inner.lp.call_exception_handler(&ExceptionContext {
                    message: "error creating the transport of an accepted connection".into(),
                    error: Some(e),
                    ..Default::default()
                });
                return;
            }
        };
    // asyncio's Server._attach / _detach.
    inner.active_count.set(inner.active_count.get() + 1);
    let key = inner.clients.borrow_mut().insert(Rc::downgrade(&transport));
    let server = Rc::downgrade(inner);
    transport.set_on_lost(move || {
        if let Some(s) = server.upgrade() {
            s.clients.borrow_mut().try_remove(key);
            s.active_count.set(s.active_count.get() - 1);
            if s.active_count.get() == 0 && s.sockets.borrow().is_none() {
                wakeup(&s);
            }
        }
    });
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("sockets", &self.sockets())
            .field("serving", &self.is_serving())
            .field("active_count", &self.active_count())
            .finish()
    }
}
