//! Subprocesses. Mirrors `Lib/asyncio/subprocess.py` (`Process`,
//! `create_subprocess_exec`, `create_subprocess_shell`, `PIPE`, `STDOUT`,
//! `DEVNULL`). asyncio's `Process` stands on `BaseSubprocessTransport`
//! (tulip's [`base_subprocess`](crate::base_subprocess)); tulip's wires
//! the pipes to its streams directly and keeps only that transport's
//! pipe bookkeeping (`_try_finish`) for `wait()`.
//!
//! A [`Command`] is shaped like `std::process::Command` (it wraps one) plus
//! asyncio's stdio choices and a `kill_on_drop` switch; [`Command::spawn`]
//! starts the child through std (`posix_spawn` where std can) and hands it to
//! the loop's child watcher (see [`child_watcher`](crate::child_watcher)).
//! [`create_subprocess_exec`] and [`create_subprocess_shell`] are asyncio's
//! two entry points on top of it.
//!
//! A spawn blocks its thread until the child has exec'd (`posix_spawn` waits
//! for that, and so does std's fork path), which is most of what a spawn
//! costs. [`Command::spawn_in_executor`] moves that part to a worker thread
//! of a [`ThreadPool`], so that the loop keeps running and, with several
//! workers, spawns overlap: the pipes are still made, and the child watched
//! and its pipes wrapped, on the loop thread.
//!
//! ```
//! use tulip::subprocess::{Command, Stdio};
//! tulip::run(async {
//!     let mut proc = Command::new("echo")
//!         .arg("hello")
//!         .stdout(Stdio::Pipe)
//!         .kill_on_drop(true)
//!         .spawn()?;
//!     let out = proc.stdout.as_ref().unwrap().read_to_eof().await?;
//!     assert_eq!(out, b"hello\n");
//!     assert_eq!(proc.wait().await?, 0);
//!     Ok(())
//! }).unwrap();
//! ```
//!
//! # Invariants
//! - A failed spawn (`ENOENT`, `EACCES`, `EMFILE`, ...) returns the OS error
//!   from std unchanged (so `raw_os_error()` works) and leaves no fd open:
//!   every pipe end is an `OwnedFd`, and the builder drops the child's ends
//!   right after the spawn, success or not (P3).
//! - The parent's pipe ends are non-blocking and close-on-exec; the child's
//!   ends are blocking (they are the child's stdio).
//! - A [`Stdio::Fd`] descriptor stays the caller's: a spawn neither closes
//!   it nor changes its flags; the child gets a duplicate, and the spawn's
//!   own copy is closed with the child's pipe ends.
//! - A `Process` never reaps: the watcher does, even after the `Process` is
//!   dropped. `wait()` resolves once the child was reaped *and* every pipe
//!   transport of the child (stdin, stdout, stderr) has called
//!   `connection_lost` (asyncio's `_try_finish` and `_call_connection_lost`):
//!   the readers then hold all the output and its EOF; a `wait()` called
//!   once the child was reaped returns at once (asyncio's `_wait`). Once
//!   the child was reaped and its stdout and stderr are lost, stdin is
//!   closed (asyncio's `SubprocessStreamProtocol._maybe_close_transport`
//!   closes the transport). As in asyncio, a grandchild that keeps stdout
//!   or stderr open holds a pending `wait()` too, and so does an output
//!   reader left paused above its limit (read it, or use `communicate()`). `returncode()` is set at the reap. From
//!   then on no signal is sent; once every pipe is lost too, signalling is
//!   an `ESRCH` error (asyncio's `ProcessLookupError`).
//! - `spawn_in_executor` only forks and execs on the worker; the child is
//!   watched and reaped by the loop like any other (`waitpid` and pidfds
//!   work for the child of any thread of the process). Until the loop has
//!   adopted it, the child is held by an `Unclaimed` guard that, if dropped
//!   (the loop is gone, or nobody awaits the spawn any more), kills it and
//!   has it reaped: by the watcher of the loop running on the dropping
//!   thread, else on the spot.
//! - A `spawn_in_executor` that does not return a `Process` leaves no child:
//!   cancelled or dropped before a worker took the job, the job is skipped;
//!   cancelled while the worker spawns, it waits for the spawn, kills the
//!   child and waits until it is reaped before returning `Cancelled`.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};
use std::sync::Arc;

use crate::child_watcher::{ChildState, ChildWatcher, ChildWatcherKind, RemoveWaiter};
use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, EventLoop, LoopRef};
use crate::futures::Future;
use crate::pipes::{is_broken_pipe, ReadPipeTransport, WritePipeTransport};
use crate::protocols::Protocol;
pub use crate::streams::DEFAULT_LIMIT;
use crate::streams::{FlowControl, StreamReader, StreamReaderProtocol, StreamWriter};
use crate::sys;
use crate::threads::ThreadPool;
use crate::transports::{BaseTransport, Transport};

/// How much of `communicate`'s input is written before each `drain()`:
/// the transport's high-water mark.
const FEED_CHUNK: usize = 64 * 1024;

/// What one of a child's stdin, stdout or stderr is connected to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdio {
    /// The parent's own stream (asyncio's `None`).
    #[default]
    Inherit,
    /// A pipe to the parent (asyncio's `PIPE`): `Process::stdin` is a
    /// [`StreamWriter`], `stdout`/`stderr` a [`StreamReader`].
    Pipe,
    /// `/dev/null` (asyncio's `DEVNULL`).
    DevNull,
    /// stderr only: wherever stdout goes (asyncio's `STDOUT`).
    Stdout,
    /// An open file descriptor of the caller's (asyncio's `stdout=fd`, as
    /// `subprocess.Popen` takes it): the child gets it as its stdin, stdout
    /// or stderr. It stays the caller's and stays open: the spawn works on
    /// a close-on-exec duplicate, which it closes once the child has
    /// exec'd, so the descriptor must only stay open until `spawn` (or the
    /// first poll of `spawn_in_executor`) has returned. Many children may
    /// share one descriptor, say the write end of one pipe for all their
    /// stderr.
    Fd(RawFd),
}

/// asyncio's `subprocess.PIPE`.
pub const PIPE: Stdio = Stdio::Pipe;
/// asyncio's `subprocess.DEVNULL`.
pub const DEVNULL: Stdio = Stdio::DevNull;
/// asyncio's `subprocess.STDOUT`.
pub const STDOUT: Stdio = Stdio::Stdout;

/// The three stdio choices of [`create_subprocess_exec`] and
/// [`create_subprocess_shell`] (asyncio's `stdin=`, `stdout=`, `stderr=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stdios {
    /// The child's stdin.
    pub stdin: Stdio,
    /// The child's stdout.
    pub stdout: Stdio,
    /// The child's stderr.
    pub stderr: Stdio,
}

impl Stdios {
    /// stdout and stderr piped, stdin inherited: the usual `communicate()` setup.
    pub fn piped_output() -> Stdios {
        Stdios {
            stdin: Stdio::Inherit,
            stdout: Stdio::Pipe,
            stderr: Stdio::Pipe,
        }
    }

    /// All three piped.
    pub fn piped() -> Stdios {
        Stdios {
            stdin: Stdio::Pipe,
            stdout: Stdio::Pipe,
            stderr: Stdio::Pipe,
        }
    }
}

// ===== Command =====

/// A process builder: `std::process::Command` plus asyncio's stdio choices
/// and `kill_on_drop`.
pub struct Command {
    std: std::process::Command,
    stdio: Stdios,
    /// Which of stdin, stdout, stderr were set explicitly (for `output()`).
    stdio_set: [bool; 3],
    kill_on_drop: bool,
    limit: usize,
}

impl Command {
    /// A command that runs `program` (looked up in `PATH` if it has no `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            std: std::process::Command::new(program),
            stdio: Stdios::default(),
            stdio_set: [false; 3],
            kill_on_drop: false,
            limit: DEFAULT_LIMIT,
        }
    }

    /// A command that runs `cmd` with `/bin/sh -c` (asyncio's `shell=True`).
    pub fn shell(cmd: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("/bin/sh");
        c.std.arg("-c").arg(cmd);
        c
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.std.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.std.args(args);
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, val: impl AsRef<OsStr>) -> &mut Command {
        self.std.env(key, val);
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.std.envs(vars);
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.std.env_remove(key);
        self
    }

    /// Starts the child with an empty environment (plus what `env` adds).
    pub fn env_clear(&mut self) -> &mut Command {
        self.std.env_clear();
        self
    }

    /// Sets the child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.std.current_dir(dir);
        self
    }

    /// The child's stdin.
    pub fn stdin(&mut self, s: Stdio) -> &mut Command {
        self.stdio.stdin = s;
        self.stdio_set[0] = true;
        self
    }

    /// The child's stdout.
    pub fn stdout(&mut self, s: Stdio) -> &mut Command {
        self.stdio.stdout = s;
        self.stdio_set[1] = true;
        self
    }

    /// The child's stderr ([`Stdio::Stdout`] sends it where stdout goes).
    pub fn stderr(&mut self, s: Stdio) -> &mut Command {
        self.stdio.stderr = s;
        self.stdio_set[2] = true;
        self
    }

    /// Sets all three stdio choices.
    pub fn stdios(&mut self, s: Stdios) -> &mut Command {
        self.stdio = s;
        self.stdio_set = [true; 3];
        self
    }

    /// Sends SIGKILL to the child when its [`Process`] is dropped before
    /// the child was reaped. The watcher still reaps it. Off by default.
    pub fn kill_on_drop(&mut self, on: bool) -> &mut Command {
        self.kill_on_drop = on;
        self
    }

    /// The buffer limit of the stdout/stderr readers (asyncio's `limit=`).
    /// Zero makes a spawn with an output pipe fail with
    /// [`Error::InvalidArgument`] (asyncio: "Limit cannot be <= 0").
    pub fn limit(&mut self, limit: usize) -> &mut Command {
        self.limit = limit;
        self
    }

    /// The wrapped `std::process::Command`, for what this builder does not
    /// offer (uid, gid, process group, `pre_exec`). Its stdio settings are
    /// overwritten by `spawn`.
    pub fn as_std_mut(&mut self) -> &mut std::process::Command {
        &mut self.std
    }

    /// std's `Command::output()`, awaited: runs the child to completion and
    /// collects its output. Unless set otherwise, stdin is `/dev/null` and
    /// stdout and stderr are piped, as with std.
    ///
    /// ```
    /// use tulip::subprocess::Command;
    /// tulip::run(async {
    ///     let out = Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]).output().await?;
    ///     assert_eq!((out.returncode, &out.stdout[..], &out.stderr[..]), (3, &b"out\n"[..], &b"err\n"[..]));
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn output(&mut self) -> Result<Output> {
        let saved = (self.stdio, self.stdio_set);
        let defaults = [Stdio::DevNull, Stdio::Pipe, Stdio::Pipe];
        let slots = [
            &mut self.stdio.stdin,
            &mut self.stdio.stdout,
            &mut self.stdio.stderr,
        ];
        for ((slot, set), default) in slots.into_iter().zip(saved.1).zip(defaults) {
            if !set {
                *slot = default;
            }
        }
        let spawned = self.spawn();
        (self.stdio, self.stdio_set) = saved;
        let mut proc = spawned?;
        let (stdout, stderr) = proc.communicate(None).await?;
        Ok(Output {
            returncode: proc.returncode().unwrap_or_default(),
            stdout,
            stderr,
        })
    }

    /// std's `Command::status()`, awaited: runs the child to completion
    /// (stdio inherited unless set) and returns its exit code.
    pub async fn status(&mut self) -> Result<i32> {
        self.spawn()?.wait().await
    }

    /// Spawns the child on the running loop.
    pub fn spawn(&mut self) -> Result<Process> {
        let lp = get_running_loop()?;
        self.spawn_on(&lp)
    }

    /// Spawns the child; `lp` watches it.
    pub fn spawn_on(&mut self, lp: &EventLoop) -> Result<Process> {
        let (pid, ours) = self.spawn_child(lp)?;
        Adopt::of(self).adopt(lp, pid, ours)
    }

    /// Starts the child (not yet watched) and returns its pid and our ends
    /// of its pipes: stdin's write end, stdout's and stderr's read ends.
    pub(crate) fn spawn_child(
        &mut self,
        lp: &EventLoop,
    ) -> Result<(libc::pid_t, [Option<OwnedFd>; 3])> {
        lp.check_closed()?;
        let ours = self.attach_stdio()?;
        let spawned = self.std.spawn();
        // Close the child's ends in the parent now, success or failure.
        self.detach_stdio();
        let child = spawned?;
        let pid = child.id() as libc::pid_t;
        drop(child); // std's Child neither kills nor reaps on drop
        Ok((pid, ours))
    }

    /// Spawns the child from a worker thread of `executor` (the loop's
    /// default pool if `None`), so that the loop keeps running while the
    /// spawn blocks: `posix_spawn` returns only once the child has exec'd,
    /// which is most of what a spawn costs. With several workers, several
    /// spawns overlap. Everything else happens on the loop thread as with
    /// [`spawn`](Command::spawn): the pipes are made before the job is
    /// queued, the child is watched and reaped by the loop.
    ///
    /// Takes the builder by value: its `std::process::Command` (with the
    /// child's pipe ends) goes to the worker and is dropped there.
    ///
    /// Cancelling it before a worker took the job skips the job. Cancelled
    /// while a worker is spawning, it waits for that spawn to end, kills
    /// the child and waits until it is reaped, then returns `Cancelled`: no
    /// child ever outlives a spawn that did not return it.
    ///
    /// ```
    /// use tulip::subprocess::{Command, Stdio};
    /// tulip::run(async {
    ///     let mut cmd = Command::new("echo");
    ///     cmd.arg("hi").stdout(Stdio::Pipe);
    ///     let proc = cmd.spawn_in_executor(None).await?;
    ///     assert_eq!(proc.stdout.as_ref().unwrap().read_to_eof().await?, b"hi\n");
    ///     assert_eq!(proc.wait().await?, 0);
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn spawn_in_executor(mut self, executor: Option<&ThreadPool>) -> Result<Process> {
        let lp = get_running_loop()?;
        lp.check_closed()?;
        let ours = self.attach_stdio()?;
        let adopt = Adopt::of(&self);
        let mut std_cmd = self.std;
        let job_state = Arc::new(AtomicU8::new(JOB_QUEUED));
        let state = job_state.clone();
        let job = move || {
            let took = state.compare_exchange(
                JOB_QUEUED,
                JOB_RUNNING,
                AtomicOrdering::AcqRel,
                AtomicOrdering::Acquire,
            );
            if took.is_err() {
                return None; // abandoned before it started
            }
            let res = std_cmd.spawn().map(|child| Unclaimed::new(child.id()));
            drop(std_cmd); // the child's pipe ends
            Some(res)
        };
        let fut = lp.run_in_executor(executor, job)?;
        // A spawn future dropped before the job started: skip the job.
        let _abandon = AbandonOnDrop(job_state.clone());
        let mut cancelled = None;
        while let Err(e) = until_done(&lp, &fut).await {
            let abandoned = job_state.compare_exchange(
                JOB_QUEUED,
                JOB_ABANDONED,
                AtomicOrdering::AcqRel,
                AtomicOrdering::Acquire,
            );
            if abandoned.is_ok() {
                return Err(e); // no child was started
            }
            // A worker is spawning: wait for it, then undo the spawn.
            cancelled.get_or_insert(e);
        }
        let spawned = match fut.take_result()? {
            Some(res) => res,
            None => return Err(cancelled.unwrap_or_else(Error::cancelled)),
        };
        let pid = match spawned {
            Ok(unclaimed) => unclaimed.claim(),
            Err(e) => return Err(cancelled.unwrap_or(Error::from(e))),
        };
        let proc = adopt.adopt(&lp, pid, ours)?;
        if let Some(e) = cancelled {
            let _ = proc.kill();
            while proc.returncode().is_none() {
                let _ = proc.child.wait(&lp).await;
            }
            return Err(e);
        }
        Ok(proc)
    }

    /// Makes the pipes, gives the child's ends to the std builder and
    /// returns ours (stdin's write end, stdout's and stderr's read ends).
    fn attach_stdio(&mut self) -> Result<[Option<OwnedFd>; 3]> {
        let Stdios {
            stdin,
            stdout,
            stderr,
        } = self.stdio;
        if stdin == Stdio::Stdout || stdout == Stdio::Stdout {
            return Err(Error::invalid_argument(
                "Stdio::Stdout is only valid for stderr: give stdin and stdout Pipe, Inherit or Null",
            ));
        }
        // asyncio's `StreamReader(limit=0)` raises; here the readers are
        // made after the spawn, so refuse before anything is started.
        if self.limit == 0 && (stdout == Stdio::Pipe || stderr == Stdio::Pipe) {
            return Err(Error::invalid_argument(
                "limit cannot be 0: pass Command::limit a positive size, or leave the default",
            ));
        }
        // Our ends (non-blocking) and the child's ends (given to std).
        let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
        let child_in = match stdin {
            Stdio::Pipe => {
                let (r, w) = sys::pipe()?;
                sys::set_nonblocking(&w)?;
                ours[0] = Some(w);
                std::process::Stdio::from(r)
            }
            other => simple_stdio(other)?,
        };
        let mut child_out_fd = None;
        let child_out = match stdout {
            Stdio::Pipe => {
                let (r, w) = sys::pipe()?;
                sys::set_nonblocking(&r)?;
                ours[1] = Some(r);
                let dup = if stderr == Stdio::Stdout {
                    Some(sys::dup(std::os::fd::AsRawFd::as_raw_fd(&w))?)
                } else {
                    None
                };
                child_out_fd = dup;
                std::process::Stdio::from(w)
            }
            other => simple_stdio(other)?,
        };
        let child_err = match stderr {
            Stdio::Pipe => {
                let (r, w) = sys::pipe()?;
                sys::set_nonblocking(&r)?;
                ours[2] = Some(r);
                std::process::Stdio::from(w)
            }
            Stdio::Stdout => match (stdout, child_out_fd) {
                (_, Some(fd)) => std::process::Stdio::from(fd),
                (Stdio::Inherit, None) => std::process::Stdio::from(sys::dup(1)?),
                (Stdio::Fd(fd), None) => std::process::Stdio::from(sys::dup(fd)?),
                _ => std::process::Stdio::null(),
            },
            other => simple_stdio(other)?,
        };
        self.std.stdin(child_in).stdout(child_out).stderr(child_err);
        Ok(ours)
    }

    /// Drops the child's ends held by the std builder.
    fn detach_stdio(&mut self) {
        self.std
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
}

/// What turning a spawned pid into a [`Process`] needs from the builder.
struct Adopt {
    kill_on_drop: bool,
    limit: usize,
}

impl Adopt {
    fn of(cmd: &Command) -> Adopt {
        Adopt {
            kill_on_drop: cmd.kill_on_drop,
            limit: cmd.limit,
        }
    }

    /// Watches `pid` and wraps our pipe ends.
    fn adopt(
        &self,
        lp: &EventLoop,
        pid: libc::pid_t,
        ours: [Option<OwnedFd>; 3],
    ) -> Result<Process> {
        let state = ChildWatcher::of(lp).add_child(lp, pid)?;
        let [w, r_out, r_err] = ours;
        let pipes = Rc::new(Pipes::default());
        let mut proc = Process {
            lp: LoopRef::new(lp.clone()),
            stdin: None,
            stdout: None,
            stderr: None,
            child: state,
            pipes: pipes.clone(),
            kill_on_drop: self.kill_on_drop,
        };
        // Wrapping a pipe fails only for lack of memory (or fds); the child
        // is watched already, and dropping `proc` applies kill_on_drop.
        proc.stdin = w.map(|fd| stdin_writer(lp, fd, &pipes)).transpose()?;
        if proc.stdin.is_some() {
            // asyncio's `SubprocessStreamProtocol.process_exited`, which
            // may close stdin (see `Pipes::maybe_close_transport`).
            let p = pipes.clone();
            let exit = proc.child.exit_future(lp);
            exit.add_done_callback(move |_| p.process_exited());
        }
        proc.stdout = r_out
            .map(|fd| output_reader(lp, fd, self.limit, &pipes))
            .transpose()?;
        proc.stderr = r_err
            .map(|fd| output_reader(lp, fd, self.limit, &pipes))
            .transpose()?;
        Ok(proc)
    }
}

/// A child's stdout or stderr: a read pipe transport under a
/// [`StreamReaderProtocol`] that feeds a new reader (asyncio's
/// `SubprocessStreamProtocol.pipe_data_received` → `feed_data`).
fn output_reader(
    lp: &EventLoop,
    fd: OwnedFd,
    limit: usize,
    pipes: &Rc<Pipes>,
) -> Result<StreamReader> {
    let reader = StreamReader::with_loop(lp, limit);
    let protocol = Rc::new(StreamReaderProtocol::new(lp, reader.clone(), None));
    let protocol = SubprocessPipeProto::wrap(protocol, pipes, true);
    ReadPipeTransport::new(lp, fd, protocol, None)?;
    Ok(reader)
}

/// A child's stdin: a write pipe transport whose protocol is the flow
/// control of its writer (asyncio's `SubprocessStreamProtocol` is that
/// `FlowControlMixin`).
fn stdin_writer(lp: &EventLoop, fd: OwnedFd, pipes: &Rc<Pipes>) -> Result<StreamWriter> {
    let flow = FlowControl::new(lp);
    let protocol = SubprocessPipeProto::wrap(Rc::new(flow.clone()), pipes, false);
    let transport = WritePipeTransport::new(lp, fd, protocol, None)?;
    *pipes.stdin.borrow_mut() = Some(Rc::downgrade(&transport));
    Ok(StreamWriter::new(transport, flow, None))
}

/// asyncio's `BaseSubprocessTransport` bookkeeping of the child's pipes:
/// how many are still connected (`_pipes[fd].disconnected`), and the
/// `wait()` calls to wake once the last one is lost (`_try_finish`, then
/// `_call_connection_lost` wakes the `_exit_waiters`). And the part of
/// `SubprocessStreamProtocol` that closes stdin once the child exited and
/// its output pipes are lost (`_pipe_fds`, `_maybe_close_transport`).
#[derive(Default)]
struct Pipes {
    /// Pipe transports that have not called `connection_lost` yet.
    open: Cell<usize>,
    /// Of those, stdout and stderr (asyncio's `_pipe_fds`).
    outputs: Cell<usize>,
    /// The child was reaped (asyncio's `_process_exited`).
    exited: Cell<bool>,
    /// stdin's transport, until `maybe_close_transport` closes it.
    stdin: RefCell<Option<Weak<WritePipeTransport>>>,
    /// One future per `wait()` call waiting for the pipes.
    waiters: RefCell<Vec<Future<()>>>,
}

impl Pipes {
    /// Resolves once every pipe is lost; cancelling or dropping it touches
    /// nothing else.
    async fn wait_lost(&self, lp: &EventLoop) -> Result<()> {
        if self.open.get() == 0 {
            return Ok(());
        }
        let waiter = lp.create_future::<()>();
        self.waiters.borrow_mut().push(waiter.clone());
        let _waiting = RemoveWaiter {
            list: &self.waiters,
            waiter: &waiter,
        };
        waiter.clone().await
    }

    /// asyncio's `SubprocessStreamProtocol.process_exited`.
    fn process_exited(&self) {
        self.exited.set(true);
        self.maybe_close_transport();
    }

    /// asyncio's `_maybe_close_transport`: once the child exited and its
    /// stdout and stderr are lost, the transport is closed, and with it
    /// stdin (the other pipes are gone already). Else a grandchild that
    /// was handed the child's stdin would hold `wait()` until it exits.
    fn maybe_close_transport(&self) {
        if !self.exited.get() || self.outputs.get() > 0 {
            return;
        }
        let stdin = self.stdin.borrow_mut().take();
        if let Some(t) = stdin.and_then(|w| w.upgrade()) {
            t.close();
        }
    }

    /// One pipe was lost: asyncio's `_pipe_connection_lost` + `_try_finish`
    /// (and, for stdout or stderr, `SubprocessStreamProtocol`'s
    /// `pipe_connection_lost`, which may close stdin).
    fn pipe_lost(&self, output: bool) {
        if output {
            self.outputs.set(self.outputs.get().saturating_sub(1));
            self.maybe_close_transport();
        }
        self.open.set(self.open.get().saturating_sub(1));
        if self.open.get() > 0 {
            return;
        }
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }
}

/// asyncio's `WriteSubprocessPipeProto`/`ReadSubprocessPipeProto`: the
/// protocol of one of the child's pipe transports. It passes every call on
/// to the stream's protocol, and tells the process when the pipe is lost.
///
/// The pipe counts as lost when the transport lets go of this protocol,
/// which it does right after `connection_lost`, and also when a loop that
/// closed releases it without calling anything. (A pipe closed before its
/// first iteration, say stdin closed at once, still hears
/// `connection_made` and then `connection_lost`, as in asyncio.)
struct SubprocessPipeProto {
    inner: Rc<dyn Protocol>,
    pipes: Rc<Pipes>,
    /// stdout or stderr (not stdin).
    output: bool,
}

impl SubprocessPipeProto {
    fn wrap(inner: Rc<dyn Protocol>, pipes: &Rc<Pipes>, output: bool) -> Rc<dyn Protocol> {
        pipes.open.set(pipes.open.get() + 1);
        if output {
            pipes.outputs.set(pipes.outputs.get() + 1);
        }
        Rc::new(SubprocessPipeProto {
            inner,
            pipes: pipes.clone(),
            output,
        })
    }
}

impl Drop for SubprocessPipeProto {
    fn drop(&mut self) {
        self.pipes.pipe_lost(self.output);
    }
}

impl Protocol for SubprocessPipeProto {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        self.inner.connection_made(transport);
    }

    fn data_received(&self, data: &[u8]) {
        self.inner.data_received(data);
    }

    fn eof_received(&self) -> bool {
        self.inner.eof_received()
    }

    fn connection_lost(&self, exc: Option<Error>) {
        self.inner.connection_lost(exc);
    }

    fn pause_writing(&self) {
        self.inner.pause_writing();
    }

    fn resume_writing(&self) {
        self.inner.resume_writing();
    }
}

/// [`Command::spawn_in_executor`]'s job: waiting for a worker, taken by
/// one, or given up before a worker took it.
const JOB_QUEUED: u8 = 0;
const JOB_RUNNING: u8 = 1;
const JOB_ABANDONED: u8 = 2;

/// Marks a queued spawn job abandoned when the spawn future goes away.
struct AbandonOnDrop(Arc<AtomicU8>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        let _ = self.0.compare_exchange(
            JOB_QUEUED,
            JOB_ABANDONED,
            AtomicOrdering::AcqRel,
            AtomicOrdering::Acquire,
        );
    }
}

/// A child spawned on a worker thread and not yet handed to a watcher.
/// Dropped unclaimed (the loop went away, or the spawn future was dropped
/// before the result came back), it kills the child and has it reaped: by
/// the watcher of the loop running on this thread, else on the spot.
struct Unclaimed {
    pid: Option<libc::pid_t>,
}

impl Unclaimed {
    fn new(pid: u32) -> Unclaimed {
        Unclaimed {
            pid: Some(pid as libc::pid_t),
        }
    }

    fn claim(mut self) -> libc::pid_t {
        self.pid.take().expect("claimed once")
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        // Unreaped, so the pid is still this child.
        let _ = sys::kill(pid, libc::SIGKILL);
        match get_running_loop() {
            Ok(lp) if ChildWatcher::of(&lp).add_child(&lp, pid).is_ok() => {}
            _ => drop(sys::waitpid_blocking(pid)),
        }
    }
}

/// Waits until `fut` is done without making it the task's `fut_waiter`,
/// so cancelling the task cancels only this wait, never `fut`.
async fn until_done<T: 'static>(lp: &EventLoop, fut: &Future<T>) -> Result<()> {
    if fut.done() {
        return Ok(());
    }
    let relay = lp.create_future::<()>();
    let r = relay.clone();
    fut.add_done_callback(move |_| {
        let _ = r.set_result(());
    });
    relay.await
}

/// The child's end for a choice that needs no pipe. A caller's descriptor
/// is duplicated (close-on-exec), so that the builder can own and close the
/// copy while the caller keeps the original.
fn simple_stdio(s: Stdio) -> Result<std::process::Stdio> {
    Ok(match s {
        Stdio::DevNull => std::process::Stdio::null(),
        Stdio::Fd(fd) => std::process::Stdio::from(sys::dup(fd)?),
        _ => std::process::Stdio::inherit(),
    })
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("command", &self.std)
            .field("stdio", &self.stdio)
            .field("kill_on_drop", &self.kill_on_drop)
            .finish()
    }
}

/// What [`Command::output`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The exit code; `-N` if signal `N` killed the child.
    pub returncode: i32,
    /// Everything the child wrote to stdout (empty if it was not piped).
    pub stdout: Vec<u8>,
    /// Everything the child wrote to stderr (empty if it was not piped).
    pub stderr: Vec<u8>,
}

// ===== Process =====

/// A running (or finished) child: asyncio's `asyncio.subprocess.Process`.
///
/// Dropping it never leaves a zombie: the loop's child watcher still reaps
/// the child. With [`Command::kill_on_drop`] the child is killed first.
///
/// ```
/// use tulip::subprocess::{create_subprocess_exec, Stdios};
/// tulip::run(async {
///     let mut p = create_subprocess_exec("cat", std::iter::empty::<&str>(), Stdios::piped()).await?;
///     assert!(p.pid() > 0 && p.returncode().is_none());
///     let (out, err) = p.communicate(Some(b"ping")).await?; // stdin closed after the input
///     assert_eq!((&out[..], err.len()), (&b"ping"[..], 0));
///     assert_eq!(p.returncode(), Some(0));
///     Ok(())
/// }).unwrap();
/// ```
pub struct Process {
    lp: LoopRef,
    /// The child's stdin, if it was [`Stdio::Pipe`].
    pub stdin: Option<StreamWriter>,
    /// The child's stdout, if it was [`Stdio::Pipe`]. Read it all with
    /// `read_to_eof()` (asyncio's `read()`).
    pub stdout: Option<StreamReader>,
    /// The child's stderr, if it was [`Stdio::Pipe`].
    pub stderr: Option<StreamReader>,
    child: Rc<ChildState>,
    /// The child's pipes, which `wait()` waits for too.
    pipes: Rc<Pipes>,
    kill_on_drop: bool,
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid as u32
    }

    /// The exit code once the child was reaped: `-N` if signal `N` killed it.
    pub fn returncode(&self) -> Option<i32> {
        self.child.returncode()
    }

    /// Which watcher reaps this child.
    pub fn watcher(&self) -> ChildWatcherKind {
        self.child.kind()
    }

    /// Waits for the child to exit and its pipes to close (asyncio: the
    /// transport's `connection_lost`; stdin is closed for it once the child
    /// exited and stdout and stderr are closed), and returns its exit
    /// code. Once the
    /// child was reaped, it returns the exit code at once, as asyncio's
    /// `_wait` does (only a wait pending at the exit waits for the pipes).
    /// Cancelling `wait()` does not touch the child, which is still reaped
    /// (P2).
    pub async fn wait(&self) -> Result<i32> {
        if let Some(rc) = self.child.returncode() {
            return Ok(rc);
        }
        let rc = self.child.wait(&self.lp).await?;
        self.pipes.wait_lost(&self.lp).await?;
        Ok(rc)
    }

    /// asyncio's `communicate(input)`: writes `input` to stdin (then closes
    /// it) while reading stdout and stderr to EOF, then waits for the exit.
    /// Returns `(stdout, stderr)`; a stream that is not piped gives an empty
    /// vector. Never deadlocks whatever the sizes, and a broken pipe on
    /// stdin (the child did not read it all) is ignored (P1). Cancelled,
    /// it leaves stdin open with the input not yet written in its buffer,
    /// as asyncio does: a later `communicate()` delivers the rest.
    pub async fn communicate(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>)> {
        if input.is_some() && self.stdin.is_none() {
            return Err(Error::invalid_argument(
                "communicate(input) needs stdin set to Stdio::Pipe: call .stdin(Stdio::Pipe) on the Command, or pass None",
            ));
        }
        // Borrowed, not taken: as asyncio's `Process.stdin`, it stays with
        // the process (closed), and after a cancel the caller can close it.
        let stdin = self.stdin.as_ref();
        let feed = async move {
            if let Some(w) = stdin {
                // Fed in chunks, so most bytes go straight from `input` to
                // the pipe instead of being copied into the transport first.
                let mut unfed = Unfed {
                    w,
                    rest: input.unwrap_or_default(),
                };
                while !unfed.rest.is_empty() {
                    let (chunk, rest) = unfed.rest.split_at(unfed.rest.len().min(FEED_CHUNK));
                    unfed.rest = rest;
                    match w.write(chunk) {
                        Err(e) if is_broken_pipe(&e) => break,
                        other => other?,
                    }
                    match w.drain().await {
                        Err(e) if is_broken_pipe(&e) => break,
                        other => other?,
                    }
                    if w.is_closing() {
                        break; // the pipe broke: the rest is dropped anyway
                    }
                }
                unfed.rest = &[];
                w.close();
            }
            Ok(())
        };
        let out = read_all(self.stdout.as_ref());
        let err = read_all(self.stderr.as_ref());
        let ((), out, err) = try_join3(feed, out, err).await?;
        self.wait().await?;
        Ok((out, err))
    }

    /// Sends signal `sig` to the child (through its pidfd when there is
    /// one). A no-op once the child was reaped (its pid may be recycled);
    /// once the process is finished, the child reaped and every pipe closed
    /// (`wait()` returns), an error with `ESRCH`: asyncio's
    /// `_check_proc` raising `ProcessLookupError`.
    pub fn send_signal(&self, sig: i32) -> Result<()> {
        if self.child.returncode().is_some() && self.pipes.open.get() == 0 {
            return Err(self.child.finished_error(sig));
        }
        self.child.send_signal(sig)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends SIGKILL; the exit code becomes `-9`.
    ///
    /// ```
    /// use tulip::subprocess::{create_subprocess_exec, Stdios};
    /// tulip::run(async {
    ///     // `cat` with its stdin piped waits for input until killed.
    ///     let p = create_subprocess_exec("cat", std::iter::empty::<&str>(), Stdios::piped()).await?;
    ///     p.kill()?;
    ///     assert_eq!(p.wait().await?, -libc::SIGKILL);
    ///     assert_eq!(p.kill().unwrap_err().raw_os_error(), Some(libc::ESRCH)); // ProcessLookupError
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.send_signal(libc::SIGKILL)
    }
}

/// The part of `communicate`'s input not written yet. asyncio's
/// `_feed_stdin` writes the whole input to the transport before its first
/// `drain()`, so a feed that ends early (cancelled, failed, or dropped with
/// a failed reader) has left the rest in stdin's buffer, and a later
/// `communicate()` or `close()` still delivers it: so does this, on drop.
struct Unfed<'a> {
    w: &'a StreamWriter,
    rest: &'a [u8],
}

impl Drop for Unfed<'_> {
    fn drop(&mut self) {
        // A closing or lost pipe drops it, as it would have in asyncio.
        let _ = self.w.write(self.rest);
    }
}

async fn read_all(r: Option<&StreamReader>) -> Result<Vec<u8>> {
    match r {
        Some(r) => r.read_to_eof().await,
        None => Ok(Vec::new()),
    }
}

/// Polls three futures together until all succeed or one fails (a small
/// `gather` without tasks: dropping it drops the others).
async fn try_join3<A, B, C>(
    a: impl std::future::Future<Output = Result<A>>,
    b: impl std::future::Future<Output = Result<B>>,
    c: impl std::future::Future<Output = Result<C>>,
) -> Result<(A, B, C)> {
    let (mut a, mut b, mut c) = (std::pin::pin!(a), std::pin::pin!(b), std::pin::pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    std::future::poll_fn(|cx| {
        use std::task::Poll;
        if ra.is_none() {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                ra = Some(r?);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                rb = Some(r?);
            }
        }
        if rc.is_none() {
            if let Poll::Ready(r) = c.as_mut().poll(cx) {
                rc = Some(r?);
            }
        }
        if ra.is_some() && rb.is_some() && rc.is_some() {
            return Poll::Ready(Ok::<(), Error>(()));
        }
        Poll::Pending
    })
    .await?;
    Ok((ra.unwrap(), rb.unwrap(), rc.unwrap()))
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.kill_on_drop && self.child.returncode().is_none() {
            let _ = self.child.send_signal(libc::SIGKILL);
        }
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.child.pid)
            .field("returncode", &self.child.returncode())
            .field("watcher", &self.child.kind().name())
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .finish()
    }
}

// ===== asyncio's entry points =====

/// asyncio's `create_subprocess_exec(program, *args, stdin=, stdout=, stderr=)`.
///
/// ```
/// use tulip::subprocess::{create_subprocess_exec, Stdios};
/// tulip::run(async {
///     let mut p = create_subprocess_exec("echo", ["hi"], Stdios::piped_output()).await?;
///     let (out, err) = p.communicate(None).await?;
///     assert_eq!((out.as_slice(), err.len(), p.returncode()), (&b"hi\n"[..], 0, Some(0)));
///     Ok(())
/// }).unwrap();
/// ```
pub async fn create_subprocess_exec<I, S>(
    program: impl AsRef<OsStr>,
    args: I,
    stdio: Stdios,
) -> Result<Process>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(program).args(args).stdios(stdio).spawn()
}

/// asyncio's `create_subprocess_shell(cmd, stdin=, stdout=, stderr=)`:
/// runs `cmd` with `/bin/sh -c`.
///
/// ```
/// use tulip::subprocess::{create_subprocess_shell, Stdios};
/// tulip::run(async {
///     let mut p = create_subprocess_shell("echo $((6 * 7)); exit 3", Stdios::piped_output()).await?;
///     let (out, _err) = p.communicate(None).await?;
///     assert_eq!((&out[..], p.returncode()), (&b"42\n"[..], Some(3)));
///     Ok(())
/// }).unwrap();
/// ```
pub async fn create_subprocess_shell(cmd: impl AsRef<OsStr>, stdio: Stdios) -> Result<Process> {
    Command::shell(cmd).stdios(stdio).spawn()
}
