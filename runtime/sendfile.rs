//! Sending a file over a socket or a transport: asyncio's `sendfile`.
//! Mirrors `BaseEventLoop.sock_sendfile`, `_sock_sendfile_fallback`,
//! `sendfile` and `_sendfile_fallback` in `Lib/asyncio/base_events.py`,
//! `_UnixSelectorEventLoop._sock_sendfile_native` (and its `_impl`) in
//! `unix_events.py`, and `BaseSelectorEventLoop._sendfile_native` with the
//! socket transport's `_make_empty_waiter` in `selector_events.py`.
//!
//! ## The native path
//! [`EventLoop::sock_sendfile`] first tries `sendfile(2)`: the kernel
//! copies the file to the socket without passing through user space. Each
//! call sends what the socket buffer takes, from an explicit offset (the
//! file position is not used); on `EAGAIN`, and after each send as asyncio
//! does, the loop waits for writability with a one-shot writer, so a slow
//! peer never blocks the loop and a fast one cannot starve it. It stops at
//! `count` bytes or at the end of the file.
//!
//! ## The fallback
//! If `sendfile(2)` cannot be used — the file is not a regular file, or
//! the first call fails with `EINVAL`, `ENOSYS`, `EOPNOTSUPP`, `ESPIPE`,
//! `EBADF` or `EOVERFLOW` before anything was sent — the native path
//! reports [`Error::SendfileNotAvailable`]. With `fallback` the file is then
//! read in chunks on the executor (asyncio's `run_in_executor(None,
//! file.readinto, ...)`, so a slow file never blocks the loop) and each chunk
//! is sent with [`sock_sendall`](EventLoop::sock_sendall). Other errors of the first
//! call (a reset peer) are reported as they are: asyncio turns them into
//! `SendfileNotAvailableError` too, which hides the cause.
//!
//! [`EventLoop::sendfile`] does the same for a transport. A
//! [`SocketTransport`] stops reading, waits until its write buffer is
//! empty (so that bytes written before come first), then lends its socket
//! to the native path; `write` is refused meanwhile. Any other transport
//! (or a file `sendfile(2)` cannot send) gets the fallback: chunks go
//! through `transport.write`, and after a write that leaves more than the
//! high-water mark buffered the call waits until the buffer is at the
//! low-water mark before it goes on (or returns, after the last chunk); a
//! write that closed the transport fails the call. Unlike asyncio, which swaps in a
//! `_SendfileFallbackProtocol`, the transport's protocol stays in place and
//! sees the `pause_writing`/`resume_writing` calls of the transfer.
//!
//! # Invariants
//! - Whatever way a call ends (result, error, cancellation, or drop of the
//!   awaiting future), its writer is removed, and if anything was sent the
//!   file position is `offset + sent` (asyncio's
//!   `_sock_sendfile_update_filepos`); if nothing was sent it is left as it
//!   was. The returned count is exactly what reached the socket or the
//!   transport.
//! - A socket transport's fd is never used after it closes: the transport
//!   removes the native path's writer and wakes it before closing, and the
//!   native path checks before each `sendfile(2)` call.
//! - A transport paused for the transfer resumes reading afterwards if it
//!   was reading before, on every exit path.
//! - No `RefCell` borrow is held across an await or while a future is
//!   completed.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::futures::Future;
use crate::selector_events::SocketTransport;
use crate::transports::Transport;

/// asyncio's `SENDFILE_FALLBACK_READBUFFER_SIZE`: the fallback's chunk for
/// a socket.
const SOCK_FALLBACK_CHUNK: usize = 256 * 1024;

/// The chunk of asyncio's `_sendfile_fallback` for a transport.
const TRANSPORT_FALLBACK_CHUNK: usize = 16 * 1024;

/// Linux sends at most this many bytes per `sendfile(2)` call.
const MAX_SENDFILE_CHUNK: usize = 0x7fff_f000;

/// Errors of a first `sendfile(2)` call that mean "not for this file or
/// socket": the fallback can do it.
fn native_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EINVAL
                | libc::ENOSYS
                | libc::EOPNOTSUPP
                | libc::ESPIPE
                | libc::EBADF
                | libc::EOVERFLOW
        )
    )
}

fn not_available(why: &str) -> Error {
    Error::SendfileNotAvailable(why.into())
}

fn connection_closed() -> Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection was closed during sendfile",
    )
    .into()
}

/// asyncio's `_check_sendfile_params` (what the types do not check).
fn check_params(offset: u64, count: Option<usize>) -> Result<()> {
    if count == Some(0) {
        return Err(Error::invalid_argument(
            "count must be a positive integer (got 0): pass None to send up to the end of the file",
        ));
    }
    if offset > i64::MAX as u64 {
        return Err(Error::invalid_argument(format!(
            "offset {offset} is beyond the largest file offset ({}): pass an offset inside the file",
            i64::MAX
        )));
    }
    Ok(())
}

/// Sets the file position to `offset + sent` when dropped, if anything was
/// sent (asyncio's `finally: file.seek(offset + total_sent)`).
struct FilePos<'a> {
    file: &'a File,
    offset: u64,
    sent: usize,
}

impl Drop for FilePos<'_> {
    fn drop(&mut self) {
        if self.sent > 0 {
            // A pipe cannot seek (ESPIPE): there is no position to fix.
            let _ = { self.file }.seek(SeekFrom::Start(self.offset + self.sent as u64));
        }
    }
}

/// The chunks a fallback sends (asyncio's `_sock_sendfile_fallback` and
/// `_sendfile_fallback` loops): read `file` from `offset` in pieces of at
/// most `max_chunk`, until `count` bytes or the end of the file. The caller
/// adds what it sent to `pos.sent`, which positions the file when dropped.
struct FallbackChunks<'a> {
    pos: FilePos<'a>,
    reader: ChunkReader,
    count: Option<usize>,
    chunk: usize,
}

impl<'a> FallbackChunks<'a> {
    fn new(
        file: &'a File,
        offset: u64,
        count: Option<usize>,
        max_chunk: usize,
    ) -> Result<FallbackChunks<'a>> {
        let mode = read_mode(file, offset)?;
        let chunk = count.map_or(max_chunk, |c| c.min(max_chunk));
        let reader = ChunkReader::new(file, offset, mode, chunk)?;
        let pos = FilePos {
            file,
            offset,
            sent: 0,
        };
        Ok(FallbackChunks {
            pos,
            reader,
            count,
            chunk,
        })
    }

    /// The next chunk, or `None` once `count` bytes were sent or the file
    /// ended.
    async fn next(&mut self, lp: &EventLoop) -> Result<Option<Vec<u8>>> {
        let want = match self.count {
            Some(c) => (c - self.pos.sent).min(self.chunk),
            None => self.chunk,
        };
        if want == 0 {
            return Ok(None);
        }
        let data = self.reader.read(lp, self.pos.sent, want).await?;
        Ok((!data.is_empty()).then_some(data))
    }
}

/// Removes the native path's one-shot writer, unless the socket's
/// transport already did so before closing the fd (the number may belong
/// to another file by now).
struct RemoveWriter<'a> {
    lp: &'a EventLoop,
    fd: RawFd,
    lost: Option<&'a Future<()>>,
}

impl Drop for RemoveWriter<'_> {
    fn drop(&mut self) {
        if !self.lost.is_some_and(|l| l.done()) {
            let _ = self.lp.remove_writer(self.fd);
        }
    }
}

/// Cancels an executor read whose awaiter went away (a worker that has not
/// started it skips it).
struct CancelOnDrop<'a, T: 'static>(&'a Future<T>);

impl<T: 'static> Drop for CancelOnDrop<'_, T> {
    fn drop(&mut self) {
        if !self.0.done() {
            self.0.cancel();
        }
    }
}

/// Resumes reading on drop if the transport was reading (asyncio's
/// `if resume_reading: transp.resume_reading()` in a `finally`).
struct ResumeReading<'a> {
    transport: &'a dyn Transport,
    resume: bool,
}

impl<'a> ResumeReading<'a> {
    fn pause(transport: &'a dyn Transport) -> Self {
        let resume = transport.is_reading();
        transport.pause_reading();
        ResumeReading { transport, resume }
    }
}

impl Drop for ResumeReading<'_> {
    fn drop(&mut self) {
        if self.resume {
            self.transport.resume_reading();
        }
    }
}

/// Forgets this call's drain waiter on drop, however the wait ends (and
/// only it: a waiter of another sendfile on the transport stays).
struct ClearDrain<'a>(&'a SocketTransport, Future<()>);

impl Drop for ClearDrain<'_> {
    fn drop(&mut self) {
        self.0.clear_drain_waiter(&self.1);
    }
}

/// Ends the transport's native sendfile on drop.
struct EndNative<'a>(&'a SocketTransport);

impl Drop for EndNative<'_> {
    fn drop(&mut self) {
        self.0.end_native_sendfile();
    }
}

/// How the fallback reads the file: at explicit offsets (a regular file or
/// a block device), or from the current position (a pipe, a FIFO, a
/// character device), which then must not be skipped into.
#[derive(Clone, Copy)]
enum ReadMode {
    At,
    Stream,
}

impl EventLoop {
    /// asyncio's `loop.sock_sendfile(sock, file, offset, count, fallback=)`:
    /// sends `file` from `offset` to the connected, non-blocking stream
    /// socket `sock`, up to `count` bytes (`None`: to the end of the file),
    /// and returns how many bytes were sent.
    ///
    /// It uses `sendfile(2)` (see the [module docs](crate::sendfile)); if
    /// that is not possible for this file and `fallback` is true, it reads
    /// the file in chunks and sends them; if `fallback` is false, it fails
    /// with [`Error::SendfileNotAvailable`]. Afterwards the file position
    /// is `offset` + the bytes sent (unchanged if none were), also after an
    /// error or a cancellation. A pipe as `file` needs `offset` 0.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// tulip::run(async {
    ///     let lp = tulip::get_running_loop()?;
    ///     let path = std::env::temp_dir().join(format!("tulip-doc-sendfile-{}", std::process::id()));
    ///     std::fs::write(&path, b"hello, sendfile")?;
    ///     let file = std::fs::File::open(&path)?;
    ///     let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
    ///     a.set_nonblocking(true)?;
    ///     let sent = lp.sock_sendfile(&a, &file, 7, None, false).await?;
    ///     assert_eq!(sent, 8);
    ///     drop(a);
    ///     let mut got = Vec::new();
    ///     b.read_to_end(&mut got)?;
    ///     assert_eq!(got, b"sendfile");
    ///     std::fs::remove_file(&path)?;
    ///     Ok(())
    /// }).unwrap();
    /// ```
    pub async fn sock_sendfile<S>(
        &self,
        sock: &S,
        file: &File,
        offset: u64,
        count: Option<usize>,
        fallback: bool,
    ) -> Result<usize>
    where
        S: AsRawFd,
        for<'a> &'a S: Write,
    {
        self.check_nonblocking(sock.as_raw_fd())?;
        check_params(offset, count)?;
        match self
            .sendfile_native(sock.as_raw_fd(), file, offset, count, None)
            .await
        {
            Err(Error::SendfileNotAvailable(_)) if fallback => {}
            other => return other,
        }
        let mut chunks = FallbackChunks::new(file, offset, count, SOCK_FALLBACK_CHUNK)?;
        while let Some(data) = chunks.next(self).await? {
            self.sock_sendall(sock, &data).await?;
            chunks.pos.sent += data.len();
        }
        Ok(chunks.pos.sent)
    }

    /// asyncio's `loop.sendfile(transport, file, offset, count, fallback=)`:
    /// sends `file` from `offset` (up to `count` bytes, `None`: to the end)
    /// through `transport`, after whatever it already buffered, and returns
    /// how many bytes were handed on.
    ///
    /// A [`SocketTransport`] stops reading, waits for its write buffer to
    /// drain, then uses `sendfile(2)` on its socket (its `write` fails
    /// meanwhile), and resumes reading. Other transports, and files that
    /// `sendfile(2)` cannot send, get the fallback if `fallback` is true:
    /// chunks through `transport.write`, respecting its high-water mark;
    /// otherwise [`Error::SendfileNotAvailable`]. A closing transport is an
    /// [`Error::Runtime`]; a connection closed during the transfer an
    /// [`Error::Io`]. The file position ends at `offset` + the bytes sent,
    /// as with [`sock_sendfile`](EventLoop::sock_sendfile).
    ///
    /// ```no_run
    /// # async fn f(lp: tulip::EventLoop, t: std::rc::Rc<tulip::SocketTransport>) -> tulip::Result<()> {
    /// let file = std::fs::File::open("index.html")?;
    /// let sent = lp.sendfile(&*t, &file, 0, None, true).await?;
    /// # let _ = sent; Ok(()) }
    /// ```
    pub async fn sendfile(
        &self,
        transport: &dyn Transport,
        file: &File,
        offset: u64,
        count: Option<usize>,
        fallback: bool,
    ) -> Result<usize> {
        if transport.is_closing() {
            return Err(Error::runtime(
                "transport is closing: sendfile needs an open transport",
            ));
        }
        check_params(offset, count)?;
        if let Some(st) = transport.as_socket_transport() {
            match self
                .transport_sendfile_native(transport, st, file, offset, count)
                .await
            {
                Err(Error::SendfileNotAvailable(_)) if fallback => {}
                other => return other,
            }
        } else if !fallback {
            return Err(Error::SendfileNotAvailable(
                format!("native sendfile needs a socket transport, and this one ({transport:p}) is not one").into(),
            ));
        }
        self.transport_sendfile_fallback(transport, file, offset, count)
            .await
    }

    /// asyncio's `_sendfile_native` (selector_events.py).
    async fn transport_sendfile_native(
        &self,
        transport: &dyn Transport,
        st: &SocketTransport,
        file: &File,
        offset: u64,
        count: Option<usize>,
    ) -> Result<usize> {
        let lost = st.begin_native_sendfile()?;
        let _end = EndNative(st);
        let _resume = ResumeReading::pause(transport);
        // asyncio's `await transp._make_empty_waiter()`: what was written
        // before goes first.
        let empty = st.wait_buffer_at_most(0)?;
        let clear = ClearDrain(st, empty.clone());
        empty.await?;
        drop(clear);
        if st.is_lost() {
            return Err(connection_closed());
        }
        self.sendfile_native(st.fd(), file, offset, count, Some(&lost))
            .await
    }

    /// asyncio's `_sendfile_fallback`.
    async fn transport_sendfile_fallback(
        &self,
        transport: &dyn Transport,
        file: &File,
        offset: u64,
        count: Option<usize>,
    ) -> Result<usize> {
        let _resume = ResumeReading::pause(transport);
        let mut chunks = FallbackChunks::new(file, offset, count, TRANSPORT_FALLBACK_CHUNK)?;
        while let Some(data) = chunks.next(self).await? {
            transport.write(&data)?;
            chunks.pos.sent += data.len();
            // asyncio's `transp.write(...); await proto.drain()`: after
            // each write, the last one too, so a write that closed the
            // transport (a reset peer) fails the call instead of passing
            // for sent, and the call returns with the buffer drained.
            self.drain_for_sendfile(transport).await?;
        }
        Ok(chunks.pos.sent)
    }

    /// `_SendfileFallbackProtocol.drain`: fails if the transport is
    /// closing; waits while it has more than its high-water mark buffered,
    /// until it is down to the low-water mark.
    async fn drain_for_sendfile(&self, transport: &dyn Transport) -> Result<()> {
        if transport.is_closing() {
            return Err(connection_closed());
        }
        let (low, high) = transport.get_write_buffer_limits();
        if transport.get_write_buffer_size() <= high {
            return Ok(());
        }
        if let Some(st) = transport.as_socket_transport() {
            let waiter = st.wait_buffer_at_most(low)?;
            let _clear = ClearDrain(st, waiter.clone());
            waiter.await?;
        } else {
            // No drain notification but the protocol's, which stays the
            // user's: poll the buffer, backing off up to 50 ms.
            let mut delay = 0.001;
            while transport.get_write_buffer_size() > low && !transport.is_closing() {
                crate::sleep(delay).await?;
                delay = (delay * 2.0_f64).min(0.05);
            }
        }
        if transport.is_closing() {
            return Err(connection_closed());
        }
        Ok(())
    }

    /// asyncio's `_sock_sendfile_native`: `sendfile(2)` from `file` at
    /// `offset` to the socket `fd`, waiting for writability in between.
    /// [`Error::SendfileNotAvailable`] if it cannot be used for this file.
    /// `lost` (a transport's socket) completes when the fd is about to be
    /// closed.
    async fn sendfile_native(
        &self,
        fd: RawFd,
        file: &File,
        offset: u64,
        count: Option<usize>,
        lost: Option<&Future<()>>,
    ) -> Result<usize> {
        let meta = file
            .metadata()
            .map_err(|e| not_available(&format!("fstat of the file failed ({e})")))?;
        if !meta.is_file() {
            return Err(not_available(
                "the file is not a regular file (a pipe, a socket or a device)",
            ));
        }
        let blocksize = count.unwrap_or_else(|| usize::try_from(meta.len()).unwrap_or(usize::MAX));
        if blocksize == 0 {
            return Ok(0); // an empty file
        }
        let mut pos = FilePos {
            file,
            offset,
            sent: 0,
        };
        loop {
            let want = match count {
                Some(c) => c - pos.sent,
                None => blocksize,
            }
            .min(MAX_SENDFILE_CHUNK);
            if want == 0 {
                break;
            }
            if lost.is_some_and(|l| l.done()) {
                return Err(connection_closed());
            }
            // `check_params` and the kernel's own limit keep this in range.
            let mut off = (offset + pos.sent as u64) as libc::off_t;
            match crate::sys::sendfile(fd, file.as_raw_fd(), &mut off, want) {
                Ok(0) => break, // the end of the file
                Ok(n) => pos.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if pos.sent == 0 && native_unsupported(&e) => {
                    return Err(not_available(&format!("sendfile(2) failed: {e}")));
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        format!(
                            "cannot sendfile on fd {fd}: socket is not connected; connect it first"
                        ),
                    )
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
            self.wait_writable_unless_lost(fd, lost).await?;
        }
        Ok(pos.sent)
    }

    /// A one-shot writer on `fd`, also woken if `lost` completes.
    async fn wait_writable_unless_lost(&self, fd: RawFd, lost: Option<&Future<()>>) -> Result<()> {
        let Some(lost) = lost else {
            return self.wait_writable(fd).await;
        };
        if lost.done() {
            return Err(connection_closed());
        }
        let woke: Future<()> = self.create_future();
        let setter = woke.clone();
        self.add_writer(fd, move || {
            if !setter.done() {
                let _ = setter.set_result(());
            }
        })?;
        let _guard = RemoveWriter {
            lp: self,
            fd,
            lost: Some(lost),
        };
        let setter = woke.clone();
        let id = lost.add_done_callback(move |_| {
            if !setter.done() {
                let _ = setter.set_result(());
            }
        });
        let res = woke.await;
        lost.remove_done_callback(id);
        res?;
        if lost.done() {
            return Err(connection_closed());
        }
        Ok(())
    }
}

/// How to read `file` in the fallback; a stream cannot start at `offset`.
fn read_mode(file: &File, offset: u64) -> Result<ReadMode> {
    let ft = file.metadata()?.file_type();
    if ft.is_file() || ft.is_block_device() {
        return Ok(ReadMode::At);
    }
    if offset != 0 {
        return Err(Error::invalid_argument(format!(
            "offset {offset} given for a file that cannot seek (a pipe or a device): pass offset 0"
        )));
    }
    Ok(ReadMode::Stream)
}

/// The fallback's reads, on the executor (asyncio's
/// `run_in_executor(None, file.readinto, view)`), through a duplicate of
/// the file's fd that travels to the worker and back.
struct ChunkReader {
    /// `None` while a worker has it (or after a read was abandoned).
    dup: Option<File>,
    fd: RawFd,
    offset: u64,
    mode: ReadMode,
    buf: Vec<u8>,
}

impl ChunkReader {
    fn new(file: &File, offset: u64, mode: ReadMode, chunk: usize) -> Result<ChunkReader> {
        let dup = File::from(crate::sys::dup(file.as_raw_fd())?);
        Ok(ChunkReader {
            dup: Some(dup),
            fd: file.as_raw_fd(),
            offset,
            mode,
            buf: Vec::with_capacity(chunk),
        })
    }

    /// Reads up to `want` bytes, `done` bytes after the start. Empty at EOF.
    async fn read(&mut self, lp: &EventLoop, done: usize, want: usize) -> Result<Vec<u8>> {
        loop {
            let Some(file) = self.dup.take() else {
                return Err(Error::runtime(
                    "the file of an abandoned sendfile read is gone: start a new sendfile",
                ));
            };
            let mut buf = std::mem::take(&mut self.buf);
            buf.resize(want, 0);
            let at = self.offset + done as u64;
            let mode = self.mode;
            let fut = lp.run_in_executor(None, move || {
                let res = match mode {
                    ReadMode::At => file.read_at(&mut buf, at),
                    ReadMode::Stream => std::io::Read::read(&mut &file, &mut buf),
                };
                (file, buf, res)
            })?;
            let cancel = CancelOnDrop(&fut);
            let (file, mut buf, res) = fut.take_when_done().await?;
            drop(cancel);
            self.dup = Some(file);
            match res {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                // A non-blocking pipe with nothing in it yet.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.buf = buf;
                    lp.wait_readable(self.fd).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf = buf,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
