//! A running child: [`Process`], and the protocols that wire its pipes to
//! its streams. Mirrors `Process` and `SubprocessStreamProtocol` in
//! `Lib/asyncio/subprocess.py`, with the pipe bookkeeping of
//! `BaseSubprocessTransport` (`_pipes`, `_try_finish`,
//! `_call_connection_lost`) in `base_subprocess.py`; the
//! [`Command`] builder and `create_subprocess_*` that start the child are
//! in the parent module, [`subprocess`](crate::subprocess).
//!
//! asyncio's `Process` stands on `BaseSubprocessTransport` (tulip's
//! [`base_subprocess`](crate::base_subprocess)); tulip's wires the pipes to
//! its streams directly and keeps only that transport's pipe bookkeeping
//! (`_try_finish`) for `wait()`.
//!
//! # Invariants
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

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::OwnedFd;
use std::rc::{Rc, Weak};

use super::Command;
use crate::child_watcher::{ChildState, ChildWatcher, ChildWatcherKind, RemoveWaiter};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopRef};
use crate::futures::Future;
use crate::pipes::{is_broken_pipe, ReadPipeTransport, WritePipeTransport};
use crate::protocols::Protocol;
use crate::streams::{FlowControl, StreamReader, StreamReaderProtocol, StreamWriter};
use crate::transports::{BaseTransport, Transport};

/// How much of `communicate`'s input is written before each `drain()`:
/// the transport's high-water mark.
const FEED_CHUNK: usize = 64 * 1024;

/// What turning a spawned pid into a [`Process`] needs from the builder.
pub(super) struct Adopt {
    kill_on_drop: bool,
    limit: usize,
}

impl Adopt {
    pub(super) fn of(cmd: &Command) -> Adopt {
        Adopt {
            kill_on_drop: cmd.kill_on_drop,
            limit: cmd.limit,
        }
    }

    /// Watches `pid` and wraps our pipe ends.
    pub(super) fn adopt(
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
    /// The child's stdin, if it was [`Stdio::Pipe`](super::Stdio::Pipe).
    pub stdin: Option<StreamWriter>,
    /// The child's stdout, if it was [`Stdio::Pipe`](super::Stdio::Pipe). Read it all with
    /// `read_to_eof()` (asyncio's `read()`).
    pub stdout: Option<StreamReader>,
    /// The child's stderr, if it was [`Stdio::Pipe`](super::Stdio::Pipe).
    pub stderr: Option<StreamReader>,
    pub(super) child: Rc<ChildState>,
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
