//! Timeout scopes and `wait_for`. Mirrors `Lib/asyncio/timeouts.py`
//! (`Timeout`, `timeout`, `timeout_at`) and `wait_for` in `tasks.py` (3.12+).
//!
//! A [`Timeout`] scope runs a future inside the current task. When the
//! deadline passes, the scope's timer calls `cancel()` on the task, exactly
//! as asyncio's `_on_timeout` does; the body sees `Err(Cancelled)` at its
//! await. On the way out the scope calls `uncancel()`, and only if that
//! brings the task's `cancelling()` count back to what it was on entry (no
//! other cancel arrived meanwhile) does it turn the `Cancelled` into
//! `Timeout`.
//!
//! The scope cancels its *task*, and the cancel goes to the one future the
//! task is suspended on (its `fut_waiter`). A scope run as one branch of a
//! `join`/`select` that the task polls itself cancels whichever branch
//! suspended last, and its own body runs on (see ARCHITECTURE.md, chapter
//! 3): run such a branch in a task of its own.
//!
//! # Invariants
//! - State moves Created → Entered → (Expiring → Expired | Exited), once.
//! - Only the scope that expired raises `Timeout`; an outer scope or a
//!   foreign `cancel()` still sees `Cancelled` (K6).
//! - Every `cancel()` the scope made is matched by one `uncancel()`, so the
//!   task is not left cancelled afterwards.
//! - The scope's timer never outlives the scope.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::rc::{Rc, Weak};

use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, try_running_loop};
use crate::events::Handle;
use crate::futures::Future;
use crate::gather::Child;
use crate::tasks::{current_task, Task, TaskRef};
use crate::wait::WaitFinally;

/// asyncio's `_State` of a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Created,
    Entered,
    Expiring,
    Expired,
    Exited,
}

struct TimeoutInner {
    state: Cell<State>,
    when: Cell<Option<f64>>,
    /// A delay not yet turned into a deadline (no loop ran at creation).
    delay: Cell<Option<f64>>,
    handler: RefCell<Option<Handle>>,
    task: RefCell<Option<TaskRef>>,
    /// The task's `cancelling()` on entry.
    cancelling: Cell<u32>,
}

/// asyncio's `Timeout`: a deadline over a piece of a task.
///
/// Make one with [`timeout`] or [`timeout_at`], then [`run`](Timeout::run) a
/// future in it. Keep a clone to [`reschedule`](Timeout::reschedule) it from
/// inside, or to ask whether it [`expired`](Timeout::expired).
///
/// ```
/// tulip::run(async {
///     let r = tulip::timeout(0.01).run(tulip::sleep(10.0)).await;
///     assert!(matches!(r, Err(tulip::Error::Timeout)));
///
///     let cm = tulip::timeout(None); // no deadline yet
///     let inside = cm.clone();
///     cm.clone().run(async move {
///         let lp = tulip::get_running_loop()?;
///         inside.reschedule(Some(lp.time() + 10.0))?;
///         tulip::sleep(0.001).await
///     }).await?;
///     assert!(!cm.expired());
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Timeout {
    inner: Rc<TimeoutInner>,
}

/// asyncio's `timeout(delay)`: a scope that expires `delay` seconds from now
/// (`None`: never, until rescheduled).
///
/// *Deviation:* made where no loop runs (asyncio's `timeout()` raises
/// there: it reads `get_running_loop().time()`), the delay counts from the
/// entry into [`run`](Timeout::run), and [`when`](Timeout::when) is `None`
/// until then.
pub fn timeout(delay: impl Into<Option<f64>>) -> Timeout {
    let delay = delay.into();
    match (delay, try_running_loop()) {
        (Some(d), Some(lp)) => Timeout::new(Some(lp.time() + d), None),
        (d, _) => Timeout::new(None, d),
    }
}

/// asyncio's `timeout_at(when)`: a scope that expires at loop time `when`
/// (`None`: never, until rescheduled).
pub fn timeout_at(when: impl Into<Option<f64>>) -> Timeout {
    Timeout::new(when.into(), None)
}

impl Timeout {
    fn new(when: Option<f64>, delay: Option<f64>) -> Timeout {
        Timeout {
            inner: Rc::new(TimeoutInner {
                state: Cell::new(State::Created),
                when: Cell::new(when),
                delay: Cell::new(delay),
                handler: RefCell::new(None),
                task: RefCell::new(None),
                cancelling: Cell::new(0),
            }),
        }
    }

    /// The deadline in loop time, or `None`.
    pub fn when(&self) -> Option<f64> {
        self.inner.when.get()
    }

    /// True once the deadline passed (asyncio's `expired()`).
    pub fn expired(&self) -> bool {
        matches!(self.inner.state.get(), State::Expiring | State::Expired)
    }

    /// Moves the deadline (`None`: no deadline). Only inside the scope.
    pub fn reschedule(&self, when: Option<f64>) -> Result<()> {
        let inner = &self.inner;
        match inner.state.get() {
            State::Entered => {}
            State::Created => {
                return Err(Error::runtime(
                    "Timeout has not been entered: reschedule it from inside its run()",
                ))
            }
            s => {
                return Err(Error::runtime(format!(
                    "cannot change state of {} Timeout: reschedule it only while its run() is in progress",
                    state_name(s)
                )))
            }
        }
        inner.when.set(when);
        if let Some(h) = inner.handler.borrow_mut().take() {
            h.cancel();
        }
        if let Some(when) = when {
            let lp = get_running_loop()?;
            let weak = Rc::downgrade(&self.inner);
            let h = if when <= lp.time() {
                lp.call_soon(move || on_timeout(&weak))?
            } else {
                lp.call_at(when, move || on_timeout(&weak))?
                    .handle()
                    .clone()
            };
            *inner.handler.borrow_mut() = Some(h);
        }
        Ok(())
    }

    /// Runs `fut` inside the scope (asyncio's `async with timeout(...)`).
    /// Returns its output, or `Err(Timeout)` if this scope expired while it
    /// ran and the body ended with the resulting `Cancelled`.
    ///
    /// A scope can be entered once; it must run inside a task.
    pub async fn run<T, F>(self, fut: F) -> Result<T>
    where
        F: StdFuture<Output = Result<T>>,
    {
        self.enter()?;
        let exit = ExitGuard { cm: &self };
        let out = fut.await;
        std::mem::forget(exit);
        self.exit(out)
    }

    /// asyncio's `__aenter__`.
    fn enter(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.state.get() != State::Created {
            return Err(Error::runtime(
                "Timeout has already been entered: make a new one with timeout() or timeout_at() for each run",
            ));
        }
        let task =
            current_task().ok_or_else(|| {
            Error::runtime(
                "Timeout should be used inside a task: run it from a task's body (tulip::run, create_task)",
            )
        })?;
        inner.state.set(State::Entered);
        inner.cancelling.set(task.cancelling());
        *inner.task.borrow_mut() = Some(task);
        if let Some(d) = inner.delay.take() {
            inner.when.set(Some(get_running_loop()?.time() + d));
        }
        self.reschedule(inner.when.get())
    }

    /// asyncio's `__aexit__`.
    fn exit<T>(&self, out: Result<T>) -> Result<T> {
        let inner = &self.inner;
        if let Some(h) = inner.handler.borrow_mut().take() {
            h.cancel();
        }
        match inner.state.get() {
            State::Expiring => {
                inner.state.set(State::Expired);
                let task = inner.task.borrow().clone();
                let uncancelled = task.map_or(0, |t| t.uncancel());
                if uncancelled <= inner.cancelling.get() {
                    if let Err(e) = &out {
                        if e.is_cancelled() {
                            // No new cancel requests: this one is ours.
                            return Err(Error::Timeout);
                        }
                    }
                }
                out
            }
            _ => {
                inner.state.set(State::Exited);
                out
            }
        }
    }
}

/// The timer callback (asyncio's `_on_timeout`).
fn on_timeout(weak: &Weak<TimeoutInner>) {
    let Some(inner) = weak.upgrade() else { return };
    if inner.state.get() != State::Entered {
        return;
    }
    let task = inner.task.borrow().clone();
    if let Some(t) = task {
        t.cancel();
    }
    inner.state.set(State::Expiring);
    inner.handler.borrow_mut().take();
}

/// A scope dropped before its body finished: stop the timer.
struct ExitGuard<'a> {
    cm: &'a Timeout,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let inner = &self.cm.inner;
        if let Some(h) = inner.handler.borrow_mut().take() {
            h.cancel();
        }
        if inner.state.get() == State::Expiring {
            // Our cancel is still counted on the task: take it back, as
            // `__aexit__` does when the coroutine is closed.
            inner.state.set(State::Expired);
            if let Some(t) = inner.task.borrow().as_ref() {
                t.uncancel();
            }
        } else {
            inner.state.set(State::Exited);
        }
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Created => "created",
        State::Entered => "active",
        State::Expiring => "expiring",
        State::Expired => "expired",
        State::Exited => "finished",
    }
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.state.get();
        write!(f, "<Timeout [{}]", state_name(s))?;
        if s == State::Entered {
            match self.when() {
                Some(w) => write!(f, " when={w:.3}")?,
                None => f.write_str(" when=None")?,
            }
        }
        f.write_str(">")
    }
}

// ===== wait_for =====

/// asyncio's `wait_for(aw, timeout)` (3.12+, built on [`timeout`]): the
/// output of `fut`, or `Err(Timeout)` if it takes longer than `timeout`
/// seconds (`None`: no limit). K5:
///
/// - with a timeout `<= 0`, a plain future is never started (it is
///   dropped unpolled, and `Err(Timeout)` comes back at once, without
///   suspending: asyncio wraps the coroutine in a task, cancels it and
///   waits the loop iterations that takes, during which a cancel of the
///   waiting task would win; under an eager task factory, that task would
///   even start); a task or a [`Future`] that is done gives its
///   result, one that is not is cancelled and waited for. *Deviation:* a
///   [`gather`](fn@crate::gather) counts as a plain future here (its child
///   type cannot be told from `T`), so its children, which started when
///   it was made, go on running; asyncio's gather is a Future, which
///   `wait_for` cancels. Call its `cancel()` yourself in that case;
/// - on timeout, a task's cancel is waited for before returning, and if the
///   task swallowed the cancel its value is returned;
/// - a cancel of the waiting task itself stays `Cancelled`.
///
/// `fut` must be `'static`: to tell a task or a [`Future`] (used as it
/// is) from a plain future (never started) when the timeout is `<= 0`, it
/// is looked at as `dyn Any`, as asyncio's `ensure_future` looks at its
/// argument. To bound a borrowed future, such as `reader.readline()`, use
/// [`timeout`] itself, which is what `wait_for` does for a positive
/// timeout: `tulip::timeout(5.0).run(reader.readline()).await`.
///
/// ```
/// tulip::run(async {
///     let r = tulip::wait_for(tulip::sleep(10.0), 0.01).await;
///     assert!(matches!(r, Err(tulip::Error::Timeout)));
///     assert_eq!(tulip::wait_for(async { Ok(3) }, 1.0).await?, 3);
///     Ok(())
/// }).unwrap();
/// ```
pub async fn wait_for<T, F>(fut: F, timeout_s: impl Into<Option<f64>>) -> Result<T>
where
    T: Clone + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    let t = timeout_s.into();
    if let Some(t) = t {
        if t <= 0.0 {
            // asyncio's `ensure_future(fut)`: a task or a future is used as
            // it is; a coroutine would become a task that never starts, so
            // a plain Rust future is dropped unpolled.
            let mut slot = Some(fut);
            let any = &mut slot as &mut dyn std::any::Any;
            let fut = if let Some(task) = any.downcast_mut::<Option<Task<T>>>() {
                Child::Task(task.take().expect("slot is full"))
            } else if let Some(f) = any.downcast_mut::<Option<Future<T>>>() {
                Child::Future(f.take().expect("slot is full"))
            } else if let Some(c) = any.downcast_mut::<Option<Child<T>>>() {
                c.take().expect("slot is full")
            } else {
                drop(slot); // never started
                return Err(Error::Timeout);
            };
            if fut.done() {
                return fut.result();
            }
            cancel_and_wait(&fut).await?;
            return match fut.result() {
                Err(e) if e.is_cancelled() => Err(Error::Timeout),
                r => r,
            };
        }
    }
    timeout(t).run(fut).await
}

/// asyncio's `_cancel_and_wait`: cancel `fut` and wait until it is done.
async fn cancel_and_wait<T: Clone + 'static>(fut: &Child<T>) -> Result<()> {
    let waiter: Future<()> = get_running_loop()?.create_future();
    let w = waiter.clone();
    let id = fut.on_done(move || {
        if !w.done() {
            let _ = w.set_result(());
        }
    });
    // `finally: fut.remove_done_callback(cb)`, also if this is dropped.
    let _finally = WaitFinally {
        fs: std::slice::from_ref(fut),
        ids: vec![id],
        timer: None,
    };
    fut.cancel();
    waiter.await
}
