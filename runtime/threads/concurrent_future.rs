//! The loop<->thread bridges for coroutines: [`run_coroutine_threadsafe`]
//! sends a coroutine to a loop from any thread and returns a
//! [`ConcurrentFuture`]; [`wrap_future`] lets a task await such a future
//! without blocking its loop. Mirrors `run_coroutine_threadsafe` in
//! `Lib/asyncio/tasks.py`, `wrap_future`/`_chain_future` in
//! `Lib/asyncio/futures.py`, and the parts of `concurrent.futures.Future`
//! (`Lib/concurrent/futures/_base.py`) they stand on.
//!
//! # Invariants
//! - A [`ConcurrentFuture`] ends: with its task's outcome, cancelled, or
//!   failed with [`Error::Closed`] if the loop closes before the task
//!   finished (the one exception: an [`Interrupt`] raised by the maker).
//!   Each of its done callbacks runs exactly once: on the thread that ends
//!   it, or on the adder's if it had ended already.
//! - [`wrap_future`] chains a concurrent future to a loop future both ways
//!   (asyncio's `_chain_future`): the outcome comes back through the
//!   loop's thread-safe queue, a cancel of the loop future cancels the
//!   concurrent one.

use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{complete_remote, park, Executors};
use crate::error::{panic_message, Error, Result};
use crate::event_loop::{get_event_loop, EventLoop, Interrupt, LoopRef};
use crate::futures::Future;
use crate::tasks::Task;
use crate::threadsafe::LoopHandle;

// ===== run_coroutine_threadsafe =====

static NEXT_CF_ID: AtomicU64 = AtomicU64::new(1);

enum CfState<T> {
    Pending,
    Finished(T),
    Failed(Error),
    Cancelled,
}

/// A done callback of a [`ConcurrentFuture`]: runs on whichever thread
/// completes it, or at once on the thread that adds it to a done one.
type CfCallback<T> = Box<dyn FnOnce(&ConcurrentFuture<T>) + Send>;

struct CfInner<T> {
    id: u64,
    state: Mutex<CfState<T>>,
    done: Condvar,
    handle: LoopHandle,
    /// Taken (and run) once, right after the state leaves `Pending`. Locked
    /// before `state` when both are (`add_done_callback`), so a callback is
    /// either taken by the completer or run by its adder, never both.
    callbacks: Mutex<Vec<CfCallback<T>>>,
}

/// What [`run_coroutine_threadsafe`] returns: `concurrent.futures.Future`.
/// Any thread may block on it with a timeout, cancel it (which cancels
/// the task on the loop), or give it done callbacks
/// ([`add_done_callback`](ConcurrentFuture::add_done_callback)); a task on
/// a loop awaits it without blocking through [`wrap_future`].
pub struct ConcurrentFuture<T> {
    inner: Arc<CfInner<T>>,
}

impl<T> Clone for ConcurrentFuture<T> {
    fn clone(&self) -> Self {
        ConcurrentFuture {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Send + 'static> ConcurrentFuture<T> {
    fn set(&self, state: CfState<T>) {
        {
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(*s, CfState::Pending) {
                return;
            }
            *s = state;
            self.inner.done.notify_all();
        }
        self.invoke_callbacks();
    }

    /// `concurrent.futures.Future._invoke_callbacks`: each callback once,
    /// in the order added, with no lock held; a panicking one is reported
    /// on stderr (asyncio logs it) and the others still run.
    fn invoke_callbacks(&self) {
        let callbacks = std::mem::take(
            &mut *self
                .inner
                .callbacks
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for f in callbacks {
            self.run_callback(f);
        }
    }

    fn run_callback(&self, f: CfCallback<T>) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            eprintln!(
                "tulip: exception calling callback for {self:?}: {}",
                panic_message(&*payload)
            );
        }
    }

    /// `concurrent.futures.Future.add_done_callback(fn)`: `f` runs once the
    /// future is done, on the thread that completes (or cancels) it; at
    /// once, on this thread, if it is done already. Callbacks run in the
    /// order they were added; a panic in one is reported on stderr.
    pub fn add_done_callback(&self, f: impl FnOnce(&ConcurrentFuture<T>) + Send + 'static) {
        let mut callbacks = self
            .inner
            .callbacks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !self.done() {
            callbacks.push(Box::new(f));
            return;
        }
        drop(callbacks);
        self.run_callback(Box::new(f));
    }

    /// Blocks until done or until `timeout` passes (`Error::Timeout`; the
    /// task keeps running). `None` waits forever.
    fn wait(&self, timeout: Option<Duration>) -> Result<std::sync::MutexGuard<'_, CfState<T>>> {
        // A timeout too long for the clock (`Duration::MAX`) is no deadline:
        // `Instant + Duration` would overflow and panic.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        while matches!(*s, CfState::Pending) {
            match deadline {
                None => s = self.inner.done.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::Timeout);
                    }
                    s = self
                        .inner
                        .done
                        .wait_timeout(s, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        Ok(s)
    }

    /// Moves the result out: `Err(Timeout)` if not done within `timeout`,
    /// `Err(Cancelled)` if cancelled, the task's error if it failed; a
    /// second call gives `InvalidState`.
    pub fn take_result(&self, timeout: Option<Duration>) -> Result<T> {
        let mut s = self.wait(timeout)?;
        match std::mem::replace(
            &mut *s,
            CfState::Failed(Error::invalid_state(crate::futures::RESULT_TAKEN)),
        ) {
            CfState::Finished(v) => Ok(v),
            CfState::Failed(e) => {
                *s = CfState::Failed(e.clone());
                Err(e)
            }
            CfState::Cancelled => {
                *s = CfState::Cancelled;
                Err(Error::cancelled())
            }
            CfState::Pending => unreachable!("wait() returns once done"),
        }
    }

    /// Cancels: if still pending, marks it cancelled at once and asks the
    /// loop to cancel the task. As `concurrent.futures.Future.cancel()`,
    /// returns false if it has finished (with a result or an error), true
    /// if it is cancelled, by this call or an earlier one.
    pub fn cancel(&self) -> bool {
        {
            let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            match *s {
                CfState::Pending => {}
                CfState::Cancelled => return true,
                CfState::Finished(_) | CfState::Failed(_) => return false,
            }
            *s = CfState::Cancelled;
            self.inner.done.notify_all();
        }
        self.invoke_callbacks();
        let id = self.inner.id;
        let _ = self.inner.handle.call_soon_threadsafe_with_loop(move |lp| {
            let task = Executors::of(lp)
                .threadsafe_tasks
                .borrow()
                .get(&id)
                .cloned();
            if let Some(t) = task {
                t.cancel();
            }
        });
        true
    }

    /// True once done (result, error, or cancelled).
    pub fn done(&self) -> bool {
        let s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        !matches!(*s, CfState::Pending)
    }

    /// True if cancelled.
    pub fn cancelled(&self) -> bool {
        let s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        matches!(*s, CfState::Cancelled)
    }
}

impl<T: Clone + Send + 'static> ConcurrentFuture<T> {
    /// `concurrent.futures.Future.result(timeout)`: blocks until done or
    /// `timeout` passes (`Error::Timeout`, the task keeps running).
    pub fn result(&self, timeout: Option<Duration>) -> Result<T> {
        let s = self.wait(timeout)?;
        match &*s {
            CfState::Finished(v) => Ok(v.clone()),
            CfState::Failed(e) => Err(e.clone()),
            CfState::Cancelled => Err(Error::cancelled()),
            CfState::Pending => unreachable!("wait() returns once done"),
        }
    }
}

impl<T> fmt::Debug for ConcurrentFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.state.try_lock().as_deref() {
            Ok(CfState::Pending) => "pending",
            Ok(CfState::Finished(_)) => "finished",
            Ok(CfState::Failed(_)) => "failed",
            Ok(CfState::Cancelled) => "cancelled",
            Err(_) => "locked",
        };
        write!(f, "<ConcurrentFuture {state}>")
    }
}

/// The concurrent future as `run_coroutine_threadsafe`'s call and then its
/// task's done callback hold it. Dropped with the future still pending, it
/// fails it with [`Error::Closed`]: that happens when `close()` drops the
/// call before it ran, or destroys the task while it is pending. asyncio's
/// future stays pending then, and a thread blocked on `result()` without a
/// timeout waits for ever; the close is the one outcome it will ever get.
struct Unfinished<T: Send + 'static>(Option<ConcurrentFuture<T>>);

impl<T: Send + 'static> Unfinished<T> {
    fn get(&self) -> &ConcurrentFuture<T> {
        self.0.as_ref().expect("disarmed only when given up")
    }

    /// Leaves the future as it is when dropped.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl<T: Send + 'static> Drop for Unfinished<T> {
    fn drop(&mut self) {
        if let Some(cf) = self.0.take() {
            cf.set(CfState::Failed(Error::Closed));
        }
    }
}

/// What the done callback of a `run_coroutine_threadsafe` task holds: the
/// concurrent future, and the task whose outcome it gets (asyncio's
/// `_copy_future_state`), copied when it is dropped. The callback drops it
/// when it runs; `close()` drops it unrun when the task ended in the
/// iteration before (the callback waits in the ready queue): the coroutine
/// ran to completion, so its outcome must still reach the other thread, not
/// [`Error::Closed`], which says it may not have run. With the task still
/// pending (destroyed by `close()`), `dest` fails with `Closed`. Holding
/// the task from its own callback list is a cycle only while the task is
/// pending: its end or `close()` takes the callback out.
struct Chain<T: Send + 'static> {
    dest: Unfinished<T>,
    task: Task<T>,
}

impl<T: Send + 'static> Drop for Chain<T> {
    fn drop(&mut self) {
        if !self.task.done() {
            return;
        }
        let state = match self.task.take_result() {
            Ok(v) => CfState::Finished(v),
            Err(e) if e.is_cancelled() => CfState::Cancelled,
            Err(e) => CfState::Failed(e),
        };
        self.dest.get().set(state);
    }
}

/// asyncio's `run_coroutine_threadsafe(coro, loop)`, from any thread.
///
/// The loop is `!Send`, and so are most coroutines that use it; so instead
/// of a coroutine this takes a `Send` closure that *makes* the coroutine on
/// the loop thread. It is run as a task there; the returned
/// [`ConcurrentFuture`] gets its outcome. If the loop closes first (before
/// it ran the call, or with the task still pending), the outcome is
/// [`Error::Closed`]; asyncio's future would stay pending for ever.
///
/// ```
/// use std::time::Duration;
/// let lp = tulip::EventLoop::new().unwrap();
/// let handle = lp.handle();
/// let t = std::thread::spawn(move || {
///     let fut = tulip::run_coroutine_threadsafe(
///         || async { tulip::sleep(0.01).await?; Ok(3) },
///         &handle,
///     );
///     let r = fut.result(Some(Duration::from_secs(5)));
///     handle.stop().unwrap();
///     r
/// });
/// lp.run_forever().unwrap();
/// assert_eq!(t.join().unwrap().unwrap(), 3);
/// lp.close().unwrap();
/// ```
pub fn run_coroutine_threadsafe<T, F, M>(make: M, lp: &LoopHandle) -> ConcurrentFuture<T>
where
    T: Send + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
    M: FnOnce() -> F + Send + 'static,
{
    let cf = ConcurrentFuture {
        inner: Arc::new(CfInner {
            id: NEXT_CF_ID.fetch_add(1, Ordering::Relaxed),
            state: Mutex::new(CfState::Pending),
            done: Condvar::new(),
            handle: lp.clone(),
            callbacks: Mutex::new(Vec::new()),
        }),
    };
    let dest = Unfinished(Some(cf.clone()));
    let sent = lp.call_soon_threadsafe_with_loop(move |lp| {
        if dest.get().done() {
            return; // cancelled before it started
        }
        // asyncio's callback: whatever ensure_future(coro) raises is set on
        // the concurrent future, then re-raised (to the exception handler);
        // a KeyboardInterrupt is only re-raised.
        let coro = match catch_unwind(AssertUnwindSafe(make)) {
            Ok(coro) => coro,
            Err(payload) => {
                if payload.is::<Interrupt>() {
                    // The run ends, the loop is not closed: pending, as
                    // asyncio leaves it.
                    dest.disarm();
                } else {
                    let error = Error::Panic(panic_message(&*payload));
                    dest.get().set(CfState::Failed(error));
                }
                std::panic::resume_unwind(payload);
            }
        };
        let task = match lp.create_task(coro) {
            Ok(t) => t,
            Err(e) => return dest.get().set(CfState::Failed(e)),
        };
        let id = dest.get().inner.id;
        Executors::of(lp)
            .threadsafe_tasks
            .borrow_mut()
            .insert(id, task.as_ref());
        let lp2 = LoopRef::new(lp.clone());
        let chain = Chain {
            dest,
            task: task.clone(),
        };
        task.add_done_callback(move |_| {
            Executors::of(&lp2)
                .threadsafe_tasks
                .borrow_mut()
                .remove(&id);
            drop(chain); // copies the outcome
        });
    });
    if let Err(e) = sent {
        cf.set(CfState::Failed(e));
    }
    cf
}

/// asyncio's `wrap_future(future)`: a future of the running loop that gets
/// the outcome of `cf`, so that a task can await a [`ConcurrentFuture`],
/// say one of a coroutine sent to another loop's thread, without blocking
/// its own. As asyncio's `_chain_future` does both ways, the outcome comes
/// back through this loop's thread-safe queue, and cancelling the returned
/// future cancels `cf` (and the task behind it).
///
/// The returned future belongs to [`get_event_loop()`](crate::get_event_loop),
/// as asyncio's `wrap_future(future)` takes `events.get_event_loop()`: the
/// running loop, else this thread's loop (set by
/// [`set_event_loop`](crate::set_event_loop)), else a new loop, which
/// becomes this thread's. [`wrap_future_with_loop`] gives it to a loop of
/// your choosing (asyncio's `loop=`). Fails only if a new loop cannot be
/// made.
///
/// ```
/// use std::time::Duration;
/// // A second loop, on its own thread.
/// let (tx, rx) = std::sync::mpsc::channel();
/// let other = std::thread::spawn(move || {
///     let lp = tulip::EventLoop::new().unwrap();
///     tx.send(lp.handle()).unwrap();
///     lp.run_forever().unwrap();
///     lp.close().unwrap();
/// });
/// let there = rx.recv().unwrap();
/// let h = there.clone();
/// let got = tulip::run(async move {
///     let cf = tulip::run_coroutine_threadsafe(
///         || async { tulip::sleep(0.01).await?; Ok(6 * 7) },
///         &h,
///     );
///     tulip::wrap_future(&cf)?.await // this loop runs on meanwhile
/// });
/// assert_eq!(got.unwrap(), 42);
/// there.stop().unwrap();
/// other.join().unwrap();
/// ```
pub fn wrap_future<T>(cf: &ConcurrentFuture<T>) -> Result<Future<T>>
where
    T: Clone + Send + 'static,
{
    Ok(wrap_future_with_loop(cf, &get_event_loop()?))
}

/// asyncio's `wrap_future(future, loop=lp)`: [`wrap_future`] with a
/// future of `lp`, running or not. The outcome reaches it once `lp` runs
/// (it comes through `lp`'s thread-safe queue); on a closed `lp` it never
/// does.
///
/// ```
/// use std::time::Duration;
/// // A second loop, on its own thread.
/// let (tx, rx) = std::sync::mpsc::channel();
/// let other = std::thread::spawn(move || {
///     let lp = tulip::EventLoop::new().unwrap();
///     tx.send(lp.handle()).unwrap();
///     lp.run_forever().unwrap();
///     lp.close().unwrap();
/// });
/// let there = rx.recv().unwrap();
/// let cf = tulip::run_coroutine_threadsafe(|| async { Ok(6 * 7) }, &there);
/// let lp = tulip::EventLoop::new().unwrap();
/// let fut = tulip::wrap_future_with_loop(&cf, &lp); // lp is not running
/// assert_eq!(lp.run_until_complete(fut).unwrap(), 42);
/// there.stop().unwrap();
/// other.join().unwrap();
/// lp.close().unwrap();
/// ```
pub fn wrap_future_with_loop<T>(cf: &ConcurrentFuture<T>, lp: &EventLoop) -> Future<T>
where
    T: Clone + Send + 'static,
{
    let fut = lp.create_future::<T>();
    let key = park(lp, &fut);
    let source = cf.clone();
    fut.add_done_callback(move |f| {
        if f.cancelled() {
            source.cancel();
        }
    });
    let handle = lp.handle();
    cf.add_done_callback(move |cf| {
        complete_remote(&handle, key, cf.result(Some(Duration::ZERO)));
    });
    fut
}
