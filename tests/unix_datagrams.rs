//! Unix datagram endpoints: asyncio's `create_datagram_endpoint` with
//! `family=AF_UNIX` (`create_unix_datagram_endpoint`), and the `sock_sendto`
//! family on Unix datagram sockets (`sock_sendto_unix`, ...). Sockets live in a
//! temporary directory per test, removed at the end.

mod common;

use std::cell::{Cell, RefCell};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use common::run_bounded;
use tulip::transports::prelude::*;
use tulip::{DatagramSocketTransport, Error};

/// A fresh directory for one test's socket files; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tulip-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Echoes every datagram to its sender, and records where they came from.
#[derive(Default)]
struct Echo {
    transport: RefCell<Option<Rc<dyn DatagramTransport>>>,
    senders: RefCell<Vec<DatagramAddr>>,
}

impl DatagramProtocol for Echo {
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn datagram_received(&self, data: &[u8], addr: DatagramAddr) {
        self.senders.borrow_mut().push(addr.clone());
        let t = self.transport.borrow().clone().expect("made");
        t.sendto(data, Some(addr)).unwrap();
    }
}

/// Keeps what it receives; notes `connection_lost`.
#[derive(Default, Debug)]
struct Client {
    got: RefCell<Vec<Vec<u8>>>,
    errors: RefCell<Vec<Error>>,
    lost: Cell<bool>,
}

impl DatagramProtocol for Client {
    fn datagram_received(&self, data: &[u8], _: DatagramAddr) {
        self.got.borrow_mut().push(data.to_vec());
    }
    fn error_received(&self, exc: Error) {
        self.errors.borrow_mut().push(exc);
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(true);
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) -> tulip::Result<()> {
    while !done() {
        tulip::sleep(0.005).await?;
    }
    Ok(())
}

fn unix_name(t: &DatagramSocketTransport, which: &str) -> Option<PathBuf> {
    let info = t.get_extra_info(which)?;
    info.as_unix_addr()?.as_pathname().map(Path::to_path_buf)
}

/// One receive on the non-blocking `peer`: the datagram's length, or `None`
/// after letting the loop run for 1 ms when nothing has arrived yet.
async fn recv_or_yield(peer: &UnixDatagram, buf: &mut [u8]) -> tulip::Result<Option<usize>> {
    match peer.recv(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tulip::sleep(0.001).await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// A client endpoint connected to a peer that does not read yet, sent
/// `datagram(i)` until the kernel refuses one (the peer's queue is full) and
/// the transport has queued it. Returns the transport (with its protocol
/// kept alive), the peer, and how many datagrams were sent.
async fn endpoint_with_a_full_peer(
    dir: &TempDir,
    datagram: impl Fn(u32) -> Vec<u8>,
) -> tulip::Result<(Rc<DatagramSocketTransport>, Rc<Client>, UnixDatagram, u32)> {
    endpoint_of_with_a_full_peer(dir, || Rc::new(Client::default()), datagram).await
}

/// [`endpoint_with_a_full_peer`], with the protocol `factory` makes.
async fn endpoint_of_with_a_full_peer<P: DatagramProtocol + 'static>(
    dir: &TempDir,
    factory: impl FnOnce() -> Rc<P>,
    datagram: impl Fn(u32) -> Vec<u8>,
) -> tulip::Result<(Rc<DatagramSocketTransport>, Rc<P>, UnixDatagram, u32)> {
    let (server_path, client_path) = (dir.path("server.sock"), dir.path("client.sock"));
    let peer = UnixDatagram::bind(&server_path).map_err(Error::from)?;
    let lp = tulip::get_running_loop()?;
    let (ct, client) = lp
        .create_unix_datagram_endpoint(factory, Some(&client_path), Some(&server_path))
        .await?;
    let mut sent = 0u32;
    while ct.get_write_buffer_size() == 0 {
        ct.sendto(&datagram(sent), None)?;
        sent += 1;
        assert!(sent < 100_000, "the peer's queue never filled");
    }
    Ok((ct, client, peer, sent))
}

#[test]
fn unix_datagram_echo() {
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-echo");
        let (server_path, client_path) = (dir.path("server.sock"), dir.path("client.sock"));
        let lp = tulip::get_running_loop()?;
        let (st, echo) = lp
            .create_unix_datagram_endpoint(|| Rc::new(Echo::default()), Some(&server_path), None)
            .await?;
        assert_eq!(unix_name(&st, "sockname"), Some(server_path.clone()));
        assert!(st.get_extra_info("peername").is_none());
        let (ct, client) = lp
            .create_unix_datagram_endpoint(
                || Rc::new(Client::default()),
                Some(&client_path),
                Some(&server_path),
            )
            .await?;
        assert_eq!(unix_name(&ct, "peername"), Some(server_path.clone()));
        // Datagrams keep their boundaries and their order.
        for i in 1..=10u8 {
            ct.sendto(&vec![i; 100 * i as usize], None)?;
        }
        wait_until(|| client.got.borrow().len() == 10).await?;
        for (i, d) in client.got.borrow().iter().enumerate() {
            let n = i as u8 + 1;
            assert_eq!(d, &vec![n; 100 * n as usize]);
        }
        // The server saw the client's path as the sender.
        let senders = echo.senders.borrow().clone();
        assert!(senders
            .iter()
            .all(|a| a.as_pathname() == Some(client_path.as_path())));
        // A connected endpoint sends only to its peer, and only to paths.
        let other = DatagramAddr::from_path(dir.path("other.sock"))?;
        let e = ct.sendto(b"x", Some(other)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        let e = ct
            .sendto(
                b"x",
                Some(
                    "127.0.0.1:9"
                        .parse::<std::net::SocketAddr>()
                        .unwrap()
                        .into(),
                ),
            )
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        ct.close();
        st.close();
        wait_until(|| client.lost.get()).await?;
        assert!(
            ct.get_extra_info("socket").is_none(),
            "the socket is closed"
        );
        Ok(())
    });
}

#[test]
fn an_unconnected_unix_endpoint_sends_to_any_path() {
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-unconnected");
        let (server_path, client_path) = (dir.path("server.sock"), dir.path("client.sock"));
        let lp = tulip::get_running_loop()?;
        let (st, _) = lp
            .create_unix_datagram_endpoint(|| Rc::new(Echo::default()), Some(&server_path), None)
            .await?;
        let (ct, client) = lp
            .create_unix_datagram_endpoint(|| Rc::new(Client::default()), Some(&client_path), None)
            .await?;
        let e = ct.sendto(b"x", None).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "not connected: {e}");
        ct.sendto(b"ping", Some(DatagramAddr::from_path(&server_path)?))?;
        wait_until(|| client.got.borrow().len() == 1).await?;
        assert_eq!(client.got.borrow()[0], b"ping");
        // Sending to a path nobody is bound to reaches error_received; the
        // endpoint stays open.
        ct.sendto(
            b"lost",
            Some(DatagramAddr::from_path(dir.path("nobody.sock"))?),
        )?;
        assert_eq!(client.errors.borrow().len(), 1);
        assert_eq!(
            client.errors.borrow()[0].io_kind(),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(!ct.is_closing());
        ct.close();
        st.close();
        Ok(())
    });
}

#[test]
fn a_full_receiver_queues_datagrams_until_it_reads() {
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-full");
        // Until the kernel refuses (the peer's queue is full), then more.
        let (ct, _client, peer, mut sent) =
            endpoint_with_a_full_peer(&dir, |i| i.to_be_bytes().to_vec()).await?;
        for _ in 0..10 {
            ct.sendto(&sent.to_be_bytes(), None)?;
            sent += 1;
        }
        assert_eq!(
            ct.get_write_buffer_size(),
            11 * (4 + 8),
            "8 bytes of header each"
        );
        // The peer reads everything, in order; the loop's writer sends the rest.
        peer.set_nonblocking(true).map_err(Error::from)?;
        let mut next = 0u32;
        let mut buf = [0u8; 16];
        while next < sent {
            if let Some(n) = recv_or_yield(&peer, &mut buf).await? {
                assert_eq!(&buf[..n], next.to_be_bytes());
                next += 1;
            }
        }
        assert_eq!(ct.get_write_buffer_size(), 0);
        ct.close();
        Ok(())
    });
}

#[test]
fn unix_datagram_endpoint_errors() {
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-errors");
        let lp = tulip::get_running_loop()?;
        let factory = || Rc::new(Client::default());

        // A regular file in the way is neither removed nor bound over.
        let file = dir.path("file");
        std::fs::write(&file, b"keep me").map_err(Error::from)?;
        let e = lp
            .create_unix_datagram_endpoint(factory, Some(&file), None)
            .await
            .unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{e}");
        assert!(
            e.to_string()
                .contains("the path exists and is not a socket"),
            "{e}"
        );
        assert_eq!(std::fs::read(&file).map_err(Error::from)?, b"keep me");

        // A stale socket file (its socket is closed) is removed, as asyncio does.
        let stale = dir.path("stale.sock");
        drop(UnixDatagram::bind(&stale).map_err(Error::from)?);
        assert!(stale.exists());
        let (t, _) = lp
            .create_unix_datagram_endpoint(factory, Some(&stale), None)
            .await?;
        assert_eq!(unix_name(&t, "sockname"), Some(stale.clone()));
        t.close();

        // Connecting: to nothing, then to a stale socket file.
        let missing = dir.path("missing.sock");
        let e = lp
            .create_unix_datagram_endpoint(factory, None, Some(&missing))
            .await
            .unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("connect call failed ({})", missing.display())),
            "{e}"
        );
        let dead = dir.path("dead.sock");
        drop(UnixDatagram::bind(&dead).map_err(Error::from)?);
        let e = lp
            .create_unix_datagram_endpoint(factory, None, Some(&dead))
            .await
            .unwrap_err();
        assert_eq!(
            e.io_kind(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "{e}"
        );

        // A path too long for a socket address.
        let long = dir.path(&"x".repeat(200));
        let e = lp
            .create_unix_datagram_endpoint(factory, Some(&long), None)
            .await
            .unwrap_err();
        assert_eq!(e.io_kind(), Some(std::io::ErrorKind::InvalidInput), "{e}");
        Ok(())
    });
}

#[test]
fn the_write_buffer_size_counts_8_bytes_of_header_per_queued_datagram() {
    // asyncio 3.12+: `_buffer_size += len(data) + 8` for each datagram
    // queued (the high-water mark then bounds many tiny datagrams too), and
    // the same is taken off as each one is sent.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-header-size");
        let (ct, _client, peer, _) = endpoint_with_a_full_peer(&dir, |_| b"abc".to_vec()).await?;
        let lp = tulip::get_running_loop()?;
        assert_eq!(ct.get_write_buffer_size(), 3 + 8);
        ct.sendto(b"", None)?;
        assert_eq!(
            ct.get_write_buffer_size(),
            3 + 8 + 8,
            "an empty datagram too"
        );
        // The peer reads; the size goes back to 0 exactly.
        peer.set_nonblocking(true).map_err(Error::from)?;
        let mut buf = [0u8; 16];
        let deadline = lp.time() + 5.0;
        while ct.get_write_buffer_size() > 0 && lp.time() < deadline {
            recv_or_yield(&peer, &mut buf).await?;
        }
        assert_eq!(ct.get_write_buffer_size(), 0);
        ct.close();
        Ok(())
    });
}

/// Records `pause_writing` and `resume_writing`; sends `on_resume` (once)
/// from `resume_writing`.
#[derive(Default)]
struct Flow {
    transport: RefCell<Option<Rc<dyn DatagramTransport>>>,
    events: RefCell<Vec<&'static str>>,
    on_resume: RefCell<Option<Vec<u8>>>,
}

impl DatagramProtocol for Flow {
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) {
        *self.transport.borrow_mut() = Some(transport);
    }
    fn pause_writing(&self) {
        self.events.borrow_mut().push("pause");
    }
    fn resume_writing(&self) {
        self.events.borrow_mut().push("resume");
        let data = self.on_resume.borrow_mut().take();
        if let Some(data) = data {
            let t = self.transport.borrow().clone().expect("made");
            t.sendto(&data, None).unwrap();
        }
    }
}

/// The datagram size of the flow-control tests: 7000 bytes and 8 of header
/// each; ten queued go above the default high-water mark (64 KiB), two are
/// at most the low-water mark (16 KiB).
const FLOW_DATAGRAM: usize = 7000;

/// A connected endpoint whose peer is full, then sent datagrams of
/// `FLOW_DATAGRAM` bytes until its protocol is paused. Returns how many are
/// queued.
async fn paused_endpoint(
    dir: &TempDir,
) -> tulip::Result<(Rc<DatagramSocketTransport>, Rc<Flow>, UnixDatagram, usize)> {
    let (ct, flow, peer, _) =
        endpoint_of_with_a_full_peer(dir, || Rc::new(Flow::default()), |_| vec![1; FLOW_DATAGRAM])
            .await?;
    while flow.events.borrow().is_empty() {
        ct.sendto(&[1; FLOW_DATAGRAM], None)?;
    }
    assert_eq!(*flow.events.borrow(), ["pause"]);
    let queued = ct.get_write_buffer_size() / (FLOW_DATAGRAM + 8);
    peer.set_nonblocking(true).map_err(Error::from)?;
    Ok((ct, flow, peer, queued))
}

// conformance: N3
#[test]
fn datagram_write_buffer_limits_drive_pause_and_resume_writing() {
    // asyncio's datagram transport has `_FlowControlMixin`'s
    // set_write_buffer_limits/get_write_buffer_limits: the defaults are
    // (16 KiB, 64 KiB), new marks pause a queue already above `high` at
    // once, and the writer resumes the protocol at `low`.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-limits");
        let (ct, flow, peer, _) =
            endpoint_of_with_a_full_peer(&dir, || Rc::new(Flow::default()), |_| vec![1; 100])
                .await?;
        assert_eq!(ct.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
        assert!(ct.set_write_buffer_limits(Some(1), Some(2)).is_err());
        assert_eq!(ct.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
        // One datagram (108 bytes) is queued: under a high mark of 200.
        assert_eq!(ct.get_write_buffer_size(), 108);
        ct.set_write_buffer_limits(Some(200), None)?;
        assert_eq!(ct.get_write_buffer_limits(), (50, 200));
        assert!(flow.events.borrow().is_empty());
        // Above a high mark of 40 (4 × low).
        ct.set_write_buffer_limits(None, Some(10))?;
        assert_eq!(ct.get_write_buffer_limits(), (10, 40));
        assert_eq!(*flow.events.borrow(), ["pause"], "paused at once");
        ct.sendto(&[2; 100], None)?;
        assert_eq!(*flow.events.borrow(), ["pause"], "paused once");
        // The peer reads everything: the queue drains to 0 (<= low).
        peer.set_nonblocking(true).map_err(Error::from)?;
        let mut buf = vec![0u8; 200];
        let lp = tulip::get_running_loop()?;
        let deadline = lp.time() + 5.0;
        while ct.get_write_buffer_size() > 0 && lp.time() < deadline {
            recv_or_yield(&peer, &mut buf).await?;
        }
        assert_eq!(ct.get_write_buffer_size(), 0);
        assert_eq!(*flow.events.borrow(), ["pause", "resume"]);
        ct.close();
        Ok(())
    });
}

// conformance: N3
#[test]
fn a_datagram_sent_from_resume_writing_is_not_stranded() {
    // asyncio's _sendto_ready calls _maybe_resume_protocol ("May append to
    // buffer"), then removes the writer only if the buffer is empty.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-resume-sends");
        let (ct, flow, peer, queued) = paused_endpoint(&dir).await?;
        *flow.on_resume.borrow_mut() = Some(b"after resume".to_vec());
        // The peer makes room for exactly the queued datagrams: the writer
        // sends them all and fills the peer again, so the datagram that
        // resume_writing sends is queued.
        let mut buf = vec![0u8; FLOW_DATAGRAM + 100];
        for _ in 0..queued {
            peer.recv(&mut buf).map_err(Error::from)?;
        }
        wait_until(|| flow.events.borrow().len() == 2).await?;
        assert_eq!(*flow.events.borrow(), ["pause", "resume"]);
        // The peer reads on: the last datagram is resume_writing's.
        let lp = tulip::get_running_loop()?;
        let deadline = lp.time() + 2.0;
        let mut last = Vec::new();
        while last != b"after resume" && lp.time() < deadline {
            if let Some(n) = recv_or_yield(&peer, &mut buf).await? {
                last = buf[..n].to_vec();
            }
        }
        assert!(
            last == b"after resume",
            "resume_writing's datagram never came; still queued: {} bytes",
            ct.get_write_buffer_size()
        );
        assert_eq!(ct.get_write_buffer_size(), 0);
        ct.close();
        Ok(())
    });
}

// conformance: N3
#[test]
fn resume_writing_fires_at_the_low_water_mark_while_datagrams_remain() {
    // asyncio's _sendto_ready breaks out of its loop on BlockingIOError and
    // still calls _maybe_resume_protocol: the protocol resumes once the
    // buffer is down to the low-water mark, not only once it is empty.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-low-water");
        let (ct, flow, peer, queued) = paused_endpoint(&dir).await?;
        assert!(queued > 2);
        // Room for all but two: the writer sends those, and the kernel
        // refuses the last two (2 * 7008 bytes, under the 16 KiB low mark).
        let mut buf = vec![0u8; FLOW_DATAGRAM + 100];
        for _ in 0..queued - 2 {
            peer.recv(&mut buf).map_err(Error::from)?;
        }
        let two = 2 * (FLOW_DATAGRAM + 8);
        wait_until(|| ct.get_write_buffer_size() <= two).await?;
        assert_eq!(ct.get_write_buffer_size(), two);
        assert_eq!(*flow.events.borrow(), ["pause", "resume"]);
        ct.abort();
        Ok(())
    });
}

// conformance: N4
#[test]
fn a_send_error_in_the_writer_leaves_the_rest_of_the_queue_to_be_sent() {
    // asyncio's _sendto_ready gives a failed send to error_received and
    // returns; its level-triggered selector calls it again on the next
    // iteration for the datagrams still queued, and once the buffer is empty
    // a closing endpoint gets its connection_lost. No new edge is needed.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-writer-error");
        let (ct, client, peer, _) = endpoint_with_a_full_peer(&dir, |_| b"x".to_vec()).await?;
        // Behind the queued datagram: one too large for the socket
        // (EMSGSIZE when the writer sends it), then one that fits.
        ct.sendto(&vec![0; 4 << 20], None)?;
        ct.sendto(b"after", None)?;
        ct.close();
        // The peer makes room, once: the writer sends the first datagram,
        // fails on the second, and must still send the third. The peer does
        // not read again until then (a read would raise a new edge).
        peer.set_nonblocking(true).map_err(Error::from)?;
        let mut buf = [0u8; 16];
        while peer.recv(&mut buf).is_ok() {}
        wait_until(|| !client.errors.borrow().is_empty()).await?;
        {
            let errors = client.errors.borrow();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].raw_os_error(), Some(libc::EMSGSIZE), "{errors:?}");
        }
        let lp = tulip::get_running_loop()?;
        let deadline = lp.time() + 1.0;
        while !client.lost.get() && lp.time() < deadline {
            tulip::sleep(0.005).await?;
        }
        assert_eq!(
            ct.get_write_buffer_size(),
            0,
            "the datagram after the failed one is still queued"
        );
        assert!(client.lost.get(), "connection_lost after close()");
        // The peer has both datagrams the writer sent.
        assert_eq!(peer.recv(&mut buf).map_err(Error::from)?, 1);
        let n = peer.recv(&mut buf).map_err(Error::from)?;
        assert_eq!(&buf[..n], b"after");
        Ok(())
    });
}

#[test]
fn an_endpoint_dropped_before_connection_made_closes_its_socket() {
    // asyncio's `create_datagram_endpoint`: `except: transport.close();
    // raise` around `await waiter`. A dropped one must not leave a live
    // endpoint (its reader registered, its socket bound) that nobody holds.
    run_bounded(5.0, async {
        use std::future::Future as _;
        let dir = TempDir::new("dgram-dropped");
        let path = dir.path("dropped.sock");
        let lp = tulip::get_running_loop()?;
        let mut making = Box::pin(lp.create_unix_datagram_endpoint(
            || Rc::new(Client::default()),
            Some(&path),
            None,
        ));
        std::future::poll_fn(|cx| {
            assert!(making.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        drop(making);
        let sender = UnixDatagram::unbound().map_err(Error::from)?;
        let mut refused = false;
        for _ in 0..100 {
            tulip::sleep(0.001).await?;
            match sender.send_to(b"anyone?", &path) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    refused = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(refused, "the dropped endpoint's socket is still open");
        Ok(())
    });
}

/// Panics in `pause_writing` and/or `resume_writing`; counts the calls and
/// `connection_lost`.
#[derive(Default)]
struct PanickyFlow {
    panic_on_pause: bool,
    pauses: Cell<u32>,
    resumes: Cell<u32>,
    lost: Cell<u32>,
}

impl DatagramProtocol for PanickyFlow {
    fn pause_writing(&self) {
        self.pauses.set(self.pauses.get() + 1);
        if self.panic_on_pause {
            panic!("pause_writing failed");
        }
    }
    fn resume_writing(&self) {
        self.resumes.set(self.resumes.get() + 1);
        panic!("resume_writing failed");
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(self.lost.get() + 1);
    }
}

// conformance: L6
#[test]
fn a_panicking_pause_writing_is_reported_and_sendto_goes_on() {
    // asyncio's _maybe_pause_protocol catches what pause_writing raises and
    // reports it ('protocol.pause_writing() failed'): sendto does not raise.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-pause-panics");
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let factory = || {
            Rc::new(PanickyFlow {
                panic_on_pause: true,
                ..Default::default()
            })
        };
        let (ct, flow, _peer, _) =
            endpoint_of_with_a_full_peer(&dir, factory, |_| vec![1; FLOW_DATAGRAM]).await?;
        while flow.pauses.get() == 0 {
            ct.sendto(&[1; FLOW_DATAGRAM], None)?;
        }
        // The endpoint goes on: it queues what it is given.
        let before = ct.get_write_buffer_size();
        ct.sendto(&[1; FLOW_DATAGRAM], None)?;
        assert_eq!(ct.get_write_buffer_size(), before + FLOW_DATAGRAM + 8);
        assert!(!ct.is_closing());
        {
            let reports = reports.borrow();
            assert_eq!(reports.len(), 1, "{reports:?}");
            assert_eq!(reports[0].message, "protocol.pause_writing() failed");
            assert!(
                matches!(&reports[0].error, Some(Error::Panic(m)) if m.contains("pause_writing failed")),
                "{reports:?}"
            );
        }
        ct.abort();
        wait_until(|| flow.lost.get() == 1).await?;
        Ok(())
    });
}

// conformance: L6, N4
#[test]
fn a_panicking_resume_writing_still_lets_a_closing_endpoint_finish() {
    // asyncio's _sendto_ready calls _maybe_resume_protocol, which reports
    // what resume_writing raises ('protocol.resume_writing() failed'), then
    // goes on: the writer is removed and a closing endpoint gets its
    // connection_lost, and its socket is closed.
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-resume-panics");
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let (ct, flow, peer, _) = endpoint_of_with_a_full_peer(
            &dir,
            || Rc::new(PanickyFlow::default()),
            |_| vec![1; FLOW_DATAGRAM],
        )
        .await?;
        while flow.pauses.get() == 0 {
            ct.sendto(&[1; FLOW_DATAGRAM], None)?;
        }
        let queued = ct.get_write_buffer_size() / (FLOW_DATAGRAM + 8);
        ct.close();
        // The peer makes room for exactly the queued datagrams, once: the
        // writer sends them all, and no new edge comes after that.
        peer.set_nonblocking(true).map_err(Error::from)?;
        let mut buf = vec![0u8; FLOW_DATAGRAM + 100];
        for _ in 0..queued {
            peer.recv(&mut buf).map_err(Error::from)?;
        }
        let deadline = lp.time() + 1.0;
        while flow.lost.get() == 0 && lp.time() < deadline {
            tulip::sleep(0.005).await?;
        }
        assert_eq!(flow.resumes.get(), 1);
        assert_eq!(ct.get_write_buffer_size(), 0);
        assert_eq!(flow.lost.get(), 1, "connection_lost never came");
        assert!(
            ct.get_extra_info("socket").is_none(),
            "the socket is closed"
        );
        let reports = reports.borrow();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].message, "protocol.resume_writing() failed");
        Ok(())
    });
}

#[test]
fn sock_sendto_and_sock_recvfrom_on_unix_datagram_sockets() {
    // asyncio's sock_sendto/sock_recvfrom/sock_recvfrom_into (3.11) take
    // any datagram socket, AF_UNIX ones too: the sender's address is its
    // path.
    run_bounded(5.0, async {
        let dir = TempDir::new("sock-unix-dgram");
        let (pa, pb) = (dir.path("a.sock"), dir.path("b.sock"));
        let a = UnixDatagram::bind(&pa).map_err(Error::from)?;
        let b = Rc::new(UnixDatagram::bind(&pb).map_err(Error::from)?);
        a.set_nonblocking(true).map_err(Error::from)?;
        b.set_nonblocking(true).map_err(Error::from)?;
        let lp = tulip::get_running_loop()?;
        // The receiver waits first: nothing has been sent yet.
        let (lp2, b2) = (lp.clone(), b.clone());
        let recv = tulip::create_task(async move { lp2.sock_recvfrom_unix(&b2, 64).await })?;
        tulip::sleep(0.0).await?;
        assert!(!recv.done());
        assert_eq!(lp.sock_sendto_unix(&a, b"ping", &pb).await?, 4);
        let (data, from) = recv.await?;
        assert_eq!(data, b"ping");
        assert_eq!(from.as_pathname(), Some(pa.as_path()));
        // sock_recvfrom_into: the rest of a longer datagram is discarded.
        lp.sock_sendto_unix(&b, b"pong, and more", &pa).await?;
        let mut buf = [0u8; 4];
        let (n, from) = lp.sock_recvfrom_into_unix(&a, &mut buf).await?;
        assert_eq!(
            (&buf[..n], from.as_pathname()),
            (&b"pong"[..], Some(pb.as_path()))
        );
        Ok(())
    });
}

/// asyncio's `sock_accept` takes any listening socket: a Unix stream
/// listener included (N4: the accepted stream is non-blocking, and a
/// pending accept is woken by the connection).
#[test]
fn sock_accept_unix_accepts_on_a_unix_listener() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = std::env::temp_dir().join(format!("tulip-accept-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let p2 = path.clone();
    let got = tulip::run(async move {
        let lp = tulip::get_running_loop()?;
        // The accept waits first; the client connects one iteration later.
        let client = std::rc::Rc::new(std::cell::RefCell::new(None));
        let c2 = client.clone();
        let _ = lp.call_soon(move || *c2.borrow_mut() = Some(UnixStream::connect(&p2).unwrap()))?;
        let (server, _) = tulip::timeout(10.0)
            .run(lp.sock_accept_unix(&listener))
            .await?;
        assert!(client.borrow().is_some());
        let mut buf = [0u8; 1];
        let e = std::io::Read::read(&mut &server, &mut buf).unwrap_err();
        Ok(e.kind())
    })
    .unwrap();
    assert_eq!(got, std::io::ErrorKind::WouldBlock);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Closes its endpoint from `resume_writing`, and tries to put a socket of
/// its own on the endpoint's fd number (a recycled fd) as soon as the
/// endpoint's socket is gone: once from a callback scheduled just before the
/// `close()`, once from one `connection_lost` schedules.
struct ClosesOnResume {
    lp: tulip::EventLoop,
    transport: RefCell<Option<Rc<dyn DatagramTransport>>>,
    /// The endpoint's fd number.
    fd: Cell<std::os::fd::RawFd>,
    lost: Cell<u32>,
    /// The socket put on the recycled number, with a reader registered.
    reused: Rc<RefCell<Option<std::os::fd::OwnedFd>>>,
    /// Whether that reader was still registered a little later.
    reader_kept: Rc<Cell<Option<bool>>>,
}

impl ClosesOnResume {
    /// If the endpoint's socket is closed, opens a socket on its number
    /// (dup2) and registers a reader for it.
    fn reuse_if_closed(
        lp: &tulip::EventLoop,
        t: &Rc<dyn DatagramTransport>,
        fd: std::os::fd::RawFd,
        reused: &RefCell<Option<std::os::fd::OwnedFd>>,
    ) {
        use std::os::fd::{AsRawFd, FromRawFd};
        if t.get_extra_info("socket").is_some() || reused.borrow().is_some() {
            return;
        }
        let (a, _b) = UnixDatagram::pair().unwrap();
        let mut owned = std::os::fd::OwnedFd::from(a);
        if owned.as_raw_fd() != fd {
            // SAFETY: dup2 takes two integers; `fd` is closed (the
            // endpoint's socket is gone) and, in this test process of one
            // test, nobody else's.
            let rc = unsafe { libc::dup2(owned.as_raw_fd(), fd) };
            assert_eq!(rc, fd, "dup2");
            // SAFETY: dup2 just made `fd` a new descriptor, owned by nobody
            // else (the one it copies is closed as `owned` is replaced).
            owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        }
        lp.add_reader(fd, || {}).unwrap();
        *reused.borrow_mut() = Some(owned);
    }
}

impl DatagramProtocol for ClosesOnResume {
    fn connection_made(&self, transport: Rc<dyn DatagramTransport>) {
        let fd = transport.get_extra_info("socket").and_then(|i| i.as_fd());
        self.fd.set(fd.expect("socket"));
        *self.transport.borrow_mut() = Some(transport);
    }
    fn resume_writing(&self) {
        let t = self.transport.borrow().clone().expect("made");
        let (lp, fd, reused) = (self.lp.clone(), self.fd.get(), self.reused.clone());
        let (t2, lp2) = (t.clone(), lp.clone());
        let _ = lp.call_soon(move || ClosesOnResume::reuse_if_closed(&lp2, &t2, fd, &reused));
        t.close();
    }
    fn connection_lost(&self, _: Option<Error>) {
        self.lost.set(self.lost.get() + 1);
        let t = self.transport.borrow().clone().expect("made");
        let (lp, fd) = (self.lp.clone(), self.fd.get());
        let (reused, kept) = (self.reused.clone(), self.reader_kept.clone());
        let _ = self.lp.call_soon(move || {
            ClosesOnResume::reuse_if_closed(&lp, &t, fd, &reused);
            let lp2 = lp.clone();
            let _ = lp.call_soon(move || kept.set(Some(lp2.has_reader(fd))));
        });
    }
}

// conformance: N4
#[test]
fn closing_from_resume_writing_leaves_a_recycled_fd_alone() {
    // close() from resume_writing, once the writer has sent every queued
    // datagram: connection_lost comes once, from the call close() scheduled
    // (as the stream transport's writer leaves it to close()). Were the
    // writer also to finish the connection itself, the socket would be
    // closed at once and the scheduled call would run on a closed fd,
    // removing the reader of whatever socket got its number since.
    if common::rerun_alone("closing_from_resume_writing_leaves_a_recycled_fd_alone") {
        return;
    }
    run_bounded(10.0, async {
        let dir = TempDir::new("dgram-close-on-resume");
        let lp = tulip::get_running_loop()?;
        let reused = Rc::new(RefCell::new(None));
        let reader_kept = Rc::new(Cell::new(None));
        let (lp2, r2, k2) = (lp.clone(), reused.clone(), reader_kept.clone());
        let factory = move || {
            Rc::new(ClosesOnResume {
                lp: lp2,
                transport: RefCell::new(None),
                fd: Cell::new(-1),
                lost: Cell::new(0),
                reused: r2,
                reader_kept: k2,
            })
        };
        let (ct, proto, peer, _) =
            endpoint_of_with_a_full_peer(&dir, factory, |_| vec![1; FLOW_DATAGRAM]).await?;
        ct.set_write_buffer_limits(Some(0), None)?;
        // The peer empties its queue: the writer sends every queued
        // datagram, then resumes the protocol, which closes the endpoint.
        peer.set_nonblocking(true).map_err(Error::from)?;
        let mut buf = vec![0u8; FLOW_DATAGRAM + 100];
        while peer.recv(&mut buf).is_ok() {}
        let deadline = lp.time() + 2.0;
        while reader_kept.get().is_none() && lp.time() < deadline {
            tulip::sleep(0.005).await?;
        }
        assert_eq!(proto.lost.get(), 1);
        let fd = proto.fd.get();
        assert!(reused.borrow().is_some(), "the fd number was never reused");
        assert_eq!(
            reader_kept.get(),
            Some(true),
            "the reader of the socket now on fd {fd} was removed"
        );
        lp.remove_reader(fd)?;
        drop(reused.borrow_mut().take());
        Ok(())
    });
}
