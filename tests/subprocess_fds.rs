//! File descriptor accounting around spawns. This file is its own test
//! binary (its own process) because it counts `/proc/self/fd` and lowers
//! `RLIMIT_NOFILE`; its tests are serialized by a lock.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tulip::subprocess::{Command, Stdio, Stdios};
use tulip::{ChildWatcherKind, Process};

static SERIAL: Mutex<()> = Mutex::new(());

/// This process's open fds, each with what it names (`pipe:[123]`,
/// `anon_inode:[eventfd]`, ...), so that a number closed and reused for
/// another file counts as new.
fn open_fds() -> BTreeSet<(u64, String)> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((n, target.to_string_lossy().into_owned()))
        })
        // The listing's own fd, at whatever number was free.
        .filter(|(_, target)| *target != format!("/proc/{}/fd", std::process::id()))
        .collect()
}

/// Asserts that no fd is open now that was not open at `before`.
///
/// `before` may hold an fd that is not this test's: a thread of an earlier
/// test (a child watcher's waiter, which reports the exit and then drops
/// its handle on the closed loop) can still hold that loop's wake-up fd
/// for a moment after the loop closed. So this compares sets, not counts,
/// and gives such a straggler (bounded) time to let go of an fd this test
/// did not make either.
fn assert_no_new_fds(before: &BTreeSet<(u64, String)>, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let new: Vec<_> = open_fds().difference(before).cloned().collect();
        if new.is_empty() {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("fds leaked by {what}: {new:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Creates the lazily made state (the loop's child watcher) by running one
/// child, so that an fd count taken afterwards is stable.
fn warm_up(runner: &mut tulip::Runner) {
    runner
        .run(async {
            Command::new("true").spawn()?.wait().await?;
            Ok(())
        })
        .unwrap();
}

/// `cmd.spawn()`, or `cmd.spawn_in_executor(pool)` when there is a pool.
async fn spawn_on(mut cmd: Command, pool: Option<&tulip::ThreadPool>) -> tulip::Result<Process> {
    match pool {
        Some(pool) => cmd.spawn_in_executor(Some(pool)).await,
        None => cmd.spawn(),
    }
}

fn spawn_many(kind: ChildWatcherKind, threaded: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut runner = tulip::Runner::new();
    let lp = runner.get_loop().unwrap();
    if kind == ChildWatcherKind::Pidfd && !tulip::child_watcher::can_use_pidfd() {
        return;
    }
    lp.set_child_watcher(kind).unwrap();
    // Warm up lazily created state (the loop's watcher) before counting.
    warm_up(&mut runner);
    let before = open_fds();
    // With `threaded`, every spawn runs on one of two worker threads.
    let pool = tulip::ThreadPool::new(2).unwrap();
    let workers = threaded.then(|| pool.clone());
    let failures = runner
        .run(async move {
            let spawn = |cmd| spawn_on(cmd, workers.as_ref());
            let mut failures = 0;
            for i in 0..1000 {
                if i % 10 == 9 {
                    // A failed spawn with three pipes prepared.
                    let mut cmd = Command::new("/nonexistent/tulip-nope");
                    cmd.stdios(Stdios::piped());
                    let err = spawn(cmd).await.unwrap_err();
                    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
                    failures += 1;
                    continue;
                }
                let mut cmd = Command::new("true");
                cmd.stdin(Stdio::Pipe)
                    .stdout(Stdio::Pipe)
                    .stderr(Stdio::Stdout);
                let mut p = spawn(cmd).await?;
                let (out, _) = p.communicate(Some(b"x")).await?;
                assert!(out.is_empty());
                assert_eq!(p.returncode(), Some(0));
            }
            Ok(failures)
        })
        .unwrap();
    pool.shutdown(true);
    assert_eq!(failures, 100);
    assert_eq!(lp.unreaped_children(), 0);
    assert_no_new_fds(&before, "1000 spawns");
    runner.close();
}

// conformance: P3
#[test]
fn fd_count_is_unchanged_after_1000_spawns_including_failures_pidfd() {
    spawn_many(ChildWatcherKind::Pidfd, false);
}

// conformance: P3
#[test]
fn fd_count_is_unchanged_after_1000_threaded_spawns_including_failures_pidfd() {
    spawn_many(ChildWatcherKind::Pidfd, true);
}

// conformance: P3
#[test]
fn fd_count_is_unchanged_after_1000_threaded_spawns_including_failures_thread() {
    spawn_many(ChildWatcherKind::Thread, true);
}

// conformance: P3
#[test]
fn fd_count_is_unchanged_after_1000_spawns_including_failures_thread() {
    spawn_many(ChildWatcherKind::Thread, false);
}

// conformance: P3
#[test]
fn emfile_at_spawn_is_a_clear_error_and_leaks_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut runner = tulip::Runner::new();
    warm_up(&mut runner);
    let before = open_fds();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads this process's limit into `old`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    // Leave exactly three free fd numbers below the limit: one pipe fits,
    // the second does not.
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let third_free = (0..).filter(|n| !open.contains(n)).nth(2).unwrap();
    let low = libc::rlimit {
        rlim_cur: third_free + 1,
        rlim_max: old.rlim_max,
    };
    // SAFETY: lowers the soft limit only; restored below.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let res = runner.run(async {
        let err = Command::new("cat")
            .stdios(Stdios::piped())
            .spawn()
            .unwrap_err();
        Ok(err)
    });
    // SAFETY: restores the limit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    let err = res.unwrap();
    match &err {
        tulip::Error::Io(e) => assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{err}"),
        other => panic!("expected EMFILE, got {other:?}"),
    }
    assert_no_new_fds(&before, "a spawn failing with EMFILE");
    runner.close();
}

/// How many of our fds are pidfds.
fn pidfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("pidfd"))
        .count()
}

// conformance: P4
#[test]
fn the_pidfd_watcher_holds_one_pidfd_per_running_child() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !tulip::child_watcher::can_use_pidfd()
        || std::env::var_os(tulip::child_watcher::CHILD_WATCHER_ENV).is_some()
    {
        return; // no pidfd here, or a watcher is forced for the whole process
    }
    let mut runner = tulip::Runner::new();
    runner
        .get_loop()
        .unwrap()
        .set_child_watcher(ChildWatcherKind::Pidfd)
        .unwrap();
    let (during, after, thread_during) = runner
        .run(async {
            let before = pidfds();
            let procs: Vec<_> = (0..3)
                .map(|_| Command::new("sleep").arg("0.2").spawn())
                .collect::<tulip::Result<_>>()?;
            let during = pidfds() - before;
            for p in &procs {
                p.wait().await?;
            }
            let after = pidfds() - before;
            // The thread fallback uses no pidfd.
            tulip::get_running_loop()?.set_child_watcher(ChildWatcherKind::Thread)?;
            let p = Command::new("sleep").arg("0.1").spawn()?;
            let thread_during = pidfds() - before;
            p.wait().await?;
            Ok((during, after, thread_during))
        })
        .unwrap();
    runner.close();
    assert_eq!((during, after, thread_during), (3, 0, 0));
}

// conformance: P4
/// A child whose `pidfd_open` fails for want of an fd (EMFILE) falls back
/// to the thread watcher, as the module documents: the spawn, which needs
/// no new fd with inherited stdio, succeeds, and the child is reaped.
#[test]
fn a_child_without_a_free_fd_for_its_pidfd_falls_back_to_a_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !tulip::child_watcher::can_use_pidfd()
        || std::env::var_os(tulip::child_watcher::CHILD_WATCHER_ENV).is_some()
    {
        return; // no pidfd here, or a watcher is forced for the whole process
    }
    let mut runner = tulip::Runner::new();
    runner
        .get_loop()
        .unwrap()
        .set_child_watcher(ChildWatcherKind::Pidfd)
        .unwrap();
    warm_up(&mut runner);
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads this process's limit into `old`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    // No free fd number below the limit: lower it to the first free one.
    let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .collect();
    let first_free = (0..).find(|n| !open.contains(n)).unwrap();
    let low = libc::rlimit {
        rlim_cur: first_free,
        rlim_max: old.rlim_max,
    };
    // SAFETY: lowers the soft limit only; restored below.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    // Fill the holes left (the listing's own fd was one).
    let mut fillers = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fillers.push(f);
    }
    let spawned = Command::new("true").spawn_on(&runner.get_loop().unwrap());
    drop(fillers);
    // SAFETY: restores the limit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    let p = spawned.expect("the spawn needs no fd, only the pidfd did");
    assert_eq!(p.watcher(), ChildWatcherKind::Thread);
    let rc = runner.run(async move { p.wait().await }).unwrap();
    assert_eq!(rc, 0);
    runner.close();
}
