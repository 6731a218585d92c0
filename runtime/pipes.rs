//! Pipe transports: [`EventLoop::connect_read_pipe`] and
//! [`EventLoop::connect_write_pipe`]. Mirrors `_UnixReadPipeTransport` and
//! `_UnixWritePipeTransport` in `Lib/asyncio/unix_events.py`, and
//! `connect_read_pipe`/`connect_write_pipe` in `base_events.py`.
//!
//! - [`ReadPipeTransport`] reads the read end of a pipe (or a FIFO, a
//!   socket, a character device) and calls its [`Protocol`]:
//!   `data_received` for each chunk; at EOF `eof_received`, then
//!   `connection_lost(None)`; after a read error `connection_lost(Some(e))`.
//!   It can be paused and resumed ([`ReadTransport`](crate::ReadTransport)).
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
//! Each transport is a submodule of its own (`read.rs`, `write.rs`); this
//! module holds what they share (the `fstat` check, the panic and
//! broken-pipe helpers) and the loop's `connect_*_pipe` entry points.
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
//! - Both fds are registered edge-triggered: a read pipe's reader exactly
//!   while it is reading, a write pipe's writer exactly while its buffer
//!   is not empty (the submodules' invariants say more).
//! - The fd is closed only in `call_connection_lost`, after the reader and
//!   the writer are removed (N4), or when the loop closes first (then no
//!   protocol method is called, and the loop's registrations went with it).
//! - `connection_made` comes first, `connection_lost` exactly once and
//!   last; then the transport drops its protocol, which breaks the
//!   transport ↔ protocol cycle. At EOF `eof_received` comes before it.
//! - No `RefCell` borrow of a transport is held while a protocol method
//!   runs. A panicking `data_received` closes the pipe with
//!   [`Error::Panic`], a panicking `pause_writing`/`resume_writing` is
//!   reported and the pipe goes on (see the submodules); `connection_made`,
//!   `eof_received` and `connection_lost` run in handles of their own (or
//!   the writer's, for a `connection_lost` after the last flush), so the
//!   loop reports their panics (L6); the fd is closed even if
//!   `connection_lost` panics.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::rc::Rc;

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{EventLoop, Interrupt};
use crate::futures::Future;
use crate::protocols::Protocol;
use crate::sys;
use crate::transports::Transport;

mod read;
mod write;

pub use self::read::ReadPipeTransport;
pub use self::write::WritePipeTransport;

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
