//! Streams over real sockets on loopback: open_connection, start_server,
//! Unix sockets, socketpair, backpressure, many clients.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::run_bounded;
use tulip::{Error, StreamReader, StreamWriter};

async fn echo(reader: StreamReader, writer: StreamWriter) -> tulip::Result<()> {
    loop {
        let data = reader.read(64 * 1024).await?;
        if data.is_empty() {
            break;
        }
        writer.write(&data)?;
        writer.drain().await?;
    }
    writer.close();
    Ok(())
}

/// A server on 127.0.0.1 whose connections run `handler`, and one client
/// connected to it: (server, client reader, client writer).
async fn server_and_client<F, Fut>(
    handler: F,
) -> tulip::Result<(tulip::Server, StreamReader, StreamWriter)>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = tulip::Result<()>> + 'static,
{
    let server = tulip::start_server(handler, "127.0.0.1", 0).await?;
    let port = server.local_addrs()[0].port();
    let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
    Ok((server, r, w))
}

#[test]
fn echo_line() {
    run_bounded(5.0, async {
        let server = tulip::start_server(echo, "127.0.0.1", 0).await?;
        let port = server.local_addrs()[0].port();
        let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
        w.write(b"hello\n")?;
        assert_eq!(r.readline().await?, b"hello\n");
        let peer = w.get_extra_info("peername").and_then(|i| i.as_addr());
        assert_eq!(peer.map(|a| a.port()), Some(port));
        assert!(w.get_extra_info("sockname").is_some());
        assert!(w.get_extra_info("socket").and_then(|i| i.as_fd()).is_some());
        w.close();
        w.wait_closed().await?;
        server.close();
        server.wait_closed().await?;
        Ok(())
    });
}

// conformance: N2, N3
#[test]
fn one_megabyte_echo_with_backpressure() {
    run_bounded(20.0, async {
        let (server, r, w) = server_and_client(echo).await?;
        // A small buffer: pause_writing fires early and often.
        w.transport()
            .set_write_buffer_limits(Some(4096), Some(1024))?;
        let payload: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let reader_task = tulip::create_task(async move { r.readexactly(1024 * 1024).await })?;
        for chunk in payload.chunks(16 * 1024) {
            w.write(chunk)?;
            w.drain().await?;
        }
        let got = reader_task.await?;
        assert!(got == expected, "echoed bytes differ");
        w.close();
        server.close();
        Ok(())
    });
}

// conformance: N4
#[test]
fn half_close_reaches_server_which_still_answers() {
    run_bounded(5.0, async {
        let (server, r, w) = server_and_client(|r: StreamReader, w: StreamWriter| async move {
            let all = r.read_to_eof().await?;
            assert!(r.at_eof());
            w.write(format!("got {} bytes", all.len()).as_bytes())?;
            w.drain().await?;
            w.close();
            Ok(())
        })
        .await?;
        w.write(b"12345")?;
        assert!(w.can_write_eof());
        w.write_eof()?;
        assert_eq!(r.read_to_eof().await?, b"got 5 bytes");
        server.close();
        Ok(())
    });
}

// conformance: N2
#[test]
fn drain_on_closed_peer_fails() {
    run_bounded(10.0, async {
        let (server, _r, w) = server_and_client(|_r: StreamReader, w: StreamWriter| async move {
            // Reset the connection at once (SO_LINGER 0 would; abort does).
            w.transport().abort();
            Ok(())
        })
        .await?;
        let chunk = vec![0u8; 64 * 1024];
        let mut failed = None;
        for _ in 0..1000 {
            if let Err(e) = w.write(&chunk) {
                failed = Some(e);
                break;
            }
            if let Err(e) = w.drain().await {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("writes to a closed peer must fail eventually");
        assert!(e.io_kind().is_some(), "{e:?}");
        server.close();
        Ok(())
    });
}

/// Raises the soft fd limit to at least `want` (if the hard limit allows):
/// 1000 clients and their server ends need about 2000 descriptors.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < want as libc::rlim_t {
        lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
        // SAFETY: `lim` is a valid rlimit, within the hard limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

// conformance: N4
#[test]
fn thousand_concurrent_clients() {
    raise_nofile(4096);
    run_bounded(30.0, async {
        let server = tulip::start_server(echo, "127.0.0.1", 0).await?;
        let port = server.local_addrs()[0].port();
        let mut tasks = Vec::new();
        for i in 0..1000u32 {
            tasks.push(tulip::create_task(async move {
                let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
                let msg = format!("client {i}\n");
                w.write(msg.as_bytes())?;
                let line = r.readline().await?;
                assert_eq!(line, msg.as_bytes());
                w.close();
                w.wait_closed().await?;
                Ok(())
            })?);
        }
        for t in tasks {
            t.await?;
        }
        server.close();
        server.close_clients();
        server.wait_closed().await?;
        assert_eq!(server.active_count(), 0);
        Ok(())
    });
}

// conformance: N4
#[test]
fn server_survives_client_vanishing_mid_request() {
    run_bounded(10.0, async {
        let server = tulip::start_server(
            |r: StreamReader, w: StreamWriter| async move {
                // Expects a 100-byte request; some clients send 10 and vanish.
                let req = r.readexactly(100).await?;
                w.write(&req[..4])?;
                w.drain().await?;
                Ok(())
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let lp = tulip::get_running_loop()?;
        // The failed handler tasks are reported; count them instead of printing.
        let reported = Rc::new(std::cell::Cell::new(0));
        let r2 = reported.clone();
        lp.set_exception_handler(Some(
            move |_: &tulip::EventLoop, ctx: &tulip::ExceptionContext| {
                assert!(
                    matches!(ctx.error, Some(Error::IncompleteRead { .. })),
                    "{ctx}"
                );
                r2.set(r2.get() + 1);
            },
        ));
        let port = server.local_addrs()[0].port();
        for _ in 0..5 {
            let (_r, w) = tulip::open_connection("127.0.0.1", port).await?;
            w.write(&[1u8; 10])?;
            w.transport().abort();
        }
        // The server still answers a complete request.
        let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
        w.write(&[7u8; 100])?;
        assert_eq!(r.readexactly(4).await?, [7u8; 4]);
        tulip::sleep(0.05).await?;
        assert_eq!(reported.get(), 5);
        server.close();
        Ok(())
    });
}

#[test]
fn unix_socket_server() {
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("echo.sock");
        let server = tulip::start_unix_server(echo, &path).await?;
        let (r, w) = tulip::open_unix_connection(&path).await?;
        w.write(b"over unix\n")?;
        assert_eq!(r.readline().await?, b"over unix\n");
        assert!(w.get_extra_info("peername").is_some());
        w.close();
        server.close();
        server.wait_closed().await?;
        assert!(!path.exists(), "the socket file is removed at close");
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    });
}

#[test]
fn socketpair_open_connection_sock() {
    run_bounded(5.0, async {
        let (a, b) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
        let (ra, wa) = tulip::open_connection_sock(a).await?;
        let (rb, wb) = tulip::open_connection_sock(b).await?;
        wa.write(b"ping\n")?;
        assert_eq!(rb.readline().await?, b"ping\n");
        wb.write(b"pong\n")?;
        assert_eq!(ra.readline().await?, b"pong\n");
        wa.close();
        assert_eq!(rb.read(10).await?, b"");
        assert!(rb.at_eof());
        Ok(())
    });
}

// conformance: N1
#[test]
fn every_stream_opener_and_server_starter_takes_a_limit() {
    // asyncio's open_connection(sock=), open_unix_connection,
    // start_server(sock=) all take `limit=`: the reader's buffer limit,
    // past which readline fails.
    run_bounded(5.0, async {
        let (a, b) = std::os::unix::net::UnixStream::pair().map_err(Error::from)?;
        let (ra, _wa) = tulip::open_connection_sock_with_limit(a, 4).await?;
        let (_rb, wb) = tulip::open_connection_sock(b).await?;
        assert_eq!(ra.limit(), 4);
        wb.write(b"too long\n")?;
        let e = ra.readline().await.unwrap_err();
        assert!(matches!(e, Error::LimitOverrun { .. }), "{e:?}");

        let dir = std::env::temp_dir().join(format!("tulip-unix-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("echo.sock");
        let server = tulip::start_unix_server(echo, &path).await?;
        let (r, w) = tulip::open_unix_connection_with_limit(&path, 5).await?;
        assert_eq!(r.limit(), 5);
        w.write(b"over unix\n")?;
        let e = r.readline().await.unwrap_err();
        assert!(matches!(e, Error::LimitOverrun { .. }), "{e:?}");
        w.close();
        server.close();
        server.wait_closed().await?;
        let _ = std::fs::remove_dir_all(&dir);

        let sock = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let port = sock.local_addr().map_err(Error::from)?.port();
        let server = tulip::start_server_sock(
            |r: StreamReader, w: StreamWriter| async move {
                w.write(r.limit().to_string().as_bytes())?;
                w.close();
                Ok(())
            },
            sock,
            1234,
        )?;
        let (r, _w) = tulip::open_connection("127.0.0.1", port).await?;
        assert_eq!(r.read_to_eof().await?, b"1234");
        server.close();
        Ok(())
    });
}

#[test]
fn connection_refused() {
    run_bounded(5.0, async {
        // Bind then drop a listener to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::from)?
            .port();
        let err = tulip::open_connection("127.0.0.1", port).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
        Ok(())
    });
}

#[test]
fn resolves_localhost_off_the_loop() {
    run_bounded(5.0, async {
        let server = tulip::start_server(echo, "127.0.0.1", 0).await?;
        let port = server.local_addrs()[0].port();
        let lp = tulip::get_running_loop()?;
        let addrs = lp.getaddrinfo("localhost", port).await?;
        assert!(!addrs.is_empty());
        let (r, w) = tulip::open_connection("localhost", port).await?;
        w.write(b"x\n")?;
        assert_eq!(r.readline().await?, b"x\n");
        server.close();
        Ok(())
    });
}

#[test]
fn serve_forever_until_cancelled() {
    run_bounded(5.0, async {
        let server = tulip::start_server(echo, "127.0.0.1", 0).await?;
        let s2 = server.clone();
        let t = tulip::create_task(async move { s2.serve_forever().await })?;
        tulip::sleep(0.01).await?;
        assert!(
            server.serve_forever().await.is_err(),
            "already serving forever"
        );
        t.cancel();
        t.wait_done().await?;
        assert!(t.cancelled());
        assert!(!server.is_serving());
        assert!(server.sockets().is_empty());
        let _ = Duration::ZERO;
        Ok(())
    });
}

/// asyncio 3.12.1's `Server.wait_closed`: it waits while the server is
/// open, even with no connection (3.12.0 returned at once), and once it is
/// closed, until its last connection is gone (3.11 returned at once); then
/// it returns at once.
#[test]
fn server_wait_closed_waits_for_close_and_for_the_last_connection() {
    run_bounded(5.0, async {
        let server = tulip::start_server(echo, "127.0.0.1", 0).await?;
        let s2 = server.clone();
        let waiting = tulip::create_task(async move { s2.wait_closed().await })?;
        for _ in 0..3 {
            tulip::sleep(0.0).await?;
        }
        assert!(!waiting.done(), "open server, no connection");
        let port = server.local_addrs()[0].port();
        let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
        w.write(b"x")?;
        assert_eq!(r.readexactly(1).await?, b"x"); // accepted and served
        server.close();
        assert!(!server.is_serving());
        for _ in 0..3 {
            tulip::sleep(0.0).await?;
        }
        assert!(!waiting.done(), "closed server, one connection left");
        assert_eq!(server.active_count(), 1);
        // The client leaves: the handler reads EOF, closes, and the last
        // connection_lost wakes the waiter.
        w.close();
        waiting.clone().await?;
        assert_eq!(server.active_count(), 0);
        server.wait_closed().await?;
        Ok(())
    });
}

// conformance: N2
#[test]
fn reader_pauses_a_real_transport_around_the_limit() {
    run_bounded(10.0, async {
        const TOTAL: usize = 2 << 20;
        let server = tulip::start_server(
            |_r: StreamReader, w: StreamWriter| async move {
                let chunk = vec![5u8; 64 * 1024];
                for _ in 0..TOTAL / chunk.len() {
                    w.write(&chunk)?;
                    w.drain().await?;
                }
                w.close();
                Ok(())
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server.local_addrs()[0].port();
        let limit = 16 * 1024;
        let (r, _w) = tulip::open_connection_with_limit("127.0.0.1", port, limit).await?;
        // Nobody reads for a while: the reader must pause its transport.
        tulip::sleep(0.2).await?;
        assert!(r.is_paused(), "{r:?}");
        let t = r.transport().expect("transport");
        assert!(!t.is_reading());
        // Over 2 x limit, by at most one read of the transport's buffer.
        assert!(r.buffered() > 2 * limit);
        assert!(r.buffered() <= 2 * limit + tulip::selector_events::MAX_SIZE);
        // Reading brings it back below the limit: reading resumes.
        let mut total = 0;
        loop {
            let got = r.read(limit).await?;
            if got.is_empty() {
                break;
            }
            total += got.len();
            if r.buffered() <= limit {
                assert!(!r.is_paused());
            }
        }
        assert_eq!(total, TOTAL);
        server.close();
        Ok(())
    });
}

// conformance: N2
#[test]
fn concurrent_drains_on_a_real_socket_all_complete() {
    run_bounded(10.0, async {
        let (server, r, w) = server_and_client(|r: StreamReader, w: StreamWriter| async move {
            // A slow reader: small reads with pauses, so the client's
            // buffer goes over its high-water mark.
            let mut total = 0;
            tulip::sleep(0.05).await?;
            loop {
                tulip::sleep(0.001).await?;
                let got = r.read(16 * 1024).await?;
                if got.is_empty() {
                    break;
                }
                total += got.len();
            }
            w.write(format!("{total}").as_bytes())?;
            w.close();
            Ok(())
        })
        .await?;
        let w = Rc::new(w);
        let mut tasks = Vec::new();
        for i in 0..5u8 {
            let w = w.clone();
            tasks.push(tulip::create_task(async move {
                w.write(&vec![i; 2 << 20])?;
                w.drain().await
            })?);
        }
        tulip::sleep(0.0).await?;
        assert!(
            w.flow_control().is_paused(),
            "the buffer is over its high-water mark"
        );
        for t in tasks {
            t.await?;
        }
        w.write_eof()?;
        assert_eq!(
            r.read_to_eof().await?,
            format!("{}", 5 * (2 << 20)).as_bytes()
        );
        server.close();
        Ok(())
    });
}

#[test]
fn writelines_sends_every_buffer_in_order() {
    run_bounded(5.0, async {
        let (server, r, w) = server_and_client(echo).await?;
        w.writelines(&[b"ab", b"", b"cd", b"ef\n"])?;
        assert_eq!(r.readline().await?, b"abcdef\n");
        let big = vec![b'x'; 100 * 1024];
        w.writelines(&[&big, &big, b"\n"])?;
        let back = r.readexactly(200 * 1024 + 1).await?;
        assert!(back[..200 * 1024].iter().all(|&b| b == b'x') && back[200 * 1024] == b'\n');
        server.close();
        Ok(())
    });
}

/// The writers and tasks the handlers of a server kept.
type Kept = Rc<std::cell::RefCell<Vec<(StreamWriter, tulip::TaskRef)>>>;

#[test]
fn cancelled_client_connected_task_closes_its_connection() {
    // asyncio (gh-113538): when the client_connected_cb task is cancelled,
    // StreamReaderProtocol closes the transport, even if the writer is
    // still referenced elsewhere.
    run_bounded(5.0, async {
        let kept: Kept = Rc::default();
        let k2 = kept.clone();
        let server = tulip::start_server(
            move |_r: StreamReader, w: StreamWriter| {
                let kept = k2.clone();
                async move {
                    let me = tulip::current_task().expect("in a task");
                    kept.borrow_mut().push((w, me));
                    tulip::sleep(3600.0).await
                }
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server.local_addrs()[0].port();
        let (r, _w) = tulip::open_connection("127.0.0.1", port).await?;
        while kept.borrow().is_empty() {
            tulip::sleep(0.001).await?;
        }
        let task = kept.borrow()[0].1.clone();
        task.cancel();
        let eof = tulip::wait_for(async move { r.read(10).await }, 2.0).await;
        assert!(
            matches!(&eof, Ok(d) if d.is_empty()),
            "the connection stays open: {eof:?}"
        );
        assert!(kept.borrow()[0].0.is_closing());
        server.close();
        Ok(())
    });
}

#[test]
fn client_connected_cb_that_panics_at_once_is_reported_and_closes_its_connection() {
    // asyncio (gh-155941): a plain client_connected_cb that raises is
    // reported as "Unhandled exception in client_connected_cb" and its
    // transport is closed, even if the writer is still referenced.
    run_bounded(5.0, async {
        let lp = tulip::get_running_loop()?;
        let reports = common::capture_reports(&lp);
        let kept: Rc<std::cell::RefCell<Vec<StreamWriter>>> = Rc::default();
        let k2 = kept.clone();
        let server = tulip::start_server(
            move |_r: StreamReader, w: StreamWriter| -> std::future::Ready<tulip::Result<()>> {
                k2.borrow_mut().push(w);
                panic!("client_connected_cb failed at once");
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server.local_addrs()[0].port();
        for _ in 0..2 {
            let (r, _w) = tulip::open_connection("127.0.0.1", port).await?;
            let eof = tulip::wait_for(async move { r.read(10).await }, 2.0).await;
            assert!(
                matches!(&eof, Ok(d) if d.is_empty()),
                "the connection stays open: {eof:?}"
            );
        }
        let messages: Vec<String> = reports.borrow().iter().map(|c| c.message.clone()).collect();
        assert_eq!(messages, ["Unhandled exception in client_connected_cb"; 2]);
        // Which connection it was: asyncio's context has the transport.
        for c in reports.borrow().iter() {
            let t = c.transport.as_deref().unwrap_or_default();
            assert!(t.contains("peername=127.0.0.1:"), "{t:?}");
        }
        assert!(reports
            .borrow()
            .iter()
            .all(|c| matches!(c.error, Some(Error::Panic(_)))));
        assert!(kept.borrow().iter().all(|w| w.is_closing()));
        server.close();
        Ok(())
    });
}

#[test]
fn closing_a_unix_server_leaves_the_socket_file_of_a_successor_on_its_path() {
    // asyncio 3.13's `_stop_serving` unlinks the socket file only if its
    // inode is still the one the server bound (`_unix_server_sockets`): a
    // server started on the same path meanwhile (it removed the old file
    // as stale) keeps its file when the old one closes.
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-succ-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("echo.sock");
        let old = tulip::start_unix_server(echo, &path).await?;
        let new = tulip::start_unix_server(echo, &path).await?;
        old.close();
        old.wait_closed().await?;
        assert!(path.exists(), "the successor's socket file was removed");
        let (r, w) = tulip::open_unix_connection(&path).await?;
        w.write(b"to the successor\n")?;
        assert_eq!(r.readline().await?, b"to the successor\n");
        w.close();
        new.close();
        new.wait_closed().await?;
        assert!(
            !path.exists(),
            "the successor removes its own file at close"
        );
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    });
}

#[test]
fn a_unix_server_on_a_path_taken_by_a_file_fails_naming_the_path() {
    // asyncio's create_unix_server: `OSError(EADDRINUSE, "Address {path!r}
    // is already in use")`; a file that is not a socket is never removed.
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("not-a-socket");
        std::fs::write(&path, b"keep me").map_err(Error::from)?;
        let err = tulip::start_unix_server(echo, &path)
            .await
            .expect_err("the path is taken");
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert_eq!(std::fs::read(&path).map_err(Error::from)?, b"keep me");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

#[test]
fn a_unix_server_on_a_symlink_to_a_stale_socket_replaces_the_link() {
    // asyncio's create_unix_server: `if stat.S_ISSOCK(os.stat(path).st_mode):
    // os.remove(path)`. `os.stat` follows the link, so a link to a stale
    // socket is removed (the link, not its target) and the bind succeeds.
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let (stale, link) = (dir.join("stale.sock"), dir.join("link.sock"));
        drop(std::os::unix::net::UnixListener::bind(&stale).map_err(Error::from)?);
        std::os::unix::fs::symlink(&stale, &link).map_err(Error::from)?;
        let server = tulip::start_unix_server(echo, &link).await?;
        let (r, w) = tulip::open_unix_connection(&link).await?;
        w.write(b"through the new socket\n")?;
        assert_eq!(r.readline().await?, b"through the new socket\n");
        w.close();
        server.close();
        server.wait_closed().await?;
        assert!(
            stale.exists(),
            "the link's target is not the server's to remove"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

#[test]
fn a_unix_server_on_a_callers_socket_serves_and_removes_its_file_at_close() {
    // asyncio 3.13's create_unix_server(sock=sock): the caller's bound
    // socket is served as it is; with cleanup_socket (the default) its
    // file is removed at close, as for a server that bound its own path.
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("echo.sock");
        let sock = std::os::unix::net::UnixListener::bind(&path).map_err(Error::from)?;
        let server = tulip::start_unix_server_sock(
            echo,
            sock,
            tulip::DEFAULT_LIMIT,
            &tulip::ServerOptions::new(),
        )?;
        assert!(server.is_serving());
        let (r, w) = tulip::open_unix_connection(&path).await?;
        w.write(b"over the caller's socket\n")?;
        assert_eq!(r.readline().await?, b"over the caller's socket\n");
        w.close();
        server.close();
        server.wait_closed().await?;
        assert!(!path.exists(), "cleanup_socket removes the file at close");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

#[test]
fn cleanup_socket_false_leaves_the_socket_file_at_close() {
    // asyncio 3.13: with cleanup_socket=False, neither a server that bound
    // its path nor one on a caller's socket removes the file.
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-keep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let opts = tulip::ServerOptions::new().cleanup_socket(false);
        let bound = dir.join("bound.sock");
        let server =
            tulip::start_unix_server_with(echo, &bound, tulip::DEFAULT_LIMIT, &opts).await?;
        server.close();
        server.wait_closed().await?;
        assert!(bound.exists(), "cleanup_socket(false) keeps a bound path");
        let given = dir.join("given.sock");
        let sock = std::os::unix::net::UnixListener::bind(&given).map_err(Error::from)?;
        let server = tulip::start_unix_server_sock(echo, sock, tulip::DEFAULT_LIMIT, &opts)?;
        server.close();
        server.wait_closed().await?;
        assert!(
            given.exists(),
            "cleanup_socket(false) keeps a caller's file"
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

#[test]
fn a_unix_server_on_a_callers_socket_leaves_a_successors_file() {
    // The inode rule holds for sock= too: the file is removed only while
    // it is still the one the socket was bound to.
    run_bounded(5.0, async {
        let dir = std::env::temp_dir().join(format!("tulip-unix-sock2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(Error::from)?;
        let path = dir.join("echo.sock");
        let sock = std::os::unix::net::UnixListener::bind(&path).map_err(Error::from)?;
        let lp = tulip::get_running_loop()?;
        struct Nothing;
        impl tulip::Protocol for Nothing {}
        let old = lp.create_unix_server_sock(|| Rc::new(Nothing), sock, &Default::default())?;
        let new = tulip::start_unix_server(echo, &path).await?;
        old.close();
        old.wait_closed().await?;
        assert!(path.exists(), "the successor's socket file was removed");
        new.close();
        new.wait_closed().await?;
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    });
}

#[test]
fn a_unix_server_on_an_unbound_or_abstract_socket_removes_nothing() {
    // asyncio skips the cleanup of a socket without a path (an abstract
    // name): there is no file to remove.
    run_bounded(5.0, async {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("tulip-abstract-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .map_err(Error::from)?;
        let sock = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(Error::from)?;
        let server = tulip::start_unix_server_sock(
            echo,
            sock,
            tulip::DEFAULT_LIMIT,
            &tulip::ServerOptions::new(),
        )?;
        let client = std::os::unix::net::UnixStream::connect_addr(&addr).map_err(Error::from)?;
        client.set_nonblocking(true).map_err(Error::from)?;
        let (r, w) = tulip::open_connection_sock(client).await?;
        w.write(b"abstract\n")?;
        assert_eq!(r.readline().await?, b"abstract\n");
        w.close();
        server.close();
        server.wait_closed().await?;
        Ok(())
    });
}
