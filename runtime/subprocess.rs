//! Subprocesses. Mirrors `Lib/asyncio/subprocess.py` (`Process`,
//! `create_subprocess_exec`, `create_subprocess_shell`, `PIPE`, `STDOUT`,
//! `DEVNULL`). This module starts children; the running child,
//! [`Process`], and the protocols of its pipes (asyncio's
//! `SubprocessStreamProtocol`) are in the `process` submodule.
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

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};
use std::sync::Arc;

use crate::child_watcher::ChildWatcher;
use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, EventLoop};
use crate::futures::Future;
pub use crate::streams::DEFAULT_LIMIT;
use crate::sys;
use crate::threads::ThreadPool;

mod process;

use self::process::Adopt;
pub use self::process::Process;

/// What one of a child's stdin, stdout or stderr is connected to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdio {
    /// The parent's own stream (asyncio's `None`).
    #[default]
    Inherit,
    /// A pipe to the parent (asyncio's `PIPE`): `Process::stdin` is a
    /// [`StreamWriter`](crate::StreamWriter), `stdout`/`stderr` a
    /// [`StreamReader`](crate::StreamReader).
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
