//! The writing half of streams: [`FlowControl`], [`StreamWriter`] and
//! [`StreamReaderProtocol`]. Mirrors `FlowControlMixin`, `StreamWriter` and
//! `StreamReaderProtocol` in `Lib/asyncio/streams.py` (the reader is in
//! [`streams`](crate::streams), which re-exports these names).
//!
//! # Invariants
//! - Every drain waiter is woken by `resume_writing` or `connection_lost`,
//!   so any number of concurrent `drain()` calls complete (N2).
//! - After `connection_lost`, `drain()` fails with `ConnectionReset` and the
//!   close waiter is done (with the connection's error, if any).
//! - `StreamReaderProtocol` drops its reader and transport at
//!   `connection_lost`, breaking the transport ↔ protocol ↔ reader cycle.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopRef};
use crate::futures::Future;
use crate::protocols::Protocol;
use crate::streams::StreamReader;
use crate::transports::{ExtraInfo, Transport, WriteTransport};

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
    lp: LoopRef,
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
                lp: LoopRef::new(lp.clone()),
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
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection lost: nothing more can be written on it; open a new connection",
            )
            .into());
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

/// A flow control is the protocol of a write-only transport, such as a
/// subprocess's stdin pipe: it hears `pause_writing`, `resume_writing` and
/// `connection_lost` (asyncio's `SubprocessStreamProtocol`, a
/// `FlowControlMixin`); the other callbacks do nothing.
impl Protocol for FlowControl {
    fn connection_lost(&self, exc: Option<Error>) {
        FlowControl::connection_lost(self, exc);
    }

    fn pause_writing(&self) {
        FlowControl::pause_writing(self);
    }

    fn resume_writing(&self) {
        FlowControl::resume_writing(self);
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

// ===== StreamWriter =====

/// asyncio's `StreamWriter`: a [`WriteTransport`] plus `drain()`.
///
/// Writing never blocks; [`drain`](StreamWriter::drain) is where a task
/// waits for the transport's buffer to go down (N2, N3). Dropping a writer
/// whose transport is still open closes it (asyncio 3.12's `__del__`).
/// Share one writer between tasks with `Rc<StreamWriter>`.
///
/// ```
/// use std::os::unix::net::UnixStream;
/// tulip::run(async {
///     let (ours, theirs) = UnixStream::pair()?;
///     let (_r, writer) = tulip::open_connection_sock(ours).await?;
///     let (reader, _w) = tulip::open_connection_sock(theirs).await?;
///     writer.write(b"GET / ")?;
///     writer.writelines(&[b"HTTP/1.1\r\n", b"\r\n"])?;
///     writer.drain().await?; // at once: the buffer is under the high-water mark
///     assert!(writer.can_write_eof());
///     writer.write_eof()?; // the peer reads EOF after the data
///     assert_eq!(reader.read_to_eof().await?, b"GET / HTTP/1.1\r\n\r\n");
///     writer.close();
///     writer.wait_closed().await?;
///     assert!(writer.is_closing());
///     Ok(())
/// }).unwrap();
/// ```
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
        if self.transport.is_closing() {
            // Let connection_lost run first, so drain() fails as it should
            // (asyncio: `await sleep(0)`). Even when it already ran: the
            // yield is what keeps a loop of write() and drain() that goes
            // on past the errors from starving the other tasks.
            crate::sleep(0.0).await?;
        }
        self.flow.drain_helper().await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        // On a closed loop too: the transport then releases its socket at
        // once (see `selector_transport`).
        if !self.transport.is_closing() {
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
        // A clone: feeding wakes the waiting reader, and a waker may run
        // code (a plain executor polling inline) that calls back in here,
        // e.g. `connection_lost`, which takes the reader out.
        let reader = self.reader.borrow().clone();
        if let Some(r) = reader {
            r.feed_data(data);
        }
    }

    fn eof_received(&self) -> bool {
        // A clone, as in `data_received`.
        let reader = self.reader.borrow().clone();
        if let Some(r) = reader {
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
