//! Threads: the loop's side of its thread pools, `run_in_executor` and
//! `to_thread`. Mirrors `Lib/asyncio/threads.py` and `run_in_executor`,
//! `set_default_executor`, `shutdown_default_executor` in
//! `base_events.py`.
//!
//! A loop future is `!Send`, so a worker thread cannot touch it. The loop
//! keeps each pending executor future in a per-loop table under a key; the
//! worker sends `(key, result)` back with `call_soon_threadsafe`, and the
//! callback, on the loop thread, takes the future out of the table and sets
//! it (asyncio's `_chain_future` + `_call_set_state`). [`wrap_future`]
//! brings a concurrent future's outcome back the same way.
//!
//! The rest is split by concept into the child modules below. Their public
//! names are re-exported here, so every path stays `tulip::threads::NAME`.
//!
//! | file | holds | Python |
//! |---|---|---|
//! | `threads/pool.rs` | [`ThreadPool`] | `concurrent.futures.ThreadPoolExecutor` (`Lib/concurrent/futures/thread.py`) |
//! | `threads/concurrent_future.rs` | [`ConcurrentFuture`], [`run_coroutine_threadsafe`], [`wrap_future`], [`wrap_future_with_loop`] | `concurrent.futures.Future`, `run_coroutine_threadsafe` in `tasks.py`, `wrap_future`/`_chain_future` in `futures.py` |
//!
//! # Invariants
//! - A job whose future was cancelled before a worker took it never runs.
//! - A panic in a job of `run_in_executor` (or `to_thread`) becomes the
//!   future's [`Error::Panic`].
//! - After `shutdown_default_executor` (done by `run()`'s cleanup) the
//!   default pool takes no new work; `close()` shuts it down without waiting.
//!   The loop keeps the pool (asyncio keeps `_default_executor`), so every
//!   `shutdown_default_executor`, a second concurrent one too, waits for
//!   its threads.

mod concurrent_future;
mod pool;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use slab::Slab;

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{get_running_loop, EventLoop};
use crate::events::CancelTimer;
use crate::futures::Future;
use crate::tasks::TaskRef;
use crate::threadsafe::LoopHandle;

pub use concurrent_future::{
    run_coroutine_threadsafe, wrap_future, wrap_future_with_loop, ConcurrentFuture,
};
pub use pool::ThreadPool;

/// asyncio's `constants.THREAD_JOIN_TIMEOUT`: how long `run()`'s cleanup
/// waits for the default pool's threads (seconds).
pub const THREAD_JOIN_TIMEOUT: f64 = 300.0;

// ===== loop-side state =====

/// Per-loop executor state (a loop extension).
struct Executors {
    default: RefCell<Option<ThreadPool>>,
    shutdown_called: Cell<bool>,
    /// Futures waiting for a result from another thread, by key.
    pending: RefCell<Slab<Box<dyn Any>>>,
    /// Tasks started by `run_coroutine_threadsafe`, by concurrent-future id.
    threadsafe_tasks: RefCell<std::collections::HashMap<u64, TaskRef>>,
}

impl Executors {
    fn of(lp: &EventLoop) -> Rc<Executors> {
        lp.extension(|| {
            let weak = lp.downgrade();
            // asyncio's close(): executor.shutdown(wait=False).
            lp.add_close_hook(move || {
                if let Some(inner) = weak.upgrade() {
                    let lp = EventLoop { inner };
                    let ex = Executors::of(&lp);
                    ex.shutdown_called.set(true);
                    let pool = ex.default.borrow_mut().take();
                    if let Some(pool) = pool {
                        pool.shutdown(false);
                    }
                }
            });
            Executors {
                default: RefCell::new(None),
                shutdown_called: Cell::new(false),
                pending: RefCell::new(Slab::new()),
                threadsafe_tasks: RefCell::new(std::collections::HashMap::new()),
            }
        })
    }

    fn default_pool(&self) -> Result<ThreadPool> {
        if self.shutdown_called.get() {
            return Err(Error::runtime(
                "Executor shutdown has been called: the loop's default executor is shut down; \
                 pass a ThreadPool of your own to run_in_executor",
            ));
        }
        let mut slot = self.default.borrow_mut();
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        let pool = ThreadPool::with_name(ThreadPool::default_size(), "tulip-default-executor")?;
        *slot = Some(pool.clone());
        Ok(pool)
    }
}

/// True if the loop's default pool was created (asyncio's
/// `_default_executor is not None`), shut down or not: a shutdown of a
/// pool already joined returns at once.
pub(crate) fn has_default_executor(lp: &EventLoop) -> bool {
    Executors::of(lp).default.borrow().is_some()
}

/// Parks `fut` in the loop's table; returns its key.
fn park<T: 'static>(lp: &EventLoop, fut: &Future<T>) -> usize {
    Executors::of(lp)
        .pending
        .borrow_mut()
        .insert(Box::new(fut.clone()))
}

/// Sends `res` to the future parked under `key`, from any thread.
fn complete_remote<T: Send + 'static>(handle: &LoopHandle, key: usize, res: Result<T>) {
    let _ = handle.call_soon_threadsafe_with_loop(move |lp| {
        let parked = Executors::of(lp).pending.borrow_mut().try_remove(key);
        let Some(fut) = parked.and_then(|b| b.downcast::<Future<T>>().ok()) else {
            return;
        };
        if fut.done() {
            return; // cancelled meanwhile
        }
        match res {
            Ok(v) => drop(fut.set_result(v)),
            Err(e) if e.is_cancelled() => drop(fut.cancel()),
            Err(e) => drop(fut.set_exception(e)),
        }
    });
}

impl EventLoop {
    /// asyncio's `loop.run_in_executor(executor, func)`: runs `f` on a pool
    /// thread (the loop's default pool if `executor` is `None`) and returns
    /// a loop future for its result. A panic in `f` becomes the future's
    /// error. Cancelling the future before a worker takes the job skips it.
    ///
    /// Awaiting the future needs `T: Clone`; otherwise use
    /// [`to_thread`], or `wait_done()` then `take_result()`.
    ///
    /// ```
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let fut = lp.run_in_executor(None, || 6 * 7)?;
    ///     assert_eq!(fut.await?, 42);
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn run_in_executor<T, F>(&self, executor: Option<&ThreadPool>, f: F) -> Result<Future<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.check_closed()?;
        let pool = match executor {
            Some(p) => p.clone(),
            None => Executors::of(self).default_pool()?,
        };
        let fut = self.create_future::<T>();
        let key = park(self, &fut);
        let skip = Arc::new(AtomicBool::new(false));
        let skip2 = skip.clone();
        fut.add_done_callback(move |f| {
            if f.cancelled() {
                skip2.store(true, Ordering::Release);
            }
        });
        let handle = self.handle();
        let submitted = pool.submit(move || {
            if skip.load(Ordering::Acquire) {
                return complete_remote::<T>(&handle, key, Err(Error::cancelled()));
            }
            let res = catch_unwind(AssertUnwindSafe(f))
                .map_err(|payload| Error::Panic(panic_message(&*payload)));
            complete_remote(&handle, key, res);
        });
        if let Err(e) = submitted {
            Executors::of(self).pending.borrow_mut().try_remove(key);
            return Err(e);
        }
        Ok(fut)
    }

    /// Replaces the default pool (asyncio's `set_default_executor`).
    ///
    /// *Deviation:* asyncio accepts the call on a closed loop, or after
    /// `shutdown_default_executor`, and the pool is then never used; tulip
    /// refuses it (`Closed`, or a `Runtime` error) so that the mistake shows.
    pub fn set_default_executor(&self, pool: ThreadPool) -> Result<()> {
        self.check_closed()?;
        let ex = Executors::of(self);
        if ex.shutdown_called.get() {
            return Err(Error::runtime(
                "Executor shutdown has been called: the default executor cannot be set after \
                 shutdown_default_executor(); pass the pool to run_in_executor instead",
            ));
        }
        *ex.default.borrow_mut() = Some(pool);
        Ok(())
    }

    /// asyncio's `shutdown_default_executor(timeout)`: refuses new work,
    /// then waits (in a helper thread, so the loop keeps running) until the
    /// default pool's threads have finished. After `timeout` seconds it
    /// gives up waiting with a warning, as asyncio does. A second call,
    /// made while the first waits, waits too.
    pub async fn shutdown_default_executor(&self, timeout: Option<f64>) -> Result<()> {
        let ex = Executors::of(self);
        ex.shutdown_called.set(true);
        // Kept, as asyncio keeps `_default_executor`: a concurrent call
        // must find it, to wait for the same threads.
        let Some(pool) = ex.default.borrow().clone() else {
            return Ok(());
        };
        let fut = self.create_future::<()>();
        let key = park(self, &fut);
        let handle = self.handle();
        let joiner = std::thread::Builder::new()
            .name("tulip-executor-shutdown".into())
            .spawn(move || {
                pool.shutdown(true);
                complete_remote(&handle, key, Ok(()));
            })?;
        let timer = match timeout {
            Some(t) => {
                let f = fut.clone();
                Some(self.call_later(t, move || {
                    let _ = f.set_exception(Error::Timeout);
                })?)
            }
            None => None,
        };
        // Cancelled however the wait ends, a drop included (asyncio's
        // `async with timeout(timeout)` exits then too): a timer left behind
        // would fail the join's future later with a Timeout nobody takes.
        let timer = CancelTimer(timer);
        let res = fut.clone().await;
        drop(timer);
        match res {
            Err(Error::Timeout) => {
                eprintln!(
                    "tulip: the executor did not finish joining its threads within {} seconds",
                    timeout.unwrap_or_default()
                );
                Ok(())
            }
            Err(e) => Err(e),
            Ok(()) => {
                let _ = joiner.join();
                Ok(())
            }
        }
    }
}

/// asyncio's `to_thread(func)`: runs `f` in the loop's default pool and
/// returns its result (a panic becomes [`Error::Panic`]).
///
/// *Deviation:* asyncio runs `func` in `contextvars.copy_context()`, so the
/// thread sees the caller's context variables. tulip's context values are
/// `Rc`s (`!Send`) and cannot cross threads: in `f`, every
/// [`ContextVar`](crate::ContextVar) has its default and `set` fails (there
/// is no context there, as outside a task). Read the values you need
/// before the call and move them into `f`.
///
/// ```
/// tulip::run(async {
///     let s = tulip::to_thread(|| std::thread::current().name().map(String::from)).await?;
///     assert!(s.unwrap().starts_with("tulip-default-executor"));
///     Ok(())
/// }).unwrap();
/// ```
pub async fn to_thread<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let fut = get_running_loop()?.run_in_executor(None, f)?;
    // A cancel that comes after the job's result is raised here, as at
    // asyncio's `await loop.run_in_executor(...)`.
    fut.take_when_done().await
}
