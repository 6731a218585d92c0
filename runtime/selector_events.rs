//! Socket transports. Mirrors the network half of
//! `Lib/asyncio/selector_events.py`: `_SelectorSocketTransport` (here
//! [`SocketTransport`]). The loop's `sock_*` coroutines
//! (`BaseSelectorEventLoop.sock_recv`, `sock_sendall`, ...) are in
//! `sock_ops.rs`.
//!
//! ## The read path
//! The transport registers `read_ready` edge-triggered, through the crate's
//! `add_io_edge` ([`EventLoop::add_reader_edge`] without the check that
//! refuses a transport's fd; asyncio's `_add_reader`): the reactor queues
//! it once per readiness edge. `read_ready` calls `recv` into one read buffer shared by every
//! transport of the thread (no allocation per read) and hands each chunk to
//! `protocol.data_received(&buf[..n])`. It stops after a short read (the
//! socket is drained: epoll reports the next arrival as a new edge) unless
//! epoll already reported the peer's FIN ([`EventLoop::fd_read_closed`]:
//! a FIN that came with the data raises no edge of its own), on
//! `WouldBlock`, at EOF, or after `MAX_READS_PER_EDGE` reads, when it
//! reschedules itself with
//! `call_soon` so that one busy peer cannot starve the loop (L8).
//!
//! A short read also ends the connection's turn: what the peer sends while
//! `data_received` runs (an echo client woken by our write, answering on
//! this CPU before we return) is a new edge, served on the next poll after
//! the other ready connections, as asyncio's one `recv` per ready fd per
//! iteration does. tokio's reader re-reads at once after a read that
//! filled its buffer, and can then serve one connection many times in a
//! row: a lower median latency for the connections it favours, a higher
//! tail for the others (see BENCHMARKS.md, the 100 KiB echo).
//!
//! A [`BufferedProtocol`] (asyncio's `_read_ready__get_buffer`) changes
//! only where the bytes go: each read first asks the protocol for a buffer
//! (`get_buffer`), `recv`s straight into it, drops the borrow, then calls
//! `buffer_updated(n)`; "short" is measured against that buffer. The
//! transport keeps which kind of protocol it has in `StreamProtocol`, and
//! one loop (`read_ready`, `read_once`) serves both.
//!
//! ## The write path
//! `write` first tries `send` directly when nothing is buffered (most
//! writes end there: no copy, no writer registration). The rest is appended
//! to the write buffer and an edge-triggered writer is registered;
//! `write_ready` sends until the buffer is empty or `WouldBlock`, then
//! removes itself. Crossing the high-water mark calls the protocol's
//! `pause_writing`, draining to the low-water mark `resume_writing` (N3).
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
//!   side is open; the writer exactly while the write buffer is non-empty.
//!   So `eof_received` comes at most once: after an EOF the protocol kept
//!   open, `pause_reading` then `resume_reading` registers nothing.
//!   (*Deviation:* asyncio's `resume_reading` re-adds the reader, whose
//!   next `recv` reads the EOF again and calls `eof_received` a second
//!   time.)
//! - One `read_ready` call reads again only after a read that filled the
//!   whole buffer (or once the peer's FIN is known), and at most
//!   `MAX_READS_PER_EDGE` times: data that arrives after a short read
//!   waits for the next poll, after the callbacks already queued (fairness).
//!   Where the edge may not be drained (the `MAX_READS_PER_EDGE`th read, or
//!   a protocol that interrupted the run), `read_ready` is scheduled again
//!   rather than left waiting for an edge that may never come. An
//!   interrupted `eof_received` is not: the EOF is delivered once, and the
//!   reader is removed.
//! - The socket is closed (dropped) only in `call_connection_lost`, after
//!   both registrations are removed: no fd is used after close, and a
//!   recycled fd number never meets a stale registration (N4).
//! - `connection_lost` is called once (guarded by `conn_lost`), then the
//!   transport drops its protocol, breaking the transport ↔ protocol cycle.
//! - No `RefCell` borrow of the transport is held while a protocol method
//!   runs.
//! - A protocol callback that panics in `data_received`, `get_buffer`,
//!   `buffer_updated` or `eof_received` is reported, and the connection is
//!   closed with `Error::Panic` (asyncio's `_fatal_error`); the loop goes
//!   on. An empty buffer from `get_buffer` is reported and closes the
//!   connection the same way, with `Error::Runtime`. A panicking
//!   `pause_writing`/`resume_writing` is reported and the connection goes
//!   on (asyncio's `_maybe_pause_protocol`): it never unwinds through
//!   `write` or the writer callback.
//! - The borrow `get_buffer` returns is dropped before any protocol method
//!   runs (`buffer_updated`, `eof_received`), and no read of a
//!   `BufferedProtocol`'s transport touches the shared read buffer.
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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext};
use crate::futures::Future;
use crate::protocols::{BufferedProtocol, Protocol};
use crate::reactor::Side;
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::streams::Buffer;
use crate::transports::{
    BaseTransport, ExtraInfo, ReadTransport, Transport, WriteLimits, WriteTransport,
};

/// Size of the shared read buffer (asyncio's `max_size`: 256 KiB).
pub const MAX_SIZE: usize = 256 * 1024;

/// How many reads one readiness edge may do before yielding to other
/// callbacks (the rest continues on the next iteration).
const MAX_READS_PER_EDGE: usize = 16;

/// `writelines` joins its buffers into one `send` up to this many bytes.
const WRITELINES_JOIN_MAX: usize = 64 * 1024;

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

thread_local! {
    /// The read buffer of every transport on this thread. Taken while a
    /// transport reads; a nested read (never expected) allocates its own.
    static READ_BUF: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

pub(crate) fn take_read_buf() -> Box<[u8]> {
    READ_BUF
        .with(|b| b.take())
        .unwrap_or_else(|| vec![0u8; MAX_SIZE].into_boxed_slice())
}

pub(crate) fn put_read_buf(buf: Box<[u8]>) {
    READ_BUF.with(|b| b.set(Some(buf)));
}

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

/// How one read of [`SocketTransport::read_once`] ended.
enum ReadStep {
    /// `n` bytes went to the protocol, out of a buffer of `len`.
    Data { n: usize, len: usize },
    /// `recv` was interrupted by a signal: read again.
    Interrupted,
    /// Nothing more to read now: `WouldBlock`, EOF, an error, or a
    /// protocol callback that failed (the last three are handled).
    Done,
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

    // ----- reading -----

    /// asyncio's `_read_ready__data_received` (or `_read_ready__get_buffer`
    /// for a [`BufferedProtocol`]), draining the edge.
    fn read_ready(&self) {
        // The shared read buffer, taken at the first read of a plain protocol.
        let mut shared = None;
        let mut reads = 0;
        loop {
            if self.base.conn_lost.get() > 0 || self.paused.get() || self.base.closing.get() {
                break;
            }
            // Fetched for each read: a protocol set by the last one's
            // callback (`set_protocol`) gets the next bytes, in its own way
            // (plain or buffered), as asyncio's `_read_ready_cb` does.
            let Some(proto) = self.base.protocol() else {
                break;
            };
            match self.read_once(&proto, &mut shared) {
                ReadStep::Data { n, len } => {
                    // A short read drained the socket: the next arrival is a
                    // new edge. Unless the FIN came with the data (no new
                    // edge for it): then read on, to see the EOF.
                    if n < len && !self.base.lp.fd_read_closed(self.base.fd) {
                        break;
                    }
                    reads += 1;
                    if reads == MAX_READS_PER_EDGE {
                        // Fairness: continue on the next iteration.
                        self.read_again();
                        break;
                    }
                }
                ReadStep::Interrupted => continue,
                ReadStep::Done => break,
            }
        }
        if let Some(buf) = shared {
            put_read_buf(buf);
        }
    }

    /// One `recv`, into the shared buffer (a plain protocol) or the one the
    /// protocol's `get_buffer` returns, then the bytes to the protocol:
    /// `data_received(&buf[..n])`, or `buffer_updated(n)` once the
    /// protocol's buffer is no longer borrowed. EOF, errors and failed
    /// callbacks are handled here, and end the edge.
    fn read_once(&self, proto: &StreamProtocol, shared: &mut Option<Box<[u8]>>) -> ReadStep {
        match proto {
            StreamProtocol::Plain(p) => {
                let buf = shared.get_or_insert_with(take_read_buf);
                let n = match self.recv_ended(self.recv(buf)) {
                    Ok(n) => n,
                    Err(step) => return step,
                };
                let data = &buf[..n];
                let res = catch_unwind(AssertUnwindSafe(|| p.data_received(data)));
                self.delivered(res, "data_received", n, buf.len())
            }
            StreamProtocol::Buffered(p) => {
                let Some(mut buf) = self.get_buffer(&**p) else {
                    return ReadStep::Done;
                };
                let len = buf.len();
                let res = self.recv(&mut buf);
                // Released before the protocol hears of the bytes (or of
                // the EOF).
                drop(buf);
                let n = match self.recv_ended(res) {
                    Ok(n) => n,
                    Err(step) => return step,
                };
                let res = catch_unwind(AssertUnwindSafe(|| p.buffer_updated(n)));
                self.delivered(res, "buffer_updated", n, len)
            }
        }
    }

    /// Reads on in the next iteration, without waiting for a new edge.
    fn read_again(&self) {
        if let Some(me) = self.rc() {
            let _ = self.base.lp.call_soon(move || me.read_ready());
        }
    }

    /// `recv` into `buf` (`None` once the socket is closed).
    fn recv(&self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        self.base.sock.borrow().as_ref().map(|s| s.recv(buf))
    }

    /// What `recv` returned: `Ok(n)` for `n > 0` bytes; otherwise how the
    /// read ends, EOF and errors handled.
    fn recv_ended(&self, res: Option<io::Result<usize>>) -> std::result::Result<usize, ReadStep> {
        let Some(res) = res else {
            return Err(ReadStep::Done);
        };
        match res {
            Ok(0) => {
                self.read_ready_on_eof();
                Err(ReadStep::Done)
            }
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ReadStep::Done),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(ReadStep::Interrupted),
            Err(e) => {
                self.fatal_error(e);
                Err(ReadStep::Done)
            }
        }
    }

    /// After the protocol's `what` ran on `n` bytes of a buffer of `len`.
    fn delivered(
        &self,
        res: std::thread::Result<()>,
        what: &str,
        n: usize,
        len: usize,
    ) -> ReadStep {
        match res {
            Ok(()) => ReadStep::Data { n, len },
            Err(payload) => {
                self.protocol_failed(payload, what);
                ReadStep::Done
            }
        }
    }

    /// The buffered protocol's `get_buffer`, checked: a panic, or an empty
    /// buffer, is reported and closes the connection (asyncio's
    /// `RuntimeError('get_buffer() returned an empty buffer')`).
    fn get_buffer<'p>(&self, p: &'p dyn BufferedProtocol) -> Option<std::cell::RefMut<'p, [u8]>> {
        let buf = match catch_unwind(AssertUnwindSafe(|| p.get_buffer(0))) {
            Ok(buf) => buf,
            Err(payload) => {
                self.protocol_failed(payload, "get_buffer");
                return None;
            }
        };
        if buf.is_empty() {
            drop(buf);
            let err = Error::Runtime(
                "get_buffer() returned an empty buffer: return one of at least 1 byte from BufferedProtocol::get_buffer".into(),
            );
            self.protocol_error(err, "get_buffer");
            return None;
        }
        Some(buf)
    }

    /// asyncio's `_read_ready__on_eof`.
    fn read_ready_on_eof(&self) {
        self.read_eof.set(true);
        let proto = self.base.protocol();
        let keep_open = match proto {
            Some(p) => match catch_unwind(AssertUnwindSafe(|| p.eof_received())) {
                Ok(keep) => keep,
                Err(payload) if payload.is::<crate::event_loop::Interrupt>() => {
                    // The protocol has heard the EOF (at most one
                    // `eof_received`): no reading on in the next run, and
                    // the read side is over, so the reader goes.
                    let _ = self.base.lp.remove_io(self.base.fd, Side::Read);
                    std::panic::resume_unwind(payload);
                }
                Err(payload) => {
                    self.protocol_failed(payload, "eof_received");
                    return;
                }
            },
            None => false,
        };
        if keep_open {
            // Half-open: stop reading, keep writing.
            let _ = self.base.lp.remove_io(self.base.fd, Side::Read);
        } else {
            self.close();
        }
    }

    /// asyncio's `_fatal_error(exc, 'Fatal error: protocol.data_received()
    /// call failed.')`: a protocol callback panicked. Reported, and the
    /// connection is closed with the panic as its error. `Interrupt`
    /// (Ctrl-C) goes on unwinding, as `KeyboardInterrupt` does.
    ///
    /// Only the read path calls it (not for an `Interrupt` from
    /// `eof_received`: the EOF is not read twice). The run ends there before the edge is
    /// drained, and no new edge may come for what is left (more bytes, the
    /// EOF): the transport reads on in the next run by itself, as asyncio's
    /// level-triggered selector reports the socket again.
    fn protocol_failed(&self, payload: Box<dyn std::any::Any + Send>, what: &str) {
        if payload.is::<crate::event_loop::Interrupt>() {
            self.read_again();
            std::panic::resume_unwind(payload);
        }
        self.protocol_error(Error::Panic(panic_message(&*payload)), what);
    }

    /// The rest of asyncio's `_fatal_error` for a protocol's failure: report
    /// `err`, then close the connection with it.
    fn protocol_error(&self, err: Error, what: &str) {
        self.base.lp.call_exception_handler(&ExceptionContext {
            message: format!("Fatal error: protocol.{what}() call failed."),
            error: Some(err.clone()),
            transport: Some(format!("{self:?}")),
            ..Default::default()
        });
        self.force_close(Some(err));
    }

    // ----- writing -----

    fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        match &*self.base.sock.borrow() {
            Some(s) => loop {
                match s.send(data) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                    other => return other,
                }
            },
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn add_writer(&self) {
        if self.base.writer_registered.replace(true) {
            return;
        }
        let Some(me) = self.rc() else { return };
        let res = self
            .base
            .lp
            .add_io_edge(self.base.fd, Side::Write, move || me.write_ready());
        if let Err(e) = res {
            self.base.writer_registered.set(false);
            self.fatal_error(e);
        }
    }

    /// asyncio's `_write_ready`: flush until empty or `WouldBlock`. Either
    /// way the protocol resumes writing once the buffer is down to the
    /// low-water mark (asyncio's `_write_send` checks after every send).
    fn write_ready(&self) {
        if self.base.conn_lost.get() > 0 {
            return;
        }
        loop {
            let res = {
                let buf = self.buffer.borrow();
                if buf.is_empty() {
                    break;
                }
                self.try_send(buf.bytes())
            };
            match res {
                Ok(0) => {
                    // WouldBlock: wait for the next edge. What was sent may
                    // have brought the buffer down to the low-water mark;
                    // `resume_writing` may write (appended: the writer is
                    // still registered), close or abort.
                    self.notify_drain();
                    self.maybe_resume_protocol();
                    return;
                }
                Ok(n) => self.buffer.borrow_mut().consume(n),
                Err(e) => {
                    self.base.remove_writer();
                    self.buffer.borrow_mut().clear();
                    self.fatal_error(e);
                    return;
                }
            }
        }
        // The buffer is empty.
        self.notify_drain();
        self.base.remove_writer();
        // May write (then the writer is registered again and flushes it
        // first), close, or abort.
        self.maybe_resume_protocol();
        if !self.buffer.borrow().is_empty() || self.base.conn_lost.get() > 0 {
            return;
        }
        if self.base.closing.get() {
            self.call_connection_lost(None);
        } else if self.eof.get() {
            // asyncio's `_write_send` lets shutdown's OSError out of the
            // writer callback: the loop reports it, and the transport stays.
            if let Err(e) = self.shutdown_write() {
                self.base.lp.call_exception_handler(&ExceptionContext {
                    message: "Exception in callback SocketTransport.write_ready()".into(),
                    error: Some(e.into()),
                    transport: Some(format!("{self:?}")),
                    ..Default::default()
                });
            }
        }
    }

    /// asyncio's `self._sock.shutdown(socket.SHUT_WR)`.
    fn shutdown_write(&self) -> io::Result<()> {
        match &*self.base.sock.borrow() {
            Some(s) => s.shutdown_write(),
            None => Ok(()),
        }
    }

    /// asyncio's `_maybe_pause_protocol`.
    fn maybe_pause_protocol(&self) {
        let size = self.buffer.borrow().len();
        let mut l = self.limits.get();
        if l.maybe_pause(size) {
            self.limits.set(l);
            self.flow_call("pause_writing", StreamProtocol::pause_writing);
        }
    }

    /// asyncio's `_maybe_resume_protocol`.
    fn maybe_resume_protocol(&self) {
        let size = self.buffer.borrow().len();
        let mut l = self.limits.get();
        if l.maybe_resume(size) {
            self.limits.set(l);
            self.flow_call("resume_writing", StreamProtocol::resume_writing);
        }
    }

    /// Calls a flow-control method of the protocol; a panic is reported
    /// and the connection goes on (asyncio's `_maybe_pause_protocol`), so
    /// that it never unwinds through `write` or the writer callback.
    /// `Interrupt` (Ctrl-C) goes on unwinding.
    fn flow_call(&self, what: &str, f: fn(&StreamProtocol)) {
        let Some(p) = self.base.protocol() else {
            return;
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&p))) {
            if payload.is::<crate::event_loop::Interrupt>() {
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

impl ReadTransport for SocketTransport {
    fn is_reading(&self) -> bool {
        !self.paused.get() && !self.base.closing.get()
    }

    fn pause_reading(&self) {
        if self.base.closing.get() || self.paused.get() {
            return;
        }
        self.paused.set(true);
        let _ = self.base.lp.remove_io(self.base.fd, Side::Read);
    }

    fn resume_reading(&self) {
        if self.base.closing.get() || !self.paused.get() {
            return;
        }
        self.paused.set(false);
        self.add_reader();
    }
}

impl SocketTransport {
    /// asyncio's checks at the top of `write` and `writelines`: no write
    /// after `write_eof()`, nor while a sendfile is in progress. `call`
    /// names the method in the message.
    #[inline]
    fn check_can_write(&self, call: &str) -> Result<()> {
        if self.eof.get() {
            return Err(Error::runtime(format!(
                "cannot call {call}() after write_eof(): the write side is closed; \
                 write all the data before write_eof()"
            )));
        }
        if self.sendfile_lost.borrow().is_some() {
            return Err(Error::runtime(format!(
                "unable to {call}: a sendfile is in progress on this transport; await it first"
            )));
        }
        Ok(())
    }
}

impl WriteTransport for SocketTransport {
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let mut l = self.limits.get();
        l.set(high, low)?;
        self.limits.set(l);
        self.maybe_pause_protocol();
        Ok(())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        let l = self.limits.get();
        (l.low, l.high)
    }

    fn get_write_buffer_size(&self) -> usize {
        self.buffer.borrow().len()
    }

    fn write(&self, data: &[u8]) -> Result<()> {
        self.check_can_write("write")?;
        if data.is_empty() {
            return Ok(());
        }
        let lost = self.base.conn_lost.get();
        if lost > 0 {
            // asyncio logs a warning from the 5th write on; tulip once, in debug mode.
            if lost == LOG_THRESHOLD_FOR_CONNLOST_WRITES && self.base.lp.debug() {
                eprintln!("tulip: socket.send() raised exception: writes to a lost connection are dropped");
            }
            self.base.conn_lost.set(lost + 1);
            return Ok(());
        }
        let mut data = data;
        if self.buffer.borrow().is_empty() {
            // Optimisation: try to send now.
            match self.try_send(data) {
                Ok(n) => {
                    data = &data[n..];
                    if data.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.fatal_error(e);
                    return Ok(());
                }
            }
            self.add_writer();
        }
        self.buffer.borrow_mut().extend(data);
        self.maybe_pause_protocol();
        Ok(())
    }

    /// Several buffers as one `send` when they are small and nothing is
    /// buffered (asyncio 3.12 joins them with `sendmsg`); otherwise one
    /// `write` each, which buffers everything after the first partial send.
    fn writelines(&self, list: &[&[u8]]) -> Result<()> {
        // asyncio checks `_eof` and a sendfile in progress before it looks
        // at the list, and its messages name writelines().
        self.check_can_write("writelines")?;
        if list.is_empty() {
            return Ok(());
        }
        let total: usize = list.iter().map(|d| d.len()).sum();
        if list.len() > 1 && total <= WRITELINES_JOIN_MAX && self.buffer.borrow().is_empty() {
            let mut joined = Vec::with_capacity(total);
            for d in list {
                joined.extend_from_slice(d);
            }
            return self.write(&joined);
        }
        for d in list {
            self.write(d)?;
        }
        Ok(())
    }

    fn write_eof(&self) -> Result<()> {
        if self.base.closing.get() || self.eof.get() {
            return Ok(());
        }
        self.eof.set(true);
        if self.buffer.borrow().is_empty() {
            // asyncio raises shutdown's OSError to the caller.
            self.shutdown_write()?;
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn abort(&self) {
        self.force_close(None);
    }

    fn as_socket_transport(&self) -> Option<&SocketTransport> {
        Some(self)
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
