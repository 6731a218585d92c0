//! The read side of [`SocketTransport`]: `read_ready`, the shared read
//! buffer, and [`ReadTransport`]. Mirrors `_SelectorSocketTransport`'s
//! `_read_ready`, `_read_ready__data_received`,
//! `_read_ready__get_buffer`, `_read_ready__on_eof`, `pause_reading` and
//! `resume_reading` in `Lib/asyncio/selector_events.py`. The transport's
//! state and its starting and closing are in the parent module,
//! [`selector_events`](crate::selector_events).
//!
//! The transport registers `read_ready` edge-triggered, through the crate's
//! `add_io_edge` ([`EventLoop::add_reader_edge`](crate::EventLoop::add_reader_edge) without the check that
//! refuses a transport's fd; asyncio's `_add_reader`): the reactor queues
//! it once per readiness edge. `read_ready` calls `recv` into one read buffer shared by every
//! transport of the thread (no allocation per read) and hands each chunk to
//! `protocol.data_received(&buf[..n])`. It stops after a short read (the
//! socket is drained: epoll reports the next arrival as a new edge) unless
//! epoll already reported the peer's FIN ([`EventLoop::fd_read_closed`](crate::EventLoop::fd_read_closed):
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
//! # Invariants
//! - The reader is registered exactly while `is_reading()` and the read
//!   side is open. So `eof_received` comes at most once: after an EOF the
//!   protocol kept open, `pause_reading` then `resume_reading` registers
//!   nothing. (*Deviation:* asyncio's `resume_reading` re-adds the reader,
//!   whose next `recv` reads the EOF again and calls `eof_received` a
//!   second time.)
//! - One `read_ready` call reads again only after a read that filled the
//!   whole buffer (or once the peer's FIN is known), and at most
//!   `MAX_READS_PER_EDGE` times: data that arrives after a short read
//!   waits for the next poll, after the callbacks already queued (fairness).
//!   Where the edge may not be drained (the `MAX_READS_PER_EDGE`th read, or
//!   a protocol that interrupted the run), `read_ready` is scheduled again
//!   rather than left waiting for an edge that may never come. An
//!   interrupted `eof_received` is not: the EOF is delivered once, and the
//!   reader is removed.
//! - A protocol callback that panics in `data_received`, `get_buffer`,
//!   `buffer_updated` or `eof_received` is reported, and the connection is
//!   closed with `Error::Panic` (asyncio's `_fatal_error`); the loop goes
//!   on. An empty buffer from `get_buffer` is reported and closes the
//!   connection the same way, with `Error::Runtime`.
//! - The borrow `get_buffer` returns is dropped before any protocol method
//!   runs (`buffer_updated`, `eof_received`), and no read of a
//!   `BufferedProtocol`'s transport touches the shared read buffer.

use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{SocketTransport, StreamProtocol, MAX_SIZE};
use crate::error::{panic_message, Error};
use crate::event_loop::ExceptionContext;
use crate::protocols::BufferedProtocol;
use crate::reactor::Side;
use crate::selector_transport::SelectorTransport;
use crate::transports::{BaseTransport, ReadTransport};

/// How many reads one readiness edge may do before yielding to other
/// callbacks (the rest continues on the next iteration).
const MAX_READS_PER_EDGE: usize = 16;

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

impl SocketTransport {
    /// asyncio's `_read_ready__data_received` (or `_read_ready__get_buffer`
    /// for a [`BufferedProtocol`]), draining the edge.
    pub(super) fn read_ready(&self) {
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
