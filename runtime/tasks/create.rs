//! Creating a task: [`TaskOptions`], [`create_task`],
//! [`create_task_named`] and [`EventLoop::create_task`]. Mirrors
//! `Task.__init__`, `Task.__eager_start` and `create_task` in
//! `Lib/asyncio/tasks.py`, and `BaseEventLoop.create_task` in
//! `Lib/asyncio/base_events.py`.
//!
//! # Invariants
//! - Task ids are unique per process: a task created without a name takes
//!   the next `TASK_COUNTER` number, which is also its `Task-N` name; one
//!   created with a name takes its id from `NAMED_TASK_COUNTER`'s range,
//!   above every `Task-N` number (asyncio 3.13 counts only unnamed tasks).
//! - A task is made only on an open loop (a closed one fails with
//!   [`Error::Closed`](crate::Error::Closed)), and it enters the loop's task
//!   slab before its first step runs or is scheduled.
//! - An eager task's first step runs inside `create_task` only on the
//!   running loop (asyncio's `eager_start and self._loop.is_running()`), as
//!   the current task, and the creator is put back after it; otherwise the
//!   first step is scheduled, `scheduled` set, like any task's.

use std::cell::Cell;
use std::future::Future as StdFuture;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AnyTask, Task, TaskCell, TaskExtra, TaskHeader};
use crate::error::Result;
use crate::event_loop::{get_running_loop, EventLoop, Interrupt, Ready, TaskFactory};
use crate::futures::FutureCore;

/// asyncio's `_task_name_counter`: names are `Task-1`, `Task-2`, ... A
/// task created without a name takes the next number, as its id and its
/// name; one created with a name takes none (3.13's `Task.__init__` calls
/// the counter only `if name is None`).
static TASK_COUNTER: AtomicU64 = AtomicU64::new(1);
/// The ids of tasks created with a name: a range of their own, above every
/// number `TASK_COUNTER` will reach, so that they stay unique without
/// taking a `Task-N` number.
static NAMED_TASK_COUNTER: AtomicU64 = AtomicU64::new(1 << 63);

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
