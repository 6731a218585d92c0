//! Futures: a result that is not there yet. Mirrors `Lib/asyncio/futures.py`.
//!
//! [`Future<T>`] is asyncio's `Future`: pending, then done with a result, an
//! error, or cancelled. Done callbacks are scheduled with `call_soon`, never
//! called inline. A task that awaits a pending future registers its waker as
//! a done callback and the future as its `fut_waiter`, so that
//! `Task::cancel` can cancel it (see `tasks.rs`).
//!
//! # Invariants
//! - The state moves once, from pending to one of finished/failed/cancelled
//!   (F1); later `set_*` calls fail with `InvalidState`, `cancel` returns false.
//! - Done callbacks run in registration order, each through `call_soon`; one
//!   added to a done future is scheduled at once (F2). Task wakers share the
//!   same list, so wake-ups keep the same order. Each callback runs in a
//!   snapshot of the context values current when it was added (asyncio's
//!   `copy_context()`), if there were any.
//! - On a closed loop the state still moves, but no callback is scheduled:
//!   if there are any, they are dropped (wakers are woken) and `set_result`
//!   and `set_exception` fail with [`Error::Closed`], as asyncio's
//!   `call_soon` raises "Event loop is closed" from them. A callback added
//!   to a done future of a closed loop is reported to the exception
//!   handler, not dropped in silence.
//! - The runtime's notifications (`Notify`: gather's and TaskGroup's
//!   per-child callbacks) are
//!   queued as the owner's own cell, once, at the place of the first of
//!   them; until it runs they are the only thing left in `callbacks`, which
//!   counts as empty once the future is done.
//! - `log_traceback` is true while a failed future's error has not been
//!   retrieved; dropping it then reports "exception was never retrieved" (F3).
//! - No `RefCell` borrow is held when callbacks are scheduled or wakers woken.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::event_loop::{get_event_loop, EventLoop, ExceptionContext, LoopRef, Ready, Runnable};
use crate::events::{done_callback, done_callback_in, DoneCallback, Handle};
use crate::tasks;

/// The id of a done callback, for `remove_done_callback` (Rust closures
/// cannot be compared the way asyncio compares callback functions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u32);

/// The state of a future (asyncio's `_PENDING`, `_FINISHED`, `_CANCELLED`).
pub(crate) enum State<T> {
    Pending,
    Finished(T),
    /// Boxed: failing is rare, and a small `State` keeps every task small.
    Failed(Box<Error>),
    Cancelled(Option<Arc<str>>),
    /// The result was moved out by its only reader (`run_until_complete`).
    Taken,
}

pub(crate) enum Callback<O> {
    /// A done callback: its handle cell, made at registration, which is
    /// scheduled as it is (one allocation per callback, end to end).
    Call(CallbackId, Rc<dyn DoneCallback<O>>),
    /// A done callback that does not need the future (the runtime's own,
    /// e.g. `run_until_complete`'s stop): a plain one-shot handle.
    Hook(CallbackId, Handle),
    /// An awaiting task's waker: waking it schedules the task's step.
    Wake(Waker),
    /// A runtime-internal done notification (gather's or TaskGroup's
    /// per-child callback):
    /// `notify(index)`. It costs no allocation: the future itself goes into
    /// the ready queue and runs its notifications when its turn comes.
    Notify(Rc<dyn Notify>, u32),
}

/// Where `schedule_callbacks` is in the list, as far as notifications go:
/// the first run of consecutive ones rides on the owner's entry, any later
/// one gets a handle of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NotesRun {
    NoneYet,
    InFirst,
    PastFirst,
}

/// What a [`Callback::Notify`] calls (gather and TaskGroup implement it).
pub(crate) trait Notify {
    /// The future this was registered on is done; `index` is what was
    /// given at registration. Runs from the ready queue, as a done callback.
    fn notify(&self, index: u32);
}

/// The owner of a [`FutureCore`] (`Future<T>` or `Task<T>`): what done
/// callbacks are handed, and the ready-queue entry that runs the core's
/// notifications (see [`Callback::Notify`]).
pub(crate) trait Owner: Clone + 'static {
    /// The owner's cell as a ready-queue entry: run when no step is
    /// scheduled, it runs the core's pending notifications.
    fn ready_entry(&self) -> Ready;
}

/// The done callbacks, in registration order. Most futures have exactly one
/// (the task awaiting them), so one lives inline and costs no allocation.
pub(crate) enum Callbacks<O> {
    None,
    One(Callback<O>),
    Many(Vec<Callback<O>>),
    /// A long list (past [`INDEX_WAKERS_AT`] entries) with a set of its
    /// wakers' addresses, so that [`FutureCore::add_waker`] need not scan it.
    Indexed(Box<Indexed<O>>),
}

/// The length at which a future's callback list gets an index of its
/// wakers: below it, a scan is cheaper than hashing; above it, n tasks
/// awaiting one future would cost O(n²) in scans (40k awaiters took
/// 418 ms).
const INDEX_WAKERS_AT: usize = 32;

/// [`Callbacks::Indexed`]: the list, and the `(data, vtable)` addresses of
/// its wakers (only compared; each is held by an entry of `all`, so no other
/// waker can have the same addresses while it is there).
pub(crate) struct Indexed<O> {
    all: Vec<Callback<O>>,
    wakers: HashSet<(usize, usize)>,
}

impl<O> Callbacks<O> {
    fn push(&mut self, cb: Callback<O>) {
        *self = match std::mem::replace(self, Callbacks::None) {
            Callbacks::None => Callbacks::One(cb),
            Callbacks::One(first) => Callbacks::Many(vec![first, cb]),
            Callbacks::Many(mut all) => {
                all.push(cb);
                Callbacks::Many(all)
            }
            Callbacks::Indexed(mut ix) => {
                if let Callback::Wake(w) = &cb {
                    ix.wakers.insert(tasks::waker_id(w));
                }
                ix.all.push(cb);
                Callbacks::Indexed(ix)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Callbacks::None => 0,
            Callbacks::One(_) => 1,
            Callbacks::Many(all) => all.len(),
            Callbacks::Indexed(ix) => ix.all.len(),
        }
    }

    fn iter_mut(&mut self) -> std::slice::IterMut<'_, Callback<O>> {
        match self {
            Callbacks::None => [].iter_mut(),
            Callbacks::One(cb) => std::slice::from_mut(cb).iter_mut(),
            Callbacks::Many(all) => all.iter_mut(),
            Callbacks::Indexed(ix) => ix.all.iter_mut(),
        }
    }

    /// Past [`INDEX_WAKERS_AT`] entries, a `Many` list gets its index.
    fn index_if_long(&mut self) {
        if let Callbacks::Many(all) = self {
            if all.len() > INDEX_WAKERS_AT {
                let all = std::mem::take(all);
                let wakers = all
                    .iter()
                    .filter_map(|cb| match cb {
                        Callback::Wake(w) => Some(tasks::waker_id(w)),
                        _ => None,
                    })
                    .collect();
                *self = Callbacks::Indexed(Box::new(Indexed { all, wakers }));
            }
        }
    }

    /// Takes out the first callback `hit` picks, in order.
    fn remove_first(&mut self, hit: impl Fn(&Callback<O>) -> bool) -> Option<Callback<O>> {
        match self {
            Callbacks::None => None,
            Callbacks::One(cb) if hit(cb) => match std::mem::replace(self, Callbacks::None) {
                Callbacks::One(cb) => Some(cb),
                _ => unreachable!("matched One above"),
            },
            Callbacks::One(_) => None,
            Callbacks::Many(all) => all.iter().position(hit).map(|i| all.remove(i)),
            Callbacks::Indexed(ix) => {
                let cb = ix.all.iter().position(hit).map(|i| ix.all.remove(i))?;
                if let Callback::Wake(w) = &cb {
                    // Unindexed only when no other entry holds the same waker.
                    let id = tasks::waker_id(w);
                    let again = ix.all.iter().any(
                        |other| matches!(other, Callback::Wake(o) if tasks::waker_id(o) == id),
                    );
                    if !again {
                        ix.wakers.remove(&id);
                    }
                }
                Some(cb)
            }
        }
    }

    /// Takes them all out, in order.
    fn take(&mut self) -> impl Iterator<Item = Callback<O>> {
        let (one, many) = match std::mem::replace(self, Callbacks::None) {
            Callbacks::None => (None, Vec::new()),
            Callbacks::One(cb) => (Some(cb), Vec::new()),
            Callbacks::Many(all) => (None, all),
            Callbacks::Indexed(ix) => (None, ix.all),
        };
        one.into_iter().chain(many)
    }
}

/// The core of a future, shared by [`Future`] and `Task`. `O` is the owner
/// type that done callbacks receive (`Future<T>` or `Task<T>`).
pub(crate) struct FutureCore<T, O> {
    pub(crate) lp: LoopRef,
    state: RefCell<State<T>>,
    callbacks: RefCell<Callbacks<O>>,
    next_id: Cell<u32>,
    log_traceback: Cell<bool>,
}

impl<T, O: Owner> FutureCore<T, O> {
    pub(crate) fn new(lp: EventLoop) -> Self {
        FutureCore {
            lp: LoopRef::new(lp),
            state: RefCell::new(State::Pending),
            callbacks: RefCell::new(Callbacks::None),
            next_id: Cell::new(0),
            log_traceback: Cell::new(false),
        }
    }

    /// Moves to a final state and schedules the callbacks. Fails if done
    /// (`InvalidState`, the state unchanged), or if the loop is closed and
    /// there are callbacks (`Closed`, the state moved: see
    /// [`schedule_callbacks`](Self::schedule_callbacks)).
    pub(crate) fn finish(&self, owner: &O, state: State<T>) -> Result<()> {
        {
            let mut s = self.state.borrow_mut();
            if !matches!(*s, State::Pending) {
                return Err(Error::invalid_state(format!(
                    "the future is already {}: check done() before setting its result or error",
                    state_name(&s)
                )));
            }
            if matches!(state, State::Failed(_)) {
                self.log_traceback.set(true);
            }
            *s = state;
        }
        self.schedule_callbacks(owner)
    }

    /// asyncio's `__schedule_callbacks`: every callback through `call_soon`,
    /// in order; task wakers are woken (a wake is a `call_soon` of the task step).
    ///
    /// Notifications ([`Callback::Notify`]) go into the ready queue as the
    /// owner's own cell, once, where the first of them stands; they stay in
    /// `callbacks` until it runs ([`run_notifications`](Self::run_notifications)).
    /// Consecutive callbacks are consecutive in the queue either way, so the
    /// order is asyncio's. A notification after some other kind of callback
    /// that follows the first run of them gets its own handle, to keep it so.
    ///
    /// On a closed loop, callbacks cannot be scheduled: as asyncio's
    /// `call_soon` raises "Event loop is closed" at the first of them, after
    /// the list was cleared, they are all dropped and this fails with
    /// [`Error::Closed`]. With no callback there is nothing to fail.
    fn schedule_callbacks(&self, owner: &O) -> Result<()> {
        // A lone notification (a gathered or grouped child's) stays where it is and
        // the owner goes into the ready queue: the loop below would do
        // just that, by taking it out and putting it back.
        if matches!(
            &*self.callbacks.borrow(),
            Callbacks::One(Callback::Notify(..))
        ) {
            if let Err(e) = self.lp.push_ready(owner.ready_entry()) {
                // A closed loop: it will never run (see `discard_notifications`).
                self.discard_notifications();
                return Err(e);
            }
            return Ok(());
        }
        // Taken out first: no borrow is held while callbacks are scheduled.
        let callbacks = std::mem::replace(&mut *self.callbacks.borrow_mut(), Callbacks::None);
        if matches!(callbacks, Callbacks::None) {
            return Ok(());
        }
        if self.lp.is_closed() {
            // No borrow is held: dropping a callback runs the `Drop` of
            // what it captured, which may use this future. A waker is still
            // woken: a task's wake is dropped by its closed loop anyway, and
            // a waker from elsewhere (this future polled outside a task)
            // must not wait for ever.
            let mut callbacks = callbacks;
            for cb in callbacks.take() {
                if let Callback::Wake(w) = cb {
                    w.wake();
                }
            }
            return Err(Error::Closed);
        }
        let all = match callbacks {
            Callbacks::None => return Ok(()),
            // The common case is one callback, which needs no list.
            Callbacks::One(cb) => {
                self.schedule_other(cb, owner);
                return Ok(());
            }
            Callbacks::Many(all) => all,
            Callbacks::Indexed(ix) => ix.all,
        };
        let mut notes = Callbacks::None;
        let mut run = NotesRun::NoneYet;
        for cb in all {
            match cb {
                Callback::Notify(n, i) => match run {
                    NotesRun::NoneYet | NotesRun::InFirst => {
                        if run == NotesRun::NoneYet {
                            let _ = self.lp.push_ready(owner.ready_entry());
                            run = NotesRun::InFirst;
                        }
                        notes.push(Callback::Notify(n, i));
                    }
                    NotesRun::PastFirst => self.notify_soon(n, i),
                },
                other => {
                    if run == NotesRun::InFirst {
                        run = NotesRun::PastFirst;
                    }
                    self.schedule_other(other, owner);
                }
            }
        }
        // On a closed loop the owner's entry was not queued: drop them.
        if run != NotesRun::NoneYet && !self.lp.is_closed() {
            *self.callbacks.borrow_mut() = notes;
        }
        Ok(())
    }

    /// Drops the notifications a done future still holds: its entry will
    /// never run, because the loop closed. A notification holds its gather
    /// or TaskGroup, which holds this future, so keeping them would keep
    /// both forever.
    pub(crate) fn discard_notifications(&self) {
        if self.done() {
            let notes = std::mem::replace(&mut *self.callbacks.borrow_mut(), Callbacks::None);
            drop(notes);
        }
    }

    /// Drops every done callback of a pending future that will never be
    /// done: its loop closed with it pending. A callback may hold the
    /// future (a gather's or TaskGroup's notification holds the gather or
    /// group, which holds its children), and there is no collector to
    /// break such a cycle.
    pub(crate) fn drop_callbacks(&self) {
        let all = std::mem::replace(&mut *self.callbacks.borrow_mut(), Callbacks::None);
        drop(all);
    }

    /// Schedules one done callback that is not a notification (a lone
    /// notification never reaches here: see `schedule_callbacks`).
    #[inline]
    fn schedule_other(&self, cb: Callback<O>, owner: &O) {
        match cb {
            Callback::Call(_, cell) => self.schedule(cell, owner.clone()),
            Callback::Hook(_, h) => {
                let _ = self.lp.push_ready(h.into_ready());
            }
            Callback::Wake(w) => w.wake(),
            Callback::Notify(..) => unreachable!("notifications are handled by the caller"),
        }
    }

    /// Registers a notification (see [`Callback::Notify`]); on a done
    /// future it is scheduled at once, as any done callback (`call_soon`).
    /// Returns true if the future was done.
    pub(crate) fn add_notify(&self, owner: &O, n: Rc<dyn Notify>, index: u32) -> bool {
        if self.done() {
            // With no notification pending, it rides on the owner's entry,
            // as a finishing future's do: no handle of its own (an eager
            // child of a TaskGroup, done inside `create_task`). Pending
            // ones mean the owner's entry is queued already, and sits
            // earlier than `call_soon` would put this one: a handle then.
            let mut callbacks = self.callbacks.borrow_mut();
            if matches!(*callbacks, Callbacks::None) {
                *callbacks = Callbacks::One(Callback::Notify(n, index));
                drop(callbacks);
                if self.lp.push_ready(owner.ready_entry()).is_err() {
                    // A closed loop: it will never run.
                    self.discard_notifications();
                }
            } else {
                drop(callbacks);
                self.notify_soon(n, index);
            }
            true
        } else {
            self.callbacks.borrow_mut().push(Callback::Notify(n, index));
            false
        }
    }

    /// A notification in a handle of its own, through `call_soon`.
    fn notify_soon(&self, n: Rc<dyn Notify>, index: u32) {
        let h = Handle::once(move || n.notify(index), std::panic::Location::caller());
        let _ = self.lp.push_ready(h.into_ready());
    }

    /// `call_soon(callback, self)`: the callback's own cell goes into the
    /// ready queue. A closed loop drops it, as asyncio would fail to schedule it.
    fn schedule(&self, cell: Rc<dyn DoneCallback<O>>, owner: O) {
        cell.arm(owner);
        let _ = self.lp.push_ready(cell);
    }

    /// asyncio's `add_done_callback(fn, context=ctx)`: `f` runs in `ctx`,
    /// or (`None`) in a snapshot of the current values.
    #[track_caller]
    pub(crate) fn add_done_callback(
        &self,
        owner: &O,
        ctx: Option<crate::contextvars::Context>,
        f: impl FnOnce(&O) + 'static,
    ) -> CallbackId {
        let id = self.new_callback_id();
        // asyncio: `context = contextvars.copy_context()` at registration.
        let cell = match ctx.or_else(crate::contextvars::callback_context) {
            None => done_callback(f, std::panic::Location::caller()),
            Some(ctx) => done_callback_in(f, ctx, std::panic::Location::caller()),
        };
        if self.done() {
            if self.lp.is_closed() {
                self.callback_on_closed_loop();
            } else {
                self.schedule(cell, owner.clone());
            }
        } else {
            self.callbacks.borrow_mut().push(Callback::Call(id, cell));
        }
        id
    }

    /// A done callback added to a done future of a closed loop can never
    /// run. asyncio's `add_done_callback` raises there (its `call_soon`:
    /// "Event loop is closed"); this API returns no `Result`, so it is
    /// reported instead of dropped in silence.
    #[cold]
    #[inline(never)]
    fn callback_on_closed_loop(&self) {
        self.lp.call_exception_handler(&ExceptionContext {
            message:
                "add_done_callback on a done future of a closed loop: the callback will never run"
                    .into(),
            error: Some(Error::Closed),
            ..Default::default()
        });
    }

    /// A done callback that is not handed the future: one plain handle
    /// (smaller than a [`DoneCallback`] cell, which has room for its owner).
    #[track_caller]
    pub(crate) fn add_done_hook(&self, f: impl FnOnce() + 'static) -> CallbackId {
        let id = self.new_callback_id();
        let h = Handle::once(f, std::panic::Location::caller());
        if self.done() {
            let _ = self.lp.push_ready(h.into_ready());
        } else {
            self.callbacks.borrow_mut().push(Callback::Hook(id, h));
        }
        id
    }

    fn new_callback_id(&self) -> CallbackId {
        let id = CallbackId(self.next_id.get());
        self.next_id.set(id.0.wrapping_add(1));
        id
    }

    pub(crate) fn remove_done_callback(&self, id: CallbackId) -> usize {
        let hit = |cb: &Callback<O>| match cb {
            Callback::Call(i, _) | Callback::Hook(i, _) => *i == id,
            Callback::Wake(_) | Callback::Notify(..) => false,
        };
        let mut removed = 0;
        loop {
            // Dropped once the borrow has ended: dropping a callback runs
            // the Drop of what it captured, the user's code, which may use
            // this future.
            let cb = self.callbacks.borrow_mut().remove_first(hit);
            match cb {
                Some(cb) => {
                    drop(cb);
                    removed += 1;
                }
                None => return removed,
            }
        }
    }

    /// Registers a task's waker, replacing an earlier registration of the
    /// same task (a task polls the future again after a spurious wake-up).
    ///
    /// A short list is scanned; a long one keeps an index of its wakers
    /// ([`Callbacks::Indexed`]), so that n tasks awaiting one future cost
    /// O(n) in all, not O(n²).
    pub(crate) fn add_waker(&self, waker: &Waker) {
        let mut cbs = self.callbacks.borrow_mut();
        if let Callbacks::Indexed(ix) = &mut *cbs {
            if ix.wakers.insert(tasks::waker_id(waker)) {
                ix.all.push(Callback::Wake(waker.clone()));
            }
            return;
        }
        for cb in cbs.iter_mut() {
            if let Callback::Wake(w) = cb {
                if w.will_wake(waker) {
                    return;
                }
            }
        }
        cbs.push(Callback::Wake(waker.clone()));
        cbs.index_if_long();
    }

    /// asyncio's `exception()`: `Ok(None)` if finished with a result,
    /// `Ok(Some(e))` if failed; `Err(Cancelled)` if cancelled,
    /// `Err(InvalidState)` if pending.
    pub(crate) fn exception(&self) -> Result<Option<Error>> {
        match &*self.state.borrow() {
            State::Pending => Err(Error::invalid_state(
                "exception is not set: the future is still pending; await it, or check done() first",
            )),
            State::Cancelled(m) => Err(Error::Cancelled(m.clone())),
            State::Failed(e) => {
                self.log_traceback.set(false);
                Ok(Some(Error::clone(e)))
            }
            State::Finished(_) | State::Taken => Ok(None),
        }
    }

    /// Moves the result out (for a future with one reader).
    pub(crate) fn take_result(&self) -> Result<T> {
        let mut s = self.state.borrow_mut();
        match std::mem::replace(&mut *s, State::Taken) {
            State::Finished(v) => Ok(v),
            other => {
                *s = other;
                drop(s);
                self.result_error()
            }
        }
    }

    fn result_error<U>(&self) -> Result<U> {
        match &*self.state.borrow() {
            State::Pending => Err(Error::invalid_state(
                "result is not set: the future is still pending; await it, or check done() first",
            )),
            State::Cancelled(m) => Err(Error::Cancelled(m.clone())),
            State::Failed(e) => {
                self.log_traceback.set(false);
                Err(Error::clone(e))
            }
            State::Taken => Err(Error::invalid_state(RESULT_TAKEN)),
            State::Finished(_) => unreachable!("result_error on a finished future"),
        }
    }

    pub(crate) fn describe_state(&self) -> &'static str {
        state_name(&self.state.borrow())
    }

    /// The awaiting side: `Ready` with the outcome, or registers the waker.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done() {
            Poll::Ready(())
        } else {
            self.add_waker(cx.waker());
            Poll::Pending
        }
    }
}

impl<T, O> FutureCore<T, O> {
    pub(crate) fn done(&self) -> bool {
        !matches!(*self.state.borrow(), State::Pending)
    }

    pub(crate) fn cancelled(&self) -> bool {
        matches!(*self.state.borrow(), State::Cancelled(_))
    }

    /// How many done callbacks wait for the future (0 once it is done:
    /// they are scheduled then).
    pub(crate) fn callback_count(&self) -> usize {
        if self.done() {
            return 0;
        }
        self.callbacks.borrow().len()
    }

    /// Runs the notifications left by `schedule_callbacks`: the owner's
    /// ready-queue entry came up. Each runs as a callback would (a panic
    /// goes to the exception handler).
    ///
    /// An [`Interrupt`](crate::Interrupt) in one of them stops the run: the
    /// ones not run yet stay, and `me` (the owner's entry) goes back to the
    /// head of the ready queue, so they run first when the loop runs again,
    /// as asyncio's remaining `_done_callback` handles would.
    pub(crate) fn run_notifications(&self, me: impl FnOnce() -> Ready) -> Result<()> {
        let what = || "<done notification>".to_string();
        let notes = std::mem::replace(&mut *self.callbacks.borrow_mut(), Callbacks::None);
        if let Callbacks::One(Callback::Notify(n, i)) = notes {
            // The common case, without the iterator of the general one.
            return self.lp.run_guarded(|| n.notify(i), what, what);
        }
        let mut notes = notes;
        let mut rest = notes.take();
        while let Some(cb) = rest.next() {
            if let Callback::Notify(n, i) = cb {
                if let Err(e) = self.lp.run_guarded(|| n.notify(i), what, what) {
                    let mut left = Callbacks::None;
                    rest.for_each(|cb| left.push(cb));
                    if left.len() > 0 {
                        *self.callbacks.borrow_mut() = left;
                        self.lp.push_ready_front(me());
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Reports an unretrieved error (F3); called from the owner's `Drop`.
    pub(crate) fn report_unretrieved(&self, what: &str, describe: impl FnOnce() -> String) {
        if !self.log_traceback.get() {
            return;
        }
        let err = match &*self.state.borrow() {
            State::Failed(e) => Error::clone(e),
            _ => return,
        };
        self.lp.report_ignoring_interrupt(&ExceptionContext {
            message: format!("{what} exception was never retrieved"),
            error: Some(err),
            future: Some(describe()),
            ..Default::default()
        });
    }

    pub(crate) fn clear_log_traceback(&self) {
        self.log_traceback.set(false);
    }

    /// True while a failed future's error was not retrieved (F3).
    pub(crate) fn error_unretrieved(&self) -> bool {
        self.log_traceback.get()
    }
}

impl<T: Clone, O> FutureCore<T, O> {
    /// asyncio's `result()`.
    pub(crate) fn result(&self) -> Result<T> {
        match &*self.state.borrow() {
            State::Finished(v) => return Ok(v.clone()),
            State::Pending => return Err(Error::invalid_state(
                "result is not set: the future is still pending; await it, or check done() first",
            )),
            State::Cancelled(m) => return Err(Error::Cancelled(m.clone())),
            State::Failed(e) => {
                self.log_traceback.set(false);
                return Err(Error::clone(e));
            }
            State::Taken => {}
        }
        Err(Error::invalid_state(RESULT_TAKEN))
    }
}

/// The error of reading a result that `take_result` moved out.
pub(crate) const RESULT_TAKEN: &str =
    "the result was already taken by take_result(): call result() instead to read it more than once";

fn state_name<T>(s: &State<T>) -> &'static str {
    match s {
        State::Pending => "pending",
        State::Finished(_) | State::Taken => "finished",
        State::Failed(_) => "failed",
        State::Cancelled(_) => "cancelled",
    }
}

/// What can be cancelled as a task's `fut_waiter`: a future, or a task.
pub(crate) trait Cancel {
    fn cancel_waiter(self: Rc<Self>, msg: Option<Arc<str>>) -> bool;
}

/// asyncio's `Future`: a result that will be set later, by someone.
///
/// Await it from a task to get `Result<T>`. Cloning gives another reference
/// to the same future. `T: Clone` is needed to read the result, since every
/// awaiter gets it (as in asyncio, where each one receives the same object).
///
/// ```
/// tulip::run(async {
///     let lp = tulip::get_running_loop()?;
///     let fut: tulip::Future<u32> = lp.create_future();
///     let setter = fut.clone();
///     lp.call_later(0.01, move || { setter.set_result(42).unwrap(); })?;
///     assert_eq!(fut.await?, 42);
///     Ok(())
/// }).unwrap();
/// ```
#[must_use = "a future does nothing unless awaited or given a result"]
pub struct Future<T> {
    pub(crate) core: Rc<FutureCore<T, Future<T>>>,
}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            core: self.core.clone(),
        }
    }
}

impl<T: 'static> Future<T> {
    /// A pending future on the current loop (running, or this thread's loop).
    ///
    /// # Panics
    /// If no loop exists and a new one cannot be created (out of file descriptors).
    pub fn new() -> Future<T> {
        let lp = get_event_loop().expect("cannot create an event loop for the future");
        Future::with_loop(&lp)
    }

    /// A pending future attached to `lp`.
    pub fn with_loop(lp: &EventLoop) -> Future<T> {
        Future {
            core: Rc::new(FutureCore::new(lp.clone())),
        }
    }

    /// Sets the result. Fails with `InvalidState` if the future is done (F1).
    ///
    /// On a closed loop the result is set all the same, but done callbacks
    /// cannot be scheduled: if there are any, they are dropped and this
    /// fails with [`Error::Closed`] (asyncio's `call_soon` raises
    /// "Event loop is closed" from `set_result`).
    pub fn set_result(&self, value: T) -> Result<()> {
        self.core.finish(self, State::Finished(value))
    }

    /// Sets an error. Fails with `InvalidState` if the future is done, and
    /// with `Closed` as [`set_result`](Future::set_result) does, the error
    /// set all the same. Setting `Error::Cancelled` is refused: call `cancel`. (A deviation:
    /// asyncio stores a `CancelledError` as the exception of a future that
    /// is then *not* `cancelled()`; tulip keeps one way in, so a future that
    /// ends in `Cancelled` is always `cancelled()`.)
    ///
    /// ```
    /// tulip::run(async {
    ///     let fut: tulip::Future<u32> = tulip::get_running_loop()?.create_future();
    ///     fut.set_exception(tulip::Error::msg("boom"))?;
    ///     assert!(fut.done() && !fut.cancelled());
    ///     assert_eq!(fut.exception()?.unwrap().to_string(), "boom");
    ///     assert!(matches!(fut.set_result(1), Err(tulip::Error::InvalidState(_))));
    ///     assert_eq!(fut.await.unwrap_err().to_string(), "boom"); // await raises it
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn set_exception(&self, err: Error) -> Result<()> {
        // asyncio checks the state first, then the error's type (as it
        // refuses StopIteration): a done future says InvalidStateError.
        if err.is_cancelled() && !self.done() {
            return Err(Error::invalid_argument(
                "Cancelled cannot be set as a future's error: call cancel() instead",
            ));
        }
        self.core.finish(self, State::Failed(Box::new(err)))
    }

    /// Cancels the future. Returns false if it was already done (F1).
    /// On a closed loop it is cancelled all the same, and its done
    /// callbacks are dropped (asyncio's `cancel` raises "Event loop is
    /// closed" then; this returns true).
    pub fn cancel(&self) -> bool {
        self.cancel_with(None::<&str>)
    }

    /// Cancels with a message, which the awaiters' `Cancelled` error carries.
    pub fn cancel_with(&self, msg: Option<impl Into<Arc<str>>>) -> bool {
        self.core.log_traceback.set(false);
        // Only a done future refuses; `Closed` comes after the state moved.
        !matches!(
            self.core
                .finish(self, State::Cancelled(msg.map(Into::into))),
            Err(Error::InvalidState(_))
        )
    }

    /// True once the future has a result, an error, or was cancelled.
    pub fn done(&self) -> bool {
        self.core.done()
    }

    /// True if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        self.core.cancelled()
    }

    /// The error, if the future failed (asyncio's `exception()`); `Ok(None)`
    /// for a result; `Err` if pending (InvalidState) or cancelled.
    pub fn exception(&self) -> Result<Option<Error>> {
        self.core.exception()
    }

    /// Adds a callback called with the future once it is done, through
    /// `call_soon` (F2). It runs in a snapshot of the context values
    /// current now, as asyncio's `add_done_callback` takes
    /// `copy_context()` when it is called. On a done future of a closed
    /// loop the callback can never run: asyncio raises there; this reports
    /// it to the loop's exception handler.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// tulip::run(async {
    ///     let fut: tulip::Future<&str> = tulip::get_running_loop()?.create_future();
    ///     let seen = Rc::new(Cell::new(None));
    ///     let s = seen.clone();
    ///     fut.add_done_callback(move |f| s.set(f.result().ok()));
    ///     fut.set_result("done")?;
    ///     assert_eq!(seen.get(), None); // scheduled with call_soon, not called yet
    ///     tulip::sleep(0.0).await?;
    ///     assert_eq!(seen.get(), Some("done"));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    #[track_caller]
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> CallbackId {
        self.core.add_done_callback(self, None, f)
    }

    /// asyncio's `add_done_callback(fn, context=ctx)`:
    /// [`add_done_callback`](Future::add_done_callback) with `f` run in
    /// `ctx` itself, not in a snapshot (see
    /// [`EventLoop::call_soon_in`](crate::EventLoop::call_soon_in)).
    #[track_caller]
    pub fn add_done_callback_in(
        &self,
        ctx: crate::contextvars::Context,
        f: impl FnOnce(&Future<T>) + 'static,
    ) -> CallbackId {
        self.core.add_done_callback(self, Some(ctx), f)
    }

    /// Removes a done callback; returns how many were removed (0 or 1).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        self.core.remove_done_callback(id)
    }

    /// A done callback that does not take the future (the runtime's own).
    #[track_caller]
    pub(crate) fn add_done_hook(&self, f: impl FnOnce() + 'static) -> CallbackId {
        self.core.add_done_hook(f)
    }

    /// A done notification, with no allocation (see [`Notify`]); true if
    /// the future was done.
    pub(crate) fn add_notify(&self, n: Rc<dyn Notify>, index: u32) -> bool {
        self.core.add_notify(self, n, index)
    }

    /// The loop the future belongs to. A future does not keep its loop
    /// open: once the last [`EventLoop`] handle is dropped, the loop is
    /// closed (see [`EventLoop`]'s `Drop`), and this gives the closed loop.
    pub fn get_loop(&self) -> EventLoop {
        self.core.lp.user_handle()
    }

    /// Moves the result out: for a future that has a single reader and a
    /// result type that is not `Clone`.
    pub fn take_result(&self) -> Result<T> {
        self.core.take_result()
    }

    /// True if both values are the same future.
    pub fn ptr_eq(&self, other: &Future<T>) -> bool {
        Rc::ptr_eq(&self.core, &other.core)
    }

    /// Resolves when the future is done, without reading the result.
    ///
    /// Like awaiting, it makes the future the task's `fut_waiter`:
    /// cancelling the awaiting task cancels the future, and the wait then
    /// resolves. Read the outcome afterwards (`take_result`, `result`,
    /// `cancelled`) to see the cancel; it is not raised by the wait itself.
    pub fn wait_done(&self) -> WaitDone<'_, T> {
        WaitDone { fut: self }
    }
}

impl<T: Clone + 'static> Future<T> {
    /// The result (asyncio's `result()`): `Err(InvalidState)` while pending,
    /// `Err(Cancelled)` if cancelled, the error if failed.
    pub fn result(&self) -> Result<T> {
        self.core.result()
    }
}

impl<T: 'static> Default for Future<T> {
    fn default() -> Self {
        Future::new()
    }
}

impl<T: 'static> Owner for Future<T> {
    fn ready_entry(&self) -> Ready {
        self.core.clone()
    }
}

/// A plain future is in the ready queue only to run its notifications.
impl<T: 'static> Runnable for FutureCore<T, Future<T>> {
    fn run_ready(self: Rc<Self>, _lp: &EventLoop) -> Result<()> {
        let me = self.clone();
        self.run_notifications(|| me)
    }

    fn discard(&self) {
        self.discard_notifications();
    }
}

impl<T: 'static> Cancel for FutureCore<T, Future<T>> {
    fn cancel_waiter(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        Future { core: self }.cancel_with(msg)
    }
}

impl<T: Clone + 'static> std::future::Future for Future<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        // A cancel thrown into the task at this suspension point wins;
        // but a future that is itself cancelled gives its own Cancelled
        // (asyncio's __step keeps an error that is already a CancelledError).
        if let Some(err) = tasks::take_throw_on(&self.core.lp) {
            if self.core.cancelled() {
                return Poll::Ready(self.core.result());
            }
            return Poll::Ready(Err(err));
        }
        if self.core.done() {
            return Poll::Ready(self.core.result());
        }
        // fut_waiter first: a task of another loop must not suspend here.
        if let Err(e) = tasks::set_fut_waiter_on(&self.core.lp, self.core.clone()) {
            return Poll::Ready(Err(e));
        }
        self.core.add_waker(cx.waker());
        Poll::Pending
    }
}

impl<T, O> Drop for FutureCore<T, O> {
    fn drop(&mut self) {
        self.report_unretrieved("Future", || "<Future failed>".into());
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.core.state.borrow() {
            State::Failed(e) => format!("failed {e}"),
            State::Cancelled(_) => "cancelled".into(),
            State::Pending => "pending".into(),
            State::Finished(_) | State::Taken => "finished".into(),
        };
        write!(f, "<Future {state}")?;
        let n = self.core.callback_count();
        if n > 0 {
            write!(f, " cb=[{n}]")?;
        }
        f.write_str(">")
    }
}

/// What [`Future::wait_done`] returns.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WaitDone<'a, T> {
    fut: &'a Future<T>,
}

impl<T: 'static> std::future::Future for WaitDone<'_, T> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.fut.core.poll_done(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                // A task of another loop is not told (no error to give):
                // it waits, without a fut_waiter.
                let _ = tasks::set_fut_waiter_on(&self.fut.core.lp, self.fut.core.clone());
                Poll::Pending
            }
        }
    }
}

impl EventLoop {
    /// asyncio's `loop.create_future()`.
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::with_loop(self)
    }
}
