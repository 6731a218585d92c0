//! `wait`, `as_completed` and `shield`. Mirrors `wait`/`_wait`,
//! `as_completed` and `shield` in `Lib/asyncio/tasks.py`.
//!
//! All three are built the same way: one private waiter future, done
//! callbacks on the children that complete it, and an optional timer.
//!
//! # Invariants
//! - `wait` never cancels a child; a timeout or a cancel of the waiting task
//!   only ends the wait (K2). Its callbacks and timer are removed on return.
//! - `as_completed` yields each child exactly once, in completion order;
//!   after the timeout it yields `Err(Timeout)` for each remaining child (K3).
//! - `shield`'s inner future keeps running when the outer one is cancelled;
//!   the outer one mirrors the inner one otherwise (K4).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future as StdFuture;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::get_running_loop;
use crate::events::TimerHandle;
use crate::futures::Future;
use crate::gather::Child;

/// When [`wait`] returns (asyncio's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReturnWhen {
    /// As soon as any child is done.
    FirstCompleted,
    /// As soon as any child fails (not: is cancelled), or all are done.
    FirstException,
    /// When every child is done.
    #[default]
    AllCompleted,
}

/// asyncio's `wait(aws, timeout, return_when)`: waits for the children and
/// returns `(done, pending)`, each in argument order. It cancels nothing (K2).
/// Plain futures are wrapped in tasks first (see [`Child::new`]).
///
/// ```
/// use tulip::ReturnWhen;
/// tulip::run(async {
///     let fast = tulip::create_task(async { tulip::sleep(0.001).await?; Ok(1) })?;
///     let slow = tulip::create_task(async { tulip::sleep(10.0).await?; Ok(2) })?;
///     let (done, pending) =
///         tulip::wait(vec![fast, slow.clone()], None, ReturnWhen::FirstCompleted).await?;
///     assert_eq!((done.len(), pending.len()), (1, 1));
///     slow.cancel();
///     Ok(())
/// }).unwrap();
/// ```
pub async fn wait<T, F, I>(
    futs: I,
    timeout: Option<f64>,
    return_when: ReturnWhen,
) -> Result<(Vec<Child<T>>, Vec<Child<T>>)>
where
    T: Clone + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
    I: IntoIterator<Item = F>,
{
    let fs: Vec<Child<T>> = futs.into_iter().map(Child::new).collect();
    if fs.is_empty() {
        return Err(Error::invalid_argument("the set of futures is empty"));
    }
    let lp = get_running_loop()?;
    let waiter: Future<()> = lp.create_future();
    let timer = match timeout {
        Some(t) => {
            let w = waiter.clone();
            // asyncio's _release_waiter
            Some(lp.call_later(t, move || {
                if !w.done() {
                    let _ = w.set_result(());
                }
            })?)
        }
        None => None,
    };
    let counter = Rc::new(Cell::new(fs.len()));
    let ids: Vec<_> = fs
        .iter()
        .map(|f| {
            let (counter, waiter, timer, me) =
                (counter.clone(), waiter.clone(), timer.clone(), f.clone());
            f.on_done(move || {
                // asyncio's _on_completion
                counter.set(counter.get() - 1);
                let failed = || !me.cancelled() && matches!(me.exception(), Ok(Some(_)));
                if counter.get() == 0
                    || return_when == ReturnWhen::FirstCompleted
                    || (return_when == ReturnWhen::FirstException && failed())
                {
                    if let Some(t) = &timer {
                        t.cancel();
                    }
                    if !waiter.done() {
                        let _ = waiter.set_result(());
                    }
                }
            })
        })
        .collect();
    let r = waiter.await;
    // finally: cancel the timer, remove the callbacks
    if let Some(t) = &timer {
        t.cancel();
    }
    for (f, id) in fs.iter().zip(ids) {
        f.remove_done_callback(id);
    }
    r?;
    let (done, pending) = fs.into_iter().partition(|f| f.done());
    Ok((done, pending))
}

// ===== as_completed =====

struct AsCompletedState<T> {
    /// Children done and not yet yielded, in completion order.
    done: RefCell<VecDeque<Child<T>>>,
    /// Set when `next()` waits.
    waiter: RefCell<Option<Future<()>>>,
    timed_out: Cell<bool>,
    /// Children not done yet.
    todo: Cell<usize>,
    timer: RefCell<Option<TimerHandle>>,
}

impl<T> AsCompletedState<T> {
    fn wake(&self) {
        let w = self.waiter.borrow_mut().take();
        if let Some(w) = w {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }
}

/// asyncio's `as_completed(aws, timeout)`: the children's results in the
/// order they complete (K3). Call [`next`](AsCompleted::next) until it gives
/// `None`. Once the timeout passes, each remaining child gives
/// `Err(Timeout)` (the children keep running).
///
/// ```
/// tulip::run(async {
///     async fn after(d: f64, v: u32) -> tulip::Result<u32> {
///         tulip::sleep(d).await?;
///         Ok(v)
///     }
///     let mut it = tulip::as_completed(vec![after(0.02, 2), after(0.01, 1)], None);
///     assert_eq!(it.next().await.unwrap()?, 1);
///     assert_eq!(it.next().await.unwrap()?, 2);
///     assert!(it.next().await.is_none());
///     Ok(())
/// }).unwrap();
/// ```
pub fn as_completed<T, F, I>(futs: I, timeout: Option<f64>) -> AsCompleted<T>
where
    T: Clone + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
    I: IntoIterator<Item = F>,
{
    let fs: Vec<Child<T>> = futs.into_iter().map(Child::new).collect();
    let state = Rc::new(AsCompletedState {
        done: RefCell::new(VecDeque::new()),
        waiter: RefCell::new(None),
        timed_out: Cell::new(false),
        todo: Cell::new(fs.len()),
        timer: RefCell::new(None),
    });
    for f in &fs {
        let (st, me) = (state.clone(), f.clone());
        f.on_done(move || {
            if st.timed_out.get() {
                return;
            }
            st.todo.set(st.todo.get() - 1);
            st.done.borrow_mut().push_back(me);
            if st.todo.get() == 0 {
                if let Some(t) = st.timer.borrow_mut().take() {
                    t.cancel();
                }
            }
            st.wake();
        });
    }
    if let (Some(t), false) = (timeout, fs.is_empty()) {
        if let Ok(lp) = get_running_loop() {
            let st = Rc::downgrade(&state);
            let timer = lp.call_later(t, move || {
                if let Some(st) = st.upgrade() {
                    // asyncio's _on_timeout: the rest give TimeoutError.
                    st.timed_out.set(true);
                    st.wake();
                }
            });
            *state.timer.borrow_mut() = timer.ok();
        }
    }
    AsCompleted {
        remaining: fs.len(),
        state,
    }
}

/// What [`as_completed`] returns.
pub struct AsCompleted<T> {
    state: Rc<AsCompletedState<T>>,
    remaining: usize,
}

impl<T: Clone + 'static> AsCompleted<T> {
    /// The next result in completion order; `None` once every child was
    /// yielded. `Err(Timeout)` after the timeout passed.
    pub async fn next(&mut self) -> Option<Result<T>> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            let next = self.state.done.borrow_mut().pop_front();
            if let Some(child) = next {
                self.remaining -= 1;
                return Some(child.result());
            }
            if self.state.timed_out.get() {
                self.remaining -= 1;
                return Some(Err(Error::Timeout));
            }
            let lp = match get_running_loop() {
                Ok(lp) => lp,
                Err(e) => return Some(Err(e)),
            };
            let w: Future<()> = lp.create_future();
            *self.state.waiter.borrow_mut() = Some(w.clone());
            if let Err(e) = w.await {
                return Some(Err(e));
            }
        }
    }

    /// How many results are still to come.
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// True once every result was yielded.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<T> Drop for AsCompleted<T> {
    fn drop(&mut self) {
        if let Some(t) = self.state.timer.borrow_mut().take() {
            t.cancel();
        }
    }
}

impl<T> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .field("timed_out", &self.state.timed_out.get())
            .finish()
    }
}

// ===== shield =====

/// asyncio's `shield(aw)`: a future that mirrors `aw`, except that
/// cancelling it (or the task awaiting it) leaves `aw` running (K4).
///
/// ```
/// tulip::run(async {
///     let inner = tulip::create_task(async { tulip::sleep(0.01).await?; Ok(5) })?;
///     let outer = tulip::shield(inner.clone());
///     outer.cancel();
///     assert_eq!(inner.await?, 5); // still ran to completion
///     Ok(())
/// }).unwrap();
/// ```
pub fn shield<T, F>(fut: F) -> Future<T>
where
    T: Clone + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    let inner = Child::new(fut);
    let outer: Future<T> = Future::new();
    let (o, i) = (outer.clone(), inner.clone());
    // asyncio's _inner_done_callback
    let id = inner.on_done(move || {
        if o.cancelled() {
            let _ = i.outcome_error(); // mark retrieved
            return;
        }
        if i.cancelled() {
            o.cancel();
        } else {
            match i.result() {
                Ok(v) => {
                    let _ = o.set_result(v);
                }
                Err(e) => {
                    let _ = o.set_exception(e);
                }
            }
        }
    });
    // asyncio's _outer_done_callback
    outer.add_done_callback(move |_| {
        if !inner.done() {
            inner.remove_done_callback(id);
        }
    });
    outer
}
