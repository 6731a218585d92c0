//! The read pipe transport: [`ReadPipeTransport`]. Mirrors
//! `_UnixReadPipeTransport` in `Lib/asyncio/unix_events.py`; the shared
//! checks and `connect_read_pipe` are in the parent module,
//! [`pipes`](crate::pipes).
//!
//! It reads the read end of a pipe (or a FIFO, a socket, a character
//! device) and calls its [`Protocol`]: `data_received` for each chunk; at
//! EOF `eof_received`, then `connection_lost(None)`; after a read error
//! `connection_lost(Some(e))`. It can be paused and resumed
//! ([`ReadTransport`]); its write methods fail with [`Error::Runtime`].
//!
//! # Invariants
//! - The fd is registered edge-triggered; the read pipe reads until
//!   `WouldBlock`, EOF, an error, a pause, or `MAX_READS_PER_EDGE` reads
//!   (then it continues on the next iteration, as it does in the next run
//!   after a `data_received` that interrupted the run).
//! - The reader is registered exactly while it is reading (after
//!   `connection_made`, not paused, not closing).
//! - A panicking `data_received` is reported to the loop's exception
//!   handler and closes the pipe with [`Error::Panic`].

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use super::{panic_error, prepare};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt};
use crate::futures::Future;
use crate::protocols::Protocol;
use crate::reactor::Side;
use crate::selector_events::{put_read_buf, take_read_buf};
use crate::selector_transport::{SelectorTransport, TransportBase};
use crate::sys;
use crate::transports::{BaseTransport, ExtraInfo, ReadTransport, Transport, WriteTransport};

/// How many reads one readiness edge may do before yielding to other
/// callbacks (the rest continues on the next iteration).
const MAX_READS_PER_EDGE: usize = 16;

/// The error of a write method called on a read pipe.
fn not_writable() -> Error {
    Error::runtime(
        "a read pipe transport cannot write: use connect_write_pipe for the pipe's write end",
    )
}

/// asyncio's `_UnixReadPipeTransport`: the read end of a pipe, driven by
/// the loop, talking to a [`Protocol`].
///
/// Made by [`EventLoop::connect_read_pipe`] or [`ReadPipeTransport::new`].
/// Protocols see it as `Rc<dyn Transport>`: its write methods fail (see
/// the [module docs](crate::pipes)).
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
