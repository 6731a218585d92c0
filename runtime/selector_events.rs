//! Socket transports. Mirrors the network half of
//! `Lib/asyncio/selector_events.py`: `_SelectorSocketTransport` (here
//! [`SocketTransport`]). The loop's `sock_*` coroutines
//! (`BaseSelectorEventLoop.sock_recv`, `sock_sendall`, ...) are in
//! `sock_ops.rs`.
//!
//! The transport's two paths are submodules: the read path (`read.rs`:
//! `read_ready`, the shared read buffer, `BufferedProtocol` reads, pause
//! and resume) and the write path (`write.rs`: `write`, the write buffer,
//! flow control). This module holds the transport's state, its sockets and
//! protocols, what a `sendfile` needs of it, and its starting and closing.
//!
//! ## Starting and closing
//! What asyncio's `_SelectorTransport` base class does for every transport
//! (`connection_made`, registering the reader, `close`, `_force_close`,
//! `_call_connection_lost`) lives in `selector_transport.rs`, shared with
//! the datagram transport: [`SocketTransport`] embeds its state and supplies
//! the hooks (its protocol, its reader, its write buffer).
//!
//! # Invariants
//! - The reader is registered exactly while `is_reading()` and the read
//!   side is open; the writer exactly while the write buffer is non-empty
//!   (see the invariants of `read.rs` and `write.rs`).
//! - The socket is closed (dropped) only in `call_connection_lost`, after
//!   both registrations are removed: no fd is used after close, and a
//!   recycled fd number never meets a stale registration (N4).
//! - `connection_lost` is called once (guarded by `conn_lost`), then the
//!   transport drops its protocol, breaking the transport ↔ protocol cycle.
//! - No `RefCell` borrow of the transport is held while a protocol method
//!   runs.
//! - A protocol callback that panics is reported, and the loop goes on:
//!   on the read path the connection is closed with `Error::Panic`
//!   (asyncio's `_fatal_error`), on the write path (`pause_writing`,
//!   `resume_writing`) the connection goes on (see `read.rs` and
//!   `write.rs`).
//! - While a native `sendfile` uses the socket (see [`sendfile`](crate::sendfile)),
//!   `write` refuses and the fd's writer is the sendfile's; before the
//!   socket closes, that writer is removed and the sendfile woken.
//! - The loop's reader/writer callbacks hold the transport strongly, as
//!   asyncio's selector holds its handles: a registered transport lives on
//!   even if its protocol keeps no reference to it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::protocols::{BufferedProtocol, Protocol};
use crate::reactor::Side;
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::streams::Buffer;
use crate::transports::{BaseTransport, ExtraInfo, ReadTransport, Transport, WriteLimits};

mod read;
mod write;

pub(crate) use self::read::{put_read_buf, take_read_buf};

/// Size of the shared read buffer (asyncio's `max_size`: 256 KiB).
pub const MAX_SIZE: usize = 256 * 1024;

// ===== StreamSocket =====

/// A connected stream socket: TCP or Unix. The transport owns it.
#[derive(Debug)]
pub enum StreamSocket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain stream connection.
    Unix(UnixStream),
}

impl From<TcpStream> for StreamSocket {
    fn from(s: TcpStream) -> Self {
        StreamSocket::Tcp(s)
    }
}

impl From<UnixStream> for StreamSocket {
    fn from(s: UnixStream) -> Self {
        StreamSocket::Unix(s)
    }
}

impl StreamSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => (&*s).read(buf),
            StreamSocket::Unix(s) => (&*s).read(buf),
        }
    }

    /// `send` with `MSG_NOSIGNAL` (std uses it for both types).
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => (&*s).write(buf),
            StreamSocket::Unix(s) => (&*s).write(buf),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            StreamSocket::Tcp(s) => s.shutdown(Shutdown::Write),
            StreamSocket::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    /// Makes the socket non-blocking, and sets `TCP_NODELAY` on TCP (as
    /// asyncio's `_set_nodelay`).
    pub fn prepare(&self) -> io::Result<()> {
        match self {
            StreamSocket::Tcp(s) => {
                s.set_nonblocking(true)?;
                // Some sockets refuse the option (e.g. already shut down): not fatal.
                let _ = s.set_nodelay(true);
                Ok(())
            }
            StreamSocket::Unix(s) => s.set_nonblocking(true),
        }
    }

    fn peername(&self) -> Option<ExtraInfo> {
        match self {
            StreamSocket::Tcp(s) => s.peer_addr().ok().map(ExtraInfo::Addr),
            StreamSocket::Unix(s) => s.peer_addr().ok().map(ExtraInfo::UnixAddr),
        }
    }

    fn sockname(&self) -> Option<ExtraInfo> {
        match self {
            StreamSocket::Tcp(s) => s.local_addr().ok().map(ExtraInfo::Addr),
            StreamSocket::Unix(s) => s.local_addr().ok().map(ExtraInfo::UnixAddr),
        }
    }
}

impl AsRawFd for StreamSocket {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            StreamSocket::Tcp(s) => s.as_raw_fd(),
            StreamSocket::Unix(s) => s.as_raw_fd(),
        }
    }
}

// ===== StreamProtocol =====

/// The protocol of a [`SocketTransport`]: asyncio's transport checks
/// `isinstance(protocol, BufferedProtocol)` to pick its read path; tulip
/// keeps which kind it was given.
#[derive(Clone)]
pub(crate) enum StreamProtocol {
    /// `data_received` with a slice of the shared read buffer.
    Plain(Rc<dyn Protocol>),
    /// `get_buffer`, `recv` into it, `buffer_updated`.
    Buffered(Rc<dyn BufferedProtocol>),
}

/// Calls the same method on either kind of protocol.
macro_rules! either {
    ($proto:expr, $p:ident => $call:expr) => {
        match $proto {
            StreamProtocol::Plain($p) => $call,
            StreamProtocol::Buffered($p) => $call,
        }
    };
}

impl StreamProtocol {
    /// A [`Protocol`], as a transport keeps it. Generic over the concrete
    /// type, so that code shared by both kinds can take
    /// `fn(Rc<P>) -> StreamProtocol` and still hand back an `Rc<P>`.
    pub(crate) fn plain<P: Protocol + 'static>(protocol: Rc<P>) -> StreamProtocol {
        StreamProtocol::Plain(protocol)
    }

    /// A [`BufferedProtocol`], as a transport keeps it (see [`plain`](StreamProtocol::plain)).
    pub(crate) fn buffered<P: BufferedProtocol + 'static>(protocol: Rc<P>) -> StreamProtocol {
        StreamProtocol::Buffered(protocol)
    }

    fn connection_made(&self, transport: Rc<dyn Transport>) {
        either!(self, p => p.connection_made(transport))
    }

    fn eof_received(&self) -> bool {
        either!(self, p => p.eof_received())
    }

    fn connection_lost(&self, exc: Option<Error>) {
        either!(self, p => p.connection_lost(exc))
    }

    fn pause_writing(&self) {
        either!(self, p => p.pause_writing())
    }

    fn resume_writing(&self) {
        either!(self, p => p.resume_writing())
    }
}

// ===== SocketTransport =====

/// asyncio's `_SelectorSocketTransport`: a connected socket, driven by the
/// loop, talking to a [`Protocol`] or a [`BufferedProtocol`].
///
/// Created by [`create_connection`](EventLoop::create_connection), by a
/// server for each accepted connection, or directly with
/// [`SocketTransport::new`]. Protocols see it as `Rc<dyn Transport>`.
pub struct SocketTransport {
    /// The loop, socket, protocol and closing flags (asyncio's `_SelectorTransport`).
    base: TransportBase<StreamSocket, StreamProtocol>,
    buffer: RefCell<Buffer>,
    limits: Cell<WriteLimits>,
    /// `write_eof()` was called.
    eof: Cell<bool>,
    /// The peer's EOF was received (the read side is finished).
    read_eof: Cell<bool>,
    /// `pause_reading()` is in effect.
    paused: Cell<bool>,
    /// asyncio's `_extra['peername']` and `_extra['sockname']`: taken when
    /// the transport is made (`peername` from `accept()` on a server), so
    /// they stay known after the peer resets or the socket closes.
    peername: Option<ExtraInfo>,
    sockname: Option<ExtraInfo>,
    /// Called after `connection_lost` (a server's `_detach`).
    on_lost: RefCell<Option<Box<dyn FnOnce()>>>,
    /// What a `sendfile` waits for (asyncio's `_empty_waiter`, and the
    /// fallback's `drain`): the write buffer drained to at most `.0` bytes.
    /// Completed when it is, or when the socket is about to close.
    drain_waiter: RefCell<Option<(usize, Future<()>)>>,
    /// `Some` while a native `sendfile` uses the socket: `write` refuses,
    /// and before the socket closes its writer is removed and the future
    /// completed (see `before_socket_close`).
    sendfile_lost: RefCell<Option<Future<()>>>,
    me: std::rc::Weak<SocketTransport>,
}

impl SocketTransport {
    /// Wraps a connected socket: sets it non-blocking (and `TCP_NODELAY`),
    /// then on the next loop iteration calls `protocol.connection_made`,
    /// starts reading, and completes `waiter` if given.
    pub fn new(
        lp: &EventLoop,
        sock: StreamSocket,
        protocol: Rc<dyn Protocol>,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<SocketTransport>> {
        SocketTransport::with_protocol(lp, sock, StreamProtocol::Plain(protocol), waiter, None)
    }

    /// [`new`](SocketTransport::new) for either kind of protocol. `peername`
    /// is the peer's address if known (a server has it from `accept()`,
    /// as asyncio's `extra={'peername': addr}`); else it is asked of the
    /// socket now.
    pub(crate) fn with_protocol(
        lp: &EventLoop,
        sock: StreamSocket,
        protocol: StreamProtocol,
        waiter: Option<Future<()>>,
        peername: Option<ExtraInfo>,
    ) -> Result<Rc<SocketTransport>> {
        sock.prepare()?;
        // asyncio's `_SelectorTransport.__init__` fills `_extra` here.
        let peername = peername.or_else(|| sock.peername());
        let sockname = sock.sockname();
        let t = Rc::new_cyclic(|me| SocketTransport {
            base: TransportBase::new(lp, sock, protocol),
            buffer: RefCell::new(Buffer::default()),
            limits: Cell::new(WriteLimits::default()),
            eof: Cell::new(false),
            read_eof: Cell::new(false),
            paused: Cell::new(false),
            peername,
            sockname,
            on_lost: RefCell::new(None),
            drain_waiter: RefCell::new(None),
            sendfile_lost: RefCell::new(None),
            me: me.clone(),
        });
        t.schedule_start(waiter)?;
        t.register_fd();
        Ok(t)
    }

    /// Runs `f` once, after `connection_lost` (servers count their
    /// connections with it).
    pub(crate) fn set_on_lost(&self, f: impl FnOnce() + 'static) {
        *self.on_lost.borrow_mut() = Some(Box::new(f));
    }

    /// The protocol, until `connection_lost` ran (`None` if it is a
    /// [`BufferedProtocol`]: see [`buffered_protocol`](SocketTransport::buffered_protocol)).
    pub fn protocol(&self) -> Option<Rc<dyn Protocol>> {
        match self.base.protocol()? {
            StreamProtocol::Plain(p) => Some(p),
            StreamProtocol::Buffered(_) => None,
        }
    }

    /// The [`BufferedProtocol`], until `connection_lost` ran (`None` if the
    /// protocol is a plain [`Protocol`]).
    pub fn buffered_protocol(&self) -> Option<Rc<dyn BufferedProtocol>> {
        match self.base.protocol()? {
            StreamProtocol::Buffered(p) => Some(p),
            StreamProtocol::Plain(_) => None,
        }
    }

    /// The socket's fd number (valid until the transport is closed).
    pub fn fd(&self) -> RawFd {
        self.base.fd
    }

    // ----- sendfile support (see sendfile.rs) -----

    /// True once the connection is lost or the socket closed.
    pub(crate) fn is_lost(&self) -> bool {
        self.base.conn_lost.get() > 0 || self.base.sock.borrow().is_none()
    }

    /// A future completed once the write buffer holds at most `n` bytes, or
    /// the socket is about to close (asyncio's `_make_empty_waiter` for
    /// `n == 0`). One waiter at a time.
    pub(crate) fn wait_buffer_at_most(&self, n: usize) -> Result<Future<()>> {
        if self.drain_waiter.borrow().is_some() {
            return Err(Error::runtime(
                "a sendfile is already in progress on this transport: await it before starting another",
            ));
        }
        let fut: Future<()> = self.base.lp.create_future();
        if self.buffer.borrow().len() <= n || self.is_lost() {
            let _ = fut.set_result(());
        } else {
            *self.drain_waiter.borrow_mut() = Some((n, fut.clone()));
        }
        Ok(fut)
    }

    /// Forgets the drain waiter `fut` (asyncio's `_reset_empty_waiter`),
    /// if it is still the one waiting: another sendfile's stays.
    pub(crate) fn clear_drain_waiter(&self, fut: &Future<()>) {
        let mine = {
            let mut w = self.drain_waiter.borrow_mut();
            match &*w {
                Some((_, f)) if f.ptr_eq(fut) => w.take(),
                _ => None,
            }
        };
        drop(mine);
    }

    /// Completes the drain waiter if the buffer is small enough now.
    fn notify_drain(&self) {
        let len = self.buffer.borrow().len();
        let done = {
            let mut w = self.drain_waiter.borrow_mut();
            match &*w {
                Some((n, _)) if len <= *n => w.take(),
                _ => None,
            }
        };
        if let Some((_, f)) = done {
            if !f.done() {
                let _ = f.set_result(());
            }
        }
    }

    /// A native sendfile starts using the socket: `write` refuses until
    /// [`end_native_sendfile`](Self::end_native_sendfile). The future
    /// completes if the socket closes meanwhile.
    pub(crate) fn begin_native_sendfile(&self) -> Result<Future<()>> {
        if self.sendfile_lost.borrow().is_some() {
            return Err(Error::runtime(
                "a sendfile is already in progress on this transport: await it before starting another",
            ));
        }
        let fut: Future<()> = self.base.lp.create_future();
        *self.sendfile_lost.borrow_mut() = Some(fut.clone());
        // asyncio's `del self._transports[transp._sock_fd]`: the sendfile
        // waits for the fd with the loop's public `add_writer`.
        self.base
            .lp
            .detach_transport(self.base.fd, self as *const Self as *const ());
        Ok(fut)
    }

    /// The native sendfile is over: the fd is the transport's again
    /// (asyncio's `self._transports[transp._sock_fd] = transp`), unless
    /// its socket closed meanwhile.
    pub(crate) fn end_native_sendfile(&self) {
        drop(self.sendfile_lost.borrow_mut().take());
        if self.base.sock.borrow().is_some() && !self.base.lp.is_closed() {
            if let Some(me) = self.rc() {
                me.register_fd();
            }
        }
    }

    // ----- closing -----

    /// asyncio's `_fatal_error`: an I/O error ends the connection, and the
    /// protocol's `connection_lost` receives it.
    fn fatal_error(&self, e: impl Into<Error>) {
        self.force_close(Some(e.into()));
    }
}

impl SelectorTransport for SocketTransport {
    type Sock = StreamSocket;
    type Proto = StreamProtocol;

    fn base(&self) -> &TransportBase<StreamSocket, StreamProtocol> {
        &self.base
    }

    fn rc(&self) -> Option<Rc<SocketTransport>> {
        self.me.upgrade()
    }

    fn connection_made(this: Rc<SocketTransport>, protocol: &StreamProtocol) {
        protocol.connection_made(this);
    }

    fn connection_lost(protocol: &StreamProtocol, exc: Option<Error>) {
        protocol.connection_lost(exc);
    }

    /// asyncio's `_add_reader` reads only while reading (not paused, not
    /// closing), and never after the peer's EOF.
    fn wants_reader(&self) -> bool {
        self.is_reading() && !self.read_eof.get()
    }

    fn read_ready(&self) {
        SocketTransport::read_ready(self);
    }

    fn write_buffer_is_empty(&self) -> bool {
        self.buffer.borrow().is_empty()
    }

    fn clear_write_buffer(&self) {
        self.buffer.borrow_mut().clear();
    }

    /// A native sendfile's writer goes before the fd does (N4), and the
    /// sendfile and drain waiters wake to find the connection lost.
    fn before_socket_close(&self) {
        let sendfile = self.sendfile_lost.borrow_mut().take();
        if let Some(f) = sendfile {
            let _ = self.base.lp.remove_io(self.base.fd, Side::Write);
            if !f.done() {
                let _ = f.set_result(());
            }
        }
        let drain = self.drain_waiter.borrow_mut().take();
        if let Some((_, f)) = drain {
            if !f.done() {
                let _ = f.set_result(());
            }
        }
    }

    fn after_connection_lost(&self) {
        let hook = self.on_lost.borrow_mut().take();
        if let Some(f) = hook {
            f();
        }
    }
}

impl BaseTransport for SocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "peername" => self.peername.clone(),
            "sockname" => self.sockname.clone(),
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

impl Transport for SocketTransport {
    fn get_protocol(&self) -> Option<Rc<dyn Protocol>> {
        self.protocol()
    }

    fn set_protocol(&self, protocol: Rc<dyn Protocol>) -> Result<()> {
        self.base.set_protocol(StreamProtocol::Plain(protocol));
        Ok(())
    }

    fn set_buffered_protocol(&self, protocol: Rc<dyn BufferedProtocol>) -> Result<()> {
        self.base.set_protocol(StreamProtocol::Buffered(protocol));
        Ok(())
    }
}

impl fmt::Debug for SocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTransport")
            .field("fd", &self.base.fd)
            .field("closing", &self.base.closing.get())
            .field("reading", &self.is_reading())
            .field("write_buffer", &self.buffer.borrow().len())
            .field("conn_lost", &self.base.conn_lost.get())
            .finish()
    }
}
