//! EMFILE on accept backs off instead of spinning (N4). Its own test binary:
//! it lowers the process's file-descriptor limit.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Mutex;

use tulip::Protocol;

struct Nothing;
impl Protocol for Nothing {}

fn set_nofile(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = soft as libc::rlim_t;
    // SAFETY: `lim` is a valid rlimit; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// The tests change the process's fd limit: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// One more than the highest open fd number (what RLIMIT_NOFILE bounds).
fn fd_ceiling() -> u64 {
    let names: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    names.into_iter().max().unwrap_or(0) + 1
}

/// Counts the loop's reports of accept running out of descriptors; any
/// other report fails the test.
fn count_resource_errors(lp: &tulip::EventLoop) -> Rc<Cell<u32>> {
    let errors = Rc::new(Cell::new(0u32));
    let e2 = errors.clone();
    lp.set_exception_handler(Some(
        move |_: &tulip::EventLoop, ctx: &tulip::ExceptionContext| {
            assert!(ctx.message.contains("out of system resource"), "{ctx}");
            // asyncio's context names the listening socket.
            let socket = ctx.socket.as_deref().unwrap_or_default();
            assert!(socket.contains("TcpListener"), "{ctx}");
            e2.set(e2.get() + 1);
        },
    ));
    errors
}

// conformance: N4
#[test]
fn emfile_on_accept_backs_off_then_recovers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let _dog = lp.call_later(10.0, || tulip::interrupt())?;
        let errors = count_resource_errors(&lp);
        let accepted = Rc::new(Cell::new(0u32));
        let a2 = accepted.clone();
        let server = lp
            .create_server(
                move || {
                    a2.set(a2.get() + 1);
                    Rc::new(Nothing)
                },
                "127.0.0.1",
                0,
            )
            .await?;
        let addr = server.local_addrs()[0];
        let (saved, _) = {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: `lim` is a valid, writable rlimit.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
            (lim.rlim_cur, lim.rlim_max)
        };
        // Three clients wait in the backlog (the loop has not run yet)...
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        // ...then no fd is left: cap the limit and fill the holes below it.
        set_nofile(fd_ceiling());
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
        }
        tulip::sleep(0.6).await?;
        let during = errors.get();
        assert!(during >= 1, "accept must have failed with EMFILE");
        assert!(during <= 4, "accept spun: {during} errors in 0.6 s");
        assert_eq!(accepted.get(), 0);
        // Resources come back: the server accepts the waiting clients.
        set_nofile(saved);
        drop(fillers);
        let deadline = lp.time() + 5.0;
        while accepted.get() < 3 && lp.time() < deadline {
            tulip::sleep(0.05).await?;
        }
        assert_eq!(accepted.get(), 3);
        drop(clients);
        server.close();
        Ok(())
    })
    .unwrap();
}

// conformance: N4
#[test]
fn close_during_the_accept_backoff_closes_the_listening_socket_at_once() {
    // asyncio's `Server.close` -> `_stop_serving(sock)`: the reader goes and
    // the socket is closed then, even while an `ACCEPT_RETRY_DELAY` retry is
    // pending: a client that connects afterwards is refused.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tulip::run(async {
        let lp = tulip::get_running_loop()?;
        let _dog = lp.call_later(10.0, || tulip::interrupt())?;
        let errors = count_resource_errors(&lp);
        let server = lp
            .create_server(|| Rc::new(Nothing), "127.0.0.1", 0)
            .await?;
        let addr = server.local_addrs()[0];
        let mut saved = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `saved` is a valid, writable rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved) };
        let client = std::net::TcpStream::connect(addr).expect("connect");
        set_nofile(fd_ceiling());
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
        }
        // The first accept fails: the retry is pending (ACCEPT_RETRY_DELAY).
        let deadline = lp.time() + 2.0;
        while errors.get() == 0 && lp.time() < deadline {
            tulip::sleep(0.001).await?;
        }
        assert_eq!(errors.get(), 1);
        server.close();
        set_nofile(saved.rlim_cur);
        drop(fillers);
        let refused = std::net::TcpStream::connect(addr);
        assert_eq!(
            refused.as_ref().map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::ConnectionRefused),
            "the listening socket is still open: {refused:?}"
        );
        drop(client);
        Ok(())
    })
    .unwrap();
}
