//! The loop running on each thread, and the thread's current loop.
//! Mirrors `_running_loop`, `get_running_loop`, `_get_running_loop`,
//! `get_event_loop`, `set_event_loop` and `new_event_loop` in
//! `Lib/asyncio/events.py`. tulip has no event loop policy: the policy's
//! loop for the thread is a thread-local here, `CURRENT`.
//!
//! # Invariants
//! - `RUNNING` holds a loop exactly while that loop's `run_forever` is on
//!   this thread's stack: `run_forever` sets it once its checks pass, and
//!   its guard puts the previous value back when the run ends, by
//!   unwinding too (`lifecycle.rs`). A run refuses to start while it is
//!   set, so at most one loop runs on a thread (L4).
//! - The closures of `with_running_loop` and `with_running_if` run inside
//!   a shared borrow of `RUNNING`: they must not start or end a run, which
//!   replaces it. `with_running_if` is the task waker's fast path: it only
//!   schedules (`LoopInner::wake_task`), and runs no user code.
//! - A running loop comes first: [`get_event_loop`] returns it whatever
//!   `CURRENT` holds.

use std::cell::RefCell;
use std::sync::Arc;

use super::{EventLoop, LoopInner};
use crate::error::{Error, Result};
use crate::threadsafe::Shared;

thread_local! {
    /// The loop running on this thread (asyncio's `_running_loop`).
    pub(super) static RUNNING: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
    /// The loop set with `set_event_loop` (the policy's loop for this thread).
    pub(super) static CURRENT: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
}

/// asyncio's `get_running_loop()`: the loop running on this thread.
pub fn get_running_loop() -> Result<EventLoop> {
    RUNNING
        .with(|r| r.borrow().clone())
        .ok_or_else(no_running_loop)
}

/// The error of [`get_running_loop`] outside a running loop.
pub(crate) fn no_running_loop() -> Error {
    Error::runtime(
        "no running event loop: call this from a task or callback, or start a loop with tulip::run",
    )
}

/// Calls `f` with the running loop, without cloning it; `None` if no loop
/// runs on this thread. `f` must not start or stop a loop run.
pub(crate) fn with_running_loop<R>(f: impl FnOnce(&EventLoop) -> R) -> Option<R> {
    RUNNING.with(|r| r.borrow().as_ref().map(f))
}

/// The running loop, if any (asyncio's `_get_running_loop()`).
pub fn try_running_loop() -> Option<EventLoop> {
    RUNNING.with(|r| r.borrow().clone())
}

/// asyncio's `get_event_loop()`: the running loop; else this thread's loop
/// set by [`set_event_loop`], closed or not (as asyncio's policy returns
/// it); else a new loop, which becomes this thread's loop.
///
/// *Deviation:* with no loop set, asyncio 3.12 makes one only on the main
/// thread and only if `set_event_loop` was never called there, and raises
/// otherwise (3.14 always raises); tulip makes one on any thread.
pub fn get_event_loop() -> Result<EventLoop> {
    if let Some(lp) = try_running_loop() {
        return Ok(lp);
    }
    if let Some(lp) = CURRENT.with(|c| c.borrow().clone()) {
        return Ok(lp);
    }
    let lp = EventLoop::new()?;
    set_event_loop(Some(&lp));
    Ok(lp)
}

/// asyncio's `set_event_loop()`: makes `lp` this thread's current loop.
pub fn set_event_loop(lp: Option<&EventLoop>) {
    let old = CURRENT.with(|c| c.replace(lp.cloned()));
    drop(old);
}

/// asyncio's `new_event_loop()`.
pub fn new_event_loop() -> Result<EventLoop> {
    EventLoop::new()
}

/// Calls `f` with the running loop's inner state if it is the loop that owns
/// `shared` (the task waker's fast path). Returns false otherwise.
pub(crate) fn with_running_if(shared: &Arc<Shared>, f: impl FnOnce(&LoopInner)) -> bool {
    RUNNING.with(|r| match &*r.borrow() {
        Some(lp) if Arc::ptr_eq(&lp.inner.shared, shared) => {
            f(&lp.inner);
            true
        }
        _ => false,
    })
}
