//! The write side of [`SocketTransport`]: `write`, the write buffer, flow
//! control, and [`WriteTransport`]. Mirrors `_SelectorSocketTransport`'s
//! `write`, `writelines`, `_write_ready`, `write_eof` and
//! `_FlowControlMixin`'s `_maybe_pause_protocol`/`_maybe_resume_protocol`
//! in `Lib/asyncio/selector_events.py` and `transports.py`. The
//! transport's state and its starting and closing are in the parent
//! module, [`selector_events`](crate::selector_events).
//!
//! `write` first tries `send` directly when nothing is buffered (most
//! writes end there: no copy, no writer registration). The rest is appended
//! to the write buffer and an edge-triggered writer is registered;
//! `write_ready` sends until the buffer is empty or `WouldBlock`, then
//! removes itself. Crossing the high-water mark calls the protocol's
//! `pause_writing`, draining to the low-water mark `resume_writing` (N3).
//!
//! # Invariants
//! - The writer is registered exactly while the write buffer is non-empty.
//! - A panicking `pause_writing`/`resume_writing` is reported and the
//!   connection goes on (asyncio's `_maybe_pause_protocol`): it never
//!   unwinds through `write` or the writer callback.
//! - While a native `sendfile` uses the socket (see
//!   [`sendfile`](crate::sendfile)), `write` refuses.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{SocketTransport, StreamProtocol};
use crate::error::{panic_message, Error, Result};
use crate::event_loop::ExceptionContext;
use crate::reactor::Side;
use crate::selector_transport::SelectorTransport;
use crate::transports::WriteTransport;

/// `writelines` joins its buffers into one `send` up to this many bytes.
const WRITELINES_JOIN_MAX: usize = 64 * 1024;

/// asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

impl SocketTransport {
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
