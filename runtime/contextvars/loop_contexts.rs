//! The contexts that loop callbacks and tasks run in. Mirrors the
//! `_context` of asyncio's `Handle` (`Lib/asyncio/events.py`: a
//! `copy_context()` taken when the callback is scheduled, entered by
//! `Handle._run`), of `Task` (`Lib/asyncio/tasks.py`: `Task.__init__`'s
//! `context=`, `get_context`, `__eager_start`), and `run_forever` running
//! no callback in its caller's context (`base_events.py`).
//!
//! # Invariants
//! - A task created without [`TaskOptions::context`] starts with a snapshot
//!   of its creator's current values; one created with it holds that very
//!   [`Context`] (shared, never copied).
//! - A callback scheduled where some value is current runs inside a
//!   [`Context`] of its own, a snapshot taken when it was scheduled; only
//!   its handle holds that context (and whoever took it with
//!   `Handle::get_context`, as asyncio's `get_context()` hands it out).
//!   One given a context (`call_soon_in`) runs in that context itself.
//!   Either runs not at all if its context is entered then (reported as
//!   its error). A reader's, writer's or signal handler's is never handed
//!   out, so entering it never fails.
//! - A repeating callback's own context (`RepeatContext`), made by its
//!   first `set`, is taken out of `OUTSIDE` as its call ends, before the
//!   loop moves on and it goes stale, and kept for its next calls.
//! - While a loop runs, a context [`Context::run`] entered around the run
//!   is put aside (and put back when the run ends): no callback runs in it.
//! - A task's own context is one context from its creation on: the map it
//!   holds, and the [`Context`] that `Task::get_context` makes of that map
//!   (once), are its values before and after; a token of either resets it.
//! - Until a value is first set on the thread (`VALUES_SET`), scheduling a
//!   callback costs one thread-local load and wraps nothing.
//!
//! [`TaskOptions::context`]: crate::TaskOptions::context

use std::any::Any;
use std::cell::Cell;
use std::rc::Rc;

use super::{
    current_map, map_of, outside, pop_task_frame, Context, ContextCell, Map, TaskFrame, OUTSIDE,
    TASK_FRAMES, VALUES_SET,
};
use crate::event_loop::{try_running_loop, EventLoop};

/// The context a callback scheduled now will run in (asyncio's `Handle`
/// takes `contextvars.copy_context()`): a snapshot of the current values,
/// or `None` when there are none. Such a callback then runs with no
/// context, as it would in an empty copy, except that `set` fails there;
/// and scheduling it costs nothing more.
#[inline]
pub(crate) fn callback_context() -> Option<Context> {
    if !VALUES_SET.with(Cell::get) {
        return None;
    }
    snapshot_for_callback()
}

#[inline(never)]
fn snapshot_for_callback() -> Option<Context> {
    let map = current_map()?;
    if map.is_empty() {
        return None;
    }
    Some(Context {
        cell: ContextCell::new(map),
    })
}

/// The context of a callback that runs more than once: a reader's or a
/// writer's (`add_io`), a signal handler's. asyncio's handle holds one
/// `copy_context()` for all its calls, so what one call sets, the next one
/// sees, also when the copy started empty. Here the snapshot is taken when
/// the callback is registered ([`callback_context`]); with no values then,
/// there is none, and the context the callback's first `set` makes (see
/// [`callback_own_context`](super::callback_own_context)) is kept when that call returns, to be the one
/// later calls run in. Until a value is first set on the thread, a call
/// costs one thread-local load more than the bare callback.
pub(crate) struct RepeatContext(Cell<Option<Context>>);

impl RepeatContext {
    /// The context of a callback registered now.
    #[inline]
    pub(crate) fn new() -> RepeatContext {
        RepeatContext(Cell::new(callback_context()))
    }

    /// Runs one call of the callback in its context (asyncio's
    /// `Handle._run`), or with none, keeping the one its `set` made.
    #[inline]
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        match self.0.take() {
            Some(ctx) => {
                self.0.set(Some(ctx.clone()));
                ctx.run_callback(f)
            }
            None => {
                let _keep = KeepOwn(&self.0);
                f()
            }
        }
    }
}

/// Moves the context a callback's `set` made into its [`RepeatContext`]
/// when the call ends, however it ends (asyncio's handle keeps the sets of
/// a call that raised, too).
struct KeepOwn<'a>(&'a Cell<Option<Context>>);

impl Drop for KeepOwn<'_> {
    #[inline]
    fn drop(&mut self) {
        if VALUES_SET.with(Cell::get) {
            keep_callback_own_context(self.0);
        }
    }
}

/// The running entry's own context (made by [`callback_own_context`](super::callback_own_context) while
/// this entry runs, so it is the callback's), moved out of `OUTSIDE` into
/// `slot`, as an ordinary context: no longer dropped when the loop moves on.
#[inline(never)]
fn keep_callback_own_context(slot: &Cell<Option<Context>>) {
    let Some(lp) = try_running_loop() else {
        return;
    };
    let seq = lp.inner.entry_seq.get();
    let own = OUTSIDE.with(|o| {
        let mut o = o.borrow_mut();
        match &*o {
            Some(cell) if cell.callback.get() == Some(seq) => o.take(),
            _ => None,
        }
    });
    if let Some(cell) = own {
        cell.callback.set(None);
        slot.set(Some(Context { cell }));
    }
}

/// The context [`Context::run`] entered outside the loop, put aside while
/// the loop runs (`run_forever`) and put back when it returns, however.
pub(crate) struct OutsideAside(Option<Rc<ContextCell>>);

/// Puts aside the context entered around a loop run: in asyncio every
/// callback runs in its own context (`Handle._context.run`), never in the
/// one `run_forever` was called in, so a callback scheduled with no values
/// (or a transport's protocol call) must not see, nor set, that one. The
/// tasks made before the run (`tulip::run`'s main task) have copied it
/// already.
pub(crate) fn put_outside_aside() -> OutsideAside {
    OutsideAside(OUTSIDE.with(|o| o.borrow_mut().take()))
}

impl Drop for OutsideAside {
    fn drop(&mut self) {
        let cell = self.0.take();
        let inner = OUTSIDE.with(|o| o.replace(cell));
        drop(inner);
    }
}

/// The context a new task of `lp` starts with (used by `create_task_with`):
/// `explicit` itself (asyncio's `context=`), else a snapshot of the
/// creator's current values — the current task's, or, with no task running,
/// the context [`Context::run`] entered.
pub(crate) fn new_task_context(lp: &EventLoop, explicit: Option<Context>) -> Option<Rc<dyn Any>> {
    if let Some(ctx) = explicit {
        return Some(ctx.cell);
    }
    match lp.current_task_context() {
        // A shared Context: snapshot its map.
        Some(Some(ctx)) if ctx.is::<ContextCell>() => map_of(&ctx).map(|m| m as Rc<dyn Any>),
        // The task's own immutable map: share it (or a task with no values yet).
        Some(ctx) => ctx,
        // Outside any task: the thread's own context.
        None => outside(try_running_loop().as_ref()).map(|c| c.map() as Rc<dyn Any>),
    }
}

/// asyncio's `Task.get_context()`: the context task `task` runs in. One
/// created with [`TaskOptions::context`](crate::TaskOptions::context)
/// holds that [`Context`]; any other holds its own values as an immutable
/// map, which becomes a `Context` now (once): the task's later sets then
/// change it in place, seen by every holder of the returned handle, as in
/// Python, where the task's context is that object all along. `own` is
/// the task header's context; while the task is inside a [`Context::run`]
/// its own context waits in that run's [`TaskFrame`] (the outermost one
/// of the task) instead.
pub(crate) fn task_context(task: u64, own: &Cell<Option<Rc<dyn Any>>>) -> Context {
    let framed = TASK_FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        let frame = frames.iter_mut().find(|fr| fr.task == task)?;
        let (ctx, made) = as_context(&mut frame.prev, task);
        if made {
            // The task runs in it, under this frame's `run`: entered, as
            // the frame's `outer` would have marked it (and will unmark it).
            ctx.cell.entered.set(true);
            frame.outer = Some((ctx.cell.clone(), false));
        }
        Some(ctx)
    });
    if let Some(ctx) = framed {
        return ctx;
    }
    let mut slot = own.take();
    let (ctx, _) = as_context(&mut slot, task);
    own.set(slot);
    ctx
}

/// Runs `step`, an eager task's first step (asyncio's `__eager_start`),
/// which asyncio runs inside its creator's step: the new task's
/// `self._context.run(...)` nests in the creator's own `_context.run`, so
/// the creator's context stays entered meanwhile, and the new task cannot
/// enter it (`RuntimeError`) nor change the creator's values through it. A
/// creator that is a task gets a [`TaskFrame`] for that time, as for a
/// [`Context::run`] of its own: its context is marked entered, and
/// `Task::get_context` finds it there. A callback's context is entered by
/// the callback's own run already.
pub(crate) fn eager_start<R>(lp: &EventLoop, step: impl FnOnce() -> R) -> R {
    let Some((task, prev)) = lp.current_task_id_and_context() else {
        return step();
    };
    let outer = prev
        .clone()
        .and_then(|c| c.downcast::<ContextCell>().ok())
        .map(|c| {
            let was = c.entered.replace(true);
            (c, was)
        });
    TASK_FRAMES.with(|f| f.borrow_mut().push(TaskFrame { task, prev, outer }));
    let _creator = CreatorFrame;
    step()
}

/// Pops the creator's frame when its eager task's first step is over,
/// however (the creator is the current task again by then).
struct CreatorFrame;

impl Drop for CreatorFrame {
    fn drop(&mut self) {
        pop_task_frame();
    }
}

/// The [`Context`] a task's context slot stands for, putting one in the
/// slot if it held a map (true: made now).
fn as_context(slot: &mut Option<Rc<dyn Any>>, task: u64) -> (Context, bool) {
    if let Some(cell) = slot.clone().and_then(|c| c.downcast::<ContextCell>().ok()) {
        return (Context { cell }, false);
    }
    let map = slot
        .take()
        .and_then(|c| c.downcast::<Map>().ok())
        .unwrap_or_default();
    let cell = ContextCell::new(map);
    cell.task.set(task);
    *slot = Some(cell.clone());
    (Context { cell }, true)
}
