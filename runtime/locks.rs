//! Synchronization primitives. Mirrors `Lib/asyncio/locks.py`: [`Lock`],
//! [`Event`], [`Condition`] here; `Semaphore`/`BoundedSemaphore` in
//! [`semaphores`](crate::semaphores) and `Barrier` in [`barrier`](crate::barrier).
//!
//! Every primitive is built the way asyncio builds it: a waiter is a plain
//! [`Future<()>`] parked in a FIFO `VecDeque`. Granting means setting that
//! future's result; the woken task finishes the bookkeeping when it runs. A
//! task that is cancelled while it waits sees `Err(Cancelled)` from that
//! await (its `fut_waiter` was cancelled), removes its waiter and, if the
//! grant had already reached it, passes the grant on (`_wake_up_first`).
//!
//! In Rust a waiting future may also be *dropped* (its task is dropped, or a
//! combinator abandons it). Every wait therefore keeps its bookkeeping in a
//! guard whose `Drop` does what asyncio's `finally`/`except` blocks do, so a
//! dropped waiter behaves exactly like a cancelled one.
//!
//! # Invariants
//! - Lock: while `locked` is false and `waiters` holds a live (not cancelled)
//!   future, the first live one is already done (woken), or is about to be
//!   woken by the code path that just unlocked. Hence a newcomer never
//!   overtakes a waiter (FIFO), and a release grants at most once (S1).
//! - Acquisition numbers are never reused: a guard whose acquisition is over
//!   (released explicitly, or by a `Condition::wait` that was then
//!   abandoned) never matches a later holder's, so it releases nothing.
//! - A waiter future is in a `waiters` deque only while its wait is in
//!   progress; the wait removes it on every exit path (result, error, drop).
//! - The uncontended paths (`Lock::acquire` on a free lock, `Semaphore`
//!   with value > 0, `Event::wait` on a set event) allocate nothing.
//! - No `RefCell` borrow of a `waiters` deque is held while a future's result
//!   is set: results only schedule wake-ups (`call_soon`), never run code.
//! - A primitive is bound to the loop of its first wait (`LoopBound`,
//!   asyncio's `_LoopBoundMixin`), and its waiters are futures of that loop
//!   only: a wait from another loop fails before it queues anything (the
//!   fast paths wait for nothing and need no loop).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::{Rc, Weak};

use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, EventLoop, LoopInner};
use crate::futures::Future;

/// asyncio's `_LoopBoundMixin`: the loop a primitive's first wait ran on.
#[derive(Default)]
pub(crate) struct LoopBound(RefCell<Option<Weak<LoopInner>>>);

impl LoopBound {
    /// asyncio's `_get_loop()`: the running loop, to which the first call
    /// binds the primitive. From another loop it fails (asyncio's
    /// RuntimeError), so no future of that loop is queued behind futures
    /// the first loop may never wake. `what` describes the primitive.
    pub(crate) fn get_loop(&self, what: &dyn fmt::Debug) -> Result<EventLoop> {
        let lp = get_running_loop()?;
        let ours = lp.downgrade();
        let same = {
            let mut bound = self.0.borrow_mut();
            match &*bound {
                Some(w) => Weak::ptr_eq(w, &ours),
                None => {
                    *bound = Some(ours);
                    true
                }
            }
        };
        if same {
            Ok(lp)
        } else {
            Err(Error::runtime(format!(
                "{what:?} is bound to a different event loop: a primitive waited on in one loop \
                 (one tulip::run) cannot wait in another; create a new one for each loop"
            )))
        }
    }
}

/// A FIFO of waiter futures, as asyncio's `collections.deque` of futures.
pub(crate) type Waiters = RefCell<VecDeque<Future<()>>>;

/// Removes `fut` from `waiters` (asyncio's `self._waiters.remove(fut)`). The
/// woken waiter is nearly always at the front, so search from there.
pub(crate) fn remove_waiter(waiters: &Waiters, fut: &Future<()>) {
    let mut w = waiters.borrow_mut();
    if let Some(i) = w.iter().position(|f| f.ptr_eq(fut)) {
        w.remove(i);
    }
}

/// A new waiter future on `lp` (the primitive's loop), appended to `waiters`.
pub(crate) fn push_waiter(waiters: &Waiters, lp: &EventLoop) -> Result<Future<()>> {
    let fut: Future<()> = lp.create_future();
    waiters.borrow_mut().push_back(fut.clone());
    Ok(fut)
}

// ===== Lock =====

struct LockInner {
    locked: Cell<bool>,
    /// The acquisition in force: a guard releases only the acquisition it
    /// was made for, so a guard that outlives an explicit `release()` (or a
    /// `Condition::wait` abandoned before re-acquiring) never releases
    /// somebody else's hold. `Condition::wait` sets it back to its caller's
    /// acquisition when it re-acquires, so the caller's guard still works.
    generation: Cell<u64>,
    /// The last acquisition number handed out. Only ever goes up, so a
    /// number is never given twice, whatever `generation` was set back to.
    last_issued: Cell<u64>,
    waiters: Waiters,
    bound: LoopBound,
}

impl LockInner {
    /// asyncio's `_wake_up_first`: wake the first waiter, if it is not
    /// already woken. Cancelled waiters are removed by their own tasks.
    fn wake_up_first(&self) {
        let first = self.waiters.borrow().front().cloned();
        if let Some(fut) = first {
            if !fut.done() {
                let _ = fut.set_result(());
            }
        }
    }

    /// Marks the lock taken and returns a guard for this acquisition.
    fn take(&self, lock: &Lock) -> LockGuard {
        self.locked.set(true);
        let generation = self.last_issued.get() + 1;
        self.last_issued.set(generation);
        self.generation.set(generation);
        LockGuard {
            lock: Some(lock.clone()),
            generation,
        }
    }

    fn release(&self) -> Result<()> {
        if self.locked.get() {
            self.locked.set(false);
            self.wake_up_first();
            Ok(())
        } else {
            Err(Error::runtime(
                "lock is not acquired: call release() only after an acquire() whose guard \
                 was kept with LockGuard::forget (a dropped guard releases the lock itself)",
            ))
        }
    }
}

/// asyncio's `Lock`: a mutual-exclusion lock for tasks, fair (FIFO).
///
/// [`acquire`](Lock::acquire) returns a [`LockGuard`] that releases the
/// lock when dropped (asyncio's `async with lock:`). For asyncio's explicit
/// style, call [`LockGuard::forget`] and later [`Lock::release`]. Clones
/// share the same lock.
///
/// ```
/// tulip::run(async {
///     let lock = tulip::Lock::new();
///     {
///         let _guard = lock.acquire().await?;
///         assert!(lock.locked());
///     } // released here
///     assert!(!lock.locked());
///     lock.acquire().await?.forget(); // asyncio style: acquire() ... release()
///     lock.release()
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Lock {
    inner: Rc<LockInner>,
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock {
            inner: Rc::new(LockInner {
                locked: Cell::new(false),
                generation: Cell::new(0),
                last_issued: Cell::new(0),
                waiters: RefCell::new(VecDeque::new()),
                bound: LoopBound::default(),
            }),
        }
    }

    /// True if the lock is held.
    pub fn locked(&self) -> bool {
        self.inner.locked.get()
    }

    /// Acquires the lock, waiting in FIFO order if it is held.
    ///
    /// Fails with `Cancelled` if the task is cancelled while it waits; a
    /// grant that had already reached it is passed to the next waiter (S1).
    pub async fn acquire(&self) -> Result<LockGuard> {
        let inner = &self.inner;
        // Fast path: free, and nobody (alive) is queued ahead of us.
        if !inner.locked.get() && inner.waiters.borrow().iter().all(|w| w.cancelled()) {
            return Ok(inner.take(self));
        }
        let lp = inner.bound.get_loop(self)?;
        let fut = push_waiter(&inner.waiters, &lp)?;
        let _waiting = LockWait { inner, fut: &fut };
        // On every exit (result, Cancelled, drop) LockWait removes the
        // waiter and, if the lock is free, wakes the next one.
        fut.clone().await?;
        Ok(inner.take(self))
    }

    /// Takes the lock only if that needs no waiting (not in asyncio; handy).
    pub fn try_acquire(&self) -> Option<LockGuard> {
        let inner = &self.inner;
        if !inner.locked.get() && inner.waiters.borrow().iter().all(|w| w.cancelled()) {
            Some(inner.take(self))
        } else {
            None
        }
    }

    /// Releases the lock and wakes the first waiter. Fails if the lock is
    /// not held (asyncio's RuntimeError).
    pub fn release(&self) -> Result<()> {
        self.inner.release()
    }

    /// True if both are the same lock.
    pub fn ptr_eq(&self, other: &Lock) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The bookkeeping of one waiting `acquire`: asyncio's `finally:
/// self._waiters.remove(fut)` plus its `except CancelledError: if not
/// self._locked: self._wake_up_first()`.
struct LockWait<'a> {
    inner: &'a LockInner,
    fut: &'a Future<()>,
}

impl Drop for LockWait<'_> {
    fn drop(&mut self) {
        remove_waiter(&self.inner.waiters, self.fut);
        if !self.inner.locked.get() {
            // We were woken but will not take the lock (cancelled after the
            // wake-up, or dropped): hand it to the next waiter.
            self.inner.wake_up_first();
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.locked() { "locked" } else { "unlocked" };
        write!(f, "<Lock [{state}]")?;
        let n = self.inner.waiters.borrow().len();
        if n > 0 {
            write!(f, " waiters:{n}")?;
        }
        f.write_str(">")
    }
}

/// Holds a [`Lock`]; releases it when dropped.
///
/// The guard releases only its own acquisition: if the lock was released
/// explicitly meanwhile (and maybe taken by another task), dropping the
/// guard does nothing.
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    lock: Option<Lock>,
    generation: u64,
}

impl LockGuard {
    /// Keeps the lock held without the guard; release it later with
    /// [`Lock::release`] (asyncio's explicit `acquire()`/`release()` style).
    pub fn forget(mut self) {
        self.lock = None;
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            let inner = &lock.inner;
            // Released explicitly already (maybe re-taken by another
            // task)? Then this acquisition is over: nothing to do.
            if inner.locked.get() && inner.generation.get() == self.generation {
                let _ = inner.release();
            }
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.lock)
            .finish()
    }
}

// ===== Event =====

struct EventInner {
    value: Cell<bool>,
    waiters: Waiters,
    bound: LoopBound,
}

/// asyncio's `Event`: tasks wait until some task sets the flag.
///
/// `set()` wakes every current waiter, even if `clear()` follows at once
/// (S3). Clones share the same event.
///
/// ```
/// tulip::run(async {
///     let ev = tulip::Event::new();
///     let setter = ev.clone();
///     tulip::get_running_loop()?.call_later(0.01, move || setter.set())?;
///     ev.wait().await?;
///     assert!(ev.is_set());
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Event {
    inner: Rc<EventInner>,
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event {
            inner: Rc::new(EventInner {
                value: Cell::new(false),
                waiters: RefCell::new(VecDeque::new()),
                bound: LoopBound::default(),
            }),
        }
    }

    /// True if the flag is set.
    pub fn is_set(&self) -> bool {
        self.inner.value.get()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        if !self.inner.value.replace(true) {
            let waiters: Vec<Future<()>> = self.inner.waiters.borrow().iter().cloned().collect();
            for fut in waiters {
                if !fut.done() {
                    let _ = fut.set_result(());
                }
            }
        }
    }

    /// Clears the flag; later `wait`s block until the next `set`.
    pub fn clear(&self) {
        self.inner.value.set(false);
    }

    /// Waits until the flag is set; returns at once if it is.
    pub async fn wait(&self) -> Result<()> {
        if self.inner.value.get() {
            return Ok(());
        }
        let lp = self.inner.bound.get_loop(self)?;
        let fut = push_waiter(&self.inner.waiters, &lp)?;
        let _waiting = RemoveOnDrop {
            waiters: &self.inner.waiters,
            fut: &fut,
        };
        fut.clone().await
    }
}

/// `finally: self._waiters.remove(fut)`.
struct RemoveOnDrop<'a> {
    waiters: &'a Waiters,
    fut: &'a Future<()>,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        remove_waiter(self.waiters, self.fut);
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.is_set() { "set" } else { "unset" };
        write!(f, "<Event [{state}]")?;
        let n = self.inner.waiters.borrow().len();
        if n > 0 {
            write!(f, " waiters:{n}")?;
        }
        f.write_str(">")
    }
}

// ===== Condition =====

struct ConditionInner {
    lock: Lock,
    waiters: Waiters,
    bound: LoopBound,
}

/// asyncio's `Condition`: tasks wait until notified, holding a [`Lock`].
///
/// `wait()` releases the lock, waits for a `notify`, and re-acquires the lock
/// before it returns, even when cancelled (S2). Clones share the condition.
///
/// ```
/// tulip::run(async {
///     let cond = tulip::Condition::new();
///     let c2 = cond.clone();
///     let waiter = tulip::create_task(async move {
///         let _g = c2.acquire().await?;
///         c2.wait().await?;         // lock released while waiting
///         Ok("notified")
///     })?;
///     tulip::sleep(0.0).await?;
///     {
///         let _g = cond.acquire().await?;
///         cond.notify(1)?;
///     }
///     assert_eq!(waiter.await?, "notified");
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct Condition {
    inner: Rc<ConditionInner>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl Condition {
    /// A condition with its own new lock.
    pub fn new() -> Condition {
        Condition::with_lock(Lock::new())
    }

    /// A condition over an existing lock.
    pub fn with_lock(lock: Lock) -> Condition {
        Condition {
            inner: Rc::new(ConditionInner {
                lock,
                waiters: RefCell::new(VecDeque::new()),
                bound: LoopBound::default(),
            }),
        }
    }

    /// The underlying lock.
    pub fn lock(&self) -> &Lock {
        &self.inner.lock
    }

    /// Acquires the underlying lock (`async with cond:`).
    pub async fn acquire(&self) -> Result<LockGuard> {
        self.inner.lock.acquire().await
    }

    /// Releases the underlying lock.
    pub fn release(&self) -> Result<()> {
        self.inner.lock.release()
    }

    /// True if the underlying lock is held.
    pub fn locked(&self) -> bool {
        self.inner.lock.locked()
    }

    /// Releases the lock, waits for a notify, then re-acquires the lock.
    ///
    /// The caller must hold the lock. As in asyncio, a lock records no
    /// owner, so what is checked is that it is locked at all (else a
    /// `Runtime` error), not that this task locked it. If the task is
    /// cancelled, the lock is still re-acquired before `Cancelled` is
    /// returned (the last one, if more came meanwhile, as asyncio re-raises
    /// the most recent), and another waiter is woken in its place (as
    /// asyncio does on any error), so a notify that had already reached this waiter
    /// is never lost, even if the cancel came while it re-acquired the lock
    /// (S2). Like asyncio's, this may return spuriously: re-check the state.
    pub async fn wait(&self) -> Result<()> {
        let inner = &self.inner;
        if !inner.lock.locked() {
            return Err(Error::runtime(
                "cannot wait on un-acquired lock: acquire() it first",
            ));
        }
        // The caller's guard belongs to this acquisition; it is restored
        // below once the lock is re-acquired.
        let generation = inner.lock.inner.generation.get();
        let fut: Future<()> = inner.bound.get_loop(self)?.create_future();
        inner.lock.release()?;
        // asyncio's `except BaseException: self._notify(1)`: on every way
        // out but success (an error, even after the lock is re-acquired, or
        // the wait dropped), another waiter is woken.
        let mut waiting = CondWait {
            cond: self,
            fut: Some(fut.clone()),
            ok: false,
        };
        inner.waiters.borrow_mut().push_back(fut.clone());
        let waited = fut.await;
        waiting.leave();
        // Must re-acquire the lock even if the wait was cancelled.
        let mut err = waited.err();
        loop {
            match inner.lock.acquire().await {
                Ok(g) => {
                    g.forget();
                    inner.lock.inner.generation.set(generation);
                    break;
                }
                Err(e) if e.is_cancelled() => err = Some(e),
                Err(e) => return Err(e),
            }
        }
        match err {
            Some(e) => Err(e),
            None => {
                waiting.ok = true;
                Ok(())
            }
        }
    }

    /// Waits until `predicate()` is true, checking it first and after each
    /// notify. The lock must be held.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// tulip::run(async {
    ///     let cond = tulip::Condition::new();
    ///     let count = Rc::new(Cell::new(0));
    ///     let (c, n) = (cond.clone(), count.clone());
    ///     let waiter = tulip::create_task(async move {
    ///         let _g = c.acquire().await?;
    ///         c.wait_for(|| n.get() >= 2).await?; // checked again after each notify
    ///         Ok(n.get())
    ///     })?;
    ///     for _ in 0..2 {
    ///         tulip::sleep(0.0).await?;
    ///         let _g = cond.acquire().await?;
    ///         count.set(count.get() + 1);
    ///         cond.notify_all()?;
    ///     }
    ///     assert_eq!(waiter.await?, 2);
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<()> {
        while !predicate() {
            self.wait().await?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiters. The lock must be held (checked as in
    /// [`wait`](Condition::wait): locked by anyone, else a `Runtime` error).
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.inner.lock.locked() {
            return Err(Error::runtime(
                "cannot notify on un-acquired lock: acquire() it first",
            ));
        }
        self.notify_waiters(n);
        Ok(())
    }

    /// Wakes every waiter. The lock must be held.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    /// asyncio's `_notify(n)`: wake the first `n` waiters not yet woken.
    pub(crate) fn notify_waiters(&self, n: usize) {
        let waiters: Vec<Future<()>> = self
            .inner
            .waiters
            .borrow()
            .iter()
            .filter(|f| !f.done())
            .take(n)
            .cloned()
            .collect();
        for fut in waiters {
            let _ = fut.set_result(());
        }
    }
}

/// One `Condition::wait`: removes the waiter on every way out (asyncio's
/// `finally: self._waiters.remove(fut)`), and unless the wait succeeded
/// (it failed, even after a notify had reached it, or it was dropped),
/// wakes another waiter instead (asyncio's `except BaseException:
/// self._notify(1)`) — a spurious wake-up is allowed, a lost notify is not.
struct CondWait<'a> {
    cond: &'a Condition,
    fut: Option<Future<()>>,
    ok: bool,
}

impl CondWait<'_> {
    /// Stops waiting for a notify: the waiter leaves the deque.
    fn leave(&mut self) {
        if let Some(fut) = self.fut.take() {
            remove_waiter(&self.cond.inner.waiters, &fut);
        }
    }
}

impl Drop for CondWait<'_> {
    fn drop(&mut self) {
        // Our own waiter leaves first, so the notify goes to another one.
        self.leave();
        if !self.ok {
            self.cond.notify_waiters(1);
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.locked() { "locked" } else { "unlocked" };
        write!(f, "<Condition [{state}]")?;
        let n = self.inner.waiters.borrow().len();
        if n > 0 {
            write!(f, " waiters:{n}")?;
        }
        f.write_str(">")
    }
}
