//! Tasks: a coroutine driven by the loop. Mirrors `Task` in
//! `Lib/asyncio/tasks.py` (`__step`, `__wakeup`, `cancel`, `uncancel`) and
//! `_enter_task`/`_leave_task`, `current_task`, `all_tasks`.
//!
//! A task wraps a Rust future whose output is `tulip::Result<T>` (the
//! "coroutine"). `step` polls it once (asyncio's `__step`). When the body
//! awaits a runtime future that is pending, that future records itself as the
//! task's `fut_waiter` and keeps the task's waker in its done callbacks;
//! completing the future wakes the task, which pushes it onto the ready
//! queue (asyncio's `call_soon(__wakeup)`).
//!
//! ## Cancellation, as asyncio does it
//! `cancel()` cancels the `fut_waiter`; the body then sees `Err(Cancelled)`
//! from that await, and may catch it. Without a `fut_waiter` (the task is
//! scheduled, running, or suspended outside the runtime) `cancel()` sets
//! `must_cancel`. The next `step` turns it into a *throw*: the first runtime
//! future the body polls returns `Err(Cancelled)` (asyncio's `coro.throw`).
//! A body that never started is not polled at all (asyncio throws into it at
//! its first line). Dropping a `Task` handle cancels nothing.
//!
//! This file holds the task itself: its cell, its step, `cancel` and
//! `uncancel`, and the step's flags. The rest is split by concept into the
//! child modules below; their public names are re-exported here, so every
//! path stays `tulip::tasks::NAME`.
//!
//! | file | holds | asyncio |
//! |---|---|---|
//! | `tasks/create.rs` | [`TaskOptions`], [`create_task`], [`EventLoop::create_task`], eager start | `Task.__init__`, `__eager_start`, `BaseEventLoop.create_task`, `create_task` |
//! | `tasks/waker.rs` | the task's waker and the loop's pool of idle ones | `Task.__wakeup` (through `call_soon`) |
//! | `tasks/await_hooks.rs` | what a runtime future asks the stepping task at an await: a cancel to throw, a bare yield, `fut_waiter` | `__step`'s `coro.throw`, `__sleep0`, `_fut_waiter` |
//! | `tasks/task_api.rs` | the public methods of [`Task`], awaiting a task | `Task.cancel`, `cancelling`, `uncancel`, `get_name`, `result`, `__await__` |
//! | `tasks/introspection.rs` | [`TaskRef`], [`WaitTask`], [`current_task`], [`all_tasks`], the current task's context | `current_task`, `all_tasks`, `Task.get_context` |
//!
//! # Invariants
//! - Nothing a task owns unwinds into the loop: a panic in the body's poll
//!   or `Drop` becomes the task's error or a report, and so does one in its
//!   result's `Drop` when the loop lets go of the last reference (`release`).
//! - Either `fut_waiter` is set and the step is not scheduled, or the
//!   reverse — except for a spurious wake of a body that awaits several things
//!   at once, which schedules the step while `fut_waiter` is set; `step`
//!   clears `fut_waiter` first, as asyncio's does.
//! - `scheduled` is true exactly while the task's step sits in the ready
//!   queue, so a step is queued at most once. A done task may sit there once
//!   more, unscheduled, to run its done notifications (`futures::Notify`).
//! - The step's flags (`StepFlags`: a cancel to throw, a bare yield asked
//!   for, the stepping task's waker) live in a thread-local for exactly the
//!   duration of one poll of the body; a nested step (an eager task started
//!   inside another task's step) saves and restores its creator's.
//! - A pending task is owned by the loop's task slab (key = its waker's
//!   token); it leaves the slab when it is done. A task dropped while pending
//!   is reported: "Task was destroyed but it is pending!" (C4), unless it
//!   is the task `run_until_complete` made (asyncio's `_log_destroy_pending`). The loop's
//!   `close()` drops what its pending tasks hold (body, `fut_waiter`,
//!   context, done callbacks): they never run again, and without a
//!   collector a cycle through them would outlive the loop.
//! - At most one task runs at a time per loop: the loop's `current_task` is
//!   set by `enter_task` and restored by `leave_task` (an eager task started
//!   inside another task's step puts its creator back).

mod await_hooks;
mod create;
mod introspection;
mod task_api;
mod waker;

use std::any::Any;
use std::cell::Cell;
use std::future::Future as StdFuture;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, Interrupt, Ready, Runnable};
use crate::futures::{CallbackId, Cancel, FutureCore, Owner, State};

pub(crate) use await_hooks::{bare_yield, set_fut_waiter_on, take_throw, take_throw_on};
pub use create::{create_task, create_task_named, TaskOptions};
pub(crate) use introspection::set_current_context;
pub use introspection::{all_tasks, current_task, TaskRef, WaitTask};
pub(crate) use waker::{WakerPool, WakerSlot};

// ===== the non-generic part of a task =====

/// The rarely set fields of a task.
#[derive(Default)]
struct TaskExtra {
    /// Set by `set_name` or `TaskOptions::name`; `Task-{id}` otherwise.
    name: Option<Box<str>>,
    /// The message of the last `cancel_with`, for the `Cancelled` error.
    cancel_message: Option<Arc<str>>,
}

/// The fields of a task that do not depend on its types.
pub(crate) struct TaskHeader {
    /// Unique per process; also the name number of a task created
    /// without a name (see `NAMED_TASK_COUNTER`).
    pub(crate) id: u64,
    /// Slab key in the loop's task table.
    key: u32,
    /// The name and the cancel message, boxed on first use: most tasks
    /// have neither, and a small task cell is a fast one.
    extra: Cell<Option<Box<TaskExtra>>>,
    /// True while the task's step sits in the ready queue.
    pub(crate) scheduled: Cell<bool>,
    /// A cancel request that has not reached the body yet.
    must_cancel: Cell<bool>,
    num_cancels_requested: Cell<u32>,
    /// The runtime future the body is suspended on, if any.
    fut_waiter: Cell<Option<Rc<dyn Cancel>>>,
    /// The body has been polled at least once.
    started: Cell<bool>,
    /// asyncio's `_log_destroy_pending`: false for the task that
    /// `run_until_complete` wraps a coroutine in, which no caller holds.
    log_destroy_pending: Cell<bool>,
    /// Made at the first step; `None` while the step runs (the step holds it).
    waker: Cell<Option<WakerSlot>>,
    /// Per-task context values (contextvars), owned by `contextvars.rs`:
    /// either an immutable map, shared with the creator at `create_task`
    /// (the copy of asyncio's `copy_context()`) and replaced on each `set`,
    /// or a shared `Context` given with `TaskOptions::context`, which the
    /// task's `set`s change in place (asyncio's `create_task(context=)`).
    context: Cell<Option<Rc<dyn Any>>>,
}

/// A task of any result type: what the scheduler and `current_task()` see.
pub(crate) trait AnyTask: Runnable {
    fn header(&self) -> &TaskHeader;
    /// asyncio's `__step`. Returns true if the body raised [`Interrupt`].
    fn step(self: Rc<Self>) -> bool;
    fn done(&self) -> bool;
    fn cancelled(&self) -> bool;
    fn cancel(self: Rc<Self>, msg: Option<Arc<str>>) -> bool;
    fn describe(&self) -> String;
    /// The loop is closing and drops this pending task: reports it, and
    /// drops what it can never run again (its body, its `fut_waiter`, its
    /// context, its done callbacks), so that a cycle through them (a body
    /// holding its own task, a gather's or TaskGroup's notification holding
    /// the gather or group)
    /// does not keep the task, its resources and its loop alive for good.
    fn destroyed_pending(&self);
    fn loop_(&self) -> &EventLoop;
    /// The error the task failed with (marks it retrieved).
    fn error(&self) -> Option<Error>;
    /// The task as a `fut_waiter` (cancelling it cancels the task).
    fn into_cancel(self: Rc<Self>) -> Rc<dyn Cancel>;
    /// Calls `f` (through `call_soon`) once the task is done.
    fn add_done_hook(self: Rc<Self>, f: Box<dyn FnOnce()>) -> CallbackId;
    /// asyncio's `remove_done_callback`.
    fn remove_done_callback(&self, id: CallbackId) -> usize;
}

// ===== the typed task =====

struct TaskCell<T, F> {
    header: TaskHeader,
    core: FutureCore<T, Task<T>>,
    body: Cell<Option<Pin<Box<F>>>>,
}

/// asyncio's `Task`: a future that runs a coroutine on the loop.
///
/// Created by [`create_task`] or [`EventLoop::create_task`]. Await it to get
/// the body's result (`T: Clone`, since any number of awaiters may read it).
/// The loop keeps a running task alive: dropping the `Task` handle neither
/// cancels nor stops it.
///
/// ```
/// let out = tulip::run(async {
///     let t = tulip::create_task(async { tulip::sleep(0.01).await?; Ok(7) })?;
///     t.await
/// }).unwrap();
/// assert_eq!(out, 7);
/// ```
#[must_use = "a Task handle is how you await or cancel the task; the task runs anyway"]
pub struct Task<T> {
    inner: Rc<dyn TypedTask<T>>,
}

trait TypedTask<T>: AnyTask {
    fn core(&self) -> &FutureCore<T, Task<T>>;
    fn as_any(self: Rc<Self>) -> Rc<dyn AnyTask>;
    fn as_ready(self: Rc<Self>) -> Ready;
}

impl<T: 'static, F: StdFuture<Output = Result<T>> + 'static> TypedTask<T> for TaskCell<T, F> {
    fn core(&self) -> &FutureCore<T, Task<T>> {
        &self.core
    }
    fn as_any(self: Rc<Self>) -> Rc<dyn AnyTask> {
        self
    }
    fn as_ready(self: Rc<Self>) -> Ready {
        self
    }
}

impl<T: 'static> Owner for Task<T> {
    fn ready_entry(&self) -> Ready {
        self.inner.clone().as_ready()
    }
}

impl<T> Clone for Task<T> {
    fn clone(&self) -> Self {
        Task {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static, F: StdFuture<Output = Result<T>> + 'static> TaskCell<T, F> {
    /// Lets go of the loop's reference to a done task. When it is the last
    /// one (nobody kept the `Task`), the result goes with it, and a panic in
    /// the result's `Drop` is reported, as CPython reports what a `__del__`
    /// raises ("Exception ignored in ..."), instead of unwinding out of
    /// `run_once` and taking the loop down (L6). Only done paths come here,
    /// once or twice per task.
    #[inline]
    fn release(self: Rc<Self>) {
        if Rc::strong_count(&self) > 1 {
            return;
        }
        let lp: EventLoop = (*self.core.lp).clone();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(self))) {
            lp.report_ignoring_interrupt(&ExceptionContext {
                message: "Exception ignored while dropping a task's result".into(),
                error: Some(Error::Panic(panic_message(&*payload))),
                ..Default::default()
            });
        }
    }

    fn owner(self: &Rc<Self>) -> Task<T> {
        Task {
            inner: self.clone(),
        }
    }

    /// Leaves the slab and completes the task's future.
    fn finish(self: &Rc<Self>, state: State<T>) {
        let removed = self
            .core
            .lp
            .inner
            .tasks
            .borrow_mut()
            .try_remove(self.header.key as usize);
        drop(removed);
        let owner = self.owner();
        // The state can't be done already: step returns early for done
        // tasks. A closed loop (closed by a callback of a loop driven by
        // hand) drops the done callbacks and says `Closed`, which nobody
        // here could act on: the task is done all the same.
        let _ = self.core.finish(&owner, state);
    }

    fn cancel_message(&self) -> Option<Arc<str>> {
        self.header.cancel_message()
    }

    /// True while the body is being polled: the step holds it, so its
    /// cell is empty (a done task's is too, but `cancel` returns first).
    /// Unlike [`is_stepping`], true also for a task whose step is further
    /// down the stack (it started an eager task, which now runs).
    fn stepping(&self) -> bool {
        let body = self.body.take();
        let stepping = body.is_none();
        self.body.set(body);
        stepping
    }
}

impl<T: 'static, F: StdFuture<Output = Result<T>> + 'static> AnyTask for TaskCell<T, F> {
    fn header(&self) -> &TaskHeader {
        &self.header
    }

    fn step(self: Rc<Self>) -> bool {
        let h = &self.header;
        h.scheduled.set(false);
        if self.core.done() {
            return false;
        }
        // A pending cancel becomes a throw into the body (asyncio: coro.throw).
        let throw = h.must_cancel.replace(false);
        drop(h.fut_waiter.take());
        if throw && !h.started.get() {
            // The coroutine never ran: the throw ends it at its first line.
            let interrupted = self.drop_body(self.body.take());
            self.finish(State::Cancelled(self.cancel_message()));
            self.release();
            return interrupted;
        }
        let Some(mut body) = self.body.take() else {
            return false;
        };
        h.started.set(true);

        let lp = &self.core.lp;
        let wk = match h.waker.take() {
            Some(wk) => wk,
            None => WakerSlot::new(lp, h.key as usize, h.id),
        };
        let prev = enter_task(lp, self.clone());
        let outer = STEP.replace(StepFlags {
            throw,
            yield_now: false,
            waker: waker_id(&wk.waker),
        });
        let mut cx = Context::from_waker(&wk.waker);
        let res = catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(&mut cx)));
        let flags = STEP.replace(outer);
        leave_task(lp, prev);

        let throw_left = flags.throw;
        let yielded = flags.yield_now;
        match res {
            Ok(Poll::Pending) => {
                put_back(&self.body, body);
                put_back(&h.waker, wk);
                if throw_left {
                    // Suspended somewhere outside the runtime: deliver at the next await.
                    h.must_cancel.set(true);
                }
                if h.must_cancel.get() {
                    // asyncio: a cancel requested during the step goes to the
                    // future the body just suspended on.
                    let waiter = h.fut_waiter();
                    if let Some(w) = waiter {
                        if w.cancel_waiter(self.cancel_message()) {
                            h.must_cancel.set(false);
                        }
                    }
                }
                if yielded && !h.scheduled.replace(true) {
                    // The bare yield: `call_soon(self.__step)`, without a waker.
                    // (The queue is reached through a clone of the `Rc`,
                    // since `self` moves into it.)
                    let inner = Rc::clone(&lp.inner);
                    inner.ready.borrow_mut().push_back(self as Ready);
                }
            }
            Ok(Poll::Ready(out)) => {
                let interrupted = self.drop_body(Some(body));
                wk.recycle(lp);
                let cancel_pending = h.must_cancel.replace(false) || throw_left;
                let state = match out {
                    Ok(_) if cancel_pending => State::Cancelled(self.cancel_message()),
                    Ok(v) => State::Finished(v),
                    Err(Error::Cancelled(msg)) => State::Cancelled(msg),
                    Err(e) => State::Failed(Box::new(e)),
                };
                self.finish(state);
                self.release();
                return interrupted;
            }
            Err(payload) => {
                let interrupted = self.drop_body(Some(body));
                wk.recycle(lp);
                if interrupted || payload.is::<Interrupt>() {
                    self.finish(State::Failed(Box::new(Error::Interrupted)));
                    self.release();
                    return true;
                }
                let err = Error::Panic(panic_message(&*payload));
                self.finish(State::Failed(Box::new(err)));
                self.release();
            }
        }
        false
    }

    fn done(&self) -> bool {
        self.core.done()
    }

    fn cancelled(&self) -> bool {
        self.core.cancelled()
    }

    fn cancel(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        let h = &self.header;
        // asyncio's Task.cancel starts with `self._log_traceback = False`,
        // done or not: a failed task one cancels is not reported (F3).
        self.core.clear_log_traceback();
        if self.core.done() {
            return false;
        }
        h.num_cancels_requested
            .set(h.num_cancels_requested.get() + 1);
        // asyncio's __step runs the body with `_fut_waiter = None`: a cancel
        // made during the step (the task on itself, or an eager task it
        // started) is a must_cancel, sent after the step to the future the
        // body suspends on. Here `fut_waiter` may still name a future the
        // body polled earlier in this step and has since left (a select):
        // cancelling that one would lose the request.
        let waiter = if self.stepping() {
            None
        } else {
            h.fut_waiter()
        };
        if let Some(w) = waiter {
            // Leave fut_waiter set: it may be a task that swallows the cancel.
            if w.cancel_waiter(msg.clone()) {
                return true;
            }
        }
        // The step is scheduled (or running): deliver at the next await.
        h.must_cancel.set(true);
        h.set_cancel_message(msg);
        true
    }

    fn describe(&self) -> String {
        format!(
            "<Task {} name='{}'>",
            self.core.describe_state(),
            self.header.name()
        )
    }

    fn destroyed_pending(&self) {
        if self.core.done() {
            return;
        }
        if self.header.log_destroy_pending.get() {
            self.core.lp.report_ignoring_interrupt(&ExceptionContext {
                message: "Task was destroyed but it is pending!".into(),
                task: Some(self.describe()),
                ..Default::default()
            });
        }
        // CPython's collector would free these; tulip has none. The loop is
        // closed, so the task never steps again (nothing here is taken
        // out from under a running step: a closed loop does not run).
        // Each part on its own: one whose Drop panics (a context value, a
        // done callback's closure) is reported, and the others are still
        // dropped (see `EventLoop::at_close`).
        let h = &self.header;
        let lp = &self.core.lp;
        lp.at_close(|| drop(h.fut_waiter.take()));
        lp.at_close(|| drop(h.context.take()));
        lp.at_close(|| self.core.drop_callbacks());
        // An Interrupt from a body's Drop has no run to end here.
        let _ = self.drop_body(self.body.take());
    }

    fn loop_(&self) -> &EventLoop {
        &self.core.lp
    }

    fn error(&self) -> Option<Error> {
        self.core.exception().ok().flatten()
    }

    fn into_cancel(self: Rc<Self>) -> Rc<dyn Cancel> {
        self
    }

    fn add_done_hook(self: Rc<Self>, f: Box<dyn FnOnce()>) -> CallbackId {
        self.core.add_done_hook(f)
    }

    fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.core.remove_done_callback(id)
    }
}

impl<T: 'static, F: StdFuture<Output = Result<T>> + 'static> Runnable for TaskCell<T, F> {
    fn run_ready(self: Rc<Self>, lp: &EventLoop) -> Result<()> {
        if !self.header.scheduled.get() {
            // Not the step: the done task's own entry, for its notifications
            // (a done task is never scheduled again).
            debug_assert!(self.core.done());
            let me = self.clone();
            let res = self.core.run_notifications(|| me as Ready);
            self.release();
            return res;
        }
        if lp.debug() {
            return lp.run_task_step(self);
        }
        // The hot path: the step is called directly, not through `dyn AnyTask`.
        if self.step() {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    fn discard(&self) {
        self.core.discard_notifications();
    }
}

impl<T: 'static, F: StdFuture<Output = Result<T>> + 'static> TaskCell<T, F> {
    /// Drops the body; a panic in its `Drop` is reported, as CPython
    /// reports an exception raised while a coroutine is finalized
    /// ("Exception ignored in ..."), and never unwinds into the loop.
    /// Returns true for an [`Interrupt`].
    #[inline]
    fn drop_body(&self, body: Option<Pin<Box<F>>>) -> bool {
        match catch_unwind(AssertUnwindSafe(move || drop(body))) {
            Ok(()) => false,
            Err(payload) => self.body_drop_panicked(payload),
        }
    }

    #[cold]
    #[inline(never)]
    fn body_drop_panicked(&self, payload: Box<dyn std::any::Any + Send>) -> bool {
        if payload.is::<Interrupt>() {
            return true;
        }
        // Out of the step's catch_unwind already: nothing would catch an
        // Interrupt from the handler here.
        self.core.lp.report_ignoring_interrupt(&ExceptionContext {
            message: "Exception ignored while dropping a task's body".into(),
            error: Some(Error::Panic(panic_message(&*payload))),
            task: Some(self.describe()),
            ..Default::default()
        });
        false
    }
}

impl<T: 'static, F: StdFuture<Output = Result<T>> + 'static> Cancel for TaskCell<T, F> {
    fn cancel_waiter(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        AnyTask::cancel(self, msg)
    }
}

impl<T, F> Drop for TaskCell<T, F> {
    fn drop(&mut self) {
        // Report here, before the core's own Drop would call it a "Future".
        self.core.report_unretrieved("Task", || {
            format!("<Task failed name='{}'>", self.header.name())
        });
        self.core.clear_log_traceback();
    }
}

impl TaskHeader {
    /// Reads (and may change) the boxed rare fields; `None` if never set.
    fn with_extra<R>(&self, f: impl FnOnce(&mut Option<Box<TaskExtra>>) -> R) -> R {
        let mut extra = self.extra.take();
        let out = f(&mut extra);
        self.extra.set(extra);
        out
    }

    fn name(&self) -> String {
        let name =
            self.with_extra(|e| e.as_ref().and_then(|e| e.name.as_deref().map(String::from)));
        name.unwrap_or_else(|| format!("Task-{}", self.id))
    }

    fn set_name(&self, name: String) {
        self.with_extra(|e| e.get_or_insert_default().name = Some(name.into_boxed_str()));
    }

    fn cancel_message(&self) -> Option<Arc<str>> {
        self.with_extra(|e| e.as_ref().and_then(|e| e.cancel_message.clone()))
    }

    fn set_cancel_message(&self, msg: Option<Arc<str>>) {
        self.with_extra(|e| match (e.as_mut(), msg) {
            (Some(e), msg) => e.cancel_message = msg,
            (None, None) => {}
            (None, msg) => {
                *e = Some(Box::new(TaskExtra {
                    name: None,
                    cancel_message: msg,
                }))
            }
        });
    }

    fn fut_waiter(&self) -> Option<Rc<dyn Cancel>> {
        clone_cell(&self.fut_waiter)
    }

    /// The task's context values (contextvars.rs).
    pub(crate) fn context(&self) -> Option<Rc<dyn Any>> {
        clone_cell(&self.context)
    }

    /// asyncio's `Task.get_context()` (see `contextvars::task_context`).
    fn get_context(&self) -> crate::contextvars::Context {
        crate::contextvars::task_context(self.id, &self.context)
    }
}

/// Puts back what the step took out of `cell` (the body, the waker):
/// the cell is empty while the step runs, so there is nothing to drop,
/// and no drop glue is emitted on this hot path.
#[inline]
fn put_back<T>(cell: &Cell<Option<T>>, v: T) {
    let none = cell.replace(Some(v));
    debug_assert!(none.is_none(), "the step's slot was refilled meanwhile");
    std::mem::forget(none);
}

/// A clone of what a `Cell<Option<T>>` holds (the cells of `TaskHeader`
/// are `Cell`s, not `RefCell`s, to keep every task small).
fn clone_cell<T: Clone>(cell: &Cell<Option<T>>) -> Option<T> {
    let v = cell.take();
    let out = v.clone();
    cell.set(v);
    out
}

// ===== enter / leave, and the step's flags =====

#[inline]
fn enter_task(lp: &EventLoop, task: Rc<dyn AnyTask>) -> Option<Rc<dyn AnyTask>> {
    lp.inner.current_task.replace(Some(task))
}

#[inline]
fn leave_task(lp: &EventLoop, prev: Option<Rc<dyn AnyTask>>) {
    let me = lp.inner.current_task.replace(prev);
    drop(me);
}

/// What the step running on this thread tells the futures its body polls
/// (asyncio passes the same through `coro.throw()` and the yielded value).
#[derive(Clone, Copy)]
struct StepFlags {
    /// A cancel to throw at the first runtime await (asyncio's `coro.throw`).
    throw: bool,
    /// A bare yield (`sleep(0)`) asked the step to reschedule the task when
    /// the body returns `Pending` (asyncio's `__step`, `result is None`).
    yield_now: bool,
    /// The stepping task's waker, as `(data, vtable)` addresses: only
    /// compared, never followed. `(0, 0)` outside a step.
    waker: (usize, usize),
}

thread_local! {
    /// The flags of the step running on this thread (see [`StepFlags`]).
    /// A `Cell` of plain data: the cheapest thread-local there is, which
    /// matters because every await looks at it.
    static STEP: Cell<StepFlags> = const {
        Cell::new(StepFlags { throw: false, yield_now: false, waker: (0, 0) })
    };
}

#[inline]
pub(crate) fn waker_id(w: &Waker) -> (usize, usize) {
    (w.data() as usize, std::ptr::from_ref(w.vtable()) as usize)
}

/// Takes the step's throw flag: true if a cancel is to be thrown now.
#[inline]
fn take_step_throw() -> bool {
    let mut flags = STEP.get();
    if !flags.throw {
        return false;
    }
    flags.throw = false;
    STEP.set(flags);
    true
}

fn uncancel(h: &TaskHeader) -> u32 {
    let n = h.num_cancels_requested.get();
    if n > 0 {
        h.num_cancels_requested.set(n - 1);
        if n == 1 {
            h.must_cancel.set(false);
            // In the task's own step, a must_cancel the step took but has
            // not thrown yet (the body resumed on a future outside the
            // runtime) is the step's `throw` flag: it is not delivered
            // either, so it goes too. asyncio throws at once, so there
            // `_must_cancel` is the only undelivered cancel there is.
            if is_stepping(h) {
                take_step_throw();
            }
        }
    }
    h.num_cancels_requested.get()
}

/// True if the task of header `h` is the one whose step runs now, the
/// innermost (the owner of the `STEP` flags); see also `TaskCell::stepping`.
fn is_stepping(h: &TaskHeader) -> bool {
    crate::event_loop::with_running_loop(|lp| {
        let cur = lp.inner.current_task.borrow();
        cur.as_ref().is_some_and(|t| std::ptr::eq(t.header(), h))
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_cell_stays_small() {
        // A gather of 100k children keeps 100k cells alive at once, and
        // every byte of them is a byte of fresh pages (ARCHITECTURE.md,
        // "kept small on purpose"). With the `Rc` counts, the allocation is
        // 16 bytes more: 200 for a `Task<u64>` with a trivial body.
        type Trivial = std::future::Ready<Result<u64>>;
        assert_eq!(std::mem::size_of::<TaskCell<u64, Trivial>>(), 184);
        assert!(std::mem::size_of::<TaskHeader>() <= 88);
    }
}
