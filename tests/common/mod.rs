//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulip::{EventLoop, ExceptionContext, TimerHandle};

/// The path of a compiled example (`cargo test` builds every example first).
pub fn example_path(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("current_exe");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} is not built at {}: run the tests with `cargo test`, which builds examples",
        path.display()
    );
    path
}

/// Runs an example with arguments, kills it after `limit`, and returns its
/// output and how long it took.
pub fn run_example(name: &str, args: &[&str], limit: Duration) -> (Output, Duration) {
    run_example_cmd(Command::new(example_path(name)).args(args), limit)
}

/// [`run_example`] with `dir` as the example's current directory.
pub fn run_example_in(
    dir: &std::path::Path,
    name: &str,
    args: &[&str],
    limit: Duration,
) -> (Output, Duration) {
    run_example_cmd(
        Command::new(example_path(name)).args(args).current_dir(dir),
        limit,
    )
}

fn run_example_cmd(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    // Bound the wait: a watchdog thread kills the child if it overruns.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().expect("wait example");
    let _ = tx.send(());
    let _ = watchdog.join();
    (out, start.elapsed())
}

/// The stdout of a run, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a run, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `elapsed` is within `[lo, hi]` seconds.
pub fn assert_elapsed(elapsed: Duration, lo: f64, hi: f64) {
    let s = elapsed.as_secs_f64();
    assert!(
        s >= lo && s <= hi,
        "took {s:.3} s, expected between {lo} and {hi} s"
    );
}

// ===== Loop helpers for the conformance tests =====

/// A shared, ordered record of what ran.
pub type Log = Rc<RefCell<Vec<String>>>;

/// A new, empty log.
pub fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// Appends an entry to the log.
pub fn push(log: &Log, s: impl Into<String>) {
    log.borrow_mut().push(s.into());
}

/// The log's entries so far.
pub fn entries(log: &Log) -> Vec<String> {
    log.borrow().clone()
}

/// `call_soon` whose handle we don't need.
#[track_caller]
pub fn soon(lp: &EventLoop, f: impl FnOnce() + 'static) {
    let _ = lp.call_soon(f).expect("call_soon");
}

/// Captures every report the exception handler receives.
pub fn capture_reports(lp: &EventLoop) -> Rc<RefCell<Vec<ExceptionContext>>> {
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        r.borrow_mut().push(ctx.clone())
    }));
    reports
}

/// A guard for runs that end only if the behaviour under test works: after
/// `secs` it stops the loop and raises its flag. (A panicking timer would
/// only reach the exception handler, and the loop would run on.)
pub fn stop_after(lp: &EventLoop, secs: f64) -> (TimerHandle, Rc<Cell<bool>>) {
    let fired = Rc::new(Cell::new(false));
    let (f, lp1) = (fired.clone(), lp.clone());
    let h = lp
        .call_later(secs, move || {
            f.set(true);
            lp1.stop();
        })
        .unwrap();
    (h, fired)
}

/// Runs exactly one iteration on the running loop, with a zero poll
/// timeout: `stop()` before `run_forever()` (L3). Tasks need the loop to be
/// running (`sleep` looks it up), which a bare `run_once` does not provide.
pub fn iterate(lp: &EventLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

/// Runs `main` under `tulip::run` with a watchdog: a test that hangs fails
/// instead.
pub fn run_bounded<T: 'static>(
    secs: f64,
    main: impl std::future::Future<Output = tulip::Result<T>> + 'static,
) -> T {
    run_watched_for(secs, main).unwrap()
}

/// `tulip::run` with a 30 s watchdog: a test whose tasks wait for ever
/// (a lost wake-up) ends with `Err(Interrupt)` instead of hanging.
pub fn run_watched<T: 'static>(
    main: impl std::future::Future<Output = tulip::Result<T>> + 'static,
) -> tulip::Result<T> {
    run_watched_for(30.0, main)
}

fn run_watched_for<T: 'static>(
    secs: f64,
    main: impl std::future::Future<Output = tulip::Result<T>> + 'static,
) -> tulip::Result<T> {
    tulip::run(async move {
        let lp = tulip::get_running_loop()?;
        // A panic in a callback goes to the exception handler; interrupt() ends the run.
        let _dog = lp.call_later(secs, || tulip::interrupt())?;
        main.await
    })
}

/// Asserts that `err` is a bind to `addr` that failed with `EADDRINUSE`,
/// and says so as asyncio does (`error while attempting to bind on address
/// ADDR: ...`).
pub fn assert_bind_in_use(err: &tulip::Error, addr: std::net::SocketAddr) {
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE), "{err}");
    let prefix = format!("error while attempting to bind on address {addr}: ");
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

/// Lets every ready task run a step or two.
pub async fn settle() -> tulip::Result<()> {
    for _ in 0..5 {
        tulip::sleep(0.0).await?;
    }
    Ok(())
}

/// Runs enough loop iterations that the loop polls for I/O at least once
/// and runs what it found: while work is ready it skips most polls
/// (`IO_POLL_INTERVAL`), so a few `sleep(0)`s (`settle`) may never look at
/// the fds. What the kernel had already reported reaches its callbacks.
pub async fn poll_io() -> tulip::Result<()> {
    for _ in 0..tulip::event_loop::IO_POLL_INTERVAL + 2 {
        tulip::sleep(0.0).await?;
    }
    Ok(())
}

/// Interrupts the run (Ctrl-C) at its first `data_received`.
#[derive(Default)]
pub struct InterruptsOnce {
    /// Every byte received, in order.
    pub data: RefCell<Vec<u8>>,
    interrupted: Cell<bool>,
    /// Set at `connection_lost`.
    pub lost: tulip::Future<Option<tulip::Error>>,
}

impl tulip::Protocol for InterruptsOnce {
    fn data_received(&self, data: &[u8]) {
        self.data.borrow_mut().extend_from_slice(data);
        if !self.interrupted.replace(true) {
            tulip::interrupt();
        }
    }
    fn connection_lost(&self, exc: Option<tulip::Error>) {
        let _ = self.lost.set_result(exc);
    }
}

/// A tiny deterministic generator (xorshift64*), so runs are repeatable
/// without a dependency.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (up to modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Keeps the loop busy: a callback that counts its runs and reschedules
/// itself with `call_soon`, so it runs once in every iteration from the next
/// one on. Returns the count.
pub fn busy_callback(lp: &EventLoop) -> Rc<Cell<u32>> {
    fn again(lp: EventLoop, n: Rc<Cell<u32>>) {
        n.set(n.get() + 1);
        let lp2 = lp.clone();
        soon(&lp, move || again(lp2, n));
    }
    let n = Rc::new(Cell::new(0));
    let (lp1, n1) = (lp.clone(), n.clone());
    soon(lp, move || again(lp1, n1));
    n
}

/// Sets `SO_LINGER` to 0 on a socket, so that closing it sends a RST
/// (a peer reset, for the tests of connection-reset handling).
pub fn linger_zero(fd: i32) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: fd is an open socket; the option value is a valid `linger`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
}

/// Runs the test `name` of this binary again, alone, in a child process,
/// and checks that it passed there: for checks that process-wide state (a
/// counter, the heap's totals) would make racy beside the binary's other
/// tests, which run on other threads. Returns true in the parent, which
/// then has nothing left to do, and false in the child, which goes on with
/// the check. The child is killed if it runs over a minute.
pub fn rerun_alone(name: &str) -> bool {
    const CHILD: &str = "TULIP_TEST_RERUN_ALONE";
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            // SAFETY: kill(2) on our own child's pid, not yet reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    dog.join().unwrap();
    let text = stdout(&out) + &stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child ran no test: {text}");
    true
}

/// The bytes the process's heap holds for the program (glibc's `mallinfo2`:
/// in use in the arenas plus in mmapped chunks). Process-wide: measure it
/// in a test run with [`rerun_alone`].
pub fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads glibc's allocator statistics.
    let m = unsafe { libc::mallinfo2() };
    m.uordblks + m.hblkhd
}

/// Runs `body` on a fresh loop whose children use the child watcher
/// `kind` (the thread one if the kernel has no pidfd), bounded by a minute:
/// a deadlocked subprocess test fails instead of hanging the suite.
pub fn on_watcher_loop<T: 'static, F>(
    kind: tulip::ChildWatcherKind,
    body: impl FnOnce(EventLoop) -> F,
) -> T
where
    F: std::future::Future<Output = tulip::Result<T>> + 'static,
{
    let mut runner = tulip::Runner::new();
    let lp = runner.get_loop().unwrap();
    if kind == tulip::ChildWatcherKind::Pidfd && !tulip::child_watcher::can_use_pidfd() {
        eprintln!("no pidfd on this kernel; running on the thread watcher");
    } else {
        lp.set_child_watcher(kind).unwrap();
    }
    let fut = body(lp);
    let out = runner
        .run(async move { tulip::timeout(60.0).run(fut).await })
        .unwrap();
    runner.close();
    out
}

/// Declares one test per child watcher for a body `fn(kind)`.
#[allow(unused_macros)]
macro_rules! both_watchers {
    ($body:ident, $pidfd:ident, $thread:ident) => {
        #[test]
        fn $pidfd() {
            $body(tulip::ChildWatcherKind::Pidfd)
        }
        #[test]
        fn $thread() {
            $body(tulip::ChildWatcherKind::Thread)
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_watchers;
