//! Barrier. Mirrors `Barrier` in `Lib/asyncio/locks.py` (3.11): a state
//! machine (filling, draining, resetting, broken) over a [`Condition`].
//!
//! # Invariants
//! - `count` is the number of tasks inside `wait` (past `_block`); it drops
//!   back on every way out (`BarrierExit`, asyncio's `finally: _exit()`).
//! - While draining or resetting, newcomers block until the last task has
//!   left; then the state returns to filling (S4).
//! - Broken is final until `reset()`: every waiter, current and future,
//!   gets `BrokenBarrier`.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::locks::Condition;

// ===== Barrier =====

/// asyncio's `_BarrierState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BarrierState {
    Filling,
    Draining,
    Resetting,
    Broken,
}

struct BarrierInner {
    cond: Condition,
    parties: usize,
    state: Cell<BarrierState>,
    count: Cell<usize>,
}

/// asyncio's `Barrier`: `parties` tasks wait until all of them arrived, then
/// all pass together; the barrier then refills for the next phase (S4).
///
/// ```
/// tulip::run(async {
///     let b = tulip::Barrier::new(2);
///     let b2 = b.clone();
///     let t = tulip::create_task(async move { b2.wait().await })?;
///     let mine = b.wait().await?;
///     let theirs = t.await?;
///     assert_eq!(mine + theirs, 1); // indices 0 and 1
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Rc<BarrierInner>,
}

impl Barrier {
    /// A barrier for `parties` tasks.
    ///
    /// # Panics
    /// If `parties` is 0 (asyncio's ValueError).
    pub fn new(parties: usize) -> Barrier {
        assert!(parties > 0, "parties must be > 0");
        Barrier {
            inner: Rc::new(BarrierInner {
                cond: Condition::new(),
                parties,
                state: Cell::new(BarrierState::Filling),
                count: Cell::new(0),
            }),
        }
    }

    /// Waits until `parties` tasks wait; returns this task's arrival index
    /// (0 to parties-1). Fails with `BrokenBarrier` if the barrier is
    /// broken, aborted or reset while waiting.
    pub async fn wait(&self) -> Result<usize> {
        let inner = &self.inner;
        let _lock = inner.cond.acquire().await?;
        self.block().await?;
        let index = inner.count.get();
        inner.count.set(index + 1);
        // `finally: self._count -= 1; self._exit()`
        let _exit = BarrierExit { barrier: self };
        if index + 1 == inner.parties {
            // The last one releases the others: enter draining.
            inner.state.set(BarrierState::Draining);
            inner.cond.notify_all()?;
        } else {
            inner
                .cond
                .wait_for(|| inner.state.get() != BarrierState::Filling)
                .await?;
            if matches!(
                inner.state.get(),
                BarrierState::Broken | BarrierState::Resetting
            ) {
                return Err(Error::BrokenBarrier);
            }
        }
        Ok(index)
    }

    /// Blocks while the barrier drains or resets; fails if it is broken.
    async fn block(&self) -> Result<()> {
        let inner = &self.inner;
        inner
            .cond
            .wait_for(|| {
                !matches!(
                    inner.state.get(),
                    BarrierState::Draining | BarrierState::Resetting
                )
            })
            .await?;
        if inner.state.get() == BarrierState::Broken {
            return Err(Error::BrokenBarrier);
        }
        Ok(())
    }

    /// Returns the barrier to its empty state; current waiters get
    /// `BrokenBarrier`.
    pub async fn reset(&self) -> Result<()> {
        let inner = &self.inner;
        let _lock = inner.cond.acquire().await?;
        if inner.count.get() > 0 {
            inner.state.set(BarrierState::Resetting);
        } else {
            inner.state.set(BarrierState::Filling);
        }
        inner.cond.notify_all()
    }

    /// Breaks the barrier: current and future waiters get `BrokenBarrier`.
    pub async fn abort(&self) -> Result<()> {
        let inner = &self.inner;
        let _lock = inner.cond.acquire().await?;
        inner.state.set(BarrierState::Broken);
        inner.cond.notify_all()
    }

    /// How many tasks must arrive to pass.
    pub fn parties(&self) -> usize {
        self.inner.parties
    }

    /// How many tasks wait in the filling phase.
    pub fn n_waiting(&self) -> usize {
        if self.inner.state.get() == BarrierState::Filling {
            self.inner.count.get()
        } else {
            0
        }
    }

    /// True if the barrier is broken.
    pub fn broken(&self) -> bool {
        self.inner.state.get() == BarrierState::Broken
    }
}

/// asyncio's `Barrier._exit`, run on every way out of `wait` (the lock is
/// still held then: this guard drops before the lock guard).
struct BarrierExit<'a> {
    barrier: &'a Barrier,
}

impl Drop for BarrierExit<'_> {
    fn drop(&mut self) {
        let inner = &self.barrier.inner;
        inner.count.set(inner.count.get() - 1);
        if inner.count.get() == 0 {
            if matches!(
                inner.state.get(),
                BarrierState::Resetting | BarrierState::Draining
            ) {
                inner.state.set(BarrierState::Filling);
            }
            // Wake the tasks blocked until the barrier drained.
            inner.cond.notify_waiters(usize::MAX);
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.state.get() {
            BarrierState::Filling => "filling",
            BarrierState::Draining => "draining",
            BarrierState::Resetting => "resetting",
            BarrierState::Broken => "broken",
        };
        write!(
            f,
            "<Barrier [{state}, waiters:{}/{}]>",
            self.n_waiting(),
            self.parties()
        )
    }
}
