//! Semaphores. Mirrors `Semaphore` and `BoundedSemaphore` in
//! `Lib/asyncio/locks.py` (3.12+: FIFO, `_wake_up_next`).
//!
//! A permit is taken *at grant time*: `_wake_up_next` decrements `value` and
//! resolves the first waiter not yet woken. A waiter woken and then
//! cancelled (or dropped) before it runs gives its permit back and wakes the
//! next one. See `locks.rs` for the waiter-future pattern.
//!
//! # Invariants
//! - `value` + (granted waiters that have not run yet) + (permits held) is
//!   constant, except for `release()` on a plain Semaphore, which adds one.
//! - While a live waiter is queued, `acquire` never takes a permit on the
//!   fast path (FIFO, S3).
//! - A `BoundedSemaphore`'s `release` refuses to go over its initial value
//!   (`InvalidArgument`; from a dropped permit, it goes to the exception
//!   handler, or to stderr off the loop). As in asyncio, the value can
//!   still end over it: a release hands a permit to a waiter, another
//!   release (the value is 0, so it passes) comes before that waiter runs,
//!   and the waiter is cancelled and gives its permit back.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::futures::Future;
use crate::locks::{push_waiter, remove_waiter, LoopBound, Waiters};

// ===== Semaphore =====

struct SemaphoreInner {
    value: Cell<usize>,
    /// `Some(initial)` for a BoundedSemaphore.
    bound: Option<usize>,
    waiters: Waiters,
    /// asyncio's `_LoopBoundMixin`.
    lp: LoopBound,
}

impl SemaphoreInner {
    /// asyncio's `locked()`: no permit, or live waiters queued (FIFO).
    fn locked(&self) -> bool {
        self.value.get() == 0 || self.waiters.borrow().iter().any(|w| !w.cancelled())
    }

    /// asyncio's `_wake_up_next`: grant a permit to the first waiter not
    /// yet woken. Returns false if there was none.
    fn wake_up_next(&self) -> bool {
        let next = self.waiters.borrow().iter().find(|f| !f.done()).cloned();
        match next {
            Some(fut) => {
                self.value.set(self.value.get() - 1);
                let _ = fut.set_result(());
                true
            }
            None => false,
        }
    }

    fn release(&self) -> Result<()> {
        if let Some(bound) = self.bound {
            if self.value.get() >= bound {
                return Err(Error::invalid_argument(format!(
                    "BoundedSemaphore released too many times (its value is already its bound, {bound}): \
                     release() only a permit kept with forget()"
                )));
            }
        }
        self.value.set(self.value.get() + 1);
        self.wake_up_next();
        Ok(())
    }
}

/// asyncio's `Semaphore`: at most `value` holders at once, granted FIFO.
///
/// [`acquire`](Semaphore::acquire) returns a [`SemaphorePermit`] that
/// releases on drop. Clones share the semaphore.
///
/// ```
/// tulip::run(async {
///     let sem = tulip::Semaphore::new(2);
///     let a = sem.acquire().await?;
///     let _b = sem.acquire().await?;
///     assert!(sem.locked());
///     drop(a);
///     assert_eq!(sem.value(), 1);
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemaphoreInner>,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    pub fn new(value: usize) -> Semaphore {
        Semaphore::build(value, None)
    }

    fn build(value: usize, bound: Option<usize>) -> Semaphore {
        Semaphore {
            inner: Rc::new(SemaphoreInner {
                value: Cell::new(value),
                bound,
                waiters: RefCell::new(VecDeque::new()),
                lp: LoopBound::default(),
            }),
        }
    }

    /// True if `acquire` would wait.
    pub fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// Free permits right now.
    pub fn value(&self) -> usize {
        self.inner.value.get()
    }

    /// Takes a permit, waiting in FIFO order if there is none (S3).
    pub async fn acquire(&self) -> Result<SemaphorePermit> {
        let inner = &self.inner;
        if !inner.locked() {
            inner.value.set(inner.value.get() - 1);
            return Ok(SemaphorePermit {
                sem: Some(self.clone()),
            });
        }
        let lp = inner.lp.get_loop(self)?;
        let fut = push_waiter(&inner.waiters, &lp)?;
        let waiting = SemaphoreWait {
            inner,
            fut: &fut,
            acquired: false,
        };
        fut.clone().await?;
        let mut waiting = waiting;
        waiting.acquired = true;
        drop(waiting);
        Ok(SemaphorePermit {
            sem: Some(self.clone()),
        })
    }

    /// Gives a permit back and wakes the next waiter. A [`BoundedSemaphore`]
    /// fails if this would exceed its initial value.
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }
}

/// asyncio's `finally`/`except` around a semaphore wait.
struct SemaphoreWait<'a> {
    inner: &'a SemaphoreInner,
    fut: &'a Future<()>,
    acquired: bool,
}

impl Drop for SemaphoreWait<'_> {
    fn drop(&mut self) {
        let inner = self.inner;
        remove_waiter(&inner.waiters, self.fut);
        if !self.acquired && self.fut.done() && !self.fut.cancelled() {
            // Granted by `_wake_up_next`, but we will not take it: undo.
            inner.value.set(inner.value.get() + 1);
        }
        // New waiters may have queued behind us (FIFO): wake as many as allowed.
        while inner.value.get() > 0 {
            if !inner.wake_up_next() {
                break;
            }
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.inner.bound.is_some() {
            "BoundedSemaphore"
        } else {
            "Semaphore"
        };
        let state = if self.locked() { "locked" } else { "unlocked" };
        write!(f, "<{kind} [{state}, value:{}]", self.value())?;
        let n = self.inner.waiters.borrow().len();
        if n > 0 {
            write!(f, " waiters:{n}")?;
        }
        f.write_str(">")
    }
}

/// A permit of a [`Semaphore`]; released when dropped.
#[must_use = "dropping the permit releases it at once"]
pub struct SemaphorePermit {
    sem: Option<Semaphore>,
}

impl SemaphorePermit {
    /// Keeps the permit without the guard; give it back later with
    /// [`Semaphore::release`].
    pub fn forget(mut self) {
        self.sem = None;
    }
}

impl Drop for SemaphorePermit {
    fn drop(&mut self) {
        if let Some(sem) = self.sem.take() {
            // Over a BoundedSemaphore's bound (someone released it by hand
            // as well): asyncio's `async with` would raise the ValueError
            // from `__aexit__`; a drop cannot return it, so it is reported.
            if let Err(e) = sem.inner.release() {
                let ctx = crate::event_loop::ExceptionContext {
                    message: "a SemaphorePermit was dropped over its BoundedSemaphore's bound"
                        .into(),
                    error: Some(e),
                    ..Default::default()
                };
                // From a `Drop`: an Interrupt from the handler must not
                // unwind out of it (the loop's report for destructors).
                match crate::event_loop::try_running_loop() {
                    Some(lp) => lp.report_ignoring_interrupt(&ctx),
                    None => eprintln!("{ctx}"),
                }
            }
        }
    }
}

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit")
            .field("sem", &self.sem)
            .finish()
    }
}

/// asyncio's `BoundedSemaphore`: a [`Semaphore`] whose `release` fails if it
/// would raise the value above the initial one (S3).
///
/// ```
/// tulip::run(async {
///     let sem = tulip::BoundedSemaphore::new(1);
///     assert!(sem.release().is_err()); // never acquired
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits.
    pub fn new(value: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::build(value, Some(value)),
        }
    }
}

impl std::ops::Deref for BoundedSemaphore {
    type Target = Semaphore;
    fn deref(&self) -> &Semaphore {
        &self.sem
    }
}
