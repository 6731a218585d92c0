//! The thread pool: [`ThreadPool`], a bounded pool of worker threads fed
//! by a crossbeam channel. Mirrors `concurrent.futures.ThreadPoolExecutor`
//! (`Lib/concurrent/futures/thread.py`: `submit`, `_adjust_thread_count`,
//! `_worker`, `shutdown`), which asyncio's `run_in_executor` stands on.
//!
//! # Invariants
//! - A [`ThreadPool`] starts a worker only when a job is submitted and no
//!   worker is idle, and never more than `max_workers` (asyncio's
//!   `_adjust_thread_count`). Jobs run in submission order.
//! - A panic in a job never kills a worker: the job just ends (in
//!   `run_in_executor`, the job itself turns it into the future's
//!   [`Error::Panic`]).
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

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};

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

    pub(super) fn with_name(max_workers: usize, name: &str) -> Result<ThreadPool> {
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
