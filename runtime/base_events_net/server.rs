//! A server's running side: [`Server`], its listening sockets and its
//! accept loop. Mirrors the `Server` class of `Lib/asyncio/base_events.py`
//! (`start_serving`, `close`, `wait_closed`, `serve_forever`,
//! `close_clients`, `_attach`/`_detach`) and `_accept_connection`,
//! `_accept_connection2` in `selector_events.py`; the
//! `create_server`/`create_unix_server` functions that make it are in the
//! parent module, [`base_events_net`](crate::base_events_net).
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
//!   false is bound but refuses connections until then. (A Unix socket
//!   listens from its creation: mio binds and listens in one call.)
//! - Closing a Unix server removes a socket file only with
//!   `cleanup_socket` (the default), and only the file whose inode was
//!   recorded when the server was made (`unix_inode`; asyncio 3.13's
//!   `_unix_server_sockets`).
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
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use slab::Slab;

use super::{ServerOptions, StreamFactory};
use crate::error::{panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt, LoopRef};
use crate::futures::Future;
use crate::selector_events::{SocketTransport, StreamSocket};
use crate::transports::{BaseTransport, ExtraInfo, WriteTransport};

/// How long accepting pauses after EMFILE and friends (asyncio's
/// `ACCEPT_RETRY_DELAY` is 1 s; tulip retries sooner).
pub const ACCEPT_RETRY_DELAY: f64 = 0.25;

/// How many connections one readiness edge accepts before yielding.
const MAX_ACCEPTS_PER_EDGE: usize = 128;

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
    pub(super) fn new(
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
