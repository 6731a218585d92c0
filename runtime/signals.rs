//! Unix signal handlers that run on the loop. Mirrors `add_signal_handler`,
//! `remove_signal_handler`, `_handle_signal` and `_process_self_data` of
//! `_UnixSelectorEventLoop` in `Lib/asyncio/unix_events.py`, with
//! `signal.set_wakeup_fd` done by hand.
//!
//! A signal is caught by a tiny C-level handler (`on_signal`) that does the
//! only async-signal-safe thing asyncio's C handler does: it writes the
//! signal number, one byte, to the wake-up pipe of the loop that handles
//! that signal. The pipe's read end is registered with the reactor
//! (edge-triggered), so a loop blocked in `epoll_wait` wakes up; the reader
//! drains the pipe and schedules each signal's callback with `call_soon`.
//! A callback runs in a snapshot of the context values current where its
//! handler was added (asyncio's `Handle` takes `copy_context()`).
//!
//! *Deviations.* asyncio adds handlers only on the main thread
//! (`signal.set_wakeup_fd` raises there, and `add_signal_handler` turns it
//! into `RuntimeError`); tulip keeps one wake-up fd per signal, not per
//! process, so a loop on any thread may add handlers, and the last loop to
//! add one for a signal gets that signal. On a closed loop,
//! `remove_signal_handler` fails with [`Error::Closed`] (conformance L5),
//! where asyncio's returns `False` (its `close()` removed every handler).
//!
//! # Invariants
//! - `WAKEUP_FDS[sig]` is the write end of the pipe of the loop that has a
//!   handler for `sig`, or -1. It is set before `sigaction` installs the C
//!   handler, and cleared after the default disposition is restored and
//!   before the pipe is closed (by `remove`, or by `SignalState`'s drop for
//!   a loop dropped without `close`); so the C handler never writes to a
//!   closed or reused fd.
//! - The C handler touches only an atomic load and `write(2)`, and saves
//!   and restores `errno`.
//! - Removing a handler (or closing the loop) restores `SIG_DFL` (R1).
//!   SIGINT too: Rust has no `default_int_handler`, its default *is* SIG_DFL.
//!   Unless another loop added a handler for that signal since: then the
//!   signal is that loop's, and stays caught.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::Location;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::events::Handle;
use crate::sys;

/// One past the highest signal number (Linux's `_NSIG`).
pub const NSIG: i32 = 65;

/// The wake-up fd for each signal number (see the module invariants).
static WAKEUP_FDS: [AtomicI32; NSIG as usize] = [const { AtomicI32::new(-1) }; NSIG as usize];

/// Ids of installed handlers, so a runner can tell whether SIGINT is still its own.
static NEXT_HANDLER_ID: AtomicU64 = AtomicU64::new(1);

/// The C-level handler: write the signal number to the loop's pipe.
extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    if (0..NSIG).contains(&sig) {
        let fd = WAKEUP_FDS[sig as usize].load(Ordering::Relaxed);
        if fd >= 0 {
            let byte = sig as u8;
            // SAFETY: write(2) is async-signal-safe; a full pipe (EAGAIN) just
            // drops the byte, as asyncio's wake-up fd does.
            unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        }
    }
    // SAFETY: as above; restores the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs `handler` (the C handler, or SIG_DFL) for `sig`.
fn set_disposition(sig: i32, catch: bool) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value; we fill the fields used.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = if catch {
        on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t
    } else {
        libc::SIG_DFL
    };
    // asyncio's signal.siginterrupt(sig, False): restart interrupted syscalls.
    sa.sa_flags = libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t to initialize.
    unsafe { libc::sigemptyset(&mut sa.sa_mask) };
    // SAFETY: `sa` is fully initialized; a null old-action pointer is allowed.
    let ret = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// True if `sig`'s disposition is the default one (`SIG_DFL`).
pub fn has_default_disposition(sig: i32) -> bool {
    // SAFETY: a zeroed sigaction is a valid out-value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new-action only reads the current one into `old`.
    let ret = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    ret == 0 && old.sa_sigaction == libc::SIG_DFL
}

/// asyncio's `_check_signal`: `sig in signal.valid_signals()`. Python
/// builds that set with `sigfillset`, which leaves out the signals the C
/// library keeps for itself (glibc's 32 and 33, below SIGRTMIN): those are
/// invalid numbers too, not signals that "cannot be caught".
fn check_signal(sig: i32) -> Result<()> {
    if !(1..NSIG).contains(&sig) {
        return Err(Error::invalid_argument(format!(
            "sig {sig} out of range(1, {NSIG}): pass a signal number such as libc::SIGINT"
        )));
    }
    // SAFETY: a zeroed sigset_t is a valid value for sigfillset to fill.
    let mut valid: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `valid` is a sigset_t we own, and `sig` is in 1..NSIG.
    let member = unsafe {
        libc::sigfillset(&mut valid);
        libc::sigismember(&valid, sig)
    };
    if member != 1 {
        return Err(Error::invalid_argument(format!(
            "invalid signal number {sig}: the C library reserves it for itself; \
             use a real-time signal from libc::SIGRTMIN() up instead"
        )));
    }
    Ok(())
}

type Callback = Rc<dyn Fn()>;

/// An installed handler: asyncio keeps a `Handle` per signal.
struct Handler {
    /// See `add_signal_handler_id`.
    id: u64,
    cb: Callback,
    /// The callback's type name and where it was added, for reports: the
    /// handle scheduled for each delivery is the handler's, not ours.
    name: &'static str,
    created_at: &'static Location<'static>,
}

/// The signal side of one loop (a loop extension).
pub(crate) struct SignalState {
    /// The wake-up pipe: the reactor watches `rfd`, the C handler writes `wfd`.
    pipe: RefCell<Option<(OwnedFd, OwnedFd)>>,
    handlers: RefCell<HashMap<i32, Handler>>,
}

impl SignalState {
    fn of(lp: &EventLoop) -> Rc<SignalState> {
        lp.extension(|| {
            let weak = lp.downgrade();
            lp.add_close_hook(move || {
                // asyncio's close(): remove every handler.
                if let Some(inner) = weak.upgrade() {
                    let lp = EventLoop { inner };
                    SignalState::of(&lp).remove_all();
                }
            });
            SignalState {
                pipe: RefCell::new(None),
                handlers: RefCell::new(HashMap::new()),
            }
        })
    }

    /// Creates the pipe and registers its reader, once.
    fn ensure_pipe(&self, lp: &EventLoop) -> Result<i32> {
        if let Some((_, w)) = &*self.pipe.borrow() {
            return Ok(w.as_raw_fd());
        }
        let (r, w) = sys::pipe()?;
        sys::set_nonblocking(&r)?;
        sys::set_nonblocking(&w)?;
        let rfd = r.as_raw_fd();
        let weak = lp.downgrade();
        lp.add_reader_edge(rfd, move || {
            if let Some(inner) = weak.upgrade() {
                let lp = EventLoop { inner };
                SignalState::of(&lp).process_self_data(&lp, rfd);
            }
        })?;
        let wfd = w.as_raw_fd();
        *self.pipe.borrow_mut() = Some((r, w));
        Ok(wfd)
    }

    /// asyncio's `_read_from_self` + `_process_self_data`: drain the pipe,
    /// schedule one callback per signal byte.
    fn process_self_data(&self, lp: &EventLoop, rfd: i32) {
        drain(rfd, |sig| self.handle_signal(lp, sig));
    }

    /// Drains the pipe now, outside the loop's poll: each signal is
    /// scheduled as the reader would, except `wanted`, which is counted.
    fn take_pending(&self, lp: &EventLoop, wanted: i32) -> usize {
        let Some(rfd) = self.pipe.borrow().as_ref().map(|(r, _)| r.as_raw_fd()) else {
            return 0;
        };
        let mut count = 0;
        drain(rfd, |sig| {
            if sig == wanted {
                count += 1;
            } else {
                self.handle_signal(lp, sig);
            }
        });
        count
    }

    /// asyncio's `_handle_signal`: `call_soon` the handler.
    fn handle_signal(&self, lp: &EventLoop, sig: i32) {
        let handle = self
            .handlers
            .borrow()
            .get(&sig)
            .map(|h| Handle::signal(h.cb.clone(), h.name, h.created_at));
        if let Some(h) = handle {
            let _ = lp.push_ready(h.into_ready());
        }
    }

    fn add(
        &self,
        lp: &EventLoop,
        sig: i32,
        cb: Callback,
        name: &'static str,
        created_at: &'static Location<'static>,
    ) -> Result<u64> {
        check_signal(sig)?;
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            return Err(Error::runtime(format!(
                "sig {sig} cannot be caught: SIGKILL and SIGSTOP take no handler; \
                 handle another signal, such as SIGTERM"
            )));
        }
        let wfd = self.ensure_pipe(lp)?;
        let id = NEXT_HANDLER_ID.fetch_add(1, Ordering::Relaxed);
        let handler = Handler {
            id,
            cb,
            name,
            created_at,
        };
        let old = self.handlers.borrow_mut().insert(sig, handler);
        WAKEUP_FDS[sig as usize].store(wfd, Ordering::SeqCst);
        if let Err(e) = set_disposition(sig, true) {
            self.handlers.borrow_mut().remove(&sig);
            drop(old);
            WAKEUP_FDS[sig as usize].store(-1, Ordering::SeqCst);
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Err(Error::runtime(format!(
                    "sig {sig} cannot be caught: the system refuses a handler for it"
                )));
            }
            return Err(e.into());
        }
        Ok(id)
    }

    fn remove(&self, sig: i32) -> Result<bool> {
        check_signal(sig)?;
        let removed = self.handlers.borrow_mut().remove(&sig);
        if removed.is_none() {
            return Ok(false);
        }
        // A loop that added a handler for `sig` since then owns it now:
        // the disposition and the wake-up fd are its, not ours to reset.
        let ours = self.pipe.borrow().as_ref().map(|(_, w)| w.as_raw_fd());
        if ours != Some(WAKEUP_FDS[sig as usize].load(Ordering::SeqCst)) {
            return Ok(true);
        }
        set_disposition(sig, false).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                Error::runtime(format!(
                    "sig {sig} cannot be caught: the system refuses to reset its handler"
                ))
            } else {
                e.into()
            }
        })?;
        WAKEUP_FDS[sig as usize].store(-1, Ordering::SeqCst);
        Ok(true)
    }

    /// Removes every handler; the pipe is closed when the extension drops,
    /// after the reactor has let go of it.
    fn remove_all(&self) {
        let sigs: Vec<i32> = self.handlers.borrow().keys().copied().collect();
        for sig in sigs {
            let _ = self.remove(sig);
        }
    }
}

impl Drop for SignalState {
    /// The pipe closes right after this. `close()` has removed every
    /// handler by now, but a loop dropped without it (one left in
    /// `set_event_loop` when its thread ends) has not: remove the handlers
    /// still pointing at this pipe, as asyncio's `close()` from `__del__`
    /// would, so the C handler never writes to a closed or reused fd.
    fn drop(&mut self) {
        let Some((_, w)) = self.pipe.get_mut() else {
            return;
        };
        let wfd = w.as_raw_fd();
        for &sig in self.handlers.get_mut().keys() {
            if WAKEUP_FDS[sig as usize].load(Ordering::SeqCst) == wfd {
                let _ = set_disposition(sig, false);
                WAKEUP_FDS[sig as usize].store(-1, Ordering::SeqCst);
            }
        }
    }
}

/// Reads the wake-up pipe until it is empty; `f` gets each signal number.
fn drain(rfd: i32, mut f: impl FnMut(i32)) {
    let mut buf = [0u8; 256];
    loop {
        match sys::read(rfd, &mut buf) {
            Ok(0) => return,
            Ok(n) => buf[..n].iter().for_each(|&sig| f(sig as i32)),
            Err(_) => return, // WouldBlock: drained
        }
    }
}

impl fmt::Debug for SignalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sigs: Vec<i32> = self
            .handlers
            .try_borrow()
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        sigs.sort_unstable();
        f.debug_struct("SignalState")
            .field("signals", &sigs)
            .finish()
    }
}

impl EventLoop {
    /// asyncio's `loop.add_signal_handler(sig, callback)`: `f` runs on the
    /// loop (through `call_soon`) each time `sig` arrives, even while the
    /// loop blocks in poll. Replaces an earlier handler for `sig`. As
    /// asyncio's handler `Handle` does, `f` runs in a snapshot of the
    /// context values current here, taken once (what one run sets, the
    /// next one sees, also when there were none here: the context the
    /// first `set` makes is kept).
    ///
    /// Errors: the loop is closed; `sig` is out of `1..65`, or one the C
    /// library reserves (`InvalidArgument`); `sig` cannot be caught, as
    /// SIGKILL and SIGSTOP (`Runtime`). Signal dispositions are
    /// process-wide: the last loop to add a handler for `sig` gets it.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// let lp = tulip::EventLoop::new().unwrap();
    /// let got = Rc::new(Cell::new(false));
    /// let (g, stopper) = (got.clone(), lp.clone());
    /// lp.add_signal_handler(libc::SIGUSR2, move || { g.set(true); stopper.stop(); }).unwrap();
    /// // SAFETY: raise() sends a signal to this very thread.
    /// lp.call_soon(|| unsafe { libc::raise(libc::SIGUSR2); }).unwrap();
    /// lp.run_forever().unwrap();
    /// assert!(got.get());
    /// assert!(lp.remove_signal_handler(libc::SIGUSR2).unwrap());
    /// lp.close().unwrap();
    /// ```
    #[track_caller]
    pub fn add_signal_handler<F: Fn() + 'static>(&self, sig: i32, f: F) -> Result<()> {
        self.add_signal_handler_id(sig, f).map(|_| ())
    }

    #[track_caller]
    pub(crate) fn add_signal_handler_id<F: Fn() + 'static>(&self, sig: i32, f: F) -> Result<u64> {
        self.check_closed()?;
        let (name, at) = (std::any::type_name::<F>(), Location::caller());
        // asyncio's handler `Handle` takes `copy_context()`, as every
        // callback does (see `contextvars`).
        let ctx = crate::contextvars::RepeatContext::new();
        let f: Rc<dyn Fn()> = Rc::new(move || ctx.run(&f));
        SignalState::of(self).add(self, sig, f, name, at)
    }

    /// asyncio's `loop.remove_signal_handler(sig)`: removes the handler and
    /// restores the default disposition. Returns whether there was one.
    ///
    /// Errors: the loop is closed (asyncio returns `False` then: its
    /// `close()` removed every handler); `sig` is not a valid signal number
    /// (`InvalidArgument`, as for `add_signal_handler`).
    pub fn remove_signal_handler(&self, sig: i32) -> Result<bool> {
        self.check_closed()?;
        SignalState::of(self).remove(sig)
    }

    /// How many deliveries of `sig` wait in the wake-up pipe, not yet seen
    /// by the loop; they are taken out (the other signals there are
    /// scheduled as usual). A tulip extension, for a handler just removed:
    /// a signal caught in the loop's last iteration (after its last poll)
    /// never reaches a handler, where asyncio's Python-level handler would
    /// have run at once; what arrived while the handler was installed is
    /// its remover's to handle, and would otherwise go to the next
    /// handler added for `sig`.
    ///
    /// ```
    /// let lp = tulip::EventLoop::new().unwrap();
    /// lp.add_signal_handler(libc::SIGUSR1, || unreachable!()).unwrap();
    /// // SAFETY: raise() signals this thread; the handler above is installed.
    /// unsafe { libc::raise(libc::SIGUSR1) };
    /// lp.remove_signal_handler(libc::SIGUSR1).unwrap();
    /// assert_eq!(lp.take_pending_signals(libc::SIGUSR1), 1);
    /// # lp.close().unwrap();
    /// ```
    pub fn take_pending_signals(&self, sig: i32) -> usize {
        SignalState::of(self).take_pending(self, sig)
    }

    /// The id of the handler for `sig`, if any (see `add_signal_handler_id`).
    pub(crate) fn signal_handler_id(&self, sig: i32) -> Option<u64> {
        SignalState::of(self)
            .handlers
            .borrow()
            .get(&sig)
            .map(|h| h.id)
    }
}
