//! The subprocess transport: a child process and its pipes, seen by a
//! [`SubprocessProtocol`]. Mirrors `BaseSubprocessTransport`,
//! `WriteSubprocessPipeProto` and `ReadSubprocessPipeProto` in
//! `Lib/asyncio/base_subprocess.py`, and `loop.subprocess_exec` /
//! `loop.subprocess_shell` in `base_events.py` and `unix_events.py`.
//!
//! asyncio builds its `Process` on this layer: `create_subprocess_exec`
//! is `subprocess_exec` with a `SubprocessStreamProtocol` that feeds
//! stream readers. The layers, from the kernel up:
//!
//! 1. the child's pipes are [`ReadPipeTransport`]s and a
//!    [`WritePipeTransport`], each with a small pipe protocol of this
//!    module (asyncio's `ReadSubprocessPipeProto`) that tells the
//!    subprocess transport what happened on fd 0, 1 or 2;
//! 2. the child watcher (`child_watcher.rs`) reaps the child and resolves
//!    its exit future, whose done callback is the transport's
//!    `process_exited` (asyncio's `_child_watcher_callback` →
//!    `_process_exited`);
//! 3. the transport turns all of that into calls of the user's
//!    [`SubprocessProtocol`], each one a callback of its own on the loop
//!    (asyncio's `_call`), queued until `connection_made` has been called.
//!
//! tulip's [`Process`](crate::Process) takes a shorter road: its pipes
//! feed its streams directly, with no protocol call in between (one
//! callback and one copy less per chunk of output, and a `spawn()` that
//! returns at once). What it keeps of this layer is the bookkeeping
//! `wait()` needs (asyncio's `_try_finish`).
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//! use tulip::subprocess::{Stdio, Stdios};
//! use tulip::{Future, SubprocessProtocol};
//!
//! /// Collects stdout and says when everything is over.
//! struct Collect {
//!     out: RefCell<Vec<u8>>,
//!     done: Future<()>,
//! }
//!
//! impl SubprocessProtocol for Collect {
//!     fn pipe_data_received(&self, _fd: i32, data: &[u8]) {
//!         self.out.borrow_mut().extend_from_slice(data);
//!     }
//!     fn connection_lost(&self, _exc: Option<tulip::Error>) {
//!         let _ = self.done.set_result(());
//!     }
//! }
//!
//! tulip::run(async {
//!     let lp = tulip::get_running_loop()?;
//!     let done = lp.create_future();
//!     let stdio = Stdios { stdout: Stdio::Pipe, ..Stdios::default() };
//!     let make = || Rc::new(Collect { out: RefCell::new(Vec::new()), done: done.clone() });
//!     let (transport, proto) = lp.subprocess_exec(make, "echo", ["hi"], stdio).await?;
//!     done.await?;
//!     assert_eq!(&*proto.out.borrow(), b"hi\n");
//!     assert_eq!(transport.get_returncode(), Some(0));
//!     Ok(())
//! }).unwrap();
//! ```
//!
//! # Invariants
//! - The protocol hears `connection_made` first, once the child's pipe
//!   transports are all connected; events that come before are queued
//!   (`pending_calls`) and delivered after it, in order. `connection_lost`
//!   comes last, exactly once, when the child was reaped and every pipe
//!   was lost (`_try_finish`); after it the transport lets go of the
//!   protocol (no cycle is left), and `wait()` calls return.
//! - Every protocol call but `pause_writing`/`resume_writing` is its own
//!   callback on the loop, and a panic in one is reported without stopping
//!   the others. Those two come straight from the stdin pipe's flow
//!   control (asyncio's `WriteSubprocessPipeProto`), which reports their
//!   panics and goes on. None runs while the transport or a pipe holds a
//!   borrow.
//! - Until the child is reaped, the watcher holds the transport (through
//!   the exit future's callback), as asyncio's watcher holds it: a running
//!   child's transport is never dropped under it. A transport dropped
//!   without `close()` (its loop closed) kills a child still running, as
//!   asyncio's `__del__` does.
//! - Signals go through the child watcher's `ChildState`, so none reaches
//!   a recycled pid; once the transport is finished, signalling is an
//!   `ESRCH` error (asyncio's `_check_proc` raising `ProcessLookupError`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::OwnedFd;
use std::rc::{Rc, Weak};

use crate::child_watcher::{ChildState, ChildWatcher, RemoveWaiter};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopRef};
use crate::futures::Future;
use crate::pipes::{ReadPipeTransport, WritePipeTransport};
use crate::protocols::{Protocol, SubprocessProtocol};
use crate::selector_transport::LoopClosed;
use crate::subprocess::{Command, Stdios};
use crate::transports::Transport;

/// A call of the protocol waiting for its turn (asyncio's `_call(cb, *data)`).
/// All but `Lost` go to the protocol set when they were made (asyncio binds
/// `self._protocol.pipe_data_received` then); `Lost` is the transport's own
/// `_call_connection_lost`, which reads the protocol when it runs.
enum Call {
    Data(i32, Vec<u8>),
    PipeLost(i32, Option<Error>),
    Exited,
    /// `_call_connection_lost`.
    Lost,
}

/// A call and the protocol it was made for (`None`: read when it runs).
type Queued = (Option<Rc<dyn SubprocessProtocol>>, Call);

/// One of the child's pipes: `_pipes[fd]`.
struct PipeSlot {
    pipe: Rc<dyn Transport>,
    /// The pipe transport called `connection_lost` (or let go of its
    /// protocol without it: released by a closed loop).
    disconnected: bool,
}

/// asyncio's `SubprocessTransport` (`BaseSubprocessTransport`): a child
/// process started by [`EventLoop::subprocess_exec`],
/// [`subprocess_shell`](EventLoop::subprocess_shell) or
/// [`subprocess_command`](EventLoop::subprocess_command), with its pipes.
/// See the [module docs](self).
pub struct SubprocessTransport {
    lp: LoopRef,
    me: Weak<SubprocessTransport>,
    child: Rc<ChildState>,
    /// `None` after `connection_lost` (asyncio sets `_protocol = None`).
    protocol: RefCell<Option<Rc<dyn SubprocessProtocol>>>,
    /// stdin, stdout, stderr: `Some` where the child has a pipe.
    pipes: RefCell<[Option<PipeSlot>; 3]>,
    /// Set by `process_exited`, one callback after the reap.
    returncode: Cell<Option<i32>>,
    exit_waiters: RefCell<Vec<Future<i32>>>,
    /// Calls made before `connection_made`; `None` from then on.
    pending_calls: RefCell<Option<VecDeque<Queued>>>,
    closed: Cell<bool>,
    finished: Cell<bool>,
    /// `_call_connection_lost` ran (asyncio's `_proc = None`): signals are
    /// an `ESRCH` error from then on. Not the protocol's absence, which a
    /// closed loop causes too while the child may still run.
    lost: Cell<bool>,
    /// Key in the loop's list of what `close()` releases.
    tracked: Cell<Option<usize>>,
}

impl SubprocessTransport {
    /// The child's process id (asyncio's `get_pid`).
    pub fn get_pid(&self) -> u32 {
        self.child.pid as u32
    }

    /// The exit code once the transport heard of the exit: `-N` if signal
    /// `N` killed the child (asyncio's `get_returncode`).
    pub fn get_returncode(&self) -> Option<i32> {
        self.returncode.get()
    }

    /// The transport of the child's pipe `fd` (0: stdin, a
    /// [`WritePipeTransport`]; 1 or 2: a [`ReadPipeTransport`]), or `None`
    /// if that stream is not a pipe (asyncio's `get_pipe_transport`).
    pub fn get_pipe_transport(&self, fd: i32) -> Option<Rc<dyn Transport>> {
        let i = usize::try_from(fd).ok().filter(|&i| i < 3)?;
        self.pipes.borrow()[i].as_ref().map(|s| s.pipe.clone())
    }

    /// The protocol, until `connection_lost` was called.
    pub fn get_protocol(&self) -> Option<Rc<dyn SubprocessProtocol>> {
        self.protocol.borrow().clone()
    }

    /// asyncio's `set_protocol`: the calls made from now on go to
    /// `protocol`; those already scheduled (or queued before
    /// `connection_made`) still go to the old one, as asyncio bound them,
    /// except `connection_lost`, which goes to the protocol set when it
    /// runs. Refused once `connection_lost` was called: a protocol kept
    /// then would hold the transport for ever.
    pub fn set_protocol(&self, protocol: Rc<dyn SubprocessProtocol>) -> Result<()> {
        let mut slot = self.protocol.borrow_mut();
        if slot.is_none() {
            return Err(Error::runtime(
                "the subprocess transport is finished (connection_lost was called): its protocol cannot change",
            ));
        }
        let old = slot.replace(protocol);
        drop(slot);
        drop(old);
        Ok(())
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closed.get()
    }

    /// asyncio's `close()`: closes the pipes and kills the child if it is
    /// still running (a warning in debug mode). The protocol still hears
    /// the pipes' and the child's end, then `connection_lost`.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let pipes: Vec<Rc<dyn Transport>> = self
            .pipes
            .borrow()
            .iter()
            .flatten()
            .map(|s| s.pipe.clone())
            .collect();
        for pipe in pipes {
            pipe.close();
        }
        if self.returncode.get().is_none() && self.child.returncode().is_none() {
            if self.lp.debug() {
                eprintln!("tulip: Close running child process: kill {self:?}");
            }
            let _ = self.child.send_signal(libc::SIGKILL);
        }
    }

    /// Sends signal `sig` to the child (through its pidfd when there is
    /// one; a no-op once it was reaped). Once the transport is finished
    /// (`connection_lost` was called), an `ESRCH` error, as asyncio's
    /// `_check_proc` raises `ProcessLookupError`.
    pub fn send_signal(&self, sig: i32) -> Result<()> {
        if self.lost.get() {
            return Err(self.child.finished_error(sig));
        }
        self.child.send_signal(sig)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Waits until the protocol's `connection_lost` was called, and returns
    /// the exit code; at once if the exit is already known (asyncio's
    /// `_wait`). Cancelling it touches nothing else.
    pub async fn wait(&self) -> Result<i32> {
        if let Some(rc) = self.returncode.get() {
            return Ok(rc);
        }
        let waiter = self.lp.create_future::<i32>();
        self.exit_waiters.borrow_mut().push(waiter.clone());
        let _waiting = RemoveWaiter {
            list: &self.exit_waiters,
            waiter: &waiter,
        };
        waiter.clone().await
    }

    // ----- asyncio's private half -----

    /// `_call`: queued until `connection_made`, then a callback of its own.
    fn call(&self, c: Call) {
        let to = match c {
            Call::Lost => None,
            _ => self.get_protocol(),
        };
        if let Some(q) = self.pending_calls.borrow_mut().as_mut() {
            q.push_back((to, c));
            return;
        }
        self.schedule(to, c);
    }

    fn schedule(&self, to: Option<Rc<dyn SubprocessProtocol>>, c: Call) {
        let Some(me) = self.me.upgrade() else { return };
        // A closed loop runs nothing more: the call is dropped.
        let _ = self.lp.call_soon(move || me.deliver(to, c));
    }

    fn deliver(&self, to: Option<Rc<dyn SubprocessProtocol>>, c: Call) {
        let Some(p) = to.or_else(|| self.get_protocol()) else {
            return;
        };
        match c {
            Call::Data(fd, data) => p.pipe_data_received(fd, &data),
            Call::PipeLost(fd, exc) => p.pipe_connection_lost(fd, exc),
            Call::Exited => p.process_exited(),
            Call::Lost => {
                // try/finally: the waiters wake even if the protocol panics.
                let _finally = Finish(self);
                p.connection_lost(None);
            }
        }
    }

    /// `_pipe_data_received`.
    fn pipe_data_received(&self, fd: i32, data: &[u8]) {
        self.call(Call::Data(fd, data.to_vec()));
    }

    /// `_pipe_connection_lost`.
    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) {
        if let Some(slot) = self.pipes.borrow_mut()[fd as usize].as_mut() {
            slot.disconnected = true;
        }
        self.call(Call::PipeLost(fd, exc));
        self.try_finish();
    }

    /// `_process_exited`: the watcher reaped the child.
    fn process_exited(&self, returncode: i32) {
        if self.returncode.get().is_some() {
            return;
        }
        if self.lp.debug() {
            eprintln!("tulip: {self:?} exited with return code {returncode}");
        }
        self.returncode.set(Some(returncode));
        self.call(Call::Exited);
        self.try_finish();
    }

    /// `_try_finish`: once the child exited and every pipe is lost, the
    /// protocol's `connection_lost` is called.
    fn try_finish(&self) {
        if self.finished.get() || self.returncode.get().is_none() {
            return;
        }
        let all_lost = self.pipes.borrow().iter().flatten().all(|s| s.disconnected);
        if all_lost {
            self.finished.set(true);
            self.call(Call::Lost);
        }
    }

    /// `_connect_pipes` after the pipe transports were made: waits for
    /// each to be connected, then schedules `connection_made` and the calls
    /// queued meanwhile, and returns once `connection_made` has run (as
    /// asyncio's `subprocess_exec` awaits its waiter).
    async fn connect_pipes(self: &Rc<Self>, pipe_waiters: Vec<Future<()>>) -> Result<()> {
        for w in pipe_waiters {
            w.await?;
        }
        let protocol = self.get_protocol().expect("set until connection_lost");
        let me = self.clone();
        let _ = self.lp.call_soon(move || protocol.connection_made(me))?;
        let pending = self.pending_calls.borrow_mut().take();
        for (to, c) in pending.into_iter().flatten() {
            self.schedule(to, c);
        }
        let connected = self.lp.create_future::<()>();
        let c = connected.clone();
        let _ = self.lp.call_soon(move || drop(c.set_result(())))?;
        connected.await
    }
}

/// `_call_connection_lost`'s `finally`: wakes the `wait()` calls and lets
/// go of the protocol.
struct Finish<'a>(&'a SubprocessTransport);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let t = self.0;
        t.lost.set(true);
        let waiters = std::mem::take(&mut *t.exit_waiters.borrow_mut());
        let rc = t.returncode.get().unwrap_or(-1);
        for w in waiters {
            if !w.done() {
                let _ = w.set_result(rc);
            }
        }
        let protocol = t.protocol.borrow_mut().take();
        drop(protocol);
        if let Some(key) = t.tracked.take() {
            t.lp.untrack(key);
        }
    }
}

impl LoopClosed for SubprocessTransport {
    /// The loop closed before the end: no protocol call can run any more.
    /// The protocol is let go of, which breaks the cycle of a protocol
    /// that keeps its transport (asyncio leaves that cycle to the garbage
    /// collector, which then runs `__del__`); the transport's `Drop` then
    /// kills a child still running.
    fn loop_closed(&self) {
        self.tracked.set(None);
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
    }
}

impl Drop for SubprocessTransport {
    /// asyncio's `__del__`: an unclosed transport closes, killing a child
    /// still running. Only reached once the watcher let go, i.e. the child
    /// was reaped or the loop closed; the pipes close as they drop.
    fn drop(&mut self) {
        if !self.closed.get() && self.child.returncode().is_none() {
            let _ = self.child.send_signal(libc::SIGKILL);
        }
        if let Some(key) = self.tracked.take() {
            self.lp.untrack(key);
        }
    }
}

impl fmt::Debug for SubprocessTransport {
    /// Like asyncio's repr: `<SubprocessTransport pid=42 running stdout=...>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<SubprocessTransport")?;
        if self.closed.get() {
            write!(f, " closed")?;
        }
        write!(f, " pid={}", self.child.pid)?;
        match self.returncode.get() {
            Some(rc) => write!(f, " returncode={rc}")?,
            None => write!(f, " running")?,
        }
        if let Ok(pipes) = self.pipes.try_borrow() {
            for (name, slot) in ["stdin", "stdout", "stderr"].iter().zip(pipes.iter()) {
                if let Some(s) = slot {
                    let state = if s.disconnected { "lost" } else { "open" };
                    write!(f, " {name}={state}")?;
                }
            }
        }
        write!(f, ">")
    }
}

/// asyncio's `WriteSubprocessPipeProto` / `ReadSubprocessPipeProto`: the
/// protocol of one of the child's pipe transports, which reports to the
/// subprocess transport.
struct PipeProto {
    /// Let go at `connection_lost` (asyncio: `self.proc = None`).
    proc: RefCell<Option<Rc<SubprocessTransport>>>,
    fd: i32,
}

impl PipeProto {
    fn proc(&self) -> Option<Rc<SubprocessTransport>> {
        self.proc.borrow().clone()
    }
}

impl Protocol for PipeProto {
    fn data_received(&self, data: &[u8]) {
        if let Some(p) = self.proc() {
            p.pipe_data_received(self.fd, data);
        }
    }

    fn connection_lost(&self, exc: Option<Error>) {
        let proc = self.proc.borrow_mut().take();
        if let Some(p) = proc {
            p.pipe_connection_lost(self.fd, exc);
        }
    }

    fn pause_writing(&self) {
        if let Some(p) = self.proc().and_then(|p| p.get_protocol()) {
            p.pause_writing();
        }
    }

    fn resume_writing(&self) {
        if let Some(p) = self.proc().and_then(|p| p.get_protocol()) {
            p.resume_writing();
        }
    }
}

impl Drop for PipeProto {
    /// A pipe transport released by a closed loop lets go of its protocol
    /// without `connection_lost`: the pipe is lost all the same, or
    /// `_try_finish` would wait for it for ever.
    fn drop(&mut self) {
        if let Some(p) = self.proc.get_mut().take() {
            p.pipe_connection_lost(self.fd, None);
        }
    }
}

impl SubprocessTransport {
    /// asyncio's `_make_subprocess_transport` up to the `await waiter`:
    /// starts the child, watches it, wraps its pipes. Returns the transport
    /// and the waiters of the pipes' `connection_made`.
    fn start(
        lp: &EventLoop,
        protocol: Rc<dyn SubprocessProtocol>,
        cmd: &mut Command,
    ) -> Result<(Rc<SubprocessTransport>, Vec<Future<()>>)> {
        let (pid, ours) = cmd.spawn_child(lp)?;
        if lp.debug() {
            eprintln!("tulip: process {cmd:?} created: pid {pid}");
        }
        // On error the child has been killed and reaped.
        let child = ChildWatcher::of(lp).add_child(lp, pid)?;
        let t = Rc::new_cyclic(|me| SubprocessTransport {
            lp: LoopRef::new(lp.clone()),
            me: me.clone(),
            child,
            protocol: RefCell::new(Some(protocol)),
            pipes: RefCell::new([None, None, None]),
            returncode: Cell::new(None),
            exit_waiters: RefCell::new(Vec::new()),
            pending_calls: RefCell::new(Some(VecDeque::new())),
            closed: Cell::new(false),
            finished: Cell::new(false),
            lost: Cell::new(false),
            tracked: Cell::new(None),
        });
        let weak: Weak<dyn LoopClosed> = Rc::downgrade(&t) as _;
        t.tracked.set(Some(lp.track_until_close(weak)));
        // The watcher holds the transport until the reap.
        let exit = t.child.exit_future(lp);
        let me = t.clone();
        exit.add_done_callback(move |f| {
            if let Ok(rc) = f.result() {
                me.process_exited(rc);
            }
        });
        let mut waiters = Vec::new();
        for (fd, end) in ours.into_iter().enumerate() {
            let Some(end) = end else { continue };
            // Wrapping fails only for lack of memory or fds (or a closed
            // loop). The exit callback and the pipes already wrapped hold
            // `t`, so it would not drop: close it, killing the child, as
            // asyncio's constructor does when `_start` fails.
            let (pipe, waiter) = match t.wrap_pipe(lp, fd as i32, end) {
                Ok(wrapped) => wrapped,
                Err(e) => {
                    t.close();
                    return Err(e);
                }
            };
            t.pipes.borrow_mut()[fd] = Some(PipeSlot {
                pipe,
                disconnected: false,
            });
            waiters.push(waiter);
        }
        Ok((t, waiters))
    }

    fn wrap_pipe(
        self: &Rc<Self>,
        lp: &EventLoop,
        fd: i32,
        end: OwnedFd,
    ) -> Result<(Rc<dyn Transport>, Future<()>)> {
        let proto: Rc<dyn Protocol> = Rc::new(PipeProto {
            proc: RefCell::new(Some(self.clone())),
            fd,
        });
        let waiter = lp.create_future::<()>();
        let pipe: Rc<dyn Transport> = if fd == 0 {
            WritePipeTransport::new(lp, end, proto, Some(waiter.clone()))?
        } else {
            ReadPipeTransport::new(lp, end, proto, Some(waiter.clone()))?
        };
        Ok((pipe, waiter))
    }
}

impl EventLoop {
    /// asyncio's `loop.subprocess_exec(protocol_factory, program, *args,
    /// stdin=, stdout=, stderr=)`: starts `program` with `args`, and
    /// returns once the protocol's `connection_made` has run. See the
    /// [module docs](crate::base_subprocess).
    ///
    /// asyncio pipes all three streams by default; here they are what
    /// `stdio` says ([`Stdios::piped`] for asyncio's default).
    pub async fn subprocess_exec<P, F, I, S>(
        &self,
        protocol_factory: F,
        program: impl AsRef<OsStr>,
        args: I,
        stdio: Stdios,
    ) -> Result<(Rc<SubprocessTransport>, Rc<P>)>
    where
        P: SubprocessProtocol + 'static,
        F: FnOnce() -> Rc<P>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program);
        cmd.args(args).stdios(stdio);
        self.subprocess_command(protocol_factory, &mut cmd).await
    }

    /// asyncio's `loop.subprocess_shell(protocol_factory, cmd, ...)`: runs
    /// `cmd` with `/bin/sh -c`, as [`subprocess_exec`](Self::subprocess_exec).
    pub async fn subprocess_shell<P, F>(
        &self,
        protocol_factory: F,
        cmd: impl AsRef<OsStr>,
        stdio: Stdios,
    ) -> Result<(Rc<SubprocessTransport>, Rc<P>)>
    where
        P: SubprocessProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let mut cmd = Command::shell(cmd);
        cmd.stdios(stdio);
        self.subprocess_command(protocol_factory, &mut cmd).await
    }

    /// [`subprocess_exec`](Self::subprocess_exec) with every option of a
    /// [`Command`] (environment, working directory, stdio; asyncio's
    /// `**kwargs` to `Popen`). `kill_on_drop` and `limit` belong to
    /// [`Process`](crate::Process) and are ignored here.
    ///
    /// If the wait for the pipes fails (the caller is cancelled), the
    /// transport is closed, killing the child, and the error is returned
    /// once the child was reaped, as asyncio does; and if `connection_made`
    /// was already scheduled, once the protocol heard `connection_lost`
    /// (asyncio's `await transp._wait()`), unless the exit had already
    /// reached the transport: [`wait`](SubprocessTransport::wait) then
    /// returns at once, as `_wait` returns `_returncode`, and
    /// `connection_lost` comes after.
    pub async fn subprocess_command<P, F>(
        &self,
        protocol_factory: F,
        cmd: &mut Command,
    ) -> Result<(Rc<SubprocessTransport>, Rc<P>)>
    where
        P: SubprocessProtocol + 'static,
        F: FnOnce() -> Rc<P>,
    {
        let protocol = protocol_factory();
        let (transport, pipe_waiters) = SubprocessTransport::start(self, protocol.clone(), cmd)?;
        if let Err(e) = transport.connect_pipes(pipe_waiters).await {
            transport.close();
            // asyncio awaits `transp._wait()`, until `connection_lost` (at
            // once if `process_exited` has run). If
            // `connection_made` was scheduled before the failure (the
            // caller was cancelled at the last step), the calls flow, and
            // so does `connection_lost`: wait for it. Else the protocol,
            // never connected, hears nothing: wait for the reap itself.
            let connected = transport.pending_calls.borrow().is_none();
            if connected {
                let _ = transport.wait().await;
            } else {
                let _ = transport.child.wait(self).await;
            }
            return Err(e);
        }
        Ok((transport, protocol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes down the data it gets.
    #[derive(Default)]
    struct Log(RefCell<Vec<Vec<u8>>>);
    impl SubprocessProtocol for Log {
        fn pipe_data_received(&self, _fd: i32, data: &[u8]) {
            self.0.borrow_mut().push(data.to_vec());
        }
    }

    /// A call scheduled before `set_protocol` goes to the old protocol, one
    /// made after it to the new one: asyncio's `_call` binds
    /// `self._protocol.pipe_data_received` when it is made.
    #[test]
    fn set_protocol_leaves_calls_already_made_to_the_old_protocol() {
        let (old, new) = crate::run(async {
            let lp = crate::get_running_loop()?;
            let (t, old) = lp
                .subprocess_exec(
                    || Rc::new(Log::default()),
                    "sleep",
                    ["100"],
                    Stdios::default(),
                )
                .await?;
            t.pipe_data_received(1, b"before");
            let new = Rc::new(Log::default());
            t.set_protocol(new.clone())?;
            t.pipe_data_received(1, b"after");
            crate::sleep(0.0).await?;
            t.close();
            t.wait().await?;
            let seen = (old.0.borrow().clone(), new.0.borrow().clone());
            Ok(seen)
        })
        .unwrap();
        assert_eq!(old, [b"before".to_vec()]);
        assert_eq!(new, [b"after".to_vec()]);
    }
}
