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
//! - A task's waker is made at its first step and goes back to the loop's
//!   pool when the task is done, only if no clone of it is left: a waker
//!   someone still holds is never re-aimed at another task.
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

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{
    get_running_loop, try_running_loop, with_running_if, EventLoop, ExceptionContext, Interrupt,
    Ready, Runnable, TaskFactory,
};
use crate::futures::{CallbackId, Cancel, FutureCore, Notify, Owner, State};
use crate::threadsafe::{Remote, Shared};

/// asyncio's `_task_name_counter`: names are `Task-1`, `Task-2`, ... A
/// task created without a name takes the next number, as its id and its
/// name; one created with a name takes none (3.13's `Task.__init__` calls
/// the counter only `if name is None`).
static TASK_COUNTER: AtomicU64 = AtomicU64::new(1);
/// The ids of tasks created with a name: a range of their own, above every
/// number `TASK_COUNTER` will reach, so that they stay unique without
/// taking a `Task-N` number.
static NAMED_TASK_COUNTER: AtomicU64 = AtomicU64::new(1 << 63);

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

/// The waker of a task: its slab key and id, and the way to its loop.
///
/// Made at the task's first step, not at `create_task` (a task cancelled
/// before it starts never needs one), and recycled when the task is done
/// and no one else holds a clone: most tasks (a trivial child of `gather`,
/// a task that never suspends) then cost no waker allocation at all. The
/// key and id are atomics only so that a recycled waker can be re-aimed;
/// a waker is recycled only when no clone of it is left, so no holder ever
/// sees it re-aimed. What `wake_task` checks the id against is a stale
/// `(key, id)` message already in the thread-safe channel.
pub(crate) struct TaskWaker {
    shared: Arc<Shared>,
    key: AtomicUsize,
    id: AtomicU64,
}

/// The loop's pool of idle task wakers (see [`TaskWaker`]): the one put
/// back last in a plain `Cell` (a task that finishes in the step that made
/// its waker hands it straight to the next task, the common case in a
/// gather), the others in a list.
#[derive(Default)]
pub(crate) struct WakerPool {
    last: Cell<Option<WakerSlot>>,
    more: std::cell::RefCell<Vec<WakerSlot>>,
}

/// At most this many idle wakers are kept per loop.
const WAKER_POOL_MAX: usize = 64;

/// A task's waker, with the `Arc` behind it, so that the task can tell at
/// its end whether anyone else still holds a clone. Pooled as a pair: no
/// reference count changes hands when a waker is reused.
pub(crate) struct WakerSlot {
    arc: Arc<TaskWaker>,
    waker: Waker,
}

impl WakerSlot {
    /// A waker aimed at task `(key, id)`: a pooled one, or a new one.
    /// Once per task, out of the step's hot path.
    #[inline(never)]
    fn new(lp: &EventLoop, key: usize, id: u64) -> WakerSlot {
        let pool = &lp.inner.waker_pool;
        let pooled = match pool.last.take() {
            Some(slot) => Some(slot),
            None => pool.more.borrow_mut().pop(),
        };
        if let Some(slot) = pooled {
            // Ours alone (see `recycle`): no other thread can read these.
            slot.arc.key.store(key, Ordering::Relaxed);
            slot.arc.id.store(id, Ordering::Relaxed);
            return slot;
        }
        let arc = Arc::new(TaskWaker {
            shared: lp.inner.shared.clone(),
            key: AtomicUsize::new(key),
            id: AtomicU64::new(id),
        });
        let waker = Waker::from(arc.clone());
        WakerSlot { arc, waker }
    }

    /// The task is done: back to the pool if no clone is left anywhere
    /// (the two references are the slot's own: `arc` and `waker`).
    fn recycle(self, lp: &EventLoop) {
        if Arc::strong_count(&self.arc) == 2 {
            // Pairs with the release decrement of the last clone dropped on
            // another thread: its reads of key/id come before our re-aiming.
            std::sync::atomic::fence(Ordering::Acquire);
            let pool = &lp.inner.waker_pool;
            if let Some(older) = pool.last.replace(Some(self)) {
                let mut more = pool.more.borrow_mut();
                if more.len() < WAKER_POOL_MAX {
                    more.push(older);
                }
            }
        }
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let key = self.key.load(Ordering::Relaxed);
        let id = self.id.load(Ordering::Relaxed);
        // On the loop's own thread while it runs: a plain push onto the ready queue.
        if !with_running_if(&self.shared, |inner| inner.wake_task(key, id)) {
            // Elsewhere: through the thread-safe queue. A closed loop drops the wake.
            let _ = self.shared.send(Remote::Wake(key, id));
        }
    }
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

/// Options for [`EventLoop::create_task_with`].
#[derive(Clone, Debug, Default)]
pub struct TaskOptions {
    /// The task's name; `Task-N` if `None` (a task given a name takes no
    /// `N`, as in asyncio 3.13).
    pub name: Option<String>,
    /// Start eagerly (asyncio 3.12's eager tasks, C6); `None` follows the
    /// loop's task factory. As in asyncio, a task starts eagerly only when
    /// created on the running loop; otherwise its first step is scheduled.
    pub eager: Option<bool>,
    /// asyncio's `create_task(coro, context=ctx)`: the task runs in this
    /// [`Context`](crate::Context) itself, as asyncio's does (no copy), so
    /// its `ContextVar::set`s change `ctx` for every holder of it. `None`:
    /// a copy of the creator's current context (asyncio's default).
    pub context: Option<crate::contextvars::Context>,
}

impl EventLoop {
    /// asyncio's `loop.create_task(coro)`: wraps `fut` in a task and
    /// schedules its first step (or runs it now with the eager factory).
    #[track_caller]
    pub fn create_task<T, F>(&self, fut: F) -> Result<Task<T>>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        self.create_task_with(fut, TaskOptions::default())
    }

    /// `create_task` with a name, an eager start and/or a context (see
    /// [`TaskOptions`]).
    pub fn create_task_with<T, F>(&self, fut: F, opts: TaskOptions) -> Result<Task<T>>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        self.check_closed()?;
        let counter = match opts.name {
            None => &TASK_COUNTER,
            Some(_) => &NAMED_TASK_COUNTER,
        };
        let id = counter.fetch_add(1, Ordering::Relaxed);
        let mut tasks = self.inner.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        let key = u32::try_from(key).expect("more than 4 billion pending tasks");
        let cell = Rc::new(TaskCell {
            header: TaskHeader {
                id,
                key,
                extra: Cell::new(opts.name.map(|n| {
                    Box::new(TaskExtra {
                        name: Some(n.into_boxed_str()),
                        cancel_message: None,
                    })
                })),
                scheduled: Cell::new(false),
                must_cancel: Cell::new(false),
                num_cancels_requested: Cell::new(0),
                fut_waiter: Cell::new(None),
                started: Cell::new(false),
                log_destroy_pending: Cell::new(true),
                waker: Cell::new(None),
                context: Cell::new(crate::contextvars::new_task_context(self, opts.context)),
            },
            core: FutureCore::new(self.clone()),
            body: Cell::new(Some(Box::pin(fut))),
        });
        entry.insert(cell.clone());
        drop(tasks);
        let eager = opts
            .eager
            .unwrap_or(self.inner.task_factory.get() == TaskFactory::Eager);
        // asyncio's Task.__init__: `if eager_start and self._loop.is_running()`.
        // Off the running loop (e.g. run_until_complete's own task) the first
        // step is scheduled as usual, so the body finds its running loop.
        if eager && self.is_running() {
            // asyncio's __eager_start: run the first step now, as the current
            // task, then put the creator back. A task that finishes here is
            // never scheduled.
            let interrupted = crate::contextvars::eager_start(self, || cell.clone().step());
            if interrupted {
                interrupt_from_task();
            }
        } else {
            cell.header.scheduled.set(true);
            self.inner
                .ready
                .borrow_mut()
                .push_back(cell.clone() as Ready);
        }
        Ok(Task { inner: cell })
    }
}

/// asyncio's `create_task(coro)`: creates a task on the running loop.
#[track_caller]
pub fn create_task<T, F>(fut: F) -> Result<Task<T>>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    get_running_loop()?.create_task(fut)
}

/// `create_task` with a name.
pub fn create_task_named<T, F>(fut: F, name: impl Into<String>) -> Result<Task<T>>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    get_running_loop()?.create_task_with(
        fut,
        TaskOptions {
            name: Some(name.into()),
            ..TaskOptions::default()
        },
    )
}

fn interrupt_from_task() -> ! {
    std::panic::resume_unwind(Box::new(Interrupt))
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

// ===== enter / leave, and the hooks runtime futures call =====

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

/// Called by a runtime future of loop `lp` at the start of its `poll`: if
/// the current task has a cancel to throw at this await, takes it.
#[inline]
pub(crate) fn take_throw_on(lp: &EventLoop) -> Option<Error> {
    if !take_step_throw() {
        return None;
    }
    Some(Error::Cancelled(current_cancel_message(lp)))
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

/// The cancel message of `lp`'s current task (for a throw).
fn current_cancel_message(lp: &EventLoop) -> Option<Arc<str>> {
    let cur = lp.inner.current_task.borrow();
    cur.as_ref().and_then(|t| t.header().cancel_message())
}

/// asyncio's bare `yield` (`__sleep0`), called by a future at its first
/// poll: `Err(Cancelled)` if the current task has a cancel to throw at this
/// await (as [`take_throw_on`]); else, if the future is polled with the
/// stepping task's own waker, the step will reschedule the task when the
/// body returns `Pending`, with no wake-up through the waker, and the
/// answer is `Ok(true)`. `Ok(false)`: some other waker (a combinator's own,
/// or no task), which the caller must wake itself.
#[inline]
pub(crate) fn bare_yield(waker: &Waker) -> Result<bool> {
    if let Some(err) = take_throw() {
        return Err(err);
    }
    let mut flags = STEP.get();
    if flags.waker != (0, 0) && flags.waker == waker_id(waker) {
        flags.yield_now = true;
        STEP.set(flags);
        return Ok(true);
    }
    Ok(false)
}

/// Called by a runtime future of loop `lp` that is about to return
/// `Pending`, before it registers the waker: it becomes the current task's
/// `fut_waiter`. Fails if the task stepping now belongs to another loop
/// (asyncio's `__step`: "Task ... got Future ... attached to a different
/// loop"); the future must then not suspend, nor register the waker.
#[inline]
pub(crate) fn set_fut_waiter_on(lp: &EventLoop, w: Rc<dyn Cancel>) -> Result<()> {
    let cur = lp.inner.current_task.borrow();
    let Some(t) = cur.as_ref() else {
        drop(cur);
        return check_no_foreign_step();
    };
    let old = t.header().fut_waiter.replace(Some(w));
    drop(cur);
    drop(old);
    Ok(())
}

/// A runtime future whose loop runs no task is polled: fine outside any
/// step (a plain executor, a callback), an error inside the step of a task
/// of another loop.
#[cold]
#[inline(never)]
fn check_no_foreign_step() -> Result<()> {
    if STEP.get().waker == (0, 0) {
        return Ok(());
    }
    let task = crate::event_loop::with_running_loop(|lp| {
        let cur = lp.inner.current_task.borrow();
        cur.as_ref().map(|t| t.describe())
    })
    .flatten()
    .unwrap_or_else(|| "<Task>".into());
    Err(Error::runtime(format!(
        "Task {task} got a Future attached to a different loop: await only futures made by the loop the task runs on"
    )))
}

/// [`take_throw_on`] for the running loop (for futures that do not know their loop).
pub(crate) fn take_throw() -> Option<Error> {
    if !take_step_throw() {
        return None;
    }
    let msg = crate::event_loop::with_running_loop(current_cancel_message).flatten();
    Some(Error::Cancelled(msg))
}

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

/// True if `task` is the task running right now.
fn is_current(lp: &EventLoop, task: &Rc<dyn AnyTask>) -> bool {
    lp.inner
        .current_task
        .borrow()
        .as_ref()
        .is_some_and(|cur| std::ptr::addr_eq(Rc::as_ptr(cur), Rc::as_ptr(task)))
}

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
    /// ([`TaskOptions::context`]), or its own, which holds what it
    /// inherited and has set. It is the task's context itself, not a copy:
    /// [`Context::run`](crate::Context::run) on it (while the task is not
    /// running) sees and changes the task's values, and a task created
    /// with it ([`TaskOptions::context`]) shares them.
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

/// A task of any result type: what [`current_task`] and [`all_tasks`] return.
#[derive(Clone)]
pub struct TaskRef {
    inner: Rc<dyn AnyTask>,
}

impl TaskRef {
    /// Requests cancellation, like [`Task::cancel`].
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
    /// [`Task::get_context`]).
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
    task: Rc<dyn AnyTask>,
    /// The waiter, and the id of the done callback that releases it.
    waiter: Option<(crate::futures::Future<()>, CallbackId)>,
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
