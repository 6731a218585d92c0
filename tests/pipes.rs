//! Pipe transports (`connect_read_pipe`, `connect_write_pipe`) on real
//! pipes, FIFOs and child processes: data and EOF, pausing, write flow
//! control (N3), hang-ups and closing (N4), refusals, panicking protocols
//! (L6), and a loop closed with pipes open (L5).

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::rc::Rc;

use common::{capture_reports, poll_io, run_bounded, settle, InterruptsOnce};
use tulip::transports::prelude::*;
use tulip::{Error, EventLoop, Future};

/// Every wait in these tests is bounded by this many seconds.
const BOUND: f64 = 5.0;

/// Records every call, in order, and keeps the transport.
#[derive(Default)]
struct Recorder {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    events: RefCell<Vec<String>>,
    data: RefCell<Vec<u8>>,
    lost: Future<Option<Error>>,
    /// Completes at the first `resume_writing`.
    resumed: Future<()>,
}

impl Recorder {
    fn new() -> Rc<Recorder> {
        Rc::new(Recorder::default())
    }
    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
    fn push(&self, what: &str) {
        let mut ev = self.events.borrow_mut();
        // Runs of data_received are one entry.
        if what != "data" || ev.last().map(String::as_str) != Some("data") {
            ev.push(what.into());
        }
    }
    /// `connection_lost`'s argument, waited for (bounded).
    async fn lost(&self) -> tulip::Result<Option<Error>> {
        tulip::wait_for(self.lost.clone(), BOUND).await
    }
}

impl Protocol for Recorder {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
        self.push("made");
    }
    fn data_received(&self, data: &[u8]) {
        self.data.borrow_mut().extend_from_slice(data);
        self.push("data");
    }
    fn eof_received(&self) -> bool {
        self.push("eof");
        false
    }
    fn connection_lost(&self, exc: Option<Error>) {
        self.push("lost");
        // Drop the transport: the cycle ends here, as in asyncio.
        drop(self.transport.borrow_mut().take());
        let _ = self.lost.set_result(exc);
    }
    fn pause_writing(&self) {
        self.push("pause");
    }
    fn resume_writing(&self) {
        self.push("resume");
        if !self.resumed.done() {
            let _ = self.resumed.set_result(());
        }
    }
}

/// A payload whose every offset is distinguishable (order is checked).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A raw pipe from `pipe2(2)`: `(read end, write end)`.
fn pipe2() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are new and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Reads what `r` holds, without blocking, and expects EOF after it: a
/// write end left open fails the test instead of hanging it.
fn read_to_eof_now(r: &mut std::io::PipeReader) -> Vec<u8> {
    let fd = r.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL only read and set the flags of our own fd.
    unsafe {
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        )
    };
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("expected EOF after {} bytes, got: {e}", got.len()),
        }
    }
}

/// The `(device, inode)` of the file `fd` refers to, if `fd` is open.
fn file_id(fd: std::os::fd::RawFd) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes into `st`; a closed fd gives EBADF.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// True if `fd` still refers to the file `id` (from [`file_id`]). After a
/// close the number is free or reused by another file (another test may
/// open one at any time): either way the identity differs.
fn still_open(fd: std::os::fd::RawFd, id: (u64, u64)) -> bool {
    file_id(fd) == Some(id)
}

/// A fresh temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("tulip-pipes-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes a FIFO at `path` with `mkfifo(3)`.
fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

// conformance: N4
#[test]
fn read_pipe_delivers_data_then_eof_then_connection_lost() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, mut w) = std::io::pipe()?;
        let (t, p) = lp.connect_read_pipe(Recorder::new, r).await?;
        assert_eq!(p.events(), ["made"]);
        assert!(t.is_reading());
        let fd = t.get_extra_info("pipe").and_then(|i| i.as_fd());
        assert_eq!(fd, t.fd());
        let raw = fd.expect("the pipe's fd");
        let id = file_id(raw).expect("open");
        w.write_all(b"hello, ")?;
        w.write_all(b"pipe")?;
        drop(w);
        assert!(p.lost().await?.is_none());
        assert_eq!(p.events(), ["made", "data", "eof", "lost"]);
        assert_eq!(&*p.data.borrow(), b"hello, pipe");
        assert!(t.is_closing());
        assert!(t.get_extra_info("pipe").is_none());
        assert!(!still_open(raw, id), "the fd is closed");
        Ok(())
    });
}

#[test]
fn read_pipe_pause_and_resume_reading() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, mut w) = std::io::pipe()?;
        let (t, p) = lp.connect_read_pipe(Recorder::new, r).await?;
        t.pause_reading();
        assert!(!t.is_reading());
        w.write_all(b"held back")?;
        poll_io().await?;
        assert!(p.data.borrow().is_empty(), "no data_received while paused");
        t.resume_reading();
        assert!(t.is_reading());
        for _ in 0..100 {
            if p.data.borrow().len() == 9 {
                break;
            }
            tulip::sleep(0.0).await?;
        }
        assert_eq!(&*p.data.borrow(), b"held back");
        drop(w);
        assert!(p.lost().await?.is_none());
        Ok(())
    });
}

// conformance: N3
#[test]
fn write_pipe_backpressure_pauses_then_resumes_and_keeps_order() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, w) = pipe2();
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        assert!(wt.can_write_eof());
        assert!(!wt.is_reading());
        // Nobody reads: the pipe takes 64 KiB, the transport buffers the
        // rest and crosses its high-water mark.
        let payload = pattern(512 * 1024);
        for chunk in payload.chunks(32 * 1024) {
            wt.write(chunk)?; // never blocks
        }
        assert!(wt.get_write_buffer_size() > 64 * 1024);
        assert_eq!(wp.events(), ["made", "pause"]);
        // Make room in the pipe behind the loop's back: a write now, before
        // the writer callback runs, must still queue behind the buffer.
        let mut head = vec![0u8; 16 * 1024];
        // SAFETY: reads into our own buffer from an fd we own; the pipe is
        // full, so this blocking read returns at once.
        let n = unsafe { libc::read(r.as_raw_fd(), head.as_mut_ptr().cast(), head.len()) };
        assert!(n > 0, "read: {}", std::io::Error::last_os_error());
        head.truncate(n as usize);
        assert!(head[..] == payload[..head.len()]);
        let tail = b"the tail, written last";
        wt.write(tail)?;
        let mut expected = payload[head.len()..].to_vec();
        expected.extend_from_slice(tail);
        // Now drain the other end, through a read pipe.
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        tulip::wait_for(wp.resumed.clone(), BOUND).await?;
        assert_eq!(wp.events(), ["made", "pause", "resume"]);
        wt.write_eof()?;
        assert!(wp.lost().await?.is_none());
        assert!(rp.lost().await?.is_none());
        assert_eq!(wt.get_write_buffer_size(), 0);
        assert!(*rp.data.borrow() == expected, "every byte, in order");
        assert_eq!(rp.events(), ["made", "data", "eof", "lost"]);
        Ok(())
    });
}

/// asyncio's `set_write_buffer_limits` ends with `_maybe_pause_protocol()`:
/// lowering the high-water mark under what a pipe has buffered pauses the
/// protocol at once.
// conformance: N3
#[test]
fn lowering_a_write_pipes_high_water_mark_pauses_at_once() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (_r, w) = pipe2();
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        wt.set_write_buffer_limits(Some(16 << 20), None)?;
        wt.write(&pattern(512 * 1024))?;
        assert!(wt.get_write_buffer_size() > 128 * 1024);
        assert_eq!(wp.events(), ["made"]);
        wt.set_write_buffer_limits(Some(128 * 1024), None)?;
        assert_eq!(wp.events(), ["made", "pause"]);
        wt.abort();
        assert!(wp.lost().await?.is_none());
        Ok(())
    });
}

#[test]
fn write_eof_flushes_the_buffer_then_closes() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, w) = std::io::pipe()?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        let payload = pattern(200 * 1024);
        wt.write(&payload)?;
        assert!(wt.get_write_buffer_size() > 0);
        wt.write_eof()?;
        assert!(wt.is_closing());
        // Dropped, as asyncio's pipe transport drops it; the flush goes on
        // (and the reader below gets exactly the payload).
        let buffered = wt.get_write_buffer_size();
        wt.write(b"late")?;
        assert_eq!(wt.get_write_buffer_size(), buffered);
        poll_io().await?;
        assert!(!wp.lost.done(), "still flushing");
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        assert!(wp.lost().await?.is_none());
        assert!(rp.lost().await?.is_none());
        assert!(*rp.data.borrow() == payload);
        Ok(())
    });
}

// conformance: N4
#[test]
fn closing_the_read_end_with_data_buffered_is_a_broken_pipe() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, w) = std::io::pipe()?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        wt.write(&pattern(200 * 1024))?;
        assert!(wt.get_write_buffer_size() > 0);
        drop(r); // the reader goes away: EPOLLERR on our end
        let exc = wp.lost().await?.expect("an error");
        assert_eq!(exc.io_kind(), Some(std::io::ErrorKind::BrokenPipe), "{exc}");
        assert!(wt.is_closing());
        assert_eq!(wt.get_write_buffer_size(), 0);
        assert!(wt.get_extra_info("pipe").is_none(), "the fd is closed");
        // Later writes are dropped, as asyncio does once the pipe is lost.
        wt.write(b"dropped")?;
        assert_eq!(wp.events(), ["made", "pause", "lost"]);
        Ok(())
    });
}

// conformance: N4
#[test]
fn closing_the_read_end_of_an_idle_pipe_closes_the_transport() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, w) = std::io::pipe()?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        drop(r);
        // asyncio's `_read_ready` on a write pipe: nothing was buffered, so
        // the hang-up is a plain close.
        assert!(wp.lost().await?.is_none());
        assert!(wt.is_closing());
        assert_eq!(wp.events(), ["made", "lost"]);
        Ok(())
    });
}

#[test]
fn a_write_to_a_pipe_without_reader_is_a_broken_pipe() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, w) = std::io::pipe()?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        drop(r);
        // Before the loop polls the hang-up, write(2) meets EPIPE: the
        // transport closes at once, not at the next poll.
        wt.write(b"x")?;
        assert!(wt.is_closing(), "closed by the write's EPIPE");
        assert_eq!(wt.get_write_buffer_size(), 0);
        let exc = wp.lost().await?.expect("an error");
        assert_eq!(exc.io_kind(), Some(std::io::ErrorKind::BrokenPipe), "{exc}");
        Ok(())
    });
}

#[test]
fn a_regular_file_is_refused() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let dir = TempDir::new("regular");
        let path = dir.0.join("file");
        std::fs::write(&path, b"not a pipe")?;
        let made = Rc::new(Cell::new(0));
        let m = made.clone();
        let err = lp
            .connect_read_pipe(
                move || {
                    m.set(m.get() + 1);
                    Recorder::new()
                },
                std::fs::File::open(&path)?,
            )
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("pipes/sockets only"), "{err}");
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        let err = lp
            .connect_write_pipe(Recorder::new, file)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("character devices"), "{err}");
        settle().await?;
        assert_eq!(made.get(), 1, "the protocol was made but never connected");
        Ok(())
    });
}

#[test]
fn the_fd_is_made_non_blocking() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, _w) = pipe2(); // both blocking
        let raw = r.as_raw_fd();
        let (t, _p) = lp.connect_read_pipe(Recorder::new, r).await?;
        // SAFETY: F_GETFL only reads the flags of an fd the transport owns.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
        assert!(flags & libc::O_NONBLOCK != 0);
        t.close();
        Ok(())
    });
}

#[test]
fn a_fifo_carries_data_both_ways() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let dir = TempDir::new("fifo");
        let path = dir.0.join("fifo");
        mkfifo(&path);
        // The read end first, non-blocking, so that opening the write end
        // does not block.
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let w = std::fs::OpenOptions::new().write(true).open(&path)?;
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        let payload = pattern(300 * 1024);
        wt.write(&payload)?;
        wt.write_eof()?;
        assert!(wp.lost().await?.is_none());
        assert!(rp.lost().await?.is_none());
        assert!(*rp.data.borrow() == payload);
        Ok(())
    });
}

#[test]
fn a_readable_fifo_write_end_is_not_a_hang_up() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let dir = TempDir::new("fifo-rdwr");
        let path = dir.0.join("fifo");
        mkfifo(&path);
        // Opened read-write, the write end is also a read end: what we write
        // makes it readable, without any hang-up. The hang-up watch must
        // not take that for the reader going away.
        let w = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        wt.write(b"kept")?;
        assert_eq!(wt.get_write_buffer_size(), 0, "written at once");
        poll_io().await?;
        assert!(!wt.is_closing());
        assert_eq!(wp.events(), ["made"]);
        // The data is still there for a reader.
        let mut r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let mut got = [0u8; 16];
        let n = r.read(&mut got)?;
        assert_eq!(&got[..n], b"kept");
        wt.write_eof()?;
        assert!(wp.lost().await?.is_none());
        Ok(())
    });
}

#[test]
fn a_child_process_through_both_pipes() {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let out = run_bounded(BOUND, async move {
        let lp = tulip::get_running_loop()?;
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, stdout).await?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, stdin).await?;
        wt.write(b"hello from the loop\n")?;
        wt.write_eof()?;
        assert!(wp.lost().await?.is_none());
        assert!(rp.lost().await?.is_none());
        let out = rp.data.borrow().clone();
        Ok(out)
    });
    assert_eq!(out, b"HELLO FROM THE LOOP\n");
    // The child saw EOF and closed its stdout: it has exited or is exiting.
    assert!(child.wait().unwrap().success());
}

#[test]
fn close_a_read_pipe_and_abort_a_write_pipe() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        // close(): no more data, connection_lost(None) on the next iteration.
        let (r, mut w) = std::io::pipe()?;
        let (rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        rt.close();
        assert!(rt.is_closing());
        assert!(
            !rp.lost.done(),
            "connection_lost comes in a later iteration"
        );
        rt.close(); // twice is a no-op
        assert!(rp.lost().await?.is_none());
        assert_eq!(rp.events(), ["made", "lost"]);
        // Our read end is closed: the writer sees EPIPE.
        let err = w.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);

        // abort(): the buffer is dropped, connection_lost(None).
        let (mut r, w) = std::io::pipe()?;
        let (wt, wp) = lp.connect_write_pipe(Recorder::new, w).await?;
        wt.write(&pattern(200 * 1024))?;
        assert!(wt.get_write_buffer_size() > 0);
        wt.abort();
        assert!(wt.is_closing());
        assert_eq!(wt.get_write_buffer_size(), 0);
        assert!(wp.lost().await?.is_none());
        let got = read_to_eof_now(&mut r); // EOF: our write end is closed
        assert!(got.len() < 200 * 1024, "the buffered part was dropped");
        assert!(got[..] == pattern(got.len())[..]);
        Ok(())
    });
}

#[test]
fn a_read_pipe_cannot_write() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, _w) = std::io::pipe()?;
        let (rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        let t = rp.transport.borrow().clone().expect("connected");
        assert!(matches!(t.write(b"x"), Err(Error::Runtime(_))));
        assert!(matches!(t.write_eof(), Err(Error::Runtime(_))));
        assert!(!t.can_write_eof());
        rt.close();
        assert!(rp.lost().await?.is_none());
        Ok(())
    });
}

#[derive(Default)]
struct PanicsOnData {
    lost: Future<Option<Error>>,
}

impl Protocol for PanicsOnData {
    fn data_received(&self, _: &[u8]) {
        panic!("bug in data_received");
    }
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = self.lost.set_result(exc);
    }
}

// conformance: L6
#[test]
fn a_panicking_data_received_is_reported_and_closes_the_pipe() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let reports = capture_reports(&lp);
        let (r, mut w) = std::io::pipe()?;
        let (rt, p) = lp
            .connect_read_pipe(|| Rc::new(PanicsOnData::default()), r)
            .await?;
        w.write_all(b"boom")?;
        let exc = tulip::wait_for(p.lost.clone(), BOUND).await?;
        assert!(matches!(exc, Some(Error::Panic(_))), "{exc:?}");
        assert!(rt.is_closing());
        let reports = reports.borrow();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(reports[0].message.contains("data_received() call failed"));
        assert!(format!("{}", reports[0]).contains("bug in data_received"));
        Ok(())
    });
}

#[derive(Default)]
struct PanicsOnPause {
    paused: Cell<u32>,
}

impl Protocol for PanicsOnPause {
    fn pause_writing(&self) {
        self.paused.set(self.paused.get() + 1);
        panic!("bug in pause_writing");
    }
}

// conformance: L6
#[test]
fn a_panicking_pause_writing_is_reported_and_the_pipe_goes_on() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let reports = capture_reports(&lp);
        let (r, w) = std::io::pipe()?;
        let (wt, p) = lp
            .connect_write_pipe(|| Rc::new(PanicsOnPause::default()), w)
            .await?;
        let payload = pattern(200 * 1024);
        wt.write(&payload)?; // the panic does not reach us
        assert_eq!(p.paused.get(), 1);
        assert!(!wt.is_closing());
        assert_eq!(reports.borrow().len(), 1);
        assert!(reports.borrow()[0]
            .message
            .contains("pause_writing() failed"));
        // The pipe still delivers everything.
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        wt.write_eof()?;
        assert!(rp.lost().await?.is_none());
        assert!(*rp.data.borrow() == payload);
        Ok(())
    });
}

/// Counts `connection_lost` calls, and keeps its transport (the cycle).
#[derive(Default)]
struct KeepsTransport {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    lost: Rc<Cell<u32>>,
}

impl Protocol for KeepsTransport {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(self.lost.get() + 1);
    }
}

// conformance: L5
#[test]
fn a_loop_closed_with_pipes_open_closes_their_fds() {
    for drop_instead_of_close in [false, true] {
        let lp = EventLoop::new().unwrap();
        let (r_ours, mut w_theirs) = std::io::pipe().unwrap();
        let (mut r_theirs, w_ours) = std::io::pipe().unwrap();
        let lost = Rc::new(Cell::new(0));
        let (l1, l2) = (lost.clone(), lost.clone());
        // Bounded: a connect that never completes fails instead of hanging.
        let body = async move {
            let lp = tulip::get_running_loop()?;
            let read = move || {
                Rc::new(KeepsTransport {
                    lost: l1,
                    ..Default::default()
                })
            };
            let write = move || {
                Rc::new(KeepsTransport {
                    lost: l2,
                    ..Default::default()
                })
            };
            // The transports and protocols are dropped here: only the
            // protocol ↔ transport cycles and the loop's registrations hold them.
            lp.connect_read_pipe(read, r_ours).await?;
            let (wt, _) = lp.connect_write_pipe(write, w_ours).await?;
            wt.write(&pattern(200 * 1024))?; // a writer is registered too
            Ok(())
        };
        lp.run_until_complete(tulip::wait_for(body, BOUND)).unwrap();
        if drop_instead_of_close {
            drop(lp);
        } else {
            lp.close().unwrap();
        }
        // Our write end is closed: the other side reads (the first 64 KiB,
        // then) EOF. Our read end is closed: their write fails with EPIPE.
        let got = read_to_eof_now(&mut r_theirs);
        assert!(got.len() < 200 * 1024);
        let err = w_theirs.write_all(b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(lost.get(), 0, "no protocol call without a loop");
    }
}

#[test]
fn connect_on_a_closed_loop_fails_and_closes_the_pipe() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    let (r, mut w) = std::io::pipe().unwrap();
    let res = tulip::ReadPipeTransport::new(&lp, r, Rc::new(Nothing), None);
    assert!(matches!(res, Err(Error::Closed)), "{res:?}");
    let err = w.write_all(b"x").unwrap_err();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::BrokenPipe,
        "the pipe was closed"
    );
}

/// A protocol that does nothing.
struct Nothing;
impl Protocol for Nothing {}

/// At the first `resume_writing`, writes `tail` (more than the pipe holds)
/// and closes its transport: "write the rest, then close" from a protocol.
#[derive(Default)]
struct TailOnResume {
    rec: Recorder,
    tail: Vec<u8>,
    written: Cell<bool>,
}

impl Protocol for TailOnResume {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        self.rec.connection_made(transport);
    }
    fn connection_lost(&self, exc: Option<Error>) {
        self.rec.connection_lost(exc);
    }
    fn pause_writing(&self) {
        self.rec.pause_writing();
    }
    fn resume_writing(&self) {
        self.rec.resume_writing();
        let t = self.rec.transport.borrow().clone();
        if let Some(t) = t.filter(|_| !self.written.replace(true)) {
            t.write(&self.tail).expect("write from resume_writing");
            t.close();
        }
    }
}

#[test]
fn a_write_then_close_from_resume_writing_flushes_before_closing() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, w) = pipe2();
        let tail = pattern(300 * 1024)[7..].to_vec();
        let (wt, wp) = lp
            .connect_write_pipe(
                || {
                    Rc::new(TailOnResume {
                        tail: tail.clone(),
                        ..Default::default()
                    })
                },
                w,
            )
            .await?;
        // The pipe takes 64 KiB, the rest is buffered above the high-water
        // mark: pause_writing.
        let payload = pattern(256 * 1024);
        wt.write(&payload)?;
        assert_eq!(wp.rec.events(), ["made", "pause"]);
        // Drain the other end: the buffer empties, resume_writing writes the
        // tail (most of it buffered again) and closes.
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        assert!(rp.lost().await?.is_none());
        assert!(wp.rec.lost().await?.is_none());
        let mut expected = payload;
        expected.extend_from_slice(&tail);
        let got = rp.data.borrow().clone();
        assert_eq!(got.len(), expected.len(), "every byte arrives");
        assert!(got == expected, "in order");
        // The tail crossed the high-water mark again.
        assert_eq!(
            wp.rec.events(),
            ["made", "pause", "resume", "pause", "resume", "lost"]
        );
        Ok(())
    });
}

#[derive(Default)]
struct PanicsOnLost {
    lost: Cell<u32>,
}

impl Protocol for PanicsOnLost {
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(self.lost.get() + 1);
        panic!("bug in connection_lost");
    }
}

// conformance: L6
#[test]
fn a_panicking_connection_lost_still_closes_the_pipe() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let reports = capture_reports(&lp);
        // A write pipe that closes once its buffer is flushed: the
        // connection_lost that panics runs inside the writer callback.
        let (r, w) = std::io::pipe()?;
        let (wt, wp) = lp
            .connect_write_pipe(|| Rc::new(PanicsOnLost::default()), w)
            .await?;
        let payload = pattern(100 * 1024);
        wt.write(&payload)?;
        wt.close();
        // The other end reads everything, then sees EOF.
        let (_rt, rp) = lp.connect_read_pipe(Recorder::new, r).await?;
        assert!(rp.lost().await?.is_none(), "the reader sees EOF");
        assert!(*rp.data.borrow() == payload);
        assert_eq!(wp.lost.get(), 1);
        assert!(wt.fd().is_none(), "the write end is closed");
        // A read pipe closed at once: connection_lost runs in a handle.
        let (r2, w2) = std::io::pipe()?;
        let (rt, rp) = lp
            .connect_read_pipe(|| Rc::new(PanicsOnLost::default()), r2)
            .await?;
        rt.close();
        settle().await?;
        assert_eq!(rp.lost.get(), 1);
        assert!(rt.fd().is_none(), "the read end is closed");
        // SAFETY: writes one byte from our buffer to an fd we own.
        let n = unsafe { libc::write(w2.as_raw_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(n, -1, "no reader is left");
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EPIPE)
        );
        assert_eq!(reports.borrow().len(), 2, "both panics are reported");
        Ok(())
    });
}

// conformance: L6
#[test]
fn an_interrupt_in_data_received_leaves_the_rest_for_the_next_run() {
    let lp = EventLoop::new().unwrap();
    let (r, w) = pipe2();
    // Room for more than one read (256 KiB) in the pipe.
    // SAFETY: F_SETPIPE_SZ only resizes the buffer of our own pipe.
    let size = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    assert!(
        size >= 1 << 19,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    let lp1 = lp.clone();
    let (_rt, p) = lp
        .run_until_complete(async move {
            lp1.connect_read_pipe(|| Rc::new(InterruptsOnce::default()), r)
                .await
        })
        .unwrap();
    let payload = pattern(512 * 1024);
    let mut w = std::fs::File::from(w);
    w.write_all(&payload).unwrap(); // fits: nothing blocks
    drop(w);
    let lost = p.lost.clone();
    let err = lp
        .run_until_complete(async move { tulip::wait_for(lost, BOUND).await })
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    assert!(
        p.data.borrow().len() < payload.len(),
        "interrupted mid-pipe"
    );
    // The next run reads the rest, then EOF.
    let lost = p.lost.clone();
    let exc = lp
        .run_until_complete(async move { tulip::wait_for(lost, BOUND).await })
        .unwrap();
    assert!(exc.is_none(), "{exc:?}");
    assert!(*p.data.borrow() == payload, "every byte, in order");
    lp.close().unwrap();
}

#[test]
fn set_protocol_on_a_read_pipe_sends_what_follows_to_the_new_protocol() {
    // asyncio's _UnixReadPipeTransport.set_protocol: the next chunk, the EOF
    // and connection_lost go to the protocol set.
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, mut w) = std::io::pipe()?;
        let (t, first) = lp.connect_read_pipe(Recorder::new, r).await?;
        let got = t.get_protocol().expect("a protocol");
        assert_eq!(
            Rc::as_ptr(&got) as *const (),
            Rc::as_ptr(&first) as *const ()
        );
        w.write_all(b"one")?;
        while first.data.borrow().is_empty() {
            poll_io().await?;
        }
        let second = Recorder::new();
        t.set_protocol(second.clone())?;
        w.write_all(b"two")?;
        drop(w);
        assert!(second.lost().await?.is_none());
        assert_eq!(first.events(), ["made", "data"]);
        assert_eq!(second.events(), ["data", "eof", "lost"]);
        assert_eq!(&*first.data.borrow(), b"one");
        assert_eq!(&*second.data.borrow(), b"two");
        assert!(t.get_protocol().is_none());
        // A pipe cannot read into a BufferedProtocol's buffer.
        assert!(t.set_buffered_protocol(Rc::new(NoBuffer)).is_err());
        Ok(())
    });
}

struct NoBuffer;
impl BufferedProtocol for NoBuffer {
    fn get_buffer(&self, _: usize) -> std::cell::RefMut<'_, [u8]> {
        unreachable!("never read into")
    }
    fn buffer_updated(&self, _: usize) {}
}

/// A transport closed before its first iteration still tells its protocol
/// `connection_made`, then `connection_lost(None)`: asyncio queues the
/// `connection_made` call when the transport is made, ahead of the
/// `_call_connection_lost` that the close queues (protocols' invariant:
/// made exactly once, first; lost exactly once, last).
#[test]
fn a_pipe_closed_before_its_first_iteration_is_made_then_lost() {
    let events = run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let (r, _w) = pipe2();
        let (_r2, w2) = pipe2();
        let (reader, writer) = (Recorder::new(), Recorder::new());
        let rt = tulip::ReadPipeTransport::new(&lp, r, reader.clone(), None)?;
        let wt = tulip::WritePipeTransport::new(&lp, w2, writer.clone(), None)?;
        rt.close();
        wt.close();
        let (a, b) = (reader.lost().await?, writer.lost().await?);
        assert!(a.is_none() && b.is_none(), "{a:?} {b:?}");
        Ok((reader.events(), writer.events()))
    });
    assert_eq!(events.0, ["made", "lost"]);
    assert_eq!(events.1, ["made", "lost"]);
}

/// A pty's master read as a pipe: once the other side (the slave) is
/// closed, Linux's read gives EIO, not 0. asyncio's `_read_ready` takes
/// that for the end: `connection_lost(EIO)`, no `eof_received`, and no
/// report to the exception handler (it reports every other read error).
// conformance: N4
#[test]
fn a_pty_whose_other_side_closed_ends_with_eio_and_no_report() {
    run_bounded(BOUND, async {
        let lp = tulip::get_running_loop()?;
        let reports = capture_reports(&lp);
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two new fds to the out-pointers; no name
        // buffer, termios or window size is passed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just opened, and nothing else owns them.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let (_t, p) = lp.connect_read_pipe(Recorder::new, master).await?;
        let mut slave = std::fs::File::from(slave);
        slave.write_all(b"hello\n")?;
        // The data first (bounded by run_bounded), then the hang-up.
        while p.data.borrow().len() < 6 {
            tulip::sleep(0.001).await?;
        }
        drop(slave);
        let err = p.lost().await?.expect("EIO ends a pty");
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert_eq!(p.events(), ["made", "data", "lost"]);
        // The line discipline may turn "\n" into "\r\n".
        assert!(p.data.borrow().starts_with(b"hello"));
        assert!(
            reports.borrow().is_empty(),
            "EIO is not reported: {:?}",
            reports.borrow()
        );
        Ok(())
    });
}
