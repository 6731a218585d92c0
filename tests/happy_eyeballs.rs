//! Connecting to a host with several addresses: asyncio's default (one
//! after the other) and Happy Eyeballs (`happy_eyeballs_delay`, RFC 8305,
//! `staggered_race`), on loopback addresses only.
//!
//! Three kinds of address, all in 127.0.0.0/8:
//! - *hanging*: a listener with a backlog of 0 whose one queue slot is
//!   already taken and which never accepts; Linux drops the SYNs, so a
//!   connect to it hangs (for about two minutes of SYN retries);
//! - *refused*: a port nothing listens on (a bound-then-closed port);
//! - *good*: a listener (not accepting: the kernel completes the
//!   handshake, and no fd appears in this process).
//!
//! This file is its own test binary because it counts `/proc/self/fd`; its
//! tests are serialized by a lock.

mod common;

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::run_bounded;
use tulip::staggered::staggered_race;
use tulip::transports::prelude::*;
use tulip::{ConnectOptions, Error};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// An address whose connect hangs: keep the returned value alive.
struct Hanging {
    addr: SocketAddr,
    _listener: TcpListener,
    _filler: TcpStream,
}

fn hanging(ip: &str) -> Hanging {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    // SAFETY: listen(2) on a valid socket fd owned by `listener`.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    // A backlog of 0 queues one connection: take that slot.
    let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    Hanging {
        addr,
        _listener: listener,
        _filler: filler,
    }
}

/// An address on `ip` where nothing listens.
fn refused(ip: &str) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

#[derive(Debug)]
struct Nothing;
impl Protocol for Nothing {}

/// Connecting to `addrs` is still pending after 0.3 s; `wait_for` then
/// cancels it, and every socket it opened is closed again.
async fn times_out_leaving_no_fd(
    lp: &tulip::EventLoop,
    addrs: [SocketAddr; 2],
    opts: ConnectOptions,
) -> tulip::Result<()> {
    let before = open_fds();
    let lp2 = lp.clone();
    let attempt = tulip::wait_for(
        async move {
            lp2.create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts)
                .await
                .map(|_| ())
        },
        0.3,
    )
    .await;
    assert!(matches!(attempt, Err(Error::Timeout)), "{attempt:?}");
    assert_eq!(open_fds(), before);
    Ok(())
}

fn peer(t: &tulip::SocketTransport) -> Option<SocketAddr> {
    t.get_extra_info("peername").and_then(|i| i.as_addr())
}

#[test]
fn a_hanging_address_hangs() {
    let _serial = serial();
    let h = hanging("127.0.0.2");
    let err = TcpStream::connect_timeout(&h.addr, Duration::from_millis(300)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
}

#[test]
fn a_hanging_first_address_loses_to_the_second_after_the_delay() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let h = hanging("127.0.0.2");
        let good = TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let addrs = [h.addr, good.local_addr().map_err(Error::from)?];
        let before = open_fds();
        let opts = ConnectOptions::new().happy_eyeballs_delay(0.2);
        let start = lp.time();
        let (t, _) = lp
            .create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts)
            .await?;
        let took = lp.time() - start;
        assert!((0.2..0.8).contains(&took), "connected after {took:.3} s");
        assert_eq!(peer(&t), Some(addrs[1]));
        // The losing attempt's socket is closed: only the winner's is new.
        assert_eq!(open_fds(), before + 1);
        t.close();
        common::settle().await?;
        assert_eq!(open_fds(), before);
        Ok(())
    });
}

#[test]
fn a_failed_attempt_starts_the_next_one_at_once() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let good = TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let addrs = [
            refused("127.0.0.2"),
            refused("127.0.0.3"),
            good.local_addr().map_err(Error::from)?,
        ];
        // A delay far longer than the test's bound: only failures move on.
        let opts = ConnectOptions::new().happy_eyeballs_delay(30.0);
        let start = lp.time();
        let (t, _) = lp
            .create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts)
            .await?;
        assert!(lp.time() - start < 1.0);
        assert_eq!(peer(&t), Some(addrs[2]));
        t.close();
        Ok(())
    });
}

#[test]
fn without_happy_eyeballs_the_addresses_are_tried_in_order() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let good = TcpListener::bind("127.0.0.1:0").map_err(Error::from)?;
        let good_addr = good.local_addr().map_err(Error::from)?;
        let opts = ConnectOptions::new();
        let (t, _) = lp
            .create_connection_addrs(
                || Rc::new(Nothing),
                &[refused("127.0.0.2"), good_addr],
                &opts,
            )
            .await?;
        assert_eq!(peer(&t), Some(good_addr));
        t.close();
        common::settle().await?;
        // A hanging first address holds up the good second one: no race.
        let h = hanging("127.0.0.3");
        // The attempt cancelled by the timeout closed its socket.
        times_out_leaving_no_fd(&lp, [h.addr, good_addr], opts).await
    });
}

#[test]
fn when_every_address_fails_the_error_names_each_one() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let addrs = [
            refused("127.0.0.1"),
            refused("127.0.0.2"),
            refused("127.0.0.3"),
        ];
        let before = open_fds();
        for opts in [
            ConnectOptions::new(),
            ConnectOptions::new().happy_eyeballs_delay(0.25),
        ] {
            let err = lp
                .create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts)
                .await
                .unwrap_err();
            assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
            let msg = err.to_string();
            assert!(msg.starts_with("multiple exceptions: "), "{msg}");
            for a in &addrs {
                assert!(msg.contains(&format!("connect call failed ({a})")), "{msg}");
            }
            assert_eq!(open_fds(), before, "every attempt's socket is closed");
        }
        // One address: its own error, with the errno.
        let err = lp
            .create_connection_addrs(|| Rc::new(Nothing), &addrs[..1], &ConnectOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
        assert!(err
            .to_string()
            .starts_with(&format!("connect call failed ({})", addrs[0])));
        // Its text already ends with the OS error's, so that error is not
        // also its source: a chain printer (anyhow's `{:#}`) shows it once.
        assert!(std::error::Error::source(&err).is_none(), "{err:?}");
        // all_errors: every error, as a group.
        let opts = ConnectOptions::new()
            .happy_eyeballs_delay(0.25)
            .all_errors(true);
        match lp
            .create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts)
            .await
        {
            Err(Error::Group { errors, .. }) => {
                assert_eq!(errors.len(), 3);
                assert!(errors
                    .iter()
                    .all(|e| e.raw_os_error() == Some(libc::ECONNREFUSED)));
            }
            other => panic!("expected a group, got {:?}", other.map(|_| ())),
        }
        Ok(())
    });
}

#[test]
fn cancelling_the_race_closes_every_attempt() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (a, b) = (hanging("127.0.0.2"), hanging("127.0.0.3"));
        let opts = ConnectOptions::new().happy_eyeballs_delay(0.05);
        times_out_leaving_no_fd(&lp, [a.addr, b.addr], opts).await
    });
}

#[test]
fn open_connection_addrs_races_too() {
    let _serial = serial();
    run_bounded(10.0, async {
        let server = tulip::start_server(
            |r, w: tulip::StreamWriter| async move {
                let line = r.readline().await?;
                w.write(&line)?;
                w.drain().await
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let h = hanging("127.0.0.2");
        let addrs = [h.addr, server.local_addrs()[0]];
        let opts = ConnectOptions::new().happy_eyeballs_delay(0.05);
        let (r, w) = tulip::open_connection_addrs(&addrs, tulip::DEFAULT_LIMIT, &opts).await?;
        w.write(b"hello\n")?;
        assert_eq!(r.readline().await?, b"hello\n");
        w.close();
        server.close();
        Ok(())
    });
}

/// When each attempt of a staggered race started, and how it ends.
#[test]
fn staggered_race_starts_on_failure_or_after_the_delay() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let started = Rc::new(RefCell::new(Vec::new()));
        // 0: slow, then fails; 1: fails at once; 2: wins after 0.05 s.
        let plan = [(1.0, false), (0.0, false), (0.05, true)];
        let t0 = lp.time();
        let attempts = plan.into_iter().enumerate().map(|(i, (secs, ok))| {
            let (started, lp) = (started.clone(), lp.clone());
            move || async move {
                started.borrow_mut().push((i, lp.time() - t0));
                tulip::sleep(secs).await?;
                if ok {
                    Ok(i)
                } else {
                    Err(Error::msg(format!("attempt {i} failed")))
                }
            }
        });
        let (winner, index, exceptions) = staggered_race(attempts, Some(0.1)).await?;
        assert_eq!((winner, index), (Some(2), Some(2)));
        let s = started.borrow().clone();
        assert_eq!(s.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(s[1].1 >= 0.1, "the second starts after the delay: {s:?}");
        assert!(
            s[2].1 - s[1].1 < 0.05,
            "the third as soon as the second failed: {s:?}"
        );
        assert!(exceptions[0].as_ref().is_some_and(Error::is_cancelled));
        assert!(exceptions[1].is_some() && exceptions[2].is_none());
        // No delay: one after the other, each after the previous failed.
        let attempts = [false, false, true].into_iter().map(|ok| {
            move || async move {
                tulip::sleep(0.01).await?;
                if ok {
                    Ok(())
                } else {
                    Err(Error::msg("no"))
                }
            }
        });
        let start = lp.time();
        let (_, index, exceptions) = staggered_race(attempts, None).await?;
        assert_eq!(index, Some(2));
        assert!(lp.time() - start >= 0.03);
        assert_eq!(exceptions.iter().filter(|e| e.is_some()).count(), 2);
        Ok(())
    });
}

/// The peer address a listener sees for the next connection.
fn accepted_peer(listener: &TcpListener) -> SocketAddr {
    // The handshake is complete (create_connection returned): no wait.
    listener.accept().unwrap().1
}

/// A listener on `ip` (never accepting: the kernel completes the
/// handshakes), and its address.
fn listening(ip: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[test]
fn local_addr_is_where_the_connection_comes_from() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (good, good_addr) = listening("127.0.0.1");
        let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
        // One after the other, then raced: every attempt binds.
        for opts in [
            ConnectOptions::new().local_addr(local),
            ConnectOptions::new()
                .happy_eyeballs_delay(30.0)
                .local_addr(local),
        ] {
            let addrs = [refused("127.0.0.3"), good_addr];
            let (t, _) = lp
                .create_connection_addrs(|| Rc::new(Nothing), &addrs, &opts)
                .await?;
            let seen = accepted_peer(&good);
            assert_eq!(seen.ip(), local.ip());
            let sockname = t.get_extra_info("sockname").and_then(|i| i.as_addr());
            assert_eq!(sockname, Some(seen));
            t.close();
        }
        // A chosen port: that port exactly (taken from the kernel, then freed).
        let chosen = listening("127.0.0.2").1;
        let opts = ConnectOptions::new().local_addr(chosen);
        let (t, _) = lp
            .create_connection_addrs(|| Rc::new(Nothing), &[good_addr], &opts)
            .await?;
        assert_eq!(accepted_peer(&good), chosen);
        t.close();
        Ok(())
    });
}

#[test]
fn a_local_addr_in_use_fails_and_names_it() {
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (_good, good_addr) = listening("127.0.0.1");
        let (_taken, local) = listening("127.0.0.1");
        let before = open_fds();
        let opts = ConnectOptions::new().local_addr(local);
        let err = lp
            .create_connection_addrs(|| Rc::new(Nothing), &[good_addr], &opts)
            .await
            .unwrap_err();
        common::assert_bind_in_use(&err, local);
        assert_eq!(open_fds(), before, "the unbound socket is closed");
        // Through the streams API too.
        let err = tulip::open_connection_addrs(&[good_addr], tulip::DEFAULT_LIMIT, &opts)
            .await
            .unwrap_err();
        common::assert_bind_in_use(&err, local);
        Ok(())
    });
}

#[test]
fn local_addr_skips_addresses_of_the_other_family() {
    use std::io::ErrorKind;
    let _serial = serial();
    run_bounded(10.0, async {
        let lp = tulip::get_running_loop()?;
        let (good, good_addr) = listening("127.0.0.1");
        // An IPv6 loopback address: never tried with an IPv4 local_addr
        // (whether or not this host has IPv6).
        let v6: SocketAddr = format!("[::1]:{}", good_addr.port()).parse().unwrap();
        let opts = ConnectOptions::new().local_addr("127.0.0.2:0".parse().unwrap());
        let (t, _) = lp
            .create_connection_addrs(|| Rc::new(Nothing), &[v6, good_addr], &opts)
            .await?;
        assert_eq!(peer(&t), Some(good_addr));
        assert_eq!(accepted_peer(&good).ip().to_string(), "127.0.0.2");
        t.close();
        // Nothing of its family left: asyncio's error, naming the family.
        let res = lp
            .create_connection_addrs(|| Rc::new(Nothing), &[v6], &opts)
            .await;
        let err = res.map(|_| ()).unwrap_err();
        assert_eq!(err.io_kind(), Some(ErrorKind::AddrNotAvailable), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("no matching local address with family=AF_INET6 found"),
            "{msg}"
        );
        assert!(msg.contains("give a local_addr of that family"), "{msg}");
        Ok(())
    });
}

#[test]
fn a_dropped_race_leaves_no_delay_timer_behind() {
    // asyncio's race waits for the delay with `wait_for(..., delay)`, whose
    // timer goes with the race however it ends; a dropped race must not
    // leave its delay timer in the loop's heap.
    let _serial = serial();
    // Not under run_bounded: its watchdog would sit at the heap's head, and
    // a cancelled timer behind it stays counted until it gets there.
    tulip::run(async {
        use std::future::Future as _;
        let lp = tulip::get_running_loop()?;
        let never: tulip::Future<u32> = lp.create_future();
        let attempts = (0..2).map(|_| {
            let never = never.clone();
            move || never
        });
        let mut race = Box::pin(staggered_race(attempts, Some(1000.0)));
        std::future::poll_fn(|cx| {
            assert!(race.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        assert_eq!(lp.scheduled_timer_count(), 1, "the delay's timer");
        drop(race);
        for _ in 0..3 {
            tulip::sleep(0.0).await?; // the attempts' cancels run; timers are swept
        }
        assert_eq!(lp.scheduled_timer_count(), 0);
        Ok(())
    })
    .unwrap();
}
