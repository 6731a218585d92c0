//! Runners: `run()` and `Runner`. Mirrors `Lib/asyncio/runners.py`.
//!
//! `run(main)` is asyncio's `asyncio.run`: a fresh loop; run `main` as a task
//! until it completes; cancel the tasks left over and wait for them; shut
//! down the default executor; close the loop. `Runner` does the same but
//! keeps its loop across several `run()` calls, like `asyncio.Runner`.
//!
//! ## Ctrl-C (asyncio's `Runner._on_sigint`)
//! On the main thread, when SIGINT has its default disposition, `run()`
//! installs a SIGINT handler for the duration of the call (through the
//! loop's [`add_signal_handler`](EventLoop::add_signal_handler), so it runs
//! on the loop even while it blocks in poll). The first Ctrl-C cancels the
//! main task; if the task ends cancelled and `uncancel()` brings its count
//! back to zero, `run()` returns [`Error::Interrupted`] (a cancel the
//! program added stays `Cancelled`, as in asyncio's `Runner.run`). A second
//! Ctrl-C while the task is still unwinding interrupts the loop at once
//! (asyncio raises `KeyboardInterrupt` from the handler; tulip calls
//! [`interrupt`]). Either way the cleanup then cancels and awaits the other
//! tasks, shuts down the default thread pool and closes the loop (R2).
//!
//! *Deviations.* asyncio's SIGINT handler is a Python signal handler: it
//! runs between two bytecodes, even inside a callback that never returns,
//! so there the second Ctrl-C raises `KeyboardInterrupt` inside the stuck
//! code. tulip's runs on the loop, as a callback: a callback or task step
//! that never returns to the loop sees neither Ctrl-C (each only leaves a
//! byte in the wake-up pipe), and such a program is stopped with SIGTERM
//! or SIGQUIT, whose default dispositions end it. Once `run()` has
//! returned, SIGINT has its default disposition, which in a Rust program
//! ends the process: a Ctrl-C during `close()`'s cleanup does that, where
//! asyncio's `default_int_handler` raises `KeyboardInterrupt` out of
//! `close()`. And `close()` has no `shutdown_asyncgens()` step: Rust has no
//! async generators; a stream held by a task is dropped, its cleanup run,
//! when `close()` cancels that task.
//!
//! # Invariants
//! - A runner's loop is created lazily, on first use, by its loop factory;
//!   its context is copied from the caller's then, and every `run()`'s
//!   main task runs in that one context (asyncio's `Runner._context`),
//!   unless `run_with_context` names another.
//! - `close()` cancels and awaits every task pending when it starts, before
//!   the loop closes (so none of them gets a "Task was destroyed but it is
//!   pending!" report), and errors found then go to the exception handler
//!   ("unhandled exception during tulip::run() shutdown"). As asyncio's
//!   `_cancel_all_tasks`, it looks at the task list once: a task started
//!   by another's cancellation is not awaited, and is reported when the
//!   loop closes.
//! - `run()` cannot be called from a running loop.
//! - The SIGINT handler that `run()` installs is removed before `run()`
//!   returns, unless someone replaced it meanwhile; SIGINT then has its
//!   default disposition again. A Ctrl-C that came before the removal
//!   counts for that run (even if the loop had not read it yet), never for
//!   the next one.

use std::cell::Cell;
use std::fmt;
use std::future::Future as StdFuture;
use std::rc::Rc;

use crate::contextvars::{copy_context, Context};
use crate::error::{Error, Result};
use crate::event_loop::{interrupt, set_event_loop, try_running_loop, EventLoop, ExceptionContext};
use crate::signals::has_default_disposition;
use crate::tasks::{TaskOptions, TaskRef};
use crate::threads::{has_default_executor, THREAD_JOIN_TIMEOUT};

type LoopFactory = Box<dyn FnMut() -> Result<EventLoop>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunnerState {
    Created,
    Initialized,
    Closed,
}

/// asyncio's `Runner`: runs several top-level futures on one loop.
///
/// ```
/// let mut runner = tulip::Runner::new();
/// assert_eq!(runner.run(async { Ok(1) }).unwrap(), 1);
/// assert_eq!(runner.run(async { Ok(2) }).unwrap(), 2);
/// let lp = runner.get_loop().unwrap();
/// runner.close();
/// assert!(lp.is_closed());
/// ```
pub struct Runner {
    state: RunnerState,
    debug: Option<bool>,
    factory: Option<LoopFactory>,
    lp: Option<EventLoop>,
    /// asyncio's `Runner._context`: a copy of the caller's context, taken
    /// at the lazy init; every `run()`'s main task runs in it, so a value
    /// one run sets is seen by the next.
    context: Option<Context>,
}

impl Default for Runner {
    fn default() -> Self {
        Runner::new()
    }
}

impl Runner {
    /// A runner whose loop is `EventLoop::new()`.
    pub fn new() -> Runner {
        Runner {
            state: RunnerState::Created,
            debug: None,
            factory: None,
            lp: None,
            context: None,
        }
    }

    /// A runner whose loop comes from `factory` (asyncio's `loop_factory`).
    pub fn with_loop_factory(factory: impl FnMut() -> Result<EventLoop> + 'static) -> Runner {
        let mut runner = Runner::new();
        runner.factory = Some(Box::new(factory));
        runner
    }

    /// Sets the loop's debug mode (asyncio's `debug=`).
    pub fn debug(mut self, on: bool) -> Runner {
        self.debug = Some(on);
        self
    }

    fn lazy_init(&mut self) -> Result<EventLoop> {
        match self.state {
            RunnerState::Closed => {
                return Err(Error::runtime("the runner is closed: create a new Runner"))
            }
            RunnerState::Initialized => {
                return Ok(self.lp.clone().expect("initialized runner has a loop"))
            }
            RunnerState::Created => {}
        }
        let lp = match &mut self.factory {
            Some(f) => f()?,
            None => {
                let lp = EventLoop::new()?;
                set_event_loop(Some(&lp));
                lp
            }
        };
        if let Some(d) = self.debug {
            lp.set_debug(d);
        }
        self.lp = Some(lp.clone());
        self.context = Some(copy_context());
        self.state = RunnerState::Initialized;
        Ok(lp)
    }

    /// The runner's loop, created if needed.
    pub fn get_loop(&mut self) -> Result<EventLoop> {
        self.lazy_init()
    }

    /// Runs `fut` as a task on the runner's loop until it completes and
    /// returns its result (asyncio's `Runner.run`).
    pub fn run<T, F>(&mut self, fut: F) -> Result<T>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        self.run_in(fut, None)
    }

    /// [`run`](Runner::run) with the main task in `context` instead of the
    /// runner's own (asyncio's `Runner.run(coro, context=ctx)`). The task
    /// runs in `context` itself, not in a copy: what it sets is seen in
    /// `context` afterwards, and not by the runner's later `run()`s.
    ///
    /// ```
    /// use tulip::{Context, ContextVar, Runner};
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// let mut runner = Runner::new();
    /// let ctx = Context::new();
    /// runner
    ///     .run_with_context(async { USER.set("ann").map(drop) }, ctx.clone())
    ///     .unwrap();
    /// assert_eq!(ctx.get(&USER), Some("ann"));
    /// assert_eq!(runner.run(async { Ok(USER.get()) }).unwrap(), None);
    /// ```
    pub fn run_with_context<T, F>(&mut self, fut: F, context: Context) -> Result<T>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        self.run_in(fut, Some(context))
    }

    /// `run`, in `context` if given, else in the runner's context.
    fn run_in<T, F>(&mut self, fut: F, context: Option<Context>) -> Result<T>
    where
        T: 'static,
        F: StdFuture<Output = Result<T>> + 'static,
    {
        check_no_running_loop("Runner::run()")?;
        let lp = self.lazy_init()?;
        lp.check_closed()?;
        if lp.is_running() {
            return Err(Error::runtime(
                "this event loop is already running: from inside it, await the work or schedule it with create_task",
            ));
        }
        let task = lp.create_task_with(
            fut,
            TaskOptions {
                // asyncio: `if context is None: context = self._context`.
                context: context.or_else(|| self.context.clone()),
                ..TaskOptions::default()
            },
        )?;
        // asyncio: install the SIGINT handler only on the main thread, and
        // only if nobody else handles SIGINT.
        let interrupts = Rc::new(Cell::new(0u32));
        let sigint = if crate::sys::is_main_thread()
            && lp.signal_handler_id(libc::SIGINT).is_none()
            && has_default_disposition(libc::SIGINT)
        {
            let main_task = task.as_ref();
            let count = interrupts.clone();
            lp.add_signal_handler_id(libc::SIGINT, move || on_sigint(&count, &main_task))
                .ok()
        } else {
            None
        };
        let mut res = lp.run_task_until_complete(&task);
        if let Some(id) = sigint {
            if lp.signal_handler_id(libc::SIGINT) == Some(id) {
                let _ = lp.remove_signal_handler(libc::SIGINT);
                // A Ctrl-C that came in the run's last iteration is still in
                // the wake-up pipe: the loop stopped before it polled again.
                // asyncio's handler (a Python signal handler) would have run
                // before run() returned; left in the pipe, it would go to
                // the next run's handler and cancel *its* main task.
                for _ in 0..lp.take_pending_signals(libc::SIGINT) {
                    interrupts.set(interrupts.get() + 1);
                    if interrupts.get() == 1 && !task.done() {
                        task.cancel();
                    } else if !matches!(res, Err(Error::Interrupted)) {
                        res = Err(Error::Interrupted); // on_sigint's interrupt()
                    }
                }
            }
        }
        match res {
            Err(e) if e.is_cancelled() && interrupts.get() > 0 && task.uncancel() == 0 => {
                Err(Error::Interrupted)
            }
            other => other,
        }
    }

    /// Cancels the remaining tasks, waits for them, and closes the loop.
    /// Closing twice is a no-op, and so is closing a runner that has no
    /// loop yet: it stays usable (asyncio's `Runner.close`).
    pub fn close(&mut self) {
        if self.state != RunnerState::Initialized {
            return;
        }
        let lp = self.lp.take().expect("initialized runner has a loop");
        self.context = None;
        cancel_all_tasks(&lp);
        if has_default_executor(&lp) {
            let lp2 = lp.clone();
            let _ = lp.run_until_complete(async move {
                lp2.shutdown_default_executor(Some(THREAD_JOIN_TIMEOUT))
                    .await
            });
        }
        if self.factory.is_none() {
            set_event_loop(None);
        }
        let _ = lp.close();
        self.state = RunnerState::Closed;
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("state", &self.state)
            .field("debug", &self.debug)
            .field("loop", &self.lp)
            .finish()
    }
}

/// asyncio's `Runner._on_sigint`: the first Ctrl-C cancels the main task,
/// a later one interrupts the loop.
fn on_sigint(count: &Cell<u32>, main_task: &TaskRef) {
    count.set(count.get() + 1);
    if count.get() == 1 && !main_task.done() {
        main_task.cancel();
        return;
    }
    interrupt();
}

/// asyncio's `runners._cancel_all_tasks`.
fn cancel_all_tasks(lp: &EventLoop) {
    let to_cancel = lp.all_tasks();
    if to_cancel.is_empty() {
        return;
    }
    for t in &to_cancel {
        t.cancel();
    }
    let waiting = to_cancel.clone();
    let _ = lp.run_until_complete(async move {
        for t in &waiting {
            // The shutdown task is never cancelled: the wait only ends when t does.
            let _ = t.wait_done().await;
        }
        Ok(())
    });
    for t in &to_cancel {
        if let Some(err) = t.error() {
            // No run to end any more, and `close()` cannot fail (asyncio
            // re-raises a KeyboardInterrupt of the handler out of `run()`).
            lp.report_ignoring_interrupt(&ExceptionContext {
                message: "unhandled exception during tulip::run() shutdown".into(),
                error: Some(err),
                task: Some(format!("{t:?}")),
                ..Default::default()
            });
        }
    }
}

/// asyncio's `asyncio.run(main)`: runs `main` on a new loop, then cancels
/// what is left, and closes the loop.
///
/// ```
/// let answer = tulip::run(async {
///     tulip::sleep(0.001).await?;
///     Ok(42)
/// }).unwrap();
/// assert_eq!(answer, 42);
/// ```
pub fn run<T, F>(main: F) -> Result<T>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    check_no_running_loop("tulip::run()")?;
    let mut runner = Runner::new();
    let out = runner.run(main);
    runner.close();
    out
}

/// asyncio's `run()` and `Runner.run()` refuse to start inside a running
/// loop, naming themselves, before they make anything (a runner, a loop).
fn check_no_running_loop(what: &str) -> Result<()> {
    if try_running_loop().is_some() {
        return Err(Error::runtime(format!(
            "{what} cannot be called from a running event loop: await the future there instead"
        )));
    }
    Ok(())
}

/// `run()` with a loop factory (asyncio's `run(main, loop_factory=...)`).
pub fn run_with_factory<T, F>(
    main: F,
    factory: impl FnMut() -> Result<EventLoop> + 'static,
) -> Result<T>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    check_no_running_loop("tulip::run_with_factory()")?;
    let mut runner = Runner::with_loop_factory(factory);
    let out = runner.run(main);
    runner.close();
    out
}
