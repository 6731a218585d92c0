//! asyncio's `sock_sendfile` and `sendfile`: the native `sendfile(2)` path,
//! the fallback, backpressure, cancellation, resets, and transports. Real
//! files in the temp dir, real sockets on 127.0.0.1.

mod common;

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;

use common::{linger_zero, poll_io, run_bounded, settle};
use tulip::{
    BaseTransport, Error, EventLoop, ExtraInfo, Protocol, ReadTransport, Transport, WriteTransport,
};

/// A file in the temp dir with known contents, removed on drop.
struct TempFile {
    path: PathBuf,
    data: Vec<u8>,
}

impl TempFile {
    fn new(name: &str, len: usize) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "tulip-sendfile-{}-{name}-{}",
            std::process::id(),
            len
        ));
        let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15 ^ len as u64);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        std::fs::write(&path, &data).expect("write temp file");
        TempFile { path, data }
    }

    fn open(&self) -> File {
        File::open(&self.path).expect("open temp file")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn position(file: &File) -> u64 {
    { file }.stream_position().expect("stream_position")
}

/// Sets a socket option of type int.
fn set_int_opt(fd: i32, opt: i32, value: i32) {
    // SAFETY: fd is an open socket; the option value is a valid int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt");
}

/// Small kernel buffers, so that a few MB fill them for sure.
fn small_buffers(sender: i32, receiver: i32) {
    set_int_opt(sender, libc::SO_SNDBUF, 32 * 1024);
    set_int_opt(receiver, libc::SO_RCVBUF, 32 * 1024);
}

/// A connected pair of non-blocking TCP sockets on 127.0.0.1:
/// (sender, receiver).
async fn tcp_pair(lp: &EventLoop) -> tulip::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let a = lp.sock_connect(addr).await?;
    let (b, _) = lp.sock_accept(&listener).await?;
    Ok((a, b))
}

/// Reads from `sock` until EOF.
async fn read_to_eof(lp: &EventLoop, sock: &TcpStream) -> tulip::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let chunk = lp.sock_recv(sock, 64 * 1024).await?;
        if chunk.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
    }
}

/// Sends with `sock_sendfile` while the receiver reads; returns (sent,
/// received). The sender is closed after the send, so the reader sees EOF.
async fn send_and_receive(
    lp: &EventLoop,
    file: Rc<File>,
    offset: u64,
    count: Option<usize>,
) -> tulip::Result<(usize, Vec<u8>)> {
    let (a, b) = tcp_pair(lp).await?;
    let lp2 = lp.clone();
    let reader = tulip::create_task(async move { read_to_eof(&lp2, &b).await })?;
    let sent = lp.sock_sendfile(&a, &file, offset, count, false).await?;
    drop(a);
    let got = tulip::wait_for(reader, 5.0).await?;
    Ok((sent, got))
}

/// Sends `file[offset..]` (at most `count` bytes) of a `len`-byte file and
/// checks that exactly `file[expect]` arrived and that the file position
/// ends after it.
fn assert_sends(name: &str, len: usize, offset: u64, count: Option<usize>, expect: Range<usize>) {
    let tf = TempFile::new(name, len);
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        let (sent, got) = send_and_receive(&lp, file.clone(), offset, count).await?;
        assert_eq!(sent, expect.len());
        assert!(
            got == tf.data[expect.clone()],
            "the received bytes are the file's"
        );
        assert_eq!(position(&file), expect.end as u64);
        Ok(())
    });
}

#[test]
fn sock_sendfile_whole_file() {
    let len = 300 * 1024 + 17;
    assert_sends("whole", len, 0, None, 0..len);
}

#[test]
fn sock_sendfile_offset_and_count() {
    assert_sends("offset", 64 * 1024, 1000, Some(5000), 1000..6000);
}

#[test]
fn sock_sendfile_count_beyond_eof_stops_at_eof() {
    assert_sends("beyond", 10_000, 9_900, Some(50_000), 9_900..10_000);
}

#[test]
fn sock_sendfile_sets_the_file_position_only_if_something_was_sent() {
    let tf = TempFile::new("position", 1000);
    let empty = TempFile::new("position-empty", 0);
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        { &*file }.seek(SeekFrom::Start(3))?;
        let (sent, got) = send_and_receive(&lp, file.clone(), 10, Some(20)).await?;
        assert_eq!((sent, got.len()), (20, 20));
        assert_eq!(position(&file), 30, "offset + sent, whatever it was before");
        // Nothing to send: the position is left alone, as asyncio does.
        let file = Rc::new(empty.open());
        { &*file }.seek(SeekFrom::Start(5))?;
        let (sent, got) = send_and_receive(&lp, file.clone(), 0, None).await?;
        assert_eq!((sent, got.len()), (0, 0));
        assert_eq!(position(&file), 5);
        // A count of 0 is refused, as asyncio's ValueError.
        let (a, _b) = tcp_pair(&lp).await?;
        let err = lp
            .sock_sendfile(&a, &file, 0, Some(0), true)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        Ok(())
    });
}

#[test]
fn sock_sendfile_waits_for_a_slow_reader() {
    let tf = TempFile::new("slow", 4 << 20);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        // The reader has read nothing; 4 MB cannot fit in the buffers, so
        // after the loop has polled several times the send must still be
        // pending, waiting for writability (EAGAIN) with a writer.
        let Blocked {
            file,
            a: _a,
            b,
            fd,
            send,
        } = blocked_sendfile(&lp, &tf).await?;
        // Now read everything.
        let mut got = Vec::new();
        while got.len() < tf.data.len() {
            let chunk = tulip::wait_for(
                {
                    let (lp, b) = (lp.clone(), b.try_clone()?);
                    async move { lp.sock_recv(&b, 64 * 1024).await }
                },
                5.0,
            )
            .await?;
            assert!(!chunk.is_empty(), "EOF before the whole file");
            got.extend_from_slice(&chunk);
        }
        let sent = tulip::wait_for(send, 5.0).await?;
        assert_eq!(sent, tf.data.len());
        assert!(got == tf.data);
        assert!(!lp.has_writer(fd), "nothing left registered");
        assert_eq!(position(&file), tf.data.len() as u64);
        Ok(())
    });
}

/// A pipe whose read end is a `File`, with `data` written and the write
/// end closed.
fn pipe_with(data: &[u8]) -> File {
    let (r, mut w) = std::io::pipe().expect("pipe");
    assert!(data.len() <= 60_000, "must fit in the pipe buffer");
    w.write_all(data).expect("write pipe");
    drop(w);
    File::from(OwnedFd::from(r))
}

#[test]
fn sock_sendfile_pipe_with_fallback_reads_and_sends() {
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let file = Rc::new(pipe_with(&data));
        let (a, b) = tcp_pair(&lp).await?;
        let lp2 = lp.clone();
        let reader = tulip::create_task(async move { read_to_eof(&lp2, &b).await })?;
        let sent = lp.sock_sendfile(&a, &file, 0, None, true).await?;
        drop(a);
        let got = tulip::wait_for(reader, 5.0).await?;
        assert_eq!(sent, data.len());
        assert!(got == data);
        // A pipe cannot skip to an offset.
        let (a, _b) = tcp_pair(&lp).await?;
        let err = lp
            .sock_sendfile(&a, &file, 5, None, true)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        Ok(())
    });
}

#[test]
fn sock_sendfile_pipe_without_fallback_is_not_available() {
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = pipe_with(b"data");
        let (a, _b) = tcp_pair(&lp).await?;
        let err = lp
            .sock_sendfile(&a, &file, 0, None, false)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SendfileNotAvailable(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(
            msg.contains("fallback"),
            "the message says what to do: {msg}"
        );
        assert!(!lp.has_writer(a.as_raw_fd()));
        // Nothing was read from the pipe.
        let mut rest = Vec::new();
        { &file }.read_to_end(&mut rest)?;
        assert_eq!(rest, b"data");
        Ok(())
    });
}

/// A `sock_sendfile` of a 4 MiB file blocked mid-transfer: small kernel
/// buffers, nobody reading, and the send still pending with its writer
/// registered after the loop has polled for I/O.
struct Blocked {
    file: Rc<File>,
    a: Rc<TcpStream>,
    b: TcpStream,
    fd: i32,
    send: tulip::Task<usize>,
}

async fn blocked_sendfile(lp: &EventLoop, tf: &TempFile) -> tulip::Result<Blocked> {
    let file = Rc::new(tf.open());
    let (a, b) = tcp_pair(lp).await?;
    small_buffers(a.as_raw_fd(), b.as_raw_fd());
    let a = Rc::new(a);
    let fd = a.as_raw_fd();
    let (lp2, a2, f2) = (lp.clone(), a.clone(), file.clone());
    let send =
        tulip::create_task(async move { lp2.sock_sendfile(&*a2, &f2, 0, None, false).await })?;
    poll_io().await?;
    assert!(!send.done() && lp.has_writer(fd), "blocked mid-transfer");
    Ok(Blocked {
        file,
        a,
        b,
        fd,
        send,
    })
}

#[test]
fn sock_sendfile_cancelled_mid_transfer_leaves_a_consistent_offset() {
    let tf = TempFile::new("cancel", 4 << 20);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let Blocked {
            file,
            a,
            b,
            fd,
            send,
        } = blocked_sendfile(&lp, &tf).await?;
        assert!(send.cancel());
        let res = tulip::wait_for(send, 5.0).await;
        assert!(matches!(res, Err(Error::Cancelled(_))), "{res:?}");
        assert!(!lp.has_writer(fd), "the writer is removed");
        let pos = position(&file);
        assert!(pos > 0 && pos < tf.data.len() as u64, "mid-file: {pos}");
        // The position is exactly what reached the socket.
        drop(a);
        let got = tulip::wait_for(
            {
                let lp = lp.clone();
                async move { read_to_eof(&lp, &b).await }
            },
            5.0,
        )
        .await?;
        assert_eq!(got.len() as u64, pos);
        assert!(got == tf.data[..got.len()]);
        Ok(())
    });
}

#[test]
fn sock_sendfile_peer_reset_mid_transfer_is_an_error() {
    let tf = TempFile::new("reset", 4 << 20);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let Blocked {
            file,
            a: _a,
            b,
            fd,
            send,
        } = blocked_sendfile(&lp, &tf).await?;
        linger_zero(b.as_raw_fd());
        drop(b);
        let err = tulip::wait_for(send, 5.0).await.unwrap_err();
        let kind = err.io_kind();
        assert!(
            matches!(
                kind,
                Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            ),
            "{err:?}"
        );
        assert!(!lp.has_writer(fd));
        let pos = position(&file);
        assert!(pos > 0 && pos < tf.data.len() as u64, "{pos}");
        Ok(())
    });
}

// ----- loop.sendfile on transports -----

/// Keeps its transport; records data and connection_lost.
#[derive(Default)]
struct Keeper {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    lost: Cell<bool>,
}

impl Protocol for Keeper {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn data_received(&self, _data: &[u8]) {}
    fn connection_lost(&self, _exc: Option<Error>) {
        self.lost.set(true);
    }
}

/// A client transport connected to a raw peer socket: (transport, peer).
async fn transport_pair(
    lp: &EventLoop,
) -> tulip::Result<(Rc<tulip::SocketTransport>, Rc<Keeper>, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (t, p) = lp
        .create_connection(|| Rc::new(Keeper::default()), "127.0.0.1", port)
        .await?;
    let (peer, _) = lp.sock_accept(&listener).await?;
    Ok((t, p, peer))
}

#[test]
fn sendfile_on_a_socket_transport_sends_buffered_bytes_first() {
    let tf = TempFile::new("transport-order", 1 << 20);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        let (t, _p, peer) = transport_pair(&lp).await?;
        small_buffers(t.fd(), peer.as_raw_fd());
        // 1 MB waits in the transport's buffer: the peer reads nothing yet.
        let head = vec![b'H'; 1 << 20];
        t.write(&head)?;
        assert!(t.get_write_buffer_size() > 0, "data is buffered");
        let (lp2, t2, f2) = (lp.clone(), t.clone(), file.clone());
        let send =
            tulip::create_task(async move { lp2.sendfile(&*t2, &f2, 0, None, false).await })?;
        settle().await?;
        assert!(!send.done(), "sendfile waits for the buffer to drain");
        assert!(!t.is_reading(), "reading is paused during sendfile");
        let err = t.write(b"late").unwrap_err();
        assert!(err.to_string().contains("sendfile is in progress"), "{err}");
        // asyncio's `unable to writelines; sendfile is in progress`.
        let err = t.writelines(&[b"la", b"te"]).unwrap_err();
        assert!(
            err.to_string().starts_with("unable to writelines: "),
            "{err}"
        );
        // Read everything: the buffered bytes, then the file.
        let mut got = Vec::new();
        let total = head.len() + tf.data.len();
        while got.len() < total {
            let chunk = tulip::wait_for(
                {
                    let (lp, b) = (lp.clone(), peer.try_clone()?);
                    async move { lp.sock_recv(&b, 64 * 1024).await }
                },
                5.0,
            )
            .await?;
            assert!(!chunk.is_empty(), "EOF too early");
            got.extend_from_slice(&chunk);
        }
        let sent = tulip::wait_for(send, 5.0).await?;
        assert_eq!(sent, tf.data.len());
        assert!(got[..head.len()] == head[..], "buffered bytes first");
        assert!(got[head.len()..] == tf.data[..], "then the file");
        assert!(t.is_reading(), "reading resumes");
        assert!(!lp.has_writer(t.fd()));
        // The fd was lent to the sendfile (asyncio takes the transport out
        // of `_transports` meanwhile): it is the transport's again.
        let err = lp.add_reader(t.fd(), || {}).unwrap_err();
        assert!(err.to_string().contains("is used by transport"), "{err}");
        assert_eq!(position(&file), tf.data.len() as u64);
        // The transport writes again.
        t.write(b"after")?;
        let tail = lp.sock_recv(&peer, 16).await?;
        assert_eq!(tail, b"after");
        Ok(())
    });
}

#[test]
fn sendfile_on_a_closing_transport_is_an_error() {
    let tf = TempFile::new("transport-closing", 100);
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = tf.open();
        let (t, _p, _peer) = transport_pair(&lp).await?;
        t.close();
        let err = lp.sendfile(&*t, &file, 0, None, true).await.unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert!(err.to_string().contains("closing"), "{err}");
        assert_eq!(position(&file), 0);
        Ok(())
    });
}

#[test]
fn sendfile_transport_aborted_mid_transfer_is_an_error_not_a_hang() {
    let tf = TempFile::new("transport-abort", 4 << 20);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        let (t, p, peer) = transport_pair(&lp).await?;
        small_buffers(t.fd(), peer.as_raw_fd());
        let fd = t.fd();
        let (lp2, t2, f2) = (lp.clone(), t.clone(), file.clone());
        let send =
            tulip::create_task(async move { lp2.sendfile(&*t2, &f2, 0, None, false).await })?;
        settle().await?;
        settle().await?;
        assert!(!send.done() && lp.has_writer(fd), "blocked mid-transfer");
        t.abort();
        let err = tulip::wait_for(send, 5.0).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::ConnectionAborted),
            "{err:?}"
        );
        settle().await?;
        assert!(p.lost.get(), "connection_lost ran");
        assert!(
            !lp.has_writer(fd) && !lp.has_reader(fd),
            "nothing registered"
        );
        let pos = position(&file);
        assert!(pos > 0 && pos < tf.data.len() as u64, "{pos}");
        drop(peer);
        Ok(())
    });
}

#[test]
fn sendfile_transport_peer_reset_mid_transfer_is_an_error() {
    let tf = TempFile::new("transport-reset", 4 << 20);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        let (t, _p, peer) = transport_pair(&lp).await?;
        small_buffers(t.fd(), peer.as_raw_fd());
        let (lp2, t2, f2) = (lp.clone(), t.clone(), file.clone());
        let send = tulip::create_task(async move { lp2.sendfile(&*t2, &f2, 0, None, true).await })?;
        settle().await?;
        settle().await?;
        assert!(!send.done(), "blocked mid-transfer");
        linger_zero(peer.as_raw_fd());
        drop(peer);
        let err = tulip::wait_for(send, 5.0).await.unwrap_err();
        assert!(
            matches!(
                err.io_kind(),
                Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            ),
            "{err:?}"
        );
        Ok(())
    });
}

/// A transport that is not a socket: it keeps what is written, and
/// pretends to buffer it until `flush`.
#[derive(Default)]
struct MemTransport {
    written: RefCell<Vec<u8>>,
    buffered: Cell<usize>,
    reading: Cell<bool>,
    closing: Cell<bool>,
    writes: Cell<usize>,
}

impl BaseTransport for MemTransport {
    fn get_extra_info(&self, _name: &str) -> Option<ExtraInfo> {
        None
    }
    fn is_closing(&self) -> bool {
        self.closing.get()
    }
    fn close(&self) {
        self.closing.set(true);
    }
}

impl ReadTransport for MemTransport {
    fn is_reading(&self) -> bool {
        self.reading.get()
    }
    fn pause_reading(&self) {
        self.reading.set(false);
    }
    fn resume_reading(&self) {
        self.reading.set(true);
    }
}

impl WriteTransport for MemTransport {
    fn set_write_buffer_limits(
        &self,
        _high: Option<usize>,
        _low: Option<usize>,
    ) -> tulip::Result<()> {
        Ok(())
    }
    fn get_write_buffer_limits(&self) -> (usize, usize) {
        (1000, 4000)
    }
    fn get_write_buffer_size(&self) -> usize {
        self.buffered.get()
    }
    fn write(&self, data: &[u8]) -> tulip::Result<()> {
        assert!(
            self.buffered.get() <= 4000,
            "wrote above the high-water mark"
        );
        self.written.borrow_mut().extend_from_slice(data);
        self.buffered.set(self.buffered.get() + data.len());
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }
    fn write_eof(&self) -> tulip::Result<()> {
        Ok(())
    }
    fn can_write_eof(&self) -> bool {
        false
    }
    fn abort(&self) {
        self.closing.set(true);
    }
}

impl Transport for MemTransport {}

#[test]
fn sendfile_on_another_transport_falls_back_to_writes() {
    let tf = TempFile::new("mem-transport", 100_000);
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        let t = Rc::new(MemTransport::default());
        t.reading.set(true);
        // Without fallback: not available.
        let err = lp.sendfile(&*t, &file, 0, None, false).await.unwrap_err();
        assert!(matches!(err, Error::SendfileNotAvailable(_)), "{err:?}");
        assert!(t.written.borrow().is_empty());
        assert!(t.is_reading());
        // With fallback: writes, waiting for the buffer to drain below the
        // high-water mark (a "peer" task drains it).
        let (lp2, t2, f2) = (lp.clone(), t.clone(), file.clone());
        let send =
            tulip::create_task(
                async move { lp2.sendfile(&*t2, &f2, 10, Some(90_000), true).await },
            )?;
        settle().await?;
        assert!(!send.done(), "paused above the high-water mark");
        assert!(!t.is_reading(), "reading paused during the transfer");
        let t3 = t.clone();
        let drainer = tulip::create_task(async move {
            while !t3.reading.get() {
                t3.buffered.set(0);
                tulip::sleep(0.001).await?;
            }
            Ok(())
        })?;
        let sent = tulip::wait_for(send, 5.0).await?;
        tulip::wait_for(drainer, 5.0).await?;
        assert_eq!(sent, 90_000);
        assert!(t.written.borrow()[..] == tf.data[10..90_010]);
        assert!(t.writes.get() > 1, "in chunks");
        assert!(t.is_reading(), "reading resumed");
        assert_eq!(position(&file), 90_010);
        // Closing meanwhile is an error.
        t.close();
        let err = lp.sendfile(&*t, &file, 0, None, true).await.unwrap_err();
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        Ok(())
    });
}

/// Fills the kernel's send buffer of the socket `fd` (bypassing any
/// transport) until `EAGAIN`; returns how many bytes it took.
fn fill_socket(fd: i32) -> usize {
    let chunk = [b'P'; 16 * 1024];
    let mut total = 0;
    loop {
        // SAFETY: fd is an open socket; `chunk` is valid for its length.
        let n = unsafe {
            libc::send(
                fd,
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
            return total;
        }
        total += n as usize;
    }
}

#[test]
fn sendfile_refused_while_another_waits_for_the_drain_leaves_it_running() {
    let tf = TempFile::new("second-sendfile", 1000);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        // One worker: the fallback's reads and the barrier below run in order.
        lp.set_default_executor(tulip::ThreadPool::new(1)?)?;
        let (t, _p, peer) = transport_pair(&lp).await?;
        small_buffers(t.fd(), peer.as_raw_fd());
        let prefilled = fill_socket(t.fd());
        t.set_write_buffer_limits(Some(1), Some(0))?;
        // A: a pipe, so the fallback: the first 16 KiB chunk is written
        // (and buffered: the socket is full), the next waits for the drain.
        let data: Vec<u8> = (0..48 * 1024u32).map(|i| (i % 251) as u8).collect();
        let pipe = Rc::new(pipe_with(&data));
        let (lp2, t2, p2) = (lp.clone(), t.clone(), pipe.clone());
        let a = tulip::create_task(async move { lp2.sendfile(&*t2, &p2, 0, None, true).await })?;
        for _ in 0..5000 {
            if t.get_write_buffer_size() > 1 || a.done() {
                break;
            }
            tulip::sleep(0.001).await?;
        }
        assert!(t.get_write_buffer_size() > 1, "the first chunk is buffered");
        // The second chunk's read was submitted before this no-op, so A has
        // its chunk and waits for the drain once the no-op is back.
        lp.run_in_executor(None, || ())?.await?;
        settle().await?;
        assert!(!a.done(), "A waits for the buffer to drain");
        // B is refused: a sendfile is in progress.
        let file = tf.open();
        let err = lp.sendfile(&*t, &file, 0, None, false).await.unwrap_err();
        assert!(err.to_string().contains("already in progress"), "{err}");
        // The peer reads everything: A goes on and finishes.
        let total = prefilled + data.len();
        let mut got = Vec::new();
        while got.len() < total {
            let chunk = tulip::wait_for(
                {
                    let (lp, b) = (lp.clone(), peer.try_clone()?);
                    async move { lp.sock_recv(&b, 64 * 1024).await }
                },
                5.0,
            )
            .await?;
            assert!(!chunk.is_empty(), "EOF too early");
            got.extend_from_slice(&chunk);
        }
        assert!(got[prefilled..] == data[..], "A's bytes arrive");
        let sent = tulip::wait_for(a, 5.0).await?;
        assert_eq!(sent, data.len());
        assert!(t.is_reading(), "reading resumes");
        t.write(b"after")?;
        Ok(())
    });
}

/// At its first `resume_writing`, writes `refill` (more than the socket
/// takes at once): the producer that writes again when resumed.
#[derive(Default)]
struct RefillOnResume {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    refill: Vec<u8>,
    resumed: Cell<bool>,
}

impl Protocol for RefillOnResume {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn connection_lost(&self, _exc: Option<Error>) {
        drop(self.transport.borrow_mut().take());
    }
    fn resume_writing(&self) {
        if self.resumed.replace(true) {
            return;
        }
        let t = self.transport.borrow().clone();
        if let Some(t) = t {
            t.write(&self.refill).expect("write from resume_writing");
        }
    }
}

#[test]
fn sendfile_after_a_write_from_resume_writing_sends_it_first() {
    let tf = TempFile::new("refill", 256 * 1024);
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let file = Rc::new(tf.open());
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let refill = vec![b'R'; 1 << 20];
        let (t, p) = lp
            .create_connection(
                || {
                    Rc::new(RefillOnResume {
                        refill: refill.clone(),
                        ..Default::default()
                    })
                },
                "127.0.0.1",
                port,
            )
            .await?;
        let (peer, _) = lp.sock_accept(&listener).await?;
        small_buffers(t.fd(), peer.as_raw_fd());
        // Above the high-water mark: pause_writing.
        let head = vec![b'H'; 1 << 20];
        t.write(&head)?;
        let lp2 = lp.clone();
        let reader = tulip::create_task(async move { read_to_eof(&lp2, &peer).await })?;
        // The buffer drains, resume_writing writes the refill (most of it
        // buffered again), and the transport must go on flushing it.
        for _ in 0..5000 {
            if p.resumed.get() {
                break;
            }
            tulip::sleep(0.001).await?;
        }
        assert!(p.resumed.get(), "resume_writing ran");
        // sendfile waits for the refill to drain, then sends the file.
        let (lp2, t2, f2) = (lp.clone(), t.clone(), file.clone());
        let send =
            tulip::create_task(async move { lp2.sendfile(&*t2, &f2, 0, None, false).await })?;
        let sent = tulip::wait_for(send, 5.0).await?;
        assert_eq!(sent, tf.data.len());
        t.close();
        let got = tulip::wait_for(reader, 5.0).await?;
        assert_eq!(got.len(), head.len() + refill.len() + tf.data.len());
        assert!(got[..head.len()] == head[..]);
        assert!(got[head.len()..head.len() + refill.len()] == refill[..]);
        assert!(got[head.len() + refill.len()..] == tf.data[..]);
        Ok(())
    });
}

/// Panics in `pause_writing` and `resume_writing`; counts them.
#[derive(Default)]
struct PanicsOnFlowControl {
    pauses: Cell<u32>,
    resumes: Cell<u32>,
    lost: Cell<bool>,
}

impl Protocol for PanicsOnFlowControl {
    fn connection_lost(&self, _exc: Option<Error>) {
        self.lost.set(true);
    }
    fn pause_writing(&self) {
        self.pauses.set(self.pauses.get() + 1);
        panic!("bug in pause_writing");
    }
    fn resume_writing(&self) {
        self.resumes.set(self.resumes.get() + 1);
        panic!("bug in resume_writing");
    }
}

// conformance: L6
#[test]
fn sendfile_fallback_goes_on_when_the_protocol_flow_control_panics() {
    run_bounded(20.0, async move {
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (t, p) = lp
            .create_connection(
                || Rc::new(PanicsOnFlowControl::default()),
                "127.0.0.1",
                port,
            )
            .await?;
        let (peer, _) = lp.sock_accept(&listener).await?;
        small_buffers(t.fd(), peer.as_raw_fd());
        let prefilled = fill_socket(t.fd());
        t.set_write_buffer_limits(Some(1), Some(0))?;
        // A pipe: the fallback, whose writes cross the high-water mark.
        let data: Vec<u8> = (0..48 * 1024u32).map(|i| (i % 251) as u8).collect();
        let pipe = Rc::new(pipe_with(&data));
        let (lp2, t2, p2) = (lp.clone(), t.clone(), pipe.clone());
        let send = tulip::create_task(async move { lp2.sendfile(&*t2, &p2, 0, None, true).await })?;
        for _ in 0..5000 {
            if p.pauses.get() > 0 || send.done() {
                break;
            }
            tulip::sleep(0.001).await?;
        }
        assert_eq!(p.pauses.get(), 1, "pause_writing ran");
        // The peer reads: the transfer goes on.
        let lp2 = lp.clone();
        let reader = tulip::create_task(async move { read_to_eof(&lp2, &peer).await })?;
        let sent = tulip::wait_for(send, 5.0).await?;
        assert_eq!(sent, data.len());
        assert!(p.resumes.get() >= 1, "resume_writing ran");
        // A close that waits for the flush still ends the connection when
        // resume_writing panics.
        let tail = vec![b'T'; 1 << 20];
        t.write(&tail)?;
        t.close();
        let got = tulip::wait_for(reader, 5.0).await?;
        assert_eq!(got.len(), prefilled + data.len() + tail.len());
        assert!(got[prefilled..prefilled + data.len()] == data[..]);
        settle().await?;
        assert!(p.lost.get(), "connection_lost ran");
        let reports = reports.borrow();
        assert_eq!(
            reports.len() as u32,
            p.pauses.get() + p.resumes.get(),
            "each panic is reported"
        );
        assert!(reports
            .iter()
            .all(|r| r.message.contains("_writing() failed")));
        Ok(())
    });
}

/// asyncio's `_sendfile_fallback` writes each chunk, then awaits
/// `proto.drain()`, which raises `ConnectionError` if the transport is
/// closing: a write that kills the connection (here the last and only
/// chunk, on a reset connection) fails the call instead of reporting the
/// bytes as sent.
#[test]
fn sendfile_fallback_whose_last_write_fails_is_an_error() {
    run_bounded(10.0, async move {
        let lp = tulip::get_running_loop()?;
        let (t, _p, peer) = transport_pair(&lp).await?;
        // The transport does not read: only its write sees the reset.
        t.pause_reading();
        linger_zero(peer.as_raw_fd());
        drop(peer);
        // A pipe: the fallback; one chunk.
        let pipe = pipe_with(b"one small chunk");
        let res = lp.sendfile(&*t, &pipe, 0, None, true).await;
        assert!(t.is_closing(), "the write failed and closed the transport");
        let err = res.expect_err("the connection died: not sent");
        assert!(
            matches!(
                err.io_kind(),
                Some(
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::BrokenPipe
                )
            ),
            "{err:?}"
        );
        Ok(())
    });
}
