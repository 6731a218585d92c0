//! The socket options of `create_server`/`start_server` (asyncio's
//! `backlog`, `reuse_address`, `reuse_port`, `keep_alive`, `start_serving`),
//! on loopback.
//!
//! The backlog is observed through the kernel's behaviour: while the loop
//! does not run (the test body does not await), nothing is accepted, so
//! exactly `backlog + 1` connections complete and the next one's SYN is
//! dropped (its connect times out).

mod common;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use common::run_bounded;
use tulip::transports::prelude::*;
use tulip::{Error, Listener, Server, ServerOptions};

struct Nothing;
impl Protocol for Nothing {}

/// Closes every accepted connection at once, and counts them.
#[derive(Default)]
struct CloseAtOnce(Rc<Cell<u32>>);
impl Protocol for CloseAtOnce {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        self.0.set(self.0.get() + 1);
        transport.close();
    }
}

/// A server on 127.0.0.1:`port` whose protocol closes every connection at
/// once, and how many it accepted.
async fn close_at_once_server(
    port: u16,
    opts: &ServerOptions,
) -> tulip::Result<(Server, Rc<Cell<u32>>)> {
    let lp = tulip::get_running_loop()?;
    let accepted = Rc::new(Cell::new(0));
    let a2 = accepted.clone();
    let factory = move || Rc::new(CloseAtOnce(a2.clone()));
    let server = lp
        .create_server_with(factory, "127.0.0.1", port, opts)
        .await?;
    Ok((server, accepted))
}

/// Waits (bounded by the test's watchdog) until `n` connections were made.
async fn until_count(count: &Cell<u32>, n: u32) -> tulip::Result<()> {
    while count.get() < n {
        tulip::sleep(0.005).await?;
    }
    Ok(())
}

/// Connects to `addr` until a connect times out (the accept queue is
/// full); returns how many completed, and the open streams. Blocking on
/// purpose: the loop must not run, or the server would accept.
fn fill_accept_queue(addr: SocketAddr, max: usize) -> (usize, Vec<TcpStream>) {
    let mut streams = Vec::new();
    for _ in 0..max {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => streams.push(s),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
                return (streams.len(), streams);
            }
        }
    }
    (streams.len(), streams)
}

#[test]
fn the_default_backlog_is_asyncios_100() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let server = lp
            .create_server(|| Rc::new(Nothing), "127.0.0.1", 0)
            .await?;
        let (queued, _streams) = fill_accept_queue(server.local_addrs()[0], 200);
        assert_eq!(queued, 100 + 1, "Linux queues backlog + 1 connections");
        server.close();
        Ok(())
    });
}

#[test]
fn backlog_reaches_listen() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = ServerOptions::new().backlog(3);
        let server = lp
            .create_server_with(|| Rc::new(Nothing), "127.0.0.1", 0, &opts)
            .await?;
        let (queued, _streams) = fill_accept_queue(server.local_addrs()[0], 20);
        assert_eq!(queued, 3 + 1);
        server.close();
        Ok(())
    });
}

#[test]
fn reuse_port_lets_two_servers_bind_one_port() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = ServerOptions::new().reuse_port(true);
        let first = lp
            .create_server_with(|| Rc::new(Nothing), "127.0.0.1", 0, &opts)
            .await?;
        let port = first.local_addrs()[0].port();
        // Without the option, the port is taken, and the error says where.
        let err = lp
            .create_server(|| Rc::new(Nothing), "127.0.0.1", port)
            .await
            .unwrap_err();
        common::assert_bind_in_use(&err, SocketAddr::from(([127, 0, 0, 1], port)));
        let (second, accepted) = close_at_once_server(port, &opts).await?;
        assert_eq!(second.local_addrs()[0].port(), port);
        // With the first one closed, the second still serves the port.
        first.close();
        let _conn = lp
            .sock_connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        until_count(&accepted, 1).await?;
        second.close();
        Ok(())
    });
}

#[test]
fn reuse_address_binds_despite_time_wait() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        // A server that closes its end first leaves the connection in
        // TIME_WAIT on the server's port.
        let (server, _) = close_at_once_server(0, &ServerOptions::new()).await?;
        let addr = server.local_addrs()[0];
        let client = lp.sock_connect(addr).await?;
        assert_eq!(
            lp.sock_recv(&client, 10).await?,
            b"",
            "the server closed first"
        );
        drop(client);
        server.close();
        server.wait_closed().await?;
        let no_reuse = ServerOptions::new().reuse_address(false);
        let err = lp
            .create_server_with(|| Rc::new(Nothing), "127.0.0.1", addr.port(), &no_reuse)
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{err}");
        // asyncio's default on Unix: SO_REUSEADDR.
        let again = lp
            .create_server(|| Rc::new(Nothing), "127.0.0.1", addr.port())
            .await?;
        assert_eq!(again.local_addrs(), [addr]);
        again.close();
        Ok(())
    });
}

#[test]
fn start_server_with_passes_the_options() {
    run_bounded(10.0, async {
        let opts = ServerOptions::new().backlog(1);
        let server = tulip::start_server_with(
            |_r, _w| async { Ok(()) },
            "127.0.0.1",
            0,
            tulip::DEFAULT_LIMIT,
            &opts,
        )
        .await?;
        let (queued, _streams) = fill_accept_queue(server.local_addrs()[0], 10);
        assert_eq!(queued, 1 + 1);
        server.close();
        Ok(())
    });
}

#[test]
fn unix_servers_take_the_backlog_too() {
    run_bounded(10.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-backlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("s.sock");
        let opts = ServerOptions::new().backlog(2);
        let server = tulip::start_unix_server_with(
            |_r, _w| async { Ok(()) },
            &path,
            tulip::DEFAULT_LIMIT,
            &opts,
        )
        .await?;
        // A full Unix accept queue refuses at once (EAGAIN) on a
        // non-blocking connect.
        let mut ok = Vec::new();
        let err = loop {
            match mio::net::UnixStream::connect(&path) {
                Ok(s) => ok.push(s),
                Err(e) => break e,
            }
            assert!(ok.len() < 50, "the backlog did not reach listen()");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
        assert_eq!(ok.len(), 2 + 1);
        server.close();
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

/// `getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE)`.
fn so_keepalive(fd: RawFd) -> libc::c_int {
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid out-pointers of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
    value
}

/// Reads `SO_KEEPALIVE` of each accepted socket, through the transport's
/// `"socket"` extra info, then closes the connection.
struct KeepAliveOf(Rc<RefCell<Vec<libc::c_int>>>);
impl Protocol for KeepAliveOf {
    fn connection_made(&self, transport: Rc<dyn Transport>) {
        let fd = transport.get_extra_info("socket").and_then(|i| i.as_fd());
        self.0.borrow_mut().push(so_keepalive(fd.expect("socket")));
        transport.close();
    }
}

#[test]
fn keep_alive_sets_so_keepalive_on_every_accepted_socket() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        for (opts, expected) in [
            (ServerOptions::new(), 0),
            (ServerOptions::new().keep_alive(true), 1),
        ] {
            let seen = Rc::new(RefCell::new(Vec::new()));
            let s2 = seen.clone();
            let server = lp
                .create_server_with(
                    move || Rc::new(KeepAliveOf(s2.clone())),
                    "127.0.0.1",
                    0,
                    &opts,
                )
                .await?;
            let addr = server.local_addrs()[0];
            let _clients = [lp.sock_connect(addr).await?, lp.sock_connect(addr).await?];
            while seen.borrow().len() < 2 {
                tulip::sleep(0.005).await?;
            }
            assert_eq!(*seen.borrow(), [expected, expected], "{opts:?}");
            server.close();
            server.wait_closed().await?;
        }
        Ok(())
    });
}

/// True if a connection waits in the accept queue of the server's (one)
/// listening socket: it is readable.
fn connection_queued(server: &Server) -> bool {
    let fd = match &*server.sockets()[0] {
        Listener::Tcp(l) => l.as_raw_fd(),
        Listener::Unix(l, _) => l.as_raw_fd(),
    };
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    assert!(n >= 0, "{}", std::io::Error::last_os_error());
    n == 1
}

#[test]
fn start_serving_false_binds_but_refuses_until_start_serving() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = ServerOptions::new().start_serving(false);
        let (server, made) = close_at_once_server(0, &opts).await?;
        assert!(!server.is_serving());
        // Bound: the port is known before serving.
        let addr = server.local_addrs()[0];
        assert_ne!(addr.port(), 0);
        // Not listening yet (asyncio listens in _start_serving): refused.
        let err = lp.sock_connect(addr).await.unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(made.get(), 0);
        server.start_serving()?;
        server.start_serving()?; // idempotent
        assert!(server.is_serving());
        let client = lp.sock_connect(addr).await?;
        until_count(&made, 1).await?;
        // The server closed it at once: the client sees EOF.
        assert_eq!(lp.sock_recv(&client, 10).await?, b"");
        assert_eq!(made.get(), 1);
        assert!(!connection_queued(&server));
        server.close();
        assert!(!server.is_serving());
        let err = server.start_serving().unwrap_err();
        assert!(err.to_string().contains("closed"), "{err}");
        Ok(())
    });
}

#[test]
fn serve_forever_starts_a_server_created_not_serving() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let made = Rc::new(Cell::new(0));
        let m2 = made.clone();
        // start_server passes the option on too.
        let server = tulip::start_server_with(
            move |_r, _w| {
                m2.set(m2.get() + 1);
                async { Ok(()) }
            },
            "127.0.0.1",
            0,
            tulip::DEFAULT_LIMIT,
            &ServerOptions::new().start_serving(false),
        )
        .await?;
        assert!(!server.is_serving());
        let addr = server.local_addrs()[0];
        assert!(lp.sock_connect(addr).await.is_err(), "not listening yet");
        let s2 = server.clone();
        let task = tulip::create_task(async move { s2.serve_forever().await })?;
        tulip::sleep(0.0).await?; // serve_forever has started serving
        let _client = lp.sock_connect(addr).await?;
        until_count(&made, 1).await?;
        assert!(server.is_serving());
        task.cancel();
        let res = tulip::wait_for(task, 5.0).await;
        assert!(res.as_ref().is_err_and(Error::is_cancelled), "{res:?}");
        assert!(!server.is_serving());
        Ok(())
    });
}

#[test]
fn a_dropped_serve_forever_lets_serve_forever_be_called_again() {
    // asyncio's `serve_forever` resets `_serving_forever_fut` in a
    // `finally`, however it ends; a Rust future can also end by being
    // dropped while it waits.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = ServerOptions::new().start_serving(false);
        let server = lp
            .create_server_with(|| Rc::new(Nothing), "127.0.0.1", 0, &opts)
            .await?;
        use std::future::Future as _;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        {
            let mut first = Box::pin(server.serve_forever());
            assert!(first.as_mut().poll(&mut cx).is_pending());
        }
        let mut second = Box::pin(server.serve_forever());
        let polled = second.as_mut().poll(&mut cx);
        assert!(polled.is_pending(), "{polled:?}");
        drop(second);
        server.close();
        server.wait_closed().await
    });
}

// conformance: L6
#[test]
fn a_panicking_protocol_factory_leaves_the_next_connections_to_be_accepted() {
    // asyncio's _accept_connection accepts the whole backlog, and each
    // connection's protocol is made in its own _accept_connection2 task,
    // whose exception (only reported in debug mode) costs that connection
    // alone. Here the factory runs in the accept callback, and the
    // listener is edge-triggered: no new edge comes for the connections
    // still queued behind the one whose factory panicked.
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let accepted = Rc::new(Cell::new(0));
        let calls = Rc::new(Cell::new(0));
        let (a2, c2) = (accepted.clone(), calls.clone());
        let factory = move || {
            c2.set(c2.get() + 1);
            if c2.get() == 1 {
                panic!("bug in the protocol factory");
            }
            Rc::new(CloseAtOnce(a2.clone()))
        };
        let server = lp.create_server(factory, "127.0.0.1", 0).await?;
        let addr = server.local_addrs()[0];
        // Both in the accept queue before the loop looks (blocking connects).
        let (n, clients) = fill_accept_queue(addr, 2);
        assert_eq!(n, 2);
        let deadline = lp.time() + 2.0;
        while accepted.get() < 1 && lp.time() < deadline {
            tulip::sleep(0.005).await?;
        }
        assert_eq!(
            accepted.get(),
            1,
            "the second connection was never accepted"
        );
        assert!(!connection_queued(&server));
        // The first connection was closed: its client reads EOF.
        let mut first = &clients[0];
        first
            .set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(Error::from)?;
        let mut buf = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut first, &mut buf).map_err(Error::from)?,
            0
        );
        {
            let reports = reports.borrow();
            assert_eq!(reports.len(), 1, "{reports:?}");
            assert_eq!(
                reports[0].message,
                "Error on transport creation for incoming connection"
            );
            assert!(
                matches!(&reports[0].error, Some(Error::Panic(m)) if m.contains("bug in the protocol factory")),
                "{reports:?}"
            );
        }
        // The server goes on serving.
        let _third = lp.sock_connect(addr).await?;
        until_count(&accepted, 2).await?;
        server.close();
        server.wait_closed().await?;
        Ok(())
    });
}

// conformance: L7
#[test]
fn a_protocol_factory_that_interrupts_leaves_the_next_connections_to_the_next_run() {
    // Ctrl-C (asyncio's KeyboardInterrupt) from the factory ends the run;
    // asyncio's level-triggered selector reports the listener again in the
    // next run for the connections still queued.
    let lp = tulip::EventLoop::new().unwrap();
    let accepted = Rc::new(Cell::new(0));
    let calls = Rc::new(Cell::new(0));
    let (a2, c2) = (accepted.clone(), calls.clone());
    let factory = move || {
        c2.set(c2.get() + 1);
        if c2.get() == 1 {
            tulip::interrupt();
        }
        Rc::new(CloseAtOnce(a2.clone()))
    };
    let server = lp
        .run_until_complete(async move {
            let lp = tulip::get_running_loop()?;
            lp.create_server(factory, "127.0.0.1", 0).await
        })
        .unwrap();
    let (n, _clients) = fill_accept_queue(server.local_addrs()[0], 2);
    assert_eq!(n, 2);
    let (_dog, _) = common::stop_after(&lp, 5.0);
    let err = lp.run_forever().unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    assert_eq!(calls.get(), 1);
    let a3 = accepted.clone();
    lp.run_until_complete(async move { until_count(&a3, 1).await })
        .unwrap();
    assert_eq!(calls.get(), 2);
    server.close();
    lp.close().unwrap();
}

#[test]
fn an_empty_host_binds_every_interface() {
    // asyncio's create_server: `if host == '': hosts = [None]`, and
    // getaddrinfo(None, port, flags=AI_PASSIVE) gives the IPv4 and IPv6
    // wildcard addresses, one socket each. Not serving: the sockets are
    // bound but never listen, so nothing off this host can connect.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let opts = ServerOptions::new().start_serving(false);
        let server = lp
            .create_server_with(|| Rc::new(Nothing), "", 0, &opts)
            .await?;
        let addrs = server.local_addrs();
        assert!(
            addrs.iter().any(|a| a.is_ipv4() && a.ip().is_unspecified()),
            "{addrs:?}"
        );
        assert!(
            addrs.iter().any(|a| a.is_ipv6() && a.ip().is_unspecified()),
            "{addrs:?}"
        );
        assert!(!server.is_serving());
        server.close();
        Ok(())
    });
}

#[test]
fn start_server_hosts_serves_every_address_of_every_host_in_one_server() {
    // asyncio's start_server/create_server with `host` a sequence: every
    // host is resolved, each distinct address gets a socket (port 0: a
    // free port each), and one Server accepts on all of them.
    run_bounded(10.0, async {
        let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.1"];
        let server = tulip::start_server_hosts(
            |_r, w| async move {
                let me = w.get_extra_info("sockname");
                w.write(format!("{me:?}\n").as_bytes())?;
                w.drain().await
            },
            &hosts,
            0,
            tulip::DEFAULT_LIMIT,
            &ServerOptions::new(),
        )
        .await?;
        let addrs = server.local_addrs();
        let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        assert_eq!(ips, ["127.0.0.1", "127.0.0.2"], "{addrs:?}");
        for addr in &addrs {
            let (r, w) = tulip::open_connection(&addr.ip().to_string(), addr.port()).await?;
            let line = String::from_utf8(r.readline().await?).unwrap();
            assert!(line.contains(&addr.to_string()), "{line:?} from {addr}");
            w.close();
        }
        server.close();
        server.wait_closed().await
    });
}

#[test]
fn create_server_hosts_closes_what_it_bound_when_a_later_bind_fails() {
    // asyncio: a bind error other than EADDRNOTAVAIL raises OSError naming
    // the address, and `finally: if not completed:` closes every socket
    // bound so far.
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let taken = std::net::TcpListener::bind("127.0.0.2:0").map_err(Error::from)?;
        let port = taken.local_addr().map_err(Error::from)?.port();
        // Without SO_REUSEADDR, a socket of the server left bound on
        // 127.0.0.1 would make the bind below fail.
        let opts = ServerOptions::new().reuse_address(false);
        let err = lp
            .create_server_hosts(
                || Rc::new(Nothing),
                &["127.0.0.1", "127.0.0.2"],
                port,
                &opts,
            )
            .await
            .unwrap_err();
        common::assert_bind_in_use(&err, SocketAddr::from(([127, 0, 0, 2], port)));
        let again = std::net::TcpListener::bind(("127.0.0.1", port));
        assert!(again.is_ok(), "127.0.0.1:{port} was left bound: {again:?}");
        // No host at all: nothing to bind on.
        let err = lp
            .create_server_hosts(|| Rc::new(Nothing), &[], 0, &ServerOptions::new())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("could not bind on any address"),
            "{err}"
        );
        Ok(())
    });
}

// ----- family= (asyncio's AF_INET / AF_INET6 on getaddrinfo and friends) -----

#[test]
fn getaddrinfo_family_keeps_one_family_and_says_when_none_is_left() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let all = lp.getaddrinfo("localhost", 80).await?;
        let v4 = lp
            .getaddrinfo_family("localhost", 80, tulip::AddressFamily::Inet)
            .await?;
        assert!(!v4.is_empty() && v4.iter().all(|a| a.is_ipv4()), "{v4:?}");
        assert_eq!(
            v4,
            all.iter()
                .copied()
                .filter(|a| a.is_ipv4())
                .collect::<Vec<_>>()
        );
        let err = lp
            .getaddrinfo_family("::1", 80, tulip::AddressFamily::Inet)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no IPv4 address"), "{err}");
        assert!(
            err.to_string().contains("AddressFamily::Unspec"),
            "says how to accept any family: {err}"
        );
        Ok(())
    });
}

#[test]
fn family_keeps_servers_connections_and_endpoints_to_one_family() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let v4 = tulip::AddressFamily::Inet;
        // Host "": only the IPv4 wildcard.
        let opts = ServerOptions::new().family(v4);
        let server = lp
            .create_server_with(|| Rc::new(Nothing), "", 0, &opts)
            .await?;
        let addrs = server.local_addrs();
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        assert!(addrs[0].is_ipv4() && addrs[0].ip().is_unspecified());
        let port = addrs[0].port();
        // A connection to "localhost" keeps to IPv4.
        let copts = tulip::ConnectOptions::new().family(v4);
        let (t, _) = lp
            .create_connection_with(|| Rc::new(Nothing), "localhost", port, &copts)
            .await?;
        let peer = t.get_extra_info("peername").and_then(|i| i.as_addr());
        assert_eq!(peer, Some(SocketAddr::from(([127, 0, 0, 1], port))));
        t.close();
        // An IPv4 literal asked for as IPv6: refused before any connect.
        let v6 = tulip::ConnectOptions::new().family(tulip::AddressFamily::Inet6);
        let err = match lp
            .create_connection_with(|| Rc::new(Nothing), "127.0.0.1", port, &v6)
            .await
        {
            Ok(_) => panic!("an IPv4 literal connected as IPv6"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("no IPv6 address"), "{err}");
        // A datagram endpoint bound by name.
        struct Quiet;
        impl DatagramProtocol for Quiet {}
        let dopts = tulip::DatagramOptions::new().family(v4);
        let (d, _) = lp
            .create_datagram_endpoint_host(|| Rc::new(Quiet), Some(("localhost", 0)), None, &dopts)
            .await?;
        let local = d.get_extra_info("sockname").and_then(|i| i.as_addr());
        assert!(local.is_some_and(|a| a.is_ipv4()), "{local:?}");
        d.close();
        server.close();
        Ok(())
    });
}

/// asyncio's `create_datagram_endpoint(factory, family=AF_INET6)` with
/// neither address makes an `AF_INET6` socket: with no name to resolve,
/// the family still picks the socket's.
#[test]
fn a_datagram_endpoint_with_no_address_is_of_the_family_asked_for() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 on this host: nothing to check");
        return;
    }
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        struct Quiet;
        impl DatagramProtocol for Quiet {}
        let v6 = tulip::DatagramOptions::new().family(tulip::AddressFamily::Inet6);
        let (d, _) = lp
            .create_datagram_endpoint_host(|| Rc::new(Quiet), None, None, &v6)
            .await?;
        let local = d.get_extra_info("sockname").and_then(|i| i.as_addr());
        d.close();
        assert!(local.is_some_and(|a| a.is_ipv6()), "{local:?}");
        Ok(())
    });
}

/// An address given as it is, of the other family than `family=`, is the
/// resolver's error (asyncio resolves it with `family=`), before any socket.
#[test]
fn a_datagram_address_of_the_other_family_is_refused() {
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        struct Quiet;
        impl DatagramProtocol for Quiet {}
        let v6 = tulip::DatagramOptions::new().family(tulip::AddressFamily::Inet6);
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let err = match lp
            .create_datagram_endpoint_with(|| Rc::new(Quiet), Some(local), None, &v6)
            .await
        {
            Ok(_) => panic!("an IPv4 address was bound as IPv6"),
            Err(e) => e,
        };
        assert!(err.to_string().contains("no IPv6 address"), "{err}");
        Ok(())
    });
}
