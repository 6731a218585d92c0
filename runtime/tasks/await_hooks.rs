//! What a runtime future asks the stepping task when the body awaits it:
//! is there a cancel to throw here, is this a bare yield, and record me as
//! your `fut_waiter`. Mirrors the parts of `Task.__step` in
//! `Lib/asyncio/tasks.py` that meet the awaited future: `coro.throw(exc)`
//! for a pending cancel, the bare `yield` of `__sleep0`, and
//! `self._fut_waiter = result` with its "got Future attached to a
//! different loop" check. The step's flags these read (`StepFlags`, `STEP`)
//! belong to the step, in `tasks.rs`.
//!
//! # Invariants
//! - A cancel to throw is taken by one await only: the first runtime future
//!   the body polls in the step takes it, and clears the step's flag.
//! - A future calls `set_fut_waiter_on` before it registers the task's
//!   waker; when that fails (the stepping task belongs to another loop),
//!   the future neither suspends nor registers the waker.
//! - These hooks call no user code and wake nothing; the borrow of the
//!   loop's `current_task` they take ends before the `fut_waiter` they
//!   replace is dropped.

use std::rc::Rc;
use std::sync::Arc;
use std::task::Waker;

use super::{take_step_throw, waker_id, STEP};
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Cancel;

/// Called by a runtime future of loop `lp` at the start of its `poll`: if
/// the current task has a cancel to throw at this await, takes it.
#[inline]
pub(crate) fn take_throw_on(lp: &EventLoop) -> Option<Error> {
    if !take_step_throw() {
        return None;
    }
    Some(Error::Cancelled(current_cancel_message(lp)))
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
