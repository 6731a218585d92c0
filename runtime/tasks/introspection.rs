//! Looking at tasks from outside: [`TaskRef`] (a task of any result
//! type), [`WaitTask`], [`current_task`], [`all_tasks`], and the current
//! task's context values for `contextvars.rs`. Mirrors `current_task`,
//! `all_tasks` and `_current_tasks` in `Lib/asyncio/tasks.py`, and
//! `Task.get_context`.
//!
//! # Invariants
//! - [`current_task`] and [`all_tasks`] read the running loop: outside one
//!   they give `None` and an empty list. `all_tasks` lists the loop's tasks
//!   that are not done.
//! - A [`WaitTask`] dropped before its task is done takes its done callback
//!   off the task; cancelling the task that awaits it ends the wait and
//!   leaves the awaited task running.
//! - The borrow of the loop's `current_task` taken here ends before a
//!   context it replaces is dropped (its values' `Drop` is user code).

use std::any::Any;
use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{take_throw_on, uncancel, AnyTask};
use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, try_running_loop, EventLoop};
use crate::futures::CallbackId;

impl EventLoop {
    /// The context values of this loop's current task (contextvars.rs).
    /// The running task's context values: `None` outside a task,
    /// `Some(None)` in a task that has none yet.
    pub(crate) fn current_task_context(&self) -> Option<Option<Rc<dyn Any>>> {
        let cur = self.inner.current_task.borrow();
        cur.as_ref().map(|t| t.header().context())
    }

    /// The running task's id and context values (contextvars.rs), `None`
    /// outside a task.
    pub(crate) fn current_task_id_and_context(&self) -> Option<(u64, Option<Rc<dyn Any>>)> {
        let cur = self.inner.current_task.borrow();
        cur.as_ref().map(|t| (t.header().id, t.header().context()))
    }

    pub(crate) fn current_context(&self) -> Option<Rc<dyn Any>> {
        let cur = self.inner.current_task.borrow();
        let ctx = cur.as_ref()?.header().context();
        ctx
    }
}

/// Replaces the current task's context values (`None`: none, as an empty
/// map); false outside a task.
pub(crate) fn set_current_context(ctx: Option<Rc<dyn Any>>) -> bool {
    let Some(lp) = try_running_loop() else {
        return false;
    };
    let cur = lp.inner.current_task.borrow();
    match cur.as_ref() {
        Some(t) => {
            let old = t.header().context.replace(ctx);
            drop(cur);
            drop(old);
            true
        }
        None => false,
    }
}

/// A task of any result type: what [`current_task`] and [`all_tasks`] return.
#[derive(Clone)]
pub struct TaskRef {
    pub(super) inner: Rc<dyn AnyTask>,
}

impl TaskRef {
    /// Requests cancellation, like [`Task::cancel`](crate::Task::cancel).
    pub fn cancel(&self) -> bool {
        self.inner.clone().cancel(None)
    }

    /// `cancel()` with a message.
    pub fn cancel_with(&self, msg: impl Into<Arc<str>>) -> bool {
        self.inner.clone().cancel(Some(msg.into()))
    }

    /// How many cancel requests are pending.
    pub fn cancelling(&self) -> u32 {
        self.inner.header().num_cancels_requested.get()
    }

    /// Takes back one cancel request.
    pub fn uncancel(&self) -> u32 {
        uncancel(self.inner.header())
    }

    /// True once the task is done.
    pub fn done(&self) -> bool {
        self.inner.done()
    }

    /// True if the task ended cancelled.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// The task's name.
    pub fn name(&self) -> String {
        self.inner.header().name()
    }

    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        self.inner.header().set_name(name.into());
    }

    /// The task's process-unique id.
    pub fn id(&self) -> u64 {
        self.inner.header().id
    }

    /// Resolves when the task is done.
    pub fn wait_done(&self) -> WaitTask {
        WaitTask {
            task: self.inner.clone(),
            waiter: None,
        }
    }

    /// True if both refer to the same task.
    pub fn ptr_eq(&self, other: &TaskRef) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.inner), Rc::as_ptr(&other.inner))
    }

    /// The loop that runs the task. A task does not keep its loop open:
    /// once the last [`EventLoop`] handle is dropped, the loop is closed
    /// (see [`EventLoop`]'s `Drop`), and this gives the closed loop.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.loop_().clone()
    }

    /// The error the task failed with, if it failed (not if cancelled).
    pub fn error(&self) -> Option<Error> {
        self.inner.error()
    }

    /// The [`Context`](crate::Context) the task runs in (see
    /// [`Task::get_context`](crate::Task::get_context)).
    pub fn get_context(&self) -> crate::contextvars::Context {
        self.inner.header().get_context()
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// What `wait_done` returns: resolves with `Ok(())` when the task is done,
/// whatever its outcome (asyncio's `await asyncio.wait([task])`).
///
/// It is built the way asyncio builds `wait`: a waiter future that a done
/// callback on the task releases (`_release_waiter`). The awaiting task's
/// `fut_waiter` is that waiter, so cancelling the awaiting task ends the
/// wait at once with `Err(Cancelled)` and leaves the awaited task running.
/// A wait dropped before the task is done takes its callback off the task
/// (asyncio's `_wait` removes `_on_completion` in its `finally:`).
#[must_use = "futures do nothing unless awaited"]
pub struct WaitTask {
    pub(super) task: Rc<dyn AnyTask>,
    /// The waiter, and the id of the done callback that releases it.
    pub(super) waiter: Option<(crate::futures::Future<()>, CallbackId)>,
}

impl StdFuture for WaitTask {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        if this.waiter.is_none() {
            if let Some(err) = take_throw_on(this.task.loop_()) {
                return Poll::Ready(Err(err));
            }
            if this.task.done() {
                return Poll::Ready(Ok(()));
            }
            let waiter = crate::futures::Future::with_loop(this.task.loop_());
            let release = waiter.clone();
            let id = this.task.clone().add_done_hook(Box::new(move || {
                if !release.done() {
                    let _ = release.set_result(());
                }
            }));
            this.waiter = Some((waiter, id));
        }
        let (waiter, _) = this.waiter.as_mut().expect("set above");
        Pin::new(waiter).poll(cx)
    }
}

impl Drop for WaitTask {
    fn drop(&mut self) {
        if let Some((_, id)) = self.waiter.take() {
            // A no-op once the task is done: its callbacks were scheduled.
            self.task.remove_done_callback(id);
        }
    }
}

impl fmt::Debug for WaitTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WaitTask({})", self.task.describe())
    }
}

/// asyncio's `current_task()`: the task running now, if any.
///
/// ```
/// tulip::run(async {
///     let t = tulip::create_task_named(async {
///         Ok(tulip::current_task().unwrap().name())
///     }, "worker")?;
///     assert_eq!(tulip::all_tasks().len(), 2); // run()'s main task and `t`
///     assert_eq!(t.await?, "worker");
///     Ok(())
/// }).unwrap();
/// assert!(tulip::current_task().is_none()); // no loop is running
/// ```
pub fn current_task() -> Option<TaskRef> {
    let lp = try_running_loop()?;
    let cur = lp.inner.current_task.borrow().clone();
    cur.map(|inner| TaskRef { inner })
}

/// asyncio's `all_tasks()`: the running loop's tasks that are not done.
pub fn all_tasks() -> Vec<TaskRef> {
    match get_running_loop() {
        Ok(lp) => lp.all_tasks(),
        Err(_) => Vec::new(),
    }
}

impl EventLoop {
    /// The loop's tasks that are not done.
    pub fn all_tasks(&self) -> Vec<TaskRef> {
        self.inner
            .tasks
            .borrow()
            .iter()
            .filter(|(_, t)| !t.done())
            .map(|(_, t)| TaskRef { inner: t.clone() })
            .collect()
    }
}
