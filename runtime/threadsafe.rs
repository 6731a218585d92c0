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

use std::fmt;
use std::panic::Location;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;

/// A `call_soon_threadsafe` callback on its way to the loop.
pub(crate) struct Call {
    pub(crate) f: Box<dyn FnOnce() + Send>,
    /// Set by [`ThreadsafeHandle::cancel`].
    pub(crate) cancelled: Arc<AtomicBool>,
    /// The callback's type name and where it was scheduled: the boxed
    /// closure has lost the first, and the loop's handle would otherwise
    /// name its own code in reports (asyncio's handle repr shows both).
    pub(crate) name: &'static str,
    pub(crate) created_at: &'static Location<'static>,
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
        let cancelled = Arc::new(AtomicBool::new(false));
        self.shared.send(Remote::Call(Call {
            f: Box::new(f),
            cancelled: cancelled.clone(),
            name: std::any::type_name::<F>(),
            created_at: Location::caller(),
        }))?;
        Ok(ThreadsafeHandle { cancelled })
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
/// thread, and if the callback has not started yet it never will.
#[derive(Clone)]
#[must_use = "a ThreadsafeHandle is how you cancel the callback; bind it to `_` to drop it"]
pub struct ThreadsafeHandle {
    cancelled: Arc<AtomicBool>,
}

impl ThreadsafeHandle {
    /// Cancels the callback.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// True once [`cancel`](ThreadsafeHandle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadsafeHandle")
            .field("cancelled", &self.cancelled())
            .finish()
    }
}
