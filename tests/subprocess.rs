//! Subprocesses with real children: communicate, wait, kill, reaping.
//! Every behaviour runs under both child watchers (pidfd and the thread
//! fallback), chosen per loop with `EventLoop::set_child_watcher`.

use std::time::{Duration, Instant};

mod common;

use common::{both_watchers, on_watcher_loop as on_loop};
use tulip::subprocess::{Command, Stdio, Stdios};
use tulip::{ChildWatcherKind, EventLoop};

/// True if `pid` is a child (zombie or alive) of this process.
fn is_our_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 4 (after the ")" that ends the command name) is the parent pid.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let ppid: u32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
    ppid == std::process::id()
}

fn cat_roundtrip(kind: ChildWatcherKind, size: usize) {
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let expect = data.clone();
    let (out, err, rc) = on_loop(kind, move |_| async move {
        let mut p = Command::new("cat").stdios(Stdios::piped()).spawn()?;
        let (out, err) = p.communicate(Some(&data)).await?;
        Ok((out, err, p.returncode()))
    });
    assert_eq!(out.len(), expect.len());
    assert!(out == expect, "cat changed the payload");
    assert!(err.is_empty());
    assert_eq!(rc, Some(0));
}

// conformance: P1
fn communicate_64k_plus_one(kind: ChildWatcherKind) {
    cat_roundtrip(kind, 64 * 1024 + 1);
}
both_watchers!(
    communicate_64k_plus_one,
    communicate_64k_plus_one_does_not_deadlock_pidfd,
    communicate_64k_plus_one_does_not_deadlock_thread
);

// conformance: P1
fn communicate_1mb(kind: ChildWatcherKind) {
    cat_roundtrip(kind, 1024 * 1024);
}
both_watchers!(
    communicate_1mb,
    communicate_1mb_does_not_deadlock_pidfd,
    communicate_1mb_does_not_deadlock_thread
);

// conformance: P1
fn communicate_16mb(kind: ChildWatcherKind) {
    cat_roundtrip(kind, 16 * 1024 * 1024);
}
both_watchers!(
    communicate_16mb,
    communicate_16mb_does_not_deadlock_pidfd,
    communicate_16mb_does_not_deadlock_thread
);

// conformance: P1
fn broken_stdin_is_ignored(kind: ChildWatcherKind) {
    let (out, rc) = on_loop(kind, |_| async {
        // `head` reads 10 bytes and exits: the rest of the 1 MB hits EPIPE.
        let mut p = Command::new("head")
            .args(["-c", "10"])
            .stdios(Stdios::piped())
            .spawn()?;
        let input = vec![b'x'; 1024 * 1024];
        let (out, _) = p.communicate(Some(&input)).await?;
        Ok((out, p.returncode()))
    });
    assert_eq!(out, b"xxxxxxxxxx");
    assert_eq!(rc, Some(0));
}
both_watchers!(
    broken_stdin_is_ignored,
    communicate_ignores_broken_pipe_on_stdin_pidfd,
    communicate_ignores_broken_pipe_on_stdin_thread
);

// conformance: P2
fn kill_gives_minus_nine(kind: ChildWatcherKind) {
    let rc = on_loop(kind, |_| async {
        let p = Command::new("sleep").arg("10").spawn()?;
        p.kill()?;
        p.wait().await
    });
    assert_eq!(rc, -9);
}
both_watchers!(
    kill_gives_minus_nine,
    kill_gives_returncode_minus_sigkill_pidfd,
    kill_gives_returncode_minus_sigkill_thread
);

// conformance: P2
fn cancelled_wait(kind: ChildWatcherKind) {
    let (pid, first_cancelled, rc_after_cancel, rc) = on_loop(kind, |lp| async move {
        let p = std::rc::Rc::new(Command::new("sleep").arg("0.2").spawn()?);
        let p2 = p.clone();
        let t = lp.create_task(async move { p2.wait().await })?;
        tulip::sleep(0.05).await?;
        t.cancel();
        t.wait_done().await?;
        let rc_after_cancel = p.returncode();
        // The child was not killed: it exits normally and is reaped.
        let rc = p.wait().await?;
        Ok((p.pid(), t.cancelled(), rc_after_cancel, rc))
    });
    assert!(first_cancelled);
    assert_eq!(rc_after_cancel, None);
    assert_eq!(rc, 0);
    assert!(!is_our_child(pid), "pid {pid} is still our child");
}
both_watchers!(
    cancelled_wait,
    wait_can_be_cancelled_without_killing_the_child_pidfd,
    wait_can_be_cancelled_without_killing_the_child_thread
);

// conformance: P2
/// Each `wait()` has its own waiter (asyncio's `_wait` appends a fresh
/// future to `_exit_waiters`): cancelling one of two concurrent waits
/// leaves the other waiting, and it gets the exit code.
fn cancelling_one_wait_leaves_the_other(kind: ChildWatcherKind) {
    let (first_cancelled, rc) = on_loop(kind, |lp| async move {
        // cat exits when its stdin is closed: the exit comes when we say.
        let p = std::rc::Rc::new(
            Command::new("cat")
                .stdin(Stdio::Pipe)
                .stdout(Stdio::DevNull)
                .spawn()?,
        );
        let (p1, p2) = (p.clone(), p.clone());
        let t1 = lp.create_task(async move { p1.wait().await })?;
        let t2 = lp.create_task(async move { p2.wait().await })?;
        tulip::sleep(0.0).await?;
        t1.cancel();
        t1.wait_done().await?;
        assert!(!t2.done());
        p.stdin.as_ref().unwrap().close();
        let rc = tulip::timeout(10.0).run(t2).await?;
        Ok((t1.cancelled(), rc))
    });
    assert!(first_cancelled);
    assert_eq!(rc, 0);
}
both_watchers!(
    cancelling_one_wait_leaves_the_other,
    cancelling_one_wait_leaves_the_other_pidfd,
    cancelling_one_wait_leaves_the_other_thread
);

/// Sleeps on the loop until it has no unreaped child, or for at most
/// `limit`.
async fn wait_for_reaping(lp: &EventLoop, limit: Duration) -> tulip::Result<()> {
    let deadline = Instant::now() + limit;
    while lp.unreaped_children() > 0 && Instant::now() < deadline {
        tulip::sleep(0.01).await?;
    }
    Ok(())
}

// conformance: P2
fn dropped_process_is_reaped(kind: ChildWatcherKind) {
    let (pid, left) = on_loop(kind, |lp| async move {
        let p = Command::new("sleep").arg("0.05").spawn()?;
        let pid = p.pid();
        drop(p);
        wait_for_reaping(&lp, Duration::from_secs(5)).await?;
        Ok((pid, lp.unreaped_children()))
    });
    assert_eq!(left, 0);
    assert!(!is_our_child(pid), "pid {pid} was left a zombie");
}
both_watchers!(
    dropped_process_is_reaped,
    dropped_process_leaves_no_zombie_pidfd,
    dropped_process_leaves_no_zombie_thread
);

// conformance: P2
fn kill_on_drop(kind: ChildWatcherKind) {
    let (pid, left, took) = on_loop(kind, |lp| async move {
        let start = Instant::now();
        let p = Command::new("sleep").arg("30").kill_on_drop(true).spawn()?;
        let pid = p.pid();
        drop(p);
        wait_for_reaping(&lp, Duration::from_secs(5)).await?;
        Ok((pid, lp.unreaped_children(), start.elapsed()))
    });
    assert_eq!(left, 0);
    assert!(took < Duration::from_secs(5));
    assert!(!is_our_child(pid));
}
both_watchers!(
    kill_on_drop,
    kill_on_drop_kills_and_reaps_pidfd,
    kill_on_drop_kills_and_reaps_thread
);

/// True while `pid` runs (not a zombie, not gone).
fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat[stat.rfind(')').unwrap() + 2..].chars().next();
    state != Some('Z')
}

// conformance: L5
/// A loop dropped without `close()` while a task awaits a child that reads
/// its stdin: the loop is closed (see `tests/loop_core.rs`), which releases
/// the pipe, so the child sees EOF and ends, instead of waiting forever on
/// a pipe nobody can write to or close any more.
fn dropping_an_unclosed_loop_closes_the_childs_pipes(kind: ChildWatcherKind) {
    let lp = EventLoop::new().unwrap();
    if kind == ChildWatcherKind::Thread || tulip::child_watcher::can_use_pidfd() {
        lp.set_child_watcher(kind).unwrap();
    }
    let pid = lp
        .run_until_complete(async {
            let p = Command::new("cat")
                .stdin(Stdio::Pipe)
                .stdout(Stdio::DevNull)
                .spawn()?;
            let pid = p.pid();
            let _waiting = tulip::create_task(async move { p.wait().await })?;
            tulip::sleep(0.0).await?;
            Ok(pid)
        })
        .unwrap();
    assert!(is_running(pid));
    drop(lp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(pid) {
        assert!(
            Instant::now() < deadline,
            "cat {pid} still waits for its stdin"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reap it here if no watcher did.
    // SAFETY: waitpid on our own child's pid; WNOHANG never blocks.
    unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
}
both_watchers!(
    dropping_an_unclosed_loop_closes_the_childs_pipes,
    dropping_an_unclosed_loop_closes_the_childs_pipes_pidfd,
    dropping_an_unclosed_loop_closes_the_childs_pipes_thread
);

// conformance: P3
fn many_exit_at_once(kind: ChildWatcherKind) {
    const N: usize = 500;
    let (pids, rcs, left) = on_loop(kind, |lp| async move {
        // All children block reading one pipe (its read end is inherited as
        // an fd without CLOEXEC); closing the write end makes all 500 exit at once.
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two fds.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let (r, w) = (fds[0], fds[1]);
        // SAFETY: clears FD_CLOEXEC on our own read end, so children inherit it.
        unsafe { libc::fcntl(r, libc::F_SETFD, 0) };
        let script = format!("read x < /proc/self/fd/{r}; exit 3");
        let mut procs = Vec::with_capacity(N);
        for _ in 0..N {
            procs.push(Command::new("sh").args(["-c", &script]).spawn()?);
        }
        // SAFETY: closing our own fd.
        unsafe { libc::close(r) };
        tulip::sleep(0.05).await?;
        // SAFETY: closing our own fd: EOF for everyone.
        unsafe { libc::close(w) };
        let mut rcs = Vec::with_capacity(N);
        for p in &procs {
            rcs.push(p.wait().await?);
        }
        let pids: Vec<u32> = procs.iter().map(|p| p.pid()).collect();
        Ok((pids, rcs, lp.unreaped_children()))
    });
    assert!(rcs.iter().all(|&rc| rc == 3), "{rcs:?}");
    assert_eq!(left, 0);
    let zombies: Vec<u32> = pids.into_iter().filter(|&p| is_our_child(p)).collect();
    assert!(zombies.is_empty(), "not reaped: {zombies:?}");
}
both_watchers!(
    many_exit_at_once,
    five_hundred_children_exiting_at_once_are_all_reaped_pidfd,
    five_hundred_children_exiting_at_once_are_all_reaped_thread
);

// conformance: P3
fn spawn_errors(kind: ChildWatcherKind) {
    assert_spawn_errors(kind, None);
}

/// A missing program is `NotFound` and a file without execute permission
/// `PermissionDenied`, spawned on the loop or (`threads`) on a pool thread.
fn assert_spawn_errors(kind: ChildWatcherKind, threads: Option<usize>) {
    let (enoent, eacces) = on_loop(kind, move |_| async move {
        let pool = threads.map(spawn_pool);
        let spawn = |mut cmd: Command| {
            let pool = pool.clone();
            async move {
                match &pool {
                    Some(pool) => cmd.spawn_in_executor(Some(pool)).await,
                    None => cmd.spawn(),
                }
            }
        };
        let mut missing = Command::new("/nonexistent/tulip-no-such-program");
        missing.stdios(Stdios::piped());
        let e1 = spawn(missing).await.unwrap_err();
        // A file without execute permission.
        let path = std::env::temp_dir().join(format!(
            "tulip-noexec-{}-{kind:?}-{threads:?}",
            std::process::id()
        ));
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        let mut noexec = Command::new(&path);
        noexec.stdout(Stdio::Pipe);
        let e2 = spawn(noexec).await.unwrap_err();
        let _ = std::fs::remove_file(&path);
        if let Some(pool) = pool {
            pool.shutdown(true);
        }
        Ok((e1, e2))
    });
    assert_eq!(
        enoent.io_kind(),
        Some(std::io::ErrorKind::NotFound),
        "{enoent}"
    );
    assert_eq!(
        eacces.io_kind(),
        Some(std::io::ErrorKind::PermissionDenied),
        "{eacces}"
    );
}
both_watchers!(
    spawn_errors,
    failed_spawn_returns_the_os_error_pidfd,
    failed_spawn_returns_the_os_error_thread
);

// conformance: P3
fn signal_after_reap_is_noop(kind: ChildWatcherKind) {
    on_loop(kind, |_| async {
        // The child exits at once, but a grandchild holds its stdout for a
        // while: reaped, not finished (asyncio's `_returncode` is set, its
        // `_proc` not yet cleared), so signals are quietly dropped.
        let p = Command::shell("sleep 0.3 & exit 0")
            .stdout(Stdio::Pipe)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.returncode().is_none() && Instant::now() < deadline {
            tulip::sleep(0.01).await?;
        }
        assert_eq!(p.returncode(), Some(0));
        // Reaped: its pid may be recycled, so nothing may be sent any more.
        p.kill()?;
        p.send_signal(libc::SIGTERM)?;
        assert_eq!(p.wait().await?, 0);
        Ok(())
    });
}
both_watchers!(
    signal_after_reap_is_noop,
    a_reaped_child_is_never_signalled_pidfd,
    a_reaped_child_is_never_signalled_thread
);

// conformance: P3
/// CPython's `test_proc_exited`: once the transport is finished (the child
/// exited and its pipes are closed, so `wait()` has returned),
/// `send_signal`, `terminate` and `kill` raise `ProcessLookupError`.
fn signal_after_wait_is_process_lookup_error(kind: ChildWatcherKind) {
    let errs = on_loop(kind, |_| async {
        let mut errs = Vec::new();
        for stdio in [Stdio::Inherit, Stdio::Pipe] {
            let p = Command::new("true").stdout(stdio).spawn()?;
            assert_eq!(p.wait().await?, 0);
            errs.push(p.send_signal(libc::SIGTERM).err());
            errs.push(p.terminate().err());
            errs.push(p.kill().err());
        }
        Ok(errs)
    });
    for e in errs {
        let e = e.expect("signalling a finished process succeeded");
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{e:?}");
        assert!(e.to_string().contains("check its return code"), "{e}");
    }
}
both_watchers!(
    signal_after_wait_is_process_lookup_error,
    signalling_a_finished_process_is_a_process_lookup_error_pidfd,
    signalling_a_finished_process_is_a_process_lookup_error_thread
);

// conformance: P4
#[test]
fn the_default_watcher_is_a_pidfd_and_the_fallback_is_chosen_per_loop() {
    let lp = EventLoop::new().unwrap();
    if std::env::var_os(tulip::child_watcher::CHILD_WATCHER_ENV).is_none() {
        let expect = if tulip::child_watcher::can_use_pidfd() {
            ChildWatcherKind::Pidfd
        } else {
            ChildWatcherKind::Thread
        };
        assert_eq!(lp.child_watcher(), expect);
        lp.set_child_watcher(ChildWatcherKind::Thread).unwrap();
        assert_eq!(lp.child_watcher(), ChildWatcherKind::Thread);
    }
    let kinds = on_loop(ChildWatcherKind::Thread, |_| async {
        let p = Command::new("true").spawn()?;
        p.wait().await?;
        Ok(format!("{p:?}"))
    });
    assert!(kinds.contains("ThreadedChildWatcher"), "{kinds}");
    lp.close().unwrap();
}

// conformance: P1
fn stdio_choices(kind: ChildWatcherKind) {
    let (merged, line, rest, devnull, env, cwd) = on_loop(kind, |_| async {
        let mut p = Command::shell("echo out; echo err >&2")
            .stdout(Stdio::Pipe)
            .stderr(Stdio::Stdout)
            .spawn()?;
        let (merged, _) = p.communicate(None).await?;

        let p = Command::shell("echo first; echo second")
            .stdout(Stdio::Pipe)
            .spawn()?;
        let out = p.stdout.as_ref().unwrap();
        let line = out.readline().await?;
        let rest = out.read_to_eof().await?;
        p.wait().await?;

        let mut p = Command::new("cat")
            .stdin(Stdio::DevNull)
            .stdout(Stdio::Pipe)
            .stderr(Stdio::DevNull)
            .spawn()?;
        let (devnull, _) = p.communicate(None).await?;

        let mut p = Command::new("/usr/bin/env")
            .env_clear()
            .env("LC_ALL", "C")
            .stdout(Stdio::Pipe)
            .spawn()?;
        let (env, _) = p.communicate(None).await?;

        let mut p = Command::new("pwd")
            .current_dir("/")
            .stdout(Stdio::Pipe)
            .spawn()?;
        let (cwd, _) = p.communicate(None).await?;
        Ok((merged, line, rest, devnull, env, cwd))
    });
    assert_eq!(merged, b"out\nerr\n");
    assert_eq!(line, b"first\n");
    assert_eq!(rest, b"second\n");
    assert!(devnull.is_empty());
    assert_eq!(env, b"LC_ALL=C\n");
    assert_eq!(cwd, b"/\n");
}
both_watchers!(
    stdio_choices,
    pipe_devnull_stdout_env_and_cwd_work_pidfd,
    pipe_devnull_stdout_env_and_cwd_work_thread
);

// conformance: P1
/// asyncio's `Process.wait()` resolves in `_call_connection_lost`: once the
/// child exited *and* every pipe transport was lost (`_try_finish`), so the
/// readers hold all the output and its EOF by then. Here `sh` exits at once
/// while its background subshell keeps stdout (and stdin) open, writes
/// more, and only then exits; stdin is never closed by us: it goes when
/// the last process holding its read end exits.
fn wait_waits_for_the_pipes(kind: ChildWatcherKind) {
    let (rc, returncode_at_exit, at_eof, buffered, all) = on_loop(kind, |_| async {
        let p = std::rc::Rc::new(
            Command::shell("echo start; (sleep 0.3; echo late) & exit 3")
                .stdin(Stdio::Pipe)
                .stdout(Stdio::Pipe)
                .spawn()?,
        );
        let p2 = p.clone();
        let rc = tulip::timeout(10.0)
            .run(async move { p2.wait().await })
            .await?;
        let out = p.stdout.as_ref().unwrap();
        let (at_eof, buffered) = (out.at_eof(), out.buffered());
        let all = out.read_to_eof().await?;
        Ok((rc, p.returncode(), at_eof, buffered, all))
    });
    assert_eq!((rc, returncode_at_exit), (3, Some(3)));
    assert_eq!(
        (at_eof, buffered),
        (false, 11),
        "wait() returned before stdout was closed"
    );
    assert_eq!(all, b"start\nlate\n");
}
both_watchers!(
    wait_waits_for_the_pipes,
    wait_returns_once_the_child_exited_and_every_pipe_closed_pidfd,
    wait_returns_once_the_child_exited_and_every_pipe_closed_thread
);

// conformance: P2
/// Cancelling `communicate()` leaves the child running and its stdin with
/// the process: asyncio's `_feed_stdin` does not close stdin on a cancel,
/// and `Process.stdin` stays set, so the caller can still close it and let
/// the child end.
fn cancelled_communicate(kind: ChildWatcherKind) {
    let (timed_out, had_stdin, rc) = on_loop(kind, |_| async {
        // The child reads nothing for a second: 1 MB cannot all be written.
        let mut p = Command::shell("sleep 1; exec cat >/dev/null")
            .stdin(Stdio::Pipe)
            .spawn()?;
        let input = vec![b'x'; 1024 * 1024];
        let r = tulip::timeout(0.05).run(p.communicate(Some(&input))).await;
        let timed_out = matches!(r, Err(tulip::Error::Timeout));
        let had_stdin = p.stdin.is_some();
        match p.stdin.as_ref() {
            Some(w) => w.close(),
            None => p.kill()?, // nothing else could end it any more
        }
        let rc = tulip::timeout(10.0).run(p.wait()).await?;
        Ok((timed_out, had_stdin, rc))
    });
    assert!(timed_out);
    assert!(
        had_stdin,
        "a cancelled communicate() lost the process's stdin"
    );
    assert_eq!(rc, 0);
}
both_watchers!(
    cancelled_communicate,
    a_cancelled_communicate_leaves_the_child_and_its_stdin_pidfd,
    a_cancelled_communicate_leaves_the_child_and_its_stdin_thread
);

// conformance: P1
/// asyncio's `_wait` returns `_returncode` at once once the child exited:
/// only a `wait()` already pending at the exit waits for the pipes. Here
/// the child exits while its stdout reader is paused above its limit
/// (nobody reads it), so its pipe stays open; a later `wait()` must still
/// return the exit code, and the output is all there afterwards.
fn wait_after_the_exit(kind: ChildWatcherKind) {
    let (rc, len) = on_loop(kind, |_| async {
        // 150 000 bytes: more than 2 x 64 KiB (the reader pauses) but small
        // enough for the rest to fit in the pipe, so the child exits.
        let p = Command::shell("head -c 150000 /dev/zero")
            .stdout(Stdio::Pipe)
            .spawn()?;
        tulip::timeout(10.0)
            .run(async {
                while p.returncode().is_none() {
                    tulip::sleep(0.005).await?;
                }
                Ok(())
            })
            .await?;
        let rc = tulip::timeout(5.0).run(p.wait()).await?;
        let out = p.stdout.as_ref().unwrap().read_to_eof().await?;
        Ok((rc, out.len()))
    });
    assert_eq!((rc, len), (0, 150_000));
}
both_watchers!(
    wait_after_the_exit,
    wait_after_the_exit_returns_at_once_pidfd,
    wait_after_the_exit_returns_at_once_thread
);

// conformance: P1
fn interactive(kind: ChildWatcherKind) {
    let lines = on_loop(kind, |_| async {
        let mut p = Command::new("cat").stdios(Stdios::piped()).spawn()?;
        let mut lines = Vec::new();
        for i in 0..3 {
            let stdin = p.stdin.as_ref().unwrap();
            stdin.write(format!("line {i}\n").as_bytes())?;
            stdin.drain().await?;
            lines.push(p.stdout.as_ref().unwrap().readline().await?);
        }
        p.stdin.take().unwrap().close();
        assert_eq!(p.wait().await?, 0);
        Ok(lines)
    });
    assert_eq!(lines, [b"line 0\n", b"line 1\n", b"line 2\n"]);
}
both_watchers!(
    interactive,
    write_drain_readline_with_a_live_child_pidfd,
    write_drain_readline_with_a_live_child_thread
);

// conformance: P1
fn paused_reader(kind: ChildWatcherKind) {
    let (n, rc) = on_loop(kind, |_| async {
        // 4 MB that nobody reads for a while: the reader pauses its pipe at
        // 2 x limit, the child blocks, and reading later resumes it.
        let p = Command::new("head")
            .args(["-c", "4000000", "/dev/zero"])
            .stdout(Stdio::Pipe)
            .spawn()?;
        tulip::sleep(0.1).await?;
        let out = p.stdout.as_ref().unwrap();
        assert!(
            out.buffered() <= 2 * out.limit() + 64 * 1024,
            "{}",
            out.buffered()
        );
        let all = out.read_to_eof().await?;
        Ok((all.len(), p.wait().await?))
    });
    assert_eq!(n, 4_000_000);
    assert_eq!(rc, 0);
}
both_watchers!(
    paused_reader,
    a_reader_that_falls_behind_pauses_and_resumes_the_pipe_pidfd,
    a_reader_that_falls_behind_pauses_and_resumes_the_pipe_thread
);

/// The state letter of `pid` in `/proc` (`Z` for a zombie), if it exists.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

// conformance: P3
fn pid_stays_reserved(kind: ChildWatcherKind) {
    let (state, rc) = on_loop(kind, |_| async {
        let p = Command::new("true").spawn()?;
        // Block the loop thread (no await): the child exits meanwhile, and
        // nobody may reap it behind the loop's back, so its pid cannot be
        // recycled while `returncode` is None.
        std::thread::sleep(Duration::from_millis(200));
        let state = proc_state(p.pid());
        assert_eq!(p.returncode(), None);
        p.send_signal(libc::SIGTERM)?; // still our zombie: harmless
        let rc = p.wait().await?;
        assert!(!is_our_child(p.pid()));
        Ok((state, rc))
    });
    assert_eq!(
        state,
        Some('Z'),
        "the exited child must stay a zombie until the loop reaps it"
    );
    assert_eq!(rc, 0);
}
both_watchers!(
    pid_stays_reserved,
    an_exited_child_stays_reserved_until_the_loop_reaps_it_pidfd,
    an_exited_child_stays_reserved_until_the_loop_reaps_it_thread
);

// conformance: P2
#[test]
fn closing_the_loop_closes_open_pipes_and_leaves_no_zombie() {
    let mut runner = tulip::Runner::new();
    let lp = runner.get_loop().unwrap();
    let (pid, reader) = runner
        .run(async {
            let mut p = Command::new("sh")
                .args(["-c", "echo hi; sleep 0.2"])
                .stdout(Stdio::Pipe)
                .spawn()?;
            let r = p.stdout.take().unwrap();
            assert_eq!(r.readline().await?, b"hi\n");
            Ok((p.pid(), r))
        })
        .unwrap();
    runner.close();
    assert!(lp.is_closed());
    // The reader's pipe was closed with the loop.
    assert!(reader.transport().unwrap().is_closing());
    // The child, still running at close, is reaped by the reaper thread.
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_our_child(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!is_our_child(pid), "pid {pid} left a zombie after close");
}

/// The ping sweep's shape: 300 tasks at once, each spawns a child with
/// stdout piped, reads it to EOF, then waits. With `threads`, the spawns
/// overlap on that many pool threads (`spawn_in_executor`).
fn run_sweep_shape(kind: ChildWatcherKind, threads: Option<usize>) {
    const N: usize = 300;
    let (outs, left) = on_loop(kind, move |lp| async move {
        let pool = threads.map(spawn_pool);
        let mut tasks = Vec::with_capacity(N);
        for i in 0..N {
            let pool = pool.clone();
            tasks.push(lp.create_task(async move {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &format!("sleep 0.1; echo reply {i}")])
                    .stdout(Stdio::Pipe)
                    .env_clear()
                    .env("LC_ALL", "C")
                    .kill_on_drop(true);
                let p = match &pool {
                    Some(pool) => cmd.spawn_in_executor(Some(pool)).await?,
                    None => cmd.spawn()?,
                };
                let out = p.stdout.as_ref().unwrap().read_to_eof().await?;
                let rc = p.wait().await?;
                Ok((String::from_utf8_lossy(&out).into_owned(), rc))
            })?);
        }
        let mut outs = Vec::with_capacity(N);
        for t in tasks {
            outs.push(t.await?);
        }
        if let Some(pool) = pool {
            pool.shutdown(true);
        }
        Ok((outs, lp.unreaped_children()))
    });
    for (i, (out, rc)) in outs.iter().enumerate() {
        assert_eq!((out.as_str(), *rc), (format!("reply {i}\n").as_str(), 0));
    }
    assert_eq!(left, 0);
}

// conformance: P3
fn sweep_shape(kind: ChildWatcherKind) {
    run_sweep_shape(kind, None);
}
both_watchers!(
    sweep_shape,
    three_hundred_concurrent_children_with_piped_stdout_pidfd,
    three_hundred_concurrent_children_with_piped_stdout_thread
);

// conformance: P1
fn command_reuse(kind: ChildWatcherKind) {
    let outs = on_loop(kind, |_| async {
        let mut cmd = Command::new("echo");
        cmd.arg("again").stdout(Stdio::Pipe);
        let mut outs = Vec::new();
        for _ in 0..3 {
            let mut p = cmd.spawn()?;
            outs.push(p.communicate(None).await?.0);
        }
        Ok(outs)
    });
    assert_eq!(outs, [b"again\n", b"again\n", b"again\n"]);
}
both_watchers!(
    command_reuse,
    a_command_spawns_again_with_fresh_pipes_pidfd,
    a_command_spawns_again_with_fresh_pipes_thread
);

// conformance: P1
fn output_and_status(kind: ChildWatcherKind) {
    let (out, status, signalled) = on_loop(kind, |_| async {
        let out = Command::new("sh")
            .args(["-c", "cat; echo out; echo err >&2; exit 4"])
            .output()
            .await?;
        let status = Command::new("sh").args(["-c", "exit 7"]).status().await?;
        let signalled = Command::new("sh")
            .args(["-c", "kill -9 $$"])
            .status()
            .await?;
        Ok((out, status, signalled))
    });
    // stdin defaulted to /dev/null, so `cat` ended at once.
    assert_eq!(out.returncode, 4);
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!((status, signalled), (7, -9));
}
both_watchers!(
    output_and_status,
    output_and_status_work_like_std_pidfd,
    output_and_status_work_like_std_thread
);

// ===== spawning from a worker thread: Command::spawn_in_executor =====

/// A pool for the threaded-spawn tests.
fn spawn_pool(workers: usize) -> tulip::ThreadPool {
    tulip::ThreadPool::new(workers).unwrap()
}

// conformance: P1
fn threaded_spawn(kind: ChildWatcherKind) {
    let (outs, watchers, left) = on_loop(kind, |lp| async move {
        let pool = spawn_pool(2);
        let mut outs = Vec::new();
        let mut watchers = Vec::new();
        // The loop's default executor, then a pool of our own.
        for executor in [None, Some(&pool)] {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "cat; echo out; echo err >&2; exit 5"])
                .stdios(Stdios::piped());
            let mut p = cmd.spawn_in_executor(executor).await?;
            let (out, err) = p.communicate(Some(b"in\n")).await?;
            outs.push((out, err, p.returncode()));
            // The loop's watcher, as for `spawn` (TULIP_CHILD_WATCHER may
            // force one for the whole process).
            watchers.push((p.watcher(), lp.child_watcher()));
        }
        pool.shutdown(true);
        Ok((outs, watchers, lp.unreaped_children()))
    });
    for out in outs {
        assert_eq!(out, (b"in\nout\n".to_vec(), b"err\n".to_vec(), Some(5)));
    }
    for (got, want) in watchers {
        assert_eq!(got, want, "{kind:?}");
    }
    assert_eq!(left, 0);
}
both_watchers!(
    threaded_spawn,
    spawn_in_executor_runs_the_child_like_spawn_pidfd,
    spawn_in_executor_runs_the_child_like_spawn_thread
);

// conformance: P3
fn threaded_sweep_shape(kind: ChildWatcherKind) {
    // As `sweep_shape`, with the spawns overlapping on four threads.
    run_sweep_shape(kind, Some(4));
}
both_watchers!(
    threaded_sweep_shape,
    three_hundred_children_spawned_from_four_threads_pidfd,
    three_hundred_children_spawned_from_four_threads_thread
);

// conformance: P3
fn threaded_spawn_errors(kind: ChildWatcherKind) {
    assert_spawn_errors(kind, Some(1));
}
both_watchers!(
    threaded_spawn_errors,
    spawn_in_executor_returns_the_os_error_pidfd,
    spawn_in_executor_returns_the_os_error_thread
);

// conformance: P2
fn cancelled_while_queued(kind: ChildWatcherKind) {
    let marker = std::env::temp_dir().join(format!(
        "tulip-never-spawned-{}-{kind:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&marker);
    let touched = marker.clone();
    let (cancelled, left) = on_loop(kind, |lp| async move {
        // The pool's one worker is busy until we say so: the spawn queues.
        let pool = spawn_pool(1);
        let (go, wait) = std::sync::mpsc::channel::<()>();
        pool.submit(move || {
            let _ = wait.recv();
        })?;
        let p = pool.clone();
        let t = lp.create_task(async move {
            let mut cmd = Command::new("touch");
            cmd.arg(&touched);
            cmd.spawn_in_executor(Some(&p)).await.map(|_| ())
        })?;
        tulip::sleep(0.02).await?;
        t.cancel();
        t.wait_done().await?;
        // The job was dropped from the queue: once the worker is free and
        // has run what came after it, still no child.
        go.send(()).unwrap();
        lp.run_in_executor(Some(&pool), || ())?.await?;
        pool.shutdown(true);
        Ok((t.cancelled(), lp.unreaped_children()))
    });
    assert!(cancelled);
    assert_eq!(left, 0);
    assert!(
        !marker.exists(),
        "a cancelled queued spawn started its child"
    );
}
both_watchers!(
    cancelled_while_queued,
    a_spawn_cancelled_while_queued_never_starts_the_child_pidfd,
    a_spawn_cancelled_while_queued_never_starts_the_child_thread
);

/// A command whose child, between fork and exec, writes its pid to a pipe
/// and then stalls for `stall` before exec'ing `sleep 10`: the worker
/// spawning it is held inside the spawn meanwhile. Returns the command and
/// the pipe's read end.
fn slow_to_exec(stall: Duration) -> (Command, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::CommandExt;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned by nobody else.
    let (r, w) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let wfd = std::os::fd::AsRawFd::as_raw_fd(&w);
    let ts = libc::timespec {
        tv_sec: stall.as_secs() as libc::time_t,
        tv_nsec: stall.subsec_nanos() as libc::c_long,
    };
    let mut cmd = Command::new("sleep");
    cmd.arg("10");
    // SAFETY: the hook runs in the forked child before exec and only calls
    // libc's async-signal-safe getpid, write and nanosleep; `w` is moved
    // into it, so the fd stays open in the parent while the command lives.
    unsafe {
        cmd.as_std_mut().pre_exec(move || {
            let _keep = &w;
            let pid = libc::getpid();
            libc::write(wfd, (&pid as *const libc::pid_t).cast(), 4);
            libc::nanosleep(&ts, std::ptr::null_mut());
            Ok(())
        });
    }
    (cmd, r)
}

/// Blocks until the child of [`slow_to_exec`] reports its pid.
fn read_pid(r: &std::os::fd::OwnedFd) -> u32 {
    let mut pid: libc::pid_t = 0;
    // SAFETY: reads 4 bytes into `pid` from our own fd.
    let n = unsafe {
        libc::read(
            std::os::fd::AsRawFd::as_raw_fd(r),
            (&mut pid as *mut libc::pid_t).cast(),
            4,
        )
    };
    assert_eq!(n, 4, "no pid from the child");
    pid as u32
}

// conformance: P2
fn cancelled_while_spawning(kind: ChildWatcherKind) {
    let stall = Duration::from_millis(300);
    let (pid, cancelled, took, left) = on_loop(kind, |lp| async move {
        let pool = spawn_pool(1);
        let (cmd, r) = slow_to_exec(stall);
        let p = pool.clone();
        let t = lp.create_task(async move { cmd.spawn_in_executor(Some(&p)).await.map(|_| ()) })?;
        tulip::sleep(0.0).await?; // the task queues the job
                                  // Blocks the loop until the child exists: the worker is inside the
                                  // spawn now, and stays there for `stall`.
        let pid = read_pid(&r);
        let cancelled_at = Instant::now();
        t.cancel();
        t.wait_done().await?;
        let took = cancelled_at.elapsed();
        pool.shutdown(true);
        Ok((pid, t.cancelled(), took, lp.unreaped_children()))
    });
    assert!(cancelled);
    // It returned only once the spawn had ended and its child was gone.
    assert!(took >= stall / 2, "{took:?}");
    assert_eq!(left, 0);
    assert!(!is_our_child(pid), "pid {pid} outlived its cancelled spawn");
}
both_watchers!(
    cancelled_while_spawning,
    a_spawn_cancelled_mid_spawn_kills_and_reaps_the_child_pidfd,
    a_spawn_cancelled_mid_spawn_kills_and_reaps_the_child_thread
);

// conformance: P2
fn dropped_while_spawning(kind: ChildWatcherKind) {
    let (pid, gone) = on_loop(kind, |lp| async move {
        let pool = spawn_pool(1);
        let (cmd, r) = slow_to_exec(Duration::from_millis(100));
        let mut spawning = Box::pin(cmd.spawn_in_executor(Some(&pool)));
        // One poll queues the job; then the future is dropped, not cancelled.
        std::future::poll_fn(|cx| {
            assert!(std::future::Future::poll(spawning.as_mut(), cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        let pid = read_pid(&r);
        drop(spawning);
        // The spawn ends on the worker; nobody claims the child, so it is
        // killed and handed to the watcher, which reaps it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_our_child(pid) && Instant::now() < deadline {
            tulip::sleep(0.01).await?;
        }
        pool.shutdown(true);
        Ok((pid, !is_our_child(pid) && lp.unreaped_children() == 0))
    });
    assert!(gone, "pid {pid} outlived its dropped spawn");
}
both_watchers!(
    dropped_while_spawning,
    a_spawn_dropped_mid_spawn_kills_and_reaps_the_child_pidfd,
    a_spawn_dropped_mid_spawn_kills_and_reaps_the_child_thread
);

// conformance: P3
fn outlives_its_spawn_thread(kind: ChildWatcherKind) {
    let (rc, pid, left) = on_loop(kind, |lp| async move {
        let pool = spawn_pool(1);
        let mut cmd = Command::new("sleep");
        cmd.arg("0.2");
        let p = cmd.spawn_in_executor(Some(&pool)).await?;
        // The thread that spawned the child exits first; the kernel hands
        // the child to another thread of the process, still ours to reap.
        pool.shutdown(true);
        let rc = p.wait().await?;
        Ok((rc, p.pid(), lp.unreaped_children()))
    });
    assert_eq!((rc, left), (0, 0));
    assert!(!is_our_child(pid), "pid {pid} left a zombie");
}
both_watchers!(
    outlives_its_spawn_thread,
    a_child_outlives_the_thread_that_spawned_it_pidfd,
    a_child_outlives_the_thread_that_spawned_it_thread
);

/// A waker that counts its wakes; the `Arc`'s strong count tells how many
/// copies of it are still held (by waiters nobody removed).
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Polls `fut` once with `waker` and drops it (a lost `select!` arm).
fn poll_once_and_drop<F: std::future::Future>(fut: F, waker: &std::task::Waker) -> bool {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(waker);
    fut.as_mut().poll(&mut cx).is_ready()
}

// conformance: P2
/// A `wait()` dropped before it resolved (a lost race, a `select!` arm)
/// must leave nothing behind: in asyncio the abandoned waiter future is
/// garbage. Here 100 waits are polled once and dropped, first while the
/// child runs (the exit waiter), then after its exit while a grandchild
/// holds its pipes (the pipe waiter): none may stay registered, holding
/// the waker and growing with every abandoned wait, nor be woken later.
fn dropped_wait(kind: ChildWatcherKind) {
    let (held_running, held_pipes, wakes) = on_loop(kind, |_| async {
        let counter = std::sync::Arc::new(CountingWaker(0.into()));
        let waker = std::task::Waker::from(counter.clone());
        // The child (sleep) is killed; its background cat keeps stdout open
        // until it sees EOF on the copy of stdin it was given (fd 3).
        let p = std::rc::Rc::new(
            Command::shell("exec 3<&0; (echo ready; exec cat <&3) & exec sleep 10")
                .stdin(Stdio::Pipe)
                .stdout(Stdio::Pipe)
                .spawn()?,
        );
        let ready = p.stdout.as_ref().unwrap().readline();
        assert_eq!(tulip::timeout(10.0).run(ready).await?, b"ready\n");
        for _ in 0..100 {
            assert!(!poll_once_and_drop(p.wait(), &waker));
        }
        // An await, so that the task's `fut_waiter` (the last future polled
        // in its step) is no longer the last dropped waiter.
        tulip::sleep(0.0).await?;
        let held_running = std::sync::Arc::strong_count(&counter) - 2;
        // One wait pending across the exit, to reach the pipe waiter.
        let p2 = p.clone();
        let mut pending = Box::pin(async move { p2.wait().await });
        assert!(!poll_once_and_drop(pending.as_mut(), &waker));
        p.kill()?;
        tulip::timeout(10.0)
            .run(async {
                while p.returncode().is_none() {
                    tulip::sleep(0.005).await?;
                }
                Ok(())
            })
            .await?;
        // Reaped; the grandchild still holds the pipes.
        assert!(!poll_once_and_drop(pending.as_mut(), &waker));
        drop(pending);
        tulip::sleep(0.0).await?;
        let held_pipes = std::sync::Arc::strong_count(&counter) - 2;
        let before = counter.0.load(std::sync::atomic::Ordering::Relaxed);
        p.stdin.as_ref().unwrap().close();
        tulip::timeout(10.0).run(async { p.wait().await }).await?;
        tulip::timeout(10.0)
            .run(p.stdout.as_ref().unwrap().read_to_eof())
            .await?;
        tulip::sleep(0.0).await?;
        let wakes = counter.0.load(std::sync::atomic::Ordering::Relaxed) - before;
        Ok((held_running, held_pipes, wakes))
    });
    assert_eq!(held_running, 0, "dropped wait()s left their exit waiters");
    assert_eq!(held_pipes, 0, "a dropped wait() left its pipe waiter");
    assert_eq!(wakes, 0, "a dropped wait() was woken");
}
both_watchers!(
    dropped_wait,
    a_dropped_wait_leaves_no_waiter_pidfd,
    a_dropped_wait_leaves_no_waiter_thread
);

// conformance: P1
/// asyncio returns a `Process` only once every pipe's `connection_made`
/// ran, so closing stdin at once still ends in `connection_lost`: the
/// writer's `wait_closed()` returns and `drain()` fails with
/// `ConnectionResetError`. tulip hands the process out a step earlier; a
/// stdin closed in that step must end the same way, not leave
/// `wait_closed()` pending for ever.
fn stdin_closed_at_once(kind: ChildWatcherKind) {
    let (closed, drained, rc) = on_loop(kind, |_| async {
        let mut p = Command::new("cat").stdin(Stdio::Pipe).spawn()?;
        let stdin = p.stdin.take().unwrap();
        stdin.close();
        let closed = tulip::timeout(5.0).run(stdin.wait_closed()).await;
        let drained = stdin.drain().await;
        let rc = tulip::timeout(10.0).run(p.wait()).await?;
        Ok((closed, drained, rc))
    });
    assert!(closed.is_ok(), "wait_closed() after close(): {closed:?}");
    assert_eq!(
        drained.unwrap_err().io_kind(),
        Some(std::io::ErrorKind::ConnectionReset),
        "drain() on a closed stdin"
    );
    assert_eq!(rc, 0);
}
both_watchers!(
    stdin_closed_at_once,
    stdin_closed_before_its_first_iteration_still_loses_its_connection_pidfd,
    stdin_closed_before_its_first_iteration_still_loses_its_connection_thread
);

// conformance: P3
/// A `Process` that outlives its loop: the closed loop's reaper thread may
/// reap the child, and its number be reused, at any moment, so from the
/// hand-over on the process is signalled only through a pidfd taken while
/// the pid was surely still ours (the thread watcher had none).
fn a_process_outliving_its_loop_is_signalled_through_a_pidfd(kind: ChildWatcherKind) {
    if !tulip::child_watcher::can_use_pidfd() {
        eprintln!("no pidfd on this kernel: such a process is never signalled");
        return;
    }
    let p = on_loop(kind, |_| async { Command::new("sleep").arg("30").spawn() });
    let pid = p.pid();
    let pid_line = format!("Pid:\t{pid}");
    let holds_pidfd = std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .any(|info| info.lines().any(|l| l == pid_line));
    assert!(holds_pidfd, "no pidfd for child {pid} once its loop closed");
    p.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_our_child(pid) {
        assert!(
            Instant::now() < deadline,
            "child {pid} was not killed and reaped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reaped by the reaper thread: the number may be anyone's by now, and
    // the pidfd still names the dead child.
    p.kill().unwrap();
}
both_watchers!(
    a_process_outliving_its_loop_is_signalled_through_a_pidfd,
    a_process_outliving_its_loop_is_signalled_through_a_pidfd_pidfd,
    a_process_outliving_its_loop_is_signalled_through_a_pidfd_thread
);

// conformance: P1
/// `communicate(input)` after the caller closed stdin: asyncio's pipe
/// transport drops the writes of a closing pipe, so the input is lost and
/// the call still returns the child's output.
fn communicate_after_stdin_was_closed(kind: ChildWatcherKind) {
    let out = on_loop(kind, |_| async {
        let mut p = Command::shell("cat; echo done")
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe)
            .spawn()?;
        p.stdin.as_ref().expect("piped").close();
        let (out, _) = tulip::timeout(10.0)
            .run(p.communicate(Some(b"lost input")))
            .await?;
        p.wait().await?;
        Ok(out)
    });
    assert_eq!(out, b"done\n");
}
both_watchers!(
    communicate_after_stdin_was_closed,
    communicate_after_stdin_was_closed_pidfd,
    communicate_after_stdin_was_closed_thread
);

// conformance: P3
/// asyncio (through `subprocess.Popen`) takes an existing file descriptor
/// for `stdin=`, `stdout=` or `stderr=`: the child gets a copy, and the
/// parent's descriptor stays open and the parent's. Several children can
/// share one, say the write end of one pipe for all their stderr, from
/// either spawn path.
fn caller_fd(kind: ChildWatcherKind) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut r, w) = std::io::pipe().unwrap();
    let fd = w.as_raw_fd();
    let codes = on_loop(kind, move |_| async move {
        let pool = spawn_pool(1);
        let mut a = Command::shell("echo a >&2");
        a.stderr(Stdio::Fd(fd));
        let a = a.spawn()?;
        let mut b = Command::shell("echo b >&2");
        b.stderr(Stdio::Fd(fd));
        let b = b.spawn_in_executor(Some(&pool)).await?;
        // stdout to the caller's descriptor, stderr where stdout goes.
        let mut c = Command::shell("echo c; echo d >&2");
        c.stdout(Stdio::Fd(fd)).stderr(Stdio::Stdout);
        let c = c.spawn()?;
        let codes = (a.wait().await?, b.wait().await?, c.wait().await?);
        pool.shutdown(true);
        Ok(codes)
    });
    assert_eq!(codes, (0, 0, 0));
    // Ours is still open.
    // SAFETY: F_GETFD only reads the flags of a descriptor we own.
    assert_ne!(unsafe { libc::fcntl(fd, libc::F_GETFD) }, -1);
    drop(w);
    // No copy is left behind: with ours closed, the pipe comes to its end
    // (within a bound: another test's spawn may hold a copy for the
    // moment between its fork and its exec).
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut pfd = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for a descriptor we own.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        assert!(
            Instant::now() < deadline,
            "no EOF: a copy of the write end is left open"
        );
        if ready > 0 {
            let mut buf = [0; 64];
            match r.read(&mut buf).unwrap() {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }
    let out = String::from_utf8(out).unwrap();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["a", "b", "c", "d"]);
}
both_watchers!(
    caller_fd,
    a_callers_fd_is_shared_by_children_and_stays_open_pidfd,
    a_callers_fd_is_shared_by_children_and_stays_open_thread
);

// conformance: P3
fn reaped_on_a_loop_iterated_by_hand(kind: ChildWatcherKind) {
    // `run_once` is the loop's iteration; a loop driven with it is not
    // *running*. The pidfd reader and the waiter thread's message looked
    // the loop up as the running one, found none, and never reaped: the
    // child stayed a zombie and its returncode None.
    let lp = EventLoop::new().unwrap();
    if kind == ChildWatcherKind::Pidfd && !tulip::child_watcher::can_use_pidfd() {
        eprintln!("no pidfd on this kernel; running on the thread watcher");
    } else {
        lp.set_child_watcher(kind).unwrap();
    }
    let p = Command::new("true").spawn_on(&lp).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.returncode().is_none() {
        assert!(Instant::now() < deadline, "never reaped");
        // Bounds the iteration's poll.
        let tick = lp.call_later(0.01, || ()).unwrap();
        lp.run_once().unwrap();
        tick.cancel();
    }
    assert_eq!(p.returncode(), Some(0));
    drop(p);
    lp.close().unwrap();
}
both_watchers!(
    reaped_on_a_loop_iterated_by_hand,
    a_child_is_reaped_on_a_loop_iterated_by_hand_pidfd,
    a_child_is_reaped_on_a_loop_iterated_by_hand_thread
);

// conformance: P1
/// asyncio's `SubprocessStreamProtocol._maybe_close_transport`: once the
/// child exited and its stdout and stderr pipes are lost, the transport is
/// closed, and stdin with it. So `wait()` does not wait for a grandchild
/// that was handed the child's stdin: here `sh` gives its stdin to a
/// background `cat` and exits; closing stdin is what ends that `cat`.
fn stdin_kept_by_a_grandchild(kind: ChildWatcherKind) {
    let (rc, closed) = on_loop(kind, |_| async {
        let p = Command::shell("exec 3<&0; cat <&3 >/dev/null 3<&- & exit 5")
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe)
            .spawn()?;
        let rc = tulip::timeout(5.0).run(p.wait()).await;
        let stdin = p.stdin.as_ref().unwrap();
        // A wait() called after the reap returns at once (asyncio's
        // `_wait`), maybe before stdin was closed: wait for that too.
        let closed = tulip::timeout(5.0).run(stdin.wait_closed()).await;
        if rc.is_err() || closed.is_err() {
            stdin.close(); // lets the grandchild end
            tulip::timeout(10.0).run(p.wait()).await?;
        }
        Ok((rc.ok(), closed.is_ok()))
    });
    assert_eq!(rc, Some(5), "wait() waited for the grandchild's stdin");
    assert!(closed, "stdin was not closed once the child exited");
}
both_watchers!(
    stdin_kept_by_a_grandchild,
    wait_does_not_wait_for_a_stdin_kept_by_a_grandchild_pidfd,
    wait_does_not_wait_for_a_stdin_kept_by_a_grandchild_thread
);

// conformance: P1
/// asyncio's `_feed_stdin` writes the whole input to the transport before
/// its first `drain()`: a `communicate()` cancelled midway leaves the rest
/// of the input in stdin's buffer, and a second `communicate()` flushes
/// it and closes stdin. The child gets every byte.
fn communicate_again_after_a_cancel(kind: ChildWatcherKind) {
    let (timed_out, out) = on_loop(kind, |_| async {
        // The child reads nothing for a while: 1 MB cannot all be written.
        let mut p = Command::shell("sleep 0.3; exec wc -c")
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe)
            .spawn()?;
        let input = vec![b'x'; 1024 * 1024];
        let r = tulip::timeout(0.05).run(p.communicate(Some(&input))).await;
        let timed_out = matches!(r, Err(tulip::Error::Timeout));
        let (out, _) = tulip::timeout(10.0).run(p.communicate(None)).await?;
        Ok((timed_out, out))
    });
    assert!(timed_out);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "1048576");
}
both_watchers!(
    communicate_again_after_a_cancel,
    communicate_again_after_a_cancel_feeds_the_rest_of_the_input_pidfd,
    communicate_again_after_a_cancel_feeds_the_rest_of_the_input_thread
);

// conformance: P3
/// asyncio's `StreamReader(limit=0)` is a `ValueError` ("Limit cannot be
/// <= 0"). A zero `limit` with an output pipe was an assertion in the
/// making of the reader, after the child had started: the caller panicked
/// and the child ran on. It must be an `InvalidArgument` error from both
/// spawn paths, with no child started.
fn zero_limit(kind: ChildWatcherKind) {
    let (on_loop_err, in_executor_err, unreaped) = on_loop(kind, |lp| async move {
        let mut cmd = Command::new("sleep");
        cmd.arg("10").stdout(Stdio::Pipe).limit(0);
        let on_loop_err = cmd.spawn().err();
        let in_executor_err = cmd.spawn_in_executor(None).await.err();
        Ok((on_loop_err, in_executor_err, lp.unreaped_children()))
    });
    for err in [on_loop_err, in_executor_err] {
        assert!(
            matches!(err, Some(tulip::Error::InvalidArgument(_))),
            "{err:?}"
        );
    }
    assert_eq!(unreaped, 0, "a child was started");
}
both_watchers!(
    zero_limit,
    a_zero_limit_is_an_error_before_the_spawn_pidfd,
    a_zero_limit_is_an_error_before_the_spawn_thread
);

// conformance: P3
/// The children still running when their loop closes are each reaped as
/// they exit (asyncio's `ThreadedChildWatcher` waits for every child in a
/// thread of its own): a long-lived one must not leave the others zombies
/// until it exits too.
fn handed_over_children_are_reaped_as_they_exit(kind: ChildWatcherKind) {
    let (long, short) = on_loop(kind, |_| async {
        let long = Command::new("sleep").arg("10").spawn()?;
        let mut short = Vec::new();
        for _ in 0..8 {
            short.push(Command::new("sleep").arg("0.2").spawn()?.pid());
        }
        Ok((long, short))
    });
    // The loop is closed: all nine were handed over, running.
    let deadline = Instant::now() + Duration::from_secs(3);
    let zombies = loop {
        let left: Vec<u32> = short.iter().copied().filter(|&p| is_our_child(p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Through its pidfd, if there is one; else it ends in 10 s anyway.
    long.kill().unwrap();
    assert_eq!(zombies, [], "left zombies while the long child ran");
}
both_watchers!(
    handed_over_children_are_reaped_as_they_exit,
    children_handed_over_at_close_are_reaped_as_they_exit_pidfd,
    children_handed_over_at_close_are_reaped_as_they_exit_thread
);
