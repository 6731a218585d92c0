//! The loop's one door to other threads: [`LoopHandle`]. Mirrors
//! `call_soon_threadsafe` and `_write_to_self` in `Lib/asyncio/base_events.py`
//! and `selector_events.py`.
//!
//! asyncio writes a byte to a self-pipe to wake a loop blocked in `select()`.
//! tulip sends the work over a crossbeam channel and wakes the poll with a
//! [`mio::Waker`] (an eventfd). A flag makes many wakes coalesce into one
//! `write(2)` and one poll wake-up (conformance H1).
//!
//! # Invariants
//! - Everything here is `Send + Sync`; nothing here touches the loop's
//!   `Rc`/`RefCell` state. Work crosses as messages and is turned into local
//!   handles by the loop thread in `run_once`.
//! - No lost wake-up: a sender pushes its message *before* it tests-and-sets
//!   `notified`; the loop clears `notified` *before* it drains the channel.
//!   So either the loop's drain sees the message, or the sender sees
//!   `notified == false` and wakes the poll.
//! - A message is run, dropped by `close()` (or by the loop's drop, for
//!   a loop that goes unclosed), or refused with [`Error::Closed`]: never
//!   left in the channel. The same handshake as `notified`, the other way
//!   round: `close()` sets `closed` *before* it drains the channel, and a
//!   sender tests `closed` again *after* its send, with a `SeqCst` fence
//!   between on each side. So either `close()`'s drain sees the message,
//!   or the sender sees `closed`, drops what is left in the channel itself
//!   and refuses the call. (asyncio checks `_check_closed()` and appends
//!   to `_ready` under the GIL, which `close()` also holds to clear
//!   `_ready`.)
//! - A [`ThreadsafeHandle`]'s callback runs only if it was not cancelled
//!   first, and a `cancel()` from another thread while it runs returns
//!   once it has returned: asyncio's `_ThreadSafeHandle` runs it holding
//!   an `RLock` that `cancel()` takes. A cancel from the callback itself
//!   (the lock is reentrant) returns at once. A callback that is not
//!   waited for pays two atomic operations, no lock.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;

/// A `call_soon_threadsafe` callback on its way to the loop.
pub(crate) struct Call {
    pub(crate) f: Box<dyn FnOnce() + Send>,
    /// Shared with its [`ThreadsafeHandle`]s.
    pub(crate) state: Arc<CallState>,
    /// The callback's type name and where it was scheduled: the boxed
    /// closure has lost the first, and the loop's handle would otherwise
    /// name its own code in reports (asyncio's handle repr shows both).
    pub(crate) name: &'static str,
    pub(crate) created_at: &'static Location<'static>,
}

/// Set by `cancel()`.
const CANCELLED: u8 = 1;
/// Set while the callback runs.
const RUNNING: u8 = 2;
/// Set by a `cancel()` from another thread that waits for the callback.
const WAITED: u8 = 4;

/// Where a `cancel()` from another thread waits for a running callback
/// (rare: one pair for every handle, not a lock in each).
static RUN_ENDED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

thread_local! {
    /// The [`CallState`] whose callback this thread runs (0 if none): a
    /// `cancel()` from it must not wait for itself.
    static RUNNING_CALL: Cell<usize> = const { Cell::new(0) };
}

/// The state of a `call_soon_threadsafe` callback, shared by the loop's
/// handle and the [`ThreadsafeHandle`]s (asyncio's `_ThreadSafeHandle`
/// `_cancelled` under its `_lock`).
pub(crate) struct CallState {
    bits: AtomicU8,
}

/// Clears `RUNNING` however the callback ends, and wakes a waiting cancel.
struct RunEnd<'a> {
    state: &'a CallState,
    outer: usize,
}

impl Drop for RunEnd<'_> {
    fn drop(&mut self) {
        RUNNING_CALL.with(|c| c.set(self.outer));
        let prev = self
            .state
            .bits
            .fetch_and(!(RUNNING | WAITED), Ordering::SeqCst);
        if prev & WAITED != 0 {
            // Taken so that a waiter cannot miss the notification between
            // its test of `RUNNING` and its wait.
            drop(RUN_ENDED.0.lock().unwrap_or_else(|e| e.into_inner()));
            RUN_ENDED.1.notify_all();
        }
    }
}

impl CallState {
    fn new() -> CallState {
        CallState {
            bits: AtomicU8::new(0),
        }
    }

    /// Runs `f` unless cancelled (asyncio's `_ThreadSafeHandle._run`).
    pub(crate) fn run(&self, f: impl FnOnce()) {
        if self
            .bits
            .compare_exchange(0, RUNNING, Ordering::SeqCst, Ordering::Acquire)
            .is_err()
        {
            return; // cancelled
        }
        let me = self as *const CallState as usize;
        let _end = RunEnd {
            state: self,
            outer: RUNNING_CALL.with(|c| c.replace(me)),
        };
        f();
    }

    fn cancel(&self) {
        let prev = self.bits.fetch_or(CANCELLED, Ordering::SeqCst);
        if prev & RUNNING == 0 {
            return;
        }
        let me = self as *const CallState as usize;
        if RUNNING_CALL.with(Cell::get) == me {
            return; // from the callback itself: the RLock is reentrant
        }
        self.bits.fetch_or(WAITED, Ordering::SeqCst);
        let mut guard = RUN_ENDED.0.lock().unwrap_or_else(|e| e.into_inner());
        while self.bits.load(Ordering::SeqCst) & RUNNING != 0 {
            guard = RUN_ENDED.1.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn cancelled(&self) -> bool {
        self.bits.load(Ordering::Acquire) & CANCELLED != 0
    }
}

/// A call of tulip's own that needs the loop it runs on (a job's result
/// for its parked future, a `run_coroutine_threadsafe` call). It is given
/// the loop, since there may be no running loop to look up: one iterated by
/// hand with `run_once` is not running. asyncio's callbacks hold their
/// future (`_call_set_state`) or their loop (`ensure_future(coro,
/// loop=loop)`) and need no running loop either.
pub(crate) type LoopCall = Box<dyn FnOnce(&EventLoop) + Send>;

/// A message from another thread to the loop.
pub(crate) enum Remote {
    /// `call_soon_threadsafe(f)`.
    Call(Call),
    /// A [`LoopCall`], and where it was sent from.
    LoopCall(LoopCall, &'static Location<'static>),
    /// A task waker woken off the loop thread: (slab key, task id).
    Wake(usize, u64),
    /// `LoopHandle::stop()`.
    Stop,
}

/// State shared between the loop and its [`LoopHandle`]s.
pub(crate) struct Shared {
    pub(crate) waker: mio::Waker,
    pub(crate) tx: Sender<Remote>,
    pub(crate) rx: Receiver<Remote>,
    /// Set by senders, cleared by the loop before it drains `rx`.
    pub(crate) notified: AtomicBool,
    /// Set by `close()` before it drains `rx`; tested by senders after they send.
    pub(crate) closed: AtomicBool,
}

impl Shared {
    pub(crate) fn new(waker: mio::Waker) -> Shared {
        let (tx, rx) = crossbeam_channel::unbounded();
        Shared {
            waker,
            tx,
            rx,
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Marks the loop closed, before the caller drains the channel: from
    /// here on every send is refused, and a message that raced this is
    /// either in the caller's drain or seen, and dropped, by its sender.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Drops what is in the channel of a closed loop, each message under a
    /// guard: its `Drop` is the user's, and may panic.
    pub(crate) fn drop_pending(&self, why: &str) {
        for msg in self.rx.try_iter() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| drop(msg))) {
                eprintln!(
                    "tulip: exception ignored while dropping a call sent to {why}: {}",
                    crate::error::panic_message(&*payload)
                );
            }
        }
    }

    /// Queues a message and wakes the loop unless a wake is already pending.
    pub(crate) fn send(&self, msg: Remote) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // Never fails: `self` holds the receiver.
        let _ = self.tx.send(msg);
        fence(Ordering::SeqCst);
        if self.closed.load(Ordering::Relaxed) {
            // close() came between the test and the send, and its drain
            // may have run before the message arrived (see the invariants).
            self.drop_pending("a closed loop");
            return Err(Error::Closed);
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            // A failed write means the eventfd counter is saturated: the loop
            // is going to wake up anyway.
            let _ = self.waker.wake();
        }
        Ok(())
    }
}

/// A `Send + Sync` handle to an [`EventLoop`], for other
/// threads. It is the only part of tulip that crosses threads.
///
/// ```
/// let lp = tulip::EventLoop::new().unwrap();
/// let handle = lp.handle();
/// let t = std::thread::spawn(move || {
///     handle.call_soon_threadsafe(|| println!("on the loop")).unwrap();
///     handle.stop().unwrap();
/// });
/// lp.run_forever().unwrap(); // returns once the other thread called stop()
/// t.join().unwrap();
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LoopHandle {
    /// asyncio's `loop.call_soon_threadsafe(callback)`: runs `f` on the loop
    /// thread at its next iteration, waking the loop if it blocks in poll.
    /// Fails with [`Error::Closed`] once the loop is closed.
    #[track_caller]
    pub fn call_soon_threadsafe<F: FnOnce() + Send + 'static>(
        &self,
        f: F,
    ) -> Result<ThreadsafeHandle> {
        let state = Arc::new(CallState::new());
        self.shared.send(Remote::Call(Call {
            f: Box::new(f),
            state: state.clone(),
            name: std::any::type_name::<F>(),
            created_at: Location::caller(),
        }))?;
        Ok(ThreadsafeHandle { state })
    }

    /// `call_soon_threadsafe` for tulip's own callbacks that need their
    /// loop (see [`LoopCall`]).
    #[track_caller]
    pub(crate) fn call_soon_threadsafe_with_loop(
        &self,
        f: impl FnOnce(&EventLoop) + Send + 'static,
    ) -> Result<()> {
        self.shared
            .send(Remote::LoopCall(Box::new(f), Location::caller()))
    }

    /// Stops the loop from another thread (`loop.call_soon_threadsafe(loop.stop)`).
    pub fn stop(&self) -> Result<()> {
        self.shared.send(Remote::Stop)
    }

    /// True once the loop was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// True if both handles point to the same loop.
    pub fn same_loop(&self, other: &LoopHandle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// What [`LoopHandle::call_soon_threadsafe`] returns: cancel it from any
/// thread, and if the callback has not started yet it never will; if it
/// is running on the loop's thread, `cancel()` returns once it returned.
#[derive(Clone)]
#[must_use = "a ThreadsafeHandle is how you cancel the callback; bind it to `_` to drop it"]
pub struct ThreadsafeHandle {
    state: Arc<CallState>,
}

impl ThreadsafeHandle {
    /// Cancels the callback: one that has not started never runs; one
    /// running on the loop's thread is waited for (unless this is called
    /// from it), as asyncio's `_ThreadSafeHandle.cancel` waits for its lock.
    pub fn cancel(&self) {
        self.state.cancel();
    }

    /// True once [`cancel`](ThreadsafeHandle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.state.cancelled()
    }
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadsafeHandle")
            .field("cancelled", &self.cancelled())
            .finish()
    }
}
