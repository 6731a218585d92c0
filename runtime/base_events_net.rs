//! Servers. Mirrors `create_server` and `Server` in
//! `Lib/asyncio/base_events.py`, `_accept_connection` in
//! `selector_events.py`, and `create_unix_server` in `unix_events.py`.
//! (Connections are made in [`base_events_connect`](crate::base_events_connect).)
//!
//! A server is a set of listening sockets, each with an edge-triggered
//! reader that accepts until `WouldBlock` and wraps every new connection in
//! a [`SocketTransport`](crate::SocketTransport) with a fresh protocol from the factory.
//!
//! A [`BufferedProtocol`] has functions of its own (asyncio passes either
//! kind to the same function): `create_server_buffered` and
//! `create_unix_server_buffered` (with [`ServerOptions`]), and
//! `create_server_buffered_sock`. They differ from their plain
//! counterparts only in the factory they build (`stream_factory` with
//! `StreamProtocol::plain` or `StreamProtocol::buffered`), then share the
//! binding and serving code.
//!
//! The [`Server`] itself, with its listening sockets and accept loop, is
//! in the `server` submodule (asyncio's `Server` class and
//! `selector_events.py`'s `_accept_connection`); this module makes it.
//!
//! # Invariants
//! - TCP sockets get `SO_REUSEADDR`/`SO_REUSEPORT` before `bind`, as
//!   [`ServerOptions`] says. They listen with the server's backlog only
//!   from [`Server::start_serving`] on (see the `server` submodule).
//! - A Unix server records the inode of its socket file when it is made:
//!   the path it bound, or the path of the socket it was given (asyncio
//!   3.13's `_unix_server_sockets`), and only with `cleanup_socket` (the
//!   default); closing removes that file alone.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{bind_error, Error, Result};
use crate::event_loop::EventLoop;
use crate::protocols::{BufferedProtocol, Protocol};
use crate::selector_events::StreamProtocol;

mod server;

pub use self::server::{Listener, Server, ACCEPT_RETRY_DELAY};

/// asyncio's default `backlog` for `create_server` and `create_unix_server`.
pub const DEFAULT_BACKLOG: u32 = 100;

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
