//! A task's waker, and the loop's pool of idle ones. Mirrors what
//! `Task.__wakeup` is in `Lib/asyncio/tasks.py`: a future's done callback
//! that schedules the task's next `__step` with `call_soon`. Here the
//! callback is a [`std::task::Waker`] aimed at the task's slab key and id;
//! waking it pushes the task onto the ready queue (`wake_task` in
//! `event_loop.rs`).
//!
//! # Invariants
//! - A task's waker is made at its first step and goes back to the loop's
//!   pool when the task is done, only if no clone of it is left: a waker
//!   someone still holds is never re-aimed at another task.
//! - A wake on the loop's own thread while the loop runs is a plain push
//!   onto the ready queue; from anywhere else it goes through the loop's
//!   thread-safe channel, and a closed loop drops it.
//! - The pool keeps at most `WAKER_POOL_MAX` idle wakers per loop.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};

use crate::event_loop::{with_running_if, EventLoop};
use crate::threadsafe::{Remote, Shared};

/// The waker of a task: its slab key and id, and the way to its loop.
///
/// Made at the task's first step, not at `create_task` (a task cancelled
/// before it starts never needs one), and recycled when the task is done
/// and no one else holds a clone: most tasks (a trivial child of `gather`,
/// a task that never suspends) then cost no waker allocation at all. The
/// key and id are atomics only so that a recycled waker can be re-aimed;
/// a waker is recycled only when no clone of it is left, so no holder ever
/// sees it re-aimed. What `wake_task` checks the id against is a stale
/// `(key, id)` message already in the thread-safe channel.
pub(crate) struct TaskWaker {
    shared: Arc<Shared>,
    key: AtomicUsize,
    id: AtomicU64,
}

/// The loop's pool of idle task wakers (see [`TaskWaker`]): the one put
/// back last in a plain `Cell` (a task that finishes in the step that made
/// its waker hands it straight to the next task, the common case in a
/// gather), the others in a list.
#[derive(Default)]
pub(crate) struct WakerPool {
    last: Cell<Option<WakerSlot>>,
    more: std::cell::RefCell<Vec<WakerSlot>>,
}

/// At most this many idle wakers are kept per loop.
const WAKER_POOL_MAX: usize = 64;

/// A task's waker, with the `Arc` behind it, so that the task can tell at
/// its end whether anyone else still holds a clone. Pooled as a pair: no
/// reference count changes hands when a waker is reused.
pub(crate) struct WakerSlot {
    arc: Arc<TaskWaker>,
    pub(super) waker: Waker,
}

impl WakerSlot {
    /// A waker aimed at task `(key, id)`: a pooled one, or a new one.
    /// Once per task, out of the step's hot path.
    #[inline(never)]
    pub(super) fn new(lp: &EventLoop, key: usize, id: u64) -> WakerSlot {
        let pool = &lp.inner.waker_pool;
        let pooled = match pool.last.take() {
            Some(slot) => Some(slot),
            None => pool.more.borrow_mut().pop(),
        };
        if let Some(slot) = pooled {
            // Ours alone (see `recycle`): no other thread can read these.
            slot.arc.key.store(key, Ordering::Relaxed);
            slot.arc.id.store(id, Ordering::Relaxed);
            return slot;
        }
        let arc = Arc::new(TaskWaker {
            shared: lp.inner.shared.clone(),
            key: AtomicUsize::new(key),
            id: AtomicU64::new(id),
        });
        let waker = Waker::from(arc.clone());
        WakerSlot { arc, waker }
    }

    /// The task is done: back to the pool if no clone is left anywhere
    /// (the two references are the slot's own: `arc` and `waker`).
    pub(super) fn recycle(self, lp: &EventLoop) {
        if Arc::strong_count(&self.arc) == 2 {
            // Pairs with the release decrement of the last clone dropped on
            // another thread: its reads of key/id come before our re-aiming.
            std::sync::atomic::fence(Ordering::Acquire);
            let pool = &lp.inner.waker_pool;
            if let Some(older) = pool.last.replace(Some(self)) {
                let mut more = pool.more.borrow_mut();
                if more.len() < WAKER_POOL_MAX {
                    more.push(older);
                }
            }
        }
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let key = self.key.load(Ordering::Relaxed);
        let id = self.id.load(Ordering::Relaxed);
        // On the loop's own thread while it runs: a plain push onto the ready queue.
        if !with_running_if(&self.shared, |inner| inner.wake_task(key, id)) {
            // Elsewhere: through the thread-safe queue. A closed loop drops the wake.
            let _ = self.shared.send(Remote::Wake(key, id));
        }
    }
}
