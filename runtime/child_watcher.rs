//! Child watchers: who notices that a child exited, and reaps it. Mirrors
//! `PidfdChildWatcher` and `ThreadedChildWatcher` in
//! `Lib/asyncio/unix_events.py` (3.14, where the watcher is chosen by
//! `can_use_pidfd()` and is no longer user-pluggable).
//!
//! - [`ChildWatcherKind::Pidfd`] (the default where the kernel has
//!   `pidfd_open`, Linux 5.3+): one pidfd per child, registered with the
//!   reactor edge-triggered. The child's exit makes it readable; the loop
//!   reaps with `waitpid(pid, WNOHANG)`, closes the pidfd and resolves the
//!   waiters. Cost per child: `pidfd_open`, two `epoll_ctl`, one epoll event,
//!   one `waitpid`, one `close` — no thread.
//! - [`ChildWatcherKind::Thread`] (the fallback): a thread per child blocks in
//!   `waitid(WEXITED | WNOWAIT)` — it waits *without* reaping — and then asks
//!   the loop, through `call_soon_threadsafe`, to reap. asyncio's threaded
//!   watcher reaps in the thread; tulip reaps on the loop thread so that a
//!   signal sent by the loop can never hit a recycled pid (P3).
//!
//! The watcher is chosen when a child is spawned: the environment variable
//! `TULIP_CHILD_WATCHER=thread` (or `pidfd`) forces one, else
//! [`EventLoop::set_child_watcher`], else pidfd if the kernel has it. A child
//! whose `pidfd_open` fails (e.g. `EMFILE`) falls back to a thread.
//!
//! # Invariants
//! - While the loop is open, a child is reaped only on the loop thread, and
//!   `returncode` is set in the same callback; so while `returncode` is
//!   `None` its pid is ours and signals may be sent to it. Once the loop
//!   has closed and handed the child to its reaper (`handed_off`), the pid
//!   is not ours any more: the child is signalled only through a pidfd
//!   taken before the hand-over, or not at all.
//! - Every spawned child is in `children` until it is reaped. When the
//!   watcher is dropped (the loop closes) the children left are handed to
//!   reaper threads, one per child, each reaped as it exits: no zombie is
//!   left behind, even for a dropped `Process`.
//! - A `wait()` waiter is a fresh future per call, so cancelling one `wait()`
//!   cancels neither the child nor the other waiters (P2); it leaves the
//!   waiters however the call ends, dropped included.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::sys;

/// The environment variable that forces a child watcher: `pidfd` or `thread`.
pub const CHILD_WATCHER_ENV: &str = "TULIP_CHILD_WATCHER";

/// Stack size of a fallback waiter thread: it only blocks in `waitid`.
const WAITER_STACK_SIZE: usize = 64 * 1024;

/// asyncio's exit code for a child that someone else reaped.
const UNKNOWN_RETURNCODE: i32 = 255;

/// How a child's exit is noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildWatcherKind {
    /// A pidfd registered with the reactor (asyncio's `PidfdChildWatcher`).
    Pidfd,
    /// A thread per child blocked in `waitid` (asyncio's `ThreadedChildWatcher`).
    Thread,
}

impl ChildWatcherKind {
    /// The watcher's name as asyncio spells it.
    pub fn name(self) -> &'static str {
        match self {
            ChildWatcherKind::Pidfd => "PidfdChildWatcher",
            ChildWatcherKind::Thread => "ThreadedChildWatcher",
        }
    }
}

/// asyncio's `can_use_pidfd()`: probed once per process.
pub fn can_use_pidfd() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| sys::pidfd_open(std::process::id() as libc::pid_t).is_ok())
}

/// The watcher that the environment asks for, if any.
fn forced_by_env() -> Option<ChildWatcherKind> {
    match std::env::var(CHILD_WATCHER_ENV).ok()?.as_str() {
        "thread" => Some(ChildWatcherKind::Thread),
        "pidfd" => Some(ChildWatcherKind::Pidfd),
        _ => None,
    }
}

// ===== one child =====

/// What the loop knows of one child, shared by its `Process` and the watcher.
pub(crate) struct ChildState {
    pub(crate) pid: libc::pid_t,
    /// The child's pidfd while it is unreaped: the pidfd watcher's, or one
    /// opened when the loop closed and handed the child to its reaper.
    pidfd: RefCell<Option<OwnedFd>>,
    /// The closed loop's reaper thread owns the pid now: it may be reaped,
    /// and the number reused, at any moment, so without a pidfd the child
    /// is never signalled again (P3).
    handed_off: Cell<bool>,
    /// Set exactly when the child is reaped.
    returncode: Cell<Option<i32>>,
    /// One future per pending `wait()` call.
    waiters: RefCell<Vec<Future<i32>>>,
    kind: Cell<ChildWatcherKind>,
}

impl ChildState {
    pub(crate) fn returncode(&self) -> Option<i32> {
        self.returncode.get()
    }

    pub(crate) fn kind(&self) -> ChildWatcherKind {
        self.kind.get()
    }

    /// Waits for the exit code; cancelling or dropping this call touches
    /// nothing else.
    pub(crate) async fn wait(&self, lp: &EventLoop) -> Result<i32> {
        if let Some(rc) = self.returncode.get() {
            return Ok(rc);
        }
        let waiter = lp.create_future::<i32>();
        self.waiters.borrow_mut().push(waiter.clone());
        let _waiting = RemoveWaiter {
            list: &self.waiters,
            waiter: &waiter,
        };
        waiter.clone().await
    }

    /// A future resolved with the exit code when the child is reaped (at
    /// once if it was): what asyncio's watcher callback hands to the
    /// transport's `_process_exited`. Unlike a `wait()` waiter it stays
    /// registered until the reap, or until the loop closes.
    pub(crate) fn exit_future(&self, lp: &EventLoop) -> Future<i32> {
        let fut = lp.create_future::<i32>();
        match self.returncode.get() {
            Some(rc) => drop(fut.set_result(rc)),
            None => self.waiters.borrow_mut().push(fut.clone()),
        }
        fut
    }

    /// The error of a `send_signal(sig)` made once the process is finished
    /// (reaped, and its pipes closed): `ESRCH`, asyncio's `_check_proc`
    /// raising `ProcessLookupError`.
    pub(crate) fn finished_error(&self, sig: i32) -> crate::error::Error {
        crate::error::os_error_with_context(
            std::io::Error::from_raw_os_error(libc::ESRCH),
            format!(
                "cannot send signal {sig} to process {}, which has finished and been reaped \
                 (check its return code before signalling it)",
                self.pid
            ),
        )
        .into()
    }

    /// Sends `sig` unless the child is already reaped. Through the pidfd when
    /// there is one, so the signal reaches this very process (P3).
    pub(crate) fn send_signal(&self, sig: i32) -> Result<()> {
        if self.returncode.get().is_some() {
            return Ok(()); // asyncio (Popen.send_signal): no-op once it exited
        }
        let res = match &*self.pidfd.borrow() {
            Some(fd) => sys::pidfd_send_signal(fd.as_raw_fd(), sig),
            // Reaped or not, the number is no longer ours to signal.
            None if self.handed_off.get() => Err(io::Error::from_raw_os_error(libc::ESRCH)),
            // Not reaped yet (reaping happens on this thread): the pid is still ours.
            None => sys::kill(self.pid, sig),
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Err(Error::invalid_argument(format!(
                    "invalid signal number {sig}: pass one from 1 to {}, such as libc::SIGTERM",
                    crate::signals::NSIG - 1
                )))
            }
            other => other.map_err(Error::from),
        }
    }

    /// Records the exit code and wakes the waiters.
    fn finish(&self, lp: &EventLoop, rc: i32) {
        if let Some(fd) = self.pidfd.borrow_mut().take() {
            let _ = lp.remove_reader(fd.as_raw_fd());
            drop(fd);
        }
        self.returncode.set(Some(rc));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            if !w.done() {
                let _ = w.set_result(rc);
            }
        }
    }
}

/// Takes a `wait()` waiter out of its list however the wait ends: failed,
/// cancelled, or dropped before the exit (a lost race). asyncio's waiter
/// is garbage then; left in the list, it would hold the task's waker until
/// the exit, one more for every abandoned `wait()`, and wake it then.
pub(crate) struct RemoveWaiter<'a, T: 'static> {
    pub(crate) list: &'a RefCell<Vec<Future<T>>>,
    pub(crate) waiter: &'a Future<T>,
}

impl<T: 'static> Drop for RemoveWaiter<'_, T> {
    fn drop(&mut self) {
        self.list.borrow_mut().retain(|w| !w.ptr_eq(self.waiter));
    }
}

impl fmt::Debug for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildState")
            .field("pid", &self.pid)
            .field("returncode", &self.returncode.get())
            .field("watcher", &self.kind.get().name())
            .finish()
    }
}

// ===== the watcher =====

/// The per-loop child watcher (a loop extension).
pub(crate) struct ChildWatcher {
    /// The kind chosen by `set_child_watcher`, if any.
    chosen: Cell<Option<ChildWatcherKind>>,
    /// Unreaped children by pid.
    children: RefCell<HashMap<libc::pid_t, Rc<ChildState>>>,
}

impl ChildWatcher {
    fn new() -> ChildWatcher {
        ChildWatcher {
            chosen: Cell::new(None),
            children: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn of(lp: &EventLoop) -> Rc<ChildWatcher> {
        lp.extension(ChildWatcher::new)
    }

    /// The kind a new child gets.
    pub(crate) fn kind(&self) -> ChildWatcherKind {
        forced_by_env()
            .or(self.chosen.get())
            .unwrap_or(if can_use_pidfd() {
                ChildWatcherKind::Pidfd
            } else {
                ChildWatcherKind::Thread
            })
    }

    /// asyncio's `add_child_handler`: starts watching a freshly spawned child.
    /// On error the child has been killed and reaped.
    pub(crate) fn add_child(&self, lp: &EventLoop, pid: libc::pid_t) -> Result<Rc<ChildState>> {
        let kind = self.kind();
        let child = Rc::new(ChildState {
            pid,
            pidfd: RefCell::new(None),
            handed_off: Cell::new(false),
            returncode: Cell::new(None),
            waiters: RefCell::new(Vec::new()),
            kind: Cell::new(kind),
        });
        let mut watched = false;
        if kind == ChildWatcherKind::Pidfd {
            // A failed pidfd_open (EMFILE, ENOSYS) falls back to a thread.
            if let Ok(pidfd) = sys::pidfd_open(pid) {
                let raw = pidfd.as_raw_fd();
                *child.pidfd.borrow_mut() = Some(pidfd);
                let c = child.clone();
                // The loop, weakly: its reactor holds this callback. Not
                // looked up as the running loop: one driven by hand with
                // `run_once` is not running, and must reap all the same.
                let weak = lp.downgrade();
                let reg = lp.add_reader_edge(raw, move || {
                    if let Some(inner) = weak.upgrade() {
                        on_pidfd_readable(&EventLoop { inner }, &c);
                    }
                });
                match reg {
                    Ok(()) => watched = true,
                    Err(_) => drop(child.pidfd.borrow_mut().take()),
                }
            }
        }
        if !watched {
            child.kind.set(ChildWatcherKind::Thread);
            if let Err(e) = spawn_waiter_thread(lp, pid) {
                // Nobody could ever reap it: don't leave it running.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid_blocking(pid);
                return Err(Error::from(e));
            }
        }
        if lp.debug() {
            eprintln!("tulip: child {pid} watched by {}", child.kind().name());
        }
        self.children.borrow_mut().insert(pid, child.clone());
        Ok(child)
    }

    /// Reaps `pid` if it has exited; resolves its waiters.
    fn try_reap(&self, lp: &EventLoop, child: &ChildState) {
        if child.returncode.get().is_some() {
            return;
        }
        let rc = match sys::waitpid_nohang(child.pid) {
            Ok(None) => return, // spurious: still running
            Ok(Some(rc)) => rc,
            Err(_) => {
                // ECHILD: someone else reaped it (asyncio logs a warning too).
                eprintln!(
                    "tulip: unknown child process pid {}, will report returncode {UNKNOWN_RETURNCODE}",
                    child.pid
                );
                UNKNOWN_RETURNCODE
            }
        };
        let removed = self.children.borrow_mut().remove(&child.pid);
        child.finish(lp, rc);
        drop(removed);
    }

    pub(crate) fn live_children(&self) -> usize {
        self.children.borrow().len()
    }
}

/// The pidfd's reader: the child exited.
fn on_pidfd_readable(lp: &EventLoop, child: &Rc<ChildState>) {
    ChildWatcher::of(lp).try_reap(lp, child);
}

/// The fallback: a thread waits for the exit without reaping, then asks the
/// loop to reap. If the loop is gone by then, the watcher's `Drop` reaps.
fn spawn_waiter_thread(lp: &EventLoop, pid: libc::pid_t) -> io::Result<()> {
    let handle = lp.handle();
    std::thread::Builder::new()
        .name(format!("tulip-waitpid-{pid}"))
        .stack_size(WAITER_STACK_SIZE)
        .spawn(move || {
            let _ = sys::wait_exited_nowait(pid);
            // Given the loop it runs on: one driven by hand with `run_once`
            // is not running, so there is none to look up.
            let _ = handle.call_soon_threadsafe_with_loop(move |lp| {
                let w = ChildWatcher::of(lp);
                let child = w.children.borrow().get(&pid).cloned();
                if let Some(child) = child {
                    w.try_reap(lp, &child);
                }
            });
        })?;
    Ok(())
}

impl Drop for ChildWatcher {
    /// The loop is closing: reap what is left, each child in a background
    /// thread of its own (asyncio leaves them to the next watcher; tulip
    /// leaves no zombie).
    ///
    /// A `Process` may outlive the loop and be signalled later, when the
    /// reaper may have reaped its pid and the number been reused. So each
    /// child handed over is given a pidfd now, while its pid is surely
    /// still ours (unreaped), and is signalled only through it from then
    /// on; where no pidfd can be had, it is not signalled at all (P3).
    fn drop(&mut self) {
        // The waiters of the children handed over are dropped, not left
        // pending for ever: a subprocess transport's exit callback holds
        // the transport, which holds the child (a cycle). Dropped last,
        // once the map is empty.
        let mut waiters = Vec::new();
        let pids: Vec<libc::pid_t> = self
            .children
            .get_mut()
            .drain()
            .filter(|(_, c)| c.returncode.get().is_none())
            .map(|(pid, c)| {
                let mut pidfd = c.pidfd.borrow_mut();
                if pidfd.is_none() {
                    *pidfd = sys::pidfd_open(pid).ok();
                }
                c.handed_off.set(true);
                waiters.append(&mut c.waiters.borrow_mut());
                pid
            })
            .collect();
        // After `handed_off`: a transport dropped here signals through
        // the pidfd only.
        drop(waiters);
        // A thread per child, as asyncio's `ThreadedChildWatcher` has: one
        // thread reaping them in turn would leave every child that exits
        // after a long-lived one a zombie until that one exits.
        for pid in pids {
            let spawned = std::thread::Builder::new()
                .name(format!("tulip-reaper-{pid}"))
                .stack_size(WAITER_STACK_SIZE)
                .spawn(move || drop(sys::waitpid_blocking(pid)));
            drop(spawned);
        }
    }
}

impl fmt::Debug for ChildWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildWatcher")
            .field("kind", &self.kind().name())
            .field(
                "children",
                &self.children.try_borrow().map(|c| c.len()).ok(),
            )
            .finish()
    }
}

impl EventLoop {
    /// Chooses the child watcher for children spawned from now on. The
    /// environment variable `TULIP_CHILD_WATCHER` (`pidfd` or `thread`) wins
    /// over this. Choosing `Pidfd` on a kernel without it is an error.
    pub fn set_child_watcher(&self, kind: ChildWatcherKind) -> Result<()> {
        self.check_closed()?;
        if kind == ChildWatcherKind::Pidfd && !can_use_pidfd() {
            return Err(Error::runtime(
                "this kernel has no pidfd_open: use ChildWatcherKind::Thread",
            ));
        }
        ChildWatcher::of(self).chosen.set(Some(kind));
        Ok(())
    }

    /// The child watcher that a child spawned now would get.
    pub fn child_watcher(&self) -> ChildWatcherKind {
        ChildWatcher::of(self).kind()
    }

    /// How many children of this loop are not reaped yet.
    pub fn unreaped_children(&self) -> usize {
        ChildWatcher::of(self).live_children()
    }
}
