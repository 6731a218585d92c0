//! Running coroutines with staggered start times, and taking the first to
//! succeed. Mirrors `Lib/asyncio/staggered.py` (`staggered_race`), which
//! `create_connection` uses for Happy Eyeballs (RFC 8305).
//!
//! The race starts the first attempt at once. Each later attempt starts
//! when the one before it fails, or `delay` seconds after it started,
//! whichever comes first. The first attempt to succeed wins; every other
//! attempt still running is cancelled, and waited for, before the race
//! returns, so a losing attempt has released what it held (a connecting
//! socket is closed) by then.
//!
//! asyncio 3.13 runs the attempts in a `TaskGroup` and stops it with a
//! private `_Done` exception; tulip keeps the same shape with plain tasks:
//! the racing task waits on one `wake` future per round, which the
//! attempt's failure, any attempt's success, or the delay's timer completes.
//!
//! # Invariants
//! - `exceptions` has one entry per attempt started, in start order; an
//!   attempt's entry is set when it fails, and stays `None` for the winner.
//! - There is at most one winner; a second success (two attempts finishing
//!   in the same iteration) is dropped, which closes what it holds.
//! - When `staggered_race` returns, or its future is dropped, no attempt
//!   is left running: they are cancelled (and, on return, awaited); nor is
//!   the delay's timer left in the loop.
//! - No `RefCell` borrow is held while a future is completed.

use std::cell::{Cell, RefCell};
use std::future::Future as StdFuture;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::event_loop::get_running_loop;
use crate::events::CancelTimer;
use crate::futures::Future;
use crate::tasks::Task;

/// What [`staggered_race`] returns, as asyncio's tuple
/// `(winner_result, winner_index, exceptions)`.
pub type RaceOutcome<T> = (Option<T>, Option<usize>, Vec<Option<Error>>);

/// The state the attempts share with the racing task.
struct Race<T> {
    /// The first success: its index and value.
    winner: RefCell<Option<(usize, T)>>,
    /// One entry per attempt started: its error, if it failed.
    exceptions: RefCell<Vec<Option<Error>>>,
    /// What the racing task waits on now, and for which attempt's failure
    /// (`None`: for the last attempts to finish).
    wake: RefCell<Option<(Option<usize>, Future<()>)>>,
    /// Attempts started and not yet finished.
    running: Cell<usize>,
}

impl<T> Race<T> {
    fn wake(&self) {
        let w = self.wake.borrow_mut().take();
        if let Some((_, fut)) = w {
            if !fut.done() {
                let _ = fut.set_result(());
            }
        }
    }

    /// Attempt `index` ended with `outcome` (`None`: it panicked or was
    /// dropped before it ended).
    fn finished(&self, index: usize, outcome: Option<Result<T>>) {
        self.running.set(self.running.get() - 1);
        match outcome {
            Some(Ok(value)) => {
                let late = {
                    let mut w = self.winner.borrow_mut();
                    match *w {
                        None => {
                            *w = Some((index, value));
                            None
                        }
                        Some(_) => Some(value),
                    }
                };
                // A second success: dropped (closed), after the borrow.
                drop(late);
            }
            Some(Err(e)) => self.exceptions.borrow_mut()[index] = Some(e),
            None => {
                self.exceptions.borrow_mut()[index] = Some(Error::runtime(
                    "the attempt ended without a result (it panicked or was dropped)",
                ));
            }
        }
        let waiting_for = self.wake.borrow().as_ref().map(|(i, _)| *i);
        let wake = match waiting_for {
            None => false,
            Some(_) if self.winner.borrow().is_some() => true,
            // The racing task waits for this attempt to fail ...
            Some(Some(i)) => i == index,
            // ... or for the last attempts to end.
            Some(None) => self.running.get() == 0,
        };
        if wake {
            self.wake();
        }
    }
}

/// Reports an attempt's end, also when it panics or its task is dropped.
struct Finish<T> {
    race: Rc<Race<T>>,
    index: usize,
    outcome: Option<Result<T>>,
}

impl<T> Drop for Finish<T> {
    fn drop(&mut self) {
        self.race.finished(self.index, self.outcome.take());
    }
}

/// Cancels the attempts still running if the race's future is dropped
/// before it returns.
struct CancelOnDrop<'a>(&'a RefCell<Vec<Task<()>>>);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        // Collected first: no borrow is held while a cancel wakes a task.
        let pending: Vec<Task<()>> = self
            .0
            .borrow()
            .iter()
            .filter(|t| !t.done())
            .cloned()
            .collect();
        for t in pending {
            t.cancel();
        }
    }
}

/// asyncio's `staggered_race(coro_fns, delay)`: runs the attempts made by
/// `coro_fns` with staggered start times and returns the first success.
///
/// The first attempt starts at once; each next one when the one before it
/// fails, or `delay` seconds after it started (`None`: only when it fails,
/// so the attempts run one after the other). The first attempt to succeed
/// wins; the others are cancelled, and awaited, before this returns.
///
/// Returns `(winner_result, winner_index, exceptions)`: the winner's value
/// and index (`None` if every attempt failed), and one entry per attempt
/// started, in order: its error (`Cancelled` for an attempt cancelled
/// because another won), or `None` for the winner. `Err` only if the
/// calling task is cancelled (or no task can be created); the attempts are
/// then cancelled too, and awaited.
///
/// ```
/// use tulip::staggered::staggered_race;
/// tulip::run(async {
///     // The first fails at once, so the second starts without waiting
///     // for the delay; the second is slow, so the third starts after the
///     // delay and wins.
///     let attempts = [(0.0, false), (10.0, true), (0.0, true)].map(|(secs, ok)| {
///         move || async move {
///             tulip::sleep(secs).await?;
///             if ok { Ok(secs) } else { Err(tulip::Error::msg("refused")) }
///         }
///     });
///     let (winner, index, exceptions) = staggered_race(attempts, Some(0.01)).await?;
///     assert_eq!((winner, index), (Some(0.0), Some(2)));
///     assert_eq!(exceptions.len(), 3);
///     assert!(exceptions[0].is_some(), "the first failed");
///     assert!(exceptions[1].as_ref().is_some_and(|e| e.is_cancelled()), "the second lost");
///     assert!(exceptions[2].is_none(), "the third won");
///     Ok(())
/// }).unwrap();
/// ```
pub async fn staggered_race<T, F, Fut, I>(coro_fns: I, delay: Option<f64>) -> Result<RaceOutcome<T>>
where
    T: 'static,
    I: IntoIterator<Item = F>,
    F: FnOnce() -> Fut,
    Fut: StdFuture<Output = Result<T>> + 'static,
{
    let lp = get_running_loop()?;
    let race = Rc::new(Race {
        winner: RefCell::new(None),
        exceptions: RefCell::new(Vec::new()),
        wake: RefCell::new(None),
        running: Cell::new(0),
    });
    let tasks: RefCell<Vec<Task<()>>> = RefCell::new(Vec::new());
    let _cancel_on_drop = CancelOnDrop(&tasks);

    let raced: Result<()> = async {
        for (index, coro_fn) in coro_fns.into_iter().enumerate() {
            if race.winner.borrow().is_some() {
                break;
            }
            race.exceptions.borrow_mut().push(None);
            let wake: Future<()> = lp.create_future();
            *race.wake.borrow_mut() = Some((Some(index), wake.clone()));
            let fut = coro_fn();
            let r = race.clone();
            race.running.set(race.running.get() + 1);
            let task = lp.create_task(async move {
                let mut finish = Finish {
                    race: r,
                    index,
                    outcome: None,
                };
                finish.outcome = Some(fut.await);
                Ok(())
            });
            let task = match task {
                Ok(t) => t,
                Err(e) => {
                    // The future was never run: undo its bookkeeping.
                    race.running.set(race.running.get() - 1);
                    race.exceptions.borrow_mut().pop();
                    return Err(e);
                }
            };
            tasks.borrow_mut().push(task);
            // asyncio's `wait_for(this_failed.wait(), delay)`, also ended
            // by a winner.
            let timer = match delay {
                Some(d) => {
                    let w = wake.clone();
                    Some(lp.call_later(d, move || {
                        if !w.done() {
                            let _ = w.set_result(());
                        }
                    })?)
                }
                None => None,
            };
            // Cancelled however the wait ends, a drop of the race included
            // (asyncio's `wait_for` takes its timer with it).
            let timer = CancelTimer(timer);
            let woken = wake.await;
            drop(timer);
            woken?;
        }
        // Every attempt has started: wait for a winner, or for all to fail.
        while race.winner.borrow().is_none() && race.running.get() > 0 {
            let wake: Future<()> = lp.create_future();
            *race.wake.borrow_mut() = Some((None, wake.clone()));
            wake.await?;
        }
        Ok(())
    }
    .await;
    race.wake.borrow_mut().take();

    // Cancel the losers and wait until they are done, as asyncio's
    // TaskGroup does on the way out.
    let pending: Vec<Task<()>> = tasks
        .borrow()
        .iter()
        .filter(|t| !t.done())
        .cloned()
        .collect();
    for t in &pending {
        t.cancel();
    }
    let mut cancelled = raced.err();
    for t in &pending {
        // A cancel of this task while it cleans up is delivered when done.
        while !t.done() {
            if let Err(e) = t.wait_done().await {
                cancelled.get_or_insert(e);
            }
        }
    }
    if let Some(e) = cancelled {
        return Err(e);
    }
    let winner = race.winner.borrow_mut().take();
    let exceptions = std::mem::take(&mut *race.exceptions.borrow_mut());
    let (winner_result, winner_index) = match winner {
        Some((i, v)) => (Some(v), Some(i)),
        None => (None, None),
    };
    Ok((winner_result, winner_index, exceptions))
}
