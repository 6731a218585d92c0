//! Pipe transports for subprocesses. Mirrors `_UnixReadPipeTransport` and
//! `_UnixWritePipeTransport` in `Lib/asyncio/unix_events.py`, and the part
//! of `SubprocessStreamProtocol` (`subprocess.py`) that connects them to
//! streams.
//!
//! - [`ReadPipe`] reads a child's stdout or stderr and feeds a
//!   [`StreamReader`] (asyncio: `pipe_data_received` → `feed_data`; EOF →
//!   `feed_eof`; an error → `set_exception`). The reader pauses and resumes
//!   it around its limit, through [`ReadTransport`].
//! - [`WritePipe`] is the [`WriteTransport`] under the child's stdin
//!   [`StreamWriter`]: writes never block, the rest is buffered and flushed
//!   by a writer callback, and the [`FlowControl`] of the writer is told to
//!   pause above the high-water mark and to resume at the low one.
//!
//! # Invariants
//! - Both fds are non-blocking and registered edge-triggered; each callback
//!   reads (writes) until `WouldBlock`, EOF, or an error.
//! - A read pipe is registered exactly while it is reading (not paused, not
//!   closed); a write pipe exactly while its buffer is not empty.
//! - A pipe's fd is deregistered before it is closed, and closed exactly once.
//! - The read pipe and its reader hold each other (asyncio's transport and
//!   protocol do too); the cycle is broken when the pipe closes: at EOF, at
//!   a read error, by `close()`, or when the loop closes (a close hook
//!   closes every read pipe still open, and their readers fail with
//!   `Error::Closed`). Until then a reader that stopped reading and was
//!   dropped with its `Process` keeps its pipe (asyncio leaves that case to
//!   the garbage collector).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopRef};
use crate::streams::{FlowControl, StreamReader, StreamWriter};
use crate::sys;
use crate::transports::{BaseTransport, ExtraInfo, ReadTransport, WriteLimits, WriteTransport};

/// Bytes read per `read(2)`: a Linux pipe holds 64 KiB by default.
const READ_CHUNK: usize = 64 * 1024;

// ===== reading =====

/// asyncio's `_UnixReadPipeTransport`, feeding a [`StreamReader`].
pub(crate) struct ReadPipe {
    lp: LoopRef,
    /// `None` once closed.
    fd: RefCell<Option<OwnedFd>>,
    reader: RefCell<Option<StreamReader>>,
    /// Registered with the reactor (reading and not paused).
    reading: Cell<bool>,
    paused: Cell<bool>,
    /// This pipe, for re-registering from `resume_reading(&self)`.
    me: std::rc::Weak<ReadPipe>,
    /// Key in the loop's table of open read pipes.
    key: Cell<Option<usize>>,
    /// Scratch space for `read(2)`, reused across callbacks.
    chunk: RefCell<Vec<u8>>,
}

/// The loop's open read pipes (a loop extension), closed by `close()`.
struct OpenPipes {
    pipes: RefCell<slab::Slab<std::rc::Weak<ReadPipe>>>,
}

impl OpenPipes {
    fn of(lp: &EventLoop) -> Rc<OpenPipes> {
        lp.extension(|| {
            let weak = lp.downgrade();
            lp.add_close_hook(move || {
                let Some(inner) = weak.upgrade() else { return };
                let lp = EventLoop { inner };
                let open: Vec<_> = OpenPipes::of(&lp)
                    .pipes
                    .borrow()
                    .iter()
                    .filter_map(|(_, w)| w.upgrade())
                    .collect();
                for p in open {
                    p.close_with(Some(Error::Closed));
                }
            });
            OpenPipes {
                pipes: RefCell::new(slab::Slab::new()),
            }
        })
    }
}

impl ReadPipe {
    /// Connects `fd` to a new reader with `limit`; returns the reader.
    pub(crate) fn open(lp: &EventLoop, fd: OwnedFd, limit: usize) -> Result<StreamReader> {
        let reader = StreamReader::with_loop(lp, limit);
        let pipe = Rc::new_cyclic(|me| ReadPipe {
            lp: LoopRef::new(lp.clone()),
            fd: RefCell::new(Some(fd)),
            reader: RefCell::new(Some(reader.clone())),
            reading: Cell::new(false),
            paused: Cell::new(false),
            me: me.clone(),
            key: Cell::new(None),
            chunk: RefCell::new(Vec::new()),
        });
        pipe.register()?;
        let key = OpenPipes::of(lp)
            .pipes
            .borrow_mut()
            .insert(Rc::downgrade(&pipe));
        pipe.key.set(Some(key));
        reader.set_transport(pipe);
        Ok(reader)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(|f| f.as_raw_fd())
    }

    fn register(self: &Rc<Self>) -> Result<()> {
        let Some(fd) = self.raw_fd() else {
            return Ok(());
        };
        let me = self.clone();
        self.lp.add_reader_edge(fd, move || me.read_ready())?;
        self.reading.set(true);
        Ok(())
    }

    fn unregister(&self) {
        if self.reading.replace(false) {
            if let Some(fd) = self.raw_fd() {
                let _ = self.lp.remove_reader(fd);
            }
        }
    }

    /// asyncio's `_read_ready`: read until `WouldBlock`, EOF, or a pause.
    fn read_ready(&self) {
        // Take the scratch buffer out, so no borrow is held across feed_data.
        let mut chunk = std::mem::take(&mut *self.chunk.borrow_mut());
        self.read_into(&mut chunk);
        chunk.clear();
        *self.chunk.borrow_mut() = chunk;
    }

    fn read_into(&self, chunk: &mut Vec<u8>) {
        while self.reading.get() {
            let Some(fd) = self.raw_fd() else { return };
            chunk.clear();
            match sys::read_append(fd, chunk, READ_CHUNK) {
                Ok(0) => {
                    // asyncio: eof → _loop.remove_reader; protocol.eof_received;
                    // connection_lost(None) → reader.feed_eof().
                    self.close_with(None);
                    return;
                }
                Ok(_) => {
                    let reader = self.reader.borrow().clone();
                    if let Some(r) = reader {
                        r.feed_data(chunk); // may pause us
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.close_with(Some(e.into()));
                    return;
                }
            }
        }
    }

    /// Closes the fd and tells the reader (EOF, or the error).
    fn close_with(&self, exc: Option<Error>) {
        self.unregister();
        drop(self.fd.borrow_mut().take());
        if let Some(key) = self.key.take() {
            OpenPipes::of(&self.lp).pipes.borrow_mut().try_remove(key);
        }
        let reader = self.reader.borrow_mut().take();
        if let Some(r) = reader {
            match exc {
                None => r.feed_eof(),
                Some(e) => r.set_exception(e),
            }
        }
    }
}

impl BaseTransport for ReadPipe {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "pipe" => self.raw_fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.fd.borrow().is_none()
    }

    fn close(&self) {
        if !self.is_closing() {
            self.close_with(None);
        }
    }
}

impl ReadTransport for ReadPipe {
    fn is_reading(&self) -> bool {
        !self.paused.get() && !self.is_closing()
    }

    fn pause_reading(&self) {
        if self.is_closing() || self.paused.replace(true) {
            return;
        }
        self.unregister();
    }

    fn resume_reading(&self) {
        if self.is_closing() || !self.paused.replace(false) {
            return;
        }
        // Re-register: EPOLL_CTL_ADD reports the fd at once if data waits.
        // The reader holds this pipe while it is paused, so `me` upgrades.
        if let Some(me) = self.me.upgrade() {
            if let Err(e) = me.register() {
                self.close_with(Some(e));
            }
        }
    }
}

impl fmt::Debug for ReadPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPipe")
            .field("fd", &self.raw_fd())
            .field("reading", &self.reading.get())
            .field("paused", &self.paused.get())
            .finish()
    }
}

// ===== writing =====

/// asyncio's `_UnixWritePipeTransport`, under a [`StreamWriter`].
pub(crate) struct WritePipe {
    lp: LoopRef,
    /// `None` once closed.
    fd: RefCell<Option<OwnedFd>>,
    buf: RefCell<Vec<u8>>,
    /// Bytes at the front of `buf` already written.
    written: Cell<usize>,
    /// A writer callback is registered (the buffer is not empty).
    flushing: Cell<bool>,
    /// `close()`/`write_eof()` was called: close once the buffer is empty.
    closing: Cell<bool>,
    /// `connection_lost` was delivered.
    lost: Cell<bool>,
    limits: Cell<WriteLimits>,
    flow: FlowControl,
    me: std::rc::Weak<WritePipe>,
}

impl WritePipe {
    /// Connects `fd` to a new [`StreamWriter`].
    pub(crate) fn open(lp: &EventLoop, fd: OwnedFd) -> StreamWriter {
        let flow = FlowControl::new(lp);
        let pipe = Rc::new_cyclic(|me| WritePipe {
            lp: LoopRef::new(lp.clone()),
            fd: RefCell::new(Some(fd)),
            buf: RefCell::new(Vec::new()),
            written: Cell::new(0),
            flushing: Cell::new(false),
            closing: Cell::new(false),
            lost: Cell::new(false),
            limits: Cell::new(WriteLimits::default()),
            flow: flow.clone(),
            me: me.clone(),
        });
        StreamWriter::new(pipe, flow, None)
    }

    fn raw_fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(|f| f.as_raw_fd())
    }

    fn pending(&self) -> usize {
        self.buf.borrow().len() - self.written.get()
    }

    fn maybe_pause(&self) {
        let mut l = self.limits.get();
        if l.maybe_pause(self.pending()) {
            self.limits.set(l);
            self.flow.pause_writing();
        }
    }

    fn maybe_resume(&self) {
        let mut l = self.limits.get();
        if l.maybe_resume(self.pending()) {
            self.limits.set(l);
            self.flow.resume_writing();
        }
    }

    /// asyncio's `_write_ready`: write the buffer until it is empty or
    /// `WouldBlock`; then resume the protocol, and close if asked to.
    fn write_ready(&self) {
        let Some(fd) = self.raw_fd() else { return };
        loop {
            let res = {
                let buf = self.buf.borrow();
                let off = self.written.get();
                if off == buf.len() {
                    break;
                }
                sys::write(fd, &buf[off..])
            };
            match res {
                Ok(n) => self.written.set(self.written.get() + n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_resume();
                    return;
                }
                Err(e) => {
                    self.fatal(e.into());
                    return;
                }
            }
        }
        self.buf.borrow_mut().clear();
        self.written.set(0);
        if self.flushing.replace(false) {
            let _ = self.lp.remove_writer(fd);
        }
        self.maybe_resume();
        if self.closing.get() {
            self.connection_lost(None);
        }
    }

    /// asyncio's `_fatal_error` + `_close(exc)`: drop the buffer, close.
    fn fatal(&self, exc: Error) {
        self.buf.borrow_mut().clear();
        self.written.set(0);
        self.closing.set(true);
        self.connection_lost(Some(exc));
    }

    /// asyncio's `_call_connection_lost`: deregister, close the fd, tell
    /// the flow control (which wakes `drain()` and `wait_closed()`).
    fn connection_lost(&self, exc: Option<Error>) {
        if self.lost.replace(true) {
            return;
        }
        if let Some(fd) = self.fd.borrow_mut().take() {
            if self.flushing.replace(false) {
                let _ = self.lp.remove_writer(fd.as_raw_fd());
            }
            drop(fd);
        }
        self.flow.connection_lost(exc);
    }
}

impl BaseTransport for WritePipe {
    fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "pipe" => self.raw_fd().map(ExtraInfo::Fd),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// asyncio: `close()` is `write_eof()` for a write pipe.
    fn close(&self) {
        let _ = self.write_eof();
    }
}

impl WriteTransport for WritePipe {
    fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let mut l = self.limits.get();
        l.set(high, low)?;
        self.limits.set(l);
        self.maybe_pause();
        Ok(())
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        let l = self.limits.get();
        (l.low, l.high)
    }

    fn get_write_buffer_size(&self) -> usize {
        self.pending()
    }

    fn write(&self, data: &[u8]) -> Result<()> {
        if self.closing.get() && !self.lost.get() {
            return Err(Error::runtime(
                "cannot write() after write_eof() or close()",
            ));
        }
        if data.is_empty() || self.lost.get() {
            return Ok(()); // asyncio drops writes once the pipe is lost
        }
        let Some(fd) = self.raw_fd() else {
            return Ok(());
        };
        let mut data = data;
        if self.pending() == 0 {
            // Try at once, as asyncio's transport does.
            match sys::write(fd, data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    self.fatal(e.into());
                    return Ok(());
                }
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        self.buf.borrow_mut().extend_from_slice(data);
        if !self.flushing.get() {
            if let Some(me) = self.me.upgrade() {
                self.lp.add_writer_edge(fd, move || me.write_ready())?;
                self.flushing.set(true);
            }
        }
        self.maybe_pause();
        Ok(())
    }

    fn write_eof(&self) -> Result<()> {
        if self.closing.replace(true) {
            return Ok(());
        }
        if self.pending() == 0 {
            // asyncio: call_soon(_call_connection_lost, None).
            let me = self.me.upgrade();
            let scheduled = self.lp.call_soon(move || {
                if let Some(me) = me {
                    me.connection_lost(None);
                }
            });
            if scheduled.is_err() {
                self.connection_lost(None); // the loop is closed: close now
            }
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn abort(&self) {
        self.buf.borrow_mut().clear();
        self.written.set(0);
        self.closing.set(true);
        self.connection_lost(None);
    }
}

impl Drop for WritePipe {
    fn drop(&mut self) {
        // The fd closes with the OwnedFd; make sure the reactor forgot it.
        if self.flushing.get() {
            if let Some(fd) = self.raw_fd() {
                if !self.lp.is_closed() {
                    let _ = self.lp.remove_writer(fd);
                }
            }
        }
    }
}

impl fmt::Debug for WritePipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritePipe")
            .field("fd", &self.raw_fd())
            .field("buffered", &self.pending())
            .field("closing", &self.closing.get())
            .finish()
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
