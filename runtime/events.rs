//! Handles: a scheduled callback, and a timer. Mirrors `Lib/asyncio/events.py`
//! (`Handle`, `TimerHandle`).
//!
//! A handle is what `call_soon`, `call_later` and `call_at` return and what the
//! loop's ready queue holds. It is one heap allocation, an
//! `Rc<HandleCell<R>>` seen through the `dyn HandleDyn` trait object: the
//! cancel flag, where it was created, and `R`, the callable part. `R` is a
//! one-shot closure (`Once`), a repeating one for readers and writers
//! (`Repeat`), or a one-shot closure with a timer's fields (`Timed`), so
//! a plain `call_soon` handle carries no timer fields at all; one scheduled
//! where context values are current is wrapped in `InContext`, which runs
//! it in its snapshot and keeps its name. Because the
//! cell is a sized type behind a trait object, the same allocation is also a
//! ready-queue entry (`Rc<dyn Runnable>`, 16 bytes) without a wrapper.
//!
//! # Invariants
//! - A cancelled handle never runs; cancelling drops a one-shot callback's
//!   closure at once (asyncio sets `_callback = None`), freeing what it captured.
//! - A one-shot callback runs at most once.
//! - A [`TimerHandle`] is `scheduled` from `call_at` until the loop lets go of
//!   it: it is dropped from the heap as cancelled, or, once due, its entry in
//!   the ready queue is run or skipped. (asyncio clears `_scheduled` when it
//!   pops the due timer; tulip clears it one step later, so that moving a due
//!   timer to the ready queue need not touch the handle.) Cancelling a
//!   scheduled timer bumps the loop's cancelled-timer count, which drives the
//!   heap rebuild in `run_once` (asyncio's `_timer_handle_cancelled`).
//! - A [`TimerHandle`] is equal only to itself (closures cannot be
//!   compared, as asyncio compares callbacks) and hashes by `when`; two
//!   different timers are ordered by `when`, and not at all when their
//!   `when`s are equal (asyncio's `__le__` is "`<` or `==`").

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;

use crate::contextvars::Context;
use crate::error::Result;
use crate::event_loop::{EventLoop, Runnable};
use crate::threadsafe::{Call, CallState};

/// The callable part of a handle. `run` may be called more than once for
/// repeating handles (reader/writer callbacks).
pub(crate) trait Run {
    /// Calls the callback (a one-shot callback only the first time).
    fn run(&self);
    /// Drops the callback's closure if it can be dropped early.
    fn clear(&self);
    /// The closure's type name, for debug output (`{{closure}}` names say where it was written).
    fn name(&self) -> &'static str;
    /// The timer fields, for a timer's callback.
    fn timer(&self) -> Option<&TimerState> {
        None
    }
    /// The context the callback runs in, if it was given one (see
    /// [`InContext`]). A method, not a field: the cell does not grow.
    fn context(&self) -> Option<Context> {
        None
    }
}

/// A callback that runs once (`call_soon`).
pub(crate) struct Once<F>(Cell<Option<F>>);

impl<F: FnOnce()> Run for Once<F> {
    fn run(&self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
    fn clear(&self) {
        drop(self.0.take());
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

/// A callback that runs every time it is dispatched (`add_reader`, `add_writer`).
/// The second field is the name reports give it: the user's callback's,
/// which the reactor's wrappers (re-arming a level-triggered reader,
/// entering a context) would otherwise hide.
pub(crate) struct Repeat<F>(pub(crate) F, pub(crate) &'static str);

impl<F: Fn()> Run for Repeat<F> {
    fn run(&self) {
        (self.0)()
    }
    fn clear(&self) {}
    fn name(&self) -> &'static str {
        self.1
    }
}

/// A `call_soon_threadsafe` callback: boxed to cross threads, so it keeps
/// the name its closure had at the call site; skipped if its
/// `ThreadsafeHandle` was cancelled before it ran.
pub(crate) struct Threadsafe {
    f: Cell<Option<Box<dyn FnOnce() + Send>>>,
    state: Arc<CallState>,
    name: &'static str,
}

impl Run for Threadsafe {
    fn run(&self) {
        if let Some(f) = self.f.take() {
            self.state.run(f);
        }
    }
    fn clear(&self) {
        drop(self.f.take());
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

/// One delivery of a signal to its handler (asyncio's `_handle_signal`
/// schedules the handler's own handle): the callback is shared by every
/// delivery, and named as it was given to `add_signal_handler`.
pub(crate) struct SignalCall {
    f: Cell<Option<Rc<dyn Fn()>>>,
    name: &'static str,
}

impl Run for SignalCall {
    fn run(&self) {
        if let Some(f) = self.f.take() {
            f()
        }
    }
    fn clear(&self) {
        drop(self.f.take());
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

/// A one-shot callback with a timer's fields (`call_later`, `call_at`).
pub(crate) struct Timed<F> {
    timer: TimerState,
    f: Once<F>,
}

impl<F: FnOnce()> Run for Timed<F> {
    fn run(&self) {
        self.f.run()
    }
    fn clear(&self) {
        self.f.clear()
    }
    fn name(&self) -> &'static str {
        self.f.name()
    }
    fn timer(&self) -> Option<&TimerState> {
        Some(&self.timer)
    }
}

/// A one-shot callback that runs in a context of its own (asyncio's
/// `Handle._context.run(self._callback)`): `R` run inside `ctx`. Its name
/// and timer are `R`'s, so that the handle still names the callback it was
/// given (a closure wrapping it would be named after `call_soon`). The
/// context stays after the run, as asyncio's `_context` does (what the
/// callback set is seen through `Handle::get_context`), and goes with
/// `clear`, as the callback's closure does.
pub(crate) struct InContext<R> {
    ctx: Cell<Option<Context>>,
    r: R,
}

impl<R> InContext<R> {
    fn new(ctx: Context, r: R) -> InContext<R> {
        InContext {
            ctx: Cell::new(Some(ctx)),
            r,
        }
    }
}

impl<R: Run> Run for InContext<R> {
    fn run(&self) {
        if let Some(ctx) = self.context() {
            // A snapshot is the callback's own and never entered; a context
            // given with `call_soon_in` may be, and then, as asyncio's
            // `ctx.run` raises RuntimeError, the callback fails with that
            // error (the loop reports it as the callback's).
            if let Err(e) = ctx.run(|| self.r.run()) {
                std::panic::resume_unwind(Box::new(crate::error::CallbackError(e)));
            }
        }
    }
    fn clear(&self) {
        drop(self.ctx.take());
        self.r.clear()
    }
    fn name(&self) -> &'static str {
        self.r.name()
    }
    fn timer(&self) -> Option<&TimerState> {
        self.r.timer()
    }
    fn context(&self) -> Option<Context> {
        let ctx = self.ctx.take();
        self.ctx.set(ctx.clone());
        ctx
    }
}

/// A future's done callback and, once the future is done, the future itself
/// (asyncio's `call_soon(callback, self)`). Allocated once, by
/// `add_done_callback`: the same cell waits in the future's callback list
/// and then in the ready queue.
pub(crate) struct DoneCall<F, O> {
    f: Cell<Option<F>>,
    owner: Cell<Option<O>>,
}

impl<F: FnOnce(&O), O> Run for DoneCall<F, O> {
    fn run(&self) {
        if let (Some(f), Some(owner)) = (self.f.take(), self.owner.take()) {
            f(&owner)
        }
    }
    fn clear(&self) {
        drop(self.f.take());
        drop(self.owner.take());
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

/// A done callback, as the future's callback list holds it.
pub(crate) trait DoneCallback<O>: HandleDyn {
    /// Hands the callback its future, just before it is scheduled.
    fn arm(&self, owner: O);
}

impl<F: FnOnce(&O) + 'static, O: 'static> DoneCallback<O> for HandleCell<DoneCall<F, O>> {
    fn arm(&self, owner: O) {
        self.f.owner.set(Some(owner));
    }
}

impl<F: FnOnce(&O) + 'static, O: 'static> DoneCallback<O>
    for HandleCell<InContext<DoneCall<F, O>>>
{
    fn arm(&self, owner: O) {
        self.f.r.owner.set(Some(owner));
    }
}

/// Makes a done callback's cell (see [`DoneCall`]).
pub(crate) fn done_callback<F: FnOnce(&O) + 'static, O: 'static>(
    f: F,
    created_at: &'static Location<'static>,
) -> Rc<dyn DoneCallback<O>> {
    Rc::new(HandleCell {
        cancelled: Cell::new(false),
        created_at,
        f: DoneCall {
            f: Cell::new(Some(f)),
            owner: Cell::new(None),
        },
    })
}

/// [`done_callback`] for a callback that runs in `ctx` (see [`InContext`]).
pub(crate) fn done_callback_in<F: FnOnce(&O) + 'static, O: 'static>(
    f: F,
    ctx: Context,
    created_at: &'static Location<'static>,
) -> Rc<dyn DoneCallback<O>> {
    Rc::new(HandleCell {
        cancelled: Cell::new(false),
        created_at,
        f: InContext::new(
            ctx,
            DoneCall {
                f: Cell::new(Some(f)),
                owner: Cell::new(None),
            },
        ),
    })
}

/// Timer fields of a handle.
pub(crate) struct TimerState {
    /// Loop time (seconds) at which the timer is due.
    pub(crate) when: f64,
    /// Still held by the loop: in its timer heap, or due and not yet run.
    pub(crate) scheduled: Cell<bool>,
    /// The loop's count of cancelled timers it still holds.
    pub(crate) cancelled_count: Rc<Cell<usize>>,
}

/// One handle's allocation.
pub(crate) struct HandleCell<R> {
    cancelled: Cell<bool>,
    created_at: &'static Location<'static>,
    f: R,
}

/// What every [`HandleCell`] is, whatever its callable: the handle's API,
/// and (as a supertrait) a ready-queue entry.
pub(crate) trait HandleDyn: Runnable {
    fn cancelled_flag(&self) -> &Cell<bool>;
    fn created_at(&self) -> &'static Location<'static>;
    fn callable(&self) -> &dyn Run;
}

impl<R: Run + 'static> HandleDyn for HandleCell<R> {
    fn cancelled_flag(&self) -> &Cell<bool> {
        &self.cancelled
    }
    fn created_at(&self) -> &'static Location<'static> {
        self.created_at
    }
    fn callable(&self) -> &dyn Run {
        &self.f
    }
}

impl<R: Run + 'static> HandleCell<R> {
    /// A due timer leaves the loop's hands: no longer `scheduled`, and
    /// uncounted if cancelled.
    #[inline(always)]
    fn unschedule_timer(&self) {
        if let Some(t) = self.f.timer() {
            if t.scheduled.replace(false) && self.cancelled.get() {
                t.cancelled_count
                    .set(t.cancelled_count.get().saturating_sub(1));
            }
        }
    }
}

impl<R: Run + 'static> Runnable for HandleCell<R> {
    fn run_ready(self: Rc<Self>, lp: &EventLoop) -> Result<()> {
        // A due timer leaves the loop's hands here, not when it left the
        // heap (see `run_once` step 4): one touch of the handle, not two.
        self.unschedule_timer();
        if self.cancelled.get() {
            return Ok(());
        }
        // The callable's type is known here: no dynamic call on the way to
        // the callback. A panic goes to the exception handler (L6).
        lp.run_guarded(
            || self.f.run(),
            || self.f.name().into(),
            || {
                format!(
                    "{:?}",
                    Handle {
                        inner: self.clone()
                    }
                )
            },
        )
    }

    fn unschedule(&self) {
        self.unschedule_timer();
    }
}

/// A callback scheduled on the loop: asyncio's `Handle`.
///
/// Returned by [`EventLoop::call_soon`](crate::EventLoop::call_soon). Cloning a
/// handle gives another reference to the same scheduled callback.
///
/// ```
/// let lp = tulip::EventLoop::new().unwrap();
/// let h = lp.call_soon(|| panic!("never runs")).unwrap();
/// h.cancel();
/// assert!(h.cancelled());
/// lp.call_soon({ let lp = lp.clone(); move || lp.stop() }).unwrap();
/// lp.run_forever().unwrap();
/// ```
#[derive(Clone)]
#[must_use = "a Handle is how you cancel the callback; bind it to `_` to drop it"]
pub struct Handle {
    pub(crate) inner: Rc<dyn HandleDyn>,
}

impl Handle {
    fn new<R: Run + 'static>(f: R, created_at: &'static Location<'static>) -> Handle {
        Handle {
            inner: Rc::new(HandleCell {
                cancelled: Cell::new(false),
                created_at,
                f,
            }),
        }
    }

    pub(crate) fn once<F: FnOnce() + 'static>(
        f: F,
        created_at: &'static Location<'static>,
    ) -> Handle {
        Handle::new(Once(Cell::new(Some(f))), created_at)
    }

    /// [`once`](Handle::once) for a callback that runs in `ctx`.
    pub(crate) fn once_in<F: FnOnce() + 'static>(
        f: F,
        ctx: Context,
        created_at: &'static Location<'static>,
    ) -> Handle {
        Handle::new(InContext::new(ctx, Once(Cell::new(Some(f)))), created_at)
    }

    /// The handle of a `call_soon_threadsafe` callback, made on the loop
    /// thread from what the other thread sent.
    pub(crate) fn threadsafe(call: Call) -> Handle {
        Handle::new(
            Threadsafe {
                f: Cell::new(Some(call.f)),
                state: call.state,
                name: call.name,
            },
            call.created_at,
        )
    }

    /// The handle of one delivery of a signal to its handler `f`, which was
    /// added at `created_at` as a closure of type `name`.
    pub(crate) fn signal(
        f: Rc<dyn Fn()>,
        name: &'static str,
        created_at: &'static Location<'static>,
    ) -> Handle {
        Handle::new(
            SignalCall {
                f: Cell::new(Some(f)),
                name,
            },
            created_at,
        )
    }

    pub(crate) fn timed<F: FnOnce() + 'static>(
        f: F,
        created_at: &'static Location<'static>,
        timer: TimerState,
    ) -> Handle {
        Handle::new(
            Timed {
                timer,
                f: Once(Cell::new(Some(f))),
            },
            created_at,
        )
    }

    /// [`timed`](Handle::timed) for a callback that runs in `ctx`.
    pub(crate) fn timed_in<F: FnOnce() + 'static>(
        f: F,
        ctx: Context,
        created_at: &'static Location<'static>,
        timer: TimerState,
    ) -> Handle {
        Handle::new(
            InContext::new(
                ctx,
                Timed {
                    timer,
                    f: Once(Cell::new(Some(f))),
                },
            ),
            created_at,
        )
    }

    pub(crate) fn repeat<F: Fn() + 'static>(
        f: F,
        name: &'static str,
        created_at: &'static Location<'static>,
    ) -> Handle {
        Handle::new(Repeat(f, name), created_at)
    }

    /// Cancels the callback. If it has not run yet, it never will.
    pub fn cancel(&self) {
        let cell = &*self.inner;
        if cell.cancelled_flag().replace(true) {
            return;
        }
        if let Some(t) = cell.callable().timer() {
            if t.scheduled.get() {
                t.cancelled_count.set(t.cancelled_count.get() + 1);
            }
        }
        cell.callable().clear();
    }

    /// True once [`cancel`](Handle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled_flag().get()
    }

    /// Where the handle was created (the `call_soon`/`call_later` call site).
    pub fn created_at(&self) -> &'static Location<'static> {
        self.inner.created_at()
    }

    /// The callback's type name: for closures, the function that wrote it.
    pub fn callback_name(&self) -> &'static str {
        self.inner.callable().name()
    }

    /// asyncio 3.12's `Handle.get_context()`: the [`Context`] the callback
    /// runs in. That is the context given to
    /// [`call_soon_in`](crate::EventLoop::call_soon_in) and its kin, the
    /// very one, or the snapshot `call_soon`, `call_later` or `call_at`
    /// took of the values current then: the same `Context` at every call,
    /// before and after the callback ran, so what the callback set is seen
    /// through it, as in asyncio.
    ///
    /// `None` (*deviations*, both for the handle's size: it has no room
    /// for a context it was not given):
    /// - when no context value was current where the handle was made:
    ///   asyncio's copy is then an empty `Context`, which tulip does not
    ///   make; the callback starts with no context, and its first `set`
    ///   makes one of its own, which is not returned here;
    /// - once the handle is cancelled: `cancel()` drops the context with
    ///   the callback (asyncio drops only `_callback` and `_args`).
    ///
    /// ```
    /// use tulip::{Context, ContextVar};
    /// static USER: ContextVar<&str> = ContextVar::new("user");
    ///
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     assert!(lp.call_soon(|| ())?.get_context().is_none()); // no values yet
    ///     USER.set("ann")?;
    ///     let h = lp.call_soon(|| { USER.set("bob").unwrap(); })?;
    ///     let ctx = h.get_context().unwrap();
    ///     assert_eq!(ctx.get(&USER), Some("ann"));         // the snapshot
    ///     tulip::sleep(0.0).await?;                         // h runs
    ///     assert_eq!(ctx.get(&USER), Some("bob"));         // its set
    ///     assert_eq!(USER.get(), Some("ann"));              // not the task's
    ///     let given = Context::new();
    ///     let h = lp.call_soon_in(given.clone(), || ())?;
    ///     assert!(h.get_context().unwrap().ptr_eq(&given)); // the one given
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn get_context(&self) -> Option<Context> {
        self.inner.callable().context()
    }

    pub(crate) fn timer(&self) -> Option<&TimerState> {
        self.inner.callable().timer()
    }

    /// The handle as a ready-queue entry.
    pub(crate) fn into_ready(self) -> Rc<dyn Runnable> {
        self.inner
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.timer().is_some() {
            "TimerHandle"
        } else {
            "Handle"
        };
        // asyncio's `_repr_info`: the class, `cancelled`, `when=` (a
        // TimerHandle's, inserted after `cancelled`), then the callback,
        // which a cancelled handle no longer has (`cancel()` sets
        // `_callback = None`), then where the handle was made.
        write!(f, "<{kind}")?;
        if self.cancelled() {
            f.write_str(" cancelled")?;
        }
        if let Some(t) = self.timer() {
            write!(f, " when={:.6}", t.when)?;
        }
        if !self.cancelled() {
            write!(f, " {}", self.callback_name())?;
        }
        let loc = self.created_at();
        write!(f, " created at {}:{}>", loc.file(), loc.line())
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A callback scheduled for a point in time: asyncio's `TimerHandle`.
///
/// Returned by [`EventLoop::call_later`](crate::EventLoop::call_later) and
/// [`EventLoop::call_at`](crate::EventLoop::call_at). Cancelling is O(1): the
/// entry stays in the heap and is skipped (lazy cancellation).
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     let fired = Rc::new(Cell::new(false));
///     let f = fired.clone();
///     let now = lp.time();
///     let timer = lp.call_later(0.01, move || f.set(true))?;
///     assert!(timer.when() >= now + 0.01);
///     let never = lp.call_at(lp.time() + 0.005, || panic!("cancelled, never runs"))?;
///     never.cancel();
///     tulip::sleep(0.02).await?;
///     assert!(fired.get() && never.cancelled());
///     Ok(())
/// }).unwrap();
/// ```
#[derive(Clone)]
#[must_use = "a TimerHandle is how you cancel the timer; bind it to `_` to drop it"]
pub struct TimerHandle {
    pub(crate) handle: Handle,
}

impl TimerHandle {
    /// The loop time, in seconds, at which the callback is due.
    pub fn when(&self) -> f64 {
        self.handle.timer().map_or(f64::NAN, |t| t.when)
    }

    /// Cancels the timer. If it has not fired yet, it never will.
    pub fn cancel(&self) {
        self.handle.cancel()
    }

    /// True once [`cancel`](TimerHandle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// asyncio's `TimerHandle.get_context()`: see [`Handle::get_context`].
    pub fn get_context(&self) -> Option<Context> {
        self.handle.get_context()
    }

    /// The underlying handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.handle, f)
    }
}

/// asyncio's `TimerHandle.__eq__` compares `when`, the callback, its
/// arguments and the cancelled flag. Closures cannot be compared, so here
/// a timer is equal only to itself (its clones): two timers that asyncio
/// would call equal (the same function and arguments at the same `when`)
/// are not, and none that it would call different are.
impl PartialEq for TimerHandle {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.handle.inner, &other.handle.inner)
    }
}

impl Eq for TimerHandle {}

/// asyncio's `__lt__`/`__gt__` compare `when`, and `__le__`/`__ge__` are
/// "`<` or `==`": so two different timers due at the same `when` are
/// neither equal nor ordered (`partial_cmp` is `None`, and `<`, `<=`, `>`,
/// `>=` are all false, as in asyncio). To sort timers, compare
/// [`when`](TimerHandle::when) with `f64::total_cmp`.
impl PartialOrd for TimerHandle {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        if self == other {
            return Some(std::cmp::Ordering::Equal);
        }
        match self.when().partial_cmp(&other.when()) {
            Some(std::cmp::Ordering::Equal) => None,
            order => order,
        }
    }
}

/// asyncio's `__hash__`: by `when` (equal timers, being one, share it).
impl std::hash::Hash for TimerHandle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.when().to_bits().hash(state)
    }
}

/// Cancels a timer when dropped: the timer of a wait goes with the wait
/// however it ends, a drop of the waiting future included (asyncio's
/// `finally: handle.cancel()`, or a `timeout` scope's exit).
pub(crate) struct CancelTimer(pub(crate) Option<TimerHandle>);

impl Drop for CancelTimer {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.cancel();
        }
    }
}

/// A delay given to `call_later`/`sleep`: seconds as `f64`, or a `Duration`.
pub trait Delay: Copy {
    /// The delay in seconds (may be negative or NaN; callers check).
    fn as_secs(self) -> f64;
}

impl Delay for f64 {
    fn as_secs(self) -> f64 {
        self
    }
}

impl Delay for std::time::Duration {
    fn as_secs(self) -> f64 {
        self.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_cell_stays_small() {
        // The `callbacks` benchmark keeps a million handles alive at once:
        // its time is mostly page faults, so every byte of the cell counts
        // (ARCHITECTURE.md, "Handles"). `Handle::get_context` is a method
        // of the callable, not a field: a handle made with no context
        // values has no room for one.
        type Small = HandleCell<Once<fn()>>;
        type Boxed = HandleCell<Once<Box<dyn FnOnce()>>>;
        type WithContext = HandleCell<InContext<Once<fn()>>>;
        assert_eq!(std::mem::size_of::<Small>(), 24);
        assert_eq!(std::mem::size_of::<Boxed>(), 32);
        assert_eq!(std::mem::size_of::<WithContext>(), 32);
    }
}
