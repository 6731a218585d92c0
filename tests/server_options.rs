//! The listening socket's options of `create_server`/`start_server`
//! (asyncio's `backlog`, `reuse_address`, `reuse_port`), on loopback.
//!
//! The backlog is observed through the kernel's behaviour: while the loop
//! does not run (the test body does not await), nothing is accepted, so
//! exactly `backlog + 1` connections complete and the next one's SYN is
//! dropped (its connect times out).

mod common;

use std::cell::Cell;
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use common::run_bounded;
use tulip::transports::prelude::*;
use tulip::{Error, ServerOptions};

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
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{err}");
        assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE));
        assert!(
            err.to_string().contains(&format!(
                "error while attempting to bind on address 127.0.0.1:{port}"
            )),
            "{err}"
        );
        let accepted = Rc::new(Cell::new(0));
        let a2 = accepted.clone();
        let second = lp
            .create_server_with(
                move || Rc::new(CloseAtOnce(a2.clone())),
                "127.0.0.1",
                port,
                &opts,
            )
            .await?;
        assert_eq!(second.local_addrs()[0].port(), port);
        // With the first one closed, the second still serves the port.
        first.close();
        let _conn = lp
            .sock_connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        while accepted.get() < 1 {
            tulip::sleep(0.005).await?;
        }
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
        let accepted = Rc::new(Cell::new(0));
        let a2 = accepted.clone();
        let server = lp
            .create_server(move || Rc::new(CloseAtOnce(a2.clone())), "127.0.0.1", 0)
            .await?;
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
