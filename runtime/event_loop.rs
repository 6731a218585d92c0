//! The event loop's core: its state, the ready queue, the timer heap and
//! one iteration. Mirrors `BaseEventLoop` in `Lib/asyncio/base_events.py`
//! (`_ready`, `_scheduled`, `_run_once`). The reader/writer half of
//! `BaseSelectorEventLoop` (`add_reader` and friends) lives beside the
//! reactor, in `reactor.rs`.
//!
//! The loop owns three queues: `ready`, a FIFO of things to run now;
//! `scheduled`, a min-heap of timers; and the reactor's registrations. One
//! pass of [`EventLoop::run_once`] moves work between them; see
//! ARCHITECTURE.md for its life story.
//!
//! The rest is split by concept into the child modules below (methods of
//! [`EventLoop`] there sit in `impl EventLoop` blocks of their own). Their
//! public names are re-exported here, so every path stays
//! `tulip::event_loop::NAME`.
//!
//! | file | holds | asyncio |
//! |---|---|---|
//! | `event_loop/scheduling.rs` | `call_soon`, `call_later`, `call_at` and their `_in` forms | `BaseEventLoop.call_soon`, `call_later`, `call_at` |
//! | `event_loop/lifecycle.rs` | `run_forever`, `run_until_complete`, `stop`, `close`, a dropped loop, close hooks and extensions | `BaseEventLoop.run_forever`, `run_until_complete`, `stop`, `close`, `__del__` |
//! | `event_loop/exception_handler.rs` | [`ExceptionContext`], the exception handler, [`Interrupt`], debug mode | `BaseEventLoop.call_exception_handler`, `set_debug`, `slow_callback_duration` |
//! | `event_loop/running_loop.rs` | [`get_running_loop`], [`get_event_loop`], [`set_event_loop`], [`new_event_loop`] | `events.py`: `_running_loop`, `get_running_loop`, `get_event_loop` |
//! | `event_loop/task_factory.rs` | [`TaskFactory`] | `BaseEventLoop.set_task_factory`, `eager_task_factory` |
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
//! - Past `KEEP_QUEUE_CAPACITY` (64k entries), an emptied ready queue or
//!   timer heap holds no memory, and a swept heap at most twice what it
//!   holds, from the first time after the burst that the loop waits at
//!   least `GIVE_BACK_MIN_WAIT` (0.1 s) or has no timer: a burst does not
//!   keep its peak for the life of the loop, and a busy loop does not stop
//!   to hand memory back.
//! - The loop is `!Send` (it is built on `Rc`), so loop calls from another
//!   thread are rejected at compile time; [`LoopHandle`] is the only door.

mod exception_handler;
mod lifecycle;
mod running_loop;
mod scheduling;
mod task_factory;

use std::cell::{Cell, RefCell};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::error::{Error, Result};
use crate::events::Handle;
use crate::reactor::{Reactor, WAKER_TOKEN};
use crate::selector_transport::{FdOwner, LoopClosed};
use crate::sys;
use crate::tasks::AnyTask;
use crate::threadsafe::{LoopHandle, Remote, Shared};

pub use exception_handler::{
    interrupt, ExceptionContext, ExceptionHandler, Interrupt, DEFAULT_SLOW_CALLBACK_DURATION,
};
pub(crate) use lifecycle::LoopRef;
pub use running_loop::{
    get_event_loop, get_running_loop, new_event_loop, set_event_loop, try_running_loop,
};
pub(crate) use running_loop::{no_running_loop, with_running_if, with_running_loop};
pub use task_factory::TaskFactory;

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
    /// Task wakers no one holds any more, for the next tasks (tasks/waker.rs).
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

/// The clock's origin, shared by all loops of the process so that
/// `loop.time()` values can be compared across loops.
fn epoch() -> f64 {
    static EPOCH: OnceLock<f64> = OnceLock::new();
    *EPOCH.get_or_init(sys::monotonic)
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

    // ===== the clock and the ready queue =====

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
    use std::panic::Location;

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
