//! The reactor: file descriptors watched with mio. Mirrors the selector half of
//! `Lib/asyncio/selector_events.py` (`_add_reader`, `_remove_reader`,
//! `_add_writer`, `_remove_writer`, `_process_events`), and holds the public
//! `EventLoop::add_reader`/`add_writer` family at the end of the file.
//!
//! asyncio keeps a `selectors.DefaultSelector` whose keys map a file descriptor
//! to a `(reader, writer)` pair of handles. Here a [`Slab`] of
//! `Registration`s plays that part: the slab key is the mio `Token`, and a
//! `HashMap` maps each fd to its key.
//!
//! ## Level-triggered on top of edge-triggered
//! asyncio's selector is level-triggered: a reader is called on every
//! iteration while its fd stays readable. mio (epoll with `EPOLLET`) reports an
//! edge once. For a [`Trigger::Level`] registration the reactor re-arms the fd
//! (`EPOLL_CTL_MOD`, through `Registry::reregister`) right after its callback
//! ran; the kernel then re-checks readiness and reports the fd again if it is
//! still ready. [`Trigger::Edge`] registrations (the transports, the pidfd
//! watcher, the signal self-pipe) promise to drain their fd until `WouldBlock`
//! and skip that syscall.
//!
//! # Invariants
//! - One registration per fd; its interest is the union of reader and writer.
//!   An fd with neither is deregistered and its slab slot freed.
//! - The reactor never runs a callback: `poll` (asyncio's `_process_events`)
//!   only pushes the handles onto the ready queue, as asyncio's
//!   `_add_callback` does. Nor does it drop one: a removed or replaced
//!   handle is handed back and dropped (with the user's closure) once the
//!   reactor is no longer borrowed.
//! - `Token(WAKER_TOKEN)` is reserved for the cross-thread [`mio::Waker`].
//! - The public `add_reader`/`add_writer`/`remove_reader`/`remove_writer`
//!   (and the `_edge` adders) never touch the fd of a socket transport that
//!   is not closing: they fail with `Error::Runtime`, as asyncio's
//!   `_ensure_fd_no_transport` raises `RuntimeError`. The transports use
//!   `add_io_edge`/`remove_io`, which skip the check (asyncio's
//!   `_add_reader`), so their reads and writes never pay for it.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use std::panic::Location;
use std::rc::Weak;

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopInner};
use crate::events::Handle;
use crate::selector_transport::FdOwner;

/// The token of the cross-thread waker.
pub(crate) const WAKER_TOKEN: usize = usize::MAX;

/// How many events one `epoll_wait` returns at most.
const EVENTS_CAPACITY: usize = 1024;

/// How readiness is reported for a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// asyncio's semantics: the callback runs on every iteration while the fd
    /// is ready. Costs one `epoll_ctl` after each callback.
    Level,
    /// The callback runs once per readiness edge; it must read (or write)
    /// until `WouldBlock`, or it may never be called again.
    Edge,
}

/// What the reactor knows of one fd.
pub(crate) struct Registration {
    pub(crate) fd: RawFd,
    pub(crate) reader: Option<Handle>,
    pub(crate) writer: Option<Handle>,
    pub(crate) read_trigger: Trigger,
    pub(crate) write_trigger: Trigger,
    /// An event reported the read side closed (`EPOLLRDHUP`, `EPOLLHUP`) or
    /// an error. Sticky: a closed read side does not reopen.
    pub(crate) read_closed: bool,
}

impl Registration {
    fn interest(&self) -> Option<Interest> {
        match (self.reader.is_some(), self.writer.is_some()) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// Which side of a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Read,
    Write,
}

pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    regs: Slab<Registration>,
    by_fd: HashMap<RawFd, usize>,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            regs: Slab::new(),
            by_fd: HashMap::new(),
        })
    }

    pub(crate) fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// Sets the reader or writer of `fd`, replacing (and cancelling) an old one.
    /// A registration epoll has forgotten (its file was closed without
    /// `remove`, the number reused) is dropped whole and `fd` registered afresh.
    ///
    /// Returns the handles it let go of, for the caller to drop once the
    /// reactor is no longer borrowed: dropping one drops the user's closure.
    pub(crate) fn add(
        &mut self,
        fd: RawFd,
        side: Side,
        mut handle: Handle,
        trigger: Trigger,
    ) -> io::Result<[Option<Handle>; 2]> {
        let mut released = [None, None];
        if let Some(&key) = self.by_fd.get(&fd) {
            let reg = &mut self.regs[key];
            let (old, old_trigger) = match side {
                Side::Read => (
                    reg.reader.replace(handle),
                    std::mem::replace(&mut reg.read_trigger, trigger),
                ),
                Side::Write => (
                    reg.writer.replace(handle),
                    std::mem::replace(&mut reg.write_trigger, trigger),
                ),
            };
            let interest = reg.interest().expect("a side was just set");
            let res = self
                .poll
                .registry()
                .reregister(&mut SourceFd(&fd), Token(key), interest);
            match res {
                Ok(()) => {
                    if let Some(old) = &old {
                        old.cancel();
                    }
                    return Ok([old, None]);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // epoll has forgotten `fd`: the file it was registered
                    // for was closed without `remove_*`, and the number now
                    // names another file. The stale registration and its
                    // callbacks belong to the closed file: drop them and
                    // register the new one afresh below.
                    let stale = self.regs.remove(key);
                    self.by_fd.remove(&fd);
                    let (new, other) = match side {
                        Side::Read => (stale.reader, stale.writer),
                        Side::Write => (stale.writer, stale.reader),
                    };
                    for h in [&other, &old].into_iter().flatten() {
                        h.cancel();
                    }
                    handle = new.expect("the side was just set");
                    released = [other, old];
                }
                Err(e) => {
                    // Put the registration back as it was, trigger included.
                    let reg = &mut self.regs[key];
                    match side {
                        Side::Read => (reg.reader, reg.read_trigger) = (old, old_trigger),
                        Side::Write => (reg.writer, reg.write_trigger) = (old, old_trigger),
                    }
                    return Err(e);
                }
            }
        }
        let entry = self.regs.vacant_entry();
        let key = entry.key();
        let (reader, writer) = match side {
            Side::Read => (Some(handle), None),
            Side::Write => (None, Some(handle)),
        };
        let reg = Registration {
            fd,
            reader,
            writer,
            read_trigger: trigger,
            write_trigger: trigger,
            read_closed: false,
        };
        let interest = reg.interest().expect("a side was just set");
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(key), interest)?;
        entry.insert(reg);
        self.by_fd.insert(fd, key);
        Ok(released)
    }

    /// Removes the reader or writer of `fd`. Returns its handle if one was
    /// set, for the caller to drop once the reactor is no longer borrowed.
    pub(crate) fn remove(&mut self, fd: RawFd, side: Side) -> Option<Handle> {
        let &key = self.by_fd.get(&fd)?;
        let reg = &mut self.regs[key];
        let old = match side {
            Side::Read => reg.reader.take(),
            Side::Write => reg.writer.take(),
        };
        let old = old?;
        old.cancel();
        match reg.interest() {
            Some(interest) => {
                // The fd may already be closed by its owner; nothing to undo then.
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut SourceFd(&fd), Token(key), interest);
            }
            None => {
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                self.regs.remove(key);
                self.by_fd.remove(&fd);
            }
        }
        Some(old)
    }

    /// Re-arms a level-triggered fd after its callback ran, so that epoll
    /// reports it again if it is still ready.
    pub(crate) fn rearm(&mut self, fd: RawFd) {
        if let Some(&key) = self.by_fd.get(&fd) {
            if let Some(interest) = self.regs[key].interest() {
                let _ = self
                    .poll
                    .registry()
                    .reregister(&mut SourceFd(&fd), Token(key), interest);
            }
        }
    }

    pub(crate) fn has(&self, fd: RawFd, side: Side) -> bool {
        self.by_fd.get(&fd).is_some_and(|&key| match side {
            Side::Read => self.regs[key].reader.is_some(),
            Side::Write => self.regs[key].writer.is_some(),
        })
    }

    #[allow(dead_code)]
    pub(crate) fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// `epoll_wait` for at most `timeout`, then pushes the handles of the
    /// ready fds into `out` (asyncio's `_process_events`). Returns whether the
    /// cross-thread waker fired.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        out: &mut impl FnMut(Handle),
    ) -> io::Result<bool> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut woken = false;
        for ev in self.events.iter() {
            let key = ev.token().0;
            if key == WAKER_TOKEN {
                woken = true;
                continue;
            }
            // A spurious event for a slot freed earlier in this batch is skipped.
            let Some(reg) = self.regs.get_mut(key) else {
                continue;
            };
            let closed_or_err = ev.is_error();
            if ev.is_read_closed() || closed_or_err {
                reg.read_closed = true;
            }
            if ev.is_readable() || ev.is_read_closed() || closed_or_err {
                if let Some(h) = &reg.reader {
                    if !h.cancelled() {
                        out(h.clone());
                    }
                }
            }
            if ev.is_writable() || ev.is_write_closed() || closed_or_err {
                if let Some(h) = &reg.writer {
                    if !h.cancelled() {
                        out(h.clone());
                    }
                }
            }
        }
        Ok(woken)
    }

    /// Drops every registration (the loop is closing).
    pub(crate) fn clear(&mut self) -> Vec<Handle> {
        let mut handles = Vec::new();
        for reg in self.regs.drain() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&reg.fd));
            handles.extend(reg.reader);
            handles.extend(reg.writer);
        }
        self.by_fd.clear();
        handles
    }

    /// True once an event reported `fd`'s read side closed (see
    /// `Registration::read_closed`).
    pub(crate) fn read_closed(&self, fd: RawFd) -> bool {
        self.by_fd
            .get(&fd)
            .is_some_and(|&key| self.regs[key].read_closed)
    }

    pub(crate) fn trigger(&self, fd: RawFd, side: Side) -> Option<Trigger> {
        let key = *self.by_fd.get(&fd)?;
        let reg = &self.regs[key];
        Some(match side {
            Side::Read => reg.read_trigger,
            Side::Write => reg.write_trigger,
        })
    }
}

// ===== impl EventLoop: readers and writers =====

/// asyncio's `add_reader`/`add_writer` family: the selector half of
/// `BaseSelectorEventLoop`, on top of the reactor above.
///
/// Like asyncio's, the public methods refuse the fd of a socket transport
/// that is not closing (`_ensure_fd_no_transport`): a reader or writer set
/// on it would replace the transport's own, and the connection would stall.
/// The transports register theirs with the crate's `add_io_edge` and
/// `remove_io` (asyncio's `_add_reader`, `_remove_reader`), which skip that
/// check.
impl EventLoop {
    /// asyncio's `add_reader(fd, callback)`: calls `f` on every iteration
    /// while `fd` is readable (level-triggered). Replaces an earlier reader.
    ///
    /// `f` runs in a snapshot of the context values current here, taken
    /// once, as asyncio's reader `Handle` takes `copy_context()`: what one
    /// call sets, the next one sees. With no values current, `f` starts
    /// with none, and the context its first `set` makes is kept for the
    /// later calls (asyncio's copy is empty then, and persists all the
    /// same). The same goes for the other adders.
    ///
    /// The loop does not own `fd`: remove the reader before closing it.
    /// The fd of a live socket transport is refused with
    /// [`Error::Runtime`], as asyncio raises `RuntimeError`; so are
    /// [`add_writer`](EventLoop::add_writer), the `_edge` variants,
    /// [`remove_reader`](EventLoop::remove_reader) and
    /// [`remove_writer`](EventLoop::remove_writer).
    #[track_caller]
    pub fn add_reader<F: Fn() + 'static>(&self, fd: RawFd, f: F) -> Result<()> {
        self.ensure_fd_no_transport(fd)?;
        self.add_io(fd, Side::Read, f, Trigger::Level, Location::caller())
            .map(drop)
    }

    /// asyncio's `add_writer(fd, callback)`: calls `f` while `fd` is writable.
    #[track_caller]
    pub fn add_writer<F: Fn() + 'static>(&self, fd: RawFd, f: F) -> Result<()> {
        self.ensure_fd_no_transport(fd)?;
        self.add_io(fd, Side::Write, f, Trigger::Level, Location::caller())
            .map(drop)
    }

    /// Like [`add_reader`](EventLoop::add_reader) but edge-triggered: `f` is
    /// called once per readiness edge and must read until `WouldBlock`.
    /// Saves one `epoll_ctl` per call.
    #[track_caller]
    pub fn add_reader_edge<F: Fn() + 'static>(&self, fd: RawFd, f: F) -> Result<()> {
        self.ensure_fd_no_transport(fd)?;
        self.add_io_edge(fd, Side::Read, f)
    }

    /// Like [`add_writer`](EventLoop::add_writer) but edge-triggered: `f`
    /// must write until `WouldBlock` or until it has nothing left to write.
    #[track_caller]
    pub fn add_writer_edge<F: Fn() + 'static>(&self, fd: RawFd, f: F) -> Result<()> {
        self.ensure_fd_no_transport(fd)?;
        self.add_io_edge(fd, Side::Write, f)
    }

    /// An edge-triggered reader or writer, without the transport check:
    /// asyncio's `_add_reader`/`_add_writer`, for the transports' own.
    #[track_caller]
    pub(crate) fn add_io_edge<F: Fn() + 'static>(&self, fd: RawFd, side: Side, f: F) -> Result<()> {
        self.add_io(fd, side, f, Trigger::Edge, Location::caller())
            .map(drop)
    }

    /// Sets `f` as the reader or writer of `fd`; returns its handle, as
    /// asyncio's `_add_reader`/`_add_writer` do (the handle is cancelled
    /// once it is removed or replaced). Like every asyncio `Handle`, it
    /// runs in a snapshot of the context values current here (see
    /// `contextvars`): a transport's protocol callbacks see the values of
    /// the code that made, or last resumed, the transport.
    pub(crate) fn add_io<F: Fn() + 'static>(
        &self,
        fd: RawFd,
        side: Side,
        f: F,
        trigger: Trigger,
        at: &'static Location<'static>,
    ) -> Result<Handle> {
        // Reports name the callback, not the wrappers below.
        let name = std::any::type_name::<F>();
        let ctx = crate::contextvars::RepeatContext::new();
        self.add_io_in(fd, side, move || ctx.run(&f), name, trigger, at)
    }

    fn add_io_in<F: Fn() + 'static>(
        &self,
        fd: RawFd,
        side: Side,
        f: F,
        name: &'static str,
        trigger: Trigger,
        at: &'static Location<'static>,
    ) -> Result<Handle> {
        self.check_closed()?;
        if fd < 0 {
            return Err(Error::invalid_argument(format!(
                "invalid file descriptor {fd}: pass an open fd (>= 0), such as as_raw_fd() of a socket"
            )));
        }
        let handle = match trigger {
            Trigger::Edge => Handle::repeat(f, name, at),
            Trigger::Level => {
                let weak = self.downgrade();
                Handle::repeat(
                    move || {
                        // Re-arm when the callback is over, even if it panicked
                        // (the panic goes on to the exception handler, and the
                        // reader must still run next time the fd is ready, L6).
                        let _rearm = Rearm {
                            weak: &weak,
                            fd,
                            side,
                        };
                        f();
                    },
                    name,
                    at,
                )
            }
        };
        let res = self
            .inner
            .reactor
            .borrow_mut()
            .add(fd, side, handle.clone(), trigger);
        // The replaced callback is dropped here, the reactor no longer
        // borrowed: its Drop is the user's code, which may use the loop.
        drop(res.map_err(Error::from)?);
        Ok(handle)
    }

    /// asyncio's `remove_reader(fd)`. Returns whether a reader was set.
    pub fn remove_reader(&self, fd: RawFd) -> Result<bool> {
        self.ensure_fd_no_transport(fd)?;
        self.remove_io(fd, Side::Read)
    }

    /// asyncio's `remove_writer(fd)`. Returns whether a writer was set.
    pub fn remove_writer(&self, fd: RawFd) -> Result<bool> {
        self.ensure_fd_no_transport(fd)?;
        self.remove_io(fd, Side::Write)
    }

    /// Removes the reader or writer of `fd`, without the transport check
    /// (asyncio's `_remove_reader`/`_remove_writer`). Returns whether one
    /// was set.
    pub(crate) fn remove_io(&self, fd: RawFd, side: Side) -> Result<bool> {
        self.check_closed()?;
        let old = self.inner.reactor.borrow_mut().remove(fd, side);
        // Dropped once the reactor is no longer borrowed (see `add_io`).
        Ok(old.is_some())
    }

    /// asyncio's `_ensure_fd_no_transport(fd)`: fails if `fd` is the socket
    /// of a transport that is not closing.
    pub(crate) fn ensure_fd_no_transport(&self, fd: RawFd) -> Result<()> {
        let owner = self
            .inner
            .transports
            .borrow()
            .get(&fd)
            .and_then(Weak::upgrade);
        match owner {
            Some(t) if !t.closing() => Err(Error::runtime(format!(
                "file descriptor {fd} is used by transport {t:?}: \
                 use the transport (pause_reading, write, close) instead"
            ))),
            _ => Ok(()),
        }
    }

    /// Records `transport` as the user of `fd` (asyncio's
    /// `loop._transports[fd] = transport`).
    pub(crate) fn attach_transport(&self, fd: RawFd, transport: Weak<dyn FdOwner>) {
        self.inner.transports.borrow_mut().insert(fd, transport);
    }

    /// Forgets `transport` as the user of `fd`, if it is the one recorded.
    pub(crate) fn detach_transport(&self, fd: RawFd, transport: *const ()) {
        let mut map = self.inner.transports.borrow_mut();
        if map
            .get(&fd)
            .is_some_and(|t| std::ptr::addr_eq(t.as_ptr(), transport))
        {
            map.remove(&fd);
        }
    }

    /// True once epoll reported `fd`'s read side closed (the peer's FIN,
    /// a hang-up, or an error) while `fd` was registered.
    ///
    /// An edge-triggered reader uses it to skip the last `read` that would
    /// only say `WouldBlock`: after a short read the socket is drained, and
    /// the next arrival is a new edge — unless the FIN came with the data,
    /// which raises no new edge. So: stop after a short read unless this is
    /// true (tokio's `clear_readiness` keeps the same closed bit).
    pub fn fd_read_closed(&self, fd: RawFd) -> bool {
        // Borrowed (never during a callback): answer "maybe", the safe side.
        self.inner
            .reactor
            .try_borrow()
            .map_or(true, |r| r.read_closed(fd))
    }

    /// True if `fd` has a reader.
    pub fn has_reader(&self, fd: RawFd) -> bool {
        self.inner.reactor.borrow().has(fd, Side::Read)
    }

    /// True if `fd` has a writer.
    pub fn has_writer(&self, fd: RawFd) -> bool {
        self.inner.reactor.borrow().has(fd, Side::Write)
    }
}

/// Re-arms a level-triggered fd when dropped, so that epoll reports it again
/// while it stays ready (see `reactor.rs`).
struct Rearm<'a> {
    weak: &'a Weak<LoopInner>,
    fd: RawFd,
    side: Side,
}

impl Drop for Rearm<'_> {
    fn drop(&mut self) {
        if let Some(inner) = self.weak.upgrade() {
            if let Ok(mut r) = inner.reactor.try_borrow_mut() {
                if r.trigger(self.fd, self.side) == Some(Trigger::Level) {
                    r.rearm(self.fd);
                }
            }
        }
    }
}
