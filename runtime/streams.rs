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
//! - [`FlowControl`] (in [`stream_writer`](crate::stream_writer)) is the protocol half of flow control (asyncio's
//!   `FlowControlMixin`): `pause_writing`/`resume_writing` from the
//!   transport open and shut the gate that [`StreamWriter::drain`] waits on.
//! - [`StreamWriter`] wraps a [`WriteTransport`](crate::WriteTransport) and a `FlowControl`.
//! - [`StreamReaderProtocol`] is the [`Protocol`](crate::Protocol) that connects a socket
//!   transport to a reader and a writer (see [`open_connection`](crate::open_connection)).
//!
//! # Invariants
//! - At most one task waits for data on a reader at a time (asyncio's
//!   `_waiter`); a second one gets a runtime error.
//! - The reader pauses its transport when its buffer holds more than
//!   2 × `limit` bytes and resumes it when a read brings it to `limit` or
//!   less, or when a reader must wait for data (N2).
//! - Data leaves the buffer only when a read returns it: a read that is
//!   cancelled or dropped leaves what was buffered for the next one.
//! - `LimitOverrun` from `readuntil`/`readuntil_any` leaves the buffer untouched (N1);
//!   `IncompleteRead` hands over (and removes) what was buffered.
//! - `feed_data` after `feed_eof` is ignored.
//! - An empty buffer (the reader's, or a transport's write buffer) holds at
//!   most `KEEP_CAPACITY` (256 KiB) of memory, whatever its peak was.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::{get_event_loop, EventLoop, LoopRef};
use crate::futures::Future;
use crate::transports::ReadTransport;

pub use crate::stream_writer::{ClientConnected, FlowControl, StreamReaderProtocol, StreamWriter};

/// asyncio's `_DEFAULT_LIMIT`: 64 KiB.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

// ===== the byte buffer =====

/// The largest capacity a buffer keeps once it is empty: after handing its
/// whole buffer to a read (see `Buffer::take`), or after the last bytes are
/// consumed or cleared (see `Buffer::clear`).
const KEEP_CAPACITY: usize = 256 * 1024;

/// A byte queue that consumes from the front without moving bytes: `start`
/// advances, and the bytes are moved down only when the dead front is at
/// least half of the vector (amortised O(1) per byte).
#[derive(Default)]
pub(crate) struct Buffer {
    data: Vec<u8>,
    start: usize,
}

impl Buffer {
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.data.len()
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    pub(crate) fn extend(&mut self, more: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.data.len() {
            self.data.drain(..self.start);
            self.start = 0;
        }
        self.data.extend_from_slice(more);
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.data.len());
        if self.start == self.data.len() {
            self.clear();
        }
    }

    /// Removes and returns the first `n` bytes (`n <= len`).
    pub(crate) fn take(&mut self, n: usize) -> Vec<u8> {
        if n == 0 {
            // Nothing to hand over (a read at EOF): keep the block, and
            // give the caller no capacity of ours.
            return Vec::new();
        }
        if self.start == 0 && n == self.data.len() {
            // The whole buffer: hand the vector over without copying, and
            // start a new one of the same capacity. Allocating it now,
            // while the caller still holds the old one, keeps the two
            // blocks alternating in the allocator's free lists: a 100 KiB
            // echo otherwise frees its block at the top of the heap, glibc
            // trims it (brk), and the next message faults the pages back in.
            // Past KEEP_CAPACITY the buffer starts empty instead: an idle
            // connection does not keep a burst's worth of memory.
            let cap = self.data.capacity();
            let next = if cap <= KEEP_CAPACITY {
                Vec::with_capacity(cap)
            } else {
                Vec::new()
            };
            return std::mem::replace(&mut self.data, next);
        }
        let out = self.data[self.start..self.start + n].to_vec();
        self.consume(n);
        out
    }

    /// Empties the buffer. Past KEEP_CAPACITY the memory goes too, as in
    /// `take`: a burst (a 32 MiB write to a slow peer, a big read) must not
    /// keep its peak for the life of the connection. asyncio's write
    /// buffer, a deque of the written chunks, frees each as it is sent; its
    /// reader's bytearray shrinks as reads empty it.
    pub(crate) fn clear(&mut self) {
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        } else {
            self.data.clear();
        }
        self.start = 0;
    }

    pub(crate) fn take_all(&mut self) -> Vec<u8> {
        let n = self.len();
        self.take(n)
    }

    /// Position of `sep` in the buffer, searching from `offset`.
    pub(crate) fn find(&self, sep: &[u8], offset: usize) -> Option<usize> {
        // Scan for the first byte (a tight loop the compiler vectorises),
        // compare the rest only there: no `memcmp` call per position.
        let hay = self.bytes();
        let (first, rest) = sep.split_first()?;
        let mut i = offset;
        while let Some(p) = hay[i..].iter().position(|b| b == first) {
            let at = i + p;
            if hay.len() - at < sep.len() {
                return None;
            }
            if &hay[at + 1..at + sep.len()] == rest {
                return Some(at);
            }
            i = at + 1;
        }
        None
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
    lp: LoopRef,
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
                lp: LoopRef::new(lp.clone()),
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
        // Saturating: a limit too large to double (`usize::MAX` for "no
        // limit") must never pause, not overflow (asyncio's is a Python int).
        if !inner.paused.get() && len > inner.limit.saturating_mul(2) {
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
                    "{func_name}() called while another task is already waiting for incoming data; read a stream from one task at a time"
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
    ///
    /// Cancellation-safe, unlike asyncio's `read(-1)` (which collects
    /// `read(limit)` blocks in a local list): the data stays in the reader's
    /// buffer until EOF, so a `read_to_eof` dropped by a timeout or a cancel
    /// loses nothing, and the next read gets it all.
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
    ///
    /// For several separators, see [`readuntil_any`](StreamReader::readuntil_any).
    pub async fn readuntil(&self, separator: &[u8]) -> Result<Vec<u8>> {
        self.readuntil_any(&[separator]).await
    }

    /// Reads until any of `separators` is found (asyncio 3.13's
    /// `readuntil(separator)` with a tuple): the result is the shortest
    /// chunk that ends with one of them, separator included.
    ///
    /// Errors are those of [`readuntil`](StreamReader::readuntil); for
    /// `LimitOverrun`, the separator that ends the shortest chunk is the one
    /// that matched. An empty list, or an empty separator, is an
    /// [`Error::InvalidArgument`].
    ///
    /// ```
    /// tulip::run(async {
    ///     let reader = tulip::StreamReader::new();
    ///     reader.feed_data(b"unix\nwindows\r\nlast");
    ///     reader.feed_eof();
    ///     let seps: &[&[u8]] = &[b"\r\n", b"\n"];
    ///     assert_eq!(reader.readuntil_any(seps).await?, b"unix\n");
    ///     assert_eq!(reader.readuntil_any(seps).await?, b"windows\r\n");
    ///     // EOF without a separator: the rest comes back in the error.
    ///     let err = reader.readuntil_any(seps).await.unwrap_err();
    ///     assert!(matches!(err, tulip::Error::IncompleteRead { ref partial, .. } if &**partial == b"last"));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn readuntil_any(&self, separators: &[&[u8]]) -> Result<Vec<u8>> {
        // Shortest first: on a tie for the end of the chunk, the shorter
        // separator wins (asyncio sorts the tuple by length). One separator
        // (every `readline`) needs no sorted copy.
        let sorted;
        let seps: &[&[u8]] = if separators.len() > 1 {
            let mut v = separators.to_vec();
            v.sort_by_key(|s| s.len());
            sorted = v;
            &sorted
        } else {
            separators
        };
        let (Some(first), Some(last)) = (seps.first(), seps.last()) else {
            return Err(Error::InvalidArgument(
                "separator should contain at least one element: pass one or more separators".into(),
            ));
        };
        let (min_seplen, max_seplen) = (first.len(), last.len());
        if min_seplen == 0 {
            return Err(Error::InvalidArgument(
                "separator should be at least one-byte string: drop the empty separator".into(),
            ));
        }
        self.check_exception()?;
        let limit = self.inner.limit;
        // Bytes before `offset` hold no separator: they were searched already.
        let mut offset = 0;
        let (match_start, match_end) = loop {
            {
                let mut buf = self.inner.buffer.borrow_mut();
                let buflen = buf.len();
                if buflen >= offset + min_seplen {
                    // The match that ends first gives the shortest chunk.
                    let mut best: Option<(usize, usize)> = None;
                    for sep in seps {
                        if let Some(i) = buf.find(sep, offset) {
                            let end = i + sep.len();
                            if best.is_none_or(|(_, e)| end < e) {
                                best = Some((i, end));
                            }
                        }
                    }
                    if let Some(found) = best {
                        break found;
                    }
                    // A separator may still start in the last
                    // `max_seplen - 1` bytes: search those again.
                    offset = (buflen + 1).saturating_sub(max_seplen);
                    if offset > limit {
                        return Err(Error::LimitOverrun {
                            message: format!(
                                "separator is not found, and chunk exceed the limit of {limit} bytes"
                            )
                            .into(),
                            consumed: offset,
                        });
                    }
                }
                // A complete separator may have come with the EOF: the
                // buffer is searched before the EOF is looked at.
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
        if match_start > limit {
            return Err(Error::LimitOverrun {
                message: format!(
                    "separator is found, but chunk is longer than limit ({limit} bytes)"
                )
                .into(),
                consumed: match_start,
            });
        }
        let chunk = self.inner.buffer.borrow_mut().take(match_end);
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
