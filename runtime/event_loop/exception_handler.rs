//! The loop's error reporting and debug mode. Mirrors `BaseEventLoop`'s
//! `set_exception_handler`, `get_exception_handler`,
//! `default_exception_handler`, `call_exception_handler`, `set_debug`,
//! `get_debug` and `slow_callback_duration` in
//! `Lib/asyncio/base_events.py`. [`Interrupt`] plays `KeyboardInterrupt`,
//! the one exception asyncio lets through its callbacks' `except`.
//!
//! # Invariants
//! - Reporting never unwinds: a custom exception handler that panics falls
//!   back to the default one, and a default one that panics (printing an
//!   error whose `Display` panics) is reported as such on stderr.
//! - An [`Interrupt`] is not reported while a run can end: from a
//!   callback, or from the custom handler a callback's panic went to, it
//!   ends the run with [`Error::Interrupted`] (L7); from a custom handler
//!   that `call_exception_handler` called, it unwinds on to the caller,
//!   unless a panic is unwinding already. Reports made by a destructor or
//!   by `close()`, where no run can end, report it as any other panic of
//!   the handler.
//! - A handler is called with no borrow of the loop held: it is cloned out
//!   of its cell first, so it may set another handler or report again.
//! - Only debug mode times callbacks and task steps; outside it, the
//!   callbacks' path reads one `Cell` and takes no clock reading.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use super::EventLoop;
use crate::error::{callback_error, panic_message, Error};
use crate::Result;

/// Default of [`EventLoop::set_slow_callback_duration`] (asyncio: 0.1 s).
pub const DEFAULT_SLOW_CALLBACK_DURATION: f64 = 0.1;

/// The panic payload that plays asyncio's `KeyboardInterrupt`: a callback
/// that unwinds with it (see [`interrupt`]) ends `run_forever` with
/// [`Error::Interrupted`] instead of being reported.
#[derive(Debug, Clone, Copy)]
pub struct Interrupt;

/// Aborts the current `run_*` call like a `KeyboardInterrupt` raised in a
/// callback. Call it only from a callback or task running on the loop.
pub fn interrupt() -> ! {
    std::panic::resume_unwind(Box::new(Interrupt))
}

/// What the exception handler is told: asyncio's context dict.
#[derive(Clone, Debug, Default)]
pub struct ExceptionContext {
    /// What happened, for people.
    pub message: String,
    /// The error, if there is one.
    pub error: Option<Error>,
    /// The handle whose callback failed, described.
    pub handle: Option<String>,
    /// The task concerned, described.
    pub task: Option<String>,
    /// The future concerned, described.
    pub future: Option<String>,
    /// The listening socket concerned (a server's accept error), described.
    pub socket: Option<String>,
    /// The transport concerned (a protocol callback that failed on it, a
    /// connection's handler that failed), described as its `Debug` shows
    /// it: asyncio's `transport` key, which says which connection it was.
    pub transport: Option<String>,
}

/// What the default handler prints (asyncio's `default_exception_handler`).
impl fmt::Display for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // asyncio: `if not message: message = 'Unhandled exception in event loop'`.
        if self.message.is_empty() {
            f.write_str("Unhandled exception in event loop")?;
        } else {
            f.write_str(&self.message)?;
        }
        if let Some(h) = &self.handle {
            write!(f, "\nhandle: {h}")?;
        }
        if let Some(t) = &self.task {
            write!(f, "\ntask: {t}")?;
        }
        if let Some(fu) = &self.future {
            write!(f, "\nfuture: {fu}")?;
        }
        if let Some(s) = &self.socket {
            write!(f, "\nsocket: {s}")?;
        }
        if let Some(t) = &self.transport {
            write!(f, "\ntransport: {t}")?;
        }
        if let Some(e) = &self.error {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}

/// A custom exception handler as the loop keeps it: what
/// [`EventLoop::get_exception_handler`] hands back, callable as
/// `handler(&lp, &ctx)`.
pub type ExceptionHandler = Rc<dyn Fn(&EventLoop, &ExceptionContext)>;

impl EventLoop {
    // ===== errors =====

    /// A callback panicked: [`Interrupt`] goes on up, anything else to the
    /// exception handler (L6). Out of line: the callbacks' path stays small.
    #[cold]
    #[inline(never)]
    pub(super) fn callback_panicked(
        &self,
        payload: Box<dyn std::any::Any + Send>,
        name: String,
        describe: String,
    ) -> Result<()> {
        if payload.is::<Interrupt>() {
            return Err(Error::Interrupted);
        }
        // The handler runs outside the callback's context, as asyncio's
        // runs outside `Handle._context.run`.
        let seq = &self.inner.entry_seq;
        seq.set(seq.get().wrapping_add(1));
        let context = ExceptionContext {
            message: format!("Exception in callback {name}"),
            error: Some(callback_error(&*payload)),
            handle: Some(describe),
            ..Default::default()
        };
        if let Err(payload) = self.try_exception_handler(&context) {
            // asyncio's call_exception_handler re-raises a KeyboardInterrupt
            // from the handler: it ends the run as the callback's own would.
            if payload.is::<Interrupt>() {
                return Err(Error::Interrupted);
            }
            self.exception_handler_panicked(payload, &context);
        }
        Ok(())
    }

    /// Sets the exception handler (asyncio's `set_exception_handler`);
    /// `None` restores the default one, which prints to stderr. A bare
    /// `None` needs its type spelled out:
    /// `lp.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>)`.
    pub fn set_exception_handler<F>(&self, handler: Option<F>)
    where
        F: Fn(&EventLoop, &ExceptionContext) + 'static,
    {
        *self.inner.exception_handler.borrow_mut() =
            handler.map(|h| Rc::new(h) as ExceptionHandler);
    }

    /// The custom exception handler, or `None` if the default one is in
    /// use (asyncio's `get_exception_handler`). It is the same handler
    /// `set_exception_handler` was given (a clone of its `Rc`), so a new
    /// handler can wrap it and pass on what it does not handle itself.
    /// After [`close`](EventLoop::close) it is `None`: close lets the
    /// handler go (see there).
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::rc::Rc;
    /// use tulip::{EventLoop, ExceptionContext};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// assert!(lp.get_exception_handler().is_none());
    /// let seen = Rc::new(Cell::new(0));
    /// let s = seen.clone();
    /// lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
    ///     s.set(s.get() + 1)
    /// }));
    /// // Chain: count the report here, then hand it to the previous handler.
    /// let previous = lp.get_exception_handler().unwrap();
    /// let mine = Rc::new(Cell::new(0));
    /// let m = mine.clone();
    /// lp.set_exception_handler(Some(move |lp: &EventLoop, ctx: &ExceptionContext| {
    ///     m.set(m.get() + 1);
    ///     previous(lp, ctx);
    /// }));
    /// lp.call_exception_handler(&ExceptionContext {
    ///     message: "something went wrong".into(),
    ///     ..Default::default()
    /// });
    /// assert_eq!((mine.get(), seen.get()), (1, 1));
    /// ```
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.inner.exception_handler.borrow().clone()
    }

    /// Reports an error that has nobody to go to (asyncio's
    /// `call_exception_handler`). A panicking handler falls back to the
    /// default one; an [`Interrupt`] from the handler goes on up, as asyncio
    /// re-raises `KeyboardInterrupt` (`except (SystemExit,
    /// KeyboardInterrupt): raise`): the callback or task that reported the
    /// error stops there and the run ends with [`Error::Interrupted`].
    pub fn call_exception_handler(&self, context: &ExceptionContext) {
        if let Err(payload) = self.try_exception_handler(context) {
            // Not while unwinding already: a second panic would abort.
            if payload.is::<Interrupt>() && !std::thread::panicking() {
                std::panic::resume_unwind(payload);
            }
            self.exception_handler_panicked(payload, context);
        }
    }

    /// `call_exception_handler` for reports made by a destructor or by
    /// `close()` (asyncio makes them from `__del__`, where whatever the
    /// handler raises, `KeyboardInterrupt` too, is "ignored"): there is no
    /// run to end, so an [`Interrupt`] from the handler is reported like any
    /// other panic of the handler instead of unwinding out of a `Drop`.
    pub(crate) fn report_ignoring_interrupt(&self, context: &ExceptionContext) {
        if let Err(payload) = self.try_exception_handler(context) {
            self.exception_handler_panicked(payload, context);
        }
    }

    /// Calls the handler (or the default one); `Err` with the payload if a
    /// custom handler panicked.
    fn try_exception_handler(&self, context: &ExceptionContext) -> std::thread::Result<()> {
        let handler = self.inner.exception_handler.borrow().clone();
        match handler {
            None => {
                self.guarded_default_handler(context);
                Ok(())
            }
            Some(h) => catch_unwind(AssertUnwindSafe(|| h(self, context))),
        }
    }

    /// The default handler, as `call_exception_handler` calls it: printing
    /// the context runs the user's `Display` of an [`Error::Other`], which
    /// may panic. asyncio's "second protection layer" logs 'Exception in
    /// default exception handler' instead of raising: a report never
    /// unwinds into the code that made it (a task's `Drop`, `run_once`).
    fn guarded_default_handler(&self, context: &ExceptionContext) {
        if let Err(payload) =
            catch_unwind(AssertUnwindSafe(|| self.default_exception_handler(context)))
        {
            eprintln!(
                "tulip: Exception in default exception handler\nerror: {}",
                panic_message(&*payload)
            );
        }
    }

    /// A custom handler panicked: report that and the context with the default one.
    #[cold]
    fn exception_handler_panicked(
        &self,
        payload: Box<dyn std::any::Any + Send>,
        context: &ExceptionContext,
    ) {
        self.default_exception_handler(&ExceptionContext {
            message: "Unhandled error in exception handler".into(),
            error: Some(Error::Panic(panic_message(&*payload))),
            ..Default::default()
        });
        self.guarded_default_handler(context);
    }

    /// The default handler: prints the context to stderr.
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        eprintln!("tulip: {context}");
    }

    // ===== debug mode =====

    /// Turns debug mode on or off (asyncio's `set_debug`): slow callbacks are reported.
    pub fn set_debug(&self, on: bool) {
        self.inner.debug.set(on);
    }

    /// True in debug mode.
    pub fn debug(&self) -> bool {
        self.inner.debug.get()
    }

    /// In debug mode, callbacks slower than this (seconds) are reported.
    pub fn set_slow_callback_duration(&self, secs: f64) {
        self.inner.slow_callback_duration.set(secs);
    }

    /// See [`set_slow_callback_duration`](EventLoop::set_slow_callback_duration).
    pub fn slow_callback_duration(&self) -> f64 {
        self.inner.slow_callback_duration.get()
    }

    pub(super) fn warn_if_slow(&self, t0: Instant, what: impl FnOnce() -> String) {
        let took = t0.elapsed().as_secs_f64();
        if took >= self.inner.slow_callback_duration.get() {
            eprintln!("tulip: executing {} took {took:.3} seconds", what());
        }
    }
}
