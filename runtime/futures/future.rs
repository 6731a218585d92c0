//! [`Future`], asyncio's `Future` as its users see it: set a result, an
//! error or cancel it, read it, add done callbacks, await it. Mirrors the
//! public methods of `Future` in `Lib/asyncio/futures.py` (`set_result`,
//! `set_exception`, `cancel`, `done`, `cancelled`, `result`, `exception`,
//! `add_done_callback`, `remove_done_callback`, `get_loop`, `__await__`)
//! and `BaseEventLoop.create_future`. The state machine behind them is
//! `FutureCore`, in `futures.rs`.
//!
//! # Invariants
//! - A `Future` is a handle: its clones share one `FutureCore`, so every
//!   clone sees the same outcome and the same callbacks.
//! - A future that ends in `Cancelled` is always `cancelled()`: setting
//!   `Error::Cancelled` as its error is refused (a documented deviation:
//!   asyncio accepts it).
//! - Awaiting a pending future makes it the awaiting task's `fut_waiter`
//!   before the waker is registered, so a task of another loop neither
//!   suspends on it nor registers; a cancel thrown into the task at this
//!   await wins, unless the future is itself cancelled.
//! - A plain future is in the ready queue only to run its notifications.

use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{CallbackId, Cancel, FutureCore, Notify, Owner, State};
use crate::error::{Error, Result};
use crate::event_loop::{get_event_loop, EventLoop, Ready, Runnable};
use crate::tasks;

/// asyncio's `Future`: a result that will be set later, by someone.
///
/// Await it from a task to get `Result<T>`. Cloning gives another reference
/// to the same future. `T: Clone` is needed to read the result, since every
/// awaiter gets it (as in asyncio, where each one receives the same object).
///
/// ```
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     let fut: tulip::Future<u32> = lp.create_future();
///     let setter = fut.clone();
///     lp.call_later(0.01, move || { setter.set_result(42).unwrap(); })?;
///     assert_eq!(fut.await?, 42);
///     Ok(())
/// }).unwrap();
/// ```
#[must_use = "a future does nothing unless awaited or given a result"]
pub struct Future<T> {
    pub(crate) core: Rc<FutureCore<T, Future<T>>>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            core: self.core.clone(),
        }
    }
}

impl<T: 'static> Future<T> {
    /// A pending future on the current loop (running, or this thread's loop).
    ///
    /// # Panics
    /// If no loop exists and a new one cannot be created (out of file descriptors).
    pub fn new() -> Future<T> {
        let lp = get_event_loop().expect("cannot create an event loop for the future");
        Future::with_loop(&lp)
    }

    /// A pending future attached to `lp`.
    pub fn with_loop(lp: &EventLoop) -> Future<T> {
        Future {
            core: Rc::new(FutureCore::new(lp.clone())),
        }
    }

    /// Sets the result. Fails with `InvalidState` if the future is done (F1).
    ///
    /// On a closed loop the result is set all the same, but done callbacks
    /// cannot be scheduled: if there are any, they are dropped and this
    /// fails with [`Error::Closed`] (asyncio's `call_soon` raises
    /// "Event loop is closed" from `set_result`).
    pub fn set_result(&self, value: T) -> Result<()> {
        self.core.finish(self, State::Finished(value))
    }

    /// Sets an error. Fails with `InvalidState` if the future is done, and
    /// with `Closed` as [`set_result`](Future::set_result) does, the error
    /// set all the same. Setting `Error::Cancelled` is refused: call `cancel`. (A deviation:
    /// asyncio stores a `CancelledError` as the exception of a future that
    /// is then *not* `cancelled()`; tulip keeps one way in, so a future that
    /// ends in `Cancelled` is always `cancelled()`.)
    ///
    /// ```
    /// tulip::run(async {
    ///     let fut: tulip::Future<u32> = tulip::get_running_loop()?.create_future();
    ///     fut.set_exception(tulip::Error::msg("boom"))?;
    ///     assert!(fut.done() && !fut.cancelled());
    ///     assert_eq!(fut.exception()?.unwrap().to_string(), "boom");
    ///     assert!(matches!(fut.set_result(1), Err(tulip::Error::InvalidState(_))));
    ///     assert_eq!(fut.await.unwrap_err().to_string(), "boom"); // await raises it
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn set_exception(&self, err: Error) -> Result<()> {
        // asyncio checks the state first, then the error's type (as it
        // refuses StopIteration): a done future says InvalidStateError.
        if err.is_cancelled() && !self.done() {
            return Err(Error::invalid_argument(
                "Cancelled cannot be set as a future's error: call cancel() instead",
            ));
        }
        self.core.finish(self, State::Failed(Box::new(err)))
    }

    /// Cancels the future. Returns false if it was already done (F1).
    /// On a closed loop it is cancelled all the same, and its done
    /// callbacks are dropped (asyncio's `cancel` raises "Event loop is
    /// closed" then; this returns true).
    pub fn cancel(&self) -> bool {
        self.cancel_with(None::<&str>)
    }

    /// Cancels with a message, which the awaiters' `Cancelled` error carries.
    pub fn cancel_with(&self, msg: Option<impl Into<Arc<str>>>) -> bool {
        self.core.log_traceback.set(false);
        // Only a done future refuses; `Closed` comes after the state moved.
        !matches!(
            self.core
                .finish(self, State::Cancelled(msg.map(Into::into))),
            Err(Error::InvalidState(_))
        )
    }

    /// True once the future has a result, an error, or was cancelled.
    pub fn done(&self) -> bool {
        self.core.done()
    }

    /// True if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.core.cancelled()
    }

    /// The error, if the future failed (asyncio's `exception()`); `Ok(None)`
    /// for a result; `Err` if pending (InvalidState) or cancelled.
    pub fn exception(&self) -> Result<Option<Error>> {
        self.core.exception()
    }

    /// Adds a callback called with the future once it is done, through
    /// `call_soon` (F2). It runs in a snapshot of the context values
    /// current now, as asyncio's `add_done_callback` takes
    /// `copy_context()` when it is called. On a done future of a closed
    /// loop the callback can never run: asyncio raises there; this reports
    /// it to the loop's exception handler.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// tulip::run(async {
    ///     let fut: tulip::Future<&str> = tulip::get_running_loop()?.create_future();
    ///     let seen = Rc::new(Cell::new(None));
    ///     let s = seen.clone();
    ///     fut.add_done_callback(move |f| s.set(f.result().ok()));
    ///     fut.set_result("done")?;
    ///     assert_eq!(seen.get(), None); // scheduled with call_soon, not called yet
    ///     tulip::sleep(0.0).await?;
    ///     assert_eq!(seen.get(), Some("done"));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    #[track_caller]
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> CallbackId {
        self.core.add_done_callback(self, None, f)
    }

    /// asyncio's `add_done_callback(fn, context=ctx)`:
    /// [`add_done_callback`](Future::add_done_callback) with `f` run in
    /// `ctx` itself, not in a snapshot (see
    /// [`EventLoop::call_soon_in`](crate::EventLoop::call_soon_in)).
    #[track_caller]
    pub fn add_done_callback_in(
        &self,
        ctx: crate::contextvars::Context,
        f: impl FnOnce(&Future<T>) + 'static,
    ) -> CallbackId {
        self.core.add_done_callback(self, Some(ctx), f)
    }

    /// Removes a done callback; returns how many were removed (0 or 1).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.core.remove_done_callback(id)
    }

    /// A done callback that does not take the future (the runtime's own).
    #[track_caller]
    pub(crate) fn add_done_hook(&self, f: impl FnOnce() + 'static) -> CallbackId {
        self.core.add_done_hook(f)
    }

    /// A done notification, with no allocation (see [`Notify`]); true if
    /// the future was done.
    pub(crate) fn add_notify(&self, n: Rc<dyn Notify>, index: u32) -> bool {
        self.core.add_notify(self, n, index)
    }

    /// The loop the future belongs to. A future does not keep its loop
    /// open: once the last [`EventLoop`] handle is dropped, the loop is
    /// closed (see [`EventLoop`]'s `Drop`), and this gives the closed loop.
    pub fn get_loop(&self) -> EventLoop {
        self.core.lp.user_handle()
    }

    /// Moves the result out: for a future that has a single reader and a
    /// result type that is not `Clone`.
    pub fn take_result(&self) -> Result<T> {
        self.core.take_result()
    }

    /// True if both values are the same future.
    pub fn ptr_eq(&self, other: &Future<T>) -> bool {
        Rc::ptr_eq(&self.core, &other.core)
    }

    /// Resolves when the future is done, without reading the result.
    ///
    /// Like awaiting, it makes the future the task's `fut_waiter`:
    /// cancelling the awaiting task cancels the future, and the wait then
    /// resolves. Read the outcome afterwards (`take_result`, `result`,
    /// `cancelled`) to see the cancel; it is not raised by the wait itself.
    pub fn wait_done(&self) -> WaitDone<'_, T> {
        WaitDone { fut: self }
    }
}

impl<T: Clone + 'static> Future<T> {
    /// The result (asyncio's `result()`): `Err(InvalidState)` while pending,
    /// `Err(Cancelled)` if cancelled, the error if failed.
    pub fn result(&self) -> Result<T> {
        self.core.result()
    }
}

impl<T: 'static> Default for Future<T> {
    fn default() -> Self {
        Future::new()
    }
}

impl<T: 'static> Owner for Future<T> {
    fn ready_entry(&self) -> Ready {
        self.core.clone()
    }
}

/// A plain future is in the ready queue only to run its notifications.
impl<T: 'static> Runnable for FutureCore<T, Future<T>> {
    fn run_ready(self: Rc<Self>, _lp: &EventLoop) -> Result<()> {
        let me = self.clone();
        self.run_notifications(|| me)
    }

    fn discard(&self) {
        self.discard_notifications();
    }
}

impl<T: 'static> Cancel for FutureCore<T, Future<T>> {
    fn cancel_waiter(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        Future { core: self }.cancel_with(msg)
    }
}

impl<T: Clone + 'static> std::future::Future for Future<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // A cancel thrown into the task at this suspension point wins;
        // but a future that is itself cancelled gives its own Cancelled
        // (asyncio's __step keeps an error that is already a CancelledError).
        if let Some(err) = tasks::take_throw_on(&self.core.lp) {
            if self.core.cancelled() {
                return Poll::Ready(self.core.result());
            }
            return Poll::Ready(Err(err));
        }
        if self.core.done() {
            return Poll::Ready(self.core.result());
        }
        // fut_waiter first: a task of another loop must not suspend here.
        if let Err(e) = tasks::set_fut_waiter_on(&self.core.lp, self.core.clone()) {
            return Poll::Ready(Err(e));
        }
        self.core.add_waker(cx.waker());
        Poll::Pending
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.core.state.borrow() {
            State::Failed(e) => format!("failed {e}"),
            State::Cancelled(_) => "cancelled".into(),
            State::Pending => "pending".into(),
            State::Finished(_) | State::Taken => "finished".into(),
        };
        write!(f, "<Future {state}")?;
        let n = self.core.callback_count();
        if n > 0 {
            write!(f, " cb=[{n}]")?;
        }
        f.write_str(">")
    }
}

/// What [`Future::wait_done`] returns.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WaitDone<'a, T> {
    fut: &'a Future<T>,
}

impl<T: 'static> std::future::Future for WaitDone<'_, T> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.fut.core.poll_done(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                // A task of another loop is not told (no error to give):
                // it waits, without a fut_waiter.
                let _ = tasks::set_fut_waiter_on(&self.fut.core.lp, self.fut.core.clone());
                Poll::Pending
            }
        }
    }
}

impl EventLoop {
    /// asyncio's `loop.create_future()`.
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::with_loop(self)
    }
}
