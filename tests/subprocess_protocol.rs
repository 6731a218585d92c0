//! The low-level subprocess API: `loop.subprocess_exec` and friends, the
//! `SubprocessTransport` and a `SubprocessProtocol`, with real children
//! (asyncio's `base_subprocess.py`). Every behaviour runs under both child
//! watchers (pidfd and the thread fallback).

mod common;

use common::{both_watchers, on_watcher_loop as on_loop};

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulip::subprocess::{Command, Stdio, Stdios};
use tulip::{ChildWatcherKind, Error, Result, SubprocessProtocol, SubprocessTransport};

/// Writes down every call it gets, as text.
#[derive(Debug, Default)]
struct Recorder {
    events: RefCell<Vec<String>>,
    transport: RefCell<Option<Rc<SubprocessTransport>>>,
    /// Panics in `pipe_data_received` when set.
    panic_on_data: bool,
    /// Resolved at `connection_lost`.
    lost: RefCell<Option<tulip::Future<()>>>,
}

impl Recorder {
    fn new() -> Rc<Recorder> {
        Rc::new(Recorder::default())
    }
    fn events(&self) -> Vec<String> {
        self.events.borrow().clone()
    }
    fn push(&self, s: String) {
        self.events.borrow_mut().push(s);
    }
    /// Waits for `connection_lost`. (`SubprocessTransport::wait()` returns
    /// at once when the exit is already known, as asyncio's `_wait` does,
    /// possibly before the last calls reached the protocol.)
    async fn finished(&self) -> Result<()> {
        if self.events().iter().any(|e| e.starts_with("lost")) {
            return Ok(());
        }
        let fut = tulip::get_running_loop()?.create_future();
        *self.lost.borrow_mut() = Some(fut.clone());
        fut.await
    }
}

impl SubprocessProtocol for Recorder {
    fn connection_made(&self, transport: Rc<SubprocessTransport>) {
        self.push("made".into());
        *self.transport.borrow_mut() = Some(transport);
    }
    fn pipe_data_received(&self, fd: i32, data: &[u8]) {
        self.push(format!("data {fd} {}", String::from_utf8_lossy(data)));
        if self.panic_on_data {
            panic!("the protocol broke");
        }
    }
    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) {
        self.push(format!("pipe_lost {fd} {}", exc.is_some()));
    }
    fn process_exited(&self) {
        let rc = self
            .transport
            .borrow()
            .as_ref()
            .and_then(|t| t.get_returncode());
        self.push(format!("exited {rc:?}"));
    }
    fn connection_lost(&self, exc: Option<Error>) {
        self.push(format!("lost {}", exc.is_some()));
        // As asyncio's protocols do: let go of the transport at the end.
        self.transport.borrow_mut().take();
        if let Some(f) = self.lost.borrow_mut().take() {
            let _ = f.set_result(());
        }
    }
    fn pause_writing(&self) {
        self.push("pause".into());
    }
    fn resume_writing(&self) {
        self.push("resume".into());
    }
}

/// The events with the data chunks of each fd joined, so that the test
/// does not depend on how the kernel split the output.
fn joined(events: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if let (Some(last), Some(rest)) = (out.last_mut(), e.strip_prefix("data ")) {
            if let Some(prev) = last.strip_prefix("data ") {
                if prev.as_bytes()[0] == rest.as_bytes()[0] {
                    last.push_str(&rest[2..]);
                    continue;
                }
            }
        }
        out.push(e.clone());
    }
    out
}

/// Everything the child wrote on `fd`, wherever its chunks fell among the
/// other calls: `process_exited` may come between two chunks of one pipe
/// (the reap does not wait for the pipes), as in asyncio.
fn output(events: &[String], fd: i32) -> String {
    let prefix = format!("data {fd} ");
    events
        .iter()
        .filter_map(|e| e.strip_prefix(&prefix))
        .collect()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ----- the protocol's life -----

fn events_come_in_asyncio_order(kind: ChildWatcherKind) {
    let (events, rc) = on_loop(kind, |lp| async move {
        let script = r#"read x; echo "out:$x"; echo err >&2; exit 3"#;
        let (t, proto) = lp
            .subprocess_shell(Recorder::new, script, Stdios::piped())
            .await?;
        // subprocess_shell returns once connection_made has run.
        assert_eq!(proto.events(), ["made"]);
        assert!(proto.transport.borrow().as_ref().unwrap().get_pid() == t.get_pid());
        assert!(t.get_pipe_transport(3).is_none());
        let stdin = t.get_pipe_transport(0).expect("stdin is a pipe");
        stdin.write(b"hi\n")?;
        stdin.close();
        let rc = t.wait().await?;
        // wait() returns after connection_lost.
        assert_eq!(
            proto.events().last().map(String::as_str),
            Some("lost false")
        );
        Ok((proto.events(), rc))
    });
    assert_eq!(rc, 3);
    let ev = joined(&events);
    assert_eq!(ev.first().map(String::as_str), Some("made"), "{ev:?}");
    assert_eq!(ev.last().map(String::as_str), Some("lost false"), "{ev:?}");
    for want in [
        "data 1 out:hi\n",
        "data 2 err\n",
        "pipe_lost 0 false",
        "pipe_lost 1 false",
        "pipe_lost 2 false",
        "exited Some(3)",
    ] {
        assert_eq!(
            ev.iter().filter(|e| *e == want).count(),
            1,
            "{want:?} in {ev:?}"
        );
    }
    // A pipe's data comes before its loss.
    let pos = |s: &str| ev.iter().position(|e| e == s).unwrap();
    assert!(pos("data 1 out:hi\n") < pos("pipe_lost 1 false"), "{ev:?}");
    assert!(pos("data 2 err\n") < pos("pipe_lost 2 false"), "{ev:?}");
    assert_eq!(ev.len(), 8, "{ev:?}");
}
both_watchers!(
    events_come_in_asyncio_order,
    events_come_in_asyncio_order_pidfd,
    events_come_in_asyncio_order_thread
);

/// Output written before the protocol is connected is queued and comes
/// after `connection_made` (asyncio's `_pending_calls`), for children that
/// write and exit at once.
fn connection_made_comes_first(kind: ChildWatcherKind) {
    let all = on_loop(kind, |lp| async move {
        let mut all = Vec::new();
        for _ in 0..20 {
            let stdio = Stdios::piped_output();
            let (t, proto) = lp
                .subprocess_exec(Recorder::new, "printf", ["x"], stdio)
                .await?;
            proto.finished().await?;
            assert_eq!(t.wait().await?, 0);
            all.push(proto.events());
        }
        Ok(all)
    });
    for ev in all {
        assert_eq!(ev[0], "made", "{ev:?}");
        assert_eq!(ev.last().unwrap(), "lost false", "{ev:?}");
        assert_eq!(
            joined(&ev).iter().filter(|e| *e == "data 1 x").count(),
            1,
            "{ev:?}"
        );
    }
}
both_watchers!(
    connection_made_comes_first,
    connection_made_comes_first_pidfd,
    connection_made_comes_first_thread
);

/// No pipes at all: connection_made, process_exited, connection_lost.
fn a_child_without_pipes(kind: ChildWatcherKind) {
    let ev = on_loop(kind, |lp| async move {
        let (t, proto) = lp
            .subprocess_exec(Recorder::new, "true", [""; 0], Stdios::default())
            .await?;
        assert!(t.get_pipe_transport(1).is_none());
        proto.finished().await?;
        assert_eq!(t.wait().await?, 0);
        Ok(proto.events())
    });
    assert_eq!(ev, ["made", "exited Some(0)", "lost false"]);
}
both_watchers!(
    a_child_without_pipes,
    a_child_without_pipes_pidfd,
    a_child_without_pipes_thread
);

// ----- close, signals -----

fn close_kills_a_running_child(kind: ChildWatcherKind) {
    let (rc, ev) = on_loop(kind, |lp| async move {
        let (t, proto) = lp
            .subprocess_exec(Recorder::new, "sleep", ["100"], Stdios::piped())
            .await?;
        assert!(!t.is_closing());
        t.close();
        assert!(t.is_closing());
        let rc = t.wait().await?;
        Ok((rc, proto.events()))
    });
    assert_eq!(rc, -9);
    let ev = joined(&ev);
    assert_eq!(ev.first().unwrap(), "made");
    assert_eq!(ev.last().unwrap(), "lost false");
    assert!(ev.contains(&"exited Some(-9)".to_string()), "{ev:?}");
    for fd in 0..3 {
        assert!(ev.contains(&format!("pipe_lost {fd} false")), "{ev:?}");
    }
}
both_watchers!(
    close_kills_a_running_child,
    close_kills_a_running_child_pidfd,
    close_kills_a_running_child_thread
);

fn signals_and_the_finished_transport(kind: ChildWatcherKind) {
    on_loop(kind, |lp| async move {
        let (t, _proto) = lp
            .subprocess_exec(Recorder::new, "sleep", ["100"], Stdios::default())
            .await?;
        t.terminate()?;
        assert_eq!(t.wait().await?, -libc::SIGTERM);
        assert_eq!(t.get_returncode(), Some(-libc::SIGTERM));
        // Finished: asyncio's `_check_proc` raises ProcessLookupError.
        let err = t.kill().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
        Ok(())
    });
}
both_watchers!(
    signals_and_the_finished_transport,
    signals_and_the_finished_transport_pidfd,
    signals_and_the_finished_transport_thread
);

/// The stdin pipe's flow control reaches the subprocess protocol.
fn pause_writing_reaches_the_protocol(kind: ChildWatcherKind) {
    let ev = on_loop(kind, |lp| async move {
        let stdio = Stdios {
            stdin: Stdio::Pipe,
            ..Stdios::default()
        };
        let (t, proto) = lp
            .subprocess_exec(Recorder::new, "sleep", ["100"], stdio)
            .await?;
        let stdin = t.get_pipe_transport(0).unwrap();
        stdin.write(&vec![b'x'; 1 << 20])?;
        assert!(proto.events().contains(&"pause".to_string()));
        t.close();
        t.wait().await?;
        Ok(proto.events())
    });
    assert_eq!(ev.iter().filter(|e| *e == "pause").count(), 1, "{ev:?}");
}
both_watchers!(
    pause_writing_reaches_the_protocol,
    pause_writing_reaches_the_protocol_pidfd,
    pause_writing_reaches_the_protocol_thread
);

// ----- failures -----

/// A panic in one protocol call goes to the exception handler; the other
/// calls still come.
fn a_panicking_protocol_is_reported(kind: ChildWatcherKind) {
    let (ev, reports) = on_loop(kind, |lp| async move {
        let reports = common::capture_reports(&lp);
        let make = || {
            Rc::new(Recorder {
                panic_on_data: true,
                ..Recorder::default()
            })
        };
        let (t, proto) = lp
            .subprocess_exec(make, "printf", ["x"], Stdios::piped_output())
            .await?;
        proto.finished().await?;
        t.wait().await?;
        let n = reports.borrow().len();
        Ok((proto.events(), n))
    });
    assert!(reports >= 1);
    assert_eq!(ev.last().unwrap(), "lost false", "{ev:?}");
}
both_watchers!(
    a_panicking_protocol_is_reported,
    a_panicking_protocol_is_reported_pidfd,
    a_panicking_protocol_is_reported_thread
);

#[test]
fn a_failed_spawn_is_an_error_and_leaks_no_fd() {
    // Alone in a process: other tests open fds meanwhile.
    if common::rerun_alone("a_failed_spawn_is_an_error_and_leaks_no_fd") {
        return;
    }
    on_loop(ChildWatcherKind::Pidfd, |lp| async move {
        let before = open_fds();
        let err = lp
            .subprocess_exec(
                Recorder::new,
                "/nonexistent/tulip-test",
                [""; 0],
                Stdios::piped(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
        assert_eq!(open_fds(), before);
        Ok(())
    });
}

/// After 50 children: no fd, no zombie, and the transports and protocols
/// are freed (no reference cycle is left).
fn nothing_is_left_behind(kind: ChildWatcherKind) {
    let name = match kind {
        ChildWatcherKind::Pidfd => "nothing_is_left_behind_pidfd",
        ChildWatcherKind::Thread => "nothing_is_left_behind_thread",
    };
    // Alone in a process: other tests open fds meanwhile.
    if common::rerun_alone(name) {
        return;
    }
    on_loop(kind, |lp| async move {
        let before = open_fds();
        let mut weak = Vec::new();
        for _ in 0..50 {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "cat; echo done"]).stdios(Stdios::piped());
            let (t, proto) = lp.subprocess_command(Recorder::new, &mut cmd).await?;
            let stdin = t.get_pipe_transport(0).unwrap();
            stdin.write(b"in\n")?;
            stdin.write_eof()?;
            assert_eq!(t.wait().await?, 0);
            let ev = proto.events();
            assert_eq!(output(&ev, 1), "in\ndone\n", "{ev:?}");
            weak.push((Rc::downgrade(&t), Rc::downgrade(&proto)));
        }
        tulip::sleep(0.0).await?;
        assert_eq!(open_fds(), before);
        assert_eq!(lp.unreaped_children(), 0);
        for (t, p) in weak {
            assert!(t.upgrade().is_none() && p.upgrade().is_none());
        }
        Ok(())
    });
}
both_watchers!(
    nothing_is_left_behind,
    nothing_is_left_behind_pidfd,
    nothing_is_left_behind_thread
);

/// A transport that nobody holds when its loop closes is dropped, and, as
/// asyncio's `__del__` closes an unclosed transport, its running child is
/// killed (and then reaped by the closed loop's reaper).
#[test]
fn a_running_child_is_killed_when_its_dropped_transport_goes_with_the_loop() {
    let mut runner = tulip::Runner::new();
    let pid = runner
        .run(async {
            let lp = tulip::get_running_loop()?;
            let (t, _) = lp
                .subprocess_exec(Recorder::new, "sleep", ["100"], Stdios::piped())
                .await?;
            Ok(t.get_pid())
        })
        .unwrap();
    runner.close();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "child {pid} still there");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A caller cancelled while the pipes connect: the child is killed and
/// reaped before the error comes back, and the protocol, which never got
/// `connection_made`, hears nothing at all (the calls stay queued, as
/// asyncio's `_pending_calls` do).
fn a_cancelled_spawn_kills_the_child_and_tells_the_protocol_nothing(kind: ChildWatcherKind) {
    on_loop(kind, |lp| async move {
        let proto: Rc<RefCell<Option<Rc<Recorder>>>> = Rc::default();
        let keep = proto.clone();
        let l = lp.clone();
        let task = lp.create_task(async move {
            let make = || {
                let p = Recorder::new();
                *keep.borrow_mut() = Some(p.clone());
                p
            };
            l.subprocess_exec(make, "sleep", ["100"], Stdios::piped())
                .await
                .map(|_| ())
        })?;
        tulip::sleep(0.0).await?; // the task spawned and waits for its pipes
        assert_eq!(lp.unreaped_children(), 1);
        task.cancel();
        let err = task.await.unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        assert_eq!(lp.unreaped_children(), 0);
        for _ in 0..5 {
            tulip::sleep(0.0).await?;
        }
        let p = proto.borrow().clone().unwrap();
        assert_eq!(p.events(), Vec::<String>::new());
        Ok(())
    });
}
both_watchers!(
    a_cancelled_spawn_kills_the_child_and_tells_the_protocol_nothing,
    a_cancelled_spawn_kills_the_child_and_tells_the_protocol_nothing_pidfd,
    a_cancelled_spawn_kills_the_child_and_tells_the_protocol_nothing_thread
);

/// A transport kept after its loop closed still signals its running
/// child: asyncio's `_check_proc` refuses only once `connection_lost` ran
/// (`_proc = None`), and a closed loop never gets there.
fn a_transport_outliving_its_loop_still_signals_its_child(kind: ChildWatcherKind) {
    let mut runner = tulip::Runner::new();
    let lp = runner.get_loop().unwrap();
    if kind == ChildWatcherKind::Thread || tulip::child_watcher::can_use_pidfd() {
        lp.set_child_watcher(kind).unwrap();
    }
    let t = runner
        .run(async move {
            let (t, _) = lp
                .subprocess_exec(Recorder::new, "sleep", ["100"], Stdios::piped())
                .await?;
            Ok(t)
        })
        .unwrap();
    runner.close();
    let pid = t.get_pid();
    t.kill().unwrap();
    // Killed while `t` is still held (so not by its drop), then reaped by
    // the closed loop's reaper.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "child {pid} still there");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(t);
}
both_watchers!(
    a_transport_outliving_its_loop_still_signals_its_child,
    a_transport_outliving_its_loop_still_signals_its_child_pidfd,
    a_transport_outliving_its_loop_still_signals_its_child_thread
);

/// Cancels a task from inside `connection_made`.
#[derive(Default)]
struct CancelOnMade {
    rec: Recorder,
    task: RefCell<Option<tulip::Task<()>>>,
    seen: RefCell<Vec<String>>,
}

impl SubprocessProtocol for CancelOnMade {
    fn connection_made(&self, transport: Rc<SubprocessTransport>) {
        self.rec.connection_made(transport);
        if let Some(t) = self.task.borrow().as_ref() {
            t.cancel();
        }
    }
    fn pipe_data_received(&self, fd: i32, data: &[u8]) {
        self.rec.pipe_data_received(fd, data);
    }
    fn pipe_connection_lost(&self, fd: i32, exc: Option<Error>) {
        self.rec.pipe_connection_lost(fd, exc)
    }
    fn process_exited(&self) {
        self.rec.process_exited()
    }
    fn connection_lost(&self, exc: Option<Error>) {
        self.rec.connection_lost(exc)
    }
}

/// A caller cancelled once `connection_made` was scheduled: asyncio's
/// `_make_subprocess_transport` closes the transport and awaits
/// `transp._wait()`, so the protocol has heard `connection_lost` by the
/// time the cancellation comes back.
fn a_spawn_cancelled_after_connection_made_returns_after_connection_lost(kind: ChildWatcherKind) {
    let ev = on_loop(kind, |lp| async move {
        let proto = Rc::new(CancelOnMade::default());
        let p = proto.clone();
        let l = lp.clone();
        let p2 = p.clone();
        let task = lp.create_task(async move {
            let res = l
                .subprocess_exec(move || p, "sleep", ["100"], Stdios::piped())
                .await;
            // What the protocol heard when the error came back.
            *p2.seen.borrow_mut() = p2.rec.events();
            res.map(|_| ())
        })?;
        *proto.task.borrow_mut() = Some(task.clone());
        let err = task.await.unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        proto.task.borrow_mut().take();
        let seen = proto.seen.borrow().clone();
        Ok(seen)
    });
    assert_eq!(ev.first().map(String::as_str), Some("made"), "{ev:?}");
    assert!(ev.contains(&"exited Some(-9)".to_string()), "{ev:?}");
    assert_eq!(ev.last().map(String::as_str), Some("lost false"), "{ev:?}");
}
both_watchers!(
    a_spawn_cancelled_after_connection_made_returns_after_connection_lost,
    a_spawn_cancelled_after_connection_made_returns_after_connection_lost_pidfd,
    a_spawn_cancelled_after_connection_made_returns_after_connection_lost_thread
);

/// `set_protocol`: what follows goes to the new protocol; once finished,
/// the protocol cannot change.
fn set_protocol_sends_what_follows_to_the_new_protocol(kind: ChildWatcherKind) {
    let (first, second) = common::on_watcher_loop(kind, |lp| async move {
        let (t, first) = lp
            .subprocess_exec(Recorder::new, "sleep", ["100"], Stdios::piped())
            .await?;
        let second = Recorder::new();
        t.set_protocol(second.clone())?;
        t.close();
        second.finished().await?;
        assert_eq!(t.wait().await?, -9);
        let err = t.set_protocol(Recorder::new()).unwrap_err();
        assert!(err.to_string().contains("finished"), "{err}");
        Ok((first.events(), second.events()))
    });
    assert_eq!(first, ["made"]);
    // (The second never got connection_made, so it has no transport to
    // read the return code from.)
    assert!(second.contains(&"exited None".to_string()), "{second:?}");
    assert_eq!(second.last().unwrap(), "lost false");
}
both_watchers!(
    set_protocol_sends_what_follows_to_the_new_protocol,
    set_protocol_sends_what_follows_to_the_new_protocol_pidfd,
    set_protocol_sends_what_follows_to_the_new_protocol_thread
);
