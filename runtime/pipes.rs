//! Pipe transports: [`EventLoop::connect_read_pipe`] and
//! [`EventLoop::connect_write_pipe`]. Mirrors `_UnixReadPipeTransport` and
//! `_UnixWritePipeTransport` in `Lib/asyncio/unix_events.py`, and
//! `connect_read_pipe`/`connect_write_pipe` in `base_events.py`.
//!
//! - [`ReadPipeTransport`] reads the read end of a pipe (or a FIFO, a
//!   socket, a character device) and calls its [`Protocol`]:
//!   `data_received` for each chunk; at EOF `eof_received`, then
//!   `connection_lost(None)`; after a read error `connection_lost(Some(e))`.
//!   It can be paused and resumed ([`ReadTransport`]).
//! - [`WritePipeTransport`] writes to the write end: `write` never blocks,
//!   the rest is buffered and flushed by a writer callback; above the
//!   high-water mark the protocol's `pause_writing` is called, at the low
//!   one `resume_writing`. For a FIFO or a socket it also watches the fd
//!   for readability, which on a write end means the read end was closed
//!   (asyncio's trick): the transport then closes, with
//!   `connection_lost(Some(BrokenPipe))` if data was still buffered, and
//!   `connection_lost(None)` otherwise, as asyncio does. A `write(2)` that
//!   fails with `EPIPE` ends it with `BrokenPipe` too.
//!
//! Both are built on the same base as the socket transports
//! (`selector_transport.rs`: start, close, force-close, connection lost,
//! release at loop close), with the pipe's `OwnedFd` as the "socket".
//! The subprocess module uses them too: a child's stdout and stderr are
//! read pipe transports under a [`StreamReaderProtocol`](crate::StreamReaderProtocol),
//! its stdin a write pipe transport whose protocol is the
//! [`FlowControl`](crate::FlowControl) of its [`StreamWriter`](crate::StreamWriter).
//! So does the subprocess transport
//! ([`base_subprocess`](crate::base_subprocess)): each of its child's pipes
//! is one of these under a small protocol that reports to it (asyncio's
//! `ReadSubprocessPipeProto` and `WriteSubprocessPipeProto`).
//!
//! tulip's [`Protocol::connection_made`] takes an `Rc<dyn Transport>` (a
//! read *and* write transport), so both pipe transports implement the whole
//! of [`Transport`]: the write methods of a read pipe fail with
//! [`Error::Runtime`] (asyncio's read pipe has no `write`, and calling it
//! raises `AttributeError`), and a write pipe never reads (`is_reading()`
//! is false, `pause_reading`/`resume_reading` do nothing).
//!
//! ```
//! use std::cell::RefCell;
//! use std::io::Write;
//! use std::rc::Rc;
//! use tulip::{Error, Protocol};
//!
//! #[derive(Default)]
//! struct Collect {
//!     data: RefCell<Vec<u8>>,
//!     done: RefCell<Option<tulip::Future<()>>>,
//! }
//! impl Protocol for Collect {
//!     fn data_received(&self, data: &[u8]) {
//!         self.data.borrow_mut().extend_from_slice(data);
//!     }
//!     fn connection_lost(&self, _exc: Option<Error>) {
//!         let done = self.done.borrow_mut().take();
//!         if let Some(f) = done {
//!             let _ = f.set_result(());
//!         }
//!     }
//! }
//!
//! tulip::run(async {
//!     let lp = tulip::get_running_loop()?;
//!     let (r, mut w) = std::io::pipe()?;
//!     let done = lp.create_future();
//!     let d = done.clone();
//!     let (_t, proto) = lp
//!         .connect_read_pipe(move || Rc::new(Collect { done: RefCell::new(Some(d)), ..Default::default() }), r)
//!         .await?;
//!     w.write_all(b"hello")?;
//!     drop(w); // EOF
//!     done.await?;
//!     assert_eq!(&*proto.data.borrow(), b"hello");
//!     Ok(())
//! }).unwrap();
//! ```
//!
//! # Invariants
//! - The fd is a FIFO, a socket or a character device (checked with
//!   `fstat`, as asyncio does: a regular file is refused with
//!   [`Error::InvalidArgument`]), and non-blocking from the moment the
//!   transport owns it.
//! - Both fds are registered edge-triggered; the read pipe reads until
//!   `WouldBlock`, EOF, an error, a pause, or `MAX_READS_PER_EDGE` reads
//!   (then it continues on the next iteration, as it does in the next run
//!   after a `data_received` that interrupted the run).
//! - A read pipe's reader is registered exactly while it is reading (after
//!   `connection_made`, not paused, not closing); a write pipe's writer
//!   exactly while its buffer is not empty.
//! - A write pipe drops the writes it gets once it is closing or lost, as
//!   asyncio's does; a close waits for the buffer it had to be flushed.
//! - The fd is closed only in `call_connection_lost`, after the reader and
//!   the writer are removed (N4), or when the loop closes first (then no
//!   protocol method is called, and the loop's registrations went with it).
//! - `connection_made` comes first, `connection_lost` exactly once and
//!   last; then the transport drops its protocol, which breaks the
//!   transport ↔ protocol cycle. At EOF `eof_received` comes before it.
//! - No `RefCell` borrow of a transport is held while a protocol method
//!   runs. A panicking `data_received` is reported to the loop's exception
//!   handler and closes the pipe with [`Error::Panic`]; a panicking
//!   `pause_writing`/`resume_writing` is reported and the pipe goes on
//!   (asyncio's `_maybe_pause_protocol`); `connection_made`,
//!   `eof_received` and `connection_lost` run in handles of their own (or
//!   the writer's, for a `connection_lost` after the last flush), so the
//!   loop reports their panics (L6); the fd is closed even if
//!   `connection_lost` panics.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt};
use crate::futures::Future;
use crate::protocols::Protocol;
use crate::reactor::Side;
use crate::selector_events::{put_read_buf, take_read_buf};
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::streams::Buffer;
use crate::sys;
use crate::transports::{
    BaseTransport, ExtraInfo, ReadTransport, Transport, WriteLimits, WriteTransport,
};

/// How many reads one readiness edge may do before yielding to other
/// callbacks (the rest continues on the next iteration).
const MAX_READS_PER_EDGE: usize = 16;

/// What kind of file a pipe transport was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PipeKind {
    Fifo,
    Socket,
    CharDevice,
}

/// asyncio's `stat.S_ISFIFO(mode) or S_ISSOCK(mode) or S_ISCHR(mode)`
/// check, then `os.set_blocking(fd, False)`.
fn prepare(pipe: OwnedFd, refusal: &str) -> Result<(OwnedFd, PipeKind)> {
    let fd = pipe.as_raw_fd();
    let file = File::from(pipe);
    let ft = file.metadata()?.file_type();
    let kind = if ft.is_fifo() {
        PipeKind::Fifo
    } else if ft.is_socket() {
        PipeKind::Socket
    } else if ft.is_char_device() {
        PipeKind::CharDevice
    } else {
        let what = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "neither a pipe, a socket nor a character device"
        };
        return Err(Error::invalid_argument(format!(
            "{refusal}: fd {fd} is {what}; read or write it with std::fs instead"
        )));
    };
    let pipe = OwnedFd::from(file);
    sys::set_nonblocking(&pipe)?;
    Ok((pipe, kind))
}

/// A protocol callback panicked: `Interrupt` goes on unwinding (Ctrl-C),
/// anything else is returned as the error to report.
fn panic_error(payload: Box<dyn std::any::Any + Send>) -> Error {
    if payload.is::<Interrupt>() {
        std::panic::resume_unwind(payload);
    }
    Error::Panic(panic_message(&*payload))
}

/// The error of a write method called on a read pipe.
fn not_writable() -> Error {
    Error::runtime(
        "a read pipe transport cannot write: use connect_write_pipe for the pipe's write end",
    )
}

/// Closes the transport of a `connect_*_pipe` whose awaiter went away
/// before `connection_made` (asyncio: `except: transport.close(); raise`).
struct CloseUnlessConnected(Option<Rc<dyn Transport>>);

impl Drop for CloseUnlessConnected {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.close();
        }
    }
}

// ===== reading =====

/// asyncio's `_UnixReadPipeTransport`: the read end of a pipe, driven by
/// the loop, talking to a [`Protocol`].
///
/// Made by [`EventLoop::connect_read_pipe`] or [`ReadPipeTransport::new`].
/// Protocols see it as `Rc<dyn Transport>`: its write methods fail (see
/// the [module docs](self)).
pub struct ReadPipeTransport {
    base: TransportBase<OwnedFd, Rc<dyn Protocol>>,
    /// `pause_reading()` is in effect.
    paused: Cell<bool>,
    me: Weak<ReadPipeTransport>,
}

impl ReadPipeTransport {
    /// Wraps the read end `pipe`: checks that it is a FIFO, a socket or a
    /// character device, makes it non-blocking, then on the next loop
    /// iteration calls `protocol.connection_made`, starts reading, and
    /// completes `waiter` if given.
    ///
    /// Fails with [`Error::InvalidArgument`] for a regular file (or a
    /// directory), with [`Error::Closed`] on a closed loop; `pipe` is then
    /// closed.
    pub fn new(
        lp: &EventLoop,
        pipe: impl Into<OwnedFd>,
        protocol: Rc<dyn Protocol>,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<ReadPipeTransport>> {
        lp.check_closed()?;
        let (pipe, _) = prepare(pipe.into(), "Pipe transport is for pipes/sockets only")?;
        let t = Rc::new_cyclic(|me| ReadPipeTransport {
            base: TransportBase::new(lp, pipe, protocol),
            paused: Cell::new(false),
            me: me.clone(),
        });
        t.schedule_start(waiter)?;
        Ok(t)
    }

    /// The protocol, until `connection_lost` ran.
    pub fn protocol(&self) -> Option<Rc<dyn Protocol>> {
        self.base.protocol()
    }

    /// The pipe's fd number while it is open (asyncio's
    /// `get_extra_info('pipe')`).
    pub fn fd(&self) -> Option<RawFd> {
        self.base.sock_fd()
    }

    /// asyncio's `_read_ready`, draining the edge.
    fn read_ready(&self) {
        let mut buf = take_read_buf();
        self.read_edge(&mut buf);
        put_read_buf(buf);
    }

    fn read_edge(&self, buf: &mut [u8]) {
        for _ in 0..MAX_READS_PER_EDGE {
            if self.base.closing.get() || self.paused.get() {
                return;
            }
            let Some(proto) = self.base.protocol() else {
                return;
            };
            let res = match &*self.base.sock.borrow() {
                Some(fd) => sys::read(fd.as_raw_fd(), buf),
                None => return,
            };
            match res {
                Ok(0) => return self.read_eof(),
                Ok(n) => {
                    let data = &buf[..n];
                    if let Err(payload) =
                        catch_unwind(AssertUnwindSafe(|| proto.data_received(data)))
                    {
                        if payload.is::<Interrupt>() {
                            // The run ends (Ctrl-C) before the edge is
                            // drained: the next run reads on, as a
                            // level-triggered selector would.
                            self.read_again();
                        }
                        let err = panic_error(payload);
                        self.report(
                            err.clone(),
                            "Fatal error: protocol.data_received() call failed.",
                        );
                        self.force_close(Some(err));
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // asyncio reports every read error but EIO (a pty whose
                    // other side closed), then closes with it.
                    let err = Error::from(e);
                    if err.raw_os_error() != Some(libc::EIO) {
                        self.report(err.clone(), "Fatal read error on pipe transport");
                    }
                    self.force_close(Some(err));
                    return;
                }
            }
        }
        // Fairness: more may be waiting; go on in the next iteration.
        self.read_again();
    }

    /// Reads on in the next iteration, without waiting for a new edge.
    fn read_again(&self) {
        if let Some(me) = self.me.upgrade() {
            let _ = self.base.lp.call_soon(move || me.read_ready());
        }
    }

    /// asyncio's EOF branch of `_read_ready`: stop reading, then
    /// `eof_received` and `connection_lost(None)`, each in a handle.
    fn read_eof(&self) {
        let base = &self.base;
        base.closing.set(true);
        let _ = base.lp.remove_io(base.fd, Side::Read);
        base.conn_lost.set(base.conn_lost.get() + 1);
        if let Some(p) = base.protocol() {
            let _ = base.lp.call_soon(move || {
                p.eof_received();
            });
        }
        if let Some(me) = self.me.upgrade() {
            let _ = base.lp.call_soon(move || me.call_connection_lost(None));
        }
    }

    fn report(&self, err: Error, message: &str) {
        self.base.lp.call_exception_handler(&ExceptionContext {
            message: message.to_owned(),
            error: Some(err),
            transport: Some(format!("{self:?}")),
            ..Default::default()
        });
    }
}

impl SelectorTransport for ReadPipeTransport {
    type Sock = OwnedFd;
    type Proto = Rc<dyn Protocol>;

    fn base(&self) -> &TransportBase<OwnedFd, Rc<dyn Protocol>> {
        &self.base
    }

    fn rc(&self) -> Option<Rc<Self>> {
        self.me.upgrade()
    }

    fn connection_made(this: Rc<Self>, protocol: &Rc<dyn Protocol>) {
        protocol.connection_made(this);
    }

    fn connection_lost(protocol: &Rc<dyn Protocol>, exc: Option<Error>) {
        protocol.connection_lost(exc);
    }

    fn wants_reader(&self) -> bool {
        self.is_reading()
    }

    fn read_ready(&self) {
        ReadPipeTransport::read_ready(self);
    }

    fn write_buffer_is_empty(&self) -> bool {
        true
    }

    fn clear_write_buffer(&self) {}
}

impl BaseTransport for ReadPipeTransport {
    /// `"pipe"`: the fd, while the pipe is open.
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "pipe" => self.fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.base.closing.get()
    }

    /// Stops reading; `connection_lost(None)` follows on the next iteration.
    fn close(&self) {
        self.close_transport();
    }
}

impl ReadTransport for ReadPipeTransport {
    fn is_reading(&self) -> bool {
        !self.paused.get() && !self.base.closing.get()
    }

    fn pause_reading(&self) {
        if self.base.closing.get() || self.paused.replace(true) {
            return;
        }
        let _ = self.base.lp.remove_io(self.base.fd, Side::Read);
    }

    fn resume_reading(&self) {
        if self.base.closing.get() || !self.paused.replace(false) {
            return;
        }
        // Re-registering reports the fd at once if data is waiting.
        self.add_reader();
    }
}

/// A read pipe cannot write: these fail, or report nothing buffered.
impl WriteTransport for ReadPipeTransport {
    fn set_write_buffer_limits(&self, _high: Option<usize>, _low: Option<usize>) -> Result<()> {
        Err(not_writable())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (0, 0)
    }

    fn get_write_buffer_size(&self) -> usize {
        0
    }

    fn write(&self, _data: &[u8]) -> Result<()> {
        Err(not_writable())
    }

    fn write_eof(&self) -> Result<()> {
        Err(not_writable())
    }

    fn can_write_eof(&self) -> bool {
        false
    }

    /// Closes at once (there is no buffer to drop): as `close`.
    fn abort(&self) {
        self.force_close(None);
    }
}

impl Transport for ReadPipeTransport {
    fn get_protocol(&self) -> Option<Rc<dyn Protocol>> {
        self.protocol()
    }

    /// asyncio's `set_protocol`: see [`Transport::set_protocol`]. A pipe
    /// has no [`BufferedProtocol`](crate::BufferedProtocol) read path.
    fn set_protocol(&self, protocol: Rc<dyn Protocol>) -> Result<()> {
        self.base.set_protocol(protocol);
        Ok(())
    }
}

impl fmt::Debug for ReadPipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPipeTransport")
            .field("fd", &self.base.fd)
            .field("open", &self.fd().is_some())
            .field("closing", &self.base.closing.get())
            .field("paused", &self.paused.get())
            .finish()
    }
}

// ===== writing =====

/// asyncio's `_UnixWritePipeTransport`: the write end of a pipe, driven by
/// the loop, talking to a [`Protocol`] (which hears `pause_writing`,
/// `resume_writing` and `connection_lost`).
///
/// Made by [`EventLoop::connect_write_pipe`] or [`WritePipeTransport::new`].
/// Protocols see it as `Rc<dyn Transport>`; it never reads (see the
/// [module docs](self)).
pub struct WritePipeTransport {
    base: TransportBase<OwnedFd, Rc<dyn Protocol>>,
    buffer: RefCell<Buffer>,
    limits: Cell<WriteLimits>,
    /// `write_eof()` or `close()` was called: writes are dropped from now on.
    eof: Cell<bool>,
    /// A FIFO or a socket gets a reader, which reports that the read end
    /// was closed (asyncio's `_read_ready` on a write pipe).
    kind: PipeKind,
    me: Weak<WritePipeTransport>,
}

impl WritePipeTransport {
    /// Wraps the write end `pipe`: checks that it is a FIFO, a socket or a
    /// character device, makes it non-blocking, then on the next loop
    /// iteration calls `protocol.connection_made`, starts watching for the
    /// read end's hang-up (FIFOs and sockets), and completes `waiter`.
    ///
    /// Fails with [`Error::InvalidArgument`] for a regular file (or a
    /// directory), with [`Error::Closed`] on a closed loop; `pipe` is then
    /// closed.
    pub fn new(
        lp: &EventLoop,
        pipe: impl Into<OwnedFd>,
        protocol: Rc<dyn Protocol>,
        waiter: Option<Future<()>>,
    ) -> Result<Rc<WritePipeTransport>> {
        lp.check_closed()?;
        let (pipe, kind) = prepare(
            pipe.into(),
            "Pipe transport is only for pipes, sockets and character devices",
        )?;
        let t = Rc::new_cyclic(|me| WritePipeTransport {
            base: TransportBase::new(lp, pipe, protocol),
            buffer: RefCell::new(Buffer::default()),
            limits: Cell::new(WriteLimits::default()),
            eof: Cell::new(false),
            kind,
            me: me.clone(),
        });
        t.schedule_start(waiter)?;
        Ok(t)
    }

    /// The protocol, until `connection_lost` ran.
    pub fn protocol(&self) -> Option<Rc<dyn Protocol>> {
        self.base.protocol()
    }

    /// The pipe's fd number while it is open (asyncio's
    /// `get_extra_info('pipe')`).
    pub fn fd(&self) -> Option<RawFd> {
        self.base.sock_fd()
    }

    /// One `write(2)`; `WouldBlock` is 0 bytes.
    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match &*self.base.sock.borrow() {
            Some(fd) => match sys::write(fd.as_raw_fd(), data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                other => other,
            },
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn add_writer(&self) {
        if self.base.writer_registered.replace(true) {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let res = self
            .base
            .lp
            .add_io_edge(self.base.fd, Side::Write, move || me.write_ready());
        if let Err(e) = res {
            self.base.writer_registered.set(false);
            self.force_close(Some(e));
        }
    }

    /// asyncio's `_write_ready`: flush until empty or `WouldBlock`; then
    /// resume the protocol, and finish closing if asked to.
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
                self.try_write(buf.bytes())
            };
            match res {
                Ok(0) => return, // WouldBlock: wait for the next edge
                Ok(n) => self.buffer.borrow_mut().consume(n),
                Err(e) => {
                    self.base.remove_writer();
                    self.buffer.borrow_mut().clear();
                    self.force_close(Some(e.into()));
                    return;
                }
            }
        }
        self.base.remove_writer();
        self.maybe_resume_protocol();
        // `resume_writing` may have written (the writer flushes that first,
        // then ends here again), closed with nothing buffered or aborted
        // (`connection_lost` is scheduled already): only a close that waited
        // for this flush ends the pipe now.
        let base = &self.base;
        if base.closing.get() && base.conn_lost.get() == 0 && self.buffer.borrow().is_empty() {
            self.call_connection_lost(None);
        }
    }

    /// asyncio's `_read_ready` of a write pipe: the read end was closed.
    fn hangup(&self) {
        // A wake-up without a hang-up (spurious readiness, L8) is ignored
        // on a FIFO; on a socket any readability counts, as in asyncio.
        if !self.base.lp.fd_read_closed(self.base.fd) && self.kind == PipeKind::Fifo {
            return;
        }
        if self.buffer.borrow().is_empty() {
            self.force_close(None);
        } else {
            self.force_close(Some(io::Error::from(io::ErrorKind::BrokenPipe).into()));
        }
    }

    /// Calls a flow-control method of the protocol; a panic is reported
    /// and the pipe goes on (asyncio's `_maybe_pause_protocol`).
    fn flow_call(&self, what: &str, f: fn(&dyn Protocol)) {
        let Some(p) = self.base.protocol() else {
            return;
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(&*p))) {
            let err = panic_error(payload);
            self.base.lp.call_exception_handler(&ExceptionContext {
                message: format!("protocol.{what}() failed"),
                error: Some(err),
                transport: Some(format!("{self:?}")),
                ..Default::default()
            });
        }
    }

    /// asyncio's `_maybe_pause_protocol`.
    fn maybe_pause_protocol(&self) {
        let size = self.buffer.borrow().len();
        let mut l = self.limits.get();
        if l.maybe_pause(size) {
            self.limits.set(l);
            self.flow_call("pause_writing", |p| p.pause_writing());
        }
    }

    /// asyncio's `_maybe_resume_protocol`.
    fn maybe_resume_protocol(&self) {
        let size = self.buffer.borrow().len();
        let mut l = self.limits.get();
        if l.maybe_resume(size) {
            self.limits.set(l);
            self.flow_call("resume_writing", |p| p.resume_writing());
        }
    }
}

impl SelectorTransport for WritePipeTransport {
    type Sock = OwnedFd;
    type Proto = Rc<dyn Protocol>;

    fn base(&self) -> &TransportBase<OwnedFd, Rc<dyn Protocol>> {
        &self.base
    }

    fn rc(&self) -> Option<Rc<Self>> {
        self.me.upgrade()
    }

    fn connection_made(this: Rc<Self>, protocol: &Rc<dyn Protocol>) {
        protocol.connection_made(this);
    }

    fn connection_lost(protocol: &Rc<dyn Protocol>, exc: Option<Error>) {
        protocol.connection_lost(exc);
    }

    /// The hang-up watch, on FIFOs and sockets, until closing.
    fn wants_reader(&self) -> bool {
        self.kind != PipeKind::CharDevice && !self.base.closing.get()
    }

    fn read_ready(&self) {
        self.hangup();
    }

    fn write_buffer_is_empty(&self) -> bool {
        self.buffer.borrow().is_empty()
    }

    fn clear_write_buffer(&self) {
        self.buffer.borrow_mut().clear();
    }
}

impl BaseTransport for WritePipeTransport {
    /// `"pipe"`: the fd, while the pipe is open.
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "pipe" => self.fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.base.closing.get()
    }

    /// asyncio: `close()` is `write_eof()` for a write pipe.
    fn close(&self) {
        let _ = self.write_eof();
    }
}

/// A write pipe never reads: `is_reading()` is false, and pausing or
/// resuming does nothing.
impl ReadTransport for WritePipeTransport {
    fn is_reading(&self) -> bool {
        false
    }

    fn pause_reading(&self) {}

    fn resume_reading(&self) {}
}

impl WriteTransport for WritePipeTransport {
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
        if data.is_empty() {
            return Ok(());
        }
        let base = &self.base;
        // asyncio drops writes once the pipe is closing or lost (`if
        // self._conn_lost or self._closing: ... return`), where the socket
        // transport raises after `write_eof()`. Only a lost pipe counts
        // them: `conn_lost` also means "lost" here, and a pipe still
        // flushing before it closes must go on flushing.
        if base.conn_lost.get() > 0 {
            base.conn_lost.set(base.conn_lost.get() + 1);
            return Ok(());
        }
        if base.closing.get() || self.eof.get() {
            return Ok(());
        }
        let mut data = data;
        if self.buffer.borrow().is_empty() {
            // Try at once, as asyncio's transport does.
            match self.try_write(data) {
                Ok(n) => {
                    data = &data[n..];
                    if data.is_empty() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.force_close(Some(e.into()));
                    return Ok(());
                }
            }
            self.add_writer();
            if base.conn_lost.get() > 0 {
                return Ok(());
            }
        }
        self.buffer.borrow_mut().extend(data);
        self.maybe_pause_protocol();
        Ok(())
    }

    /// Closes the pipe once the buffer is flushed; `connection_lost(None)`
    /// follows.
    fn write_eof(&self) -> Result<()> {
        self.eof.set(true);
        self.close_transport();
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn abort(&self) {
        self.force_close(None);
    }
}

impl Transport for WritePipeTransport {
    fn get_protocol(&self) -> Option<Rc<dyn Protocol>> {
        self.protocol()
    }

    /// asyncio's `set_protocol`: see [`Transport::set_protocol`]. A pipe
    /// has no [`BufferedProtocol`](crate::BufferedProtocol) read path.
    fn set_protocol(&self, protocol: Rc<dyn Protocol>) -> Result<()> {
        self.base.set_protocol(protocol);
        Ok(())
    }
}

impl fmt::Debug for WritePipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritePipeTransport")
            .field("fd", &self.base.fd)
            .field("open", &self.fd().is_some())
            .field("closing", &self.base.closing.get())
            .field("write_buffer", &self.buffer.borrow().len())
            .finish()
    }
}

// ===== the loop's entry points =====

impl EventLoop {
    /// asyncio's `loop.connect_read_pipe(protocol_factory, pipe)`: makes
    /// the protocol, wraps `pipe` (any owned fd: `std::io::PipeReader`,
    /// `ChildStdout`, a FIFO opened as a `File`, a socket) in a
    /// [`ReadPipeTransport`], and returns both once `connection_made` ran.
    ///
    /// A regular file is refused with [`Error::InvalidArgument`] (asyncio's
    /// `ValueError`); the fd is made non-blocking. See the
    /// [module docs](crate::pipes) for an example.
    pub async fn connect_read_pipe<P, F>(
        &self,
        protocol_factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> Result<(Rc<ReadPipeTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let protocol = protocol_factory();
        let waiter: Future<()> = self.create_future();
        let t = ReadPipeTransport::new(self, pipe, protocol.clone(), Some(waiter.clone()))?;
        let mut guard = CloseUnlessConnected(Some(t.clone()));
        waiter.await?;
        guard.0 = None;
        Ok((t, protocol))
    }

    /// asyncio's `loop.connect_write_pipe(protocol_factory, pipe)`: makes
    /// the protocol, wraps `pipe` (any owned fd: `std::io::PipeWriter`,
    /// `ChildStdin`, a FIFO opened as a `File`, a socket, a terminal) in a
    /// [`WritePipeTransport`], and returns both once `connection_made` ran.
    ///
    /// A regular file is refused with [`Error::InvalidArgument`] (asyncio's
    /// `ValueError`); the fd is made non-blocking.
    ///
    /// ```
    /// use std::io::Read;
    /// use std::rc::Rc;
    /// use tulip::transports::prelude::*;
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {}
    ///
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let (mut r, w) = std::io::pipe()?;
    ///     let (t, _) = lp.connect_write_pipe(|| Rc::new(Quiet), w).await?;
    ///     t.write(b"to the pipe")?;
    ///     t.write_eof()?;
    ///     tulip::sleep(0.0).await?;
    ///     let mut got = String::new();
    ///     r.read_to_string(&mut got)?;
    ///     assert_eq!(got, "to the pipe");
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn connect_write_pipe<P, F>(
        &self,
        protocol_factory: F,
        pipe: impl Into<OwnedFd>,
    ) -> Result<(Rc<WritePipeTransport>, Rc<P>)>
    where
        P: Protocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let protocol = protocol_factory();
        let waiter: Future<()> = self.create_future();
        let t = WritePipeTransport::new(self, pipe, protocol.clone(), Some(waiter.clone()))?;
        let mut guard = CloseUnlessConnected(Some(t.clone()));
        waiter.await?;
        guard.0 = None;
        Ok((t, protocol))
    }
}

/// True for the errors `communicate()` ignores on stdin (asyncio:
/// `BrokenPipeError`, `ConnectionResetError`).
pub(crate) fn is_broken_pipe(e: &Error) -> bool {
    matches!(
        e.io_kind(),
        Some(io::ErrorKind::BrokenPipe) | Some(io::ErrorKind::ConnectionReset)
    )
}
