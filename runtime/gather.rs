//! `gather` and `ensure_future`. Mirrors `gather`, `_GatheringFuture` and
//! `ensure_future` in `Lib/asyncio/tasks.py`.
//!
//! Each argument becomes a [`Child`]: a task (a plain Rust future is wrapped
//! in one with `create_task`, as `ensure_future` wraps a coroutine) or a
//! [`Future`] kept as it is. Every child gets a done callback
//! (`_done_callback`) that counts finished children and completes the
//! *outer* future; the awaiting task registers the gathering state as its
//! `fut_waiter`, so cancelling that task cancels every child
//! (`_GatheringFuture.cancel`).
//!
//! # Invariants
//! - Results come back in argument order, whatever the completion order (K1).
//! - Without `return_exceptions`, the first child error (or cancellation)
//!   completes the outer future; later child errors are marked retrieved.
//!   The error is then the gather's: if no poll of the decided gather took
//!   it, it is reported when the gathering state goes (F3). *Deviation:* a
//!   gather that ends `Cancelled` is not reported, awaited or not (F3:
//!   cancellation is never reported); asyncio fails its outer future with
//!   the `CancelledError` and so reports an unawaited cancelled gather as
//!   "_GatheringFuture exception was never retrieved".
//! - With `return_exceptions`, every child's error is marked retrieved when
//!   the last child is done (asyncio's results list), awaited or not.
//! - A gather whose cancel reached at least one child (`cancel_requested`)
//!   ends with `Cancelled`, even if every child swallowed its cancel; its
//!   message is the last child's (asyncio's `_make_cancelled_error()` of
//!   it: the message of its cancel, swallowed or not).
//! - Callbacks only run through `call_soon`, so `return_exceptions()` set
//!   right after `gather()` is seen by every callback.
//! - The gather's notification is on each child before the next child is
//!   made (asyncio adds `_done_callback` child by child): under the eager
//!   factory, where making a child runs its body, through a `LateNotify`
//!   that passes it on to the gathering state once that exists.
//! - Children done when the gather is made are counted at the first look
//!   at it (a poll, `done()`, a cancel, a notification), before anything
//!   else, as asyncio 3.12 counts them in `gather()` itself; each child is
//!   counted exactly once (their waiting notifications are skipped).
//! - A task the gather made for a plain future is not reported if the loop
//!   closes with it pending (asyncio's `fut._log_destroy_pending = False`);
//!   a task the caller passed in still is.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, ExceptionContext};
use crate::futures::{CallbackId, Cancel, Future, Notify};
use crate::tasks::{self, create_task, Task};

// ===== Child: a task or a future =====

/// Something a combinator waits for: a [`Task`] or a [`Future`]
/// (asyncio's "awaitable after `ensure_future`").
pub enum Child<T> {
    /// A task (a plain Rust future was wrapped in one).
    Task(Task<T>),
    /// A future, watched as it is.
    Future(Future<T>),
}

impl<T> Clone for Child<T> {
    fn clone(&self) -> Self {
        match self {
            Child::Task(t) => Child::Task(t.clone()),
            Child::Future(f) => Child::Future(f.clone()),
        }
    }
}

/// asyncio's `ensure_future`: a [`Task`] is returned as it is, anything else
/// is wrapped in a new task on the running loop.
///
/// ```
/// tulip::run(async {
///     let t = tulip::ensure_future(async { Ok(1) })?;
///     let same = tulip::ensure_future(t.clone())?;
///     assert!(same.ptr_eq(&t));
///     assert_eq!(t.await?, 1);
///     Ok(())
/// }).unwrap();
/// ```
pub fn ensure_future<T, F>(fut: F) -> Result<Task<T>>
where
    T: 'static,
    F: StdFuture<Output = Result<T>> + 'static,
{
    let mut slot = Some(fut);
    if let Some(t) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Task<T>>>() {
        return Ok(t.take().expect("slot is full"));
    }
    create_task(slot.take().expect("slot is full"))
}

impl<T: Clone + 'static> Child<T> {
    /// Turns an awaitable into a child: a `Task` or a `Future` is used as it
    /// is; any other future is wrapped in a task. If no task can be created
    /// (the loop is closed), the child is a future failed with that error.
    #[inline]
    pub fn new<F>(fut: F) -> Child<T>
    where
        F: StdFuture<Output = Result<T>> + 'static,
    {
        Child::wrap(fut).0
    }

    /// [`Child::new`] for [`gather`] and [`gather!`](crate::gather!): a
    /// task made here for a plain future is marked as asyncio's gather
    /// marks it (`fut._log_destroy_pending = False`: the caller cannot
    /// control it), so a loop closed with it pending does not report it.
    #[doc(hidden)]
    #[inline]
    pub fn for_gather<F>(fut: F) -> Child<T>
    where
        F: StdFuture<Output = Result<T>> + 'static,
    {
        let (child, made) = Child::wrap(fut);
        if made {
            if let Child::Task(t) = &child {
                t.no_log_destroy_pending();
            }
        }
        child
    }

    /// The child, and true if a task was made for it here.
    #[inline]
    fn wrap<F>(fut: F) -> (Child<T>, bool)
    where
        F: StdFuture<Output = Result<T>> + 'static,
    {
        let mut slot = Some(fut);
        let any = &mut slot as &mut dyn Any;
        if let Some(t) = any.downcast_mut::<Option<Task<T>>>() {
            return (Child::Task(t.take().expect("slot is full")), false);
        }
        if let Some(f) = any.downcast_mut::<Option<Future<T>>>() {
            return (Child::Future(f.take().expect("slot is full")), false);
        }
        if let Some(c) = any.downcast_mut::<Option<Child<T>>>() {
            return (c.take().expect("slot is full"), false);
        }
        match create_task(slot.take().expect("slot is full")) {
            Ok(t) => (Child::Task(t), true),
            Err(e) => {
                let f = Future::new();
                let _ = f.set_exception(e);
                (Child::Future(f), false)
            }
        }
    }

    /// The result: `Err(InvalidState)` while pending, `Err(Cancelled)` if
    /// cancelled, the error if it failed.
    pub fn result(&self) -> Result<T> {
        match self {
            Child::Task(t) => t.result(),
            Child::Future(f) => f.result(),
        }
    }
}

impl<T: 'static> Child<T> {
    /// True once done.
    pub fn done(&self) -> bool {
        match self {
            Child::Task(t) => t.done(),
            Child::Future(f) => f.done(),
        }
    }

    /// True if cancelled.
    pub fn cancelled(&self) -> bool {
        match self {
            Child::Task(t) => t.cancelled(),
            Child::Future(f) => f.cancelled(),
        }
    }

    /// Requests cancellation; false if already done.
    pub fn cancel(&self) -> bool {
        self.cancel_msg(None)
    }

    fn cancel_msg(&self, msg: Option<Arc<str>>) -> bool {
        match (self, msg) {
            (Child::Task(t), Some(m)) => t.cancel_with(m),
            (Child::Task(t), None) => t.cancel(),
            (Child::Future(f), m) => f.cancel_with(m),
        }
    }

    /// The error it failed with (asyncio's `exception()`).
    pub fn exception(&self) -> Result<Option<Error>> {
        match self {
            Child::Task(t) => t.exception(),
            Child::Future(f) => f.exception(),
        }
    }

    /// asyncio's `_cancel_message`: a task's last must_cancel message; a
    /// future keeps a message only by being cancelled.
    pub(crate) fn cancel_message(&self) -> Option<Arc<str>> {
        match self {
            Child::Task(t) => t.cancel_message(),
            Child::Future(_) => None,
        }
    }

    /// The task, if the child is one.
    pub fn task(&self) -> Option<&Task<T>> {
        match self {
            Child::Task(t) => Some(t),
            Child::Future(_) => None,
        }
    }

    /// `Some(error)` if it failed or was cancelled (marks it retrieved).
    pub(crate) fn outcome_error(&self) -> Option<Error> {
        match self.exception() {
            Ok(e) => e,
            Err(e) => Some(e),
        }
    }

    pub(crate) fn on_done(&self, f: impl FnOnce() + 'static) -> CallbackId {
        match self {
            Child::Task(t) => t.add_done_hook(f),
            Child::Future(fu) => fu.add_done_hook(f),
        }
    }

    /// Registers `n.notify(index)` as a done callback, with no allocation.
    /// Returns true if the child was done (the notification is scheduled).
    pub(crate) fn on_notify(&self, n: Rc<dyn Notify>, index: usize) -> bool {
        let index = u32::try_from(index).expect("more than 4 billion children");
        match self {
            Child::Task(t) => t.add_notify(n, index),
            Child::Future(fu) => fu.add_notify(n, index),
        }
    }

    /// The loop the child belongs to.
    pub(crate) fn loop_ref(&self) -> &EventLoop {
        match self {
            Child::Task(t) => t.loop_ref(),
            Child::Future(f) => &f.core.lp,
        }
    }

    pub(crate) fn remove_done_callback(&self, id: CallbackId) -> usize {
        match self {
            Child::Task(t) => t.remove_done_callback(id),
            Child::Future(f) => f.remove_done_callback(id),
        }
    }
}

impl<T: Clone + 'static> StdFuture for Child<T> {
    type Output = Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match self.get_mut() {
            Child::Task(t) => Pin::new(t).poll(cx),
            Child::Future(f) => Pin::new(f).poll(cx),
        }
    }
}

impl<T> fmt::Debug for Child<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Child::Task(t) => fmt::Debug::fmt(t, f),
            Child::Future(fu) => fmt::Debug::fmt(fu, f),
        }
    }
}

pub(crate) mod sealed {
    use super::*;

    // ===== the gathering state =====

    /// asyncio's `_GatheringFuture` plus the `_done_callback` closure state.
    /// Generic over the set of children, so that a child costs no more than
    /// its one done callback.
    pub struct GatherCore<S> {
        /// Done when the gather is decided; the outcome is in `error`.
        pub(crate) outer: Future<()>,
        pub(crate) set: S,
        pub(crate) nfinished: Cell<usize>,
        pub(crate) return_exceptions: Cell<bool>,
        pub(crate) cancel_requested: Cell<bool>,
        /// The error the gather ends with, if any.
        pub(crate) error: RefCell<Option<Error>>,
        /// Someone awaited the decided gather (asyncio's outer future had
        /// its `result()` taken); an error nobody took is reported.
        pub(crate) retrieved: Cell<bool>,
        /// Some child was done when the gather was made, and no one has
        /// looked at the gather since (see [`settle`](Self::settle)).
        unsettled: Cell<bool>,
        /// Notifications still to come for children `settle` counted.
        settled_notes: Cell<usize>,
    }

    impl<S: GatherSet + 'static> Notify for GatherCore<S> {
        fn notify(&self, index: u32) {
            self.settle();
            let pending = self.settled_notes.get();
            if pending > 0 {
                // This child was counted by `settle` already.
                self.settled_notes.set(pending - 1);
                return;
            }
            self.child_done(index as usize);
        }
    }

    impl<S: GatherSet + 'static> GatherCore<S> {
        pub(crate) fn start(set: S) -> Rc<GatherCore<S>> {
            let core = Self::make(set);
            let some_done = GatherSet::watch(&core);
            core.unsettled.set(some_done);
            core
        }

        /// [`start`](Self::start) for children that were watched through
        /// `late` as they were made (see [`gather`](super::gather)).
        pub(crate) fn start_watched(set: S, late: &LateNotify, some_done: bool) -> Rc<Self> {
            let core = Self::make(set);
            core.unsettled.set(some_done);
            let _ = late.core.set(core.clone());
            core
        }

        /// The gathering state, its children not watched yet.
        fn make(set: S) -> Rc<GatherCore<S>> {
            // asyncio: `outer = _GatheringFuture(children, loop=loop)`, the
            // loop of the children, whichever loop is current here.
            let outer = match set.first_loop() {
                Some(lp) => Future::with_loop(lp),
                None => Future::new(),
            };
            let core = Rc::new(GatherCore {
                outer,
                set,
                nfinished: Cell::new(0),
                return_exceptions: Cell::new(false),
                cancel_requested: Cell::new(false),
                error: RefCell::new(None),
                retrieved: Cell::new(false),
                unsettled: Cell::new(false),
                settled_notes: Cell::new(0),
            });
            if core.set.is_empty() {
                let _ = core.outer.set_result(());
            }
            core
        }

        /// asyncio 3.12's gather runs `_done_callback` at once for the
        /// children that are done when it is made (a future already set,
        /// an eager task that finished), after making the outer future: a
        /// gather of done children is done at once. tulip does it at the
        /// first look at the gather instead (a poll, `done()`, a cancel, a
        /// child's notification), because `return_exceptions()` is set
        /// after `gather()` returns; no one can tell the difference.
        ///
        /// Every child done by then has its notification waiting in the
        /// ready queue (a delivered one would have called this first), and
        /// those come before any later child's, in queue order: the next
        /// `settled_notes` notifications are theirs, and are skipped.
        #[inline]
        pub(crate) fn settle(&self) {
            if self.unsettled.get() {
                self.settle_now();
            }
        }

        #[cold]
        #[inline(never)]
        fn settle_now(&self) {
            self.unsettled.set(false);
            for i in 0..self.set.len() {
                if self.set.child_is_done(i) {
                    self.settled_notes.set(self.settled_notes.get() + 1);
                    self.child_done(i);
                }
            }
        }

        /// asyncio's `_done_callback`.
        pub(crate) fn child_done(&self, i: usize) {
            let n = self.nfinished.get() + 1;
            self.nfinished.set(n);
            if self.outer.done() {
                // Decided already: just mark the error retrieved.
                let _ = self.set.outcome_error(i);
                return;
            }
            if !self.return_exceptions.get() {
                if let Some(e) = self.set.outcome_error(i) {
                    *self.error.borrow_mut() = Some(e);
                    let _ = self.outer.set_result(());
                    return;
                }
            }
            if n == self.set.len() {
                if self.return_exceptions.get() {
                    // asyncio builds the results list here, with
                    // `fut.exception()` for each child: every child's error
                    // is retrieved, whether the gather is awaited or not.
                    for j in 0..n {
                        let _ = self.set.outcome_error(j);
                    }
                }
                if self.cancel_requested.get() {
                    // asyncio: `outer.set_exception(fut._make_cancelled_error())`,
                    // `fut` being the last child by then: its cancel's
                    // message comes along, also when that child swallowed
                    // the cancel (its `_cancel_message`, set when the cancel
                    // came as a must_cancel).
                    let last = self.set.len() - 1;
                    let e = match self.set.outcome_error(last) {
                        Some(e) if e.is_cancelled() => e,
                        _ => Error::Cancelled(self.set.cancel_message(last)),
                    };
                    *self.error.borrow_mut() = Some(e);
                }
                let _ = self.outer.set_result(());
            }
        }

        /// `_GatheringFuture.cancel`: cancel every child.
        pub(crate) fn cancel(&self, msg: Option<Arc<str>>) -> bool {
            self.settle();
            if self.outer.done() {
                return false;
            }
            let ret = self.set.cancel_all(msg);
            if ret {
                // Errors set by children now are ignored; the gather will end
                // cancelled once they are all done.
                self.cancel_requested.set(true);
            }
            ret
        }

        pub(crate) fn poll_outer(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
            self.settle();
            if let Some(err) = tasks::take_throw_on(&self.outer.core.lp) {
                // asyncio's __wakeup takes the outer result before it throws,
                // and __step keeps an error that is already a CancelledError
                // (as a future's or a task's poll does).
                if self.outer.core.done() {
                    self.retrieved.set(true);
                    if let Some(e @ Error::Cancelled(_)) = &*self.error.borrow() {
                        return Poll::Ready(Err(e.clone()));
                    }
                }
                return Poll::Ready(Err(err));
            }
            if self.outer.core.done() {
                self.retrieved.set(true);
                return match self.error.borrow().clone() {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Ready(Ok(())),
                };
            }
            // fut_waiter first: a task of another loop must not suspend here.
            tasks::set_fut_waiter_on(&self.outer.core.lp, self.clone())?;
            self.outer.core.add_waker(cx.waker());
            Poll::Pending
        }
    }

    impl<S> Drop for GatherCore<S> {
        fn drop(&mut self) {
            // asyncio: the `_GatheringFuture`'s __del__ (F3). A cancelled
            // gather is not reported (tulip's futures are cancelled, never
            // failed with Cancelled).
            if self.retrieved.get() {
                return;
            }
            if let Some(e) = self.error.get_mut().take() {
                if !e.is_cancelled() {
                    self.outer
                        .core
                        .lp
                        .report_ignoring_interrupt(&ExceptionContext {
                            message: "_GatheringFuture exception was never retrieved".into(),
                            error: Some(e),
                            future: Some("<_GatheringFuture finished>".into()),
                            ..Default::default()
                        });
                }
            }
        }
    }

    impl<S: GatherSet> fmt::Debug for GatherCore<S> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("GatherCore")
                .field("children", &self.set.len())
                .field("nfinished", &self.nfinished.get())
                .finish()
        }
    }

    impl<S: GatherSet + 'static> Cancel for GatherCore<S> {
        fn cancel_waiter(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
            self.cancel(msg)
        }
    }
}
use sealed::GatherCore;

// ===== the typed sets =====

/// The children of a gather and how to read their results: a `Vec` of one
/// type ([`gather`]) or a tuple of several ([`gather!`](crate::gather!)).
pub trait GatherSet: Sized {
    /// The results, when every child succeeded.
    type Output;
    /// One `Result` per child (`return_exceptions`).
    type OutputAll;
    /// How many children.
    fn len(&self) -> usize;
    /// True if there are no children (the gather is done at once).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Registers the gather's notification on every child; true if some
    /// child was done already.
    #[doc(hidden)]
    fn watch(core: &Rc<GatherCore<Self>>) -> bool;
    #[doc(hidden)]
    fn child_is_done(&self, i: usize) -> bool;
    /// The loop of the first child (asyncio's gather takes the outer
    /// future's loop from its children); `None` with no children.
    #[doc(hidden)]
    fn first_loop(&self) -> Option<&EventLoop> {
        None
    }
    #[doc(hidden)]
    fn outcome_error(&self, i: usize) -> Option<Error>;
    #[doc(hidden)]
    fn cancel_all(&self, msg: Option<Arc<str>>) -> bool;
    /// asyncio's `_cancel_message` of child `i`.
    #[doc(hidden)]
    fn cancel_message(&self, i: usize) -> Option<Arc<str>>;
    #[doc(hidden)]
    fn collect(&self) -> Result<Self::Output>;
    #[doc(hidden)]
    fn collect_all(&self) -> Self::OutputAll;
}

impl<T: Clone + 'static> GatherSet for Vec<Child<T>> {
    type Output = Vec<T>;
    type OutputAll = Vec<Result<T>>;
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn first_loop(&self) -> Option<&EventLoop> {
        self.first().map(Child::loop_ref)
    }
    fn watch(core: &Rc<GatherCore<Self>>) -> bool {
        let mut some_done = false;
        for (i, child) in core.set.iter().enumerate() {
            // No allocation per child: the child's own cell runs the
            // notification when its turn in the ready queue comes.
            some_done |= child.on_notify(core.clone(), i);
        }
        some_done
    }
    fn child_is_done(&self, i: usize) -> bool {
        self[i].done()
    }
    fn outcome_error(&self, i: usize) -> Option<Error> {
        self[i].outcome_error()
    }
    fn cancel_message(&self, i: usize) -> Option<Arc<str>> {
        self[i].cancel_message()
    }
    fn cancel_all(&self, msg: Option<Arc<str>>) -> bool {
        let mut ret = false;
        for child in self {
            if child.cancel_msg(msg.clone()) {
                ret = true;
            }
        }
        ret
    }
    fn collect(&self) -> Result<Vec<T>> {
        // Not `.map(..).collect::<Result<Vec<_>>>()`: its size hint is 0,
        // so the vector would grow by doubling, copying every result again.
        let mut out = Vec::with_capacity(self.len());
        for child in self {
            out.push(child.result()?);
        }
        Ok(out)
    }
    fn collect_all(&self) -> Vec<Result<T>> {
        self.iter().map(Child::result).collect()
    }
}

macro_rules! tuple_gather_set {
    ($n:literal; $($T:ident $i:tt),+) => {
        impl<$($T: Clone + 'static),+> GatherSet for ($(Child<$T>,)+) {
            type Output = ($($T,)+);
            type OutputAll = ($(Result<$T>,)+);
            fn len(&self) -> usize {
                $n
            }
            fn first_loop(&self) -> Option<&EventLoop> {
                Some(self.0.loop_ref())
            }
            fn watch(core: &Rc<GatherCore<Self>>) -> bool {
                let mut some_done = false;
                $(some_done |= core.set.$i.on_notify(core.clone(), $i);)+
                some_done
            }
            fn child_is_done(&self, i: usize) -> bool {
                $(if i == $i {
                    return self.$i.done();
                })+
                false
            }
            fn outcome_error(&self, i: usize) -> Option<Error> {
                $(if i == $i {
                    return self.$i.outcome_error();
                })+
                None
            }
            fn cancel_message(&self, i: usize) -> Option<Arc<str>> {
                $(if i == $i {
                    return self.$i.cancel_message();
                })+
                None
            }
            fn cancel_all(&self, msg: Option<Arc<str>>) -> bool {
                let mut ret = false;
                $(if self.$i.cancel_msg(msg.clone()) {
                    ret = true;
                })+
                ret
            }
            fn collect(&self) -> Result<Self::Output> {
                Ok(($(self.$i.result()?,)+))
            }
            fn collect_all(&self) -> Self::OutputAll {
                ($(self.$i.result(),)+)
            }
        }
    };
}

tuple_gather_set!(1; A 0);
tuple_gather_set!(2; A 0, B 1);
tuple_gather_set!(3; A 0, B 1, C 2);
tuple_gather_set!(4; A 0, B 1, C 2, D 3);
tuple_gather_set!(5; A 0, B 1, C 2, D 3, E 4);
tuple_gather_set!(6; A 0, B 1, C 2, D 3, E 4, F 5);
tuple_gather_set!(7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_gather_set!(8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

// ===== gather =====

/// asyncio's `gather(*aws)`: runs the awaitables concurrently and returns
/// their results in argument order (K1).
///
/// The children start at once (they are tasks). Awaiting the gather gives
/// `Ok(results)`, or the first error. Cancelling the gather, or the task
/// awaiting it, cancels every child. Call
/// [`return_exceptions`](Gather::return_exceptions) to get one `Result` per
/// child instead. For awaitables of different types, use
/// [`gather!`](crate::gather!).
///
/// ```
/// tulip::run(async {
///     async fn double(x: u32) -> tulip::Result<u32> {
///         tulip::sleep(0.001 * f64::from(3 - x)).await?;
///         Ok(2 * x)
///     }
///     let out = tulip::gather((1..=3).map(double)).await?;
///     assert_eq!(out, vec![2, 4, 6]);
///     Ok(())
/// }).unwrap();
/// ```
pub fn gather<T, F, I>(futs: I) -> Gather<Vec<Child<T>>>
where
    T: Clone + 'static,
    F: StdFuture<Output = Result<T>> + 'static,
    I: IntoIterator<Item = F>,
{
    let watch = GatherWatch::new();
    let set: Vec<Child<T>> = futs
        .into_iter()
        .map(|f| watch.child(Child::for_gather(f)))
        .collect();
    watch.finish(set)
}

/// How [`gather`] and [`gather!`](crate::gather!) make their children:
/// asyncio adds the gather's done callback to each child as soon as it has
/// made it, so a child that starts eagerly and registers on an earlier
/// child (say, with a gather of its own) comes after this gather there.
/// Under the eager factory the notification is registered child by child,
/// through a `LateNotify`; otherwise no child runs any code before the
/// gather is made, and [`gather_set`] registers them all at once.
#[doc(hidden)]
pub struct GatherWatch {
    late: Option<Rc<LateNotify>>,
    next: Cell<usize>,
    some_done: Cell<bool>,
}

impl fmt::Debug for GatherWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatherWatch")
            .field("eager", &self.late.is_some())
            .finish()
    }
}

impl GatherWatch {
    /// Looks at the running loop's task factory.
    #[doc(hidden)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> GatherWatch {
        let eager = crate::event_loop::try_running_loop()
            .is_some_and(|lp| lp.task_factory() == crate::event_loop::TaskFactory::Eager);
        GatherWatch {
            late: eager.then(Rc::default),
            next: Cell::new(0),
            some_done: Cell::new(false),
        }
    }

    /// Registers the gather on `child`, the next one, if it must be now.
    #[doc(hidden)]
    pub fn child<T: 'static>(&self, child: Child<T>) -> Child<T> {
        if let Some(late) = &self.late {
            let i = self.next.get();
            self.next.set(i + 1);
            if child.on_notify(late.clone(), i) {
                self.some_done.set(true);
            }
        }
        child
    }

    /// The gather of the children made through [`child`](Self::child).
    #[doc(hidden)]
    pub fn finish<S: GatherSet + 'static>(self, set: S) -> Gather<S> {
        match self.late {
            Some(late) => Gather {
                core: GatherCore::start_watched(set, &late, self.some_done.get()),
            },
            None => gather_set(set),
        }
    }
}

/// A gather's notification registered on a child before the gathering
/// state exists (under the eager factory, see [`gather`]): it passes the
/// notification on once the state is made, which is before any can run
/// (notifications run from the ready queue, and `gather` makes the state
/// before it returns).
#[derive(Default)]
pub(crate) struct LateNotify {
    core: std::cell::OnceCell<Rc<dyn Notify>>,
}

impl Notify for LateNotify {
    fn notify(&self, index: u32) {
        if let Some(core) = self.core.get() {
            core.notify(index);
        }
    }
}

/// `gather` over any [`GatherSet`] (what [`gather!`](crate::gather!) calls).
pub fn gather_set<S: GatherSet + 'static>(set: S) -> Gather<S> {
    Gather {
        core: GatherCore::start(set),
    }
}

/// asyncio's `gather` for awaitables of different types: the result is a
/// tuple (up to 8 items).
///
/// ```
/// tulip::run(async {
///     let (n, s) = tulip::gather!(async { Ok(1) }, async { Ok("one") }).await?;
///     assert_eq!((n, s), (1, "one"));
///     Ok(())
/// }).unwrap();
/// ```
#[macro_export]
macro_rules! gather {
    ($($f:expr),+ $(,)?) => {{
        let watch = $crate::gather::GatherWatch::new();
        let set = ($(watch.child($crate::Child::for_gather($f)),)+);
        watch.finish(set)
    }};
}

/// What [`gather`] returns: a future of all the results.
#[must_use = "the children run anyway; await the gather to get their results"]
pub struct Gather<S> {
    core: Rc<GatherCore<S>>,
}

impl<S: GatherSet + 'static> Gather<S> {
    /// asyncio's `return_exceptions=True`: every child's outcome comes back
    /// as a `Result`, in order; a child error does not end the gather. A
    /// cancelled child gives `Err(Cancelled)`.
    pub fn return_exceptions(self) -> GatherAll<S> {
        self.core.return_exceptions.set(true);
        GatherAll { inner: self }
    }

    /// Cancels every child that is not done (asyncio's `outer.cancel()`).
    /// Returns true if any child was cancelled.
    pub fn cancel(&self) -> bool {
        self.core.cancel(None)
    }

    /// True once the gather is decided.
    pub fn done(&self) -> bool {
        self.core.settle();
        self.core.outer.done()
    }

    /// The children, in argument order.
    pub fn children(&self) -> &S {
        &self.core.set
    }
}

impl<S: GatherSet + Unpin + 'static> StdFuture for Gather<S> {
    type Output = Result<S::Output>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.core.poll_outer(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(self.core.set.collect()),
        }
    }
}

/// What [`Gather::return_exceptions`] returns.
#[must_use = "the children run anyway; await the gather to get their results"]
pub struct GatherAll<S> {
    inner: Gather<S>,
}

impl<S: GatherSet + 'static> GatherAll<S> {
    /// Cancels every child that is not done.
    pub fn cancel(&self) -> bool {
        self.inner.cancel()
    }

    /// True once every child is done.
    pub fn done(&self) -> bool {
        self.inner.done()
    }
}

impl<S: GatherSet + Unpin + 'static> StdFuture for GatherAll<S> {
    type Output = Result<S::OutputAll>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.inner.core.poll_outer(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(self.inner.core.set.collect_all())),
        }
    }
}

impl<S: GatherSet> fmt::Debug for Gather<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<_GatheringFuture {} children={} finished={}>",
            if self.core.outer.done() {
                "done"
            } else {
                "pending"
            },
            self.core.set.len(),
            self.core.nfinished.get()
        )
    }
}

impl<S: GatherSet> fmt::Debug for GatherAll<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}
