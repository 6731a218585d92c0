//! The sweep driver: one tulip task per host, each running one `ping` child at
//! a time, at most `concurrency` of them at once.
//!
//! This is the seed's `main()` (`asyncio.wait` over one `ping_call` per host)
//! with what a tool needs on top. How a sweep maps onto tulip:
//!
//! - **One task per host.** A dispatcher task walks the hosts in address
//!   order; for each it takes a permit of a [`tulip::Semaphore`] of
//!   `concurrency` permits, then `create_task`s the host's probe, which holds
//!   the permit until the host is decided. At most `concurrency` probe tasks
//!   (and so `ping` children) exist at once, whatever the number of hosts.
//! - **One child per attempt.** The probe spawns `ping` through
//!   [`tulip::subprocess`] (stdout piped, `kill_on_drop`). The loop's pidfd
//!   child watcher reaps it, the pipe reader collects its stdout; the task
//!   sleeps in `read_to_eof()` and `wait()` with no thread and no polling.
//! - **Spawn threads.** A spawn blocks its thread until the child has
//!   exec'd, which is most of its cost; [`PingProber`] therefore starts the
//!   children with [`Command::spawn_in_executor`] on a few threads of its
//!   own ([`default_spawn_threads`], `--spawn-threads`), so that the starts
//!   overlap and the loop keeps running. A [`Semaphore`] with one permit per
//!   thread keeps every queued spawn taken at once by a free thread. With 0
//!   threads the loop's own thread spawns, one child at a time.
//!
//! [`Command::spawn_in_executor`]: tulip::subprocess::Command::spawn_in_executor
//! - **Timeouts.** iputils' `-w` takes whole seconds only, so the probe also
//!   runs under a [`tulip::timeout`] of [`probe_limit`]: past it, the child is
//!   killed, reaped, and judged by what it printed ([`Attempt::cut_short`]).
//!   `-t 250` therefore takes about 250 ms, not a second.
//! - **Retries, interval.** A silent host is probed again, up to `retries`
//!   times, by the same task. Every start (retries included) takes the next
//!   slot of a shared pacer, `interval` apart.
//! - **Spawn failures.** `EMFILE`, `ENFILE`, `EAGAIN` and `ENOMEM` from the
//!   spawn are waited out: the task waits until one of our children ends (or
//!   a short backoff passes) and tries again; no host is lost.
//! - **ping's stderr.** Every child's stderr is the write end of one pipe
//!   of the prober's ([`Stdio::Fd`]), read on
//!   the loop: a line saying that `ping` cannot send at all
//!   ([`crate::ping::cannot_send`]) makes the probe fail with
//!   [`Error::PingCannotSend`], a fatal error, instead of a host down.
//! - **Stopping.** [`Stop::stop`] (pinger's SIGINT handler, installed with
//!   `add_signal_handler`, calls it) stops the dispatcher and cancels every
//!   probe task; each kills its child and waits until it is reaped (a spawn
//!   still running on a spawn thread is waited for, and its child killed and
//!   reaped). [`run`] returns the hosts decided so far, with
//!   [`Outcome::interrupted`] set. [`Stop::kill_and_reap_now`], for a process
//!   about to exit, first lets the spawns in flight end (at most one per
//!   spawn thread), then kills and reaps every `ping` child, including those
//!   the loop has not taken over yet.
//!
//! # The seam
//! Running one `ping` is behind the [`Prober`] trait: [`PingProber`] is the
//! real one; tests drive [`run`] with scripted probers.
//!
//! # Invariants
//! - Every host yields at most one [`Probe`], and exactly one unless the sweep
//!   was stopped or failed; the results come back sorted by address.
//! - A host is retried only when it was down, at most `retries` times.
//! - When [`run`] returns, every child it started has been reaped and every
//!   task it created is done.
//! - A host whose `ping` could not send at all is never reported: the
//!   sweep fails with [`Error::PingCannotSend`].
//! - At most `concurrency` probes run at once, and at most one spawn per
//!   spawn thread is queued or running.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use tulip::subprocess::{Process, Stdio};
use tulip::{Event, Semaphore, SemaphorePermit, StreamReader, TaskRef};

use crate::error::{Error, EXIT_ALL_UP, EXIT_SOME_DOWN};
use crate::localtime::LocalTime;
use crate::ping::{
    cannot_send, parse_cut_short, parse_reply, PingCommand, PingParams, PING_INTERVAL_MS,
};

/// How many probes run at once unless `--concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// The most results [`run`] makes room for up front (a /16's worth).
const RESULTS_PRESIZE: usize = 65_536;

/// One host's result: the seed's `(current_time, ip, up)` tuple, plus the RTT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// Local time at which the host's first probe started (as the seed takes it).
    pub time: LocalTime,
    /// The host.
    pub ip: Ipv4Addr,
    /// Whether it answered (see [`crate::ping::is_up`]).
    pub up: bool,
    /// Round-trip time in milliseconds, if it answered and ping printed one.
    pub rtt_ms: Option<f64>,
    /// How many times `ping` ran for this host (1 + retries used).
    pub attempts: u32,
}

impl Probe {
    /// Builds the result for `ip` from its last attempt (see [`Attempt`]).
    pub fn from_attempt(time: LocalTime, ip: Ipv4Addr, last: &Attempt, attempts: u32) -> Probe {
        let reply = if last.cut_short {
            parse_cut_short(&last.stdout)
        } else {
            parse_reply(&last.stdout)
        };
        Probe {
            time,
            ip,
            up: reply.up,
            rtt_ms: reply.rtt_ms,
            attempts,
        }
    }
}

/// Everything the driver needs besides the hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepConfig {
    /// Absolute path of `ping` (see [`crate::ping::resolve_ping`]).
    pub ping_program: PathBuf,
    /// How each probe runs.
    pub ping: PingParams,
    /// Extra attempts for a host that stayed silent (`-r/--retry`).
    pub retries: u32,
    /// Minimum gap between two probe starts (`-i/--interval`).
    pub interval: Duration,
    /// Most probes in flight at once (`--concurrency`), at least 1.
    pub concurrency: usize,
}

/// Minimum, average and maximum round-trip times over the hosts that answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttStats {
    /// Fastest, in milliseconds.
    pub min_ms: f64,
    /// Mean, in milliseconds.
    pub avg_ms: f64,
    /// Slowest, in milliseconds.
    pub max_ms: f64,
}

/// The totals of a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Hosts probed.
    pub addresses: usize,
    /// Hosts that answered.
    pub up: usize,
    /// Hosts that did not.
    pub down: usize,
    /// `ping` runs, retries included.
    pub attempts: u64,
    /// Wall time of the sweep.
    pub elapsed: Duration,
    /// RTT statistics, when at least one host reported an RTT.
    pub rtt: Option<RttStats>,
    /// Addresses the sweep was given: `addresses`, unless it was interrupted.
    pub targets: u64,
    /// True if the sweep was stopped before every host was decided.
    pub interrupted: bool,
}

impl Summary {
    /// Totals over `results`, of a sweep that decided every host it was
    /// given (for one cut short, set `targets` and `interrupted` after).
    pub fn from_results(results: &[Probe], elapsed: Duration) -> Summary {
        let up = results.iter().filter(|p| p.up).count();
        let rtts: Vec<f64> = results.iter().filter_map(|p| p.rtt_ms).collect();
        let rtt = (!rtts.is_empty()).then(|| RttStats {
            min_ms: rtts.iter().copied().fold(f64::INFINITY, f64::min),
            avg_ms: rtts.iter().sum::<f64>() / rtts.len() as f64,
            max_ms: rtts.iter().copied().fold(0.0, f64::max),
        });
        Summary {
            addresses: results.len(),
            up,
            down: results.len() - up,
            attempts: results.iter().map(|p| u64::from(p.attempts)).sum(),
            elapsed,
            rtt,
            targets: results.len() as u64,
            interrupted: false,
        }
    }
}

/// The exit code of a finished sweep, as fping: 0 when every host is up, 1 when
/// any is down; with `exit_zero_if_any_up`, 0 as soon as one host is up.
pub fn exit_code(summary: &Summary, exit_zero_if_any_up: bool) -> i32 {
    if summary.down == 0 || (exit_zero_if_any_up && summary.up > 0) {
        EXIT_ALL_UP
    } else {
        EXIT_SOME_DOWN
    }
}

/// Puts results in address order (the order of the output).
pub fn finish_results(results: &mut [Probe]) {
    results.sort_by_key(|p| p.ip);
}

// ===== one attempt =====

/// How far past the timeout the driver lets a `ping` run before it kills it.
/// ping normally ends by itself first; the grace absorbs its start-up time.
pub const KILL_GRACE: Duration = Duration::from_millis(25);

/// Bound on reaping the killed children when the process exits at once
/// (second Ctrl-C).
const EXIT_REAP_LIMIT: Duration = Duration::from_millis(500);

/// Bound on waiting for a killed `ping` to close its stdout and be reaped
/// (SIGKILL cannot be ignored, so this is only a backstop).
const REAP_LIMIT_S: f64 = 2.0;

/// First and longest wait after a spawn failed for lack of resources.
const SPAWN_BACKOFF_S: (f64, f64) = (0.002, 0.1);

/// With none of our children running (so none can free anything), a spawn
/// failing for lack of resources is retried this many times, about 3 s in
/// all, before the sweep fails.
const LONELY_SPAWN_TRIES: u32 = 40;

/// How long one attempt may take before the driver kills it: the time ping
/// needs for `count` packets sent one second apart plus the wait for the last
/// reply, plus [`KILL_GRACE`].
pub fn probe_limit(params: &PingParams) -> Duration {
    let count = u64::from(params.count.max(1));
    let ms = (count - 1) * PING_INTERVAL_MS + params.timeout_ms.max(1);
    Duration::from_millis(ms) + KILL_GRACE
}

/// What one `ping` run printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// True if the driver killed it at its deadline: then there is no
    /// statistics line, and only reply lines count (see
    /// [`crate::ping::parse_cut_short`]).
    pub cut_short: bool,
}

/// Runs one `ping`. **The seam** between the driver and the system: the
/// driver only ever calls this.
pub trait Prober {
    /// Runs `cmd` to its end, or for at most `limit` (then kills it), and
    /// returns what it printed. If the returned future is cancelled, the
    /// child must be killed and reaped before it returns `Err`.
    fn probe(
        &self,
        cmd: &PingCommand,
        limit: Duration,
    ) -> impl Future<Output = Result<Attempt, Error>>;

    /// Kills every child running right now, without waiting (called by
    /// [`Stop::stop`], before the probes are cancelled; they still reap).
    fn kill_now(&self) {}

    /// Kills every child running right now and reaps it on the spot, behind
    /// the loop's back, for a process about to exit (see
    /// [`Stop::kill_and_reap_now`]).
    fn kill_and_reap_now(&self) {
        self.kill_now();
    }
}

/// The real prober: `ping` children through tulip's subprocess API.
#[derive(Debug)]
pub struct PingProber {
    /// Children of ours not yet reaped.
    running: Cell<usize>,
    /// The same children, for [`Prober::kill_now`], by a serial number.
    children: RefCell<HashMap<u64, Weak<Process>>>,
    next_serial: Cell<u64>,
    /// Set (and cleared at once) each time one of our children is reaped:
    /// spawns waiting for resources retry then.
    freed: Event,
    /// The threads that start the children; `None`: the loop's thread does.
    spawner: Option<Spawner>,
    /// The program of the children (the same for every probe of a sweep).
    program: RefCell<Option<PathBuf>>,
    /// The one pipe every child's stderr goes to; made at the first spawn
    /// (its reader needs the running loop), closed with the prober.
    stderr: RefCell<Option<StderrPipe>>,
}

/// Worker threads for [`Command::spawn_in_executor`](tulip::subprocess::Command::spawn_in_executor),
/// and one permit per thread, so that a spawn is only ever queued when a
/// worker is free to take it at once (see [`Prober::kill_and_reap_now`]).
#[derive(Debug)]
struct Spawner {
    pool: tulip::ThreadPool,
    slots: Semaphore,
}

/// How many threads start `ping` children unless `--spawn-threads` says
/// otherwise: two per CPU (each spends most of a spawn blocked until its
/// child has exec'd), at least 2 and at most 8.
pub fn default_spawn_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cpus).clamp(2, 8)
}

impl Default for PingProber {
    fn default() -> PingProber {
        PingProber::new()
    }
}

impl PingProber {
    /// A prober with no child running, starting its children from
    /// [`default_spawn_threads`] worker threads.
    pub fn new() -> PingProber {
        PingProber::with_spawn_threads(default_spawn_threads())
    }

    /// A prober whose children are started by `threads` worker threads
    /// (started on first use), so that the loop keeps running and several
    /// spawns overlap; with 0, by the loop's own thread, one at a time.
    pub fn with_spawn_threads(threads: usize) -> PingProber {
        let spawner = tulip::ThreadPool::new(threads).ok().map(|pool| Spawner {
            pool,
            slots: Semaphore::new(threads),
        });
        PingProber {
            running: Cell::new(0),
            children: RefCell::new(HashMap::new()),
            next_serial: Cell::new(0),
            freed: Event::new(),
            spawner,
            program: RefCell::new(None),
            stderr: RefCell::new(None),
        }
    }

    /// How many worker threads start the children (0: the loop's thread).
    pub fn spawn_threads(&self) -> usize {
        self.spawner.as_ref().map_or(0, |s| s.pool.max_workers())
    }

    /// Starts one `ping`: from a worker thread when there are any, holding
    /// one of their permits until the spawn is over.
    async fn start(&self, cmd: &PingCommand) -> tulip::Result<Process> {
        if self.program.borrow().is_none() {
            *self.program.borrow_mut() = Some(cmd.program.clone());
        }
        let stderr = Stdio::Fd(self.stderr_fd()?);
        match &self.spawner {
            Some(spawner) => {
                let _slot = spawner.slots.acquire().await?;
                cmd.to_command(stderr)
                    .spawn_in_executor(Some(&spawner.pool))
                    .await
            }
            None => cmd.to_command(stderr).spawn(),
        }
    }

    /// The write end of the children's shared stderr pipe, made on first
    /// use. Failing to make it (`EMFILE`, ...) is a failed spawn.
    fn stderr_fd(&self) -> tulip::Result<RawFd> {
        let mut slot = self.stderr.borrow_mut();
        if slot.is_none() {
            *slot = Some(StderrPipe::open(&tulip::get_running_loop()?)?);
        }
        Ok(slot.as_ref().expect("made above").write.as_raw_fd())
    }

    /// The first line a child wrote saying that `ping` cannot send at all,
    /// after reading what the pipe holds now (so every line of a child
    /// already reaped).
    fn cannot_send(&self) -> Option<String> {
        let pipe = self.stderr.borrow();
        let lines = &pipe.as_ref()?.lines;
        lines.drain();
        let fatal = lines.fatal.borrow().clone();
        fatal
    }

    /// Spawns `cmd`, waiting out `EMFILE`/`ENFILE`/`EAGAIN`/`ENOMEM`.
    async fn spawn(&self, cmd: &PingCommand) -> Result<Process, Error> {
        let mut backoff = SPAWN_BACKOFF_S.0;
        let mut lonely_tries = 0;
        loop {
            let err = match self.start(cmd).await {
                Ok(proc) => return Ok(proc),
                Err(err) => err,
            };
            let tulip::Error::Io(source) = &err else {
                return Err(Error::EventLoop(err));
            };
            if source.kind() == io::ErrorKind::NotFound {
                return Err(Error::PingNotFound);
            }
            let spawn_error = || Error::Spawn {
                ip: cmd.ip,
                source: copy_io_error(source),
            };
            if !is_resource_shortage(source) {
                return Err(spawn_error());
            }
            if self.running.get() == 0 {
                lonely_tries += 1;
                if lonely_tries > LONELY_SPAWN_TRIES {
                    return Err(spawn_error());
                }
            }
            // Until one of our children is reaped, or the backoff passes.
            match tulip::timeout(backoff).run(self.freed.wait()).await {
                Ok(()) => {}
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(Error::EventLoop(e)),
            }
            backoff = (backoff * 2.0).min(SPAWN_BACKOFF_S.1);
        }
    }
}

impl Drop for PingProber {
    fn drop(&mut self) {
        if let Some(spawner) = &self.spawner {
            // After a whole sweep every probe, and so every spawn, has
            // ended, and the join is immediate; after a cancel it waits for
            // at most one spawn (one fork/exec) per worker, which never
            // waits on the loop. Joining (not just stopping) means no
            // worker still holds the last job, whose loop handle keeps the
            // loop's wake-up descriptor open: a worker preempted between
            // sending its result and dropping the job would otherwise close
            // it a moment after the sweep returned.
            spawner.pool.shutdown(true);
        }
    }
}

/// One pipe for the stderr of all the `ping` children rather than one per
/// child: a probe costs no descriptor more, the sweep two. Each child gets
/// (a duplicate of) the write end as its stderr; the loop reads the other
/// end as data comes ([`StderrLines::drain`], an `add_reader` callback),
/// and a probe whose `ping` printed nothing on stdout reads it once more
/// after the reap, when all that child wrote is in the pipe. pinger keeps
/// its write end open for the whole sweep (the children to come need it),
/// so the reader never waits for an end of file; the pipe is closed when
/// the prober is dropped, after every child was reaped.
///
/// A write of less than `PIPE_BUF` bytes is never split, but iputils'
/// `error()` writes one message in several (`"ping: "`, `"socket"`,
/// `": Operation not permitted"`, `"\n"`), so two children failing at the
/// same instant can mix the pieces of their lines. Every child of a `ping`
/// that cannot send prints the same lines, and `cap_net_raw` is always in
/// one piece, so one clean line is all it takes; a mixed line may go
/// unrecognised (one child's sweep, alone, is never mixed).
struct StderrPipe {
    /// Our copy of the write end (close-on-exec); the children's are dups.
    write: OwnedFd,
    lines: Rc<StderrLines>,
    lp: tulip::EventLoop,
}

/// The read end of a [`StderrPipe`], and what was read from it.
#[derive(Debug)]
struct StderrLines {
    /// Non-blocking.
    read: std::fs::File,
    /// The start of a line whose end has not been read yet.
    partial: RefCell<Vec<u8>>,
    /// The first line that said `ping` cannot send ([`crate::ping::cannot_send`]).
    fatal: RefCell<Option<String>>,
}

/// The longest stderr line kept whole; a longer one is judged in pieces.
const STDERR_LINE_MAX: usize = 4096;

impl StderrPipe {
    fn open(lp: &tulip::EventLoop) -> tulip::Result<StderrPipe> {
        let (read, write) = std::io::pipe()?;
        let read = std::fs::File::from(OwnedFd::from(read));
        set_nonblocking(&read)?;
        let lines = Rc::new(StderrLines {
            read,
            partial: RefCell::new(Vec::new()),
            fatal: RefCell::new(None),
        });
        let reader = lines.clone();
        lp.add_reader(lines.read.as_raw_fd(), move || reader.drain())?;
        Ok(StderrPipe {
            write: OwnedFd::from(write),
            lines,
            lp: lp.clone(),
        })
    }
}

impl Drop for StderrPipe {
    fn drop(&mut self) {
        // Before the descriptor is closed (a no-op if the loop is closed).
        let _ = self.lp.remove_reader(self.lines.read.as_raw_fd());
    }
}

impl fmt::Debug for StderrPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StderrPipe")
            .field("write", &self.write)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl StderrLines {
    /// Reads everything the pipe holds now, without blocking. Never sees
    /// an end of file while the [`StderrPipe`] holds the write end.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        loop {
            match (&self.read).read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // WouldBlock: all read
            }
        }
    }

    /// Splits `data` into lines and judges each complete one.
    fn feed(&self, data: &[u8]) {
        let mut partial = self.partial.borrow_mut();
        partial.extend_from_slice(data);
        let mut start = 0;
        while let Some(end) = partial[start..].iter().position(|&b| b == b'\n') {
            self.judge(&partial[start..start + end]);
            start += end + 1;
        }
        partial.drain(..start);
        if partial.len() > STDERR_LINE_MAX {
            self.judge(&partial);
            partial.clear();
        }
    }

    fn judge(&self, line: &[u8]) {
        if self.fatal.borrow().is_some() {
            return;
        }
        let line = String::from_utf8_lossy(line);
        if cannot_send(&line) {
            *self.fatal.borrow_mut() = Some(line.trim_end().to_owned());
        }
    }
}

/// Sets `O_NONBLOCK` on `file`.
fn set_nonblocking(file: &std::fs::File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL only read and set the status flags of a
    // descriptor `file` owns and keeps open for the call.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Counts and lists a child of a [`PingProber`] while it is unreaped.
struct RunningChild<'a> {
    prober: &'a PingProber,
    serial: u64,
}

impl<'a> RunningChild<'a> {
    fn new(prober: &'a PingProber, proc: &Rc<Process>) -> RunningChild<'a> {
        let serial = prober.next_serial.get();
        prober.next_serial.set(serial + 1);
        prober
            .children
            .borrow_mut()
            .insert(serial, Rc::downgrade(proc));
        prober.running.set(prober.running.get() + 1);
        RunningChild { prober, serial }
    }
}

impl Drop for RunningChild<'_> {
    fn drop(&mut self) {
        let p = self.prober;
        p.children.borrow_mut().remove(&self.serial);
        p.running.set(p.running.get() - 1);
        p.freed.set();
        p.freed.clear();
    }
}

/// Reads the child's stdout to EOF into `buf`, then waits for its exit.
async fn finish(proc: &Process, out: &StreamReader, buf: &RefCell<Vec<u8>>) -> tulip::Result<()> {
    let data = out.read_to_eof().await?;
    buf.borrow_mut().extend_from_slice(&data);
    proc.wait().await?;
    Ok(())
}

impl Prober for PingProber {
    async fn probe(&self, cmd: &PingCommand, limit: Duration) -> Result<Attempt, Error> {
        let proc = Rc::new(self.spawn(cmd).await?);
        let counted = RunningChild::new(self, &proc);
        let out = proc.stdout.as_ref().expect("stdout is piped");
        let buf = RefCell::new(Vec::new());
        let ran = tulip::timeout(limit.as_secs_f64())
            .run(finish(&proc, out, &buf))
            .await;
        let cut_short = match ran {
            Ok(()) => false,
            Err(e) => {
                // The deadline passed, or we are being cancelled: kill the
                // child and reap it either way.
                let _ = proc.kill();
                let _ = tulip::timeout(REAP_LIMIT_S)
                    .run(finish(&proc, out, &buf))
                    .await;
                if !e.is_timeout() {
                    return Err(Error::EventLoop(e));
                }
                true
            }
        };
        drop(proc);
        drop(counted);
        let stdout = buf.into_inner();
        // A `ping` that could not send printed nothing on stdout, and its
        // stderr is in the pipe by now (it was reaped): then the host is not
        // down, the sweep is over. (Only then: no read for a normal probe.)
        if stdout.is_empty() {
            if let Some(line) = self.cannot_send() {
                return Err(Error::PingCannotSend {
                    program: cmd.program.clone(),
                    line,
                });
            }
        }
        Ok(Attempt { stdout, cut_short })
    }

    fn kill_now(&self) {
        for child in self.live_children() {
            let _ = child.kill(); // a no-op once reaped
        }
    }

    fn kill_and_reap_now(&self) {
        // A spawn still running on a worker thread (at most one per thread,
        // see `Spawner`) ends first, so that its child exists to be killed.
        if let Some(spawner) = &self.spawner {
            let pool = spawner.pool.clone();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let joiner = std::thread::Builder::new().spawn(move || {
                pool.shutdown(true);
                let _ = done_tx.send(());
            });
            if joiner.is_ok() {
                let _ = done_rx.recv_timeout(EXIT_REAP_LIMIT);
            }
        }
        let children = self.live_children();
        for child in &children {
            let _ = child.kill();
        }
        let mut pids: Vec<libc::pid_t> = children
            .iter()
            .filter(|c| c.returncode().is_none())
            .map(|c| c.pid() as libc::pid_t)
            .collect();
        // Children whose spawn ended but that the loop, which will not run
        // again, never took over.
        let program = self.program.borrow().clone();
        let untracked = program.map_or_else(Vec::new, |p| children_running(&p));
        for pid in untracked {
            if !pids.contains(&pid) {
                // SAFETY: `pid` is listed as our child, so it is not reaped
                // (only this thread reaps now: the loop is not running, and
                // tulip's fallback waiter threads wait without reaping), so
                // the pid cannot have been reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                pids.push(pid);
            }
        }
        let deadline = Instant::now() + EXIT_REAP_LIMIT;
        for pid in pids {
            loop {
                let mut status = 0;
                // SAFETY: `pid` is our child and not reaped yet (see above:
                // the watcher reaps only on this thread, and a watched
                // child's `returncode` is unset), so the pid cannot have been
                // reused; WNOHANG never blocks.
                let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if ret != 0 || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The children of this process, running or zombie, that run `program`
/// (by command name), from `/proc/self/task/*/children`: a child is listed
/// under the thread that spawned it. Empty if the kernel does not list them.
fn children_running(program: &Path) -> Vec<libc::pid_t> {
    // The kernel keeps the first 15 bytes of the file name as the command.
    let Some(name) = program.file_name() else {
        return Vec::new();
    };
    let name = &name.as_bytes()[..name.len().min(15)];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let listed = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok());
    let mut pids = Vec::new();
    for list in listed {
        for pid in list.split_whitespace().filter_map(|p| p.parse().ok()) {
            let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.strip_suffix(b"\n") == Some(name) {
                pids.push(pid);
            }
        }
    }
    pids
}

impl PingProber {
    /// The children not reaped yet.
    fn live_children(&self) -> Vec<Rc<Process>> {
        self.children
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

/// Whether a spawn error is a lack of resources that time can cure.
fn is_resource_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM)
    )
}

fn copy_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

// ===== stopping =====

/// Stops a running sweep (Ctrl-C). Clones share the state.
#[derive(Clone, Default)]
pub struct Stop {
    inner: Rc<StopInner>,
}

#[derive(Default)]
struct StopInner {
    requested: Cell<bool>,
    /// The sweep's live tasks (dispatcher and probes), by task id.
    tasks: RefCell<HashMap<u64, TaskRef>>,
    /// Kills the running children at once (and reaps them, if asked); set
    /// while a sweep runs.
    kill_now: KillHook,
}

/// The prober's `kill_now` (`false`) or `kill_and_reap_now` (`true`).
type KillHook = RefCell<Option<Box<dyn Fn(bool)>>>;

impl Stop {
    /// A stop handle for a sweep not yet started.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Stops starting probes and cancels the running ones, whose children
    /// are killed and reaped. Idempotent. Call it on the loop's thread (from
    /// a signal handler added with `add_signal_handler`, a callback, a task).
    pub fn stop(&self) {
        if !self.inner.requested.replace(true) {
            // SIGKILL first, synchronously: even if the process exits before
            // the cancelled probes run again, no child outlives it.
            if let Some(kill) = &*self.inner.kill_now.borrow() {
                kill(false);
            }
            self.cancel_all();
        }
    }

    /// For a process about to exit without letting the sweep finish (a
    /// second Ctrl-C): kills every running child and reaps it on the spot,
    /// within half a second, so that none is left running or as a zombie.
    /// The loop must not run the sweep again afterwards.
    pub fn kill_and_reap_now(&self) {
        self.inner.requested.set(true);
        if let Some(kill) = &*self.inner.kill_now.borrow() {
            kill(true);
        }
    }

    /// Whether [`stop`](Stop::stop) was called.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.get()
    }

    /// Cancels every registered task but the current one.
    fn cancel_all(&self) {
        let me = tulip::current_task().map(|t| t.id());
        let tasks: Vec<TaskRef> = self.inner.tasks.borrow().values().cloned().collect();
        for t in tasks.iter().filter(|t| Some(t.id()) != me) {
            t.cancel();
        }
    }

    fn register(&self, task: TaskRef) {
        self.inner.tasks.borrow_mut().insert(task.id(), task);
    }

    fn unregister(&self, id: u64) {
        self.inner.tasks.borrow_mut().remove(&id);
    }
}

impl fmt::Debug for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stop")
            .field("requested", &self.inner.requested.get())
            .field(
                "tasks",
                &self.inner.tasks.try_borrow().map(|t| t.len()).ok(),
            )
            .finish()
    }
}

// ===== the driver =====

/// What a sweep found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// One result per host decided, sorted by address.
    pub results: Vec<Probe>,
    /// True if the sweep was stopped before every host was decided.
    pub interrupted: bool,
}

/// The caller's callback for each decided host.
type OnResult = Box<dyn FnMut(&Probe)>;

/// State shared by the dispatcher and the probe tasks of one sweep.
struct Shared<P> {
    cfg: SweepConfig,
    prober: P,
    stop: Stop,
    results: RefCell<Vec<Probe>>,
    on_result: RefCell<OnResult>,
    /// Probe tasks created and not finished.
    live: Cell<usize>,
    /// Set when `live` drops to zero.
    idle: Event,
    /// Loop time of the latest actual start (for `interval`).
    last_start: Cell<Option<f64>>,
    /// Serializes paced starts, first come first served, so each start
    /// is measured from the previous *actual* start.
    pace_lock: tulip::Lock,
    /// The first fatal error; the sweep ends with it.
    error: RefCell<Option<Error>>,
}

impl<P> Shared<P> {
    fn failed(&self) -> bool {
        self.error.borrow().is_some()
    }

    /// Records a fatal error and cancels everything else.
    fn fail(&self, err: Error) {
        self.error.borrow_mut().get_or_insert(err);
        self.stop.cancel_all();
    }

    fn report(&self, probe: Probe) {
        (self.on_result.borrow_mut())(&probe);
        self.results.borrow_mut().push(probe);
    }

    /// Waits until `interval` has passed since the previous start. Starts
    /// queue on a FIFO lock and the time recorded is the real start, so a
    /// task that wakes late never squeezes the next gap.
    async fn pace(&self) -> tulip::Result<()> {
        let gap = self.cfg.interval.as_secs_f64();
        if gap <= 0.0 {
            return Ok(());
        }
        let _turn = self.pace_lock.acquire().await?;
        let lp = tulip::get_running_loop()?;
        if let Some(prev) = self.last_start.get() {
            let wait = prev + gap - lp.time();
            if wait > 0.0 {
                tulip::sleep(wait).await?;
            }
        }
        // The caller starts its probe in this same step, right after we return.
        self.last_start.set(Some(lp.time()));
        Ok(())
    }
}

/// Probes every host, at most `cfg.concurrency` at once, calling `on_result`
/// as each host is decided; returns the results sorted by address. Must run
/// inside a task on a tulip loop (for example under `tulip::run`).
///
/// `stop` ends the sweep early (see [`Stop`]); the hosts decided until then
/// are returned, with [`Outcome::interrupted`] set. A fatal error (`ping`
/// missing, a spawn failing for a reason other than a lack of resources)
/// stops the sweep the same way and is returned instead.
///
/// `hosts` are taken one at a time, as the window lets probes start, so a
/// [`Hosts`](crate::targets::Hosts) of any size is never written out.
pub async fn run<P: Prober + 'static>(
    hosts: impl IntoIterator<Item = Ipv4Addr, IntoIter: 'static>,
    cfg: &SweepConfig,
    prober: P,
    stop: &Stop,
    on_result: impl FnMut(&Probe) + 'static,
) -> Result<Outcome, Error> {
    let hosts = hosts.into_iter();
    // Room for the results of a usual sweep; a huge one grows as hosts are
    // decided rather than reserving its whole size at once.
    let presize = hosts.size_hint().0.min(RESULTS_PRESIZE);
    let shared = Rc::new(Shared {
        cfg: cfg.clone(),
        prober,
        stop: stop.clone(),
        results: RefCell::new(Vec::with_capacity(presize)),
        on_result: RefCell::new(Box::new(on_result)),
        live: Cell::new(0),
        idle: Event::new(),
        last_start: Cell::new(None),
        pace_lock: tulip::Lock::new(),
        error: RefCell::new(None),
    });
    let weak = Rc::downgrade(&shared);
    *stop.inner.kill_now.borrow_mut() = Some(Box::new(move |reap| {
        if let Some(shared) = weak.upgrade() {
            if reap {
                shared.prober.kill_and_reap_now();
            } else {
                shared.prober.kill_now();
            }
        }
    }));
    let result = sweep(&shared, hosts).await;
    stop.inner.kill_now.borrow_mut().take();
    result
}

/// The body of [`run`].
async fn sweep<P: Prober + 'static>(
    shared: &Rc<Shared<P>>,
    hosts: impl Iterator<Item = Ipv4Addr> + 'static,
) -> Result<Outcome, Error> {
    let stop = &shared.stop;
    let dispatcher =
        tulip::create_task(dispatch(shared.clone(), hosts)).map_err(Error::EventLoop)?;
    stop.register(dispatcher.as_ref());
    if stop.is_requested() {
        dispatcher.cancel();
    }
    let dispatched = dispatcher.clone().await;
    stop.unregister(dispatcher.id());
    // The dispatcher is done: no probe task will be created any more.
    while shared.live.get() > 0 {
        shared.idle.clear();
        shared.idle.wait().await.map_err(Error::EventLoop)?;
    }
    if let Some(err) = shared.error.borrow_mut().take() {
        return Err(err);
    }
    match dispatched {
        Err(e) if !e.is_cancelled() => return Err(Error::EventLoop(e)),
        _ => {}
    }
    let mut results = shared.results.take();
    finish_results(&mut results);
    Ok(Outcome {
        results,
        interrupted: stop.is_requested(),
    })
}

/// Starts one probe task per host, in order, each holding a permit.
async fn dispatch<P: Prober + 'static>(
    shared: Rc<Shared<P>>,
    hosts: impl Iterator<Item = Ipv4Addr>,
) -> tulip::Result<()> {
    let window = Semaphore::new(shared.cfg.concurrency.max(1));
    for ip in hosts {
        if shared.stop.is_requested() || shared.failed() {
            break;
        }
        let permit = window.acquire().await?;
        if shared.stop.is_requested() || shared.failed() {
            break;
        }
        let task = tulip::create_task(probe_host(shared.clone(), ip, permit))?;
        shared.live.set(shared.live.get() + 1);
        shared.stop.register(task.as_ref());
        // A done callback, not a guard in the body: a task cancelled before
        // its first step never runs its body, but it still completes.
        let s = shared.clone();
        task.add_done_callback(move |t| {
            s.stop.unregister(t.id());
            s.live.set(s.live.get() - 1);
            if s.live.get() == 0 {
                s.idle.set();
            }
        });
    }
    Ok(())
}

/// Decides one host: up to `1 + retries` attempts, stopping at the first
/// that answers. Never fails: errors go to `shared`.
async fn probe_host<P: Prober>(
    shared: Rc<Shared<P>>,
    ip: Ipv4Addr,
    permit: SemaphorePermit,
) -> tulip::Result<()> {
    let _permit = permit;
    let cfg = &shared.cfg;
    let cmd = PingCommand::new(&cfg.ping_program, &cfg.ping, ip);
    let limit = probe_limit(&cfg.ping);
    let mut started = None;
    let mut last: Option<Probe> = None;
    for attempt in 1..=cfg.retries.saturating_add(1) {
        if shared.pace().await.is_err() || shared.stop.is_requested() || shared.failed() {
            break;
        }
        let time = *started.get_or_insert_with(LocalTime::now);
        match shared.prober.probe(&cmd, limit).await {
            Ok(out) => {
                let probe = Probe::from_attempt(time, ip, &out, attempt);
                last = Some(probe);
                if probe.up {
                    break;
                }
            }
            Err(e) if e.is_cancelled() => break,
            Err(e) => {
                shared.fail(e);
                return Ok(());
            }
        }
    }
    // Stopped between attempts: the last one still counts.
    if let Some(probe) = last {
        shared.report(probe);
    }
    Ok(())
}
