//! The floor: the least code that does the same work as a case, with no
//! runtime around it. It shows what the hardware and the allocator allow, so
//! a tulip number can be read as "runtime overhead above the floor".
//!
//! The executor here is the smallest one that still has real tasks: a
//! thread-local FIFO of `Rc` tasks, a waker that pushes the task back, and a
//! join handle. No cancellation, no names, no panics caught, no I/O. Production
//! executors (tulip, tokio) do all of that, which is what they pay for.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

// ===== the task =====

struct Task {
    fut: RefCell<Option<Pin<Box<dyn Future<Output = ()>>>>>,
    /// True while the task sits in the run queue (so it is there at most once).
    queued: Cell<bool>,
}

thread_local! {
    static QUEUE: RefCell<VecDeque<Rc<Task>>> = RefCell::new(VecDeque::with_capacity(1024));
}

fn schedule(t: Rc<Task>) {
    if !t.queued.replace(true) {
        QUEUE.with(|q| q.borrow_mut().push_back(t));
    }
}

// ===== the waker: an Rc<Task> behind a RawWaker =====
// Only valid on the thread that made it; the floor never leaves that thread.

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_by_ref_raw, drop_raw);

unsafe fn clone_raw(p: *const ()) -> RawWaker {
    // SAFETY: `p` came from `Rc::into_raw` of a live `Rc<Task>`.
    unsafe { Rc::increment_strong_count(p as *const Task) };
    RawWaker::new(p, &VTABLE)
}

unsafe fn wake_raw(p: *const ()) {
    // SAFETY: takes over the reference this waker held.
    let t = unsafe { Rc::from_raw(p as *const Task) };
    schedule(t);
}

unsafe fn wake_by_ref_raw(p: *const ()) {
    // SAFETY: borrows the waker's reference and adds one for the queue.
    unsafe { Rc::increment_strong_count(p as *const Task) };
    let t = unsafe { Rc::from_raw(p as *const Task) };
    schedule(t);
}

unsafe fn drop_raw(p: *const ()) {
    // SAFETY: releases the reference this waker held.
    drop(unsafe { Rc::from_raw(p as *const Task) });
}

fn waker_for(t: &Rc<Task>) -> Waker {
    let p = Rc::into_raw(t.clone()) as *const ();
    // SAFETY: the vtable's functions keep the Rc's count right, and the
    // waker never crosses a thread (the floor is single-threaded).
    unsafe { Waker::from_raw(RawWaker::new(p, &VTABLE)) }
}

// ===== spawn / join =====

struct JoinState<T> {
    result: Cell<Option<T>>,
    waiter: Cell<Option<Waker>>,
}

/// Awaits a spawned task's output.
pub struct JoinHandle<T> {
    state: Rc<JoinState<T>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.state.result.take() {
            Some(v) => Poll::Ready(v),
            None => {
                self.state.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// Spawns `fut` on the floor executor.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> JoinHandle<T> {
    let state = Rc::new(JoinState {
        result: Cell::new(None),
        waiter: Cell::new(None),
    });
    let st = state.clone();
    let t = Rc::new(Task {
        fut: RefCell::new(Some(Box::pin(async move {
            let v = fut.await;
            st.result.set(Some(v));
            if let Some(w) = st.waiter.take() {
                w.wake();
            }
        }))),
        queued: Cell::new(false),
    });
    schedule(t);
    JoinHandle { state }
}

/// Runs `main` and everything it spawns until `main` is done.
pub fn block_on<T: 'static>(main: impl Future<Output = T> + 'static) -> T {
    let h = spawn(main);
    loop {
        let Some(t) = QUEUE.with(|q| q.borrow_mut().pop_front()) else {
            break;
        };
        t.queued.set(false);
        let waker = waker_for(&t);
        let mut cx = Context::from_waker(&waker);
        let mut slot = t.fut.borrow_mut();
        if let Some(f) = slot.as_mut() {
            if f.as_mut().poll(&mut cx).is_ready() {
                *slot = None;
            }
        }
    }
    h.state
        .result
        .take()
        .expect("main did not finish: a lost wake-up")
}

/// Yields once: wakes itself and returns `Pending` the first time.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawns_joins_and_yields() {
        let out = block_on(async {
            let hs: Vec<_> = (0..10u64)
                .map(|i| {
                    spawn(async move {
                        yield_now().await;
                        i
                    })
                })
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await;
            }
            sum
        });
        assert_eq!(out, 45);
    }
}
