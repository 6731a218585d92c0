//! Context values: the counterpart of Python's `contextvars` as asyncio uses
//! it — [`ContextVar`], [`Context`], [`copy_context`], [`Context::run`] and
//! `create_task(coro, context=ctx)` ([`TaskOptions::context`]).
//!
//! A [`ContextVar`] is a key (usually a `static`). Its values live in the
//! *current context*, which is one of:
//!
//! - **the current task's own context** — by default an immutable map that
//!   `create_task` shares with the new task. [`ContextVar::set`] replaces
//!   the task's map with an updated copy, so a child never sees its
//!   parent's later changes, and a parent never sees its child's. This is
//!   asyncio's default, `Task(coro)` running in `copy_context()`, at the
//!   cost of one `Rc` clone per task;
//! - **a [`Context`]** — a shared, mutable cell holding such a map: the one
//!   a task was created with ([`TaskOptions::context`]), or the one
//!   [`Context::run`] entered. `set` then changes that `Context` itself, so
//!   every holder of it sees the change, as in Python.
//!
//! Python's rules, and what tulip does:
//!
//! | Python | tulip |
//! |---|---|
//! | `copy_context()` | [`copy_context()`]: a new [`Context`] holding the current values |
//! | `Context()`, `ctx.copy()`, `ctx.get(var)`, `len(ctx)` | [`Context::new`], [`Context::copy`], [`Context::get`], [`Context::len`] |
//! | `ctx.run(f, *args)` | [`Context::run`]`(\|\| f(args))`, which returns `Result<R>` |
//! | `token = var.set(v)`, `token.old_value`, `var.reset(token)` | [`ContextVar::set`] → [`Token`], [`Token::old_value`] (`None` for `Token.MISSING`), [`ContextVar::reset`]`(token)` |
//! | `ValueError` from `reset`: another variable's token, or one made in another context | `Err(Error::InvalidArgument)` |
//! | `RuntimeError`: a token used twice | cannot happen: `reset` takes the token |
//! | `RuntimeError: cannot enter context: ... is already entered` | `Err(Error::Runtime)` from `run` |
//! | `create_task(coro, context=ctx)` | [`TaskOptions::context`] `= Some(ctx)` |
//! | `task.get_context()` | [`Task::get_context`](crate::Task::get_context): the task's own context itself |
//! | `loop.call_soon(cb, context=ctx)`, `call_later`, `call_at` | [`EventLoop::call_soon_in`](crate::EventLoop::call_soon_in)`(ctx, cb)`, `call_later_in`, `call_at_in` |
//! | `handle.get_context()` (3.12) | [`Handle::get_context`](crate::Handle::get_context), [`TimerHandle::get_context`](crate::TimerHandle::get_context): `None` if the handle was made with no values, or is cancelled |
//! | `fut.add_done_callback(cb, context=ctx)` | [`Future::add_done_callback_in`](crate::Future::add_done_callback_in), [`Task::add_done_callback_in`](crate::Task::add_done_callback_in) |
//! | a task runs each step in `ctx.run` | the task's context *is* `ctx`: no copy |
//!
//! The last row is asyncio's own semantics, checked against CPython: a task
//! created with `context=ctx` runs in `ctx` itself, not in a copy, so its
//! `set`s are seen by later `ctx.run` calls and by every other task created
//! with the same `ctx`. For tasks with private values, give each one
//! `ctx.copy()`.
//!
//! **Callbacks.** As asyncio's `Handle` takes `copy_context()` when it is
//! made, a callback given to `call_soon`, `call_later`, `call_at`,
//! `add_done_callback`, `add_reader`, `add_writer` or
//! `add_signal_handler` runs in a snapshot of
//! the values current where it was scheduled: it sees them (as they were
//! then), its `set`s go into its own copy, and a task it creates inherits
//! that copy. If there were no values, it starts with no context (`get`
//! gives `None`), and its first `set` gives it an empty one of its own,
//! as asyncio's empty copy would take the set: the values are the
//! callback's, seen by what it calls, schedules and creates, and gone
//! when it returns (dropped by the next look at the context, or when the
//! run ends). A callback that runs more than once (a reader, a writer, a
//! signal handler) holds one context for all its calls, as asyncio's
//! handle holds one copy: the snapshot, or, if there were no values, the
//! one its first `set` made, kept when that call returns; either way what
//! one call sets, the next one sees. The check costs one thread-local
//! load until a value is first set on the thread. The transports' own readers and writers take one too, as
//! asyncio's `_add_reader` does, so a protocol's callbacks see the values
//! of the code that made (or last resumed) its transport.
//!
//! **Outside a task.** Off the loop there is no task and so no context:
//! `get` gives `None` and `set` fails. [`Context::run`] still works there: for the duration of
//! the closure its context is this thread's current one, so `get` and
//! `set` use it, and a task created inside (for example the main task of a
//! `tulip::run` called from the closure) starts with a copy of it, as in
//! Python. The loop that `tulip::run` then runs puts that context aside
//! until it returns: its callbacks run in their own contexts, as asyncio's
//! do, and one scheduled with no values neither sees nor changes it.
//!
//! **Other threads** (*deviation*). A context holds `Rc`s, so it cannot
//! cross threads: `to_thread` runs its function with no context (asyncio
//! runs it in `copy_context()`), and so does a `call_soon_threadsafe`
//! callback or a `run_coroutine_threadsafe` coroutine (asyncio's handle
//! copies the calling thread's context), whose task starts empty.
//!
//! **A task in an entered context** (*deviation*). asyncio runs each step
//! of a task created with `context=ctx` inside `ctx.run`, so if `ctx` is
//! entered when the step comes (the loop itself runs inside `ctx.run(..)`,
//! or an eager task is created with its creator's `ctx` while the creator
//! runs in it), the step fails with `RuntimeError` (reported as a failed
//! callback; the task never runs). tulip's task holds `ctx` instead of
//! entering it at each step, and runs. Everything else about entering
//! holds: `ctx.run` from such a task, or on its context from inside it,
//! fails as in asyncio.
//!
//! Production contextvars use a HAMT so that a copy is O(1) and a set is
//! O(log n); here a set clones a small `HashMap`, which is plenty for the
//! handful of variables a program has.
//!
//! The code is split by concept: this file holds [`Context`] and
//! [`copy_context`], and where the current context lives (the running
//! task's header, or the context entered outside any task); the child
//! modules below hold the rest. Their public names are re-exported here,
//! so every path stays `tulip::contextvars::NAME`.
//!
//! | file | holds | Python / asyncio |
//! |---|---|---|
//! | `contextvars/var.rs` | [`ContextVar`], [`Token`] | `contextvars.ContextVar`, `contextvars.Token` |
//! | `contextvars/loop_contexts.rs` | the contexts callbacks and tasks run in: a handle's snapshot, a reader's or signal handler's one context, a new task's, `Task::get_context`, an eager start | `Handle._context` (`events.py`), `Task._context`, `Task.get_context`, `__eager_start` (`tasks.py`) |
//!
//! # Invariants
//! - A context map is never mutated once it is shared: `set` builds a new
//!   one and swaps it in (into the task header, or into the [`Context`]).
//! - [`Context::run`] restores the caller's context on every way out of the
//!   closure, a panic included; a `Context` is entered at most once at a
//!   time (a second `run` fails), and a task already running in it counts
//!   as entered (also while an eager task it creates takes its first step).
//! - Off the loop, outside [`Context::run`], there is no context: `get`
//!   gives `None`, and `set` fails. A loop callback with no context
//!   gets one at its first `set`, marked with the loop's `entry_seq`; once
//!   the loop runs another entry (or reports the callback's failure) that
//!   one is stale, and the next look at `OUTSIDE` drops it, with any
//!   context its values' destructors made meanwhile. (A repeating
//!   callback's is kept instead: see `loop_contexts.rs`.)
//! - Each [`Context::run`] in a task, and each eager start of a task by a
//!   task (the creator's frame), pushes one frame on `TASK_FRAMES` and pops
//!   it on every way out; a task's outermost frame holds its own context
//!   while it runs in another.
//!
//! [`TaskOptions::context`]: crate::TaskOptions::context

mod loop_contexts;
mod var;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::{try_running_loop, EventLoop};
use crate::tasks::set_current_context;

pub(crate) use loop_contexts::{
    callback_context, eager_start, new_task_context, put_outside_aside, task_context, OutsideAside,
    RepeatContext,
};
pub use var::{ContextVar, Token};

/// The values of one context: variable id → value.
type Map = HashMap<usize, Rc<dyn Any>>;

thread_local! {
    /// The context [`Context::run`] entered while no task was running.
    static OUTSIDE: RefCell<Option<Rc<ContextCell>>> = const { RefCell::new(None) };
    /// Some [`ContextVar::set`] stored a value on this thread. Until then
    /// every context is empty, and scheduling a callback looks no further
    /// (one thread-local load on the `call_soon` path).
    static VALUES_SET: Cell<bool> = const { Cell::new(false) };
    /// What each [`Context::run`] made in a task (or eager start, see
    /// [`eager_start`]) puts back when it ends, innermost last (the runs
    /// nest: each is a closure call).
    static TASK_FRAMES: RefCell<Vec<TaskFrame>> = const { RefCell::new(Vec::new()) };
}

/// A [`Context::run`] in a task (or an eager task's first step in its
/// creator's, see [`eager_start`]): the task's context before it (what the
/// task's header holds again afterwards), and the [`ContextCell`] it ran in
/// before, marked entered for the duration, with its earlier flag.
struct TaskFrame {
    task: u64,
    prev: Option<Rc<dyn Any>>,
    outer: Option<(Rc<ContextCell>, bool)>,
}

/// What a [`Context`] shares: a map, replaced (never mutated) on each set.
struct ContextCell {
    map: RefCell<Rc<Map>>,
    /// Inside [`Context::run`] (Python's `ctx_entered`).
    entered: Cell<bool>,
    /// The id of the task whose own context this is, made a [`Context`]
    /// by `Task::get_context` (0: none). The tokens of the sets the task
    /// made before then belong to it (see `ContextKey::same`, in `var.rs`).
    task: Cell<u64>,
    /// Made by a `set` in a loop callback that ran with no context: that
    /// callback's own, for as long as the loop's `entry_seq` is this.
    callback: Cell<Option<u64>>,
}

impl ContextCell {
    fn new(map: Rc<Map>) -> Rc<ContextCell> {
        Rc::new(ContextCell {
            map: RefCell::new(map),
            entered: Cell::new(false),
            task: Cell::new(0),
            callback: Cell::new(None),
        })
    }

    fn map(&self) -> Rc<Map> {
        self.map.borrow().clone()
    }

    /// Swaps in `map`; the old one is dropped with no borrow held (its
    /// values' destructors may read context variables).
    fn replace(&self, map: Map) {
        let old = self.map.replace(Rc::new(map));
        drop(old);
    }
}

/// Where the current context lives.
enum Current {
    /// A task is running; its header's context (a `Map` or a `ContextCell`).
    Task(Option<Rc<dyn Any>>),
    /// No task; [`Context::run`] entered this one.
    Outside(Rc<ContextCell>),
    /// No task and no entered context.
    Nothing,
}

fn current() -> Current {
    let lp = try_running_loop();
    if let Some(lp) = &lp {
        if lp.inner.current_task.borrow().is_some() {
            return Current::Task(lp.current_context());
        }
    }
    match outside(lp.as_ref()) {
        Some(c) => Current::Outside(c),
        None => Current::Nothing,
    }
}

/// The context entered outside any task, if any: one [`Context::run`]
/// entered, or the one the running callback made for its `set`s (not one
/// an earlier callback made: that one is dropped now, its callback over).
fn outside(lp: Option<&EventLoop>) -> Option<Rc<ContextCell>> {
    let cell = OUTSIDE.with(|o| o.borrow().clone())?;
    match cell.callback.get() {
        Some(seq) if lp.is_none_or(|lp| lp.inner.entry_seq.get() != seq) => {
            let mut stale = OUTSIDE.with(|o| o.borrow_mut().take());
            drop(cell);
            while let Some(cell) = stale {
                // No borrow held: a value's Drop may read a variable, or
                // set one, which makes a context marked as the running
                // entry's. That set is no callback's (asyncio drops a
                // handle's context between callbacks, outside any
                // `_context.run`): its context goes too, or the running
                // callback would take it for its own.
                drop(cell);
                stale = OUTSIDE.with(|o| o.borrow_mut().take());
            }
            None
        }
        _ => Some(cell),
    }
}

/// asyncio runs each callback in its own copy of a context, empty when
/// nothing was set where it was scheduled, and a `set` there goes into
/// that copy. A callback that tulip runs with no context gets one at its
/// first `set` instead: empty, its own, and gone once it returns (the
/// loop has moved on to another entry). `None` off a running loop.
fn callback_own_context() -> Option<Rc<ContextCell>> {
    let lp = try_running_loop()?;
    let cell = ContextCell::new(Rc::default());
    cell.callback.set(Some(lp.inner.entry_seq.get()));
    let none = OUTSIDE.with(|o| o.replace(Some(cell.clone())));
    debug_assert!(none.is_none(), "made only where there is no context");
    Some(cell)
}

/// The map a task header's context stands for.
fn map_of(ctx: &Rc<dyn Any>) -> Option<Rc<Map>> {
    match ctx.downcast_ref::<ContextCell>() {
        Some(cell) => Some(cell.map()),
        None => ctx.clone().downcast::<Map>().ok(),
    }
}

/// The current values, whoever holds them.
fn current_map() -> Option<Rc<Map>> {
    match current() {
        Current::Task(ctx) => map_of(&ctx?),
        Current::Outside(cell) => Some(cell.map()),
        Current::Nothing => None,
    }
}

// ===== Context =====

/// Python's `contextvars.Context`: a set of context values that can be
/// entered with [`run`](Context::run) and given to a task
/// ([`TaskOptions::context`](crate::TaskOptions::context), asyncio's
/// `create_task(coro, context=ctx)`).
///
/// A `Context` is a shared handle, like a Python object reference: a clone
/// is the *same* context, and a [`ContextVar::set`] made while it is
/// current (inside `run`, or in a task created with it) is seen through
/// every clone. [`copy`](Context::copy) makes an independent one.
///
/// ```
/// use tulip::{copy_context, ContextVar};
/// static USER: ContextVar<&str> = ContextVar::new("user");
///
/// tulip::run(async {
///     let ctx = copy_context();
///     ctx.run(|| USER.set("ann"))??;              // set inside ctx ...
///     assert_eq!(USER.get(), None);                // ... not outside
///     assert_eq!(ctx.run(|| USER.get())?, Some("ann"));
///     assert_eq!(ctx.get(&USER), Some("ann"));
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Context {
    cell: Rc<ContextCell>,
}

/// Python's `contextvars.copy_context()`: a new [`Context`] holding the
/// current values (the current task's, or those of the context
/// [`Context::run`] entered; none outside both).
///
/// O(1): the new context shares the current immutable map until either
/// side sets a variable.
pub fn copy_context() -> Context {
    Context {
        cell: ContextCell::new(current_map().unwrap_or_default()),
    }
}

impl Context {
    /// An empty context (Python's `contextvars.Context()`).
    pub fn new() -> Context {
        Context {
            cell: ContextCell::new(Rc::default()),
        }
    }

    /// An independent context with the same values (Python's `ctx.copy()`).
    pub fn copy(&self) -> Context {
        Context {
            cell: ContextCell::new(self.cell.map()),
        }
    }

    /// The value `var` has in this context (Python's `ctx.get(var)`).
    pub fn get<T: Clone + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        var.get_in(&self.cell.map())
    }

    /// How many variables have a value here (Python's `len(ctx)`).
    pub fn len(&self) -> usize {
        self.cell.map.borrow().len()
    }

    /// True if no variable has a value here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if both handles are the same context.
    pub fn ptr_eq(&self, other: &Context) -> bool {
        Rc::ptr_eq(&self.cell, &other.cell)
    }

    /// Python's `ctx.run(f)`: calls `f` with this context as the current
    /// one, then puts the caller's back (also if `f` panics). Inside `f`,
    /// [`ContextVar::get`] reads this context, [`ContextVar::set`] changes
    /// it (for good: later `run`s and tasks created with it see the change),
    /// and a task created with `create_task` starts with a copy of it.
    ///
    /// In a task, the task's current context is swapped for the closure's
    /// duration. Outside any task (off the loop, or in a loop callback) the
    /// context becomes this thread's current one for that time, so a
    /// `tulip::run` called from `f` gives its main task a copy of it.
    ///
    /// Fails, as Python's does with `RuntimeError`, if this context is
    /// already entered: inside its own `run`, or from a task created with
    /// it (asyncio runs such a task's steps inside `ctx.run`).
    ///
    /// ```
    /// use tulip::{Context, ContextVar};
    /// static N: ContextVar<u32> = ContextVar::new("n");
    ///
    /// let ctx = Context::new();
    /// ctx.run(|| N.set(1)).unwrap().unwrap();    // no loop needed
    /// assert_eq!(N.get(), None);
    /// let seen = ctx.run(|| tulip::run(async { Ok(N.get()) })).unwrap().unwrap();
    /// assert_eq!(seen, Some(1));                  // the main task copied ctx
    /// assert!(ctx.run(|| ctx.run(|| ())).unwrap().is_err()); // already entered
    /// ```
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        let cell = &self.cell;
        let entered = || {
            Error::runtime(format!(
                "cannot enter context: {self:?} is already entered; run a copy of it (ctx.copy())"
            ))
        };
        if cell.entered.get() {
            return Err(entered());
        }
        match current() {
            Current::Task(prev) => {
                let outer = prev.clone().and_then(|c| c.downcast::<ContextCell>().ok());
                if outer.as_ref().is_some_and(|c| Rc::ptr_eq(c, cell)) {
                    return Err(entered());
                }
                // The context the task runs in stays entered under this
                // one, as in asyncio, whose step runs inside
                // `self._context.run`: `other.run(|| ctx.run(..))` in a
                // task created with `ctx` must fail too.
                let outer = outer.map(|c| {
                    let was = c.entered.replace(true);
                    (c, was)
                });
                let task = crate::tasks::current_task().map_or(0, |t| t.id());
                TASK_FRAMES.with(|f| f.borrow_mut().push(TaskFrame { task, prev, outer }));
                let _guard = Entered {
                    cell: cell.clone(),
                    restore: Restore::Task,
                };
                cell.entered.set(true);
                set_current_context(Some(cell.clone()));
                Ok(f())
            }
            Current::Outside(_) | Current::Nothing => {
                let prev = OUTSIDE.with(|o| o.replace(Some(cell.clone())));
                let _guard = Entered {
                    cell: cell.clone(),
                    restore: Restore::Outside(prev),
                };
                cell.entered.set(true);
                Ok(f())
            }
        }
    }
}

impl Context {
    /// Runs a callback in this context (asyncio's `Handle._run`:
    /// `self._context.run(self._callback, *self._args)`). The context is a
    /// snapshot that only the callback holds, so it is never entered
    /// already.
    pub(crate) fn run_callback<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.run(f) {
            Ok(r) => r,
            Err(e) => unreachable!("a callback's own context was entered: {e}"),
        }
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Context {:p} vars={}>",
            Rc::as_ptr(&self.cell),
            self.len()
        )
    }
}

/// What [`Context::run`] puts back.
enum Restore {
    /// In a task: the innermost [`TaskFrame`].
    Task,
    /// The previously entered outside context.
    Outside(Option<Rc<ContextCell>>),
}

/// Leaves the context on every way out of [`Context::run`].
struct Entered {
    cell: Rc<ContextCell>,
    restore: Restore,
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.cell.entered.set(false);
        match std::mem::replace(&mut self.restore, Restore::Outside(None)) {
            Restore::Task => pop_task_frame(),
            Restore::Outside(prev) => {
                let mine = OUTSIDE.with(|o| o.replace(prev));
                drop(mine);
            }
        }
    }
}

/// Ends the innermost [`TaskFrame`]: the context it entered over is no
/// longer entered (unless it was before), and the current task (the
/// frame's) holds its context from before again.
fn pop_task_frame() {
    let frame = TASK_FRAMES.with(|f| f.borrow_mut().pop());
    let Some(TaskFrame { prev, outer, .. }) = frame else {
        return;
    };
    if let Some((outer, was)) = outer {
        outer.entered.set(was);
    }
    set_current_context(prev);
}
