//! `BufferedProtocol` (asyncio's `protocols.BufferedProtocol`): the
//! transport receives straight into the protocol's own buffer
//! (`get_buffer`), then calls `buffer_updated(nbytes)`. Servers from
//! `create_server_buffered`, clients from `create_connection_buffered`;
//! their `sock=` variants over std sockets made beforehand
//! (`create_server_buffered_sock`, `create_connection_buffered_sock`),
//! all on loopback; and the Unix variants (`create_unix_server_buffered`,
//! `create_unix_server_buffered_sock`, `create_unix_connection_buffered`) on
//! a socket in a temp dir.

mod common;

use std::cell::{Cell, RefCell, RefMut};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::rc::Rc;

use common::{capture_reports, run_bounded};
use tulip::transports::prelude::*;
use tulip::{BufferedProtocol, ConnectOptions, Error, ExceptionContext, ServerOptions};

/// What a test protocol does with the bytes it gets.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Writes them back; EOF closes (the default `eof_received`).
    Echo,
    /// Keeps them; at EOF, stays half-open, answers `got N` and closes.
    Keep,
    /// `get_buffer` returns an empty buffer.
    EmptyBuffer,
    /// Echoes, but panics in `buffer_updated` on bytes that start `boom`.
    PanicOnBoom,
}

/// What the protocols of one test saw, across connections.
#[derive(Default)]
struct Seen {
    /// `made`, `eof`, `lost: ...`, `pause`, `resume`, in order.
    events: RefCell<Vec<String>>,
    /// How many `buffer_updated` calls, and the largest `nbytes`.
    updates: Cell<usize>,
    max_nbytes: Cell<usize>,
}

impl Seen {
    fn push(&self, event: impl Into<String>) {
        self.events.borrow_mut().push(event.into());
    }

    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }

    fn count(&self, event: &str) -> usize {
        self.events.borrow().iter().filter(|e| *e == event).count()
    }
}

struct Proto {
    mode: Mode,
    /// The buffer the transport receives into.
    buf: RefCell<Vec<u8>>,
    /// What `Keep` kept.
    got: RefCell<Vec<u8>>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    seen: Rc<Seen>,
}

impl Proto {
    fn new(mode: Mode, buffer_size: usize, seen: &Rc<Seen>) -> Rc<Proto> {
        Rc::new(Proto {
            mode,
            buf: RefCell::new(vec![0; buffer_size]),
            got: RefCell::new(Vec::new()),
            transport: RefCell::new(None),
            seen: seen.clone(),
        })
    }

    fn transport(&self) -> Rc<dyn Transport> {
        self.transport.borrow().clone().expect("connected")
    }
}

impl BufferedProtocol for Proto {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        self.seen.push("made");
        *self.transport.borrow_mut() = Some(transport);
    }

    fn get_buffer(&self, sizehint: usize) -> RefMut<'_, [u8]> {
        assert_eq!(sizehint, 0, "the socket transport takes any size");
        let end = if self.mode == Mode::EmptyBuffer {
            0
        } else {
            self.buf.borrow().len()
        };
        RefMut::map(self.buf.borrow_mut(), |b| &mut b[..end])
    }

    fn buffer_updated(&self, nbytes: usize) {
        // The transport released the buffer: borrowing it mutably works.
        let buf = self.buf.borrow_mut();
        let data = &buf[..nbytes];
        self.seen.updates.set(self.seen.updates.get() + 1);
        self.seen
            .max_nbytes
            .set(self.seen.max_nbytes.get().max(nbytes));
        match self.mode {
            Mode::Keep => self.got.borrow_mut().extend_from_slice(data),
            Mode::PanicOnBoom if data.starts_with(b"boom") => panic!("boom in buffer_updated"),
            _ => self.transport().write(data).expect("write"),
        }
    }

    fn eof_received(&self) -> bool {
        self.seen.push("eof");
        if self.mode != Mode::Keep {
            return false;
        }
        let t = self.transport();
        let answer = format!("got {}", self.got.borrow().len());
        t.write(answer.as_bytes()).expect("write");
        t.close();
        true
    }

    fn connection_lost(&self, exc: Option<Error>) {
        self.seen.push(match exc {
            None => "lost: ok".to_string(),
            Some(e) => format!("lost: {e}"),
        });
    }

    fn pause_writing(&self) {
        self.seen.push("pause");
    }

    fn resume_writing(&self) {
        self.seen.push("resume");
    }
}

/// A `create_server_buffered` server on 127.0.0.1 whose connections get a
/// `Proto` of `mode` with a buffer of `buffer_size`.
async fn server(mode: Mode, buffer_size: usize, seen: &Rc<Seen>) -> tulip::Result<tulip::Server> {
    let lp = tulip::get_running_loop()?;
    let seen = seen.clone();
    let factory = move || Proto::new(mode, buffer_size, &seen);
    lp.create_server_buffered(factory, "127.0.0.1", 0, &ServerOptions::new())
        .await
}

/// A stream client of `server`.
async fn connect(
    server: &tulip::Server,
) -> tulip::Result<(tulip::StreamReader, tulip::StreamWriter)> {
    tulip::open_connection("127.0.0.1", server.local_addrs()[0].port()).await
}

/// Reads until the server's close: an EOF, or a reset when the server
/// closed with bytes it had not read (the kernel then sends RST).
async fn closed_by_server(reader: &tulip::StreamReader) -> tulip::Result<()> {
    match reader.read_to_eof().await {
        Ok(rest) => assert_eq!(rest, b""),
        Err(e) => assert_eq!(
            e.io_kind(),
            Some(std::io::ErrorKind::ConnectionReset),
            "{e}"
        ),
    }
    Ok(())
}

/// Waits (bounded by the test's watchdog) until `cond` holds.
async fn until(cond: impl Fn() -> bool) -> tulip::Result<()> {
    while !cond() {
        tulip::sleep(0.005).await?;
    }
    Ok(())
}

#[test]
fn a_megabyte_echoes_through_a_small_buffer() {
    run_bounded(20.0, async {
        const SIZE: usize = 1 << 20;
        const BUFFER: usize = 1024;
        let seen = Rc::new(Seen::default());
        let server = server(Mode::Echo, BUFFER, &seen).await?;
        let (reader, writer) = connect(&server).await?;
        let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
        // write never blocks: what the kernel does not take is buffered,
        // and the EOF follows it.
        writer.write(&data)?;
        writer.write_eof()?;
        let echoed = reader.readexactly(SIZE).await?;
        assert!(echoed == data, "the echo differs");
        // Our EOF reached the server, which closed (eof_received: false).
        assert_eq!(reader.read_to_eof().await?, b"");
        writer.drain().await?;
        // Every byte went through the protocol's 1 KiB buffer.
        assert!(seen.max_nbytes.get() <= BUFFER);
        assert!(seen.updates.get() >= SIZE / BUFFER);
        until(|| seen.count("lost: ok") == 1).await?;
        assert_eq!(seen.events().first().map(String::as_str), Some("made"));
        assert_eq!(seen.count("eof"), 1);
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn eof_received_true_keeps_the_connection_half_open() {
    run_bounded(10.0, async {
        let seen = Rc::new(Seen::default());
        let server = server(Mode::Keep, 3, &seen).await?;
        let (reader, writer) = connect(&server).await?;
        writer.write(b"hello, world")?;
        writer.write_eof()?;
        // After our EOF the server still writes, then closes.
        assert_eq!(reader.read_to_eof().await?, b"got 12");
        until(|| seen.count("lost: ok") == 1).await?;
        assert_eq!(seen.events(), ["made", "eof", "lost: ok"]);
        // 12 bytes through a 3-byte buffer.
        assert!(seen.updates.get() >= 4);
        assert_eq!(seen.max_nbytes.get(), 3);
        server.close();
        Ok(())
    });
}

/// The reports of the loop's exception handler.
type Reports = Rc<RefCell<Vec<ExceptionContext>>>;

/// Sends `payload` to a new server of `mode`, whose protocol fails on it:
/// checks that the server closes the connection, that `connection_lost`
/// gets the error `lost`, and that the failure is reported once, with
/// `message`. Returns the server, what its protocols saw, and the reports.
async fn a_failing_connection(
    mode: Mode,
    payload: &[u8],
    lost: &str,
    message: &str,
) -> tulip::Result<(tulip::Server, Rc<Seen>, Reports)> {
    let reports = capture_reports(&tulip::get_running_loop()?);
    let seen = Rc::new(Seen::default());
    let server = server(mode, 64, &seen).await?;
    let (reader, writer) = connect(&server).await?;
    writer.write(payload)?;
    closed_by_server(&reader).await?;
    until(|| seen.count(&format!("lost: {lost}")) == 1).await?;
    assert_eq!(reports.borrow().len(), 1);
    assert_eq!(reports.borrow()[0].message, message);
    // asyncio's `_fatal_error` names the transport.
    let transport = reports.borrow()[0].transport.clone().unwrap_or_default();
    assert!(transport.starts_with("SocketTransport"), "{transport:?}");
    Ok((server, seen, reports))
}

#[test]
fn an_empty_buffer_is_reported_and_closes_the_connection() {
    run_bounded(10.0, async {
        let (server, seen, reports) = a_failing_connection(
            Mode::EmptyBuffer,
            b"anything",
            "get_buffer() returned an empty buffer: return one of at least 1 byte from BufferedProtocol::get_buffer",
            "Fatal error: protocol.get_buffer() call failed.",
        )
        .await?;
        assert_eq!(seen.updates.get(), 0, "nothing was received");
        let err = reports.borrow()[0].error.clone().expect("an error");
        assert!(matches!(err, Error::Runtime(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "get_buffer() returned an empty buffer: return one of at least 1 byte from BufferedProtocol::get_buffer"
        );
        server.close();
        Ok(())
    });
}

#[test]
fn a_panic_in_buffer_updated_is_reported_and_the_loop_goes_on() {
    run_bounded(10.0, async {
        let (server, _, reports) = a_failing_connection(
            Mode::PanicOnBoom,
            b"boom",
            "panicked: boom in buffer_updated",
            "Fatal error: protocol.buffer_updated() call failed.",
        )
        .await?;
        assert!(matches!(reports.borrow()[0].error, Some(Error::Panic(_))));
        // The loop and the server go on: the next connection echoes.
        let (reader, writer) = connect(&server).await?;
        writer.write(b"hello")?;
        assert_eq!(reader.readexactly(5).await?, b"hello");
        writer.close();
        assert_eq!(reports.borrow().len(), 1);
        server.close();
        Ok(())
    });
}

#[test]
fn create_connection_buffered_reads_into_its_buffer_and_pauses_writing() {
    run_bounded(20.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let port = listener.local_addr().map_err(Error::from)?.port();
        let seen = Rc::new(Seen::default());
        let s2 = seen.clone();
        let (t, proto) = lp
            .create_connection_buffered(
                move || Proto::new(Mode::Keep, 4, &s2),
                "127.0.0.1",
                port,
                &ConnectOptions::new(),
            )
            .await?;
        assert!(t.protocol().is_none());
        assert!(t.buffered_protocol().is_some());
        let (peer, _) = listener.accept().map_err(Error::from)?;
        peer.set_nonblocking(true).map_err(Error::from)?;
        lp.sock_sendall(&peer, b"from the peer").await?;
        until(|| proto.got.borrow().len() == 13).await?;
        assert_eq!(&*proto.got.borrow(), b"from the peer");
        assert_eq!(seen.max_nbytes.get(), 4);
        // More than the kernel's buffers hold: the rest waits in the
        // transport's, above the high-water mark.
        const SIZE: usize = 16 << 20;
        t.write(&vec![b'x'; SIZE])?;
        assert_eq!(seen.count("pause"), 1);
        let mut received = 0;
        while received < SIZE {
            received += lp.sock_recv(&peer, 1 << 20).await?.len();
        }
        assert_eq!(received, SIZE);
        until(|| seen.count("resume") == 1).await?;
        t.close();
        until(|| seen.count("lost: ok") == 1).await?;
        assert_eq!(seen.events(), ["made", "pause", "resume", "lost: ok"]);
        Ok(())
    });
}

#[test]
fn create_connection_buffered_sock_wraps_a_connected_std_stream() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let addr = listener.local_addr().map_err(Error::from)?;
        // asyncio's sock=: connected before the loop ever sees it.
        let stream = TcpStream::connect(addr).map_err(Error::from)?;
        let (peer, _) = listener.accept().map_err(Error::from)?;
        peer.set_nonblocking(true).map_err(Error::from)?;
        let seen = Rc::new(Seen::default());
        let s2 = seen.clone();
        let (t, proto) = lp
            .create_connection_buffered_sock(move || Proto::new(Mode::Keep, 5, &s2), stream.into())
            .await?;
        assert!(t.protocol().is_none());
        assert!(t.buffered_protocol().is_some());
        let peername = t.get_extra_info("peername").and_then(|i| i.as_addr());
        assert_eq!(peername, Some(addr));
        const MSG: &[u8] = b"over a socket connected elsewhere";
        lp.sock_sendall(&peer, MSG).await?;
        peer.shutdown(Shutdown::Write).map_err(Error::from)?;
        // Keep answers our EOF with what it kept, then closes.
        let mut answer = Vec::new();
        loop {
            let chunk = lp.sock_recv(&peer, 64).await?;
            if chunk.is_empty() {
                break;
            }
            answer.extend_from_slice(&chunk);
        }
        assert_eq!(answer, format!("got {}", MSG.len()).as_bytes());
        assert_eq!(&*proto.got.borrow(), MSG);
        // Every byte went through the protocol's 5-byte buffer.
        assert_eq!(seen.max_nbytes.get(), 5);
        assert!(seen.updates.get() >= MSG.len() / 5);
        until(|| seen.count("lost: ok") == 1).await?;
        assert_eq!(seen.events(), ["made", "eof", "lost: ok"]);
        Ok(())
    });
}

#[test]
fn create_server_buffered_sock_serves_a_bound_std_listener() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        // asyncio's sock=: bound before the loop ever sees it.
        let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let addr = listener.local_addr().map_err(Error::from)?;
        let seen = Rc::new(Seen::default());
        let s2 = seen.clone();
        let factory = move || Proto::new(Mode::Keep, 3, &s2);
        let server = lp.create_server_buffered_sock(factory, listener)?;
        assert!(server.is_serving());
        assert_eq!(server.local_addrs(), [addr]);
        // One client after the other: each connection has a protocol of
        // its own, which counts only its own bytes.
        for msg in [&b"hello, world"[..], b"again"] {
            let (reader, writer) = tulip::open_connection("127.0.0.1", addr.port()).await?;
            writer.write(msg)?;
            writer.write_eof()?;
            let answer = reader.read_to_eof().await?;
            assert_eq!(answer, format!("got {}", msg.len()).as_bytes());
            writer.close();
        }
        until(|| seen.count("lost: ok") == 2).await?;
        assert_eq!(seen.count("made"), 2);
        assert_eq!(seen.count("eof"), 2);
        assert_eq!(seen.max_nbytes.get(), 3);
        // 12 + 5 bytes through a 3-byte buffer.
        assert!(seen.updates.get() >= 4 + 2);
        server.close();
        server.wait_closed().await?;
        assert_eq!(server.active_count(), 0);
        Ok(())
    });
}

/// A fresh directory under the system's temp dir for one test's socket
/// files; the test removes it.
fn socket_dir(test: &str) -> tulip::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tulip-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(Error::from)?;
    Ok(dir)
}

#[test]
fn a_unix_socket_echo_is_buffered_on_both_ends() {
    run_bounded(20.0, async {
        const SIZE: usize = 512 * 1024;
        const SERVER_BUFFER: usize = 4096;
        // Not a divisor of SIZE: reads end at odd offsets.
        const CLIENT_BUFFER: usize = 1000;
        let dir = socket_dir("buffered-unix-echo")?;
        let path = dir.join("echo.sock");
        let lp = tulip::get_running_loop()?;
        let server_seen = Rc::new(Seen::default());
        let s2 = server_seen.clone();
        let server = lp.create_unix_server_buffered(
            move || Proto::new(Mode::Echo, SERVER_BUFFER, &s2),
            &path,
            &ServerOptions::new(),
        )?;
        let client_seen = Rc::new(Seen::default());
        let c2 = client_seen.clone();
        let (t, client) = lp
            .create_unix_connection_buffered(
                move || Proto::new(Mode::Keep, CLIENT_BUFFER, &c2),
                &path,
            )
            .await?;
        assert!(t.buffered_protocol().is_some());
        assert!(matches!(
            t.get_extra_info("peername"),
            Some(tulip::ExtraInfo::UnixAddr(_))
        ));
        let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
        // More than the socket buffers hold: the rest waits in the
        // transport, and goes out as the server reads and echoes.
        t.write(&data)?;
        until(|| client.got.borrow().len() >= SIZE).await?;
        assert!(*client.got.borrow() == data, "the echo differs");
        // Many reads on both ends, each into the protocol's own buffer.
        assert!(server_seen.updates.get() >= SIZE / SERVER_BUFFER);
        assert!(server_seen.max_nbytes.get() <= SERVER_BUFFER);
        assert!(client_seen.updates.get() >= SIZE / CLIENT_BUFFER);
        assert!(client_seen.max_nbytes.get() <= CLIENT_BUFFER);
        // Our close is the server's EOF, and it closes (eof_received: false).
        t.close();
        until(|| client_seen.count("lost: ok") == 1 && server_seen.count("lost: ok") == 1).await?;
        assert_eq!(server_seen.count("eof"), 1);
        assert_eq!(client_seen.count("eof"), 0);
        server.close();
        server.wait_closed().await?;
        assert!(!path.exists(), "the socket file is removed at close");
        std::fs::remove_dir(&dir).map_err(Error::from)?;
        Ok(())
    });
}

#[test]
fn create_unix_server_buffered_sock_serves_a_bound_std_unix_listener() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let dir = socket_dir("buffered-unix-sock")?;
        let path = dir.join("s.sock");
        // asyncio's create_unix_server(sock=): bound by the caller.
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(Error::from)?;
        let seen = Rc::new(Seen::default());
        let s2 = seen.clone();
        let factory = move || Proto::new(Mode::Keep, 3, &s2);
        let server =
            lp.create_unix_server_buffered_sock(factory, listener, &ServerOptions::new())?;
        assert!(server.is_serving());
        let (reader, writer) = tulip::open_unix_connection(&path).await?;
        writer.write(b"hello, world")?;
        writer.write_eof()?;
        assert_eq!(reader.read_to_eof().await?, b"got 12");
        writer.close();
        until(|| seen.count("lost: ok") == 1).await?;
        assert_eq!(seen.max_nbytes.get(), 3);
        server.close();
        server.wait_closed().await?;
        assert!(!path.exists(), "cleanup_socket removes the file at close");
        std::fs::remove_dir(&dir).map_err(Error::from)?;
        Ok(())
    });
}
