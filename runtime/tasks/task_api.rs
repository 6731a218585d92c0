//! The public face of a [`Task`]: cancel, uncancel, name, result, done
//! callbacks, and awaiting it. Mirrors the public methods of `Task` and
//! `Future` in `Lib/asyncio/tasks.py` and `Lib/asyncio/futures.py`
//! (`cancel`, `cancelling`, `uncancel`, `done`, `cancelled`, `result`,
//! `exception`, `get_name`, `set_name`, `get_loop`, `get_context`,
//! `add_done_callback`, `remove_done_callback`, `__await__`). The
//! machinery behind them (the step, `cancel` itself) is in `tasks.rs`.
//!
//! # Invariants
//! - These methods only read or request: none of them runs the task's
//!   body. A cancel is delivered by the task's own step.
//! - Awaiting a pending task makes it the awaiting task's `fut_waiter`
//!   (cancelling the awaiter cancels it), and a cancel thrown into the
//!   awaiter at this await wins, unless the awaited task ended cancelled:
//!   then its own `Cancelled` is given.
//! - A task that awaits itself fails at once with a `RuntimeError`
//!   instead of waiting for ever.

use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{set_fut_waiter_on, take_throw_on, uncancel, AnyTask, Task, TaskRef, WaitTask};
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::{CallbackId, Notify};

// ===== the public Task API =====

impl<T: 'static> Task<T> {
    fn any(&self) -> Rc<dyn AnyTask> {
        self.inner.clone().as_any()
    }

    /// Requests cancellation (asyncio's `cancel()`); see the module docs.
    /// Returns false if the task is already done.
    ///
    /// ```
    /// tulip::run(async {
    ///     let t = tulip::create_task(async { tulip::sleep(10.0).await?; Ok(()) })?;
    ///     tulip::sleep(0.0).await?; // let it start: it now waits in sleep()
    ///     assert!(t.cancel_with("shutting down"));
    ///     let err = t.clone().await.unwrap_err(); // await t: CancelledError
    ///     assert!(matches!(err, tulip::Error::Cancelled(Some(ref m)) if &**m == "shutting down"));
    ///     assert!(t.cancelled());
    ///     assert!(!t.cancel()); // already done
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn cancel(&self) -> bool {
        self.any().cancel(None)
    }

    /// `cancel()` with a message, carried by the `Cancelled` error (C3).
    pub fn cancel_with(&self, msg: impl Into<Arc<str>>) -> bool {
        self.any().cancel(Some(msg.into()))
    }

    /// How many cancel requests are pending (asyncio's `cancelling()`).
    pub fn cancelling(&self) -> u32 {
        self.inner.header().num_cancels_requested.get()
    }

    /// asyncio's `_cancel_message`: the message of the last cancel that
    /// was delivered as a `must_cancel` (gather reads it, see gather.rs).
    pub(crate) fn cancel_message(&self) -> Option<Arc<str>> {
        self.inner.header().cancel_message()
    }

    /// Takes back one cancel request (asyncio 3.13's `uncancel()`): when the
    /// count drops to zero, a cancel not yet delivered is dropped too.
    pub fn uncancel(&self) -> u32 {
        uncancel(self.inner.header())
    }

    /// True once the task has finished, failed or was cancelled.
    pub fn done(&self) -> bool {
        self.inner.done()
    }

    /// True if the task ended cancelled.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// The error the task failed with (asyncio's `exception()`).
    pub fn exception(&self) -> Result<Option<Error>> {
        self.inner.core().exception()
    }

    /// The task's name (asyncio's `get_name()`).
    pub fn name(&self) -> String {
        self.inner.header().name()
    }

    /// Renames the task (asyncio's `set_name()`).
    pub fn set_name(&self, name: impl Into<String>) {
        self.inner.header().set_name(name.into());
    }

    /// A process-unique id. A task created without a name is named
    /// `Task-{id}`; one created with a name takes no `Task-N` number (as
    /// in asyncio 3.13), and its id comes from a range of its own, 2^63
    /// and up.
    pub fn id(&self) -> u64 {
        self.inner.header().id
    }

    /// The loop that runs the task. A task does not keep its loop open:
    /// once the last [`EventLoop`] handle is dropped, the loop is closed
    /// (see [`EventLoop`]'s `Drop`), and this gives the closed loop.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.loop_().clone()
    }

    /// The [`Context`](crate::Context) the task runs in (asyncio's
    /// `Task.get_context()`): the one it was created with
    /// ([`TaskOptions::context`](crate::TaskOptions::context)), or its own,
    /// which holds what it inherited and has set. It is the task's context
    /// itself, not a copy: [`Context::run`](crate::Context::run) on it
    /// (while the task is not running) sees and changes the task's values,
    /// and a task created with it
    /// ([`TaskOptions::context`](crate::TaskOptions::context)) shares them.
    ///
    /// ```
    /// use tulip::ContextVar;
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// tulip::run(async {
    ///     let t = tulip::create_task(async {
    ///         USER.set("ann")?;
    ///         tulip::sleep(0.0).await?;
    ///         Ok(USER.get())
    ///     })?;
    ///     tulip::sleep(0.0).await?;               // t has set "ann" and waits
    ///     let ctx = t.get_context();
    ///     assert_eq!(ctx.get(&USER), Some("ann"));
    ///     ctx.run(|| USER.set("bob"))??;          // changes t's own value
    ///     assert_eq!(t.await?, Some("bob"));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn get_context(&self) -> crate::contextvars::Context {
        self.inner.header().get_context()
    }

    /// asyncio's `task._log_destroy_pending = False`: the task is not
    /// reported if its loop closes with it pending.
    pub(crate) fn no_log_destroy_pending(&self) {
        self.inner.header().log_destroy_pending.set(false);
    }

    /// The task's loop, borrowed (no user handle is made).
    pub(crate) fn loop_ref(&self) -> &EventLoop {
        self.inner.loop_()
    }

    /// Adds a callback called with the task once it is done, via `call_soon`,
    /// in a snapshot of the context values current now (see
    /// [`Future::add_done_callback`](crate::Future::add_done_callback)).
    #[track_caller]
    pub fn add_done_callback(&self, f: impl FnOnce(&Task<T>) + 'static) -> CallbackId {
        self.inner.core().add_done_callback(self, None, f)
    }

    /// asyncio's `add_done_callback(fn, context=ctx)`: `f` runs in `ctx`
    /// itself, not in a snapshot (see
    /// [`EventLoop::call_soon_in`](crate::EventLoop::call_soon_in)).
    #[track_caller]
    pub fn add_done_callback_in(
        &self,
        ctx: crate::contextvars::Context,
        f: impl FnOnce(&Task<T>) + 'static,
    ) -> CallbackId {
        self.inner.core().add_done_callback(self, Some(ctx), f)
    }

    /// Removes a done callback; returns how many were removed.
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.inner.core().remove_done_callback(id)
    }

    /// A done callback that does not take the task (the runtime's own).
    #[track_caller]
    pub(crate) fn add_done_hook(&self, f: impl FnOnce() + 'static) -> CallbackId {
        self.inner.core().add_done_hook(f)
    }

    /// A done notification, with no allocation (see `futures::Notify`);
    /// true if the task was done.
    pub(crate) fn add_notify(&self, n: Rc<dyn Notify>, index: u32) -> bool {
        self.inner.core().add_notify(self, n, index)
    }

    /// Moves the result out, for a task with one reader and a result type
    /// that is not `Clone`.
    pub fn take_result(&self) -> Result<T> {
        self.inner.core().take_result()
    }

    /// True while the task's error was not retrieved (F3).
    pub(crate) fn error_unretrieved(&self) -> bool {
        self.inner.core().error_unretrieved()
    }

    /// A type-erased reference to this task.
    pub fn as_ref(&self) -> TaskRef {
        TaskRef { inner: self.any() }
    }

    /// Resolves when the task is done, without reading its result.
    pub fn wait_done(&self) -> WaitTask {
        WaitTask {
            task: self.any(),
            waiter: None,
        }
    }

    /// True if both values are the same task.
    pub fn ptr_eq(&self, other: &Task<T>) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.inner), Rc::as_ptr(&other.inner))
    }

    /// Number of done callbacks and wakers registered.
    pub fn callback_count(&self) -> usize {
        self.inner.core().callback_count()
    }
}

impl<T: Clone + 'static> Task<T> {
    /// The task's result (asyncio's `result()`): `Err(InvalidState)` while
    /// pending, `Err(Cancelled)` if cancelled, the body's error if it failed.
    pub fn result(&self) -> Result<T> {
        self.inner.core().result()
    }
}

impl<T: Clone + 'static> StdFuture for Task<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let lp = self.inner.loop_();
        let core = self.inner.core();
        if let Some(err) = take_throw_on(lp) {
            // As a future's: an awaited task that ended cancelled gives its own.
            if core.cancelled() {
                return Poll::Ready(core.result());
            }
            return Poll::Ready(Err(err));
        }
        if core.done() {
            // A done task is never the running one: no self-await check.
            return Poll::Ready(core.result());
        }
        let any = self.any();
        if is_current(lp, &any) {
            return Poll::Ready(Err(Error::runtime(format!(
                "task cannot await on itself: {} would wait for ever",
                any.describe()
            ))));
        }
        if let Err(e) = set_fut_waiter_on(lp, any.into_cancel()) {
            return Poll::Ready(Err(e));
        }
        core.add_waker(cx.waker());
        Poll::Pending
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// True if `task` is the task running right now.
fn is_current(lp: &EventLoop, task: &Rc<dyn AnyTask>) -> bool {
    lp.inner
        .current_task
        .borrow()
        .as_ref()
        .is_some_and(|cur| std::ptr::addr_eq(Rc::as_ptr(cur), Rc::as_ptr(task)))
}
