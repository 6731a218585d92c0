//! The event loop. Mirrors `BaseEventLoop` in `Lib/asyncio/base_events.py`.
//! The reader/writer half of `BaseSelectorEventLoop` (`add_reader` and
//! friends) lives beside the reactor, in `reactor.rs`.
//!
//! The loop owns three queues: `ready`, a FIFO of things to run now;
//! `scheduled`, a min-heap of timers; and the reactor's registrations. One
//! pass of [`EventLoop::run_once`] moves work between them; see
//! ARCHITECTURE.md for its life story.
//!
//! # Invariants
//! - `run_once` is the only place where callbacks and task steps are *called*.
//!   It runs exactly the entries that were in `ready` when its step 5 began
//!   (conformance L2); what they schedule runs in the next iteration.
//!   Called by hand, it refuses a closed loop and a running one (L4, L5),
//!   so iterations never nest.
//! - No `RefCell` borrow of loop state is held while a callback runs, a task
//!   steps, or a waker is woken.
//! - `timer_cancelled_count` counts the cancelled timers the loop still
//!   holds: in `scheduled`, or due and waiting in `ready` for this
//!   iteration's step 5 (a timer's entry uncounts it when step 5 skips it,
//!   and an [`Interrupt`] that ends step 5 early uncounts those it leaves).
//!   So at step 1 it counts exactly the cancelled timers in the heap, as
//!   asyncio's `_timer_cancelled_count` does. The heap is rebuilt when it holds
//!   more than `MIN_SCHEDULED_TIMER_HANDLES` timers and more than
//!   `MIN_CANCELLED_TIMER_HANDLES_FRACTION` of them are cancelled; otherwise
//!   cancelled timers are popped from the head (T2).
//! - Due timers reach `ready` in `(when, seq)` order (T1), whether step 4
//!   pops them one by one or takes a batch in one pass.
//! - A panic in a callback never unwinds out of `run_once`: it goes to the
//!   exception handler (L6). The one exception is [`Interrupt`], asyncio's
//!   `KeyboardInterrupt`, raised by the callback or by the exception handler
//!   it went to, which ends `run_forever` with [`Error::Interrupted`] and
//!   leaves the loop reusable (L7).
//! - Reporting never unwinds: a custom exception handler that panics falls
//!   back to the default one, and a default one that panics (printing an
//!   error whose `Display` panics) is reported as such on stderr.
//! - `close()` always finishes: a panic in the `Drop` of something it
//!   drops (a callback's closure, a task's context, a protocol) is
//!   reported, and the rest is still dropped and released.
//! - Past `KEEP_QUEUE_CAPACITY` (64k entries), an emptied ready queue or
//!   timer heap holds no memory, and a swept heap at most twice what it
//!   holds, from the first time after the burst that the loop waits at
//!   least `GIVE_BACK_MIN_WAIT` (0.1 s) or has no timer: a burst does not
//!   keep its peak for the life of the loop, and a busy loop does not stop
//!   to hand memory back.
//! - The loop is `!Send` (it is built on `Rc`), so loop calls from another
//!   thread are rejected at compile time; [`LoopHandle`] is the only door.
//! - `internal_refs` counts the strong references held by the loop's own
//!   machinery (`LoopRef`: futures, tasks, transports, servers). When an
//!   [`EventLoop`] is dropped and every other strong reference is one of
//!   those, no user can reach the loop any more, and it is closed then
//!   (asyncio's `BaseEventLoop.__del__`), which breaks the cycles through
//!   its tasks and callbacks.

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::contextvars::Context;
use crate::error::{callback_error, panic_message, Error, Result};
use crate::events::{Delay, Handle, TimerHandle, TimerState};
use crate::reactor::{Reactor, WAKER_TOKEN};
use crate::selector_transport::{FdOwner, LoopClosed};
use crate::sys;
use crate::tasks::{AnyTask, Task};
use crate::threadsafe::{LoopHandle, Remote, Shared};

/// The most entries the ready queue and the timer heap keep room for once
/// a burst is over (64k: 1 MiB of ready entries, 2 MiB of timer entries).
/// Past it, an emptied queue or heap gives its memory back, and a swept
/// heap keeps at most twice what it holds, once the loop is idle (see
/// `give_back_memory`): a million callbacks or timers once must not hold
/// their peak for the life of the loop.
const KEEP_QUEUE_CAPACITY: usize = 1 << 16;

/// The shortest wait in which the loop gives a burst's memory back (see
/// `give_back_memory`): a loop with work due sooner is still busy.
const GIVE_BACK_MIN_WAIT: Duration = Duration::from_millis(100);

/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`.
pub const MIN_SCHEDULED_TIMER_HANDLES: usize = 100;
/// asyncio's `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
pub const MIN_CANCELLED_TIMER_HANDLES_FRACTION: f64 = 0.5;
/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: 24 hours.
pub const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// While callbacks keep the ready queue non-empty, the loop polls the OS for
/// I/O only every this many iterations (and on every iteration that may
/// block). asyncio polls on every iteration; a zero-timeout `epoll_wait` costs
/// more than a whole callback here, so tulip borrows tokio's
/// `event_interval` (61) to keep callback chains fast. Timers and
/// cross-thread work are still checked on every iteration.
pub const IO_POLL_INTERVAL: u32 = 61;
/// Below this many timers in the heap, `run_once` always pops the due ones
/// one by one: a small heap stays in cache, and a pass would not pay.
const SORT_DUE_TIMERS_MIN: usize = 64;
/// Once `run_once` has popped at least `1 / PARTITION_AFTER_FRACTION` of
/// the heap's size in one iteration and more are due, it takes the rest in
/// one pass ([`take_due_in_one_pass`]). The pass costs O(n) sequential work,
/// so it is paid only after at least n/32 pops of O(log n) cache misses each.
const PARTITION_AFTER_FRACTION: usize = 32;
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

/// Something the ready queue can hold: a callback's handle cell, or a task
/// (asyncio schedules `task.__step` as a Handle; tulip pushes the task
/// itself). One trait object, 16 bytes per queue entry.
pub(crate) trait Runnable {
    /// Runs the entry once: calls the callback, or steps the task. Only
    /// `run_once`'s step 5 calls it. `Err` only for [`Interrupt`].
    fn run_ready(self: Rc<Self>, lp: &EventLoop) -> Result<()>;

    /// The loop closes with the entry still queued: drop whatever it would
    /// have run (a future's pending notifications, which would otherwise
    /// keep the future and its gather or TaskGroup alive, each holding
    /// the other).
    fn discard(&self) {}

    /// An [`Interrupt`] cut step 5 short with the entry still queued: a due
    /// timer's entry leaves the loop's hands now, as its `run_ready` would
    /// have done (asyncio's step 4 has cleared `_scheduled` by then).
    fn unschedule(&self) {}
}

/// An entry of the ready queue.
pub(crate) type Ready = Rc<dyn Runnable>;

/// An entry of the timer heap, ordered by `(when, seq)` so that ties keep
/// their scheduling order (T1). Both live in one integer `key`: `when`'s
/// bits mapped to an order-preserving `u64` (the mapping `f64::total_cmp`
/// applies on every comparison, done once here) in the high half and `seq`
/// in the low half, so a heap comparison is one integer comparison.
/// `total_cmp` puts -0.0 before 0.0, where asyncio's `<` sees one deadline,
/// so -0.0 is made 0.0 first: the two tie, in scheduling order (T1).
struct TimerEntry {
    key: u128,
    handle: Handle,
}

impl TimerEntry {
    fn new(when: f64, seq: u64, handle: Handle) -> TimerEntry {
        // -0.0 + 0.0 is 0.0; every other `when` is unchanged.
        let bits = (when + 0.0).to_bits() as i64;
        let ordered = (bits ^ (((bits >> 63) as u64) >> 1) as i64) as u64 ^ (1 << 63);
        TimerEntry {
            key: (u128::from(ordered) << 64) | u128::from(seq),
            handle,
        }
    }

    /// The deadline, decoded from the key.
    fn when(&self) -> f64 {
        let ordered = ((self.key >> 64) as u64 ^ (1 << 63)) as i64;
        f64::from_bits((ordered ^ (((ordered >> 63) as u64) >> 1) as i64) as u64)
    }
}

impl PartialEq for TimerEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for TimerEntry {}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TimerEntry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest timer.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.key.cmp(&self.key)
    }
}

/// Takes every timer due before `end_time` out of `heap` in one pass, in
/// pop order, into `ready`, and leaves the others as a heap: a sequential
/// scan that moves the not-due entries to the front, a sort of the due ones
/// where they stand, and an O(n) heapify of the rest. Handles are not
/// touched (cancelled ones are sorted out when their entry runs), so the
/// scan reads only the keys.
///
/// Nothing is allocated: the due entries leave through `drain`. A big
/// allocation here would cost more than the sort, because glibc first
/// consolidates its fast bins, which by now hold every cancelled timer the
/// heap let go of: a walk over half a million scattered chunks.
fn take_due_in_one_pass(
    heap: &mut BinaryHeap<TimerEntry>,
    end_time: f64,
    ready: &mut VecDeque<Ready>,
) {
    let mut all = std::mem::take(heap).into_vec();
    let mut kept = 0;
    for i in 0..all.len() {
        if all[i].when() >= end_time {
            all.swap(kept, i);
            kept += 1;
        }
    }
    all[kept..].sort_unstable_by(|a, b| b.cmp(a)); // `Ord` is reversed for the heap
    ready.extend(all.drain(kept..).map(|e| e.handle.into_ready()));
    *heap = BinaryHeap::from(all);
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

/// Which task factory `create_task` uses (asyncio's `loop.set_task_factory`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TaskFactory {
    /// Tasks are scheduled and first run on the next iteration.
    #[default]
    Default,
    /// asyncio 3.12's `eager_task_factory`: a new task runs synchronously in
    /// `create_task` until its first suspension (C6).
    Eager,
}

pub(crate) struct LoopInner {
    pub(crate) ready: RefCell<VecDeque<Ready>>,
    scheduled: RefCell<BinaryHeap<TimerEntry>>,
    timer_cancelled_count: Rc<Cell<usize>>,
    timer_seq: Cell<u64>,
    /// No timer in `scheduled` is due later than this (an upper bound:
    /// exact after pushes, stale-high after pops; reset when the heap empties).
    timer_max_when: Cell<f64>,
    stopping: Cell<bool>,
    running: Cell<bool>,
    closed: Cell<bool>,
    /// Iterations since the last real `epoll_wait`.
    since_io_poll: Cell<u32>,
    /// Counts the ready entries run (and the callback failures reported):
    /// a context that a callback with none made for its `set` is that
    /// callback's only while this stays the same (`contextvars.rs`).
    pub(crate) entry_seq: Cell<u64>,
    /// A burst left the ready queue or the timer heap with more room than
    /// it keeps: give it back the next time the loop has nothing ready.
    give_back: Cell<bool>,
    pub(crate) reactor: RefCell<Reactor>,
    pub(crate) shared: Arc<Shared>,
    /// The loop owns every pending task (C4); the key is the task's waker token.
    pub(crate) tasks: RefCell<Slab<Rc<dyn AnyTask>>>,
    /// The task whose step is running (asyncio's `_current_tasks[loop]`).
    pub(crate) current_task: RefCell<Option<Rc<dyn AnyTask>>>,
    exception_handler: RefCell<Option<ExceptionHandler>>,
    debug: Cell<bool>,
    slow_callback_duration: Cell<f64>,
    pub(crate) task_factory: Cell<TaskFactory>,
    /// Hooks run by `close()` (the default executor's shutdown, the signal
    /// wake-up fd, the child watcher), most recent first.
    pub(crate) on_close: RefCell<Vec<Box<dyn FnOnce()>>>,
    /// Per-loop extension slots for other modules (signal table, child
    /// watcher, default executor), keyed by type.
    pub(crate) extensions: RefCell<Vec<Rc<dyn std::any::Any>>>,
    /// Task wakers no one holds any more, for the next tasks (tasks.rs).
    pub(crate) waker_pool: crate::tasks::WakerPool,
    /// How many of the strong references are `LoopRef`s.
    internal_refs: Cell<usize>,
    /// Transports to release when the loop closes (see `selector_transport`).
    until_close: RefCell<Slab<Weak<dyn LoopClosed>>>,
    /// asyncio's `_transports`: the socket transport of each fd, from its
    /// creation until its connection is lost, for `_ensure_fd_no_transport`
    /// (see `reactor.rs`). Touched once when a connection starts and once
    /// when it ends, never on its reads and writes.
    pub(crate) transports: RefCell<HashMap<RawFd, Weak<dyn FdOwner>>>,
}

/// The event loop: asyncio's `BaseEventLoop`.
///
/// `EventLoop` is a cheap, clonable reference (`Rc`) to one loop. It is
/// `!Send`: everything on it runs on one thread. Use [`LoopHandle`] to reach
/// it from other threads.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// let lp = tulip::EventLoop::new().unwrap();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// for i in 0..3 {
///     let log = log.clone();
///     lp.call_soon(move || log.borrow_mut().push(i)).unwrap();
/// }
/// let stopper = lp.clone();
/// lp.call_later(0.01, move || stopper.stop()).unwrap();
/// lp.run_forever().unwrap();
/// assert_eq!(*log.borrow(), [0, 1, 2]);
/// lp.close().unwrap();
/// ```
#[derive(Clone)]
pub struct EventLoop {
    pub(crate) inner: Rc<LoopInner>,
}

/// asyncio's `BaseEventLoop.__del__`: a loop dropped without
/// [`close`](EventLoop::close) is closed when the last handle a user could
/// reach it by goes away (its pending tasks are destroyed and reported, its
/// file descriptors closed). In debug mode this is reported on stderr, as
/// asyncio's `ResourceWarning("unclosed event loop")`.
///
/// An `EventLoop` handle is what keeps a loop open; the references of the
/// loop's own machinery (futures, tasks, transports, servers) are not
/// counted, so a [`Task`]'s or a [`Future`](crate::Future)'s `get_loop()`
/// gives the closed loop once the last handle is gone (in CPython the task
/// would keep the loop alive). The other way round, a task body or a
/// callback that keeps an `EventLoop` of its own keeps the loop open, as
/// such a cycle does in CPython until its collector runs. Call `close()`
/// (or use [`run`](crate::run)) to be sure.
impl Drop for EventLoop {
    #[inline]
    fn drop(&mut self) {
        let inner = &self.inner;
        if Rc::strong_count(inner) == 1 + inner.internal_refs.get()
            && !inner.closed.get()
            && !inner.running.get()
        {
            self.close_unreachable();
        }
    }
}

impl EventLoop {
    #[cold]
    #[inline(never)]
    fn close_unreachable(&self) {
        // While the thread's locals are being destroyed (a loop left in
        // `set_event_loop` at thread exit), closing could touch a destroyed
        // one; the thread is ending, so the loop is left as it is.
        if RUNNING.try_with(|_| ()).is_err() || CURRENT.try_with(|_| ()).is_err() {
            return;
        }
        if self.debug() {
            eprintln!("tulip: unclosed event loop {self:?} dropped: closing it");
        }
        let _ = self.close();
    }
}

/// The loop itself goes, closed or not: a loop dropped with its thread's
/// locals (one left in `set_event_loop`) cannot be closed there (see
/// `close_unreachable`). Its [`LoopHandle`]s outlive it, so they must
/// learn it is gone: the shared state is marked closed, and later calls
/// are refused, as they are once asyncio's `__del__` has closed a loop.
/// What other threads sent meanwhile is dropped, not left in the channel
/// for ever (it may hold a handle, and so the channel itself).
impl Drop for LoopInner {
    fn drop(&mut self) {
        self.shared.close();
        self.shared.drop_pending("a dropped loop");
    }
}

/// A strong reference to a loop held by the loop's own machinery (a
/// future's or task's core, a transport, a server): it does not keep the
/// loop open for users (see [`EventLoop`]'s `Drop`). It derefs to the loop.
pub(crate) struct LoopRef(EventLoop);

impl LoopRef {
    pub(crate) fn new(lp: EventLoop) -> LoopRef {
        let n = &lp.inner.internal_refs;
        n.set(n.get() + 1);
        LoopRef(lp)
    }

    /// A handle of the user's kind (for `get_loop()`).
    pub(crate) fn user_handle(&self) -> EventLoop {
        self.0.clone()
    }
}

impl Clone for LoopRef {
    fn clone(&self) -> LoopRef {
        LoopRef::new(self.0.clone())
    }
}

impl Drop for LoopRef {
    #[inline]
    fn drop(&mut self) {
        // Uncounted first: the `EventLoop` inside is dropped next and must
        // not mistake itself for a user's last handle while users remain.
        let n = &self.0.inner.internal_refs;
        n.set(n.get() - 1);
    }
}

impl std::ops::Deref for LoopRef {
    type Target = EventLoop;
    #[inline]
    fn deref(&self) -> &EventLoop {
        &self.0
    }
}

impl fmt::Debug for LoopRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

thread_local! {
    /// The loop running on this thread (asyncio's `_running_loop`).
    static RUNNING: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
    /// The loop set with `set_event_loop` (the policy's loop for this thread).
    static CURRENT: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
}

/// The clock's origin, shared by all loops of the process so that
/// `loop.time()` values can be compared across loops.
fn epoch() -> f64 {
    static EPOCH: OnceLock<f64> = OnceLock::new();
    *EPOCH.get_or_init(sys::monotonic)
}

/// asyncio's `get_running_loop()`: the loop running on this thread.
pub fn get_running_loop() -> Result<EventLoop> {
    RUNNING
        .with(|r| r.borrow().clone())
        .ok_or_else(no_running_loop)
}

/// The error of [`get_running_loop`] outside a running loop.
pub(crate) fn no_running_loop() -> Error {
    Error::runtime(
        "no running event loop: call this from a task or callback, or start a loop with tulip::run",
    )
}

/// Calls `f` with the running loop, without cloning it; `None` if no loop
/// runs on this thread. `f` must not start or stop a loop run.
pub(crate) fn with_running_loop<R>(f: impl FnOnce(&EventLoop) -> R) -> Option<R> {
    RUNNING.with(|r| r.borrow().as_ref().map(f))
}

/// The running loop, if any (asyncio's `_get_running_loop()`).
pub fn try_running_loop() -> Option<EventLoop> {
    RUNNING.with(|r| r.borrow().clone())
}

/// asyncio's `get_event_loop()`: the running loop; else this thread's loop
/// set by [`set_event_loop`], closed or not (as asyncio's policy returns
/// it); else a new loop, which becomes this thread's loop.
///
/// *Deviation:* with no loop set, asyncio 3.12 makes one only on the main
/// thread and only if `set_event_loop` was never called there, and raises
/// otherwise (3.14 always raises); tulip makes one on any thread.
pub fn get_event_loop() -> Result<EventLoop> {
    if let Some(lp) = try_running_loop() {
        return Ok(lp);
    }
    if let Some(lp) = CURRENT.with(|c| c.borrow().clone()) {
        return Ok(lp);
    }
    let lp = EventLoop::new()?;
    set_event_loop(Some(&lp));
    Ok(lp)
}

/// asyncio's `set_event_loop()`: makes `lp` this thread's current loop.
pub fn set_event_loop(lp: Option<&EventLoop>) {
    let old = CURRENT.with(|c| c.replace(lp.cloned()));
    drop(old);
}

/// asyncio's `new_event_loop()`.
pub fn new_event_loop() -> Result<EventLoop> {
    EventLoop::new()
}

/// Calls `f` with the running loop's inner state if it is the loop that owns
/// `shared` (the task waker's fast path). Returns false otherwise.
pub(crate) fn with_running_if(shared: &Arc<Shared>, f: impl FnOnce(&LoopInner)) -> bool {
    RUNNING.with(|r| match &*r.borrow() {
        Some(lp) if Arc::ptr_eq(&lp.inner.shared, shared) => {
            f(&lp.inner);
            true
        }
        _ => false,
    })
}

/// Restores the loop's running state when `run_forever` ends, even by unwinding.
struct RunGuard<'a> {
    lp: &'a EventLoop,
    prev: Option<EventLoop>,
    /// The context `Context::run` entered around this run, put back last.
    _outside: crate::contextvars::OutsideAside,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        // asyncio's run_forever `finally:` block.
        self.lp.inner.stopping.set(false);
        self.lp.inner.running.set(false);
        let prev = self.prev.take();
        let me = RUNNING.with(|r| r.replace(prev));
        drop(me);
    }
}

impl EventLoop {
    /// Creates a loop (asyncio's `new_event_loop()`). Debug mode is on when
    /// the environment variable `TULIP_DEBUG` is set to `1`.
    pub fn new() -> Result<EventLoop> {
        let reactor = Reactor::new()?;
        let waker = mio::Waker::new(reactor.registry(), mio::Token(WAKER_TOKEN))?;
        let debug = std::env::var_os("TULIP_DEBUG").is_some_and(|v| v == "1");
        Ok(EventLoop {
            inner: Rc::new(LoopInner {
                ready: RefCell::new(VecDeque::with_capacity(64)),
                scheduled: RefCell::new(BinaryHeap::new()),
                timer_cancelled_count: Rc::new(Cell::new(0)),
                timer_seq: Cell::new(0),
                timer_max_when: Cell::new(f64::NEG_INFINITY),
                stopping: Cell::new(false),
                running: Cell::new(false),
                closed: Cell::new(false),
                since_io_poll: Cell::new(0),
                entry_seq: Cell::new(0),
                give_back: Cell::new(false),
                reactor: RefCell::new(reactor),
                shared: Arc::new(Shared::new(waker)),
                tasks: RefCell::new(Slab::new()),
                current_task: RefCell::new(None),
                exception_handler: RefCell::new(None),
                debug: Cell::new(debug),
                slow_callback_duration: Cell::new(DEFAULT_SLOW_CALLBACK_DURATION),
                task_factory: Cell::new(TaskFactory::Default),
                on_close: RefCell::new(Vec::new()),
                extensions: RefCell::new(Vec::new()),
                waker_pool: Default::default(),
                internal_refs: Cell::new(0),
                until_close: RefCell::new(Slab::new()),
                transports: RefCell::new(HashMap::new()),
            }),
        })
    }

    /// A `Send + Sync` handle for other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
            shared: self.inner.shared.clone(),
        }
    }

    pub(crate) fn downgrade(&self) -> Weak<LoopInner> {
        Rc::downgrade(&self.inner)
    }

    /// True if both values are the same loop.
    pub fn ptr_eq(&self, other: &EventLoop) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    // ===== running and stopping =====

    /// Runs until [`stop`](EventLoop::stop) is called (asyncio's `run_forever`).
    ///
    /// Fails if the loop is closed, already running, or another loop runs on
    /// this thread (L4). Returns [`Error::Interrupted`] if a callback called
    /// [`interrupt`]; the loop stays usable (L7).
    pub fn run_forever(&self) -> Result<()> {
        self.check_closed()?;
        self.check_running()?;
        self.inner.running.set(true);
        let prev = RUNNING.with(|r| r.replace(Some(self.clone())));
        let _guard = RunGuard {
            lp: self,
            prev,
            _outside: crate::contextvars::put_outside_aside(),
        };
        loop {
            self.iteration()?;
            if self.inner.stopping.get() {
                break;
            }
        }
        Ok(())
    }

    /// Runs until `fut` completes and returns its result (asyncio's
    /// `run_until_complete`). `fut` is wrapped in a task first.
    ///
    /// Fails with "event loop stopped before future completed" if the loop
    /// was stopped first (L4).
    ///
    /// ```
    /// let lp = tulip::EventLoop::new().unwrap();
    /// let n = lp.run_until_complete(async { tulip::sleep(0.001).await?; Ok(6 * 7) }).unwrap();
    /// assert_eq!(n, 42);
    /// assert_eq!(lp.run_until_complete(async { Ok("again") }).unwrap(), "again");
    /// lp.close().unwrap();
    /// assert!(matches!(lp.run_until_complete(async { Ok(()) }), Err(tulip::Error::Closed)));
    /// ```
    pub fn run_until_complete<T, F>(&self, fut: F) -> Result<T>
    where
        T: 'static,
        F: std::future::Future<Output = Result<T>> + 'static,
    {
        self.check_closed()?;
        // Before the task exists: a refused call must leave nothing behind.
        self.check_running()?;
        let task = self.create_task(fut)?;
        // asyncio: `if new_task: future._log_destroy_pending = False`. The
        // caller never has this task: left pending by a stopped run, it is
        // dropped at close without a report.
        task.no_log_destroy_pending();
        self.run_task_until_complete(&task)
    }

    /// The body of `run_until_complete` for a task that already exists
    /// (`run()` creates exactly one task, as asyncio's does).
    pub(crate) fn run_task_until_complete<T: 'static>(&self, task: &Task<T>) -> Result<T> {
        // asyncio's `_run_until_complete_cb`. If run_forever ends some other
        // way (an interrupt, or a `stop()` from the body itself) after the
        // task finished in the same iteration, the callback is already in
        // the ready queue, where `remove_done_callback` can't reach it:
        // `armed` keeps that stale call from stopping the *next* run (L7).
        // asyncio guards only the task's own KeyboardInterrupt (bpo-22429);
        // after a body that calls `loop.stop()` and returns, CPython's next
        // run_until_complete fails with "stopped before future completed".
        // tulip deliberately does not: a stale stop is never wanted.
        let armed = Rc::new(Cell::new(true));
        let (stopper, live) = (self.clone(), armed.clone());
        let cb = task.add_done_callback(move |_| {
            if live.get() {
                stopper.stop()
            }
        });
        let res = self.run_forever();
        armed.set(false);
        task.remove_done_callback(cb);
        if let Err(e) = res {
            if task.done() && !task.cancelled() {
                let _ = task.exception(); // mark retrieved, as asyncio does
            }
            return Err(e);
        }
        if !task.done() {
            return Err(Error::runtime(
                "event loop stopped before future completed: stop() was called while it ran; let the future finish (or cancel it) instead",
            ));
        }
        task.take_result()
    }

    /// Asks the loop to stop after the current iteration (asyncio's `stop`).
    /// Called before `run_forever`, it makes that run exactly one iteration
    /// with a zero poll timeout (L3).
    pub fn stop(&self) {
        self.inner.stopping.set(true);
    }

    /// True while `run_forever`/`run_until_complete` runs.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// True once [`close`](EventLoop::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Closes the loop: drops pending callbacks, timers and registrations,
    /// reports tasks that are still pending ("Task was destroyed but it is
    /// pending!") and drops their bodies, and runs the close hooks (executor, watchers). Fails on a
    /// running loop; closing twice is a no-op (L5). The custom exception
    /// handler is dropped last, after close's own reports: later reports go
    /// to the default handler.
    pub fn close(&self) -> Result<()> {
        if self.inner.running.get() {
            return Err(Error::runtime(
                "cannot close a running event loop: stop it first",
            ));
        }
        if self.inner.closed.replace(true) {
            return Ok(());
        }
        self.inner.shared.close();
        // What is dropped from here on may hold the user's values, whose
        // `Drop` may panic: each drop is guarded (`at_close`), so that one
        // panic neither ends the closing half-way nor, with a second one in
        // the same container, aborts.
        let hooks = std::mem::take(&mut *self.inner.on_close.borrow_mut());
        for hook in hooks.into_iter().rev() {
            self.at_close(hook);
        }
        // Take everything out first, drop it after the borrows end: dropping
        // tasks and futures may call the exception handler.
        let ready = std::mem::take(&mut *self.inner.ready.borrow_mut());
        let timers = std::mem::take(&mut *self.inner.scheduled.borrow_mut());
        let regs = self.inner.reactor.borrow_mut().clear();
        let tasks: Vec<_> = self.inner.tasks.borrow_mut().drain().collect();
        let remote: Vec<_> = self.inner.shared.rx.try_iter().collect();
        let ext = std::mem::take(&mut *self.inner.extensions.borrow_mut());
        for entry in ready {
            self.at_close(|| {
                entry.discard();
                drop(entry);
            });
        }
        for timer in timers.into_vec() {
            self.at_close(|| drop(timer));
        }
        for reg in regs {
            self.at_close(|| drop(reg));
        }
        for msg in remote {
            self.at_close(|| drop(msg));
        }
        for t in &tasks {
            t.destroyed_pending();
        }
        for t in tasks {
            self.at_close(|| drop(t));
        }
        for e in ext {
            self.at_close(|| drop(e));
        }
        let fds = std::mem::take(&mut *self.inner.transports.borrow_mut());
        drop(fds);
        // Transports still open now have no loop to run on: release them.
        let open = std::mem::take(&mut *self.inner.until_close.borrow_mut());
        for (_, resource) in open {
            if let Some(r) = resource.upgrade() {
                self.at_close(|| {
                    r.loop_closed();
                    drop(r);
                });
            }
        }
        // Last, once close's own reports are made: the custom exception
        // handler is the one callback a closed loop would still keep, and
        // one that captured an `EventLoop` would keep the loop (its epoll
        // and wake-up fds) alive for ever. CPython's collector frees that
        // cycle; here close() is the sure way, so it breaks it. Later
        // reports (a future dropped after close) go to the default handler.
        let handler = self.inner.exception_handler.borrow_mut().take();
        drop(handler);
        Ok(())
    }

    /// Runs a step of [`close`](EventLoop::close) that drops what the
    /// user gave the loop: a panic in a `Drop` there is reported and
    /// closing goes on, as CPython prints what a `__del__` raises
    /// ("Exception ignored in ...") and carries on. There is no run to end,
    /// so an [`Interrupt`] is reported too.
    pub(crate) fn at_close(&self, f: impl FnOnce()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            self.report_ignoring_interrupt(&ExceptionContext {
                message: "Exception ignored while closing the event loop".into(),
                error: Some(Error::Panic(panic_message(&*payload))),
                ..Default::default()
            });
        }
    }

    /// Puts `resource` on the list of what [`close`](EventLoop::close)
    /// releases; returns its key for [`untrack`](EventLoop::untrack).
    pub(crate) fn track_until_close(&self, resource: Weak<dyn LoopClosed>) -> usize {
        self.inner.until_close.borrow_mut().insert(resource)
    }

    /// Takes a resource off that list (no-op once the loop has closed).
    pub(crate) fn untrack(&self, key: usize) {
        if !self.inner.closed.get() {
            self.inner.until_close.borrow_mut().try_remove(key);
        }
    }

    /// asyncio's `_check_running`: this loop must not be running, and no
    /// other loop may run on this thread (L4).
    fn check_running(&self) -> Result<()> {
        if self.inner.running.get() {
            return Err(Error::runtime(
                "this event loop is already running: from inside it, await the work or schedule it with create_task",
            ));
        }
        if try_running_loop().is_some() {
            return Err(Error::runtime(
                "cannot run the event loop while another loop is running on this thread: await the future in that loop, or run this one on another thread",
            ));
        }
        Ok(())
    }

    pub(crate) fn check_closed(&self) -> Result<()> {
        if self.inner.closed.get() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// asyncio's `loop.time()`: a monotonic clock, in seconds.
    pub fn time(&self) -> f64 {
        let origin = epoch(); // first, so the first reading is not negative
        sys::monotonic() - origin
    }

    // ===== scheduling callbacks =====

    /// Schedules `f` to run on the next iteration (asyncio's `call_soon`).
    /// Callbacks run in the order they were scheduled (L1).
    ///
    /// As asyncio's `Handle` takes `copy_context()`, `f` runs in a snapshot
    /// of the [context values](crate::contextvars) current here: it sees
    /// them as they are now, and what it sets stays in its own copy. With
    /// no value current, it starts with none, and its first `set` gives it
    /// an empty one of its own.
    #[track_caller]
    pub fn call_soon<F: FnOnce() + 'static>(&self, f: F) -> Result<Handle> {
        self.check_closed()?;
        let h = match crate::contextvars::callback_context() {
            None => Handle::once(f, Location::caller()),
            Some(ctx) => Handle::once_in(f, ctx, Location::caller()),
        };
        self.inner
            .ready
            .borrow_mut()
            .push_back(h.clone().into_ready());
        Ok(h)
    }

    /// asyncio's `call_soon(callback, context=ctx)`: schedules `f` to run
    /// in `ctx` itself, not in a snapshot of the current values, so what
    /// `f` sets stays in `ctx` for every holder of it (a later
    /// [`Context::run`], a task created with it). As in asyncio, if `ctx`
    /// is entered when `f`'s turn comes (inside a [`Context::run`] of it
    /// around the loop's run, or the context of a task that is running),
    /// `f` does not run, and the loop reports the error to its exception
    /// handler.
    ///
    /// ```
    /// use tulip::{Context, ContextVar};
    /// static N: ContextVar<u32> = ContextVar::new("n");
    ///
    /// let lp = tulip::EventLoop::new().unwrap();
    /// let ctx = Context::new();
    /// lp.call_soon_in(ctx.clone(), || { N.set(7).unwrap(); }).unwrap();
    /// lp.call_soon({ let lp = lp.clone(); move || lp.stop() }).unwrap();
    /// lp.run_forever().unwrap();
    /// assert_eq!(ctx.get(&N), Some(7)); // set in ctx itself
    /// ```
    #[track_caller]
    pub fn call_soon_in<F: FnOnce() + 'static>(&self, ctx: Context, f: F) -> Result<Handle> {
        self.check_closed()?;
        let h = Handle::once_in(f, ctx, Location::caller());
        self.inner
            .ready
            .borrow_mut()
            .push_back(h.clone().into_ready());
        Ok(h)
    }

    /// Puts an entry at the end of the ready queue: `call_soon` for
    /// something that is already a ready-queue entry (a done callback's
    /// cell, made when it was registered).
    pub(crate) fn push_ready(&self, entry: Ready) -> Result<()> {
        self.check_closed()?;
        self.inner.ready.borrow_mut().push_back(entry);
        Ok(())
    }

    /// Puts an entry back at the head of the queue: one that an
    /// [`Interrupt`] stopped half-way, so that it resumes first, ahead of
    /// the rest of the interrupted iteration (asyncio leaves those in
    /// `_ready`, in order).
    pub(crate) fn push_ready_front(&self, entry: Ready) {
        if !self.inner.closed.get() {
            self.inner.ready.borrow_mut().push_front(entry);
        }
    }

    /// Schedules `f` to run after `delay` (seconds as `f64`, or a
    /// `Duration`). A negative delay means "as soon as possible"; NaN is an error.
    /// `f` runs in a snapshot of the context values current here, as
    /// [`call_soon`](EventLoop::call_soon)'s does.
    #[track_caller]
    pub fn call_later<F: FnOnce() + 'static>(
        &self,
        delay: impl Delay,
        f: F,
    ) -> Result<TimerHandle> {
        self.call_at_located(self.deadline(delay)?, None, f, Location::caller())
    }

    /// The loop time `delay` from now (`call_later`'s `self.time() + delay`).
    fn deadline(&self, delay: impl Delay) -> Result<f64> {
        let delay = delay.as_secs();
        if delay.is_nan() {
            return Err(Error::invalid_argument(
                "delay must not be NaN: give a number of seconds (a negative one means as soon as possible)",
            ));
        }
        Ok(self.time() + delay)
    }

    /// asyncio's `call_later(delay, callback, context=ctx)`:
    /// [`call_later`](EventLoop::call_later) with `f` run in `ctx` itself
    /// (see [`call_soon_in`](EventLoop::call_soon_in)).
    #[track_caller]
    pub fn call_later_in<F: FnOnce() + 'static>(
        &self,
        ctx: Context,
        delay: impl Delay,
        f: F,
    ) -> Result<TimerHandle> {
        self.call_at_located(self.deadline(delay)?, Some(ctx), f, Location::caller())
    }

    /// Schedules `f` to run at loop time `when` (see [`time`](EventLoop::time)).
    /// `f` runs in a snapshot of the context values current here, as
    /// [`call_soon`](EventLoop::call_soon)'s does.
    #[track_caller]
    pub fn call_at<F: FnOnce() + 'static>(&self, when: f64, f: F) -> Result<TimerHandle> {
        self.call_at_located(when, None, f, Location::caller())
    }

    /// asyncio's `call_at(when, callback, context=ctx)`:
    /// [`call_at`](EventLoop::call_at) with `f` run in `ctx` itself (see
    /// [`call_soon_in`](EventLoop::call_soon_in)).
    #[track_caller]
    pub fn call_at_in<F: FnOnce() + 'static>(
        &self,
        ctx: Context,
        when: f64,
        f: F,
    ) -> Result<TimerHandle> {
        self.call_at_located(when, Some(ctx), f, Location::caller())
    }

    /// `call_at`: `f` in `ctx`, or (`None`) in a snapshot of the current values.
    fn call_at_located<F: FnOnce() + 'static>(
        &self,
        when: f64,
        ctx: Option<Context>,
        f: F,
        at: &'static Location<'static>,
    ) -> Result<TimerHandle> {
        self.check_closed()?;
        if when.is_nan() {
            return Err(Error::invalid_argument(
                "timer deadline must not be NaN: give a loop time, such as loop.time() + delay",
            ));
        }
        let timer = TimerState {
            when,
            scheduled: Cell::new(true),
            cancelled_count: self.inner.timer_cancelled_count.clone(),
        };
        let handle = match ctx.or_else(crate::contextvars::callback_context) {
            None => Handle::timed(f, at, timer),
            Some(ctx) => Handle::timed_in(f, ctx, at, timer),
        };
        let seq = self.inner.timer_seq.get();
        self.inner.timer_seq.set(seq + 1);
        if when > self.inner.timer_max_when.get() {
            self.inner.timer_max_when.set(when);
        }
        self.inner
            .scheduled
            .borrow_mut()
            .push(TimerEntry::new(when, seq, handle.clone()));
        Ok(TimerHandle { handle })
    }

    /// How many timers are in the heap, cancelled ones included.
    pub fn scheduled_timer_count(&self) -> usize {
        self.inner.scheduled.borrow().len()
    }

    /// How many entries wait in the ready queue.
    pub fn ready_count(&self) -> usize {
        self.inner.ready.borrow().len()
    }

    // ===== one iteration =====

    /// One iteration of the loop: asyncio's `_run_once`.
    ///
    /// 1. Drop cancelled timers: rebuild the heap if it holds more than 100
    ///    timers and more than half are cancelled, else pop them from the head.
    /// 2. Compute the poll timeout: zero if anything is ready or the loop is
    ///    stopping; else the time to the earliest timer, capped at 24 h;
    ///    else infinite.
    /// 3. Poll the reactor and push the handles of ready fds; take the work
    ///    other threads sent.
    /// 4. Move every timer due before `now + clock_resolution` to `ready`.
    /// 5. Run exactly the entries that are in `ready` now.
    ///
    /// Fails on a closed loop (whose poll nothing could end any more), and,
    /// as [`run_forever`](EventLoop::run_forever) does (L4), inside a
    /// running loop: a nested iteration would run what the outer one has
    /// not reached yet, or block in poll inside a callback.
    pub fn run_once(&self) -> Result<()> {
        self.check_closed()?;
        self.check_running()?;
        self.iteration()
    }

    /// The body of [`run_once`](EventLoop::run_once), without its checks:
    /// `run_forever` has made them once for the whole run.
    fn iteration(&self) -> Result<()> {
        let inner = &*self.inner;

        // 1. Cancelled timers.
        {
            let mut heap = inner.scheduled.borrow_mut();
            let count = inner.timer_cancelled_count.get();
            if heap.len() > MIN_SCHEDULED_TIMER_HANDLES
                && count as f64 / heap.len() as f64 > MIN_CANCELLED_TIMER_HANDLES_FRACTION
            {
                let before = heap.len();
                heap.retain(|e| {
                    let keep = !e.handle.cancelled();
                    if !keep {
                        if let Some(t) = e.handle.timer() {
                            t.scheduled.set(false);
                        }
                    }
                    keep
                });
                // Every counted timer is in the heap here: this is asyncio's
                // `_timer_cancelled_count = 0`.
                inner
                    .timer_cancelled_count
                    .set(count.saturating_sub(before - heap.len()));
                // The swept heap keeps at most twice what it holds (once
                // the loop is idle: see `give_back_memory`).
                if heap.capacity() > KEEP_QUEUE_CAPACITY.max(4 * heap.len()) {
                    inner.give_back.set(true);
                }
            } else {
                while heap.peek().is_some_and(|e| e.handle.cancelled()) {
                    let e = heap.pop().expect("peeked");
                    if let Some(t) = e.handle.timer() {
                        t.scheduled.set(false);
                    }
                    inner
                        .timer_cancelled_count
                        .set(inner.timer_cancelled_count.get().saturating_sub(1));
                }
            }
        }

        // 2. The poll timeout.
        let may_block = inner.ready.borrow().is_empty() && !inner.stopping.get();
        let timeout = if !may_block {
            Some(Duration::ZERO)
        } else {
            inner.scheduled.borrow().peek().map(|e| {
                let secs = (e.when() - self.time()).clamp(0.0, MAXIMUM_SELECT_TIMEOUT);
                Duration::from_secs_f64(secs)
            })
        };
        if inner.give_back.get() && timeout.is_none_or(|t| t >= GIVE_BACK_MIN_WAIT) {
            self.give_back_memory();
        }

        // 3. Poll. With work ready, skip most zero-timeout polls (see IO_POLL_INTERVAL).
        let since = inner.since_io_poll.get();
        let must_poll = may_block || inner.stopping.get() || since >= IO_POLL_INTERVAL;
        if must_poll {
            inner.since_io_poll.set(1);
            let mut reactor = inner.reactor.borrow_mut();
            let mut ready = inner.ready.borrow_mut();
            reactor.poll(timeout, &mut |h| ready.push_back(h.into_ready()))?;
        } else {
            inner.since_io_poll.set(since + 1);
        }
        if inner.shared.notified.load(Ordering::Acquire) {
            self.process_remote();
        }

        // 4. Due timers.
        {
            let mut heap = inner.scheduled.borrow_mut();
            if !heap.is_empty() {
                let end_time = self.time() + clock_resolution();
                let mut ready = inner.ready.borrow_mut();
                // A due timer goes to `ready` as it is, cancelled or not, as
                // in asyncio; the handle itself is not touched here (a cache
                // miss each on a big heap). Its entry clears `scheduled`, and
                // uncounts it if cancelled, when step 5 runs or skips it.
                // asyncio pops the due timers one by one. A pop from a big
                // heap costs log n cache misses, so when many are due at once
                // (a burst, or a loop that was busy) tulip takes them out in
                // one pass instead: split the due ones off, sort them, and
                // heapify the rest. The order is the same, (when, seq) with
                // ties in scheduling order (T1), as every timer still in the
                // heap comes after every one already popped.
                let all_due = inner.timer_max_when.get() < end_time;
                let mut popped = 0;
                while heap.peek().is_some_and(|e| e.when() < end_time) {
                    let len = heap.len();
                    if len >= SORT_DUE_TIMERS_MIN
                        && (all_due || popped * PARTITION_AFTER_FRACTION >= len)
                    {
                        take_due_in_one_pass(&mut heap, end_time, &mut ready);
                        break;
                    }
                    ready.push_back(heap.pop().expect("peeked").handle.into_ready());
                    popped += 1;
                }
                if heap.is_empty() {
                    inner.timer_max_when.set(f64::NEG_INFINITY);
                    // A burst of timers is over: its memory goes back, as
                    // asyncio's list shrinks when the heap empties (once
                    // the loop is idle: see `give_back_memory`).
                    if heap.capacity() > KEEP_QUEUE_CAPACITY {
                        inner.give_back.set(true);
                    }
                }
            }
        }

        // 5. Run what is ready now, and only that (L2). This is the only
        // place where callbacks are actually *called*.
        let ntodo = inner.ready.borrow().len();
        for _ in 0..ntodo {
            let Some(entry) = inner.ready.borrow_mut().pop_front() else {
                break;
            };
            inner.entry_seq.set(inner.entry_seq.get().wrapping_add(1));
            if let Err(e) = entry.run_ready(self) {
                self.unschedule_ready_timers();
                return Err(e);
            }
        }
        // After a burst (checked only then: the common iteration pays
        // nothing), an emptied queue gives its memory back, as asyncio's
        // deque frees its blocks (once the loop is idle).
        if ntodo > KEEP_QUEUE_CAPACITY {
            inner.give_back.set(true);
        }
        Ok(())
    }

    /// An [`Interrupt`] ended step 5 early: the due timers it left in
    /// `ready` are out of the heap, and asyncio's step 4 has cleared their
    /// `_scheduled`. They stop counting as cancelled timers the loop holds
    /// (a count left high would rebuild the heap early), and a later
    /// `cancel()` does not count them either.
    #[cold]
    #[inline(never)]
    fn unschedule_ready_timers(&self) {
        for entry in self.inner.ready.borrow().iter() {
            entry.unschedule(); // touches two `Cell`s: no callback runs
        }
    }

    /// Runs a callback (a handle's, a notification) as `run_once` does: a
    /// panic goes to the exception
    /// handler (L6) under its `name`, and in debug mode a slow one is
    /// reported, by `describe`.
    #[inline]
    pub(crate) fn run_guarded(
        &self,
        f: impl FnOnce(),
        name: impl FnOnce() -> String,
        describe: impl Fn() -> String,
    ) -> Result<()> {
        let t0 = if self.inner.debug.get() {
            Some(Instant::now())
        } else {
            None
        };
        let res = catch_unwind(AssertUnwindSafe(f));
        if let Some(t0) = t0 {
            self.warn_if_slow(t0, &describe);
        }
        match res {
            Ok(()) => Ok(()),
            Err(payload) => self.callback_panicked(payload, name(), describe()),
        }
    }

    /// A callback panicked: [`Interrupt`] goes on up, anything else to the
    /// exception handler (L6). Out of line: the callbacks' path stays small.
    #[cold]
    #[inline(never)]
    fn callback_panicked(
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

    /// Runs one step of a task.
    pub(crate) fn run_task_step(&self, t: Rc<dyn AnyTask>) -> Result<()> {
        let interrupted = if self.inner.debug.get() {
            let t0 = Instant::now();
            let interrupted = t.clone().step();
            self.warn_if_slow(t0, || t.describe());
            interrupted
        } else {
            t.step()
        };
        if interrupted {
            return Err(Error::Interrupted);
        }
        Ok(())
    }

    fn warn_if_slow(&self, t0: Instant, what: impl FnOnce() -> String) {
        let took = t0.elapsed().as_secs_f64();
        if took >= self.inner.slow_callback_duration.get() {
            eprintln!("tulip: executing {} took {took:.3} seconds", what());
        }
    }

    /// Gives back the room a burst left in the ready queue and the timer
    /// heap: an emptied queue or heap frees its buffer, a heap keeps at
    /// most twice what it holds. Called when the loop is about to wait at
    /// least [`GIVE_BACK_MIN_WAIT`] (or with no timer at all), not when the
    /// burst ends: freeing a buffer that big makes glibc consolidate its
    /// fast bins, which hold every handle the burst just freed, a walk over
    /// a million scattered chunks (tens of milliseconds; it cost the timers
    /// benchmark 40 % of its time when done at once). Paid while the loop
    /// has nothing to do for a while, it delays nothing that is due.
    #[cold]
    #[inline(never)]
    fn give_back_memory(&self) {
        let inner = &*self.inner;
        inner.give_back.set(false);
        {
            let mut heap = inner.scheduled.borrow_mut();
            if heap.is_empty() {
                if heap.capacity() > KEEP_QUEUE_CAPACITY {
                    *heap = BinaryHeap::new();
                }
            } else if heap.capacity() > KEEP_QUEUE_CAPACITY.max(4 * heap.len()) {
                let keep = KEEP_QUEUE_CAPACITY.max(2 * heap.len());
                heap.shrink_to(keep);
            }
        }
        let mut ready = inner.ready.borrow_mut();
        if ready.is_empty() && ready.capacity() > KEEP_QUEUE_CAPACITY {
            *ready = VecDeque::new();
        }
    }

    /// Turns the messages of other threads into local work: those already
    /// in the channel once `notified` is cleared, not those that arrive
    /// meanwhile. asyncio's iteration runs only what was in `_ready` when
    /// it began (L2); draining until the channel was empty let threads
    /// that send faster than the loop drains hold it in this loop for as
    /// long as they sent. What is left was sent after `notified` was
    /// cleared, so its sender sets the flag and wakes the poll again.
    fn process_remote(&self) {
        let inner = &*self.inner;
        inner.shared.notified.store(false, Ordering::SeqCst);
        for _ in 0..inner.shared.rx.len() {
            let Ok(msg) = inner.shared.rx.try_recv() else {
                break;
            };
            match msg {
                Remote::Call(call) => {
                    let h = Handle::threadsafe(call);
                    inner.ready.borrow_mut().push_back(h.into_ready());
                }
                Remote::LoopCall(f, created_at) => {
                    // Weak: a queued call must not keep the loop open.
                    let weak = self.downgrade();
                    let call = move || {
                        if let Some(inner) = weak.upgrade() {
                            f(&EventLoop { inner });
                        }
                    };
                    let h = Handle::once(call, created_at);
                    inner.ready.borrow_mut().push_back(h.into_ready());
                }
                Remote::Wake(key, id) => inner.wake_task(key, id),
                Remote::Stop => inner.stopping.set(true),
            }
        }
    }

    // ===== errors =====

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

    // ===== debug mode and task factory =====

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

    /// Chooses how `create_task` starts tasks (asyncio's `set_task_factory`).
    pub fn set_task_factory(&self, factory: TaskFactory) {
        self.inner.task_factory.set(factory);
    }

    /// The current task factory.
    pub fn task_factory(&self) -> TaskFactory {
        self.inner.task_factory.get()
    }

    /// Registers a hook that [`close`](EventLoop::close) runs (hooks run
    /// most recent first). Used by the executor, signal and child-watcher
    /// modules; available for user extensions.
    pub fn add_close_hook(&self, f: impl FnOnce() + 'static) {
        self.inner.on_close.borrow_mut().push(Box::new(f));
    }

    /// A per-loop singleton of type `T`, created by `init` on first use.
    /// Modules keep their loop-wide state here (signal handlers, the child
    /// watcher, the default executor); it is dropped when the loop closes.
    pub fn extension<T: 'static>(&self, init: impl FnOnce() -> T) -> Rc<T> {
        if let Some(found) = self
            .inner
            .extensions
            .borrow()
            .iter()
            .find_map(|e| e.clone().downcast::<T>().ok())
        {
            return found;
        }
        let value = Rc::new(init());
        self.inner.extensions.borrow_mut().push(value.clone());
        value
    }
}

impl LoopInner {
    /// Schedules task `key` if `id` still names it and it is not already
    /// scheduled: a wake from a task waker.
    pub(crate) fn wake_task(&self, key: usize, id: u64) {
        let task = match self.tasks.borrow().get(key) {
            Some(t) if t.header().id == id => t.clone(),
            _ => return,
        };
        if !task.header().scheduled.replace(true) {
            self.ready.borrow_mut().push_back(task);
        }
    }
}

/// asyncio's `_clock_resolution` (`time.get_clock_info('monotonic').resolution`).
fn clock_resolution() -> f64 {
    1e-9
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("running", &self.is_running())
            .field("closed", &self.is_closed())
            .field("debug", &self.debug())
            .field(
                "ready",
                &self.inner.ready.try_borrow().map(|r| r.len()).ok(),
            )
            .field(
                "scheduled",
                &self.inner.scheduled.try_borrow().map(|r| r.len()).ok(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_order_like_total_cmp_and_decode_exactly() {
        let lp = EventLoop::new().unwrap();
        let h = || Handle::once(|| (), Location::caller());
        let whens = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            1e-9,
            0.5,
            1.0,
            86400.0,
            1e300,
            f64::INFINITY,
        ];
        for (i, &a) in whens.iter().enumerate() {
            let ea = TimerEntry::new(a, 7, h());
            // -0.0 is keyed, and so decodes, as 0.0.
            assert_eq!(ea.when().to_bits(), (a + 0.0).to_bits(), "{a} decodes");
            for &b in whens[i + 1..].iter().filter(|&&b| b != a) {
                let eb = TimerEntry::new(b, 0, h());
                // Reversed Ord: the earlier deadline is the greater entry.
                assert!(ea > eb, "{a} before {b}, whatever the seq");
            }
            // Same deadline: the lower seq first (T1).
            assert!(TimerEntry::new(a, 1, h()) > TimerEntry::new(a, 2, h()));
        }
        lp.close().unwrap();
    }
}
