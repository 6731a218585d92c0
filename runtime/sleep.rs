//! `sleep()`: asyncio's `tasks.sleep` and its bare-yield helper `__sleep0`.
//!
//! `sleep(d)` with `d > 0` is a future plus a timer, exactly as asyncio
//! builds it: `call_later(d, _set_result_unless_cancelled, fut)`, and the
//! timer is cancelled when the sleep is dropped or cancelled. `sleep(0)` (or
//! a negative delay) creates nothing: the task wakes itself and yields once,
//! which is asyncio's bare `yield` that reschedules `__step` (T4).
//!
//! # Invariants
//! - `sleep(0)` suspends exactly once, and sets no `fut_waiter`: a cancel
//!   during that yield is delivered by the throw at the next step.
//! - A sleep's timer never outlives the sleep: `Drop` cancels it (lazily:
//!   the heap entry is skipped and later swept, see `event_loop.rs`).

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, no_running_loop, with_running_loop};
use crate::events::{Delay, TimerHandle};
use crate::futures::Future;
use crate::tasks;

/// asyncio's `sleep(delay)`: completes after `delay` seconds (`f64`) or a
/// `Duration`. Must be awaited inside a task on a running loop.
///
/// ```
/// tulip::run(async {
///     tulip::sleep(0.001).await?;              // a timer
///     tulip::sleep(0.0).await?;                // yields once
///     tulip::sleep(std::time::Duration::from_millis(1)).await
/// }).unwrap();
/// ```
pub fn sleep(delay: impl Delay) -> Sleep {
    Sleep {
        delay: delay.as_secs(),
        state: SleepState::Init,
    }
}

/// What [`sleep`] returns.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    delay: f64,
    state: SleepState,
}

enum SleepState {
    Init,
    Yielded,
    Waiting(Future<()>, TimerHandle),
    Done,
}

impl std::future::Future for Sleep {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        // The bare yield's two polls are the hot path (`switch`); the timer
        // path lives out of line so that they stay small.
        match this.state {
            SleepState::Init if this.delay <= 0.0 => this.yield_once(cx),
            SleepState::Yielded => {
                let thrown = tasks::take_throw();
                this.state = SleepState::Done;
                match thrown {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Ready(Ok(())),
                }
            }
            _ => this.poll_timer(cx),
        }
    }
}

impl Sleep {
    /// `sleep(0)`: reschedule ourselves, suspend once. No loop clone, no
    /// timer, no future.
    #[inline]
    fn yield_once(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match tasks::bare_yield(cx.waker()) {
            Err(err) => {
                self.state = SleepState::Done;
                Poll::Ready(Err(err))
            }
            Ok(false) if with_running_loop(|_| ()).is_none() => Poll::Ready(Err(no_running_loop())),
            Ok(by_step) => {
                if !by_step {
                    cx.waker().wake_by_ref();
                }
                self.state = SleepState::Yielded;
                Poll::Pending
            }
        }
    }

    /// `sleep(d)` with `d > 0` (or NaN): a future and a timer.
    #[inline(never)]
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match &mut self.state {
            SleepState::Init => {
                let lp = get_running_loop()?;
                if let Some(err) = tasks::take_throw_on(&lp) {
                    self.state = SleepState::Done;
                    return Poll::Ready(Err(err));
                }
                if self.delay.is_nan() {
                    self.state = SleepState::Done;
                    return Poll::Ready(Err(Error::invalid_argument(
                        "sleep delay must not be NaN: give a number of seconds (0 or less just yields)",
                    )));
                }
                let fut: Future<()> = lp.create_future();
                let setter = fut.clone();
                let timer = lp.call_later(self.delay, move || {
                    // futures._set_result_unless_cancelled
                    if !setter.cancelled() {
                        let _ = setter.set_result(());
                    }
                })?;
                let mut waiting = fut.clone();
                self.state = SleepState::Waiting(fut, timer);
                match Pin::new(&mut waiting).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => {
                        self.finish();
                        Poll::Ready(r)
                    }
                }
            }
            SleepState::Waiting(fut, _) => match Pin::new(fut).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    self.finish();
                    Poll::Ready(r)
                }
            },
            SleepState::Yielded | SleepState::Done => Poll::Ready(Err(Error::invalid_state(
                "sleep polled after it completed: call sleep() again for another wait",
            ))),
        }
    }

    /// Done, or dropped: cancels the timer if there is one.
    #[inline]
    fn finish(&mut self) {
        if matches!(self.state, SleepState::Waiting(..)) {
            self.cancel_timer();
        }
    }

    /// Out of line: a `sleep(0)` (the `switch` path) never has a timer.
    #[inline(never)]
    fn cancel_timer(&mut self) {
        if let SleepState::Waiting(_, timer) = std::mem::replace(&mut self.state, SleepState::Done)
        {
            timer.cancel();
        }
    }
}

impl Drop for Sleep {
    #[inline]
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            SleepState::Init => "init",
            SleepState::Yielded => "yielded",
            SleepState::Waiting(..) => "waiting",
            SleepState::Done => "done",
        };
        f.debug_struct("Sleep")
            .field("delay", &self.delay)
            .field("state", &state)
            .finish()
    }
}
