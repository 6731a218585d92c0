//! Done callbacks: the future's callback list, its scheduling when the
//! future is done, task wakers, and the runtime's allocation-free
//! notifications. Mirrors `Future.add_done_callback`,
//! `remove_done_callback` and `__schedule_callbacks` in
//! `Lib/asyncio/futures.py` (the `_callbacks` list, each entry run through
//! `call_soon`).
//!
//! # Invariants
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
//! - No `RefCell` borrow is held when callbacks are scheduled or wakers woken.

use std::collections::HashSet;
use std::rc::Rc;
use std::task::Waker;

use super::{CallbackId, FutureCore};
use crate::error::{Error, Result};
use crate::event_loop::{ExceptionContext, Ready};
use crate::events::{done_callback, done_callback_in, DoneCallback, Handle};
use crate::tasks;

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

impl<T, O: Owner> FutureCore<T, O> {
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
    pub(super) fn schedule_callbacks(&self, owner: &O) -> Result<()> {
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
}

impl<T, O> FutureCore<T, O> {
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
}
