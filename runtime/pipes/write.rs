//! The write pipe transport: [`WritePipeTransport`]. Mirrors
//! `_UnixWritePipeTransport` in `Lib/asyncio/unix_events.py`; the shared
//! checks and `connect_write_pipe` are in the parent module,
//! [`pipes`](crate::pipes).
//!
//! `write` never blocks: the rest is buffered and flushed by a writer
//! callback; above the high-water mark the protocol's `pause_writing` is
//! called, at the low one `resume_writing`. For a FIFO or a socket it also
//! watches the fd for readability, which on a write end means the read end
//! was closed (asyncio's trick): the transport then closes, with
//! `connection_lost(Some(BrokenPipe))` if data was still buffered, and
//! `connection_lost(None)` otherwise, as asyncio does. A `write(2)` that
//! fails with `EPIPE` ends it with `BrokenPipe` too. It never reads
//! (`is_reading()` is false, `pause_reading`/`resume_reading` do nothing).
//!
//! # Invariants
//! - The writer is registered edge-triggered, exactly while the buffer is
//!   not empty.
//! - A write pipe drops the writes it gets once it is closing or lost, as
//!   asyncio's does; a close waits for the buffer it had to be flushed.
//! - A panicking `pause_writing`/`resume_writing` is reported and the pipe
//!   goes on (asyncio's `_maybe_pause_protocol`); a `connection_lost` after
//!   the last flush runs in the writer's handle, so the loop reports its
//!   panic (L6).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use super::{panic_error, prepare, PipeKind};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext};
use crate::futures::Future;
use crate::protocols::Protocol;
use crate::reactor::Side;
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::streams::Buffer;
use crate::sys;
use crate::transports::{
    BaseTransport, ExtraInfo, ReadTransport, Transport, WriteLimits, WriteTransport,
};

/// asyncio's `_UnixWritePipeTransport`: the write end of a pipe, driven by
/// the loop, talking to a [`Protocol`] (which hears `pause_writing`,
/// `resume_writing` and `connection_lost`).
///
/// Made by [`EventLoop::connect_write_pipe`] or [`WritePipeTransport::new`].
/// Protocols see it as `Rc<dyn Transport>`; it never reads (see the
/// [module docs](crate::pipes)).
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
