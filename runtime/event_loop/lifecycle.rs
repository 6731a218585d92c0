//! Running, stopping and closing the loop. Mirrors `BaseEventLoop`'s
//! `run_forever`, `run_until_complete`, `stop`, `is_running`, `is_closed`,
//! `close`, `_check_running` and `__del__` in `Lib/asyncio/base_events.py`.
//!
//! `run_forever` is asyncio's `while True: self._run_once(); if
//! self._stopping: break`, around the iteration in `event_loop.rs`. Also
//! here: what `close()` releases besides the queues (close hooks, per-loop
//! extensions, transports still open), and [`LoopRef`], the loop's own
//! references to itself, which decide when a dropped loop is closed.
//!
//! # Invariants
//! - A run is entered only after its checks pass (a closed loop, L5; this
//!   loop or another one already running on the thread, L4), so a refused
//!   call changes nothing; `run_until_complete` checks before it creates
//!   its task. Once entered, `running` and the thread's running loop are
//!   set together, and `RunGuard` clears `running` and `stopping` and puts
//!   the previous running loop back however the run ends, unwinding
//!   included: no stale stop flag survives a run (L7).
//! - `close()` always finishes: a panic in the `Drop` of something it
//!   drops (a callback's closure, a task's context, a protocol) is
//!   reported, and the rest is still dropped and released.
//! - `internal_refs` counts the strong references held by the loop's own
//!   machinery (`LoopRef`: futures, tasks, transports, servers). When an
//!   [`EventLoop`] is dropped and every other strong reference is one of
//!   those, no user can reach the loop any more, and it is closed then
//!   (asyncio's `BaseEventLoop.__del__`), which breaks the cycles through
//!   its tasks and callbacks.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};

use super::running_loop::{CURRENT, RUNNING};
use super::{try_running_loop, EventLoop, ExceptionContext, LoopInner};
use crate::error::{panic_message, Error, Result};
use crate::selector_transport::LoopClosed;
use crate::tasks::Task;

/// asyncio's `BaseEventLoop.__del__`: a loop dropped without
/// [`close`](EventLoop::close) is closed when the last handle a user could
/// reach it by goes away (its pending tasks are destroyed and reported, its
/// file descriptors closed). In debug mode this is reported on stderr, as
/// asyncio's `ResourceWarning("unclosed event loop")`.
///
/// An `EventLoop` handle is what keeps a loop open; the references of the
/// loop's own machinery (futures, tasks, transports, servers) are not
/// counted, so a [`Task`]'s or a [`Future`](crate::Future)'s `get_loop()`
/// gives the closed loop once the last handle is gone (in CPython the task
/// would keep the loop alive). The other way round, a task body or a
/// callback that keeps an `EventLoop` of its own keeps the loop open, as
/// such a cycle does in CPython until its collector runs. Call `close()`
/// (or use [`run`](crate::run)) to be sure.
impl Drop for EventLoop {
    #[inline]
    fn drop(&mut self) {
        let inner = &self.inner;
        if Rc::strong_count(inner) == 1 + inner.internal_refs.get()
            && !inner.closed.get()
            && !inner.running.get()
        {
            self.close_unreachable();
        }
    }
}

impl EventLoop {
    #[cold]
    #[inline(never)]
    fn close_unreachable(&self) {
        // While the thread's locals are being destroyed (a loop left in
        // `set_event_loop` at thread exit), closing could touch a destroyed
        // one; the thread is ending, so the loop is left as it is.
        if RUNNING.try_with(|_| ()).is_err() || CURRENT.try_with(|_| ()).is_err() {
            return;
        }
        if self.debug() {
            eprintln!("tulip: unclosed event loop {self:?} dropped: closing it");
        }
        let _ = self.close();
    }
}

/// The loop itself goes, closed or not: a loop dropped with its thread's
/// locals (one left in `set_event_loop`) cannot be closed there (see
/// `close_unreachable`). Its [`LoopHandle`](crate::LoopHandle)s outlive it, so they must
/// learn it is gone: the shared state is marked closed, and later calls
/// are refused, as they are once asyncio's `__del__` has closed a loop.
/// What other threads sent meanwhile is dropped, not left in the channel
/// for ever (it may hold a handle, and so the channel itself).
impl Drop for LoopInner {
    fn drop(&mut self) {
        self.shared.close();
        self.shared.drop_pending("a dropped loop");
    }
}

/// A strong reference to a loop held by the loop's own machinery (a
/// future's or task's core, a transport, a server): it does not keep the
/// loop open for users (see [`EventLoop`]'s `Drop`). It derefs to the loop.
pub(crate) struct LoopRef(EventLoop);

impl LoopRef {
    pub(crate) fn new(lp: EventLoop) -> LoopRef {
        let n = &lp.inner.internal_refs;
        n.set(n.get() + 1);
        LoopRef(lp)
    }

    /// A handle of the user's kind (for `get_loop()`).
    pub(crate) fn user_handle(&self) -> EventLoop {
        self.0.clone()
    }
}

impl Clone for LoopRef {
    fn clone(&self) -> LoopRef {
        LoopRef::new(self.0.clone())
    }
}

impl Drop for LoopRef {
    #[inline]
    fn drop(&mut self) {
        // Uncounted first: the `EventLoop` inside is dropped next and must
        // not mistake itself for a user's last handle while users remain.
        let n = &self.0.inner.internal_refs;
        n.set(n.get() - 1);
    }
}

impl std::ops::Deref for LoopRef {
    type Target = EventLoop;
    #[inline]
    fn deref(&self) -> &EventLoop {
        &self.0
    }
}

impl fmt::Debug for LoopRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Restores the loop's running state when `run_forever` ends, even by unwinding.
struct RunGuard<'a> {
    lp: &'a EventLoop,
    prev: Option<EventLoop>,
    /// The context `Context::run` entered around this run, put back last.
    _outside: crate::contextvars::OutsideAside,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        // asyncio's run_forever `finally:` block.
        self.lp.inner.stopping.set(false);
        self.lp.inner.running.set(false);
        let prev = self.prev.take();
        let me = RUNNING.with(|r| r.replace(prev));
        drop(me);
    }
}

impl EventLoop {
    // ===== running and stopping =====

    /// Runs until [`stop`](EventLoop::stop) is called (asyncio's `run_forever`).
    ///
    /// Fails if the loop is closed, already running, or another loop runs on
    /// this thread (L4). Returns [`Error::Interrupted`] if a callback called
    /// [`interrupt`](crate::interrupt); the loop stays usable (L7).
    pub fn run_forever(&self) -> Result<()> {
        self.check_closed()?;
        self.check_running()?;
        self.inner.running.set(true);
        let prev = RUNNING.with(|r| r.replace(Some(self.clone())));
        let _guard = RunGuard {
            lp: self,
            prev,
            _outside: crate::contextvars::put_outside_aside(),
        };
        loop {
            self.iteration()?;
            if self.inner.stopping.get() {
                break;
            }
        }
        Ok(())
    }

    /// Runs until `fut` completes and returns its result (asyncio's
    /// `run_until_complete`). `fut` is wrapped in a task first.
    ///
    /// Fails with "event loop stopped before future completed" if the loop
    /// was stopped first (L4).
    ///
    /// ```
    /// let lp = tulip::EventLoop::new().unwrap();
    /// let n = lp.run_until_complete(async { tulip::sleep(0.001).await?; Ok(6 * 7) }).unwrap();
    /// assert_eq!(n, 42);
    /// assert_eq!(lp.run_until_complete(async { Ok("again") }).unwrap(), "again");
    /// lp.close().unwrap();
    /// assert!(matches!(lp.run_until_complete(async { Ok(()) }), Err(tulip::Error::Closed)));
    /// ```
    pub fn run_until_complete<T, F>(&self, fut: F) -> Result<T>
    where
        T: 'static,
        F: std::future::Future<Output = Result<T>> + 'static,
    {
        self.check_closed()?;
        // Before the task exists: a refused call must leave nothing behind.
        self.check_running()?;
        let task = self.create_task(fut)?;
        // asyncio: `if new_task: future._log_destroy_pending = False`. The
        // caller never has this task: left pending by a stopped run, it is
        // dropped at close without a report.
        task.no_log_destroy_pending();
        self.run_task_until_complete(&task)
    }

    /// The body of `run_until_complete` for a task that already exists
    /// (`run()` creates exactly one task, as asyncio's does).
    pub(crate) fn run_task_until_complete<T: 'static>(&self, task: &Task<T>) -> Result<T> {
        // asyncio's `_run_until_complete_cb`. If run_forever ends some other
        // way (an interrupt, or a `stop()` from the body itself) after the
        // task finished in the same iteration, the callback is already in
        // the ready queue, where `remove_done_callback` can't reach it:
        // `armed` keeps that stale call from stopping the *next* run (L7).
        // asyncio guards only the task's own KeyboardInterrupt (bpo-22429);
        // after a body that calls `loop.stop()` and returns, CPython's next
        // run_until_complete fails with "stopped before future completed".
        // tulip deliberately does not: a stale stop is never wanted.
        let armed = Rc::new(Cell::new(true));
        let (stopper, live) = (self.clone(), armed.clone());
        let cb = task.add_done_callback(move |_| {
            if live.get() {
                stopper.stop()
            }
        });
        let res = self.run_forever();
        armed.set(false);
        task.remove_done_callback(cb);
        if let Err(e) = res {
            if task.done() && !task.cancelled() {
                let _ = task.exception(); // mark retrieved, as asyncio does
            }
            return Err(e);
        }
        if !task.done() {
            return Err(Error::runtime(
                "event loop stopped before future completed: stop() was called while it ran; let the future finish (or cancel it) instead",
            ));
        }
        task.take_result()
    }

    /// Asks the loop to stop after the current iteration (asyncio's `stop`).
    /// Called before `run_forever`, it makes that run exactly one iteration
    /// with a zero poll timeout (L3).
    pub fn stop(&self) {
        self.inner.stopping.set(true);
    }

    /// True while `run_forever`/`run_until_complete` runs.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// True once [`close`](EventLoop::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Closes the loop: drops pending callbacks, timers and registrations,
    /// reports tasks that are still pending ("Task was destroyed but it is
    /// pending!") and drops their bodies, and runs the close hooks (executor, watchers). Fails on a
    /// running loop; closing twice is a no-op (L5). The custom exception
    /// handler is dropped last, after close's own reports: later reports go
    /// to the default handler.
    pub fn close(&self) -> Result<()> {
        if self.inner.running.get() {
            return Err(Error::runtime(
                "cannot close a running event loop: stop it first",
            ));
        }
        if self.inner.closed.replace(true) {
            return Ok(());
        }
        self.inner.shared.close();
        // What is dropped from here on may hold the user's values, whose
        // `Drop` may panic: each drop is guarded (`at_close`), so that one
        // panic neither ends the closing half-way nor, with a second one in
        // the same container, aborts.
        let hooks = std::mem::take(&mut *self.inner.on_close.borrow_mut());
        for hook in hooks.into_iter().rev() {
            self.at_close(hook);
        }
        // Take everything out first, drop it after the borrows end: dropping
        // tasks and futures may call the exception handler.
        let ready = std::mem::take(&mut *self.inner.ready.borrow_mut());
        let timers = std::mem::take(&mut *self.inner.scheduled.borrow_mut());
        let regs = self.inner.reactor.borrow_mut().clear();
        let tasks: Vec<_> = self.inner.tasks.borrow_mut().drain().collect();
        let remote: Vec<_> = self.inner.shared.rx.try_iter().collect();
        let ext = std::mem::take(&mut *self.inner.extensions.borrow_mut());
        for entry in ready {
            self.at_close(|| {
                entry.discard();
                drop(entry);
            });
        }
        for timer in timers.into_vec() {
            self.at_close(|| drop(timer));
        }
        for reg in regs {
            self.at_close(|| drop(reg));
        }
        for msg in remote {
            self.at_close(|| drop(msg));
        }
        for t in &tasks {
            t.destroyed_pending();
        }
        for t in tasks {
            self.at_close(|| drop(t));
        }
        for e in ext {
            self.at_close(|| drop(e));
        }
        let fds = std::mem::take(&mut *self.inner.transports.borrow_mut());
        drop(fds);
        // Transports still open now have no loop to run on: release them.
        let open = std::mem::take(&mut *self.inner.until_close.borrow_mut());
        for (_, resource) in open {
            if let Some(r) = resource.upgrade() {
                self.at_close(|| {
                    r.loop_closed();
                    drop(r);
                });
            }
        }
        // Last, once close's own reports are made: the custom exception
        // handler is the one callback a closed loop would still keep, and
        // one that captured an `EventLoop` would keep the loop (its epoll
        // and wake-up fds) alive for ever. CPython's collector frees that
        // cycle; here close() is the sure way, so it breaks it. Later
        // reports (a future dropped after close) go to the default handler.
        let handler = self.inner.exception_handler.borrow_mut().take();
        drop(handler);
        Ok(())
    }

    /// Runs a step of [`close`](EventLoop::close) that drops what the
    /// user gave the loop: a panic in a `Drop` there is reported and
    /// closing goes on, as CPython prints what a `__del__` raises
    /// ("Exception ignored in ...") and carries on. There is no run to end,
    /// so an [`Interrupt`](crate::Interrupt) is reported too.
    pub(crate) fn at_close(&self, f: impl FnOnce()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            self.report_ignoring_interrupt(&ExceptionContext {
                message: "Exception ignored while closing the event loop".into(),
                error: Some(Error::Panic(panic_message(&*payload))),
                ..Default::default()
            });
        }
    }

    /// Puts `resource` on the list of what [`close`](EventLoop::close)
    /// releases; returns its key for [`untrack`](EventLoop::untrack).
    pub(crate) fn track_until_close(&self, resource: Weak<dyn LoopClosed>) -> usize {
        self.inner.until_close.borrow_mut().insert(resource)
    }

    /// Takes a resource off that list (no-op once the loop has closed).
    pub(crate) fn untrack(&self, key: usize) {
        if !self.inner.closed.get() {
            self.inner.until_close.borrow_mut().try_remove(key);
        }
    }

    /// asyncio's `_check_running`: this loop must not be running, and no
    /// other loop may run on this thread (L4).
    pub(super) fn check_running(&self) -> Result<()> {
        if self.inner.running.get() {
            return Err(Error::runtime(
                "this event loop is already running: from inside it, await the work or schedule it with create_task",
            ));
        }
        if try_running_loop().is_some() {
            return Err(Error::runtime(
                "cannot run the event loop while another loop is running on this thread: await the future in that loop, or run this one on another thread",
            ));
        }
        Ok(())
    }

    // ===== close hooks and extensions =====

    /// Registers a hook that [`close`](EventLoop::close) runs (hooks run
    /// most recent first). Used by the executor, signal and child-watcher
    /// modules; available for user extensions.
    pub fn add_close_hook(&self, f: impl FnOnce() + 'static) {
        self.inner.on_close.borrow_mut().push(Box::new(f));
    }

    /// A per-loop singleton of type `T`, created by `init` on first use.
    /// Modules keep their loop-wide state here (signal handlers, the child
    /// watcher, the default executor); it is dropped when the loop closes.
    pub fn extension<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        if let Some(found) = self
            .inner
            .extensions
            .borrow()
            .iter()
            .find_map(|e| e.clone().downcast::<T>().ok())
        {
            return found;
        }
        let value = Rc::new(init());
        self.inner.extensions.borrow_mut().push(value.clone());
        value
    }
}
