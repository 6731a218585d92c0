//! `wait`, `as_completed` and `shield`. Mirrors `wait`/`_wait`,
//! `as_completed` and `shield` in `Lib/asyncio/tasks.py`.
//!
//! All three are built the same way: a private waiter future (for
//! `as_completed`, a queue of them), done callbacks on the children that
//! complete it, and an optional timer.
//!
//! `as_completed` is 3.13's `_AsCompletedIterator`: an [`Iterator`] of
//! awaitables ([`WaitForOne`], asyncio's `_wait_for_one()`) for the classic
//! `for f in as_completed(aws): await f`, and an async iterator
//! ([`AsCompleted::next`]) for `async for`. Its `done` queue is a
//! `VecDeque` of children with a FIFO queue of waiter futures (the
//! getters of asyncio's `Queue`), so any number of awaitables may wait at
//! once, from any tasks.
//!
//! # Invariants
//! - `wait` never cancels a child; a timeout or a cancel of the waiting task
//!   only ends the wait (K2). Its callbacks and timer are removed on return.
//!   `done` and `pending` are in argument order.
//! - `as_completed` never cancels a child. Its awaitables and the async
//!   `next` results it gives number exactly the children (one count,
//!   asyncio's `_todo_left`); each child is taken from the `done` queue at
//!   most once, in completion order; after the timeout each result still to
//!   come is `Err(Timeout)`, after the children that completed before it
//!   (K3).
//! - A waiter future is resolved only for a child in the `done` queue or for
//!   the timeout. A waiter that was woken but leaves without taking a child
//!   (its task cancelled, or its future dropped) wakes the next waiter, so
//!   no wake-up is lost.
//! - The timer is cancelled once every child completed, or once neither the
//!   `AsCompleted` nor any of its awaitables is left. When it fires, it
//!   removes the callbacks of the children still to complete.
//! - `shield`'s inner future keeps running when the outer one is cancelled;
//!   the outer one mirrors the inner one otherwise (K4). `shield` of a
//!   done task (asyncio returns the task itself) is a done future that
//!   takes over the task's error, and the duty to report it if nobody
//!   retrieved it (F3): an error retrieved already is not reported again.
//!   From then on only a read through that copy counts as retrieving it
//!   (a documented deviation: see [`shield`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future as StdFuture;
use std::iter::FusedIterator;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use crate::error::{Error, Result};
use crate::event_loop::get_running_loop;
use crate::events::TimerHandle;
use crate::futures::{CallbackId, Future};
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
/// returns `(done, pending)`. It cancels nothing, not even on timeout (K2).
/// Plain futures are wrapped in tasks first (see [`Child::new`]).
///
/// # `done` and `pending` are `Vec`s in argument order
///
/// asyncio returns two `set`s. tulip returns two `Vec`s, and each keeps the
/// order in which the children were passed — *not* the order in which they
/// completed (use [`as_completed`] for that). Sets would need `Hash`, and a
/// [`Task`](crate::Task) is a handle compared by identity
/// ([`Task::ptr_eq`](crate::Task::ptr_eq)), not a value; argument order is
/// also one that a test can rely on, where a set's is arbitrary. So:
///
/// - asyncio's `task in done` is
///   `done.iter().any(|c| c.task().is_some_and(|t| t.ptr_eq(&task)))`;
/// - a child passed twice is in its `Vec` twice (asyncio's set holds it
///   once);
/// - `done.len() + pending.len()` is the number of children passed.
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
        return Err(Error::invalid_argument(
            "the set of futures is empty: pass wait() at least one",
        ));
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
    let r = {
        // asyncio's `finally:` (a dropped wait runs it too, as a closed
        // coroutine does): cancel the timer, remove the callbacks, which
        // would otherwise keep each pending child alive through its own
        // callback until it finishes.
        let _finally = WaitFinally {
            fs: &fs,
            ids,
            timer,
        };
        waiter.await
    };
    r?;
    let (done, pending) = fs.into_iter().partition(|f| f.done());
    Ok((done, pending))
}

/// The `finally:` of [`wait`] (and of `wait_for`'s `_cancel_and_wait`),
/// run however the wait ends: cancels the timer and removes the callbacks.
pub(crate) struct WaitFinally<'a, T: 'static> {
    pub(crate) fs: &'a [Child<T>],
    pub(crate) ids: Vec<CallbackId>,
    pub(crate) timer: Option<TimerHandle>,
}

impl<T: 'static> Drop for WaitFinally<'_, T> {
    fn drop(&mut self) {
        if let Some(t) = &self.timer {
            t.cancel();
        }
        for (f, &id) in self.fs.iter().zip(&self.ids) {
            f.remove_done_callback(id);
        }
    }
}

// ===== as_completed =====

/// A child and the id of its done callback.
type Watched<T> = (Child<T>, CallbackId);

struct AsCompletedState<T> {
    /// Children done and not yet handed out, in completion order
    /// (asyncio's `done` queue).
    done: RefCell<VecDeque<Child<T>>>,
    /// Pending awaits, first come first served (the `done` queue's
    /// getters): a completion wakes the first, a timeout wakes them all.
    waiters: RefCell<VecDeque<Future<()>>>,
    timed_out: Cell<bool>,
    /// Children not done yet.
    todo: Cell<usize>,
    /// With a timeout, each child's `_handle_completion` callback, by
    /// argument index, until it runs: the timeout removes those left
    /// (asyncio's `_todo`).
    callbacks: RefCell<Vec<Option<Watched<T>>>>,
    timer: RefCell<Option<TimerHandle>>,
    /// Live [`Owner`]s: the `AsCompleted` and the awaits it gave out.
    owners: Cell<usize>,
}

impl<T> AsCompletedState<T> {
    /// asyncio's `Queue._wakeup_next(getters)`: wakes the first waiter
    /// still pending, and forgets it.
    fn wake_next(&self) {
        loop {
            let w = self.waiters.borrow_mut().pop_front();
            match w {
                Some(w) if w.done() => continue,
                Some(w) => {
                    let _ = w.set_result(());
                    return;
                }
                None => return,
            }
        }
    }

    /// The timeout: every waiter now has an answer (a child, or Timeout).
    fn wake_all(&self) {
        let all = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in all {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }
}

/// A counted handle on the state: when the last one goes, nobody can ask
/// for a result any more, so the timer is cancelled.
struct Owner<T>(Rc<AsCompletedState<T>>);

impl<T> Owner<T> {
    fn new(state: Rc<AsCompletedState<T>>) -> Owner<T> {
        state.owners.set(state.owners.get() + 1);
        Owner(state)
    }
}

impl<T> Clone for Owner<T> {
    fn clone(&self) -> Self {
        Owner::new(self.0.clone())
    }
}

impl<T> Drop for Owner<T> {
    fn drop(&mut self) {
        let st = &self.0;
        st.owners.set(st.owners.get() - 1);
        if st.owners.get() == 0 {
            let timer = st.timer.borrow_mut().take();
            if let Some(t) = timer {
                t.cancel();
            }
        }
    }
}

/// One take from the `done` queue (asyncio's `await done.get()`): the next
/// child to complete, or `Err(Timeout)` once the timeout passed.
struct Take<T> {
    st: Owner<T>,
    /// Set while parked in `waiters`.
    waiter: Option<Future<()>>,
}

impl<T: 'static> Take<T> {
    fn new(st: Owner<T>) -> Take<T> {
        Take { st, waiter: None }
    }

    fn poll_take(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<Child<T>>> {
        loop {
            if let Some(w) = self.waiter.as_mut() {
                match Pin::new(w).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(())) => self.waiter = None,
                    Poll::Ready(Err(e)) => {
                        // Cancelled at this await: leave, passing on a
                        // wake-up that already reached us.
                        self.leave();
                        return Poll::Ready(Err(e));
                    }
                }
            }
            let st = &self.st.0;
            let next = st.done.borrow_mut().pop_front();
            if let Some(child) = next {
                return Poll::Ready(Ok(child));
            }
            if st.timed_out.get() {
                return Poll::Ready(Err(Error::Timeout));
            }
            let lp = match get_running_loop() {
                Ok(lp) => lp,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let w: Future<()> = lp.create_future();
            st.waiters.borrow_mut().push_back(w.clone());
            self.waiter = Some(w);
        }
    }
}

impl<T: 'static> StdFuture for Take<T> {
    type Output = Result<Child<T>>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_take(cx)
    }
}

impl<T> Take<T> {
    /// asyncio's `Queue.get` `except` branch: stop waiting; if we were
    /// woken for a child we will not take, wake the next waiter instead.
    fn leave(&mut self) {
        let Some(w) = self.waiter.take() else { return };
        let st = &self.st.0;
        st.waiters.borrow_mut().retain(|x| !x.ptr_eq(&w));
        if w.done() && !w.cancelled() && !st.done.borrow().is_empty() {
            st.wake_next();
        }
    }
}

impl<T> Drop for Take<T> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// asyncio's `as_completed(aws, timeout)` (3.13): the children's results
/// in the order they complete (K3). It cancels nothing, not even on timeout.
///
/// The [`AsCompleted`] it returns is used in either of asyncio's two ways:
///
/// - **an iterator of awaitables**, asyncio's classic
///   `for f in as_completed(aws): r = await f`. `AsCompleted` is an
///   [`Iterator`] that gives exactly as many awaitables ([`WaitForOne`],
///   asyncio's `_wait_for_one()`) as there are children; each one, when
///   awaited, resolves to the *next* result in completion order, whichever
///   child that is;
/// - **an async iterator**, asyncio's `async for`: call the async
///   [`next`](AsCompleted::next) (the result) or
///   [`next_done`](AsCompleted::next_done) (the child itself, as 3.13's
///   `async for` gives the original task) until it gives `None`.
///
/// Both draw on the same count, so they can be mixed. Once the timeout
/// passes, each result still to come is `Err(Timeout)` (the children keep
/// running); results that arrived before it still come first.
///
/// ```
/// tulip::run(async {
///     async fn after(d: f64, v: u32) -> tulip::Result<u32> {
///         tulip::sleep(d).await?;
///         Ok(v)
///     }
///     // for f in as_completed(aws): result = await f
///     let mut got = vec![];
///     for fut in tulip::as_completed(vec![after(0.02, 2), after(0.01, 1)], None) {
///         got.push(fut.await?);
///     }
///     assert_eq!(got, [1, 2]);
///
///     // async for result in as_completed(aws)
///     let mut it = tulip::as_completed(vec![after(0.02, 2), after(0.01, 1)], None);
///     assert_eq!(it.next().await.unwrap()?, 1);
///     assert_eq!(it.next().await.unwrap()?, 2);
///     assert!(it.next().await.is_none());
///     Ok(())
/// }).unwrap();
/// ```
///
/// Unlike asyncio, a child passed twice is yielded twice (a `Task` is not
/// `Hash`, so there is no `set(aws)`).
pub fn as_completed<T, F, I>(futs: I, timeout: Option<f64>) -> AsCompleted<T>
where
    T: Clone + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
    I: IntoIterator<Item = F>,
{
    let fs: Vec<Child<T>> = futs.into_iter().map(Child::new).collect();
    let state = Rc::new(AsCompletedState {
        done: RefCell::new(VecDeque::new()),
        waiters: RefCell::new(VecDeque::new()),
        timed_out: Cell::new(false),
        todo: Cell::new(fs.len()),
        callbacks: RefCell::new(Vec::new()),
        timer: RefCell::new(None),
        owners: Cell::new(0),
    });
    for (i, f) in fs.iter().enumerate() {
        let (st, me) = (state.clone(), f.clone());
        // asyncio's _handle_completion
        let id = f.on_done(move || {
            if st.timed_out.get() {
                return; // _handle_timeout was here first
            }
            let cb = st.callbacks.borrow_mut().get_mut(i).and_then(Option::take);
            drop(cb);
            st.todo.set(st.todo.get() - 1);
            st.done.borrow_mut().push_back(me);
            if st.todo.get() == 0 {
                let timer = st.timer.borrow_mut().take();
                if let Some(t) = timer {
                    t.cancel();
                }
            }
            st.wake_next();
        });
        if timeout.is_some() {
            // Callbacks run through the ready queue, never here: the slot
            // is filled before its callback can run.
            state.callbacks.borrow_mut().push(Some((f.clone(), id)));
        }
    }
    if let (Some(t), Some(first)) = (timeout, fs.first()) {
        // asyncio: `loop.call_later` on its get_event_loop(), running or
        // not, the loop ensure_future holds the children to: here, theirs.
        let st = Rc::downgrade(&state);
        let timer = first.loop_ref().call_later(t, move || {
            if let Some(st) = st.upgrade() {
                // asyncio's _handle_timeout: the rest give TimeoutError,
                // and the children left lose their callback.
                st.timed_out.set(true);
                let left = std::mem::take(&mut *st.callbacks.borrow_mut());
                for (child, id) in left.into_iter().flatten() {
                    child.remove_done_callback(id);
                }
                st.wake_all();
            }
        });
        *state.timer.borrow_mut() = timer.ok();
    }
    AsCompleted {
        remaining: fs.len(),
        owner: Owner::new(state),
    }
}

/// What [`as_completed`] returns: asyncio's `_AsCompletedIterator`, both
/// an [`Iterator`] of awaitables and an async iterator.
///
/// The inherent async [`next`](AsCompleted::next) takes precedence over
/// [`Iterator::next`] in method-call syntax: `it.next().await` is the async
/// iterator, while `for fut in it` (or `&mut it`, or any iterator adapter)
/// gives [`WaitForOne`] awaitables; call `Iterator::next(&mut it)` for one
/// awaitable by hand.
pub struct AsCompleted<T> {
    owner: Owner<T>,
    /// Results not handed out yet (asyncio's `_todo_left`).
    remaining: usize,
}

impl<T: Clone + 'static> AsCompleted<T> {
    /// The next result in completion order; `None` once every child was
    /// yielded. `Err(Timeout)` after the timeout passed.
    pub async fn next(&mut self) -> Option<Result<T>> {
        Some(match self.next_done().await? {
            Ok(child) => child.result(),
            Err(e) => Err(e),
        })
    }

    /// The next child to complete, itself (3.13's `async for` over
    /// `as_completed` yields the original tasks); `Err(Timeout)` after the
    /// timeout passed; `None` once every child was yielded.
    ///
    /// A call cancelled while it waits (its task cancelled, or the future
    /// dropped) counts for nothing: the child it would have had goes to the
    /// next call. (asyncio's `__anext__` counts it before waiting.)
    pub async fn next_done(&mut self) -> Option<Result<Child<T>>> {
        if self.remaining == 0 {
            return None;
        }
        let r = Take::new(self.owner.clone()).await;
        if matches!(&r, Ok(_) | Err(Error::Timeout)) {
            self.remaining -= 1;
        }
        Some(r)
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

/// asyncio's `for f in as_completed(aws)`: gives exactly one awaitable per
/// child that was not handed out yet (asyncio's `__next__`).
impl<T: Clone + 'static> Iterator for AsCompleted<T> {
    type Item = WaitForOne<T>;

    fn next(&mut self) -> Option<WaitForOne<T>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(WaitForOne {
            take: Take::new(self.owner.clone()),
            finished: false,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<T: Clone + 'static> ExactSizeIterator for AsCompleted<T> {}

impl<T: Clone + 'static> FusedIterator for AsCompleted<T> {}

impl<T> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("remaining", &self.remaining)
            .field("timed_out", &self.owner.0.timed_out.get())
            .finish()
    }
}

/// One awaitable of [`as_completed`]'s iterator: asyncio's
/// `_wait_for_one()`. Awaiting it gives the result of the next child to
/// complete — not of a given child: the awaitables are interchangeable and
/// are served in the order they start waiting — or `Err(Timeout)` once the
/// timeout passed. The child's error, if it failed, is the result.
///
/// It may outlive the [`AsCompleted`] that gave it, and be awaited from
/// another task. If it is cancelled while it waits, it takes nothing (the
/// result goes to the next awaitable, also when the wake-up had already
/// reached it) and may be awaited again. Dropped unawaited, it still counts
/// as given out, as in asyncio: the result it would have had is left to the
/// [`AsCompleted`]'s async [`next`](AsCompleted::next), if any call is left.
/// Awaiting it again after it resolved gives `Err(InvalidState)`.
#[must_use = "an as_completed awaitable does nothing unless awaited"]
pub struct WaitForOne<T> {
    take: Take<T>,
    /// It gave its result (or Timeout) already.
    finished: bool,
}

impl<T: Clone + 'static> StdFuture for WaitForOne<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(Err(Error::invalid_state(
                "this as_completed awaitable already gave its result: await the next one instead",
            )));
        }
        match this.take.poll_take(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(child)) => {
                this.finished = true;
                Poll::Ready(child.result()) // may be the child's error
            }
            Poll::Ready(Err(e)) => {
                this.finished = e.is_timeout();
                Poll::Ready(Err(e))
            }
        }
    }
}

impl<T> fmt::Debug for WaitForOne<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.finished, &self.take.waiter) {
            (true, _) => "finished",
            (false, Some(_)) => "waiting",
            (false, None) => "pending",
        };
        write!(f, "<as_completed awaitable {state}>")
    }
}

// ===== shield =====

/// asyncio's `shield(aw)`: a future that mirrors `aw`, except that
/// cancelling it (or the task awaiting it) leaves `aw` running (K4).
///
/// If `aw` is done already, nothing is left to shield: asyncio returns it
/// as it is, and so does tulip for a [`Future`]. A done [`Task`](crate::Task)
/// cannot be returned as a `Future`, so the result is a done copy of its
/// outcome instead.
///
/// *Deviation* (F3, a done task that failed): asyncio's shield *is* the
/// task, so the error has one "retrieved" state, and reading it through
/// either the task or the shield stops the "exception was never
/// retrieved" report. tulip's copy takes the report over instead: from
/// the `shield` call on, the task counts as retrieved, and the copy
/// reports the error when dropped unless the error was read through the
/// copy itself (`result`, `exception` or an await). So:
/// - read through the shield: no report, as in asyncio;
/// - read neither way: one report (from the copy), as in asyncio;
/// - read only through the task, after `shield`: the copy still reports
///   it once, where asyncio reports nothing; read it through the shield
///   (or before shielding) to avoid that;
/// - retrieved before `shield`: never reported, as in asyncio.
///
/// One shared state would take a field (or a hook on the read path) in
/// every future, which the futures' size and `result` path do not pay for
/// this corner.
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
    // asyncio's shortcut: `if inner.done(): return inner`. Nothing is left
    // to shield, so the result is done at once (and cannot be cancelled).
    if inner.done() {
        return match inner {
            Child::Future(f) => f,
            Child::Task(t) => {
                // asyncio returns the task itself, so its error is reported
                // once, if nobody retrieves it: the outer takes over that
                // duty, and an error already retrieved stays so.
                let unretrieved = t.error_unretrieved();
                let outer: Future<T> = Future::with_loop(t.loop_ref());
                match t.result() {
                    Ok(v) => {
                        let _ = outer.set_result(v);
                    }
                    Err(Error::Cancelled(msg)) => {
                        outer.cancel_with(msg);
                    }
                    Err(e) => {
                        let _ = outer.set_exception(e);
                        if !unretrieved {
                            outer.core.clear_log_traceback();
                        }
                    }
                }
                outer
            }
        };
    }
    // asyncio: `outer = loop.create_future()`, on the inner future's loop.
    let outer: Future<T> = Future::with_loop(inner.loop_ref());
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
