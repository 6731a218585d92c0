//! Structured concurrency. Mirrors `Lib/asyncio/taskgroups.py` (`TaskGroup`).
//!
//! [`TaskGroup::run`] plays `async with TaskGroup() as tg:` — the body runs in
//! the current (parent) task, and leaving it waits for every task created
//! with [`TaskGroup::create_task`]. The first child error aborts the group:
//! the other children are cancelled, and so is the parent (to stop the
//! body), with `cancel()` — later matched by `uncancel()` so that the
//! parent's cancelling level is preserved. All errors come back together as
//! [`Error::Group`].
//!
//! # Invariants
//! - `tasks` holds exactly the children whose done notification has not
//!   run yet (a child is in it from `create_task` to its `notify`).
//! - `parent_cancel_requested` is set at most once, and then the exit path
//!   calls `uncancel()` on the parent exactly once (K7).
//! - After the group failed (`aborting`) or exited, `create_task` fails.
//! - `Interrupted` (asyncio's KeyboardInterrupt) is a base error: it is
//!   raised as it is, not inside the group.
//! - A panic in the body is the body's error (C5): it goes through the exit
//!   path like any other (children cancelled and awaited, `Error::Panic` in
//!   the group), so no child is left running on its own. An interrupt in
//!   the body cancels the children and goes on unwinding.
//! - A `run` future dropped before it finished is an exit path too: the
//!   children are cancelled (`_abort`) and a parent cancel the group
//!   requested is taken back, so an orphaned child never cancels the parent.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future as StdFuture};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::task::Poll;

use slab::Slab;

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{get_running_loop, ExceptionContext, Interrupt, LoopRef};
use crate::futures::{Future, Notify};
use crate::tasks::{current_task, Task, TaskOptions, TaskRef};

struct TaskGroupInner {
    lp: LoopRef,
    parent: TaskRef,
    exiting: Cell<bool>,
    aborting: Cell<bool>,
    parent_cancel_requested: Cell<bool>,
    /// asyncio's `_tasks` set: a slab, whose key is the child's index in
    /// its done notification (no hashing, no per-child callback cell).
    tasks: RefCell<Slab<TaskRef>>,
    errors: RefCell<Vec<Error>>,
    base_error: RefCell<Option<Error>>,
    on_completed: RefCell<Option<Future<()>>>,
}

/// asyncio's `TaskGroup`. Clones refer to the same group.
///
/// ```
/// let (a, b) = tulip::run(async {
///     tulip::TaskGroup::run(|tg| async move {
///         let a = tg.create_task(async { tulip::sleep(0.01).await?; Ok(1) })?;
///         let b = tg.create_task(async { Ok(2) })?;
///         Ok((a, b))
///     })
///     .await
///     .map(|(a, b)| (a.result().unwrap(), b.result().unwrap()))
/// }).unwrap();
/// assert_eq!((a, b), (1, 2));
/// ```
#[derive(Clone)]
pub struct TaskGroup {
    inner: Rc<TaskGroupInner>,
}

impl TaskGroup {
    /// Runs `body` with a new group in the current task, then waits for
    /// every task of the group (`async with TaskGroup() as tg:`).
    ///
    /// Returns the body's output, or an [`Error::Group`] of every error
    /// (children's and the body's) if any failed.
    pub async fn run<T, B, Fut>(body: B) -> Result<T>
    where
        B: FnOnce(TaskGroup) -> Fut,
        Fut: StdFuture<Output = Result<T>>,
    {
        let tg = TaskGroup::enter()?;
        // Dropped before the end (the coroutine closed inside `async with`):
        // the children are cancelled, as `__aexit__`'s `_abort()` does.
        let mut exit = DropGuard {
            tg: &tg,
            done: false,
        };
        // Any error of the body goes through `__aexit__`, a panic too (it
        // is the task's error, C5): the children are cancelled and waited
        // for, and the panic comes back in the group. The body is dropped
        // before the wait.
        let out = {
            let mut body = std::pin::pin!(body(tg.clone()));
            poll_fn(
                |cx| match catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(cx))) {
                    Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(payload) => Poll::Ready(Err(payload)),
                },
            )
            .await
        };
        let out = match out {
            Ok(out) => out,
            Err(payload) if payload.is::<Interrupt>() => {
                // asyncio's KeyboardInterrupt: the loop stops now; the
                // children are cancelled, not left to run on their own.
                tg.abort();
                resume_unwind(payload)
            }
            Err(payload) => Err(Error::Panic(panic_message(&*payload))),
        };
        let r = tg.aexit(out).await;
        exit.done = true;
        r
    }

    /// asyncio's `__aenter__`.
    fn enter() -> Result<TaskGroup> {
        let lp = get_running_loop()?;
        let parent = current_task()
            .ok_or_else(|| Error::runtime(
                "TaskGroup cannot determine the parent task: call TaskGroup::run from inside a task",
            ))?;
        Ok(TaskGroup {
            inner: Rc::new(TaskGroupInner {
                lp: LoopRef::new(lp),
                parent,
                exiting: Cell::new(false),
                aborting: Cell::new(false),
                parent_cancel_requested: Cell::new(false),
                tasks: RefCell::new(Slab::new()),
                errors: RefCell::new(Vec::new()),
                base_error: RefCell::new(None),
                on_completed: RefCell::new(None),
            }),
        })
    }

    /// Creates a task in the group. Fails once the group is shutting down
    /// (a child failed) or finished (K7).
    pub fn create_task<T, F>(&self, fut: F) -> Result<Task<T>>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        self.create_task_with(fut, TaskOptions::default())
    }

    /// `create_task` with a name.
    pub fn create_task_named<T, F>(&self, fut: F, name: impl Into<String>) -> Result<Task<T>>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        self.create_task_with(
            fut,
            TaskOptions {
                name: Some(name.into()),
                ..TaskOptions::default()
            },
        )
    }

    /// `create_task` with [`TaskOptions`].
    pub fn create_task_with<T, F>(&self, fut: F, opts: TaskOptions) -> Result<Task<T>>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        let inner = &self.inner;
        if inner.exiting.get() && inner.tasks.borrow().is_empty() {
            return Err(Error::runtime(
                "TaskGroup is finished: create tasks inside its body, or use a new TaskGroup",
            ));
        }
        if inner.aborting.get() {
            return Err(Error::runtime(
                "TaskGroup is shutting down: a task of it failed, so it takes no new tasks",
            ));
        }
        let task = inner.lp.create_task_with(fut, opts)?;
        let key = inner.tasks.borrow_mut().insert(task.as_ref());
        // asyncio's `task.add_done_callback(self._on_task_done)`, even for
        // a task that is done already (an eager one: gh-128550), as the
        // runtime's allocation-free notification (see `Notify`).
        let index = u32::try_from(key).expect("fewer than 2^32 tasks in one group");
        task.add_notify(self.inner.clone(), index);
        Ok(task)
    }

    /// How many children the group still holds (asyncio's `_tasks`): a
    /// child counts until the group hears it is done, from the ready
    /// queue, so one that finished in this iteration (or inside
    /// `create_task`, eagerly) still counts.
    pub fn len(&self) -> usize {
        self.inner.tasks.borrow().len()
    }

    /// True if the group holds no child (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// asyncio's `_abort`: cancel every child not done.
    fn abort(&self) {
        abort(&self.inner);
    }

    /// asyncio's `__aexit__`/`_aexit`.
    async fn aexit<T>(&self, out: Result<T>) -> Result<T> {
        let inner = &*self.inner;
        inner.exiting.set(true);
        let mut propagate: Option<Error> = None;
        if let Err(e) = &out {
            if matches!(e, Error::Interrupted) && inner.base_error.borrow().is_none() {
                *inner.base_error.borrow_mut() = Some(e.clone());
            }
            if e.is_cancelled() {
                propagate = Some(e.clone());
            }
            if !inner.aborting.get() {
                // The parent is being cancelled, or the body failed.
                self.abort();
            }
        }
        // A loop: the waiter may be cancelled repeatedly, if the parent is.
        while !inner.tasks.borrow().is_empty() {
            let fut = {
                let mut slot = inner.on_completed.borrow_mut();
                match &*slot {
                    Some(f) => f.clone(),
                    None => {
                        let f: Future<()> = inner.lp.create_future();
                        *slot = Some(f.clone());
                        f
                    }
                }
            };
            if let Err(e) = fut.await {
                if e.is_cancelled() && !inner.aborting.get() {
                    // The parent is cancelled while children still run.
                    propagate = Some(e);
                    self.abort();
                }
            }
            *inner.on_completed.borrow_mut() = None;
        }
        if let Some(e) = inner.base_error.borrow_mut().take() {
            return Err(e);
        }
        if inner.parent_cancel_requested.get() && inner.parent.uncancel() == 0 {
            // No cancel left pending: don't propagate Cancelled.
            propagate = None;
        }
        if let Some(p) = propagate {
            if inner.errors.borrow().is_empty() {
                return Err(p);
            }
        }
        if let Err(e) = &out {
            if !e.is_cancelled() {
                inner.errors.borrow_mut().push(e.clone());
            }
        }
        let errors = std::mem::take(&mut *inner.errors.borrow_mut());
        if !errors.is_empty() {
            // Keep an outside cancel of the parent pending, at the same level.
            if inner.parent.cancelling() > 0 {
                inner.parent.uncancel();
                inner.parent.cancel();
            }
            return Err(Error::Group {
                message: "unhandled errors in a TaskGroup".into(),
                errors: errors.into(),
            });
        }
        out
    }
}

fn abort(inner: &TaskGroupInner) {
    inner.aborting.set(true);
    let tasks: Vec<TaskRef> = inner
        .tasks
        .borrow()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    for t in tasks {
        if !t.done() {
            t.cancel();
        }
    }
}

/// [`TaskGroup::run`] dropped before it finished, in its body or while it
/// waits for the children. asyncio's `__aexit__` for a closed coroutine
/// runs `_abort()`: the children are cancelled, and with `_aborting` set a
/// child that fails later never cancels the parent. A cancel of the parent
/// the group already requested is taken back, as the exit path's
/// `uncancel()` would have done.
struct DropGuard<'a> {
    tg: &'a TaskGroup,
    done: bool,
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let inner = &*self.tg.inner;
        inner.exiting.set(true);
        if !inner.aborting.get() {
            abort(inner);
        }
        if inner.parent_cancel_requested.get() {
            inner.parent.uncancel();
        }
    }
}

impl Notify for TaskGroupInner {
    /// The child at `index` in `tasks` is done.
    fn notify(&self, index: u32) {
        let task = self.tasks.borrow_mut().try_remove(index as usize);
        if let Some(task) = task {
            on_task_done(self, &task);
        }
    }
}

/// asyncio's `_on_task_done`, for a child already out of `tasks`.
fn on_task_done(inner: &TaskGroupInner, task: &TaskRef) {
    if inner.tasks.borrow().is_empty() {
        let f = inner.on_completed.borrow().clone();
        if let Some(f) = f {
            if !f.done() {
                let _ = f.set_result(());
            }
        }
    }
    if task.cancelled() {
        return;
    }
    let Some(err) = task.error() else {
        return; // finished
    };
    if matches!(err, Error::Interrupted) && inner.base_error.borrow().is_none() {
        *inner.base_error.borrow_mut() = Some(err.clone());
    }
    inner.errors.borrow_mut().push(err.clone());
    if inner.parent.done() {
        let task = format!("{task:?}");
        inner.lp.call_exception_handler(&ExceptionContext {
            message: format!(
                "Task {task} has errored out but its parent task {:?} is already completed",
                inner.parent
            ),
            error: Some(err),
            task: Some(task),
            ..Default::default()
        });
        return;
    }
    if !inner.aborting.get() && !inner.parent_cancel_requested.get() {
        // Stop the body too: cancel the parent, and uncancel it on exit.
        abort(inner);
        inner.parent_cancel_requested.set(true);
        inner.parent.cancel();
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        write!(f, "<TaskGroup tasks={}", i.tasks.borrow().len())?;
        let e = i.errors.borrow().len();
        if e > 0 {
            write!(f, " errors={e}")?;
        }
        if i.aborting.get() {
            f.write_str(" cancelling")?;
        } else if i.exiting.get() {
            f.write_str(" exiting")?;
        }
        f.write_str(">")
    }
}
