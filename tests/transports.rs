//! Socket transports and protocols on loopback: flow control (N3), resets,
//! EOF and closing (N4), UDP, and the sock_* coroutines.

mod common;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use common::{linger_zero, run_bounded, InterruptsOnce};
use tulip::{
    BaseTransport, DatagramAddr, DatagramProtocol, DatagramTransport, Error, EventLoop, Protocol,
    ReadTransport, Transport, WriteTransport,
};

/// Records every call, in order, and keeps the transport.
#[derive(Default)]
struct Recorder {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    events: RefCell<Vec<String>>,
    data: RefCell<Vec<u8>>,
    keep_open_on_eof: Cell<bool>,
    lost: tulip::Future<Option<String>>,
}

impl Recorder {
    fn new() -> Rc<Recorder> {
        Rc::new(Recorder::default())
    }
    fn t(&self) -> Rc<dyn Transport> {
        self.transport.borrow().clone().expect("connected")
    }
    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
}

impl Protocol for Recorder {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
        self.events.borrow_mut().push("made".into());
    }
    fn data_received(&self, data: &[u8]) {
        self.data.borrow_mut().extend_from_slice(data);
        let mut ev = self.events.borrow_mut();
        if ev.last().map(String::as_str) != Some("data") {
            ev.push("data".into());
        }
    }
    fn eof_received(&self) -> bool {
        self.events.borrow_mut().push("eof".into());
        self.keep_open_on_eof.get()
    }
    fn connection_lost(&self, exc: Option<Error>) {
        self.events.borrow_mut().push("lost".into());
        let _ = self
            .lost
            .set_result(exc.map(|e| format!("{:?}", e.io_kind())));
    }
    fn pause_writing(&self) {
        self.events.borrow_mut().push("pause".into());
    }
    fn resume_writing(&self) {
        self.events.borrow_mut().push("resume".into());
    }
}

/// A server whose single connection's protocol is returned through `slot`.
async fn server_with(
    lp: &EventLoop,
    make: impl Fn() -> Rc<Recorder> + 'static,
) -> tulip::Result<(tulip::Server, Accepted)> {
    let accepted = Rc::new(RefCell::new(Vec::new()));
    let acc = accepted.clone();
    let server = lp
        .create_server(
            move || {
                let p = make();
                acc.borrow_mut().push(p.clone());
                p
            },
            "127.0.0.1",
            0,
        )
        .await?;
    Ok((server, accepted))
}

/// The server protocols accepted so far, in order.
type Accepted = Rc<RefCell<Vec<Rc<Recorder>>>>;

/// A Recorder client connected to `port` on 127.0.0.1.
async fn connect_recorder(
    lp: &EventLoop,
    port: u16,
) -> tulip::Result<(Rc<tulip::SocketTransport>, Rc<Recorder>)> {
    lp.create_connection(Recorder::new, "127.0.0.1", port).await
}

/// A server whose protocols `make` builds (see `server_with`), and one
/// Recorder client connected to it: (server, accepted, client transport,
/// client protocol).
async fn server_and_client(
    lp: &EventLoop,
    make: impl Fn() -> Rc<Recorder> + 'static,
) -> tulip::Result<(
    tulip::Server,
    Accepted,
    Rc<tulip::SocketTransport>,
    Rc<Recorder>,
)> {
    let (server, accepted) = server_with(lp, make).await?;
    let port = server.local_addrs()[0].port();
    let (t, p) = connect_recorder(lp, port).await?;
    Ok((server, accepted, t, p))
}

// conformance: N3
#[test]
fn slow_reader_forces_pause_writing_then_resume() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted, client_t, client) = server_and_client(&lp, Recorder::new).await?;
        tulip::sleep(0.01).await?;
        let srv = accepted.borrow()[0].clone();
        srv.t().pause_reading(); // the slow reader
        assert!(!srv.t().is_reading());

        // write() never blocks: 8 MB go in at once, mostly into the buffer.
        let chunk = vec![b'x'; 64 * 1024];
        let t0 = std::time::Instant::now();
        for _ in 0..128 {
            client_t.write(&chunk)?;
        }
        assert!(t0.elapsed().as_secs_f64() < 1.0);
        assert!(client_t.get_write_buffer_size() > 64 * 1024);
        assert_eq!(client.events(), ["made", "pause"]);

        // The reader catches up: the buffer drains and resume_writing fires.
        srv.t().resume_reading();
        while srv.data.borrow().len() < 128 * 64 * 1024 {
            tulip::sleep(0.005).await?;
        }
        assert_eq!(client.events(), ["made", "pause", "resume"]);
        assert_eq!(client_t.get_write_buffer_size(), 0);
        client_t.close();
        server.close();
        Ok(())
    });
}

// conformance: N3
#[test]
fn write_buffer_limits() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, _acc, t, p) = server_and_client(&lp, Recorder::new).await?;
        assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
        t.set_write_buffer_limits(Some(100), None)?;
        assert_eq!(t.get_write_buffer_limits(), (25, 100));
        t.set_write_buffer_limits(None, Some(10))?;
        assert_eq!(t.get_write_buffer_limits(), (10, 40));
        assert!(t.set_write_buffer_limits(Some(1), Some(2)).is_err());
        // high = 0: pause as soon as anything is buffered.
        t.set_write_buffer_limits(Some(0), None)?;
        assert_eq!(p.events(), ["made"]);
        t.close();
        server.close();
        Ok(())
    });
}

/// Records the transport's write buffer size at each `resume_writing`.
#[derive(Default)]
struct ResumeSizes {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    paused: Cell<bool>,
    sizes: RefCell<Vec<usize>>,
}

impl Protocol for ResumeSizes {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn pause_writing(&self) {
        self.paused.set(true);
    }
    fn resume_writing(&self) {
        let t = self.transport.borrow().clone().expect("connected");
        self.sizes.borrow_mut().push(t.get_write_buffer_size());
    }
}

// conformance: N3
#[test]
fn resume_writing_fires_at_the_low_water_mark_while_bytes_remain() {
    // asyncio's `_write_send` calls `_maybe_resume_protocol` after every
    // send, not only once the buffer is empty: a writer waiting in drain()
    // wakes as soon as the buffer is down to the low-water mark.
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (ours, peer) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
        peer.set_nonblocking(true).map_err(Error::from)?;
        let (t, p) = lp
            .create_connection_sock(|| Rc::new(ResumeSizes::default()), ours.into())
            .await?;
        // The low-water mark is far above what one flush can send into
        // the socket (its send buffer is a few hundred KiB).
        let (high, low) = (4 << 20, 2 << 20);
        t.set_write_buffer_limits(Some(high), Some(low))?;
        t.write(&vec![b'x'; 8 << 20])?;
        assert!(p.paused.get());
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        while p.sizes.borrow().is_empty() {
            match std::io::Read::read(&mut &peer, &mut buf) {
                Ok(n) => received += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            tulip::sleep(0.0).await?;
        }
        let at = p.sizes.borrow()[0];
        assert!(
            at > 0 && at <= low,
            "resume_writing at {at} buffered bytes (low-water mark {low}, {received} received)"
        );
        t.abort();
        Ok(())
    });
}

/// asyncio's `set_write_buffer_limits` ends with `_maybe_pause_protocol()`:
/// lowering the high-water mark under what is buffered pauses the protocol
/// at once, before any other write. And the low-water mark is inclusive
/// (`size <= low`): with `low = 0` the protocol resumes when the buffer is
/// empty.
// conformance: N3
#[test]
fn lowering_the_high_water_mark_pauses_and_a_zero_low_mark_resumes_when_empty() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (ours, peer) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
        peer.set_nonblocking(true).map_err(Error::from)?;
        let (t, p) = lp
            .create_connection_sock(|| Rc::new(ResumeSizes::default()), ours.into())
            .await?;
        t.set_write_buffer_limits(Some(64 << 20), None)?;
        let total = 8 << 20;
        t.write(&vec![b'x'; total])?;
        assert!(t.get_write_buffer_size() > 1 << 20);
        assert!(!p.paused.get());
        t.set_write_buffer_limits(Some(1 << 20), Some(0))?;
        assert!(p.paused.get(), "set_write_buffer_limits did not pause");
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        while received < total {
            match std::io::Read::read(&mut &peer, &mut buf) {
                Ok(n) => received += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tulip::sleep(0.0).await?,
                Err(e) => return Err(e.into()),
            }
        }
        // The last flush that emptied the buffer has run (all was received).
        assert_eq!(t.get_write_buffer_size(), 0);
        assert_eq!(*p.sizes.borrow(), [0], "resume_writing at an empty buffer");
        t.abort();
        Ok(())
    });
}

/// Raising the marks while paused resumes nothing at once (asyncio's
/// `set_write_buffer_limits` only calls `_maybe_pause_protocol`): the
/// writer resumes the protocol when it next flushes down to the new low mark.
// conformance: N3
#[test]
fn raising_the_marks_while_paused_resumes_only_at_the_next_flush() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (ours, peer) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
        peer.set_nonblocking(true).map_err(Error::from)?;
        let (t, p) = lp
            .create_connection_sock(|| Rc::new(ResumeSizes::default()), ours.into())
            .await?;
        let total = 8 << 20;
        t.write(&vec![b'x'; total])?;
        assert!(p.paused.get(), "8 MiB buffered is over the default 64 KiB");
        let buffered = t.get_write_buffer_size();
        t.set_write_buffer_limits(Some(64 << 20), Some(32 << 20))?;
        tulip::sleep(0.0).await?;
        assert!(p.sizes.borrow().is_empty(), "resumed without a flush");
        // The peer reads some: the writer's next flush resumes the protocol,
        // the buffer now far under the new low-water mark.
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        while p.sizes.borrow().is_empty() {
            match std::io::Read::read(&mut &peer, &mut buf) {
                Ok(n) => received += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => tulip::sleep(0.0).await?,
                Err(e) => return Err(e.into()),
            }
        }
        assert!(received < total);
        assert!(p.sizes.borrow()[0] < buffered);
        t.abort();
        Ok(())
    });
}

// conformance: N4
#[test]
fn eof_received_then_connection_lost() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted, t, _client) = server_and_client(&lp, Recorder::new).await?;
        t.write(b"some data")?;
        t.write_eof()?;
        assert!(
            t.write(b"more").is_err(),
            "write after write_eof is an error"
        );
        tulip::sleep(0.01).await?;
        let srv = accepted.borrow()[0].clone();
        // eof_received returned false: the server transport closes itself.
        assert_eq!(srv.lost.clone().await?, None);
        assert_eq!(srv.events(), ["made", "data", "eof", "lost"]);
        assert_eq!(&*srv.data.borrow(), b"some data");
        server.close();
        Ok(())
    });
}

// conformance: N4
#[test]
fn half_open_keeps_writing_after_eof() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted, t, client) = server_and_client(&lp, || {
            let r = Recorder::new();
            r.keep_open_on_eof.set(true);
            r
        })
        .await?;
        t.write_eof()?;
        tulip::sleep(0.02).await?;
        let srv = accepted.borrow()[0].clone();
        assert_eq!(srv.events(), ["made", "eof"]);
        // The read side is over: resuming reads nothing, and the EOF is
        // not heard twice (asyncio re-reads it; a documented deviation).
        srv.t().pause_reading();
        srv.t().resume_reading();
        assert!(srv.t().is_reading());
        srv.t().write(b"still here")?;
        // The poll that brings the client its bytes comes after the one
        // that would report the server's re-registered EOF.
        while client.data.borrow().len() < b"still here".len() {
            tulip::sleep(0.0).await?;
        }
        assert_eq!(srv.events(), ["made", "eof"]);
        srv.t().close();
        assert_eq!(client.lost.clone().await?, None);
        assert_eq!(&*client.data.borrow(), b"still here");
        assert_eq!(client.events(), ["made", "data", "eof", "lost"]);
        server.close();
        Ok(())
    });
}

// conformance: N4
#[test]
fn peer_reset_mid_write_reaches_connection_lost() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        listener.set_nonblocking(true).map_err(Error::from)?;
        let port = listener.local_addr().map_err(Error::from)?.port();
        let (t, client) = connect_recorder(&lp, port).await?;
        let (peer, _) = lp.sock_accept(&listener).await?;
        // Keep writing; the peer reads nothing, then resets.
        let chunk = vec![0u8; 256 * 1024];
        for _ in 0..8 {
            t.write(&chunk)?;
        }
        tulip::sleep(0.01).await?;
        linger_zero(peer.as_raw_fd());
        drop(peer);
        let kind = client.lost.clone().await?;
        let kind = kind.expect("a reset is an error");
        assert!(
            kind.contains("ConnectionReset") || kind.contains("BrokenPipe"),
            "{kind}"
        );
        let ev = client.events();
        assert_eq!(ev.first().map(String::as_str), Some("made"));
        assert_eq!(ev.last().map(String::as_str), Some("lost"));
        assert_eq!(ev.iter().filter(|e| *e == "lost").count(), 1);
        // Writes after the loss are dropped silently, as in asyncio.
        t.write(b"late")?;
        assert!(t.is_closing());
        Ok(())
    });
}

// conformance: N4
#[test]
fn no_fd_used_after_close() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, _acc, t, p) = server_and_client(&lp, Recorder::new).await?;
        let fd = t.fd();
        t.write(&vec![1u8; 1 << 20])?; // leaves data buffered and a writer registered
        t.abort();
        assert_eq!(p.lost.clone().await?, None);
        assert!(!lp.has_reader(fd) && !lp.has_writer(fd));
        assert!(t.get_extra_info("socket").is_none(), "the socket is gone");
        // The fd number is free for reuse, and a new connection on it works.
        let (t2, p2) = connect_recorder(&lp, server.local_addrs()[0].port()).await?;
        t2.write(b"x")?;
        t2.close();
        assert_eq!(p2.lost.clone().await?, None);
        assert_eq!(p2.events(), ["made", "lost"]);
        server.close();
        Ok(())
    });
}

/// `abort()` and `close()` never call the protocol from inside the call:
/// asyncio's `_force_close` and `close` schedule `_call_connection_lost`
/// with `call_soon`, so `connection_lost` comes on the next iteration.
// conformance: N4
#[test]
fn connection_lost_is_scheduled_not_called_from_abort_or_close() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, _acc, t, p) = server_and_client(&lp, Recorder::new).await?;
        t.write(&vec![1u8; 1 << 20])?; // buffered: abort drops it
        t.abort();
        assert_eq!(p.events(), ["made"], "connection_lost inside abort()");
        tulip::sleep(0.0).await?;
        assert_eq!(p.events(), ["made", "lost"]);
        let (t, p) = connect_recorder(&lp, server.local_addrs()[0].port()).await?;
        t.close();
        assert_eq!(p.events(), ["made"], "connection_lost inside close()");
        tulip::sleep(0.0).await?;
        assert_eq!(p.events(), ["made", "lost"]);
        server.close();
        Ok(())
    });
}

#[test]
fn pause_reading_stops_data_received() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted, t, p) = server_and_client(&lp, Recorder::new).await?;
        t.pause_reading();
        tulip::sleep(0.01).await?;
        accepted.borrow()[0].t().write(b"held back")?;
        tulip::sleep(0.02).await?;
        assert!(p.data.borrow().is_empty());
        t.resume_reading();
        tulip::sleep(0.02).await?;
        assert_eq!(&*p.data.borrow(), b"held back");
        t.close();
        server.close();
        Ok(())
    });
}

#[test]
fn close_flushes_the_buffer_first() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted, t, p) = server_and_client(&lp, Recorder::new).await?;
        let big = vec![3u8; 4 << 20];
        t.write(&big)?;
        t.close();
        assert!(t.is_closing());
        assert_eq!(p.lost.clone().await?, None);
        tulip::sleep(0.0).await?;
        let srv = accepted.borrow()[0].clone();
        assert_eq!(srv.lost.clone().await?, None);
        assert_eq!(srv.data.borrow().len(), big.len());
        server.close();
        Ok(())
    });
}

#[derive(Default)]
struct UdpEcho {
    transport: RefCell<Option<Rc<dyn DatagramTransport>>>,
}

impl DatagramProtocol for UdpEcho {
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn datagram_received(&self, data: &[u8], addr: DatagramAddr) {
        let t = self.transport.borrow().clone().expect("made");
        t.sendto(data, Some(addr)).unwrap();
    }
}

#[derive(Default)]
struct UdpClient {
    got: RefCell<Vec<Vec<u8>>>,
    lost: Cell<bool>,
}

impl DatagramProtocol for UdpClient {
    fn datagram_received(&self, data: &[u8], _: DatagramAddr) {
        self.got.borrow_mut().push(data.to_vec());
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(true);
    }
}

#[test]
fn udp_echo() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (st, _) = lp
            .create_datagram_endpoint(|| Rc::new(UdpEcho::default()), Some(local), None)
            .await?;
        let addr = st
            .get_extra_info("sockname")
            .and_then(|i| i.as_addr())
            .unwrap();
        let (ct, client) = lp
            .create_datagram_endpoint(|| Rc::new(UdpClient::default()), None, Some(addr))
            .await?;
        assert_eq!(
            ct.get_extra_info("peername").and_then(|i| i.as_addr()),
            Some(addr)
        );
        for i in 0..10u8 {
            ct.sendto(&[i; 100], None)?;
        }
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(
            ct.sendto(b"x", Some(other.into())).is_err(),
            "connected: only the peer"
        );
        while client.got.borrow().len() < 10 {
            tulip::sleep(0.005).await?;
        }
        let got = client.got.borrow().clone();
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, d)| d == &vec![i as u8; 100]));
        ct.close();
        st.close();
        tulip::sleep(0.0).await?;
        tulip::sleep(0.0).await?;
        assert!(client.lost.get());
        Ok(())
    });
}

/// An unconnected socket made with libc, as a caller of asyncio's
/// `sock_connect(sock, address)` makes one with `socket.socket()`.
fn libc_socket(family: i32, ty: i32) -> std::os::fd::OwnedFd {
    try_libc_socket(family, ty)
        .unwrap_or_else(|| panic!("socket: {}", std::io::Error::last_os_error()))
}

/// [`libc_socket`], `None` if the socket cannot be made.
fn try_libc_socket(family: i32, ty: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket takes three integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(family, ty, 0) };
    // SAFETY: the fd is new and owned by nobody else.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(fd, SOL_SOCKET, name, 1)`.
fn set_sol_socket_flag(fd: &impl AsRawFd, name: i32) {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a valid c_int, and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// `getsockopt(fd, SOL_SOCKET, name)`.
fn sol_socket_flag(fd: &impl AsRawFd, name: i32) -> libc::c_int {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid out-pointers; `len` is the room in `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    value
}

/// `bind(fd, ip:0)` for an IPv4 `ip`.
fn bind_v4(fd: &impl AsRawFd, ip: [u8; 4]) {
    // SAFETY: an all-zero sockaddr_in is a valid value.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from_ne_bytes(ip);
    // SAFETY: `sin` is a valid sockaddr_in, and its size is passed with it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
}

#[test]
fn sock_connect_socket_connects_the_callers_configured_socket() {
    // asyncio's `await loop.sock_connect(sock, address)` on a socket the
    // caller made: its options and local address are kept.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        listener.set_nonblocking(true).map_err(Error::from)?;
        let addr = listener.local_addr().map_err(Error::from)?;
        let sock = libc_socket(libc::AF_INET, libc::SOCK_STREAM); // blocking
        set_sol_socket_flag(&sock, libc::SO_REUSEADDR);
        bind_v4(&sock, [127, 0, 0, 2]);
        let stream = lp.sock_connect_socket(sock, addr).await?;
        assert_eq!(stream.peer_addr().map_err(Error::from)?, addr);
        let local = stream.local_addr().map_err(Error::from)?;
        assert_eq!(local.ip().to_string(), "127.0.0.2");
        assert_eq!(sol_socket_flag(&stream, libc::SO_REUSEADDR), 1);
        let (conn, peer) = lp.sock_accept(&listener).await?;
        assert_eq!(peer, local);
        // The stream is non-blocking: the sock_* coroutines take it.
        lp.sock_sendall(&stream, b"hi").await?;
        assert_eq!(lp.sock_recv(&conn, 2).await?, b"hi");
        Ok(())
    });
}

#[test]
fn sock_connect_socket_reports_a_refused_connect_and_refuses_other_sockets() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        // A loopback port that is bound but not listening: closed, and
        // nobody else can take it meanwhile.
        let closed = libc_socket(libc::AF_INET, libc::SOCK_STREAM);
        bind_v4(&closed, [127, 0, 0, 1]);
        let port = alias_of(closed.as_raw_fd())
            .local_addr()
            .map_err(Error::from)?
            .port();
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let sock = libc_socket(libc::AF_INET, libc::SOCK_STREAM);
        let err = lp.sock_connect_socket(sock, to).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("connect call failed ({to}): ")),
            "{err}"
        );
        // A datagram socket, or one of the other family, is refused.
        let udp = libc_socket(libc::AF_INET, libc::SOCK_DGRAM);
        let err = lp.sock_connect_socket(udp, to).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        // (A host without IPv6 cannot make the socket: nothing to check.)
        if let Some(v6) = try_libc_socket(libc::AF_INET6, libc::SOCK_STREAM) {
            let err = lp.sock_connect_socket(v6, to).await.unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
        }
        Ok(())
    });
}

#[test]
fn sock_coroutines() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        listener.set_nonblocking(true).map_err(Error::from)?;
        let addr = listener.local_addr().map_err(Error::from)?;
        let lp2 = lp.clone();
        let client = tulip::create_task(async move {
            let s = lp2.sock_connect(addr).await?;
            lp2.sock_sendall(&s, &vec![9u8; 1 << 20]).await?;
            s.shutdown(std::net::Shutdown::Write).map_err(Error::from)?;
            lp2.sock_recv(&s, 10).await
        })?;
        let (conn, _) = lp.sock_accept(&listener).await?;
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = lp.sock_recv_into(&conn, &mut buf).await?;
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 1 << 20);
        lp.sock_sendall(&conn, b"done").await?;
        assert_eq!(client.await?, b"done");
        Ok(())
    });
}

// conformance: N4
#[test]
fn data_and_fin_in_one_edge_still_reach_eof_received() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted) = server_with(&lp, Recorder::new).await?;
        let addr = server.local_addrs()[0];
        for _ in 0..20 {
            // Data and FIN both land before the loop looks: one edge for both.
            let mut c = std::net::TcpStream::connect(addr).map_err(Error::from)?;
            std::io::Write::write_all(&mut c, b"abc").map_err(Error::from)?;
            c.shutdown(std::net::Shutdown::Write).map_err(Error::from)?;
            std::thread::sleep(std::time::Duration::from_millis(2));
            let n = accepted.borrow().len();
            while accepted.borrow().len() == n {
                tulip::sleep(0.001).await?;
            }
            let srv = accepted.borrow()[n].clone();
            assert_eq!(srv.lost.clone().await?, None);
            assert_eq!(srv.events(), ["made", "data", "eof", "lost"]);
            assert_eq!(&*srv.data.borrow(), b"abc");
        }
        server.close();
        Ok(())
    });
}

/// Keeps no reference to its transport, like many asyncio protocols.
#[derive(Default)]
struct Forgetful {
    got: RefCell<Vec<u8>>,
    lost: Cell<bool>,
}

impl Protocol for Forgetful {
    fn data_received(&self, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(true);
    }
}

#[test]
fn a_registered_transport_lives_without_other_owners() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let protos: Rc<RefCell<Vec<Rc<Forgetful>>>> = Rc::default();
        let p2 = protos.clone();
        let server = lp
            .create_server(
                move || {
                    let p = Rc::new(Forgetful::default());
                    p2.borrow_mut().push(p.clone());
                    p
                },
                "127.0.0.1",
                0,
            )
            .await?;
        let addr = server.local_addrs()[0];
        let mut c = std::net::TcpStream::connect(addr).map_err(Error::from)?;
        tulip::sleep(0.02).await?;
        std::io::Write::write_all(&mut c, b"kept alive").map_err(Error::from)?;
        tulip::sleep(0.02).await?;
        let p = protos.borrow()[0].clone();
        assert_eq!(&*p.got.borrow(), b"kept alive");
        assert!(!p.lost.get());
        drop(c);
        tulip::sleep(0.02).await?;
        assert!(p.lost.get());
        server.close();
        Ok(())
    });
}

struct PanicsOnConnect;

impl Protocol for PanicsOnConnect {
    fn connection_made(&self, _: Rc<dyn Transport>) {
        panic!("bug in connection_made");
    }
}

#[test]
fn a_panicking_connection_made_is_reported_and_create_connection_returns() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let reported = Rc::new(Cell::new(false));
        let r2 = reported.clone();
        lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &tulip::ExceptionContext| {
            assert!(format!("{ctx}").contains("bug in connection_made"), "{ctx}");
            r2.set(true);
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let port = listener.local_addr().map_err(Error::from)?.port();
        let (t, _) = lp
            .create_connection(|| Rc::new(PanicsOnConnect), "127.0.0.1", port)
            .await?;
        assert!(reported.get());
        t.close();
        Ok(())
    });
}

#[derive(Default)]
struct PanicsOnData {
    lost: RefCell<Option<Option<Error>>>,
}

impl Protocol for PanicsOnData {
    fn data_received(&self, _: &[u8]) {
        panic!("bug in data_received");
    }
    fn connection_lost(&self, exc: Option<Error>) {
        *self.lost.borrow_mut() = Some(exc);
    }
}

#[test]
fn a_panicking_data_received_closes_the_connection_with_the_panic() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let reported = Rc::new(Cell::new(0));
        let r2 = reported.clone();
        lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &tulip::ExceptionContext| {
            assert!(ctx.message.contains("data_received() call failed"), "{ctx}");
            r2.set(r2.get() + 1);
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let port = listener.local_addr().map_err(Error::from)?.port();
        let (t, p) = lp
            .create_connection(|| Rc::new(PanicsOnData::default()), "127.0.0.1", port)
            .await?;
        let (mut peer, _) = listener.accept().map_err(Error::from)?;
        std::io::Write::write_all(&mut peer, b"boom").map_err(Error::from)?;
        for _ in 0..100 {
            if p.lost.borrow().is_some() {
                break;
            }
            tulip::sleep(0.005).await?;
        }
        let lost = p
            .lost
            .borrow_mut()
            .take()
            .expect("connection_lost was called");
        assert!(matches!(lost, Some(Error::Panic(_))), "{lost:?}");
        assert_eq!(reported.get(), 1);
        assert!(t.is_closing());
        Ok(())
    });
}

/// A server protocol whose peer answers at once: each chunk it receives
/// makes the peer send the next message before `data_received` returns,
/// as an echo client does when the server's write wakes it on the server's
/// own CPU. Logs `NAME:MSG` for every chunk.
struct EagerPeer {
    name: &'static str,
    peer: std::os::unix::net::UnixStream,
    log: Rc<RefCell<Vec<String>>>,
    last: u32,
}

impl Protocol for EagerPeer {
    fn data_received(&self, data: &[u8]) {
        let msg: u32 = std::str::from_utf8(data).unwrap().parse().unwrap();
        self.log.borrow_mut().push(format!("{}:{msg}", self.name));
        if msg < self.last {
            std::io::Write::write_all(&mut &self.peer, (msg + 1).to_string().as_bytes()).unwrap();
        }
    }
}

// Fairness: a short read ends a connection's turn. What arrives while its
// protocol runs waits for the next poll, after the other ready connections
// (asyncio reads once per ready fd per iteration; tokio re-reads at once
// when a read fills its buffer, and serves one connection in bursts).
#[test]
fn a_peer_that_answers_at_once_waits_for_the_other_connections() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let log: Rc<RefCell<Vec<String>>> = Rc::default();
        let mut peers = Vec::new();
        let mut transports = Vec::new();
        for name in ["a", "b", "c"] {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
            let proto = Rc::new(EagerPeer {
                name,
                peer: theirs.try_clone().map_err(Error::from)?,
                log: log.clone(),
                last: 4,
            });
            transports.push(tulip::SocketTransport::new(
                &lp,
                tulip::StreamSocket::Unix(ours),
                proto,
                None,
            )?);
            peers.push(theirs);
        }
        common::settle().await?;
        // Every connection readable before the loop looks.
        for p in &peers {
            std::io::Write::write_all(&mut &*p, b"1").map_err(Error::from)?;
        }
        while log.borrow().len() < 12 {
            tulip::sleep(0.001).await?;
        }
        let log = log.borrow().clone();
        // Each round serves every connection once, in the order they
        // became readable: a, b, c, a, b, c, ...
        let expect: Vec<String> = (1..=4)
            .flat_map(|m| ["a", "b", "c"].map(|n| format!("{n}:{m}")))
            .collect();
        assert_eq!(log, expect);
        for t in transports {
            t.close();
        }
        Ok(())
    });
}

// ===== sock_sendto / sock_recvfrom (asyncio 3.11) =====

/// A non-blocking UDP socket on 127.0.0.1.
fn udp_local() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

#[test]
fn sock_sendto_and_sock_recvfrom_roundtrip() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (a, b) = (udp_local(), Rc::new(udp_local()));
        let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);
        // Nothing arrived yet: the receive waits for the datagram.
        let (lp2, b2) = (lp.clone(), b.clone());
        let receiver = tulip::create_task(async move {
            let got = lp2.sock_recvfrom(&b2, 100).await?;
            let mut buf = [0u8; 4];
            let (n, from) = lp2.sock_recvfrom_into(&b2, &mut buf).await?;
            Ok((got, buf[..n].to_vec(), from))
        })?;
        tulip::sleep(0.0).await?;
        assert!(!receiver.done());
        // It waits for readability, not in a busy retry.
        assert!(lp.has_reader(b.as_raw_fd()), "waiting on a reader");
        assert!(!lp.has_writer(b.as_raw_fd()));
        assert_eq!(lp.sock_sendto(&a, b"first", b_addr).await?, 5);
        // A datagram longer than the buffer is cut to it.
        assert_eq!(lp.sock_sendto(&a, b"second", b_addr).await?, 6);
        let (got, second, from) = tulip::wait_for(receiver, 5.0).await?;
        assert_eq!(got, (b"first".to_vec(), a_addr));
        assert_eq!((&second[..], from), (&b"seco"[..], a_addr));
        // And back.
        lp.sock_sendto(&b, b"reply", a_addr).await?;
        let (reply, from) = lp.sock_recvfrom(&a, 100).await?;
        assert_eq!((&reply[..], from), (&b"reply"[..], b_addr));
        Ok(())
    });
}

#[test]
fn cancelling_sock_recvfrom_leaves_no_reader_registered() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let sock = Rc::new(udp_local());
        let fd = sock.as_raw_fd();
        let (lp2, s2) = (lp.clone(), sock.clone());
        let waiting = tulip::create_task(async move { lp2.sock_recvfrom(&s2, 100).await })?;
        common::settle().await?;
        assert!(!waiting.done(), "nothing was sent");
        assert!(waiting.cancel());
        let res = tulip::wait_for(waiting, 5.0).await;
        assert!(matches!(res, Err(Error::Cancelled(_))), "{res:?}");
        assert!(!lp.remove_reader(fd)?, "the wait's reader was removed");
        // The socket still works with the loop afterwards.
        let peer = udp_local();
        peer.send_to(b"late", sock.local_addr()?)?;
        // (Already queued on loopback: this does not wait.)
        let (data, _) = lp.sock_recvfrom(&sock, 10).await?;
        assert_eq!(data, b"late");
        Ok(())
    });
}

#[test]
fn a_cancelled_sock_recv_leaves_the_reader_of_the_one_that_replaced_it() {
    // asyncio's `_sock_read_done` removes the reader only if its own handle
    // was not cancelled (replaced by a later `sock_recv` on the same fd):
    // the first waiter's cancellation must not strand the second.
    run_bounded(5.0, async {
        use std::io::Write;
        let lp = tulip::get_running_loop()?;
        let (a, mut b) = std::os::unix::net::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        let a = Rc::new(a);
        let (lp1, a1) = (lp.clone(), a.clone());
        let first = tulip::create_task(async move { lp1.sock_recv(&*a1, 10).await })?;
        common::settle().await?;
        let (lp2, a2) = (lp.clone(), a.clone());
        let second = tulip::create_task(async move { lp2.sock_recv(&*a2, 10).await })?;
        common::settle().await?;
        assert!(first.cancel());
        let res = tulip::wait_for(first, 5.0).await;
        assert!(matches!(res, Err(Error::Cancelled(_))), "{res:?}");
        b.write_all(b"for second")?;
        assert_eq!(tulip::timeout(2.0).run(second).await?, b"for second");
        assert!(!lp.remove_reader(a.as_raw_fd())?, "no reader left behind");
        Ok(())
    });
}

/// Hands `sock`, accepted outside the loop, to `connect_accepted_socket`,
/// then checks with `peer`, its other end, that data flows both ways, and
/// that the peer's EOF reaches `eof_received` then `connection_lost`
/// (which closes the loop's end: the peer reads EOF).
async fn accepted_socket_roundtrip<S>(
    sock: tulip::StreamSocket,
    peer: &S,
    shutdown_peer: impl FnOnce(&S) -> std::io::Result<()>,
) -> tulip::Result<()>
where
    S: AsRawFd,
    for<'a> &'a S: std::io::Read + std::io::Write,
{
    use std::io::Write;
    let lp = tulip::get_running_loop()?;
    let (t, p) = lp.connect_accepted_socket(Recorder::new, sock).await?;
    assert_eq!(p.events(), ["made"]);
    assert!(Rc::ptr_eq(&(t.clone() as Rc<dyn Transport>), &p.t()));

    { peer }.write_all(b"from the peer")?;
    while p.data.borrow().len() < 13 {
        tulip::sleep(0.005).await?;
    }
    assert_eq!(&*p.data.borrow(), b"from the peer");

    t.write(b"from the loop")?;
    let mut got = Vec::new();
    while got.len() < 13 {
        got.extend(lp.sock_recv(peer, 64).await?);
    }
    assert_eq!(got, b"from the loop");

    shutdown_peer(peer)?;
    assert_eq!(p.lost.clone().await?, None);
    assert_eq!(p.events(), ["made", "data", "eof", "lost"]);
    assert!(t.is_closing());
    assert_eq!(lp.sock_recv(peer, 64).await?, b"", "the loop's end closed");
    Ok(())
}

#[test]
fn connect_accepted_socket_serves_a_tcp_connection_accepted_by_std() {
    run_bounded(5.0, async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (accepted, _) = listener.accept()?;
        client.set_nonblocking(true)?;
        accepted_socket_roundtrip(accepted.into(), &client, |c| {
            c.shutdown(std::net::Shutdown::Write)
        })
        .await
    });
}

#[test]
fn connect_accepted_socket_serves_one_end_of_a_unix_socket_pair() {
    run_bounded(5.0, async {
        let (ours, peer) = std::os::unix::net::UnixStream::pair()?;
        peer.set_nonblocking(true)?;
        accepted_socket_roundtrip(ours.into(), &peer, |c| {
            c.shutdown(std::net::Shutdown::Write)
        })
        .await
    });
}

#[test]
fn getnameinfo_numeric_gives_the_address_and_port_back() {
    let names = run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let addr: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        lp.getnameinfo(addr, tulip::NI_NUMERICHOST | tulip::NI_NUMERICSERV)
            .await
    });
    assert_eq!(names, ("127.0.0.1".to_string(), "54321".to_string()));
}

#[test]
fn getnameinfo_without_flags_names_the_loopback_address() {
    // 127.0.0.1 is in /etc/hosts (as "localhost" or another name): no DNS.
    let (host, service) = run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        lp.getnameinfo("127.0.0.1:54321".parse().unwrap(), 0).await
    });
    assert!(!host.is_empty());
    assert!(!service.is_empty());
}

#[test]
fn getnameinfo_with_unknown_flags_fails_with_eai_badflags() {
    // glibc checks the flags before any lookup: nothing is resolved.
    let err = run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let res = lp
            .getnameinfo("127.0.0.1:54321".parse().unwrap(), 0x40000)
            .await;
        Ok(res.expect_err("0x40000 is no NI_* flag"))
    });
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::InvalidInput),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("getnameinfo(127.0.0.1:54321, flags=0x40000) failed: "),
        "{msg}"
    );
    assert!(
        msg.contains("(EAI_BADFLAGS); pass 0 or tulip::NI_* flags"),
        "{msg}"
    );
}

/// A socket transport under a `P::default()` protocol, whose peer has sent
/// `data` and then its EOF (both waiting before the transport reads); runs
/// until the protocol interrupts the run (Ctrl-C) while waiting for
/// `lost(protocol)`, and checks that the run ended with `Interrupted`.
/// The peer is returned, to be kept open: closing it would raise a new
/// edge, which would hide a transport that fails to read on by itself.
fn interrupted_by_the_peers_bytes<P: Protocol + Default + 'static>(
    lp: &EventLoop,
    data: &[u8],
    lost: impl Fn(&P) -> tulip::Future<Option<Error>>,
) -> (
    Rc<tulip::SocketTransport>,
    Rc<P>,
    std::os::unix::net::UnixStream,
) {
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    std::io::Write::write_all(&mut peer, data).unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let lp1 = lp.clone();
    let (t, p) = lp
        .run_until_complete(async move {
            lp1.create_connection_sock(|| Rc::new(P::default()), ours.into())
                .await
        })
        .unwrap();
    let lost = lost(&p);
    let err = lp
        .run_until_complete(async move { tulip::wait_for(lost, 5.0).await })
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    (t, p, peer)
}

// conformance: L6
#[test]
fn an_interrupt_in_data_received_leaves_the_rest_of_the_edge_for_the_next_run() {
    // Data and the peer's EOF are both waiting when the transport reads;
    // data_received interrupts the run (Ctrl-C) after the first recv. The
    // registration is edge-triggered, so no new edge will come for the EOF:
    // the transport must read on in the next run by itself, as asyncio's
    // level-triggered selector would report the socket again.
    let lp = EventLoop::new().unwrap();
    let (_t, p, _peer) =
        interrupted_by_the_peers_bytes(&lp, b"first", |p: &InterruptsOnce| p.lost.clone());
    assert_eq!(&*p.data.borrow(), b"first");
    // The next run reads on: the EOF, then connection_lost.
    let lost = p.lost.clone();
    let exc = lp
        .run_until_complete(async move { tulip::wait_for(lost, 5.0).await })
        .unwrap();
    assert!(exc.is_none(), "{exc:?}");
    assert_eq!(&*p.data.borrow(), b"first");
    lp.close().unwrap();
}

#[test]
fn in_debug_mode_the_sock_coroutines_refuse_a_blocking_socket() {
    // asyncio's debug mode: `ValueError("the socket must be non-blocking")`
    // from sock_recv, sock_sendall, sock_recvfrom, sock_accept,
    // sock_sendfile... instead of risking a blocked loop. Each call below
    // would succeed at once (data, a connection and a datagram are
    // waiting), so without the check the test fails rather than hangs.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        lp.set_debug(true);
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (mut server, _) = listener.accept()?;
        std::io::Write::write_all(&mut server, b"waiting")?;
        let _pending = std::net::TcpStream::connect(listener.local_addr()?)?;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        udp.send_to(b"dgram", udp.local_addr()?)?;
        let refused = |r: tulip::Result<()>| match r {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("non-blocking"), "{m}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        };
        refused(lp.sock_recv(&client, 10).await.map(drop));
        refused(lp.sock_sendall(&client, b"x").await);
        // Checked first, whatever the data, as asyncio's sock_sendall does.
        refused(lp.sock_sendall(&client, b"").await);
        refused(lp.sock_accept(&listener).await.map(drop));
        refused(lp.sock_recvfrom(&udp, 10).await.map(drop));
        let file = std::fs::File::open("/proc/self/stat")?;
        refused(
            lp.sock_sendfile(&client, &file, 0, None, true)
                .await
                .map(drop),
        );
        // Once non-blocking, the same socket is accepted.
        client.set_nonblocking(true)?;
        assert_eq!(lp.sock_recv(&client, 10).await?, b"waiting");
        Ok(())
    });
}

/// Interrupts the run (Ctrl-C) at its first `eof_received`; counts them.
#[derive(Default)]
struct InterruptsAtEof {
    eofs: std::cell::Cell<u32>,
    lost: tulip::Future<Option<Error>>,
}

impl Protocol for InterruptsAtEof {
    fn eof_received(&self) -> bool {
        let n = self.eofs.get() + 1;
        self.eofs.set(n);
        if n == 1 {
            tulip::interrupt();
        }
        false
    }
    fn connection_lost(&self, exc: Option<Error>) {
        let _ = self.lost.set_result(exc);
    }
}

// conformance: L6
#[test]
fn an_interrupt_in_eof_received_never_delivers_the_eof_twice() {
    // eof_received interrupts the run (Ctrl-C). The protocol has heard the
    // EOF: the next run must not recv the EOF again and call eof_received
    // a second time (asyncio's protocol state machine: at most one
    // eof_received), and the transport must not be left reading.
    let lp = EventLoop::new().unwrap();
    let (t, p, _peer) =
        interrupted_by_the_peers_bytes(&lp, b"", |p: &InterruptsAtEof| p.lost.clone());
    assert_eq!(p.eofs.get(), 1);
    // The next run: whatever the transport does, no second eof_received.
    lp.run_until_complete(async { tulip::sleep(0.05).await })
        .unwrap();
    assert_eq!(p.eofs.get(), 1, "eof_received was called twice");
    t.close();
    let lost = p.lost.clone();
    lp.run_until_complete(async move { tulip::wait_for(lost, 5.0).await })
        .unwrap();
    lp.close().unwrap();
}

/// Panics on its first datagram; keeps the others.
#[derive(Default)]
struct PanicsOnFirstDatagram {
    got: RefCell<Vec<Vec<u8>>>,
    panicked: Cell<bool>,
}

impl DatagramProtocol for PanicsOnFirstDatagram {
    fn datagram_received(&self, data: &[u8], _: DatagramAddr) {
        if !self.panicked.replace(true) {
            panic!("datagram_received failed");
        }
        self.got.borrow_mut().push(data.to_vec());
    }
}

#[test]
fn a_panicking_datagram_received_leaves_the_next_datagrams_to_be_received() {
    // asyncio's `_read_ready` reads one datagram per call; one that raises
    // goes to the loop's exception handler, and the level-triggered
    // selector reports the socket again for the datagrams still queued.
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (st, proto) = lp
            .create_datagram_endpoint(
                || Rc::new(PanicsOnFirstDatagram::default()),
                Some(local),
                None,
            )
            .await?;
        let addr = st
            .get_extra_info("sockname")
            .and_then(|i| i.as_addr())
            .unwrap();
        // Both are queued before the loop looks: one edge for the two.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").map_err(Error::from)?;
        peer.send_to(b"one", addr).map_err(Error::from)?;
        peer.send_to(b"two", addr).map_err(Error::from)?;
        let deadline = lp.time() + 2.0;
        while proto.got.borrow().is_empty() && lp.time() < deadline {
            tulip::sleep(0.001).await?;
        }
        assert!(proto.panicked.get());
        assert_eq!(*proto.got.borrow(), [b"two".to_vec()], "stranded");
        assert_eq!(reports.borrow().len(), 1, "{:?}", reports.borrow());
        assert!(!st.is_closing(), "the endpoint stays open");
        st.close();
        Ok(())
    });
}

/// Keeps the server side's peername, as seen from `connection_lost`.
#[derive(Default)]
struct PeernameAtLost {
    made: Cell<bool>,
    transport: RefCell<Option<Rc<dyn Transport>>>,
    at_lost: RefCell<Option<Option<SocketAddr>>>,
}

impl Protocol for PeernameAtLost {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
        self.made.set(true);
    }
    fn connection_lost(&self, _: Option<Error>) {
        let t = self.transport.borrow_mut().take().expect("made");
        let peer = t.get_extra_info("peername").and_then(|i| i.as_addr());
        *self.at_lost.borrow_mut() = Some(peer);
    }
}

// conformance: N4
#[test]
fn peername_stays_known_after_the_peer_resets() {
    // asyncio takes `peername` from `accept()` (and `sockname` at the
    // transport's creation) into `_extra`: both stay known once the
    // connection is gone, when `getpeername()` fails with ENOTCONN.
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let proto = Rc::new(PeernameAtLost::default());
        let p2 = proto.clone();
        let server = lp.create_server(move || p2.clone(), "127.0.0.1", 0).await?;
        let client = std::net::TcpStream::connect(server.local_addrs()[0]).map_err(Error::from)?;
        let client_addr = client.local_addr().map_err(Error::from)?;
        let deadline = lp.time() + 2.0;
        while !proto.made.get() && lp.time() < deadline {
            tulip::sleep(0.001).await?;
        }
        assert!(proto.made.get());
        linger_zero(client.as_raw_fd());
        drop(client);
        while proto.at_lost.borrow().is_none() && lp.time() < deadline {
            tulip::sleep(0.001).await?;
        }
        assert_eq!(*proto.at_lost.borrow(), Some(Some(client_addr)));
        server.close();
        Ok(())
    });
}

#[test]
fn a_datagram_endpoint_keeps_its_names_after_it_closed() {
    // asyncio's `_extra` holds `sockname` and `peername` from the
    // transport's creation on.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").map_err(Error::from)?;
        let peer_addr = peer.local_addr().map_err(Error::from)?;
        let (ct, client) = lp
            .create_datagram_endpoint(|| Rc::new(UdpClient::default()), None, Some(peer_addr))
            .await?;
        let sockname = ct.get_extra_info("sockname").and_then(|i| i.as_addr());
        assert!(sockname.is_some());
        ct.close();
        while !client.lost.get() {
            tulip::sleep(0.001).await?;
        }
        assert_eq!(
            ct.get_extra_info("sockname").and_then(|i| i.as_addr()),
            sockname
        );
        assert_eq!(
            ct.get_extra_info("peername").and_then(|i| i.as_addr()),
            Some(peer_addr)
        );
        assert!(ct.get_extra_info("socket").is_none(), "the socket is gone");
        Ok(())
    });
}

/// `fd` seen as a `TcpStream` that is never closed: the socket of a
/// transport, handed to the `sock_*` coroutines as a user could (asyncio's
/// `transport.get_extra_info('socket')`).
fn alias_of(fd: std::os::fd::RawFd) -> std::mem::ManuallyDrop<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is an open socket owned by a transport that outlives the
    // alias; `ManuallyDrop` never closes it.
    std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// Asserts that `r` is asyncio's `RuntimeError("File descriptor N is used
/// by transport <repr>")`.
fn used_by_transport<T: std::fmt::Debug>(r: tulip::Result<T>, fd: std::os::fd::RawFd) {
    match r {
        Err(Error::Runtime(m)) => assert!(
            m.contains(&format!("file descriptor {fd} is used by transport"))
                && m.contains("SocketTransport"),
            "{m}"
        ),
        other => panic!("expected the fd {fd} to be refused as a transport's, got {other:?}"),
    }
}

#[test]
fn the_fd_of_a_live_transport_is_refused_to_add_and_remove_reader_and_writer() {
    // asyncio's `_ensure_fd_no_transport`: add_reader, add_writer,
    // remove_reader and remove_writer raise RuntimeError on the fd of a
    // transport that is not closing, instead of replacing (or removing)
    // the transport's own reader or writer, which would stall it.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, accepted, t, p) = server_and_client(&lp, Recorder::new).await?;
        let fd = t.fd();
        used_by_transport(lp.add_reader(fd, || {}), fd);
        used_by_transport(lp.add_writer(fd, || {}), fd);
        used_by_transport(lp.add_reader_edge(fd, || {}), fd);
        used_by_transport(lp.add_writer_edge(fd, || {}), fd);
        used_by_transport(lp.remove_reader(fd), fd);
        used_by_transport(lp.remove_writer(fd), fd);
        // Its own reader is still the one registered: data still arrives.
        while accepted.borrow().is_empty() {
            tulip::sleep(0.001).await?;
        }
        let peer = accepted.borrow()[0].clone();
        while peer.transport.borrow().is_none() {
            tulip::sleep(0.001).await?;
        }
        peer.t().write(b"still read")?;
        while p.data.borrow().len() < 10 {
            tulip::sleep(0.001).await?;
        }
        assert_eq!(&*p.data.borrow(), b"still read");
        // Paused reading is still the transport's: its fd stays refused.
        t.pause_reading();
        used_by_transport(lp.add_reader(fd, || {}), fd);
        t.resume_reading();
        // A closing transport no longer claims its fd (asyncio checks
        // `is_closing()`), nor does one whose connection is lost.
        t.close();
        assert!(!lp.remove_reader(fd)?, "close() removed its reader");
        p.lost.wait_done().await;
        server.close();
        Ok(())
    });
}

#[test]
fn the_sock_coroutines_refuse_the_fd_of_a_live_transport() {
    // asyncio's sock_recv, sock_recv_into, sock_sendall (and the others)
    // call `_ensure_fd_no_transport` before they wait for the fd: their
    // one-shot reader or writer would replace the transport's.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, _accepted, t, p) = server_and_client(&lp, Recorder::new).await?;
        let fd = t.fd();
        let alias = alias_of(fd);
        // Nothing to read: each would wait.
        used_by_transport(tulip::timeout(2.0).run(lp.sock_recv(&*alias, 10)).await, fd);
        let mut buf = [0u8; 10];
        used_by_transport(
            tulip::timeout(2.0)
                .run(lp.sock_recv_into(&*alias, &mut buf))
                .await,
            fd,
        );
        used_by_transport(tulip::timeout(2.0).run(lp.wait_readable(fd)).await, fd);
        // The peer does not read: 64 MiB cannot all go at once.
        let big = vec![0u8; 64 << 20];
        used_by_transport(
            tulip::timeout(2.0)
                .run(lp.sock_sendall(&*alias, &big))
                .await,
            fd,
        );
        t.abort();
        p.lost.wait_done().await;
        server.close();
        Ok(())
    });
}

#[test]
fn the_fd_of_a_live_datagram_transport_is_refused_too() {
    // asyncio's `_SelectorDatagramTransport` is in `_transports` as well:
    // sock_recvfrom and add_reader on its fd raise RuntimeError.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (st, _) = lp
            .create_datagram_endpoint(|| Rc::new(UdpEcho::default()), Some(local), None)
            .await?;
        let fd = st.get_extra_info("socket").and_then(|i| i.as_fd()).unwrap();
        used_by_transport(lp.add_reader(fd, || {}), fd);
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` is the endpoint's open socket, which outlives the
        // alias; `ManuallyDrop` never closes it.
        let alias = std::mem::ManuallyDrop::new(unsafe { std::net::UdpSocket::from_raw_fd(fd) });
        // Nothing was sent to it: sock_recvfrom would wait.
        used_by_transport(
            tulip::timeout(2.0).run(lp.sock_recvfrom(&alias, 10)).await,
            fd,
        );
        st.close();
        Ok(())
    });
}

#[test]
fn writelines_after_write_eof_fails_even_with_nothing_to_write() {
    // asyncio's writelines checks `_eof` first: `RuntimeError('Cannot call
    // writelines() after write_eof()')`, whatever the list, as write does.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (server, _accepted, t, p) = server_and_client(&lp, Recorder::new).await?;
        t.writelines(&[])?;
        t.write_eof()?;
        assert!(matches!(t.write(b""), Err(Error::Runtime(_))));
        assert!(matches!(t.writelines(&[b""]), Err(Error::Runtime(_))));
        // The message names the call made (asyncio's `Cannot call
        // writelines() after write_eof()`), and says what to do.
        for res in [t.writelines(&[]), t.writelines(&[b"x", b"y"])] {
            match res {
                Err(Error::Runtime(m)) => assert!(
                    m.starts_with("cannot call writelines() after write_eof()")
                        && m.contains("before write_eof()"),
                    "{m}"
                ),
                other => panic!("expected a RuntimeError after write_eof, got {other:?}"),
            }
        }
        match t.write(b"x") {
            Err(Error::Runtime(m)) => assert!(
                m.starts_with("cannot call write() after write_eof()")
                    && m.contains("before write_eof()"),
                "{m}"
            ),
            other => panic!("expected a RuntimeError after write_eof, got {other:?}"),
        }
        t.close();
        p.lost.wait_done().await;
        server.close();
        Ok(())
    });
}

#[test]
fn a_datagram_transport_over_a_connected_socket_sends_to_its_peer() {
    // asyncio's `create_datagram_endpoint(sock=...)` (and any
    // `_SelectorDatagramTransport`) takes `peername` from the socket's
    // getpeername(), and `sendto(data)` then uses send(): a socket
    // connected before it was wrapped is a connected endpoint.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let peer = udp_local();
        let peer_addr = peer.local_addr().map_err(Error::from)?;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(Error::from)?;
        sock.connect(peer_addr).map_err(Error::from)?;
        let waiter = lp.create_future();
        let client = Rc::new(UdpClient::default());
        let t = tulip::DatagramSocketTransport::new(
            &lp,
            sock,
            client.clone(),
            None,
            Some(waiter.clone()),
        )?;
        waiter.await?;
        assert_eq!(
            t.get_extra_info("peername").and_then(|i| i.as_addr()),
            Some(peer_addr)
        );
        t.sendto(b"to the peer", None)?;
        let (got, _) = lp.sock_recvfrom(&peer, 32).await?;
        assert_eq!(got, b"to the peer");
        t.close();
        Ok(())
    });
}

#[test]
fn a_datagram_endpoint_refuses_local_and_remote_addresses_of_two_families() {
    // asyncio's create_datagram_endpoint pairs local_addr and remote_addr
    // by family and raises ValueError('can not get address information')
    // when no family has both, before any socket is made.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        for (local, remote) in [
            (v4, v6),
            ("[::1]:0".parse().unwrap(), "127.0.0.1:9".parse().unwrap()),
        ] {
            let e = lp
                .create_datagram_endpoint(
                    || Rc::new(UdpClient::default()),
                    Some(local),
                    Some(remote),
                )
                .await
                .err()
                .expect("refused");
            assert!(
                matches!(e, Error::InvalidArgument(_)),
                "{local} -> {remote}: {e:?}"
            );
            assert!(
                e.to_string().contains("can not get address information"),
                "{e}"
            );
        }
        Ok(())
    });
}

/// Polls `fut` once by hand (inside the running task), so it suspends at
/// its first await, and gives it back to be dropped.
async fn poll_once<F: std::future::Future>(fut: F) -> std::pin::Pin<Box<F>> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    fut
}

#[test]
fn a_create_connection_dropped_before_connection_made_closes_its_transport() {
    // asyncio's `_create_connection_transport`: `except: transport.close();
    // raise` around `await waiter`. A dropped create_connection must not
    // leave a live transport (its reader registered, the peer connected)
    // that nobody holds.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let (ours, peer) = std::os::unix::net::UnixStream::pair()?;
        peer.set_nonblocking(true)?;
        let fd = ours.as_raw_fd();
        let connecting = poll_once(lp.create_connection_sock(Recorder::new, ours.into())).await;
        drop(connecting);
        // The peer sees the connection closed, and nothing is left registered.
        let got = tulip::timeout(2.0).run(lp.sock_recv(&peer, 10)).await?;
        assert!(got.is_empty(), "the peer saw EOF");
        assert!(!lp.has_reader(fd));
        Ok(())
    });
}

// ===== create_datagram_endpoint options =====

/// `getsockopt(fd, SOL_SOCKET, name)` as an int.
fn sol_socket_option(fd: std::os::fd::RawFd, name: libc::c_int) -> libc::c_int {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of a c_int and a
    // socklen_t; `fd` is an open socket.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt: {}", std::io::Error::last_os_error());
    value
}

fn fd_of(t: &tulip::DatagramSocketTransport) -> std::os::fd::RawFd {
    t.get_extra_info("socket").and_then(|i| i.as_fd()).unwrap()
}

#[test]
fn reuse_port_lets_datagram_endpoints_share_a_port() {
    // asyncio's create_datagram_endpoint(reuse_port=True) sets SO_REUSEPORT
    // before bind: endpoints that all set it bind one address and port.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = tulip::DatagramOptions::new().reuse_port(true);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (a, _) = lp
            .create_datagram_endpoint_with(|| Rc::new(UdpClient::default()), Some(any), None, &opts)
            .await?;
        assert_eq!(sol_socket_option(fd_of(&a), libc::SO_REUSEPORT), 1);
        let addr = a.get_extra_info("sockname").and_then(|i| i.as_addr());
        let (b, _) = lp
            .create_datagram_endpoint_with(|| Rc::new(UdpClient::default()), addr, None, &opts)
            .await?;
        assert_eq!(b.get_extra_info("sockname").and_then(|i| i.as_addr()), addr);
        // Without the option: the port is taken.
        let e = lp
            .create_datagram_endpoint(|| Rc::new(UdpClient::default()), addr, None)
            .await
            .err()
            .expect("the port is taken");
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{e}");
        a.close();
        b.close();
        Ok(())
    });
}

#[test]
fn allow_broadcast_sets_so_broadcast_and_sends_to_the_remote_unconnected() {
    // asyncio's create_datagram_endpoint(allow_broadcast=True) sets
    // SO_BROADCAST and does not connect to remote_addr: the transport's
    // `_address` is the remote, sent to with sendto() (peername is None),
    // and datagrams from any sender are received. (Only loopback is sent
    // to: SO_BROADCAST is checked with getsockopt.)
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let peer = udp_local();
        let peer_addr = peer.local_addr().map_err(Error::from)?;
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (plain, _) = lp
            .create_datagram_endpoint(|| Rc::new(UdpClient::default()), Some(local), None)
            .await?;
        assert_eq!(sol_socket_option(fd_of(&plain), libc::SO_BROADCAST), 0);
        plain.close();

        let opts = tulip::DatagramOptions::new().allow_broadcast(true);
        let (t, client) = lp
            .create_datagram_endpoint_with(
                || Rc::new(UdpClient::default()),
                Some(local),
                Some(peer_addr),
                &opts,
            )
            .await?;
        assert_eq!(sol_socket_option(fd_of(&t), libc::SO_BROADCAST), 1);
        assert!(t.get_extra_info("peername").is_none(), "not connected");
        t.sendto(b"to the remote", None)?;
        t.sendto(b"named", Some(peer_addr.into()))?;
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(
            matches!(
                t.sendto(b"x", Some(other.into())),
                Err(Error::InvalidArgument(_))
            ),
            "only the remote address"
        );
        let (got, from) = lp.sock_recvfrom(&peer, 32).await?;
        assert_eq!(got, b"to the remote");
        assert_eq!(lp.sock_recvfrom(&peer, 32).await?.0, b"named");
        // Unconnected: a third socket's datagram is received too.
        let third = udp_local();
        lp.sock_sendto(&third, b"from a third", from).await?;
        while client.got.borrow().is_empty() {
            tulip::sleep(0.001).await?;
        }
        assert_eq!(client.got.borrow()[0], b"from a third");
        t.close();
        Ok(())
    });
}

#[test]
fn create_datagram_endpoint_sock_serves_an_existing_socket() {
    // asyncio's create_datagram_endpoint(sock=sock): the caller's socket,
    // bound (here not connected), made non-blocking and served.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(Error::from)?;
        let addr = sock.local_addr().map_err(Error::from)?;
        let (t, _) = lp
            .create_datagram_endpoint_sock(|| Rc::new(UdpEcho::default()), sock)
            .await?;
        assert_eq!(
            t.get_extra_info("sockname").and_then(|i| i.as_addr()),
            Some(addr)
        );
        assert!(t.get_extra_info("peername").is_none());
        assert!(
            matches!(t.sendto(b"x", None), Err(Error::InvalidArgument(_))),
            "not connected: an address is needed"
        );
        let peer = udp_local();
        lp.sock_sendto(&peer, b"echo me", addr).await?;
        let (got, from) = lp.sock_recvfrom(&peer, 32).await?;
        assert_eq!((got.as_slice(), from), (&b"echo me"[..], addr));
        t.close();
        Ok(())
    });
}

// ===== create_datagram_endpoint with host names =====

#[test]
fn a_datagram_endpoint_resolves_localhost_for_both_addresses() {
    // asyncio's create_datagram_endpoint(local_addr=('localhost', 0),
    // remote_addr=(host, port)): both resolved with getaddrinfo, off the
    // loop, and a socket made for a family they share.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = tulip::DatagramOptions::new();
        let (st, _) = lp
            .create_datagram_endpoint_host(
                || Rc::new(UdpEcho::default()),
                Some(("localhost", 0)),
                None,
                &opts,
            )
            .await?;
        let addr = st
            .get_extra_info("sockname")
            .and_then(|i| i.as_addr())
            .unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_ne!(addr.port(), 0);
        let (ct, client) = lp
            .create_datagram_endpoint_host(
                || Rc::new(UdpClient::default()),
                Some(("localhost", 0)),
                Some(("localhost", addr.port())),
                &opts,
            )
            .await?;
        let peer = ct.get_extra_info("peername").and_then(|i| i.as_addr());
        assert_eq!(peer.map(|p| p.port()), Some(addr.port()));
        assert_eq!(
            peer.map(|p| p.is_ipv4()),
            Some(addr.is_ipv4()),
            "a family common to both"
        );
        ct.sendto(b"resolved", None)?;
        while client.got.borrow().is_empty() {
            tulip::sleep(0.005).await?;
        }
        assert_eq!(client.got.borrow()[0], b"resolved");
        ct.close();
        st.close();
        Ok(())
    });
}

#[test]
fn a_resolved_datagram_endpoint_picks_the_family_the_remote_has() {
    // The remote's family decides an endpoint with no local address; and
    // with both, a local address of another family than the remote's is
    // asyncio's ValueError('can not get address information'), before any
    // socket is made.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = tulip::DatagramOptions::new();
        let peer = udp_local();
        let port = peer.local_addr().map_err(Error::from)?.port();
        let (t, _) = lp
            .create_datagram_endpoint_host(
                || Rc::new(UdpClient::default()),
                None,
                Some(("127.0.0.1", port)),
                &opts,
            )
            .await?;
        let me = t
            .get_extra_info("sockname")
            .and_then(|i| i.as_addr())
            .unwrap();
        assert!(me.is_ipv4(), "{me}");
        t.sendto(b"v4", None)?;
        let (got, from) = lp.sock_recvfrom(&peer, 8).await?;
        assert_eq!((&got[..], from.port()), (&b"v4"[..], me.port()));
        t.close();
        let e = lp
            .create_datagram_endpoint_host(
                || Rc::new(UdpClient::default()),
                Some(("127.0.0.1", 0)),
                Some(("::1", 9)),
                &opts,
            )
            .await
            .err()
            .expect("no common family");
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(
            e.to_string().contains("can not get address information"),
            "{e}"
        );
        Ok(())
    });
}

// conformance: N3
#[test]
fn a_flushed_write_buffer_gives_back_the_memory_of_a_burst() {
    if common::rerun_alone("a_flushed_write_buffer_gives_back_the_memory_of_a_burst") {
        return;
    }
    // asyncio's write buffer is a deque of the written chunks (3.12+): each
    // one is freed as it is sent, and an emptied buffer holds nothing. A
    // 32 MiB burst to a peer that reads it later must not keep 32 MiB per
    // connection for the rest of its life.
    run_bounded(20.0, async {
        let lp = tulip::get_running_loop()?;
        let (ours, peer) = std::os::unix::net::UnixStream::pair()?;
        peer.set_nonblocking(true)?;
        let (t, _p) = lp
            .connect_accepted_socket(Recorder::new, ours.into())
            .await?;
        const TOTAL: usize = 32 << 20;
        let chunk = vec![b'x'; 64 * 1024];
        let mut buf = vec![0u8; 256 * 1024];
        let before = common::heap_in_use() as isize;
        for _ in 0..TOTAL / chunk.len() {
            t.write(&chunk)?;
        }
        assert!(
            t.get_write_buffer_size() > TOTAL / 2,
            "the burst is buffered"
        );
        let mut got = 0;
        while got < TOTAL {
            got += lp.sock_recv_into(&peer, &mut buf).await?;
        }
        assert_eq!(t.get_write_buffer_size(), 0, "every byte was sent");
        let kept = common::heap_in_use() as isize - before;
        assert!(
            kept < (1 << 20),
            "the empty write buffer still holds {kept} bytes after a {TOTAL}-byte burst"
        );
        t.close();
        Ok(())
    });
}

// ===== set_protocol / get_protocol (asyncio's BaseTransport) =====

/// The address of the object an `Rc` points to, to compare an
/// `Rc<dyn Protocol>` with the `Rc` of a concrete protocol.
fn addr_of<T: ?Sized>(p: &Rc<T>) -> *const () {
    Rc::as_ptr(p) as *const ()
}

/// The protocol switched to: echoes upper-cased, and logs the rest.
struct Upper {
    transport: Rc<dyn Transport>,
    log: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Upper {
    fn data_received(&self, data: &[u8]) {
        self.transport.write(&data.to_ascii_uppercase()).unwrap();
    }
    fn eof_received(&self) -> bool {
        self.log.borrow_mut().push("upper: eof".into());
        false
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.log.borrow_mut().push("upper: lost".into());
    }
}

/// Echoes lines as they are until the line "UPGRADE", then hands the
/// connection to an [`Upper`] with `set_protocol`. As in asyncio, the
/// rest of the chunk that held the line was given to this protocol, which
/// passes it on; the transport sends it nothing after the switch.
struct Upgrader {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    pending: RefCell<Vec<u8>>,
    upgraded: Cell<bool>,
    log: Rc<RefCell<Vec<String>>>,
}

impl Protocol for Upgrader {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn data_received(&self, data: &[u8]) {
        if self.upgraded.get() {
            self.log
                .borrow_mut()
                .push(format!("old: data after the switch: {data:?}"));
            return;
        }
        let t = self.transport.borrow().clone().expect("made");
        self.pending.borrow_mut().extend_from_slice(data);
        loop {
            let line = {
                let mut pending = self.pending.borrow_mut();
                let Some(i) = pending.iter().position(|&b| b == b'\n') else {
                    return;
                };
                pending.drain(..=i).collect::<Vec<u8>>()
            };
            if line != b"UPGRADE\n" {
                t.write(&line).unwrap();
                continue;
            }
            let upper = Rc::new(Upper {
                transport: t.clone(),
                log: self.log.clone(),
            });
            t.set_protocol(upper.clone()).unwrap();
            self.upgraded.set(true);
            let got = t.get_protocol().expect("a protocol");
            assert_eq!(
                addr_of(&got),
                addr_of(&upper),
                "get_protocol gives the new one"
            );
            let rest = std::mem::take(&mut *self.pending.borrow_mut());
            if !rest.is_empty() {
                upper.data_received(&rest);
            }
            return;
        }
    }
    fn eof_received(&self) -> bool {
        self.log.borrow_mut().push("old: eof".into());
        false
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.log.borrow_mut().push("old: lost".into());
    }
}

#[test]
fn set_protocol_in_data_received_switches_protocols_for_what_follows() {
    // asyncio's transport.set_protocol (an HTTP Upgrade): the next read,
    // the EOF and connection_lost go to the new protocol; the bytes after
    // the line in the same segment were the old protocol's to pass on.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let server = lp
            .create_server(
                move || {
                    Rc::new(Upgrader {
                        transport: RefCell::new(None),
                        pending: RefCell::new(Vec::new()),
                        upgraded: Cell::new(false),
                        log: l.clone(),
                    })
                },
                "127.0.0.1",
                0,
            )
            .await?;
        let port = server.local_addrs()[0].port();
        let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
        w.write(b"hello\nUPGRADE\nabc")?; // one segment
        assert_eq!(r.readexactly(9).await?, b"hello\nABC");
        w.write(b"def\nUPGRADE\n")?;
        assert_eq!(r.readexactly(12).await?, b"DEF\nUPGRADE\n");
        w.write_eof()?;
        assert_eq!(r.read_to_eof().await?, b"");
        server.close();
        server.wait_closed().await?;
        assert_eq!(*log.borrow(), ["upper: eof", "upper: lost"]);
        Ok(())
    });
}

/// A [`BufferedProtocol`] whose buffer holds exactly "UPGRADE\n": the read
/// that fills it is not short, so the transport reads again in the same
/// edge, and that read must already go to the protocol set meanwhile.
struct SmallBufferUpgrader {
    transport: RefCell<Option<Rc<dyn Transport>>>,
    buf: RefCell<[u8; 8]>,
    log: Rc<RefCell<Vec<String>>>,
    upgraded: Cell<bool>,
}

impl tulip::BufferedProtocol for SmallBufferUpgrader {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn get_buffer(&self, _: usize) -> std::cell::RefMut<'_, [u8]> {
        if self.upgraded.get() {
            self.log
                .borrow_mut()
                .push("old: read after the switch".into());
        }
        std::cell::RefMut::map(self.buf.borrow_mut(), |b| &mut b[..])
    }
    fn buffer_updated(&self, n: usize) {
        assert_eq!(&self.buf.borrow()[..n], b"UPGRADE\n");
        let t = self.transport.borrow().clone().expect("made");
        let upper = Rc::new(Upper {
            transport: t.clone(),
            log: self.log.clone(),
        });
        t.set_protocol(upper).unwrap();
        self.upgraded.set(true);
    }
}

#[test]
fn a_protocol_set_mid_edge_gets_the_next_read_of_that_edge() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let server = lp
            .create_server_buffered(
                move || {
                    Rc::new(SmallBufferUpgrader {
                        transport: RefCell::new(None),
                        buf: RefCell::new([0; 8]),
                        log: l.clone(),
                        upgraded: Cell::new(false),
                    })
                },
                "127.0.0.1",
                0,
                &tulip::ServerOptions::new(),
            )
            .await?;
        let port = server.local_addrs()[0].port();
        let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
        w.write(b"UPGRADE\nabc")?; // one segment: one edge, two reads
        assert_eq!(r.readexactly(3).await?, b"ABC");
        w.close();
        server.close();
        server.wait_closed().await?;
        assert_eq!(*log.borrow(), ["upper: eof", "upper: lost"]);
        Ok(())
    });
}

/// A [`BufferedProtocol`] that upper-cases what it reads through a buffer
/// of 4 bytes.
struct BufferedUpper {
    transport: Rc<dyn Transport>,
    buf: RefCell<[u8; 4]>,
}

impl tulip::BufferedProtocol for BufferedUpper {
    fn get_buffer(&self, _: usize) -> std::cell::RefMut<'_, [u8]> {
        std::cell::RefMut::map(self.buf.borrow_mut(), |b| &mut b[..])
    }
    fn buffer_updated(&self, n: usize) {
        let up = self.buf.borrow()[..n].to_ascii_uppercase();
        self.transport.write(&up).unwrap();
    }
}

/// Answers "OK\n" to its first bytes, and from then on reads into a
/// [`BufferedUpper`].
#[derive(Default)]
struct SwitchesToBuffered(RefCell<Option<Rc<dyn Transport>>>);

impl Protocol for SwitchesToBuffered {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        *self.0.borrow_mut() = Some(transport);
    }
    fn data_received(&self, _: &[u8]) {
        let t = self.0.borrow().clone().expect("made");
        let next = Rc::new(BufferedUpper {
            transport: t.clone(),
            buf: RefCell::new([0; 4]),
        });
        t.set_buffered_protocol(next).unwrap();
        assert!(t.get_protocol().is_none(), "a buffered protocol now");
        t.write(b"OK\n").unwrap();
    }
}

#[test]
fn set_buffered_protocol_switches_to_the_buffered_read_path() {
    // asyncio's _SelectorSocketTransport.set_protocol picks the read path
    // by the new protocol's kind.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let server = lp
            .create_server(|| Rc::new(SwitchesToBuffered::default()), "127.0.0.1", 0)
            .await?;
        let port = server.local_addrs()[0].port();
        let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
        w.write(b"switch")?;
        assert_eq!(r.readline().await?, b"OK\n");
        w.write(b"abcdefghij")?;
        assert_eq!(r.readexactly(10).await?, b"ABCDEFGHIJ");
        w.close();
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn set_protocol_on_a_datagram_endpoint_sends_the_next_datagrams_to_the_new_one() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (t, first) = lp
            .create_datagram_endpoint(|| Rc::new(UdpClient::default()), Some(local), None)
            .await?;
        let addr = t
            .get_extra_info("sockname")
            .and_then(|i| i.as_addr())
            .unwrap();
        let got = t.get_protocol().expect("a protocol");
        assert_eq!(addr_of(&got), addr_of(&first));
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").map_err(Error::from)?;
        peer.send_to(b"one", addr).map_err(Error::from)?;
        while first.got.borrow().is_empty() {
            tulip::sleep(0.001).await?;
        }
        let second = Rc::new(UdpClient::default());
        t.set_protocol(second.clone())?;
        peer.send_to(b"two", addr).map_err(Error::from)?;
        while second.got.borrow().is_empty() {
            tulip::sleep(0.001).await?;
        }
        t.close();
        tulip::sleep(0.0).await?;
        tulip::sleep(0.0).await?;
        assert_eq!(*first.got.borrow(), [b"one".to_vec()]);
        assert_eq!(*second.got.borrow(), [b"two".to_vec()]);
        assert!(!first.lost.get() && second.lost.get());
        // After connection_lost, nothing is kept.
        t.set_protocol(Rc::new(UdpClient::default()))?;
        assert!(t.get_protocol().is_none());
        Ok(())
    });
}

#[test]
fn connection_made_goes_to_the_protocol_the_transport_was_made_with() {
    // asyncio's transport __init__ does call_soon(self._protocol.connection_made,
    // self): a protocol set before that call runs hears the data, not
    // connection_made.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let mut peer = std::net::TcpStream::connect(listener.local_addr().map_err(Error::from)?)
            .map_err(Error::from)?;
        let (sock, _) = listener.accept().map_err(Error::from)?;
        let (first, second) = (Recorder::new(), Recorder::new());
        let t = tulip::SocketTransport::new(&lp, sock.into(), first.clone(), None)?;
        t.set_protocol(second.clone())?;
        std::io::Write::write_all(&mut peer, b"x").map_err(Error::from)?;
        while second.data.borrow().is_empty() {
            tulip::sleep(0.001).await?;
        }
        assert_eq!(first.events(), ["made"]);
        assert_eq!(second.events(), ["data"]);
        t.abort();
        assert_eq!(second.lost.clone().await?, None);
        assert_eq!(first.events(), ["made"]);
        Ok(())
    });
}

/// `write_eof` on a socket the OS will not shut down (the peer reset the
/// connection while this side was not reading) fails with the OS's error,
/// as asyncio's `write_eof` raises `shutdown`'s `OSError`.
// conformance: N4
#[test]
fn write_eof_on_a_reset_connection_is_an_error() {
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        listener.set_nonblocking(true).map_err(Error::from)?;
        let port = listener.local_addr().map_err(Error::from)?.port();
        let (t, _client) = connect_recorder(&lp, port).await?;
        let (peer, _) = lp.sock_accept(&listener).await?;
        t.pause_reading(); // the transport does not see the reset
        linger_zero(peer.as_raw_fd());
        drop(peer);
        // Wait (bounded by run_bounded) until the reset has arrived.
        loop {
            let mut b = [0u8; 1];
            // SAFETY: t's fd is an open socket; b is a valid 1-byte buffer.
            let n = unsafe {
                libc::recv(
                    t.fd(),
                    b.as_mut_ptr().cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECONNRESET) {
                break;
            }
            tulip::sleep(0.001).await?;
        }
        let err = t.write_eof().expect_err("shutdown of a reset connection");
        assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
        t.abort();
        Ok(())
    });
}

/// Counts what a datagram endpoint hears, for the ICMP test below.
#[derive(Default)]
struct UdpErrors {
    errors: RefCell<Vec<Error>>,
    lost: Cell<bool>,
}

impl DatagramProtocol for UdpErrors {
    fn error_received(&self, exc: Error) {
        self.errors.borrow_mut().push(exc);
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(true);
    }
}

// conformance: N4
#[test]
fn an_icmp_port_unreachable_reaches_error_received_and_the_endpoint_stays_open() {
    // asyncio's `_read_ready` gives the OSError of `recvfrom` to
    // `error_received`: a connected UDP socket learns of the ICMP port
    // unreachable its datagram caused as ECONNREFUSED on the next receive
    // (epoll reports EPOLLERR). The endpoint stays open, and the next
    // datagram causes (and reports) the next error.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").map_err(Error::from)?;
        let addr = closed.local_addr().map_err(Error::from)?;
        drop(closed);
        let (t, p) = lp
            .create_datagram_endpoint(|| Rc::new(UdpErrors::default()), None, Some(addr))
            .await?;
        for want in 1..=2 {
            t.sendto(b"anyone?", None)?;
            let deadline = lp.time() + 2.0;
            while p.errors.borrow().len() < want && lp.time() < deadline {
                tulip::sleep(0.005).await?;
            }
            let errors = p.errors.borrow();
            assert_eq!(errors.len(), want, "{errors:?}");
            assert_eq!(
                errors[want - 1].io_kind(),
                Some(std::io::ErrorKind::ConnectionRefused),
                "{errors:?}"
            );
            assert!(!t.is_closing(), "an error_received does not close");
            assert!(!p.lost.get());
        }
        t.close();
        Ok(())
    });
}

#[test]
fn a_cancelled_sock_sendall_removes_its_writer_and_the_socket_stays_usable() {
    // asyncio's `_sock_write_done` removes the writer of a cancelled
    // sock_sendall; what it sent before the cancel stays sent, and the
    // next sock_sendall on the socket works.
    run_bounded(5.0, async {
        use std::io::Read;
        let lp = tulip::get_running_loop()?;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
        a.set_nonblocking(true).map_err(Error::from)?;
        b.set_nonblocking(true).map_err(Error::from)?;
        let a = Rc::new(a);
        let fd = a.as_raw_fd();
        let (lp2, a2) = (lp.clone(), a.clone());
        // More than the socket buffers hold: the peer does not read yet.
        let big = tulip::create_task(async move { lp2.sock_sendall(&*a2, &[7u8; 8 << 20]).await })?;
        common::settle().await?;
        assert!(!big.done(), "8 MiB cannot all go at once");
        assert!(lp.has_writer(fd), "it waits on a writer");
        assert!(big.cancel());
        let res = tulip::wait_for(big, 2.0).await;
        assert!(matches!(res, Err(Error::Cancelled(_))), "{res:?}");
        assert!(!lp.has_writer(fd), "the cancelled wait's writer is gone");
        // The peer gets a part of the big send, then all of the next one.
        let mut buf = vec![0u8; 1 << 16];
        let mut sent_before = 0;
        loop {
            match b.read(&mut buf) {
                Ok(n) => {
                    assert!(n > 0 && buf[..n].iter().all(|&x| x == 7));
                    sent_before += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        assert!(sent_before > 0 && sent_before < 8 << 20, "{sent_before}");
        tulip::timeout(2.0)
            .run(lp.sock_sendall(&*a, b"after"))
            .await?;
        assert!(!lp.has_writer(fd));
        let mut after = [0u8; 8];
        let n = b.read(&mut after).map_err(Error::from)?;
        assert_eq!(&after[..n], b"after");
        Ok(())
    });
}

#[test]
fn sock_connect_to_a_port_nobody_listens_on_is_connection_refused() {
    // asyncio's `_sock_connect_cb`: `OSError(err, 'Connect call failed
    // ADDRESS')`, a ConnectionRefusedError for ECONNREFUSED; no writer is
    // left behind.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let addr = closed.local_addr().map_err(Error::from)?;
        drop(closed);
        let err = lp.sock_connect(addr).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{err}"
        );
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("connect call failed ({addr})")),
            "{err}"
        );
        Ok(())
    });
}
