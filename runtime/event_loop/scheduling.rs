//! Scheduling callbacks: `call_soon`, `call_later`, `call_at`, and their
//! `_in` forms, which run the callback in a given context. Mirrors
//! `BaseEventLoop.call_soon`, `call_later` and `call_at` (with their
//! `context=` argument) in `Lib/asyncio/base_events.py`. The clock
//! ([`EventLoop::time`]) and the ready queue itself stay in
//! `event_loop.rs`, beside the iteration that drains them.
//!
//! # Invariants
//! - A call on a closed loop fails (with [`Error::Closed`], or with
//!   [`Error::InvalidArgument`] for a NaN delay) and schedules nothing (L5).
//! - `call_soon` appends to the back of `ready`: callbacks run in the
//!   order they were scheduled (L1).
//! - A timer's deadline is never NaN: a NaN delay or deadline is refused
//!   with [`Error::InvalidArgument`] before anything is scheduled. Each
//!   timer takes the next `timer_seq`, so timers with one deadline run in
//!   scheduling order (T1), and `timer_max_when` is raised to cover it.
//! - A callback runs in a snapshot of the context values current when it
//!   was scheduled, or, in the `_in` forms, in the given context itself.

use std::cell::Cell;
use std::panic::Location;

use super::{EventLoop, TimerEntry};
use crate::contextvars::Context;
use crate::error::{Error, Result};
use crate::events::{Delay, Handle, TimerHandle, TimerState};

impl EventLoop {
    // ===== scheduling callbacks =====

    /// Schedules `f` to run on the next iteration (asyncio's `call_soon`).
    /// Callbacks run in the order they were scheduled (L1).
    ///
    /// As asyncio's `Handle` takes `copy_context()`, `f` runs in a snapshot
    /// of the [context values](crate::contextvars) current here: it sees
    /// them as they are now, and what it sets stays in its own copy. With
    /// no value current, it starts with none, and its first `set` gives it
    /// an empty one of its own.
    #[track_caller]
    pub fn call_soon<F: FnOnce() + 'static>(&self, f: F) -> Result<Handle> {
        self.check_closed()?;
        let h = match crate::contextvars::callback_context() {
            None => Handle::once(f, Location::caller()),
            Some(ctx) => Handle::once_in(f, ctx, Location::caller()),
        };
        self.inner
            .ready
            .borrow_mut()
            .push_back(h.clone().into_ready());
        Ok(h)
    }

    /// asyncio's `call_soon(callback, context=ctx)`: schedules `f` to run
    /// in `ctx` itself, not in a snapshot of the current values, so what
    /// `f` sets stays in `ctx` for every holder of it (a later
    /// [`Context::run`], a task created with it). As in asyncio, if `ctx`
    /// is entered when `f`'s turn comes (inside a [`Context::run`] of it
    /// around the loop's run, or the context of a task that is running),
    /// `f` does not run, and the loop reports the error to its exception
    /// handler.
    ///
    /// ```
    /// use tulip::{Context, ContextVar};
    /// static N: ContextVar<u32> = ContextVar::new("n");
    ///
    /// let lp = tulip::EventLoop::new().unwrap();
    /// let ctx = Context::new();
    /// lp.call_soon_in(ctx.clone(), || { N.set(7).unwrap(); }).unwrap();
    /// lp.call_soon({ let lp = lp.clone(); move || lp.stop() }).unwrap();
    /// lp.run_forever().unwrap();
    /// assert_eq!(ctx.get(&N), Some(7)); // set in ctx itself
    /// ```
    #[track_caller]
    pub fn call_soon_in<F: FnOnce() + 'static>(&self, ctx: Context, f: F) -> Result<Handle> {
        self.check_closed()?;
        let h = Handle::once_in(f, ctx, Location::caller());
        self.inner
            .ready
            .borrow_mut()
            .push_back(h.clone().into_ready());
        Ok(h)
    }

    /// Schedules `f` to run after `delay` (seconds as `f64`, or a
    /// `Duration`). A negative delay means "as soon as possible"; NaN is an error.
    /// `f` runs in a snapshot of the context values current here, as
    /// [`call_soon`](EventLoop::call_soon)'s does.
    #[track_caller]
    pub fn call_later<F: FnOnce() + 'static>(
        &self,
        delay: impl Delay,
        f: F,
    ) -> Result<TimerHandle> {
        self.call_at_located(self.deadline(delay)?, None, f, Location::caller())
    }

    /// The loop time `delay` from now (`call_later`'s `self.time() + delay`).
    fn deadline(&self, delay: impl Delay) -> Result<f64> {
        let delay = delay.as_secs();
        if delay.is_nan() {
            return Err(Error::invalid_argument(
                "delay must not be NaN: give a number of seconds (a negative one means as soon as possible)",
            ));
        }
        Ok(self.time() + delay)
    }

    /// asyncio's `call_later(delay, callback, context=ctx)`:
    /// [`call_later`](EventLoop::call_later) with `f` run in `ctx` itself
    /// (see [`call_soon_in`](EventLoop::call_soon_in)).
    #[track_caller]
    pub fn call_later_in<F: FnOnce() + 'static>(
        &self,
        ctx: Context,
        delay: impl Delay,
        f: F,
    ) -> Result<TimerHandle> {
        self.call_at_located(self.deadline(delay)?, Some(ctx), f, Location::caller())
    }

    /// Schedules `f` to run at loop time `when` (see [`time`](EventLoop::time)).
    /// `f` runs in a snapshot of the context values current here, as
    /// [`call_soon`](EventLoop::call_soon)'s does.
    #[track_caller]
    pub fn call_at<F: FnOnce() + 'static>(&self, when: f64, f: F) -> Result<TimerHandle> {
        self.call_at_located(when, None, f, Location::caller())
    }

    /// asyncio's `call_at(when, callback, context=ctx)`:
    /// [`call_at`](EventLoop::call_at) with `f` run in `ctx` itself (see
    /// [`call_soon_in`](EventLoop::call_soon_in)).
    #[track_caller]
    pub fn call_at_in<F: FnOnce() + 'static>(
        &self,
        ctx: Context,
        when: f64,
        f: F,
    ) -> Result<TimerHandle> {
        self.call_at_located(when, Some(ctx), f, Location::caller())
    }

    /// `call_at`: `f` in `ctx`, or (`None`) in a snapshot of the current values.
    fn call_at_located<F: FnOnce() + 'static>(
        &self,
        when: f64,
        ctx: Option<Context>,
        f: F,
        at: &'static Location<'static>,
    ) -> Result<TimerHandle> {
        self.check_closed()?;
        if when.is_nan() {
            return Err(Error::invalid_argument(
                "timer deadline must not be NaN: give a loop time, such as loop.time() + delay",
            ));
        }
        let timer = TimerState {
            when,
            scheduled: Cell::new(true),
            cancelled_count: self.inner.timer_cancelled_count.clone(),
        };
        let handle = match ctx.or_else(crate::contextvars::callback_context) {
            None => Handle::timed(f, at, timer),
            Some(ctx) => Handle::timed_in(f, ctx, at, timer),
        };
        let seq = self.inner.timer_seq.get();
        self.inner.timer_seq.set(seq + 1);
        if when > self.inner.timer_max_when.get() {
            self.inner.timer_max_when.set(when);
        }
        self.inner
            .scheduled
            .borrow_mut()
            .push(TimerEntry::new(when, seq, handle.clone()));
        Ok(TimerHandle { handle })
    }

    /// How many timers are in the heap, cancelled ones included.
    pub fn scheduled_timer_count(&self) -> usize {
        self.inner.scheduled.borrow().len()
    }

    /// How many entries wait in the ready queue.
    pub fn ready_count(&self) -> usize {
        self.inner.ready.borrow().len()
    }
}
