//! Non-blocking pipe ends for subprocesses: [`PipeReader`] and [`PipeWriter`].
//! Mirrors `_UnixReadPipeTransport`/`_UnixWritePipeTransport` in
//! `Lib/asyncio/unix_events.py`, with the `StreamReader`/`StreamWriter`
//! methods of `streams.py` that `subprocess.py` hands out.
//!
//! These are tulip's own small pipe streams, kept apart so that the general
//! streams of the network layer can replace them behind the same method
//! names (`read(-1)`, `readline`, `readexactly`, `readuntil`, `write`,
//! `drain`, `close`).
//!
//! Reading is on demand: a read first calls `read(2)`; only on `WouldBlock`
//! does it register an edge-triggered reader and await a future that the
//! reader callback resolves. So a pipe nobody reads from is not read, and
//! the child blocks on a full pipe (asyncio pauses its transport at twice
//! the limit instead; the effect is the same back-pressure).
//!
//! # Invariants
//! - A pipe fd is registered with the reactor only while an operation waits
//!   on it; an [`IoWait`] guard removes the registration when that wait ends
//!   or is dropped (cancelled), so a closed fd is never left registered.
//! - [`PipeWriter::write`] never blocks: what the kernel does not take is
//!   buffered and flushed by a writer callback; the fd is closed once the
//!   buffer is empty after `close()`, or at the first write error.
//! - After a write error (e.g. `EPIPE`), later writes are dropped silently,
//!   as asyncio drops them after `connection_lost`; `drain()` reports it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::sys;

/// asyncio's `_DEFAULT_LIMIT` for stream buffers (64 KiB).
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// Bytes asked of the kernel per `read(2)` (asyncio's `max_size`: 256 KiB).
const READ_CHUNK: usize = 256 * 1024;

/// Waits until `fd` is readable (or writable); the registration lives
/// exactly as long as the wait.
async fn wait_io(lp: &EventLoop, fd: RawFd, write: bool) -> Result<()> {
    let fut = lp.create_future::<()>();
    let setter = fut.clone();
    let cb = move || {
        if !setter.done() {
            let _ = setter.set_result(());
        }
    };
    if write {
        lp.add_writer_edge(fd, cb)?;
    } else {
        lp.add_reader_edge(fd, cb)?;
    }
    let _guard = IoWait { lp, fd, write };
    fut.await
}

/// Removes the registration of a wait when the wait ends, however it ends.
struct IoWait<'a> {
    lp: &'a EventLoop,
    fd: RawFd,
    write: bool,
}

impl Drop for IoWait<'_> {
    fn drop(&mut self) {
        let _ = if self.write {
            self.lp.remove_writer(self.fd)
        } else {
            self.lp.remove_reader(self.fd)
        };
    }
}

// ===== reading =====

/// The read end of a child's stdout or stderr: asyncio's `StreamReader`
/// over a `_UnixReadPipeTransport`.
pub struct PipeReader {
    lp: EventLoop,
    fd: OwnedFd,
    buf: RefCell<Vec<u8>>,
    eof: Cell<bool>,
    limit: usize,
}

impl PipeReader {
    /// Wraps a non-blocking read end.
    pub(crate) fn new(lp: &EventLoop, fd: OwnedFd, limit: usize) -> PipeReader {
        PipeReader {
            lp: lp.clone(),
            fd,
            buf: RefCell::new(Vec::new()),
            eof: Cell::new(false),
            limit,
        }
    }

    /// Reads once more from the pipe into the buffer; `Ok(0)` at EOF.
    async fn fill(&self) -> Result<usize> {
        if self.eof.get() {
            return Ok(0);
        }
        loop {
            let res = sys::read_append(self.fd.as_raw_fd(), &mut self.buf.borrow_mut(), READ_CHUNK);
            match res {
                Ok(0) => {
                    self.eof.set(true);
                    return Ok(0);
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_io(&self.lp, self.fd.as_raw_fd(), false).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// asyncio's `read(n)`: with `n < 0`, everything up to EOF; with
    /// `n == 0`, nothing; else at most `n` bytes, waiting only if none are
    /// buffered. Empty at EOF.
    pub async fn read(&self, n: isize) -> Result<Vec<u8>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if n < 0 {
            while self.fill().await? > 0 {}
            return Ok(std::mem::take(&mut *self.buf.borrow_mut()));
        }
        if self.buf.borrow().is_empty() {
            self.fill().await?;
        }
        let mut buf = self.buf.borrow_mut();
        let take = buf.len().min(n as usize);
        Ok(buf.drain(..take).collect())
    }

    /// asyncio's `readline()`: up to and including `\n`; at EOF, what is
    /// left (possibly empty). A line longer than the limit is an error.
    pub async fn readline(&self) -> Result<Vec<u8>> {
        match self.readuntil(b"\n").await {
            Ok(line) => Ok(line),
            Err(Error::IncompleteRead { partial, .. }) => Ok(partial.to_vec()),
            Err(e) => Err(e),
        }
    }

    /// asyncio's `readuntil(separator)`: up to and including `sep`.
    /// EOF first gives `IncompleteRead`; more than `limit` bytes without
    /// `sep` gives `LimitOverrun`, leaving the buffer intact.
    pub async fn readuntil(&self, sep: &[u8]) -> Result<Vec<u8>> {
        if sep.is_empty() {
            return Err(Error::invalid_argument("the separator must not be empty"));
        }
        let mut searched: usize = 0;
        loop {
            {
                let mut buf = self.buf.borrow_mut();
                let start = searched.saturating_sub(sep.len() - 1);
                if let Some(i) = find(&buf[start..], sep) {
                    let end = start + i + sep.len();
                    if end > self.limit {
                        return Err(Error::LimitOverrun {
                            message: "separator is found, but chunk is longer than limit".into(),
                            consumed: end,
                        });
                    }
                    return Ok(buf.drain(..end).collect());
                }
                searched = buf.len();
                if searched > self.limit {
                    return Err(Error::LimitOverrun {
                        message: "separator is not found, and chunk exceed the limit".into(),
                        consumed: searched,
                    });
                }
                if self.eof.get() {
                    let partial: Arc<[u8]> = Arc::from(std::mem::take(&mut *buf));
                    return Err(Error::IncompleteRead {
                        partial,
                        expected: None,
                    });
                }
            }
            self.fill().await?;
        }
    }

    /// asyncio's `readexactly(n)`: exactly `n` bytes, or `IncompleteRead`.
    pub async fn readexactly(&self, n: usize) -> Result<Vec<u8>> {
        while self.buf.borrow().len() < n {
            if self.fill().await? == 0 {
                let partial: Arc<[u8]> = Arc::from(std::mem::take(&mut *self.buf.borrow_mut()));
                return Err(Error::IncompleteRead {
                    partial,
                    expected: Some(n),
                });
            }
        }
        Ok(self.buf.borrow_mut().drain(..n).collect())
    }

    /// True once EOF was seen and the buffer is empty.
    pub fn at_eof(&self) -> bool {
        self.eof.get() && self.buf.borrow().is_empty()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return hay.iter().position(|&b| b == needle[0]);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

impl fmt::Debug for PipeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeReader")
            .field("fd", &self.fd.as_raw_fd())
            .field("buffered", &self.buf.try_borrow().map(|b| b.len()).ok())
            .field("eof", &self.eof.get())
            .finish()
    }
}

// ===== writing =====

struct WritePipe {
    lp: EventLoop,
    /// `None` once closed.
    fd: RefCell<Option<OwnedFd>>,
    buf: RefCell<Vec<u8>>,
    /// Bytes of `buf` already written.
    written: Cell<usize>,
    /// A writer callback is registered (the buffer is not empty).
    flushing: Cell<bool>,
    closing: Cell<bool>,
    error: RefCell<Option<Error>>,
    drain_waiters: RefCell<Vec<Future<()>>>,
}

impl WritePipe {
    fn raw_fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(|f| f.as_raw_fd())
    }

    fn pending(&self) -> usize {
        self.buf.borrow().len() - self.written.get()
    }

    /// Writes the buffer until it is empty, `WouldBlock`, or an error.
    fn flush(self: &Rc<Self>) {
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.fail(e.into());
                    return;
                }
            }
        }
        // Everything is written.
        self.buf.borrow_mut().clear();
        self.written.set(0);
        if self.flushing.replace(false) {
            let _ = self.lp.remove_writer(fd);
        }
        self.wake_drainers(Ok(()));
        if self.closing.get() {
            self.close_fd();
        }
    }

    /// asyncio's `_fatal_error`: drop the buffer, close, tell the drainers.
    fn fail(&self, err: Error) {
        self.buf.borrow_mut().clear();
        self.written.set(0);
        *self.error.borrow_mut() = Some(err.clone());
        self.close_fd();
        self.wake_drainers(Err(err));
    }

    fn close_fd(&self) {
        if let Some(fd) = self.fd.borrow_mut().take() {
            if self.flushing.replace(false) {
                let _ = self.lp.remove_writer(fd.as_raw_fd());
            }
            drop(fd);
        }
    }

    fn wake_drainers(&self, res: Result<()>) {
        let waiters = std::mem::take(&mut *self.drain_waiters.borrow_mut());
        for w in waiters {
            if w.done() {
                continue;
            }
            let _ = match &res {
                Ok(()) => w.set_result(()),
                Err(e) => w.set_exception(e.clone()),
            };
        }
    }
}

/// The write end of a child's stdin: asyncio's `StreamWriter` over a
/// `_UnixWritePipeTransport`. Dropping it closes the pipe once the buffered
/// bytes are written, so the child sees EOF.
pub struct PipeWriter {
    inner: Rc<WritePipe>,
}

impl PipeWriter {
    /// Wraps a non-blocking write end.
    pub(crate) fn new(lp: &EventLoop, fd: OwnedFd) -> PipeWriter {
        PipeWriter {
            inner: Rc::new(WritePipe {
                lp: lp.clone(),
                fd: RefCell::new(Some(fd)),
                buf: RefCell::new(Vec::new()),
                written: Cell::new(0),
                flushing: Cell::new(false),
                closing: Cell::new(false),
                error: RefCell::new(None),
                drain_waiters: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Writes `data` without blocking: what the pipe does not take now is
    /// buffered and written by the loop. Fails after `close()`. After a
    /// write error the data is dropped; `drain()` reports the error.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        let p = &self.inner;
        if p.closing.get() {
            return Err(Error::runtime("write() after close(): the pipe is closing"));
        }
        if data.is_empty() || p.error.borrow().is_some() {
            return Ok(());
        }
        let Some(fd) = p.raw_fd() else { return Ok(()) };
        let mut data = data;
        if p.pending() == 0 {
            // Try at once, as asyncio's transport does.
            match sys::write(fd, data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    p.fail(e.into());
                    return Ok(());
                }
            }
            if data.is_empty() {
                return Ok(());
            }
        }
        p.buf.borrow_mut().extend_from_slice(data);
        if !p.flushing.get() {
            let me = p.clone();
            p.lp.add_writer_edge(fd, move || me.flush())?;
            p.flushing.set(true);
        }
        Ok(())
    }

    /// asyncio's `drain()`: waits until the buffer is written. Reports a
    /// write error (`BrokenPipe` when the child closed its stdin).
    pub async fn drain(&self) -> Result<()> {
        let p = &self.inner;
        if let Some(e) = p.error.borrow().clone() {
            return Err(e);
        }
        if p.pending() == 0 {
            return Ok(());
        }
        let waiter = p.lp.create_future::<()>();
        p.drain_waiters.borrow_mut().push(waiter.clone());
        waiter.await
    }

    /// Closes the pipe once the buffered bytes are written (asyncio's
    /// `close()`; for a pipe it is also `write_eof()`). Closing twice is a no-op.
    pub fn close(&self) {
        let p = &self.inner;
        p.closing.set(true);
        if p.pending() == 0 {
            p.close_fd();
        }
    }

    /// Same as [`close`](PipeWriter::close): a pipe's EOF is its close.
    pub fn write_eof(&self) {
        self.close()
    }

    /// True once `close()` was called or the pipe failed.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get() || self.inner.fd.borrow().is_none()
    }

    /// Bytes waiting in the buffer (asyncio's `get_write_buffer_size`).
    pub fn buffer_size(&self) -> usize {
        self.inner.pending()
    }

    /// Closes the pipe, and waits until it is closed (asyncio's `wait_closed`).
    pub async fn wait_closed(&self) -> Result<()> {
        self.close();
        match self.drain().await {
            Err(e) if is_broken_pipe(&e) => Ok(()),
            other => other,
        }
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for PipeWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeWriter")
            .field("fd", &self.inner.raw_fd())
            .field("buffered", &self.inner.pending())
            .field("closing", &self.inner.closing.get())
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
