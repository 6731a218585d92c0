//! Futures: a result that is not there yet. Mirrors `Lib/asyncio/futures.py`.
//!
//! [`Future<T>`] is asyncio's `Future`: pending, then done with a result, an
//! error, or cancelled. Done callbacks are scheduled with `call_soon`, never
//! called inline. A task that awaits a pending future registers its waker as
//! a done callback and the future as its `fut_waiter`, so that
//! `Task::cancel` can cancel it (see `tasks.rs`).
//!
//! This file holds `FutureCore`, the state machine that [`Future`] and
//! [`Task`](crate::Task) share: its state (`_state`, `_result`,
//! `_exception`), `finish`, `result()`, `exception()`, and the
//! unretrieved-error report. The rest is split by concept into the child
//! modules below; their public names are re-exported here, so every path
//! stays `tulip::futures::NAME`.
//!
//! | file | holds | asyncio |
//! |---|---|---|
//! | `futures/callbacks.rs` | the done-callback list, its scheduling, task wakers, and the runtime's notifications | `Future.add_done_callback`, `remove_done_callback`, `__schedule_callbacks` |
//! | `futures/future.rs` | [`Future`], [`WaitDone`], [`EventLoop::create_future`] | `Future`'s public methods, `__await__`, `loop.create_future` |
//!
//! # Invariants
//! - The state moves once, from pending to one of finished/failed/cancelled
//!   (F1); later `set_*` calls fail with `InvalidState`, `cancel` returns false.
//! - `log_traceback` is true while a failed future's error has not been
//!   retrieved; dropping it then reports "exception was never retrieved" (F3).
//! - The state's borrow ends before anything else runs: `finish` moves the
//!   state, lets go of it, and only then schedules the done callbacks.

mod callbacks;
mod future;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext, LoopRef};

use callbacks::Callbacks;
pub(crate) use callbacks::{Notify, Owner};
pub use future::{Future, WaitDone};

/// The id of a done callback, for `remove_done_callback` (Rust closures
/// cannot be compared the way asyncio compares callback functions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u32);

/// The state of a future (asyncio's `_PENDING`, `_FINISHED`, `_CANCELLED`).
pub(crate) enum State<T> {
    Pending,
    Finished(T),
    /// Boxed: failing is rare, and a small `State` keeps every task small.
    Failed(Box<Error>),
    Cancelled(Option<Arc<str>>),
    /// The result was moved out by its only reader (`run_until_complete`).
    Taken,
}

/// The core of a future, shared by [`Future`] and `Task`. `O` is the owner
/// type that done callbacks receive (`Future<T>` or `Task<T>`).
pub(crate) struct FutureCore<T, O> {
    pub(crate) lp: LoopRef,
    state: RefCell<State<T>>,
    callbacks: RefCell<Callbacks<O>>,
    next_id: Cell<u32>,
    log_traceback: Cell<bool>,
}

impl<T, O: Owner> FutureCore<T, O> {
    pub(crate) fn new(lp: EventLoop) -> Self {
        FutureCore {
            lp: LoopRef::new(lp),
            state: RefCell::new(State::Pending),
            callbacks: RefCell::new(Callbacks::None),
            next_id: Cell::new(0),
            log_traceback: Cell::new(false),
        }
    }

    /// Moves to a final state and schedules the callbacks. Fails if done
    /// (`InvalidState`, the state unchanged), or if the loop is closed and
    /// there are callbacks (`Closed`, the state moved: see
    /// [`schedule_callbacks`](Self::schedule_callbacks)).
    pub(crate) fn finish(&self, owner: &O, state: State<T>) -> Result<()> {
        {
            let mut s = self.state.borrow_mut();
            if !matches!(*s, State::Pending) {
                return Err(Error::invalid_state(format!(
                    "the future is already {}: check done() before setting its result or error",
                    state_name(&s)
                )));
            }
            if matches!(state, State::Failed(_)) {
                self.log_traceback.set(true);
            }
            *s = state;
        }
        self.schedule_callbacks(owner)
    }

    /// asyncio's `exception()`: `Ok(None)` if finished with a result,
    /// `Ok(Some(e))` if failed; `Err(Cancelled)` if cancelled,
    /// `Err(InvalidState)` if pending.
    pub(crate) fn exception(&self) -> Result<Option<Error>> {
        match &*self.state.borrow() {
            State::Pending => Err(Error::invalid_state(
                "exception is not set: the future is still pending; await it, or check done() first",
            )),
            State::Cancelled(m) => Err(Error::Cancelled(m.clone())),
            State::Failed(e) => {
                self.log_traceback.set(false);
                Ok(Some(Error::clone(e)))
            }
            State::Finished(_) | State::Taken => Ok(None),
        }
    }

    /// Moves the result out (for a future with one reader).
    pub(crate) fn take_result(&self) -> Result<T> {
        let mut s = self.state.borrow_mut();
        match std::mem::replace(&mut *s, State::Taken) {
            State::Finished(v) => Ok(v),
            other => {
                *s = other;
                drop(s);
                self.result_error()
            }
        }
    }

    fn result_error<U>(&self) -> Result<U> {
        match &*self.state.borrow() {
            State::Pending => Err(Error::invalid_state(
                "result is not set: the future is still pending; await it, or check done() first",
            )),
            State::Cancelled(m) => Err(Error::Cancelled(m.clone())),
            State::Failed(e) => {
                self.log_traceback.set(false);
                Err(Error::clone(e))
            }
            State::Taken => Err(Error::invalid_state(RESULT_TAKEN)),
            State::Finished(_) => unreachable!("result_error on a finished future"),
        }
    }

    pub(crate) fn describe_state(&self) -> &'static str {
        state_name(&self.state.borrow())
    }

    /// The awaiting side: `Ready` with the outcome, or registers the waker.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done() {
            Poll::Ready(())
        } else {
            self.add_waker(cx.waker());
            Poll::Pending
        }
    }
}

impl<T, O> FutureCore<T, O> {
    pub(crate) fn done(&self) -> bool {
        !matches!(*self.state.borrow(), State::Pending)
    }

    pub(crate) fn cancelled(&self) -> bool {
        matches!(*self.state.borrow(), State::Cancelled(_))
    }

    /// Reports an unretrieved error (F3); called from the owner's `Drop`.
    pub(crate) fn report_unretrieved(&self, what: &str, describe: impl FnOnce() -> String) {
        if !self.log_traceback.get() {
            return;
        }
        let err = match &*self.state.borrow() {
            State::Failed(e) => Error::clone(e),
            _ => return,
        };
        self.lp.report_ignoring_interrupt(&ExceptionContext {
            message: format!("{what} exception was never retrieved"),
            error: Some(err),
            future: Some(describe()),
            ..Default::default()
        });
    }

    pub(crate) fn clear_log_traceback(&self) {
        self.log_traceback.set(false);
    }

    /// True while a failed future's error was not retrieved (F3).
    pub(crate) fn error_unretrieved(&self) -> bool {
        self.log_traceback.get()
    }
}

impl<T: Clone, O> FutureCore<T, O> {
    /// asyncio's `result()`.
    pub(crate) fn result(&self) -> Result<T> {
        match &*self.state.borrow() {
            State::Finished(v) => return Ok(v.clone()),
            State::Pending => return Err(Error::invalid_state(
                "result is not set: the future is still pending; await it, or check done() first",
            )),
            State::Cancelled(m) => return Err(Error::Cancelled(m.clone())),
            State::Failed(e) => {
                self.log_traceback.set(false);
                return Err(Error::clone(e));
            }
            State::Taken => {}
        }
        Err(Error::invalid_state(RESULT_TAKEN))
    }
}

/// The error of reading a result that `take_result` moved out.
pub(crate) const RESULT_TAKEN: &str =
    "the result was already taken by take_result(): call result() instead to read it more than once";

fn state_name<T>(s: &State<T>) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Finished(_) | State::Taken => "finished",
        State::Failed(_) => "failed",
        State::Cancelled(_) => "cancelled",
    }
}

/// What can be cancelled as a task's `fut_waiter`: a future, or a task.
pub(crate) trait Cancel {
    fn cancel_waiter(self: Rc<Self>, msg: Option<Arc<str>>) -> bool;
}

impl<T, O> Drop for FutureCore<T, O> {
    fn drop(&mut self) {
        self.report_unretrieved("Future", || "<Future failed>".into());
    }
}
