//! Streams: `async` reads and writes over a transport. Mirrors
//! `Lib/asyncio/streams.py` (`StreamReader`, `StreamWriter`,
//! `FlowControlMixin`, `StreamReaderProtocol`).
//!
//! The pieces, bottom up:
//! - [`StreamReader`] is a byte buffer with waiters. Whoever receives bytes
//!   calls [`feed_data`](StreamReader::feed_data) and
//!   [`feed_eof`](StreamReader::feed_eof); tasks await `read`, `readline`,
//!   `readexactly`, `readuntil`. It knows nothing of sockets: a pipe
//!   transport (subprocesses) feeds it the same way.
//! - [`FlowControl`] is the protocol half of flow control (asyncio's
//!   `FlowControlMixin`): `pause_writing`/`resume_writing` from the
//!   transport open and shut the gate that [`StreamWriter::drain`] waits on.
//! - [`StreamWriter`] wraps a [`WriteTransport`] and a `FlowControl`.
//! - [`StreamReaderProtocol`] is the [`Protocol`] that connects a socket
//!   transport to a reader and a writer (see [`open_connection`](crate::open_connection)).
//!
//! # Invariants
//! - At most one task waits for data on a reader at a time (asyncio's
//!   `_waiter`); a second one gets a runtime error.
//! - The reader pauses its transport when its buffer holds more than
//!   2 × `limit` bytes and resumes it when a read brings it to `limit` or
//!   less, or when a reader must wait for data (N2).
//! - `LimitOverrun` from `readuntil` leaves the buffer untouched (N1);
//!   `IncompleteRead` hands over (and removes) what was buffered.
//! - `feed_data` after `feed_eof` is ignored.
//! - Every drain waiter is woken by `resume_writing` or `connection_lost`,
//!   so any number of concurrent `drain()` calls complete (N2).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::{get_event_loop, EventLoop};
use crate::futures::Future;
use crate::protocols::Protocol;
use crate::transports::{ExtraInfo, ReadTransport, Transport, WriteTransport};

/// asyncio's `_DEFAULT_LIMIT`: 64 KiB.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

// ===== the byte buffer =====

/// A byte queue that consumes from the front without moving bytes: `start`
/// advances, and the bytes are moved down only when the dead front is at
/// least half of the vector (amortised O(1) per byte).
#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    fn len(&self) -> usize {
        self.data.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    fn extend(&mut self, more: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.data.len() {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(more);
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.data.len());
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Removes and returns the first `n` bytes (`n <= len`).
    fn take(&mut self, n: usize) -> Vec<u8> {
        if self.start == 0 && n == self.data.len() {
            // The whole buffer: hand the vector over without copying.
            return std::mem::take(&mut self.data);
        }
        let out = self.data[self.start..self.start + n].to_vec();
        self.consume(n);
        out
    }

    fn take_all(&mut self) -> Vec<u8> {
        let n = self.len();
        self.take(n)
    }

    /// Position of `sep` in the buffer, searching from `offset`.
    fn find(&self, sep: &[u8], offset: usize) -> Option<usize> {
        let hay = &self.bytes()[offset..];
        let pos = if sep.len() == 1 {
            hay.iter().position(|&b| b == sep[0])
        } else {
            hay.windows(sep.len()).position(|w| w == sep)
        };
        pos.map(|p| p + offset)
    }
}

// ===== FlowControl =====

/// The protocol half of write flow control: asyncio's `FlowControlMixin`.
///
/// A protocol forwards its transport's `pause_writing`, `resume_writing` and
/// `connection_lost` here; [`drain_helper`](FlowControl::drain_helper)
/// (what [`StreamWriter::drain`] awaits) returns at once while writing is
/// not paused, and otherwise waits for `resume_writing`. It also carries the
/// close waiter that [`StreamWriter::wait_closed`] awaits (asyncio keeps it
/// on `StreamReaderProtocol` as `_closed`).
///
/// Cloning gives another handle to the same state.
#[derive(Clone)]
pub struct FlowControl {
    inner: Rc<FlowInner>,
}

struct FlowInner {
    lp: EventLoop,
    /// `pause_writing` was called and `resume_writing` not yet.
    paused: Cell<bool>,
    /// `connection_lost` was called; never goes back to false.
    connection_lost: Cell<bool>,
    /// One future per `drain_helper` call waiting for `resume_writing`.
    drain_waiters: RefCell<Vec<Future<()>>>,
    /// Done once `connection_lost` was called (with its error, if any).
    closed: Future<()>,
}

impl FlowControl {
    /// A new, unpaused flow control on `lp`.
    pub fn new(lp: &EventLoop) -> FlowControl {
        FlowControl {
            inner: Rc::new(FlowInner {
                lp: lp.clone(),
                paused: Cell::new(false),
                connection_lost: Cell::new(false),
                drain_waiters: RefCell::new(Vec::new()),
                closed: lp.create_future(),
            }),
        }
    }

    /// The transport's buffer is over its high-water mark.
    pub fn pause_writing(&self) {
        debug_assert!(!self.inner.paused.get(), "pause_writing twice");
        self.inner.paused.set(true);
    }

    /// The transport's buffer drained: wakes every drain waiter.
    pub fn resume_writing(&self) {
        debug_assert!(self.inner.paused.get(), "resume_writing while not paused");
        self.inner.paused.set(false);
        let waiters = self.inner.drain_waiters.borrow().clone();
        for w in waiters {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }

    /// The connection is gone: wakes every drain waiter (with `exc` if
    /// given) and completes the close waiter. Later drains fail.
    pub fn connection_lost(&self, exc: Option<Error>) {
        self.inner.connection_lost.set(true);
        let closed = &self.inner.closed;
        if !closed.done() {
            match &exc {
                None => {
                    let _ = closed.set_result(());
                }
                Some(e) => {
                    let _ = closed.set_exception(e.clone());
                    // Nobody may ever await it: do not report it as lost.
                    let _ = closed.exception();
                }
            }
        }
        if !self.inner.paused.get() {
            return;
        }
        let waiters = self.inner.drain_waiters.borrow().clone();
        for w in waiters {
            if !w.done() {
                let _ = match &exc {
                    None => w.set_result(()),
                    Some(e) => w.set_exception(e.clone()),
                };
            }
        }
    }

    /// asyncio's `_drain_helper`: fails if the connection is lost, returns
    /// at once if writing is not paused, else waits for `resume_writing`.
    pub async fn drain_helper(&self) -> Result<()> {
        if self.inner.connection_lost.get() {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection lost").into());
        }
        if !self.inner.paused.get() {
            return Ok(());
        }
        let waiter: Future<()> = self.inner.lp.create_future();
        self.inner.drain_waiters.borrow_mut().push(waiter.clone());
        let _guard = RemoveWaiter {
            list: &self.inner.drain_waiters,
            waiter: &waiter,
        };
        waiter.clone().await
    }

    /// True while writing is paused.
    pub fn is_paused(&self) -> bool {
        self.inner.paused.get()
    }

    /// True once `connection_lost` was called.
    pub fn is_connection_lost(&self) -> bool {
        self.inner.connection_lost.get()
    }

    /// The future that completes at `connection_lost` (asyncio's
    /// `_get_close_waiter`).
    pub fn close_waiter(&self) -> Future<()> {
        self.inner.closed.clone()
    }
}

/// Takes a drain waiter out of the list however the wait ends (asyncio's
/// `finally: self._drain_waiters.remove(waiter)`).
struct RemoveWaiter<'a> {
    list: &'a RefCell<Vec<Future<()>>>,
    waiter: &'a Future<()>,
}

impl Drop for RemoveWaiter<'_> {
    fn drop(&mut self) {
        self.list.borrow_mut().retain(|w| !w.ptr_eq(self.waiter));
    }
}

impl fmt::Debug for FlowControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowControl")
            .field("paused", &self.inner.paused.get())
            .field("connection_lost", &self.inner.connection_lost.get())
            .field("drain_waiters", &self.inner.drain_waiters.borrow().len())
            .finish()
    }
}

// ===== StreamReader =====

/// asyncio's `StreamReader`: a buffer of received bytes and the `async`
/// ways to read it.
///
/// Cloning gives another handle to the same reader (the protocol feeds one
/// handle, a task reads through another).
///
/// ```
/// tulip::run(async {
///     let reader = tulip::StreamReader::new();
///     reader.feed_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody");
///     reader.feed_eof();
///     assert_eq!(reader.readline().await?, b"GET / HTTP/1.1\r\n");
///     assert_eq!(reader.readuntil(b"\r\n\r\n").await?, b"Host: x\r\n\r\n");
///     assert_eq!(reader.read_to_eof().await?, b"body");
///     assert!(reader.at_eof());
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct StreamReader {
    inner: Rc<ReaderInner>,
}

struct ReaderInner {
    lp: EventLoop,
    limit: usize,
    buffer: RefCell<Buffer>,
    /// `feed_eof` was called; no more data will come.
    eof: Cell<bool>,
    /// The one task waiting for data, if any.
    waiter: RefCell<Option<Future<()>>>,
    exception: RefCell<Option<Error>>,
    transport: RefCell<Option<Rc<dyn ReadTransport>>>,
    /// We paused the transport (the buffer went over 2 × limit).
    paused: Cell<bool>,
}

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader::new()
    }
}

impl StreamReader {
    /// A reader with the default 64 KiB limit, on the current loop.
    ///
    /// # Panics
    /// If there is no loop and none can be created.
    pub fn new() -> StreamReader {
        StreamReader::with_limit(DEFAULT_LIMIT)
    }

    /// A reader with a buffer `limit` (asyncio's `StreamReader(limit=...)`).
    ///
    /// # Panics
    /// If `limit` is 0, or there is no loop and none can be created.
    pub fn with_limit(limit: usize) -> StreamReader {
        let lp = get_event_loop().expect("cannot create an event loop for the stream reader");
        StreamReader::with_loop(&lp, limit)
    }

    /// A reader on `lp` with a buffer `limit`.
    ///
    /// # Panics
    /// If `limit` is 0.
    pub fn with_loop(lp: &EventLoop, limit: usize) -> StreamReader {
        assert!(limit > 0, "limit cannot be 0");
        StreamReader {
            inner: Rc::new(ReaderInner {
                lp: lp.clone(),
                limit,
                buffer: RefCell::new(Buffer::default()),
                eof: Cell::new(false),
                waiter: RefCell::new(None),
                exception: RefCell::new(None),
                transport: RefCell::new(None),
                paused: Cell::new(false),
            }),
        }
    }

    /// The buffer limit.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// How many bytes are buffered now.
    pub fn buffered(&self) -> usize {
        self.inner.buffer.borrow().len()
    }

    /// The error set with [`set_exception`](StreamReader::set_exception).
    pub fn exception(&self) -> Option<Error> {
        self.inner.exception.borrow().clone()
    }

    /// Makes every read fail with `exc`, and wakes the waiting reader with it.
    pub fn set_exception(&self, exc: Error) {
        *self.inner.exception.borrow_mut() = Some(exc.clone());
        let waiter = self.inner.waiter.borrow_mut().take();
        if let Some(w) = waiter {
            if !w.cancelled() {
                let _ = w.set_exception(exc);
            }
        }
    }

    /// Gives the reader the transport to pause and resume around the limit.
    ///
    /// # Panics
    /// If a transport is already set (as asyncio asserts).
    pub fn set_transport(&self, transport: Rc<dyn ReadTransport>) {
        let mut t = self.inner.transport.borrow_mut();
        assert!(t.is_none(), "transport already set");
        *t = Some(transport);
    }

    /// The transport, if one was set.
    pub fn transport(&self) -> Option<Rc<dyn ReadTransport>> {
        self.inner.transport.borrow().clone()
    }

    /// True while this reader holds its transport paused.
    pub fn is_paused(&self) -> bool {
        self.inner.paused.get()
    }

    fn wakeup_waiter(&self) {
        let waiter = self.inner.waiter.borrow_mut().take();
        if let Some(w) = waiter {
            if !w.cancelled() {
                let _ = w.set_result(());
            }
        }
    }

    fn maybe_resume_transport(&self) {
        let inner = &*self.inner;
        if inner.paused.get() && inner.buffer.borrow().len() <= inner.limit {
            inner.paused.set(false);
            let t = inner.transport.borrow().clone();
            if let Some(t) = t {
                t.resume_reading();
            }
        }
    }

    /// No more data will come. Wakes the waiting reader.
    pub fn feed_eof(&self) {
        self.inner.eof.set(true);
        self.wakeup_waiter();
    }

    /// True if `feed_eof` was called and the buffer is empty.
    pub fn at_eof(&self) -> bool {
        self.inner.eof.get() && self.inner.buffer.borrow().is_empty()
    }

    /// Appends received bytes and wakes the waiting reader. Pauses the
    /// transport when more than 2 × limit bytes are buffered (N2).
    /// Ignored after `feed_eof`.
    pub fn feed_data(&self, data: &[u8]) {
        let inner = &*self.inner;
        if data.is_empty() || inner.eof.get() {
            return;
        }
        let len = {
            let mut buf = inner.buffer.borrow_mut();
            buf.extend(data);
            buf.len()
        };
        self.wakeup_waiter();
        if !inner.paused.get() && len > 2 * inner.limit {
            let t = inner.transport.borrow().clone();
            if let Some(t) = t {
                inner.paused.set(true);
                t.pause_reading();
            }
        }
    }

    /// asyncio's `_wait_for_data`: waits until `feed_data` or `feed_eof`.
    async fn wait_for_data(&self, func_name: &str) -> Result<()> {
        let inner = &*self.inner;
        if inner.waiter.borrow().is_some() {
            return Err(Error::Runtime(
                format!(
                    "{func_name}() called while another task is already waiting for incoming data"
                )
                .into(),
            ));
        }
        debug_assert!(!inner.eof.get(), "wait_for_data after EOF");
        // Waiting with a paused transport would deadlock: resume it
        // (the buffer is over the limit but holds no complete answer).
        if inner.paused.get() {
            inner.paused.set(false);
            let t = inner.transport.borrow().clone();
            if let Some(t) = t {
                t.resume_reading();
            }
        }
        let waiter: Future<()> = inner.lp.create_future();
        *inner.waiter.borrow_mut() = Some(waiter.clone());
        let _guard = ClearWaiter {
            slot: &inner.waiter,
            waiter: &waiter,
        };
        waiter.clone().await
    }

    fn check_exception(&self) -> Result<()> {
        match &*self.inner.exception.borrow() {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Reads up to `n` bytes: waits until at least one byte is buffered or
    /// EOF, then returns what is there (at most `n`). Returns an empty vector
    /// at EOF or if `n` is 0.
    pub async fn read(&self, n: usize) -> Result<Vec<u8>> {
        self.check_exception()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.inner.buffer.borrow().is_empty() && !self.inner.eof.get() {
            self.wait_for_data("read").await?;
        }
        let data = {
            let mut buf = self.inner.buffer.borrow_mut();
            let k = n.min(buf.len());
            buf.take(k)
        };
        self.maybe_resume_transport();
        Ok(data)
    }

    /// Reads until EOF and returns everything (asyncio's `read(-1)`).
    pub async fn read_to_eof(&self) -> Result<Vec<u8>> {
        loop {
            self.check_exception()?;
            if self.inner.eof.get() {
                break;
            }
            self.wait_for_data("read").await?;
        }
        let data = self.inner.buffer.borrow_mut().take_all();
        self.maybe_resume_transport();
        Ok(data)
    }

    /// Reads one line, ending with `\n`. At EOF returns the partial last
    /// line, or an empty vector if nothing is left.
    ///
    /// A line longer than the limit fails with [`Error::LimitOverrun`]; as
    /// in asyncio (which raises `ValueError` there), the too-long data is
    /// discarded: up to and including the `\n` if it was found, else all of
    /// the buffer. Use [`readuntil`](StreamReader::readuntil) to keep it.
    pub async fn readline(&self) -> Result<Vec<u8>> {
        match self.readuntil(b"\n").await {
            Ok(line) => Ok(line),
            Err(Error::IncompleteRead { partial, .. }) => Ok(partial.to_vec()),
            Err(Error::LimitOverrun { message, consumed }) => {
                {
                    let mut buf = self.inner.buffer.borrow_mut();
                    if buf.bytes().get(consumed) == Some(&b'\n') {
                        buf.consume(consumed + 1);
                    } else {
                        buf.take_all();
                    }
                }
                self.maybe_resume_transport();
                Err(Error::LimitOverrun { message, consumed })
            }
            Err(e) => Err(e),
        }
    }

    /// The next line, or `None` at EOF: the counterpart of
    /// `async for line in reader`.
    ///
    /// ```
    /// tulip::run(async {
    ///     let reader = tulip::StreamReader::new();
    ///     reader.feed_data(b"a\nb\n");
    ///     reader.feed_eof();
    ///     let mut lines = Vec::new();
    ///     while let Some(line) = reader.next_line().await? {
    ///         lines.push(line);
    ///     }
    ///     assert_eq!(lines, [b"a\n".to_vec(), b"b\n".to_vec()]);
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn next_line(&self) -> Result<Option<Vec<u8>>> {
        let line = self.readline().await?;
        Ok(if line.is_empty() { None } else { Some(line) })
    }

    /// Reads until `separator` is found and returns the data with the
    /// separator.
    ///
    /// - EOF first: [`Error::IncompleteRead`] with the buffered bytes as
    ///   `partial` (the buffer is emptied), `expected: None`.
    /// - More than `limit` bytes without the separator, or a separator found
    ///   beyond `limit`: [`Error::LimitOverrun`]; the buffer is left intact
    ///   (N1), and `consumed` says how many bytes to drop to get past it.
    pub async fn readuntil(&self, separator: &[u8]) -> Result<Vec<u8>> {
        let seplen = separator.len();
        if seplen == 0 {
            return Err(Error::InvalidArgument(
                "separator should be at least one-byte string".into(),
            ));
        }
        self.check_exception()?;
        let limit = self.inner.limit;
        // Bytes before `offset` were searched already.
        let mut offset = 0;
        let isep = loop {
            {
                let mut buf = self.inner.buffer.borrow_mut();
                let buflen = buf.len();
                if buflen >= offset + seplen {
                    if let Some(i) = buf.find(separator, offset) {
                        break i;
                    }
                    offset = buflen + 1 - seplen;
                    if offset > limit {
                        return Err(Error::LimitOverrun {
                            message: "separator is not found, and chunk exceed the limit".into(),
                            consumed: offset,
                        });
                    }
                }
                if self.inner.eof.get() {
                    let chunk = buf.take_all();
                    return Err(Error::IncompleteRead {
                        partial: chunk.into(),
                        expected: None,
                    });
                }
            }
            self.wait_for_data("readuntil").await?;
        };
        if isep > limit {
            return Err(Error::LimitOverrun {
                message: "separator is found, but chunk is longer than limit".into(),
                consumed: isep,
            });
        }
        let chunk = self.inner.buffer.borrow_mut().take(isep + seplen);
        self.maybe_resume_transport();
        Ok(chunk)
    }

    /// Reads exactly `n` bytes. EOF first fails with
    /// [`Error::IncompleteRead`] carrying the bytes read and `n` (N1).
    pub async fn readexactly(&self, n: usize) -> Result<Vec<u8>> {
        self.check_exception()?;
        if n == 0 {
            return Ok(Vec::new());
        }
        loop {
            {
                let mut buf = self.inner.buffer.borrow_mut();
                if buf.len() >= n {
                    break;
                }
                if self.inner.eof.get() {
                    let partial = buf.take_all();
                    return Err(Error::IncompleteRead {
                        partial: partial.into(),
                        expected: Some(n),
                    });
                }
            }
            self.wait_for_data("readexactly").await?;
        }
        let data = self.inner.buffer.borrow_mut().take(n);
        self.maybe_resume_transport();
        Ok(data)
    }
}

/// Clears the reader's waiter slot however the wait ends (asyncio's
/// `finally: self._waiter = None`), unless another waiter took the slot.
struct ClearWaiter<'a> {
    slot: &'a RefCell<Option<Future<()>>>,
    waiter: &'a Future<()>,
}

impl Drop for ClearWaiter<'_> {
    fn drop(&mut self) {
        let mut slot = self.slot.borrow_mut();
        if slot.as_ref().is_some_and(|w| w.ptr_eq(self.waiter)) {
            *slot = None;
        }
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("StreamReader")
            .field("buffered", &inner.buffer.borrow().len())
            .field("limit", &inner.limit)
            .field("eof", &inner.eof.get())
            .field("exception", &inner.exception.borrow())
            .field("waiting", &inner.waiter.borrow().is_some())
            .field("paused", &inner.paused.get())
            .finish()
    }
}

// ===== StreamWriter =====

/// asyncio's `StreamWriter`: a [`WriteTransport`] plus `drain()`.
///
/// Writing never blocks; [`drain`](StreamWriter::drain) is where a task
/// waits for the transport's buffer to go down (N2, N3). Dropping a writer
/// whose transport is still open closes it (asyncio 3.12's `__del__`).
/// Share one writer between tasks with `Rc<StreamWriter>`.
pub struct StreamWriter {
    transport: Rc<dyn WriteTransport>,
    flow: FlowControl,
    reader: Option<StreamReader>,
}

impl StreamWriter {
    /// A writer over `transport`, with the flow control that its protocol
    /// feeds, and the reader of the same connection if there is one (its
    /// error makes `drain` fail, as in asyncio).
    pub fn new(
        transport: Rc<dyn WriteTransport>,
        flow: FlowControl,
        reader: Option<StreamReader>,
    ) -> StreamWriter {
        StreamWriter {
            transport,
            flow,
            reader,
        }
    }

    /// The transport.
    pub fn transport(&self) -> &Rc<dyn WriteTransport> {
        &self.transport
    }

    /// The flow control the writer drains on.
    pub fn flow_control(&self) -> &FlowControl {
        &self.flow
    }

    /// Writes `data` without blocking (see [`WriteTransport::write`]).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.transport.write(data)
    }

    /// Writes several buffers, in order.
    pub fn writelines(&self, list: &[&[u8]]) -> Result<()> {
        self.transport.writelines(list)
    }

    /// Half-closes: the peer reads EOF once the buffer is flushed.
    pub fn write_eof(&self) -> Result<()> {
        self.transport.write_eof()
    }

    /// True if [`write_eof`](StreamWriter::write_eof) is supported.
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the transport (buffered data is still flushed).
    pub fn close(&self) {
        self.transport.close()
    }

    /// True once the transport is closing.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is closed (`connection_lost` ran). Fails
    /// with the error the connection was lost with, if any.
    pub async fn wait_closed(&self) -> Result<()> {
        self.flow.close_waiter().await
    }

    /// See [`BaseTransport::get_extra_info`](crate::BaseTransport::get_extra_info).
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.transport.get_extra_info(name)
    }

    /// Waits until it is appropriate to write more: returns at once unless
    /// the transport paused writing (its buffer is over the high-water
    /// mark), else when it resumes. Fails if the reader has an error, or
    /// the connection was lost (N2).
    pub async fn drain(&self) -> Result<()> {
        if let Some(r) = &self.reader {
            if let Some(e) = r.exception() {
                return Err(e);
            }
        }
        if self.transport.is_closing() && !self.flow.is_connection_lost() {
            // Let connection_lost run first, so drain() fails as it should
            // (asyncio: `await sleep(0)`).
            crate::sleep(0.0).await?;
        }
        self.flow.drain_helper().await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.transport.is_closing() && !self.flow.inner.lp.is_closed() {
            self.transport.close();
        }
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("closing", &self.transport.is_closing())
            .field("buffered", &self.transport.get_write_buffer_size())
            .field("flow", &self.flow)
            .finish()
    }
}

// ===== StreamReaderProtocol =====

/// What [`StreamReaderProtocol`] calls for each new connection (asyncio's
/// `client_connected_cb`); typically it spawns a task.
pub type ClientConnected = Rc<dyn Fn(StreamReader, StreamWriter)>;

/// asyncio's `StreamReaderProtocol`: feeds a [`StreamReader`] from a
/// transport and hands out a [`StreamWriter`].
pub struct StreamReaderProtocol {
    flow: FlowControl,
    reader: RefCell<Option<StreamReader>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    client_connected_cb: Option<ClientConnected>,
}

impl StreamReaderProtocol {
    /// A protocol that feeds `reader`. With `client_connected_cb`, each
    /// connection calls it with the reader and a new writer (servers).
    pub fn new(
        lp: &EventLoop,
        reader: StreamReader,
        client_connected_cb: Option<ClientConnected>,
    ) -> StreamReaderProtocol {
        StreamReaderProtocol {
            flow: FlowControl::new(lp),
            reader: RefCell::new(Some(reader)),
            transport: RefCell::new(None),
            client_connected_cb,
        }
    }

    /// The flow control of the connection, for a [`StreamWriter`].
    pub fn flow_control(&self) -> &FlowControl {
        &self.flow
    }
}

impl Protocol for StreamReaderProtocol {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport.clone());
        let reader = self.reader.borrow().clone();
        if let Some(reader) = &reader {
            reader.set_transport(transport.clone());
        }
        if let (Some(cb), Some(reader)) = (&self.client_connected_cb, reader) {
            let writer = StreamWriter::new(transport, self.flow.clone(), Some(reader.clone()));
            cb(reader, writer);
        }
    }

    fn data_received(&self, data: &[u8]) {
        if let Some(r) = &*self.reader.borrow() {
            r.feed_data(data);
        }
    }

    fn eof_received(&self) -> bool {
        if let Some(r) = &*self.reader.borrow() {
            r.feed_eof();
        }
        // Keep the connection half-open: the writer may still write.
        true
    }

    fn connection_lost(&self, exc: Option<Error>) {
        let reader = self.reader.borrow_mut().take();
        if let Some(r) = reader {
            match &exc {
                None => r.feed_eof(),
                Some(e) => r.set_exception(e.clone()),
            }
        }
        self.flow.connection_lost(exc);
        drop(self.transport.borrow_mut().take());
    }

    fn pause_writing(&self) {
        self.flow.pause_writing();
    }

    fn resume_writing(&self) {
        self.flow.resume_writing();
    }
}

impl fmt::Debug for StreamReaderProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReaderProtocol")
            .field("reader", &self.reader.borrow())
            .field("flow", &self.flow)
            .finish()
    }
}
