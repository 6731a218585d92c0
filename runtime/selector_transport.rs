//! What every selector transport shares: starting, registering the reader,
//! closing and losing the connection. Mirrors `_SelectorTransport` in
//! `Lib/asyncio/selector_events.py`, the base class of
//! `_SelectorSocketTransport` ([`SocketTransport`](crate::SocketTransport))
//! and `_SelectorDatagramTransport`
//! ([`DatagramSocketTransport`](crate::DatagramSocketTransport)).
//!
//! Rust has no base classes, so the base is split in two: the shared state
//! is a struct, [`TransportBase`], that each transport embeds; the shared
//! methods are the provided methods of a trait, [`SelectorTransport`], that
//! each transport implements by naming its base and a few hooks (how to
//! call its protocol, how to read, how to empty its write buffer).
//!
//! The life of a transport, as the provided methods run it:
//! 1. [`start`](SelectorTransport::start), one `call_soon` after the
//!    transport is made: `connection_made`, then the reader is registered
//!    and the creator's waiter completed (asyncio's three `call_soon`s).
//! 2. [`close_transport`](SelectorTransport::close_transport): stop
//!    reading; `connection_lost` comes on the next iteration, or once the
//!    write buffer is flushed. [`force_close`](SelectorTransport::force_close)
//!    (abort, I/O errors) drops the buffer and schedules it at once.
//! 3. [`call_connection_lost`](SelectorTransport::call_connection_lost):
//!    both registrations removed, `connection_lost`, then the socket and
//!    the protocol are dropped.
//!
//! If the loop closes first, there is no loop left to call the protocol
//! from: the transport is [released](SelectorTransport::release_without_loop),
//! its socket closed and its protocol dropped without a callback. That is
//! what CPython's garbage collector does to a transport outlived by its loop
//! (`_SelectorTransport.__del__` closes the socket); here the loop's
//! [`close`](EventLoop::close) does it, since a transport and its protocol
//! hold each other and would otherwise never be dropped. `close()` on a
//! transport of a closed loop does the same.
//!
//! # Invariants
//! - The socket is dropped only in `call_connection_lost`, after the reader
//!   and the writer are removed from the loop: no fd is used after close,
//!   and a recycled fd number never meets a stale registration (N4).
//! - `connection_lost` is called at most once, and only if
//!   `connection_made` was; then the transport drops its protocol, which
//!   breaks the transport ↔ protocol cycle, and closes its socket, even if
//!   `connection_lost` panicked (asyncio's `finally`).
//! - `conn_lost` is non-zero once `connection_lost` is scheduled;
//!   `closing` never goes back to false.
//! - `writer_registered` is true exactly while the loop holds a writer for
//!   the fd.
//! - No `RefCell` borrow of the base is held while a protocol method runs.
//!   Every callback fetches the protocol when it calls it, so one set with
//!   `set_protocol` (even from inside a callback of the old one) hears
//!   everything that comes after; `connection_made` goes to the protocol
//!   the transport was made with, as asyncio binds it in `__init__`.
//! - A transport between `schedule_start` and the end of its connection is
//!   in its loop's list of `LoopClosed` resources (`tracked`), so that
//!   closing the loop releases it.
//! - A socket or datagram transport (not a pipe) is its loop's entry for its
//!   fd in the map of transports (asyncio's `_transports`) from its creation
//!   until just before its socket closes, except while a native `sendfile`
//!   borrows the fd; it leaves the map while the fd is still open, so it
//!   never removes the entry of a later transport on the same number.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};

use crate::error::Error;
use crate::event_loop::{EventLoop, LoopRef};
use crate::futures::Future;
use crate::reactor::Side;

/// The state asyncio keeps in `_SelectorTransport`: loop, socket, fd,
/// protocol, and the closing flags.
pub(crate) struct TransportBase<S, P> {
    pub(crate) lp: LoopRef,
    /// The fd number, kept for `remove_reader`/`remove_writer` after the
    /// socket itself is gone.
    pub(crate) fd: RawFd,
    /// `None` once closed (in `call_connection_lost`).
    pub(crate) sock: RefCell<Option<S>>,
    /// The protocol handle (an `Rc` of it, or an enum of such); `None`
    /// after `connection_lost`.
    pub(crate) protocol: RefCell<Option<P>>,
    /// `connection_made` was called (so `connection_lost` must be).
    pub(crate) protocol_connected: Cell<bool>,
    /// `close()` or a fatal error started the shutdown. Never reset.
    pub(crate) closing: Cell<bool>,
    /// Non-zero once `connection_lost` is scheduled; counts writes after that.
    pub(crate) conn_lost: Cell<u32>,
    /// The writer callback is registered.
    pub(crate) writer_registered: Cell<bool>,
    /// The key in the loop's list of resources to release when it closes.
    tracked: Cell<Option<usize>>,
}

impl<S: AsRawFd, P> TransportBase<S, P> {
    pub(crate) fn new(lp: &EventLoop, sock: S, protocol: P) -> Self {
        TransportBase {
            lp: LoopRef::new(lp.clone()),
            fd: sock.as_raw_fd(),
            sock: RefCell::new(Some(sock)),
            protocol: RefCell::new(Some(protocol)),
            protocol_connected: Cell::new(false),
            closing: Cell::new(false),
            conn_lost: Cell::new(0),
            writer_registered: Cell::new(false),
            tracked: Cell::new(None),
        }
    }

    /// The socket's fd number, while the socket is open (the `"socket"`
    /// extra info).
    pub(crate) fn sock_fd(&self) -> Option<RawFd> {
        self.sock.borrow().as_ref().map(|s| s.as_raw_fd())
    }
}

impl<S, P: Clone> TransportBase<S, P> {
    /// The protocol, until `connection_lost` ran. A clone: the borrow ends
    /// before the caller calls into the protocol.
    pub(crate) fn protocol(&self) -> Option<P> {
        self.protocol.borrow().clone()
    }
}

impl<S, P> TransportBase<S, P> {
    /// asyncio's `set_protocol`: `protocol` is the one called from now on
    /// (the next read, flow control, `connection_lost`); nothing is called
    /// on either protocol here. Once `connection_lost` has run (or the
    /// loop closed the transport) the slot stays empty: no callback would
    /// ever come, and keeping the protocol would keep the transport ↔
    /// protocol cycle alive. Both drops happen after the borrow ends.
    pub(crate) fn set_protocol(&self, protocol: P) {
        let old = {
            let mut slot = self.protocol.borrow_mut();
            match slot.as_mut() {
                Some(p) => Ok(std::mem::replace(p, protocol)),
                None => Err(protocol),
            }
        };
        drop(old);
    }

    /// Removes the writer if it is registered.
    pub(crate) fn remove_writer(&self) {
        if self.writer_registered.replace(false) {
            let _ = self.lp.remove_io(self.fd, Side::Write);
        }
    }
}

/// asyncio's `_SelectorTransport` methods, provided to every transport that
/// names its [`TransportBase`] and its hooks.
pub(crate) trait SelectorTransport: Sized + 'static {
    /// The socket type (a stream or a datagram socket).
    type Sock;
    /// The protocol handle: `StreamProtocol` (a `Protocol` or a
    /// `BufferedProtocol`), `Rc<dyn DatagramProtocol>`. Cloning it is
    /// cloning an `Rc`.
    type Proto: Clone;

    /// The shared state.
    fn base(&self) -> &TransportBase<Self::Sock, Self::Proto>;

    /// A strong reference to this transport (`None` while it is dropped).
    fn rc(&self) -> Option<Rc<Self>>;

    /// Calls `protocol.connection_made(this)`.
    fn connection_made(this: Rc<Self>, protocol: &Self::Proto);

    /// Calls `protocol.connection_lost(exc)`.
    fn connection_lost(protocol: &Self::Proto, exc: Option<Error>);

    /// True if the reader should be registered now (asyncio's
    /// `_add_reader` checks `is_reading()`).
    fn wants_reader(&self) -> bool;

    /// The reader callback: receive until `WouldBlock`.
    fn read_ready(&self);

    /// True if nothing waits in the write buffer.
    fn write_buffer_is_empty(&self) -> bool;

    /// Drops whatever waits in the write buffer.
    fn clear_write_buffer(&self);

    /// Runs last in `call_connection_lost`, after the socket is closed.
    fn after_connection_lost(&self) {}

    /// Runs just before the socket is closed (in `call_connection_lost`
    /// and `release_without_loop`), after the transport's own reader and
    /// writer are removed: what else uses the fd must let go of it now.
    fn before_socket_close(&self) {}

    /// asyncio's `__init__` tail: `call_soon` of `connection_made`,
    /// `_add_reader` and the waiter, here one handle (see [`start`](Self::start)).
    fn schedule_start(self: &Rc<Self>, waiter: Option<Future<()>>) -> crate::Result<()> {
        let t = self.clone();
        let base = self.base();
        // asyncio's `call_soon(self._protocol.connection_made, self)` binds
        // the protocol now: one set with `set_protocol` before the call
        // runs does not get it.
        let proto = base.protocol();
        let _ = base.lp.call_soon(move || t.start(proto, waiter))?;
        let me: Weak<dyn LoopClosed> = Rc::downgrade(self) as Weak<dyn LoopClosed>;
        base.tracked.set(Some(base.lp.track_until_close(me)));
        Ok(())
    }

    /// asyncio's `loop._transports[self._sock_fd] = self`
    /// (`_SelectorTransport.__init__`), for the socket transports only (the
    /// pipes stay out of it, as in asyncio): until its connection is lost,
    /// `add_reader` and the like refuse the fd while the transport is not
    /// closing (see [`EventLoop::ensure_fd_no_transport`]).
    fn register_fd(self: &Rc<Self>)
    where
        Self: fmt::Debug,
    {
        let base = self.base();
        base.lp
            .attach_transport(base.fd, Rc::downgrade(self) as Weak<dyn FdOwner>);
    }

    /// Calls `connection_made` on `proto` (the protocol the transport was
    /// made with), then registers the reader and completes `waiter`.
    /// asyncio runs these as three handles, so that a `connection_made`
    /// that raises still lets the reader start and the waiter finish; here
    /// one handle, and a guard that does the rest even on a panic.
    fn start(self: Rc<Self>, proto: Option<Self::Proto>, waiter: Option<Future<()>>) {
        let _rest = StartRest {
            t: self.clone(),
            waiter,
        };
        // Even if the transport was closed since it was made: asyncio
        // queued this `connection_made` in `__init__`, ahead of the
        // `_call_connection_lost` a close queues, so the protocol hears
        // both, in that order.
        if let Some(p) = proto {
            self.base().protocol_connected.set(true);
            Self::connection_made(self.clone(), &p);
        }
    }

    /// asyncio's `_add_reader`: registers `read_ready`, edge-triggered, if
    /// [`wants_reader`](Self::wants_reader). A failed registration is fatal.
    fn add_reader(&self) {
        if !self.wants_reader() {
            return;
        }
        let Some(me) = self.rc() else { return };
        let base = self.base();
        let res = base
            .lp
            .add_io_edge(base.fd, Side::Read, move || me.read_ready());
        if let Err(e) = res {
            self.force_close(Some(e));
        }
    }

    /// asyncio's `close`: stop reading; `connection_lost(None)` follows on
    /// the next iteration, or once the writer has flushed the buffer.
    fn close_transport(&self) {
        let base = self.base();
        if base.closing.replace(true) {
            return;
        }
        if base.lp.is_closed() {
            return self.release_without_loop();
        }
        let _ = base.lp.remove_io(base.fd, Side::Read);
        if self.write_buffer_is_empty() {
            base.conn_lost.set(base.conn_lost.get() + 1);
            base.remove_writer();
            if let Some(me) = self.rc() {
                let _ = base.lp.call_soon(move || me.call_connection_lost(None));
            }
        }
        // Else the writer flushes the buffer, then calls connection_lost.
    }

    /// asyncio's `_force_close`: drop the buffer, stop both callbacks, and
    /// schedule `connection_lost(exc)` once.
    fn force_close(&self, exc: Option<Error>) {
        let base = self.base();
        if base.conn_lost.get() > 0 {
            return;
        }
        self.clear_write_buffer();
        base.remove_writer();
        if !base.closing.replace(true) {
            let _ = base.lp.remove_io(base.fd, Side::Read);
        }
        base.conn_lost.set(base.conn_lost.get() + 1);
        if base.lp.is_closed() {
            return self.release_without_loop();
        }
        if let Some(me) = self.rc() {
            let _ = base.lp.call_soon(move || me.call_connection_lost(exc));
        }
    }

    /// asyncio's `_call_connection_lost`: tell the protocol, then close the
    /// socket and drop the protocol.
    fn call_connection_lost(&self, exc: Option<Error>) {
        let base = self.base();
        base.conn_lost.set(base.conn_lost.get().max(1));
        base.closing.set(true);
        // Both registrations are gone before the fd is closed (N4).
        let _ = base.lp.remove_io(base.fd, Side::Read);
        base.remove_writer();
        let proto = base.protocol.borrow_mut().take();
        // asyncio's `finally`: the socket is closed even if
        // `connection_lost` panics.
        let _rest = LostRest(self);
        if let Some(p) = proto {
            if base.protocol_connected.get() {
                Self::connection_lost(&p, exc);
            }
        }
    }

    /// The end of a transport whose loop is closed (see the module docs):
    /// the write buffer, the socket and the protocol are dropped, and no
    /// protocol method is called. The loop's registrations went with it.
    fn release_without_loop(&self) {
        let base = self.base();
        base.closing.set(true);
        base.conn_lost.set(base.conn_lost.get().max(1));
        base.writer_registered.set(false);
        self.clear_write_buffer();
        self.before_socket_close();
        let proto = base.protocol.borrow_mut().take();
        let sock = base.sock.borrow_mut().take();
        drop(sock);
        drop(proto);
        base.untrack();
        self.after_connection_lost();
    }
}

/// A resource the loop releases when it closes, if it is still alive then
/// (asyncio leaves this to the garbage collector; see the module docs).
pub(crate) trait LoopClosed {
    /// The loop is closed: release what needs the loop, without calling
    /// back into user code.
    fn loop_closed(&self);
}

impl<T: SelectorTransport> LoopClosed for T {
    fn loop_closed(&self) {
        if self.base().sock.borrow().is_some() || self.base().protocol.borrow().is_some() {
            self.release_without_loop();
        }
    }
}

/// What the loop's map of transports by fd (asyncio's `_transports`)
/// needs of one: whether it is closing, and its `Debug` form for the
/// error.
pub(crate) trait FdOwner: fmt::Debug {
    /// asyncio's `is_closing()`: a closing transport no longer claims its fd.
    fn closing(&self) -> bool;
}

impl<T: SelectorTransport + fmt::Debug> FdOwner for T {
    fn closing(&self) -> bool {
        self.base().closing.get()
    }
}

impl<S, P> TransportBase<S, P> {
    /// Leaves the loop's list of resources to release at close.
    fn untrack(&self) {
        if let Some(key) = self.tracked.take() {
            self.lp.untrack(key);
        }
    }
}

/// The end of [`SelectorTransport::call_connection_lost`], after the
/// protocol heard: close the socket, leave the loop's list, run the
/// transport's last hook. In `Drop`, so that it also runs if
/// `connection_lost` panics.
struct LostRest<'a, T: SelectorTransport>(&'a T);

impl<T: SelectorTransport> Drop for LostRest<'_, T> {
    fn drop(&mut self) {
        let t = self.0;
        let base = t.base();
        t.before_socket_close();
        // While the fd is still ours: no other transport can have it yet.
        base.lp
            .detach_transport(base.fd, t as *const T as *const ());
        drop(base.sock.borrow_mut().take());
        base.untrack();
        t.after_connection_lost();
    }
}

/// The second half of [`SelectorTransport::start`]: start reading, complete
/// the waiter. In `Drop`, so that it also runs if `connection_made` panics.
struct StartRest<T: SelectorTransport> {
    t: Rc<T>,
    waiter: Option<Future<()>>,
}

impl<T: SelectorTransport> Drop for StartRest<T> {
    fn drop(&mut self) {
        if self.t.base().conn_lost.get() == 0 {
            self.t.add_reader();
        }
        if let Some(w) = self.waiter.take() {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }
}
