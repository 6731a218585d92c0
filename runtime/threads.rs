//! Threads: the default thread pool, `run_in_executor`, `to_thread`,
//! `run_coroutine_threadsafe` and `wrap_future`. Mirrors
//! `Lib/asyncio/threads.py`, `run_in_executor`/`shutdown_default_executor`
//! in `base_events.py`, `run_coroutine_threadsafe` in `tasks.py`,
//! `wrap_future`/`_chain_future` in `futures.py`, and the parts of
//! `concurrent.futures.ThreadPoolExecutor` they stand on.
//!
//! A loop future is `!Send`, so a worker thread cannot touch it. The loop
//! keeps each pending executor future in a per-loop table under a key; the
//! worker sends `(key, result)` back with `call_soon_threadsafe`, and the
//! callback, on the loop thread, takes the future out of the table and sets
//! it (asyncio's `_chain_future` + `_call_set_state`).
//!
//! # Invariants
//! - A [`ThreadPool`] starts a worker only when a job is submitted and no
//!   worker is idle, and never more than `max_workers` (asyncio's
//!   `_adjust_thread_count`). Jobs run in submission order.
//! - A job whose future was cancelled before a worker took it never runs.
//! - A panic in a job becomes the future's [`Error::Panic`] (a job given
//!   to [`ThreadPool::submit`] directly just ends); it never kills a worker.
//! - Workers hold the job queue, never the pool's handles: when the last
//!   [`ThreadPool`] handle is dropped, the queue disconnects and the
//!   workers exit once it is empty.
//! - `shutdown(true)` joins every worker but the calling thread: a job that
//!   shuts its own pool down returns, and its worker exits after it. Every
//!   such call waits, not only the first: one made while another is
//!   joining returns once every worker (but its own) has exited, as
//!   `ThreadPoolExecutor.shutdown(wait=True)` joins every thread each time.
//!   `submit` holds the sender's lock until its job has a worker (idle or
//!   started), as `submit` holds `_shutdown_lock`: a job it accepted is
//!   one that `shutdown(true)` waits for.
//! - A [`ConcurrentFuture`] ends: with its task's outcome, cancelled, or
//!   failed with [`Error::Closed`] if the loop closes before the task
//!   finished (the one exception: an [`Interrupt`] raised by the maker).
//!   Each of its done callbacks runs exactly once: on the thread that ends
//!   it, or on the adder's if it had ended already.
//! - [`wrap_future`] chains a concurrent future to a loop future both ways
//!   (asyncio's `_chain_future`): the outcome comes back through the
//!   loop's thread-safe queue, a cancel of the loop future cancels the
//!   concurrent one.
//! - After `shutdown_default_executor` (done by `run()`'s cleanup) the
//!   default pool takes no new work; `close()` shuts it down without waiting.
//!   The loop keeps the pool (asyncio keeps `_default_executor`), so every
//!   `shutdown_default_executor`, a second concurrent one too, waits for
//!   its threads.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use slab::Slab;

use crate::error::{panic_message, Error, Result};
use crate::event_loop::{get_event_loop, get_running_loop, EventLoop, Interrupt, LoopRef};
use crate::events::CancelTimer;
use crate::futures::Future;
use crate::tasks::{Task, TaskRef};
use crate::threadsafe::LoopHandle;

/// asyncio's `constants.THREAD_JOIN_TIMEOUT`: how long `run()`'s cleanup
/// waits for the default pool's threads (seconds).
pub const THREAD_JOIN_TIMEOUT: f64 = 300.0;

type Job = Box<dyn FnOnce() + Send>;

// ===== ThreadPool =====

/// What the handles share. Only [`ThreadPool`] handles hold it, never the
/// workers: when the last handle is dropped, the sender goes with it, the
/// channel disconnects, and the workers exit once the queue is empty
/// (asyncio's executor does the same when it is garbage-collected).
struct PoolInner {
    max_workers: usize,
    /// `None` once shut down.
    tx: Mutex<Option<Sender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    queue: Arc<WorkQueue>,
    name: String,
}

/// The workers' side of a pool.
struct WorkQueue {
    rx: Receiver<Job>,
    /// Workers waiting for a job (asyncio's `_idle_semaphore`).
    idle: AtomicUsize,
    /// Workers started and not exited yet. Only the first `shutdown(true)`
    /// gets the join handles; the others wait for this to drop to zero.
    live: Mutex<usize>,
    /// Notified each time a worker exits (`live` drops).
    exited: Condvar,
}

thread_local! {
    /// The queue of the pool whose worker this thread is (0 if none), so
    /// that `shutdown(true)` from one of its jobs does not wait for itself.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

/// Counts its worker out of `live` when the worker thread ends, however.
struct WorkerExit(Arc<WorkQueue>);

impl Drop for WorkerExit {
    fn drop(&mut self) {
        *self.0.live.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.exited.notify_all();
    }
}

/// A bounded pool of worker threads fed by a crossbeam channel:
/// `concurrent.futures.ThreadPoolExecutor`. Cloning gives another handle to
/// the same pool. When the last handle is dropped, the workers run what is
/// still queued and exit (call [`shutdown`](ThreadPool::shutdown) with
/// `wait` to wait for them).
///
/// ```
/// tulip::run(async {
///     let pool = tulip::ThreadPool::new(2)?;
///     let lp = tulip::get_running_loop()?;
///     let sum = lp.run_in_executor(Some(&pool), || (1..=100u64).sum::<u64>())?;
///     let name = lp.run_in_executor(Some(&pool), || std::thread::current().name().map(String::from))?;
///     assert_eq!(sum.await?, 5050);
///     assert!(name.await?.unwrap().starts_with("tulip-worker"));
///     assert!(pool.threads() <= pool.max_workers());
///     pool.shutdown(true); // executor.shutdown(wait=True)
///     assert!(pool.is_shutdown() && pool.submit(|| ()).is_err());
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    inner: Arc<PoolInner>,
}

impl ThreadPool {
    /// A pool of at most `max_workers` threads, started lazily.
    pub fn new(max_workers: usize) -> Result<ThreadPool> {
        ThreadPool::with_name(max_workers, "tulip-worker")
    }

    fn with_name(max_workers: usize, name: &str) -> Result<ThreadPool> {
        if max_workers == 0 {
            return Err(Error::invalid_argument(
                "max_workers must be greater than 0 (got 0): pass at least 1, or ThreadPool::default_size()",
            ));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok(ThreadPool {
            inner: Arc::new(PoolInner {
                max_workers,
                tx: Mutex::new(Some(tx)),
                workers: Mutex::new(Vec::new()),
                queue: Arc::new(WorkQueue {
                    rx,
                    idle: AtomicUsize::new(0),
                    live: Mutex::new(0),
                    exited: Condvar::new(),
                }),
                name: name.to_string(),
            }),
        })
    }

    /// ThreadPoolExecutor's default size: `min(32, cpus + 4)`.
    pub fn default_size() -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cpus + 4).min(32)
    }

    /// The most threads this pool runs.
    pub fn max_workers(&self) -> usize {
        self.inner.max_workers
    }

    /// How many threads were started so far.
    pub fn threads(&self) -> usize {
        self.inner.workers.lock().map(|w| w.len()).unwrap_or(0)
    }

    /// Queues `job`. Fails once the pool is shut down.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<()> {
        let p = &*self.inner;
        // Held until the job has a worker (ThreadPoolExecutor.submit holds
        // `_shutdown_lock` around its `_adjust_thread_count`): a shutdown
        // that comes after the send finds that worker and waits for it.
        let tx =
            p.tx.lock()
                .map_err(|_| Error::runtime(
                "thread pool lock poisoned: a thread panicked while holding it; use a new ThreadPool",
            ))?;
        let Some(sender) = tx.as_ref() else {
            return Err(Error::runtime(
                "cannot schedule new futures after shutdown: submit to a new ThreadPool",
            ));
        };
        sender.send(Box::new(job)).map_err(|_| {
            Error::runtime("cannot schedule new futures after shutdown: submit to a new ThreadPool")
        })?;
        // asyncio's _adjust_thread_count: an idle worker takes it, else start one.
        let took_idle = p
            .queue
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if took_idle {
            return Ok(());
        }
        let mut workers = p
            .workers
            .lock()
            .map_err(|_| Error::runtime(
                    "thread pool lock poisoned: a thread panicked while holding it; use a new ThreadPool",
                ))?;
        if workers.len() < p.max_workers {
            let queue = p.queue.clone();
            let name = format!("{}-{}", p.name, workers.len());
            // Counted before it starts, so that it cannot exit uncounted.
            *p.queue.live.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            let exit = WorkerExit(p.queue.clone());
            let handle = std::thread::Builder::new().name(name).spawn(move || {
                let _exit = exit;
                WORKER_OF.with(|w| w.set(Arc::as_ptr(&queue) as usize));
                // Until the pool is shut down or its last handle is gone.
                while let Ok(job) = queue.rx.recv() {
                    // concurrent.futures' `_WorkItem.run`: whatever the job
                    // raises stays with the job; the worker takes the next.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                    queue.idle.fetch_add(1, Ordering::AcqRel);
                }
            })?; // a thread that failed to start drops `exit`: uncounted
            workers.push(handle);
        }
        Ok(())
    }

    /// Stops taking work. Queued jobs still run; with `wait`, blocks until
    /// every worker has finished them and exited (but the calling thread,
    /// when a job of this pool calls it).
    pub fn shutdown(&self, wait: bool) {
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        if wait {
            let workers = self
                .inner
                .workers
                .lock()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default();
            let me = std::thread::current().id();
            for w in workers {
                // A job of this pool shutting it down: its own thread exits
                // once the job returns (joining it would be EDEADLK, which
                // std's join turns into a panic).
                if w.thread().id() != me {
                    let _ = w.join();
                }
            }
            // Another call may hold the handles and still be joining them
            // (or none were left to take): wait until every worker has
            // exited, the calling one aside, as each of concurrent.futures'
            // `shutdown(wait=True)` calls joins every thread.
            let q = &*self.inner.queue;
            let own = usize::from(WORKER_OF.with(Cell::get) == q as *const WorkQueue as usize);
            let mut live = q.live.lock().unwrap_or_else(|e| e.into_inner());
            while *live > own {
                live = q.exited.wait(live).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// True once `shutdown` was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.tx.lock().map(|t| t.is_none()).unwrap_or(true)
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("max_workers", &self.inner.max_workers)
            .field("threads", &self.threads())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

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
