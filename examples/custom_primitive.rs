//! Building your own primitive: a token-bucket rate limiter, a thing asyncio
//! lacks, made only of tulip's public API (ARCHITECTURE.md, chapter 6).
//!
//! A [`TokenBucket`] holds up to `capacity` tokens and gains one every
//! `1 / rate` seconds. `acquire()` takes a token, or waits for one. It is
//! built the way `tulip::Semaphore` (asyncio's `locks.py`) is:
//!
//! 1. **Waiters are futures.** A task that must wait parks a fresh
//!    `tulip::Future<()>` in a FIFO `VecDeque` and awaits it. Granting a
//!    token is `set_result(())` on the first waiter; nothing else wakes a task.
//! 2. **Fairness.** A newcomer takes a free token only if nobody is queued
//!    ahead of it; otherwise it queues too. Tokens go to waiters in order.
//! 3. **Cancellation safety.** The token is *moved* to a waiter when its
//!    future is resolved. If that waiter is cancelled (or dropped) before it
//!    runs, its guard puts the token back and grants it to the next waiter,
//!    so no token is ever lost or handed out twice.
//!
//! Run it: `cargo run --example custom_primitive`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Instant;

use tulip::{Future, Result, TimerHandle};

struct Inner {
    capacity: u32,
    /// Seconds per new token.
    interval: f64,
    tokens: Cell<u32>,
    waiters: RefCell<VecDeque<Future<()>>>,
    /// The refill timer, while one is scheduled.
    timer: RefCell<Option<TimerHandle>>,
}

/// A token-bucket rate limiter for tasks: at most `capacity` at once, then
/// `rate` per second, granted in FIFO order. Clones share the bucket.
#[derive(Clone)]
pub struct TokenBucket {
    inner: Rc<Inner>,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens, refilled at `rate` tokens a second.
    pub fn new(capacity: u32, rate: f64) -> TokenBucket {
        TokenBucket {
            inner: Rc::new(Inner {
                capacity,
                interval: 1.0 / rate,
                tokens: Cell::new(capacity),
                waiters: RefCell::new(VecDeque::new()),
                timer: RefCell::new(None),
            }),
        }
    }

    /// Takes a token, waiting for one if the bucket is empty.
    pub async fn acquire(&self) -> Result<()> {
        let inner = &self.inner;
        // Fast path, fair: a free token and nobody alive queued before us.
        let queued = inner.waiters.borrow().iter().any(|w| !w.cancelled());
        if inner.tokens.get() > 0 && !queued {
            inner.tokens.set(inner.tokens.get() - 1);
            return self.ensure_refill();
        }
        // Slow path: park a waiter future at the back of the queue.
        let fut: Future<()> = tulip::get_running_loop()?.create_future();
        inner.waiters.borrow_mut().push_back(fut.clone());
        let mut waiting = Waiting {
            bucket: self,
            fut: fut.clone(),
            granted: false,
        };
        self.ensure_refill()?;
        fut.await?; // Err(Cancelled) if our task is cancelled meanwhile
        waiting.granted = true;
        Ok(())
    }

    /// Tokens available right now.
    pub fn tokens(&self) -> u32 {
        self.inner.tokens.get()
    }

    /// Schedules the refill timer if the bucket is not full and none runs.
    fn ensure_refill(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.timer.borrow().is_some() || inner.tokens.get() >= inner.capacity {
            return Ok(());
        }
        let weak: Weak<Inner> = Rc::downgrade(inner);
        let timer = tulip::get_running_loop()?.call_later(inner.interval, move || {
            if let Some(inner) = weak.upgrade() {
                TokenBucket { inner }.refill();
            }
        })?;
        *inner.timer.borrow_mut() = Some(timer);
        Ok(())
    }

    /// The timer callback: one more token, given to the first waiter if any.
    fn refill(&self) {
        let inner = &self.inner;
        inner.timer.borrow_mut().take();
        inner
            .tokens
            .set((inner.tokens.get() + 1).min(inner.capacity));
        self.wake_next();
        let _ = self.ensure_refill();
    }

    /// Moves a token to the first waiter not woken yet (Semaphore's
    /// `_wake_up_next`). The waiter keeps the token even before it runs.
    fn wake_next(&self) {
        let inner = &self.inner;
        if inner.tokens.get() == 0 {
            return;
        }
        let next = inner.waiters.borrow().iter().find(|f| !f.done()).cloned();
        if let Some(fut) = next {
            inner.tokens.set(inner.tokens.get() - 1);
            let _ = fut.set_result(());
        }
    }
}

/// The cleanup of one wait, run however the wait ends (granted, cancelled,
/// or dropped): remove our future; if a token was moved to us but we will
/// not use it, put it back and pass it on.
struct Waiting<'a> {
    bucket: &'a TokenBucket,
    fut: Future<()>,
    granted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let inner = &self.bucket.inner;
        {
            let mut w = inner.waiters.borrow_mut();
            if let Some(i) = w.iter().position(|f| f.ptr_eq(&self.fut)) {
                w.remove(i);
            }
        }
        if !self.granted && self.fut.done() && !self.fut.cancelled() {
            // Woken, then cancelled before it ran: hand the token on.
            inner.tokens.set(inner.tokens.get() + 1);
            self.bucket.wake_next();
        }
    }
}

impl std::fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<TokenBucket tokens={} waiters={}>",
            self.tokens(),
            self.inner.waiters.borrow().len()
        )
    }
}

fn main() -> Result<()> {
    let start = Instant::now();
    tulip::run(async move {
        // 2 at once, then 5 a second: requests at 0.0, 0.0, 0.2, 0.4, ...
        let bucket = TokenBucket::new(2, 5.0);
        let mut tasks = Vec::new();
        for i in 1..=6 {
            let b = bucket.clone();
            tasks.push(tulip::create_task(async move {
                b.acquire().await?;
                println!("request {i} sent at {:.1} s", start.elapsed().as_secs_f64());
                Ok(())
            })?);
        }
        // Request 4 gives up while it waits: its turn goes to request 5.
        tulip::sleep(0.3).await?;
        tasks[3].cancel();
        for (i, t) in tasks.into_iter().enumerate() {
            t.wait_done().await?;
            if t.cancelled() {
                println!("request {} cancelled", i + 1);
            }
        }
        println!("{bucket:?}");
        Ok(())
    })
}
