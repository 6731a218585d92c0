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
        match &mut this.state {
            SleepState::Init if this.delay <= 0.0 => {
                // The bare yield: reschedule ourselves, suspend once. No
                // loop clone, no timer, no future (the hot path of `switch`).
                let yielded = with_running_loop(|lp| tasks::bare_yield_on(lp, cx.waker()));
                match yielded {
                    None => Poll::Ready(Err(no_running_loop())),
                    Some(Err(err)) => {
                        this.state = SleepState::Done;
                        Poll::Ready(Err(err))
                    }
                    Some(Ok(by_step)) => {
                        if !by_step {
                            cx.waker().wake_by_ref();
                        }
                        this.state = SleepState::Yielded;
                        Poll::Pending
                    }
                }
            }
            SleepState::Init => {
                let lp = get_running_loop()?;
                if let Some(err) = tasks::take_throw_on(&lp) {
                    this.state = SleepState::Done;
                    return Poll::Ready(Err(err));
                }
                if this.delay.is_nan() {
                    this.state = SleepState::Done;
                    return Poll::Ready(Err(Error::invalid_argument(
                        "sleep delay must not be NaN",
                    )));
                }
                let fut: Future<()> = lp.create_future();
                let setter = fut.clone();
                let timer = lp.call_later(this.delay, move || {
                    // futures._set_result_unless_cancelled
                    if !setter.cancelled() {
                        let _ = setter.set_result(());
                    }
                })?;
                let mut waiting = fut.clone();
                this.state = SleepState::Waiting(fut, timer);
                match Pin::new(&mut waiting).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(r) => {
                        this.finish();
                        Poll::Ready(r)
                    }
                }
            }
            SleepState::Yielded => {
                let thrown = with_running_loop(tasks::take_throw_on).flatten();
                this.state = SleepState::Done;
                match thrown {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Ready(Ok(())),
                }
            }
            SleepState::Waiting(fut, _) => match Pin::new(fut).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(r) => {
                    this.finish();
                    Poll::Ready(r)
                }
            },
            SleepState::Done => {
                Poll::Ready(Err(Error::invalid_state("sleep polled after it completed")))
            }
        }
    }
}

impl Sleep {
    fn finish(&mut self) {
        if !matches!(self.state, SleepState::Waiting(..)) {
            return;
        }
        if let SleepState::Waiting(_, timer) = std::mem::replace(&mut self.state, SleepState::Done)
        {
            timer.cancel();
        }
    }
}

impl Drop for Sleep {
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
