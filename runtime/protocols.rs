//! Protocols: what a transport calls when something happens. Mirrors
//! `Lib/asyncio/protocols.py` (`Protocol`, `BufferedProtocol`,
//! `DatagramProtocol`, `SubprocessProtocol`).
//!
//! A protocol is the callback side of a connection. The transport calls it;
//! the protocol answers by calling the transport (`write`, `close`,
//! `pause_reading`). Methods take `&self`: the transport holds an
//! `Rc<dyn Protocol>`, and a protocol keeps its state in cells, as asyncio's
//! objects do. Methods are called synchronously from the loop's callbacks;
//! they must not block.
//!
//! ```
//! use std::rc::Rc;
//! use std::cell::RefCell;
//! use tulip::{Protocol, Transport};
//!
//! /// asyncio's classic echo protocol.
//! #[derive(Default)]
//! struct Echo(RefCell<Option<Rc<dyn Transport>>>);
//!
//! impl Protocol for Echo {
//!     fn connection_made(&self, transport: Rc<dyn Transport>) {
//!         *self.0.borrow_mut() = Some(transport);
//!     }
//!     fn data_received(&self, data: &[u8]) {
//!         let t = self.0.borrow().clone().expect("connected");
//!         let _ = t.write(data);
//!     }
//! }
//! # let _ = Echo::default();
//! ```
//!
//! # Invariants
//! (what a transport promises its protocol, asyncio's state machine)
//! - `connection_made` is called exactly once, first.
//! - Then `data_received` any number of times, then at most one
//!   `eof_received`; no `data_received` after `eof_received`. (For a
//!   [`BufferedProtocol`]: `get_buffer` and `buffer_updated` in its place.)
//! - A [`BufferedProtocol`]'s `buffer_updated(n)` follows the
//!   `get_buffer` whose buffer the `n` bytes were received into, and the
//!   transport no longer holds that buffer's borrow when it is called.
//! - `connection_lost` is called exactly once, last; nothing after it.
//! - `pause_writing` and `resume_writing` alternate, starting with
//!   `pause_writing`; they come between `connection_made` and `connection_lost`.
//! - No transport borrow is held while a protocol method runs, so the
//!   protocol may call back into the transport.

use std::cell::RefMut;
use std::rc::Rc;

use crate::base_subprocess::SubprocessTransport;
use crate::error::Error;
use crate::transports::{DatagramAddr, DatagramTransport, Transport};

/// asyncio's `Protocol`: the callbacks of a stream connection.
///
/// The callbacks come in order: `connection_made`, `data_received` (any
/// number of times), `eof_received`, `connection_lost`. As in asyncio's echo
/// client, a future set in `connection_lost` tells the caller the
/// connection is gone:
///
/// ```
/// use std::{cell::RefCell, io::Write, rc::Rc};
/// use tulip::transports::prelude::*;
///
/// struct Client {
///     log: RefCell<Vec<String>>,
///     on_con_lost: tulip::Future<()>,
/// }
/// impl Protocol for Client {
///     fn connection_made(&self, _transport: Rc<dyn Transport>) {
///         self.log.borrow_mut().push("made".into());
///     }
///     fn data_received(&self, data: &[u8]) {
///         self.log.borrow_mut().push(String::from_utf8_lossy(data).into());
///     }
///     fn eof_received(&self) -> bool {
///         self.log.borrow_mut().push("eof".into());
///         false // close the transport
///     }
///     fn connection_lost(&self, exc: Option<tulip::Error>) {
///         assert!(exc.is_none());
///         self.log.borrow_mut().push("lost".into());
///         let _ = self.on_con_lost.set_result(());
///     }
/// }
///
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     let (ours, mut peer) = std::os::unix::net::UnixStream::pair()?;
///     let on_con_lost = lp.create_future();
///     let lost = on_con_lost.clone();
///     let factory = move || Rc::new(Client { log: RefCell::default(), on_con_lost: lost });
///     let (_transport, proto) = lp.connect_accepted_socket(factory, ours.into()).await?;
///     peer.write_all(b"hello")?;
///     drop(peer); // EOF
///     on_con_lost.await?;
///     assert_eq!(*proto.log.borrow(), ["made", "hello", "eof", "lost"]);
///     Ok(())
/// }).unwrap();
/// ```
pub trait Protocol {
    /// The connection is up. Keep `transport` to write, close, pause.
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        let _ = transport;
    }

    /// Bytes arrived. `data` is borrowed from the transport's read buffer:
    /// copy what you keep.
    fn data_received(&self, data: &[u8]) {
        let _ = data;
    }

    /// The peer closed its write end (a half-close, or a plain close).
    /// Return true to keep the connection half-open (so you may still
    /// write); false closes the transport, as asyncio does.
    fn eof_received(&self) -> bool {
        false
    }

    /// The connection is gone: `None` for a normal close or EOF, the error
    /// otherwise (e.g. a reset).
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = exc;
    }

    /// The transport's write buffer went above its high-water mark.
    fn pause_writing(&self) {}

    /// The transport's write buffer drained to its low-water mark.
    fn resume_writing(&self) {}
}

/// asyncio's `BufferedProtocol`: a stream protocol that owns the receive
/// buffer. The transport asks it for a buffer (`get_buffer`), receives
/// straight into it (no copy through the transport's own read buffer),
/// then says how many bytes arrived (`buffer_updated`).
///
/// The buffer is a `RefMut` of a `RefCell` the protocol keeps: the
/// transport holds the borrow only while it calls `recv`, and drops it
/// before `buffer_updated`, which may borrow the cell again. An empty
/// buffer is an error: the transport reports `Fatal error:
/// protocol.get_buffer() call failed.` (with the error `get_buffer()
/// returned an empty buffer`) to the loop's exception handler and closes
/// the connection, as asyncio does. A panic in any callback is reported
/// the same way.
///
/// Used by [`EventLoop::create_connection_buffered`] and
/// [`EventLoop::create_server_buffered`], their `sock=` variants
/// [`EventLoop::create_connection_buffered_sock`] and
/// [`EventLoop::create_server_buffered_sock`], and the Unix ones
/// [`EventLoop::create_unix_connection_buffered`] and
/// [`EventLoop::create_unix_server_buffered`].
///
/// ```
/// use std::cell::{RefCell, RefMut};
/// use std::rc::Rc;
/// use tulip::transports::prelude::*;
/// use tulip::BufferedProtocol;
///
/// /// Echoes what it receives, through a 4 KiB buffer of its own.
/// struct Echo {
///     buf: RefCell<Vec<u8>>,
///     transport: RefCell<Option<Rc<dyn Transport>>>,
/// }
///
/// impl BufferedProtocol for Echo {
///     fn connection_made(&self, transport: Rc<dyn Transport>) {
///         *self.transport.borrow_mut() = Some(transport);
///     }
///     fn get_buffer(&self, _sizehint: usize) -> RefMut<'_, [u8]> {
///         RefMut::map(self.buf.borrow_mut(), |b| &mut b[..])
///     }
///     fn buffer_updated(&self, nbytes: usize) {
///         let t = self.transport.borrow().clone().expect("connected");
///         let _ = t.write(&self.buf.borrow()[..nbytes]);
///     }
/// }
///
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     let echo = || Rc::new(Echo { buf: RefCell::new(vec![0; 4096]), transport: RefCell::new(None) });
///     let opts = tulip::ServerOptions::new();
///     let server = lp.create_server_buffered(echo, "127.0.0.1", 0, &opts).await?;
///     let port = server.local_addrs()[0].port();
///     let (reader, writer) = tulip::open_connection("127.0.0.1", port).await?;
///     writer.write(b"hello\n")?;
///     assert_eq!(reader.readline().await?, b"hello\n");
///     writer.close();
///     server.close();
///     Ok(())
/// }).unwrap();
/// ```
///
/// [`EventLoop::create_connection_buffered`]: crate::EventLoop::create_connection_buffered
/// [`EventLoop::create_server_buffered`]: crate::EventLoop::create_server_buffered
/// [`EventLoop::create_connection_buffered_sock`]: crate::EventLoop::create_connection_buffered_sock
/// [`EventLoop::create_server_buffered_sock`]: crate::EventLoop::create_server_buffered_sock
/// [`EventLoop::create_unix_connection_buffered`]: crate::EventLoop::create_unix_connection_buffered
/// [`EventLoop::create_unix_server_buffered`]: crate::EventLoop::create_unix_server_buffered
pub trait BufferedProtocol {
    /// The connection is up. Keep `transport` to write, close, pause.
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        let _ = transport;
    }

    /// A buffer to receive into: the transport writes at its start, and
    /// says how much in `buffer_updated`. `sizehint` is the size the
    /// transport would like at least; 0 (asyncio's -1), which tulip's
    /// socket transport always passes, means any size will do. Any
    /// non-empty size is accepted: a small buffer only means more reads.
    fn get_buffer(&self, sizehint: usize) -> RefMut<'_, [u8]>;

    /// `nbytes` bytes were received at the start of the buffer the last
    /// `get_buffer` returned. The transport holds no borrow of it now.
    fn buffer_updated(&self, nbytes: usize);

    /// The peer closed its write end, as [`Protocol::eof_received`]:
    /// return true to keep the connection half-open.
    fn eof_received(&self) -> bool {
        false
    }

    /// The connection is gone, as [`Protocol::connection_lost`].
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = exc;
    }

    /// The transport's write buffer went above its high-water mark.
    fn pause_writing(&self) {}

    /// The transport's write buffer drained to its low-water mark.
    fn resume_writing(&self) {}
}

/// asyncio's `DatagramProtocol`: the callbacks of a UDP endpoint.
pub trait DatagramProtocol {
    /// The endpoint is ready.
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) {
        let _ = transport;
    }

    /// A datagram arrived from `addr` (an IP address and port for UDP, a
    /// path for Unix datagrams). `data` is borrowed from the transport's
    /// buffer: copy what you keep.
    fn datagram_received(&self, data: &[u8], addr: DatagramAddr) {
        let _ = (data, addr);
    }

    /// A send or receive failed (e.g. ICMP port unreachable on a connected
    /// socket). The endpoint stays open.
    fn error_received(&self, exc: Error) {
        let _ = exc;
    }

    /// The endpoint is closed.
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = exc;
    }

    /// The send queue went above its high-water mark.
    fn pause_writing(&self) {}

    /// The send queue drained.
    fn resume_writing(&self) {}
}

/// asyncio's `SubprocessProtocol`: the callbacks of a child process run by
/// [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec) or
/// [`subprocess_shell`](crate::EventLoop::subprocess_shell). `fd` is the
/// child's side of the pipe: 0 (stdin), 1 (stdout) or 2 (stderr).
///
/// The [`SubprocessTransport`] calls it in this order: `connection_made`
/// first; then `pipe_data_received`, `pipe_connection_lost` (once per
/// pipe) and `process_exited` (once) as they happen; `connection_lost`
/// last, once the child has exited *and* every pipe is lost. Each of these
/// calls is a callback of its own on the loop (asyncio's `_call`), so a
/// panic in one goes to the exception handler and the others still come.
/// `pause_writing` and `resume_writing` are not: the stdin pipe's flow
/// control calls them directly, from the `write` that crosses the
/// high-water mark and from the flush that drains to the low one (as
/// asyncio's `WriteSubprocessPipeProto` does); a panic in one is reported
/// and the pipe goes on.
pub trait SubprocessProtocol {
    /// The child is running and its pipes are connected. Keep `transport`
    /// to write to the child's stdin, signal it, or close it.
    fn connection_made(&self, transport: Rc<SubprocessTransport>) {
        let _ = transport;
    }

    /// The child wrote `data` to its stdout (`fd` 1) or stderr (`fd` 2).
    fn pipe_data_received(&self, fd: i32, data: &[u8]) {
        let _ = (fd, data);
    }

    /// One of the child's pipes was closed: `None` for EOF or a close,
    /// the error otherwise.
    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) {
        let _ = (fd, exc);
    }

    /// The child exited and was reaped: its exit code is the transport's
    /// [`get_returncode`](SubprocessTransport::get_returncode).
    fn process_exited(&self) {}

    /// Everything is over: the child exited and every pipe was lost.
    /// Nothing comes after it.
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = exc;
    }

    /// The stdin pipe's write buffer went above its high-water mark.
    fn pause_writing(&self) {}

    /// The stdin pipe's write buffer drained to its low-water mark.
    fn resume_writing(&self) {}
}
