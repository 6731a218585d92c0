//! Queues between tasks. Mirrors `Lib/asyncio/queues.py`: [`Queue`]
//! (FIFO), [`LifoQueue`], [`PriorityQueue`], with `maxsize`, `task_done`/
//! `join`, and 3.13's `shutdown(immediate)`.
//!
//! All three share one engine, [`QueueBase`], over a [`Storage`] (asyncio's
//! `_init`/`_put`/`_get`/`qsize` hooks). Blocked getters and putters are
//! waiter futures in two FIFO deques; `put_nowait` wakes one getter and
//! `get_nowait` wakes one putter (`_wakeup_next`).
//!
//! # Invariants
//! - A waiter future sits in `getters`/`putters` only while its task waits.
//!   A cancelled (or dropped) getter/putter takes no item and no slot: it
//!   removes its waiter, and if it had been woken it passes the wake-up on
//!   (Q1).
//! - `unfinished` counts items put and not yet `task_done`; `finished` is
//!   set exactly when it is 0, so `join()` on a drained queue returns at once.
//! - After `shutdown()` every put fails with `QueueShutDown`; gets fail once
//!   the queue is empty. `shutdown(true)` also drains the queue (Q2).
//! - No `RefCell` borrow is held while a waiter's result is set.
//! - Getters and putters are futures of one loop, the one of the first
//!   blocked put or get (`LoopBound`, asyncio's `_LoopBoundMixin`): from
//!   another loop, a put or get that must wait fails instead.
//! - `shutdown(true)` completes before the drained items are dropped: an
//!   item whose `Drop` panics leaves the queue empty, shut down, with its
//!   waiters woken (the panic goes on to the caller).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::futures::Future;
use crate::locks::{Event, LoopBound};

/// Where a queue keeps its items: asyncio's `_init`/`_put`/`_get` hooks.
/// Implement it to make a queue with another order.
pub trait Storage {
    /// The item type.
    type Item;
    /// Stores an item.
    fn put(&mut self, item: Self::Item);
    /// Takes the next item, if any.
    fn get(&mut self) -> Option<Self::Item>;
    /// How many items are stored.
    fn len(&self) -> usize;
    /// True if no item is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out ([`Queue`]).
#[derive(Debug)]
pub struct Fifo<T>(VecDeque<T>);

/// Last in, first out ([`LifoQueue`]).
#[derive(Debug)]
pub struct Lifo<T>(Vec<T>);

/// Lowest first ([`PriorityQueue`]), as Python's `heapq`.
#[derive(Debug)]
pub struct Priority<T: Ord>(BinaryHeap<Reverse<T>>);

impl<T> Storage for Fifo<T> {
    type Item = T;
    fn put(&mut self, item: T) {
        self.0.push_back(item)
    }
    fn get(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Storage for Lifo<T> {
    type Item = T;
    fn put(&mut self, item: T) {
        self.0.push(item)
    }
    fn get(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Storage for Priority<T> {
    type Item = T;
    fn put(&mut self, item: T) {
        self.0.push(Reverse(item))
    }
    fn get(&mut self) -> Option<T> {
        self.0.pop().map(|Reverse(t)| t)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// asyncio's `Queue`: FIFO.
///
/// ```
/// tulip::run(async {
///     let q = tulip::Queue::new(2);
///     q.put(1).await?;
///     q.put_nowait(2)?;
///     assert!(q.full());
///     assert!(matches!(q.put_nowait(3), Err(tulip::Error::QueueFull)));
///     assert_eq!(q.get().await?, 1);
///     assert_eq!(q.get_nowait()?, 2);
///     Ok(())
/// }).unwrap();
/// ```
pub type Queue<T> = QueueBase<Fifo<T>>;

/// asyncio's `LifoQueue`: the last item put is the first one out.
///
/// ```
/// let q = tulip::LifoQueue::new(0);
/// q.put_nowait(1).unwrap();
/// q.put_nowait(2).unwrap();
/// assert_eq!(q.get_nowait().unwrap(), 2);
/// ```
pub type LifoQueue<T> = QueueBase<Lifo<T>>;

/// asyncio's `PriorityQueue`: the lowest item is the first one out. Use a
/// tuple `(priority, data)` as in asyncio.
///
/// ```
/// let q = tulip::PriorityQueue::new(0);
/// q.put_nowait((2, "b")).unwrap();
/// q.put_nowait((1, "a")).unwrap();
/// assert_eq!(q.get_nowait().unwrap(), (1, "a"));
/// ```
pub type PriorityQueue<T> = QueueBase<Priority<T>>;

impl<T> QueueBase<Fifo<T>> {
    /// A FIFO queue holding at most `maxsize` items (0: unbounded).
    pub fn new(maxsize: usize) -> Self {
        QueueBase::with_storage(maxsize, Fifo(VecDeque::new()))
    }
}

impl<T> QueueBase<Lifo<T>> {
    /// A LIFO queue holding at most `maxsize` items (0: unbounded).
    pub fn new(maxsize: usize) -> Self {
        QueueBase::with_storage(maxsize, Lifo(Vec::new()))
    }
}

impl<T: Ord> QueueBase<Priority<T>> {
    /// A priority queue holding at most `maxsize` items (0: unbounded).
    pub fn new(maxsize: usize) -> Self {
        QueueBase::with_storage(maxsize, Priority(BinaryHeap::new()))
    }
}

struct QueueInner<S> {
    maxsize: usize,
    items: RefCell<S>,
    getters: RefCell<VecDeque<Future<()>>>,
    putters: RefCell<VecDeque<Future<()>>>,
    unfinished: Cell<usize>,
    finished: Event,
    is_shutdown: Cell<bool>,
    /// asyncio's `_LoopBoundMixin`.
    bound: LoopBound,
}

/// The queue engine behind [`Queue`], [`LifoQueue`] and [`PriorityQueue`].
/// Clones share the same queue.
pub struct QueueBase<S> {
    inner: Rc<QueueInner<S>>,
}

impl<S> Clone for QueueBase<S> {
    fn clone(&self) -> Self {
        QueueBase {
            inner: self.inner.clone(),
        }
    }
}

/// asyncio's `_wakeup_next`: wake the first waiter that is not done.
fn wakeup_next(waiters: &RefCell<VecDeque<Future<()>>>) {
    loop {
        let next = waiters.borrow_mut().pop_front();
        match next {
            Some(w) if !w.done() => {
                let _ = w.set_result(());
                return;
            }
            Some(_) => continue,
            None => return,
        }
    }
}

/// asyncio's `except:` around a blocked put/get: cancel the waiter, remove
/// it, and if it had been woken while the wake is still useful, pass it on.
struct QueueWait<'a, S: Storage> {
    q: &'a QueueInner<S>,
    fut: Future<()>,
    getter: bool,
    ok: bool,
}

impl<S: Storage> Drop for QueueWait<'_, S> {
    fn drop(&mut self) {
        if self.ok {
            return;
        }
        self.fut.cancel(); // just in case it is not done yet
        let waiters = if self.getter {
            &self.q.getters
        } else {
            &self.q.putters
        };
        {
            let mut w = waiters.borrow_mut();
            if let Some(i) = w.iter().position(|f| f.ptr_eq(&self.fut)) {
                w.remove(i);
            }
        }
        let useful = if self.getter {
            !self.q.items.borrow().is_empty()
        } else {
            !self.q.full()
        };
        if useful && !self.fut.cancelled() {
            wakeup_next(waiters);
        }
    }
}

impl<S: Storage> QueueInner<S> {
    fn full(&self) -> bool {
        self.maxsize > 0 && self.items.borrow().len() >= self.maxsize
    }
}

impl<S: Storage> QueueBase<S> {
    /// A queue over a storage of your own (see [`Storage`]).
    pub fn with_storage(maxsize: usize, storage: S) -> Self {
        let finished = Event::new();
        finished.set();
        QueueBase {
            inner: Rc::new(QueueInner {
                maxsize,
                items: RefCell::new(storage),
                getters: RefCell::new(VecDeque::new()),
                putters: RefCell::new(VecDeque::new()),
                unfinished: Cell::new(0),
                finished,
                is_shutdown: Cell::new(false),
                bound: LoopBound::default(),
            }),
        }
    }

    /// The bound given at creation (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// Items in the queue.
    pub fn qsize(&self) -> usize {
        self.inner.items.borrow().len()
    }

    /// True if the queue holds no item.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// True if the queue holds `maxsize` items (never, for maxsize 0).
    pub fn full(&self) -> bool {
        self.inner.full()
    }

    /// Puts an item, waiting for a free slot while the queue is full.
    ///
    /// Fails with `QueueShutDown` after [`shutdown`](Self::shutdown), and
    /// with `Cancelled` if cancelled while waiting (no slot is taken, Q1).
    pub async fn put(&self, item: S::Item) -> Result<()> {
        let q = &*self.inner;
        while q.full() {
            if q.is_shutdown.get() {
                return Err(Error::QueueShutDown);
            }
            let putter: Future<()> = q.bound.get_loop(self)?.create_future();
            q.putters.borrow_mut().push_back(putter.clone());
            let mut wait = QueueWait {
                q,
                fut: putter.clone(),
                getter: false,
                ok: false,
            };
            putter.await?;
            wait.ok = true;
        }
        self.put_nowait(item)
    }

    /// Puts an item if there is a free slot; else fails with `QueueFull`.
    pub fn put_nowait(&self, item: S::Item) -> Result<()> {
        let q = &*self.inner;
        if q.is_shutdown.get() {
            return Err(Error::QueueShutDown);
        }
        if q.full() {
            return Err(Error::QueueFull);
        }
        q.items.borrow_mut().put(item);
        q.unfinished.set(q.unfinished.get() + 1);
        q.finished.clear();
        wakeup_next(&q.getters);
        Ok(())
    }

    /// Takes an item, waiting while the queue is empty.
    ///
    /// Fails with `QueueShutDown` once the queue is shut down and empty,
    /// and with `Cancelled` if cancelled while waiting (no item is taken).
    pub async fn get(&self) -> Result<S::Item> {
        let q = &*self.inner;
        while q.items.borrow().is_empty() {
            if q.is_shutdown.get() {
                return Err(Error::QueueShutDown);
            }
            let getter: Future<()> = q.bound.get_loop(self)?.create_future();
            q.getters.borrow_mut().push_back(getter.clone());
            let mut wait = QueueWait {
                q,
                fut: getter.clone(),
                getter: true,
                ok: false,
            };
            getter.await?;
            wait.ok = true;
        }
        self.get_nowait()
    }

    /// Takes an item if one is there; else fails with `QueueEmpty` (or
    /// `QueueShutDown` once shut down).
    pub fn get_nowait(&self) -> Result<S::Item> {
        let q = &*self.inner;
        let item = q.items.borrow_mut().get();
        match item {
            Some(item) => {
                wakeup_next(&q.putters);
                Ok(item)
            }
            None if q.is_shutdown.get() => Err(Error::QueueShutDown),
            None => Err(Error::QueueEmpty),
        }
    }

    /// Marks one fetched item as processed. One call too many is an error (Q2).
    pub fn task_done(&self) -> Result<()> {
        let q = &*self.inner;
        let n = q.unfinished.get();
        if n == 0 {
            return Err(Error::invalid_argument(
                "task_done() called too many times: call it once per item taken with get()",
            ));
        }
        q.unfinished.set(n - 1);
        if n == 1 {
            q.finished.set();
        }
        Ok(())
    }

    /// Waits until every item put has been marked by `task_done`.
    ///
    /// The worker pattern: each `get` is matched by a `task_done`, and `join`
    /// returns once every item put has been processed.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// tulip::run(async {
    ///     let q = tulip::Queue::new(0);
    ///     let done = Rc::new(Cell::new(0));
    ///     let (q2, d) = (q.clone(), done.clone());
    ///     let worker = tulip::create_task::<(), _>(async move {
    ///         loop {
    ///             let job: u32 = q2.get().await?;
    ///             d.set(d.get() + job); // process the job
    ///             q2.task_done()?;
    ///         }
    ///     })?;
    ///     for job in 1..=3 {
    ///         q.put_nowait(job)?;
    ///     }
    ///     q.join().await?;
    ///     assert_eq!((done.get(), q.unfinished_tasks()), (6, 0));
    ///     worker.cancel();
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn join(&self) -> Result<()> {
        if self.inner.unfinished.get() > 0 {
            self.inner.finished.wait().await?;
        }
        Ok(())
    }

    /// Items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.inner.unfinished.get()
    }

    /// True once [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.is_shutdown.get()
    }

    /// Shuts the queue down (3.13): puts fail with `QueueShutDown`, and
    /// gets too once the queue is empty. Blocked putters and getters wake up
    /// to see it. With `immediate`, the items are dropped at once (each
    /// counted as done), so `join()` returns.
    ///
    /// ```
    /// tulip::run(async {
    ///     let q = tulip::Queue::new(0);
    ///     q.put_nowait("last")?;
    ///     q.shutdown(false);
    ///     assert!(matches!(q.put_nowait("more"), Err(tulip::Error::QueueShutDown)));
    ///     assert_eq!(q.get().await?, "last"); // what was queued can still be taken
    ///     assert!(matches!(q.get().await, Err(tulip::Error::QueueShutDown)));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn shutdown(&self, immediate: bool) {
        let q = &*self.inner;
        q.is_shutdown.set(true);
        // The drained items are dropped last, once the queue is shut down
        // and its waiters woken: an item's `Drop` is the user's code, and
        // one that panics must not leave the queue half shut down (asyncio
        // only prints what a `__del__` raises). Each is dropped on its own,
        // and the first panic goes on to the caller after all of them.
        let mut drained = Vec::new();
        if immediate {
            loop {
                let item = q.items.borrow_mut().get();
                let Some(item) = item else {
                    break;
                };
                drained.push(item);
                if q.unfinished.get() > 0 {
                    q.unfinished.set(q.unfinished.get() - 1);
                }
            }
            if q.unfinished.get() == 0 {
                q.finished.set();
            }
        }
        for waiters in [&q.getters, &q.putters] {
            let all: Vec<Future<()>> = waiters.borrow_mut().drain(..).collect();
            for w in all {
                if !w.done() {
                    let _ = w.set_result(());
                }
            }
        }
        let mut first_panic = None;
        for item in drained {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(item))) {
                first_panic.get_or_insert(payload);
            }
        }
        if let Some(payload) = first_panic {
            resume_unwind(payload);
        }
    }
}

impl<S: Storage> fmt::Debug for QueueBase<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = &*self.inner;
        write!(
            f,
            "<Queue maxsize={} qsize={}",
            q.maxsize,
            q.items.borrow().len()
        )?;
        let g = q.getters.borrow().len();
        if g > 0 {
            write!(f, " _getters[{g}]")?;
        }
        let p = q.putters.borrow().len();
        if p > 0 {
            write!(f, " _putters[{p}]")?;
        }
        let u = q.unfinished.get();
        if u > 0 {
            write!(f, " tasks={u}")?;
        }
        if q.is_shutdown.get() {
            f.write_str(" shutdown")?;
        }
        f.write_str(">")
    }
}
