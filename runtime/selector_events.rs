//! Socket transports and the `sock_*` coroutines. Mirrors the network half
//! of `Lib/asyncio/selector_events.py`: `_SelectorSocketTransport` (here
//! [`SocketTransport`]) and `BaseSelectorEventLoop.sock_recv`,
//! `sock_recv_into`, `sock_sendall`, `sock_connect`, `sock_accept`.
//!
//! ## The read path
//! The transport registers `read_ready` with
//! [`EventLoop::add_reader_edge`]: the reactor queues it once per readiness
//! edge. `read_ready` calls `recv` into one read buffer shared by every
//! transport of the thread (no allocation per read) and hands each chunk to
//! `protocol.data_received(&buf[..n])`. It stops after a short read (the
//! socket is drained: epoll reports the next arrival as a new edge) unless
//! epoll already reported the peer's FIN ([`EventLoop::fd_read_closed`]:
//! a FIN that came with the data raises no edge of its own), on
//! `WouldBlock`, at EOF, or after `MAX_READS_PER_EDGE` reads, when it
//! reschedules itself with
//! `call_soon` so that one busy peer cannot starve the loop (L8).
//!
//! ## The write path
//! `write` first tries `send` directly when nothing is buffered (most
//! writes end there: no copy, no writer registration). The rest is appended
//! to the write buffer and an edge-triggered writer is registered;
//! `write_ready` sends until the buffer is empty or `WouldBlock`, then
//! removes itself. Crossing the high-water mark calls the protocol's
//! `pause_writing`, draining to the low-water mark `resume_writing` (N3).
//!
//! # Invariants
//! - The reader is registered exactly while `is_reading()` and the read
//!   side is open; the writer exactly while the write buffer is non-empty.
//! - The socket is closed (dropped) only in `call_connection_lost`, after
//!   both registrations are removed: no fd is used after close, and a
//!   recycled fd number never meets a stale registration (N4).
//! - `connection_lost` is called once (guarded by `conn_lost`), then the
//!   transport drops its protocol, breaking the transport ↔ protocol cycle.
//! - No `RefCell` borrow of the transport is held while a protocol method
//!   runs.
//! - A protocol callback that panics in `data_received` or `eof_received`
//!   is reported, and the connection is closed with `Error::Panic` (asyncio's
//!   `_fatal_error`); the loop goes on.
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
use crate::protocols::Protocol;
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

// ===== SocketTransport =====

/// asyncio's `_SelectorSocketTransport`: a connected socket, driven by the
/// loop, talking to a [`Protocol`].
///
/// Created by [`create_connection`](EventLoop::create_connection), by a
/// server for each accepted connection, or directly with
/// [`SocketTransport::new`]. Protocols see it as `Rc<dyn Transport>`.
pub struct SocketTransport {
    lp: EventLoop,
    /// The fd number, kept for `remove_reader`/`remove_writer` after the
    /// socket itself is gone.
    fd: RawFd,
    /// `None` once closed (in `call_connection_lost`).
    sock: RefCell<Option<StreamSocket>>,
    /// `None` before `connection_made` is due and after `connection_lost`.
    protocol: RefCell<Option<Rc<dyn Protocol>>>,
    /// `connection_made` was called (so `connection_lost` must be).
    protocol_connected: Cell<bool>,
    buffer: RefCell<Buffer>,
    limits: Cell<WriteLimits>,
    /// `close()` or a fatal error started the shutdown. Never reset.
    closing: Cell<bool>,
    /// `write_eof()` was called.
    eof: Cell<bool>,
    /// The peer's EOF was received (the read side is finished).
    read_eof: Cell<bool>,
    /// `pause_reading()` is in effect.
    paused: Cell<bool>,
    /// Non-zero once `connection_lost` is scheduled; counts writes after that.
    conn_lost: Cell<u32>,
    /// The writer callback is registered.
    writer_registered: Cell<bool>,
    peername: RefCell<Option<ExtraInfo>>,
    sockname: RefCell<Option<ExtraInfo>>,
    /// Called after `connection_lost` (a server's `_detach`).
    on_lost: RefCell<Option<Box<dyn FnOnce()>>>,
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
        sock.prepare()?;
        let fd = sock.as_raw_fd();
        let t = Rc::new_cyclic(|me| SocketTransport {
            lp: lp.clone(),
            fd,
            sock: RefCell::new(Some(sock)),
            protocol: RefCell::new(Some(protocol)),
            protocol_connected: Cell::new(false),
            buffer: RefCell::new(Buffer::default()),
            limits: Cell::new(WriteLimits::default()),
            closing: Cell::new(false),
            eof: Cell::new(false),
            read_eof: Cell::new(false),
            paused: Cell::new(false),
            conn_lost: Cell::new(0),
            writer_registered: Cell::new(false),
            peername: RefCell::new(None),
            sockname: RefCell::new(None),
            on_lost: RefCell::new(None),
            me: me.clone(),
        });
        let t2 = t.clone();
        // asyncio: call_soon(connection_made), call_soon(_add_reader), call_soon(waiter).
        let _ = lp.call_soon(move || t2.start(waiter))?;
        Ok(t)
    }

    fn start(self: Rc<Self>, waiter: Option<Future<()>>) {
        // asyncio runs these as three handles, so that a connection_made
        // that raises still lets the reader start and the waiter finish;
        // here one handle, and a guard that does the rest even on a panic.
        let _rest = StartRest {
            t: self.clone(),
            waiter,
        };
        if self.conn_lost.get() == 0 {
            let proto = self.protocol.borrow().clone();
            if let Some(p) = proto {
                self.protocol_connected.set(true);
                p.connection_made(self.clone());
            }
        }
    }

    /// Runs `f` once, after `connection_lost` (servers count their
    /// connections with it).
    pub(crate) fn set_on_lost(&self, f: impl FnOnce() + 'static) {
        *self.on_lost.borrow_mut() = Some(Box::new(f));
    }

    /// The protocol, until `connection_lost` ran.
    pub fn protocol(&self) -> Option<Rc<dyn Protocol>> {
        self.protocol.borrow().clone()
    }

    /// The socket's fd number (valid until the transport is closed).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    fn rc(&self) -> Rc<SocketTransport> {
        self.me.upgrade().expect("transport alive while in use")
    }

    /// asyncio's `_add_reader`: only while reading (not paused, not closing).
    fn add_reader(&self) {
        if !self.is_reading() || self.read_eof.get() {
            return;
        }
        let me = self.rc();
        let res = self.lp.add_reader_edge(self.fd, move || me.read_ready());
        if let Err(e) = res {
            self.fatal_error(e);
        }
    }

    // ----- reading -----

    /// asyncio's `_read_ready__data_received`, draining the edge.
    fn read_ready(&self) {
        let mut buf = take_read_buf();
        let mut reads = 0;
        loop {
            if self.conn_lost.get() > 0 || self.paused.get() || self.closing.get() {
                break;
            }
            let res = match &*self.sock.borrow() {
                Some(s) => s.recv(&mut buf),
                None => break,
            };
            match res {
                Ok(0) => {
                    self.read_ready_on_eof();
                    break;
                }
                Ok(n) => {
                    let proto = self.protocol.borrow().clone();
                    if let Some(p) = proto {
                        let data = &buf[..n];
                        let res = catch_unwind(AssertUnwindSafe(|| p.data_received(data)));
                        if let Err(payload) = res {
                            self.protocol_failed(payload, "data_received");
                            break;
                        }
                    }
                    // A short read drained the socket: the next arrival is a
                    // new edge. Unless the FIN came with the data (no new
                    // edge for it): then read on, to see the EOF.
                    if n < buf.len() && !self.lp.fd_read_closed(self.fd) {
                        break;
                    }
                    reads += 1;
                    if reads == MAX_READS_PER_EDGE {
                        // Fairness: continue on the next iteration.
                        let me = self.rc();
                        let _ = self.lp.call_soon(move || me.read_ready());
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fatal_error(e);
                    break;
                }
            }
        }
        put_read_buf(buf);
    }

    /// asyncio's `_read_ready__on_eof`.
    fn read_ready_on_eof(&self) {
        self.read_eof.set(true);
        let proto = self.protocol.borrow().clone();
        let keep_open = match proto {
            Some(p) => match catch_unwind(AssertUnwindSafe(|| p.eof_received())) {
                Ok(keep) => keep,
                Err(payload) => {
                    self.protocol_failed(payload, "eof_received");
                    return;
                }
            },
            None => false,
        };
        if keep_open {
            // Half-open: stop reading, keep writing.
            let _ = self.lp.remove_reader(self.fd);
        } else {
            self.close();
        }
    }

    /// asyncio's `_fatal_error(exc, 'Fatal error: protocol.data_received()
    /// call failed.')`: a protocol callback panicked. Reported, and the
    /// connection is closed with the panic as its error. `Interrupt`
    /// (Ctrl-C) goes on unwinding, as `KeyboardInterrupt` does.
    fn protocol_failed(&self, payload: Box<dyn std::any::Any + Send>, what: &str) {
        if payload.is::<crate::event_loop::Interrupt>() {
            std::panic::resume_unwind(payload);
        }
        let err = Error::Panic(panic_message(&*payload));
        self.lp.call_exception_handler(&ExceptionContext {
            message: format!("Fatal error: protocol.{what}() call failed."),
            error: Some(err.clone()),
            ..Default::default()
        });
        self.force_close(Some(err));
    }

    // ----- writing -----

    fn try_send(&self, data: &[u8]) -> io::Result<usize> {
        match &*self.sock.borrow() {
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
        if self.writer_registered.replace(true) {
            return;
        }
        let me = self.rc();
        let res = self.lp.add_writer_edge(self.fd, move || me.write_ready());
        if let Err(e) = res {
            self.writer_registered.set(false);
            self.fatal_error(e);
        }
    }

    fn remove_writer(&self) {
        if self.writer_registered.replace(false) {
            let _ = self.lp.remove_writer(self.fd);
        }
    }

    /// asyncio's `_write_ready`: flush until empty or `WouldBlock`.
    fn write_ready(&self) {
        if self.conn_lost.get() > 0 {
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
                Ok(0) => return, // WouldBlock: wait for the next edge
                Ok(n) => self.buffer.borrow_mut().consume(n),
                Err(e) => {
                    self.remove_writer();
                    self.buffer.borrow_mut().clear();
                    self.fatal_error(e);
                    return;
                }
            }
        }
        // The buffer is empty.
        self.maybe_resume_protocol();
        self.remove_writer();
        if self.closing.get() {
            self.call_connection_lost(None);
        } else if self.eof.get() {
            self.shutdown_write();
        }
    }

    fn shutdown_write(&self) {
        if let Some(s) = &*self.sock.borrow() {
            let _ = s.shutdown_write();
        }
    }

    /// asyncio's `_maybe_pause_protocol`.
    fn maybe_pause_protocol(&self) {
        let size = self.buffer.borrow().len();
        let mut l = self.limits.get();
        if l.maybe_pause(size) {
            self.limits.set(l);
            let proto = self.protocol.borrow().clone();
            if let Some(p) = proto {
                p.pause_writing();
            }
        }
    }

    /// asyncio's `_maybe_resume_protocol`.
    fn maybe_resume_protocol(&self) {
        let size = self.buffer.borrow().len();
        let mut l = self.limits.get();
        if l.maybe_resume(size) {
            self.limits.set(l);
            let proto = self.protocol.borrow().clone();
            if let Some(p) = proto {
                p.resume_writing();
            }
        }
    }

    // ----- closing -----

    /// asyncio's `_fatal_error`: an I/O error ends the connection, and the
    /// protocol's `connection_lost` receives it.
    fn fatal_error(&self, e: impl Into<Error>) {
        self.force_close(Some(e.into()));
    }

    /// asyncio's `_force_close`.
    fn force_close(&self, exc: Option<Error>) {
        if self.conn_lost.get() > 0 {
            return;
        }
        if !self.buffer.borrow().is_empty() {
            self.buffer.borrow_mut().clear();
        }
        self.remove_writer();
        if !self.closing.replace(true) {
            let _ = self.lp.remove_reader(self.fd);
        }
        self.conn_lost.set(self.conn_lost.get() + 1);
        let me = self.rc();
        let _ = self.lp.call_soon(move || me.call_connection_lost(exc));
    }

    /// asyncio's `_call_connection_lost`: tell the protocol, then close the
    /// socket and drop the protocol.
    fn call_connection_lost(&self, exc: Option<Error>) {
        self.conn_lost.set(self.conn_lost.get().max(1));
        self.closing.set(true);
        // Both registrations are gone before the fd is closed (N4).
        let _ = self.lp.remove_reader(self.fd);
        self.remove_writer();
        let proto = self.protocol.borrow_mut().take();
        if let Some(p) = proto {
            if self.protocol_connected.get() {
                p.connection_lost(exc);
            }
        }
        drop(self.sock.borrow_mut().take());
        let hook = self.on_lost.borrow_mut().take();
        if let Some(f) = hook {
            f();
        }
    }
}

/// The second half of `SocketTransport::start`: start reading, complete
/// the waiter. In `Drop`, so that it also runs if `connection_made` panics.
struct StartRest {
    t: Rc<SocketTransport>,
    waiter: Option<Future<()>>,
}

impl Drop for StartRest {
    fn drop(&mut self) {
        if self.t.conn_lost.get() == 0 {
            self.t.add_reader();
        }
        if let Some(w) = self.waiter.take() {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }
}

impl BaseTransport for SocketTransport {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        let cached = |slot: &RefCell<Option<ExtraInfo>>,
                      f: fn(&StreamSocket) -> Option<ExtraInfo>| {
            if slot.borrow().is_none() {
                let v = self.sock.borrow().as_ref().and_then(f);
                *slot.borrow_mut() = v;
            }
            slot.borrow().clone()
        };
        match name {
            "peername" => cached(&self.peername, StreamSocket::peername),
            "sockname" => cached(&self.sockname, StreamSocket::sockname),
            "socket" => self
                .sock
                .borrow()
                .as_ref()
                .map(|s| ExtraInfo::Fd(s.as_raw_fd())),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.get()
    }

    fn close(&self) {
        if self.closing.replace(true) {
            return;
        }
        let _ = self.lp.remove_reader(self.fd);
        if self.buffer.borrow().is_empty() {
            self.conn_lost.set(self.conn_lost.get() + 1);
            self.remove_writer();
            let me = self.rc();
            let _ = self.lp.call_soon(move || me.call_connection_lost(None));
        }
        // Else write_ready flushes the buffer, then calls connection_lost.
    }
}

impl ReadTransport for SocketTransport {
    fn is_reading(&self) -> bool {
        !self.paused.get() && !self.closing.get()
    }

    fn pause_reading(&self) {
        if self.closing.get() || self.paused.get() {
            return;
        }
        self.paused.set(true);
        let _ = self.lp.remove_reader(self.fd);
    }

    fn resume_reading(&self) {
        if self.closing.get() || !self.paused.get() {
            return;
        }
        self.paused.set(false);
        self.add_reader();
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
        if self.eof.get() {
            return Err(Error::Runtime(
                "cannot call write() after write_eof(): the write side is closed".into(),
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        let lost = self.conn_lost.get();
        if lost > 0 {
            // asyncio logs a warning from the 5th write on; tulip once, in debug mode.
            if lost == LOG_THRESHOLD_FOR_CONNLOST_WRITES && self.lp.debug() {
                eprintln!("tulip: socket.send() raised exception: writes to a lost connection are dropped");
            }
            self.conn_lost.set(lost + 1);
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
        if self.closing.get() || self.eof.get() {
            return Ok(());
        }
        self.eof.set(true);
        if self.buffer.borrow().is_empty() {
            self.shutdown_write();
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn abort(&self) {
        self.force_close(None);
    }
}

impl Transport for SocketTransport {}

impl fmt::Debug for SocketTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketTransport")
            .field("fd", &self.fd)
            .field("closing", &self.closing.get())
            .field("reading", &self.is_reading())
            .field("write_buffer", &self.buffer.borrow().len())
            .field("conn_lost", &self.conn_lost.get())
            .finish()
    }
}
