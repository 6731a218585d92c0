//! Runs every area-D seed example (S2.8, S2.17, S2.18, S2.20, S3.20, S3.21,
//! S3.27a–f, and S3.27b*, a seed program that seed-examples.md does not
//! list) and checks its output and its running time against the seed's.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{assert_elapsed, example_path, run_example, run_example_in, stderr, stdout};

/// Runs `name`, asserts it succeeded, and returns its stdout lines and the
/// wall time in seconds.
fn run_ok(name: &str, limit_secs: u64) -> (Vec<String>, f64) {
    let (out, took) = run_example(name, &[], Duration::from_secs(limit_secs));
    assert!(
        out.status.success(),
        "{name} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("destroyed but it is pending"),
        "{}",
        stderr(&out)
    );
    let lines = stdout(&out).lines().map(String::from).collect();
    (lines, took.as_secs_f64())
}

/// The float after `prefix` in `line`.
fn float_after(line: &str, prefix: &str) -> f64 {
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no number in {line:?}"))
}

const TITLE: &str = " Langzi - Never Setter 永不将就 - 致力于Python开发网络安全工具,分享Python底层与进阶知识，漏洞扫描器开发与爬虫开发 ";

// conformance: R2
#[test]
fn s2_8_ctrl_c_cancel_cancels_the_pending_tasks_on_sigint() {
    let mut child = Command::new(example_path("ctrl_c_cancel"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Ready: the 1 s task has finished, the 2 s and 3 s ones are sleeping.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines.iter().any(|l: &String| l == "运行结束") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                panic!("no ready line; got {lines:?}");
            }
        }
    }
    let sent = Instant::now();
    // SAFETY: kill() with the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    // Bounded wait for the exit.
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the example did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}\n{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "slow exit after SIGINT"
    );
    // As in asyncio: run_until_complete wraps `asyncio.wait(coros)` in
    // Task-1, which wraps the three coroutines in Task-2..4; at the
    // interrupt Task-2 (1 s) is done, and the wait task and the two
    // sleepers are the pending ones (CPython 3.11 prints the same three
    // names, in a set's order).
    assert_eq!(
        lines[..4],
        [
            "开始运行，等待:1s",
            "开始运行，等待:2s",
            "开始运行，等待:3s",
            "运行结束",
        ]
    );
    let mut cancelled = lines[4..].to_vec();
    cancelled.sort();
    assert_eq!(
        cancelled,
        [
            "开始取消协程<Task pending name='Task-1'>",
            "开始取消协程<Task pending name='Task-3'>",
            "开始取消协程<Task pending name='Task-4'>",
        ]
    );
    assert!(!err.contains("destroyed but it is pending"), "{err}");
}

// conformance: H2
#[test]
fn s2_17_executor_fetch_ten_fetches_on_five_threads() {
    let (lines, took) = run_ok("executor_fetch", 20);
    assert_eq!(lines.len(), 11, "{lines:?}");
    assert!(lines[..10].iter().all(|l| l == TITLE), "{lines:?}");
    let secs: f64 = lines[10].parse().unwrap();
    assert!((0.95..2.5).contains(&secs), "{secs}");
    assert!(took < 4.0);
}

// conformance: H2
#[test]
fn s2_18_executor_socket_ten_raw_socket_fetches_on_three_threads() {
    let (lines, took) = run_ok("executor_socket", 20);
    assert_eq!(lines.len(), 11, "{lines:?}");
    assert!(lines[..10].iter().all(|l| l == TITLE), "{lines:?}");
    let secs = float_after(&lines[10], "last time:");
    assert!((1.15..3.0).contains(&secs), "{secs}");
    assert!(took < 5.0);
}

// conformance: P1
#[test]
fn s2_20_process_pool_maps_thirty_jobs_over_worker_processes() {
    let (lines, took) = run_ok("process_pool", 30);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let page = format!("'<html><head><title>{TITLE}</title></head><body>hi</body></html>'");
    let expect = format!("[{}]", vec![page; 30].join(", "));
    assert_eq!(lines[0], expect);
    let secs = float_after(&lines[1], "Cost time: ");
    assert!((0.75..3.0).contains(&secs), "{secs}");
    assert!(took < 5.0);
}

// conformance: H2
#[test]
fn s3_20_to_thread_runs_blocking_io_beside_the_loop() {
    let (lines, took) = run_ok("to_thread", 20);
    let shape: Vec<String> = lines
        .iter()
        .map(|l| {
            l.rsplit_once(" at ")
                .map_or(l.clone(), |(a, _)| a.to_string())
        })
        .collect();
    assert_eq!(
        shape[..4],
        [
            "started main",
            "start blocking_io",
            "blocking_io complete",
            "finished main"
        ]
    );
    assert_eq!(shape[4], "started main");
    let mut starts = shape[5..8].to_vec();
    starts.sort();
    assert_eq!(
        starts,
        [
            "Task A start blocking_io",
            "Task B start blocking_io",
            "Task C start blocking_io"
        ]
    );
    assert_eq!(
        shape[8..],
        [
            "Task A blocking_io complete",
            "Task C blocking_io complete",
            "Task B blocking_io complete",
            "finished main"
        ]
    );
    // 1 s (part 1, not 2) + 3 s (part 2, not 6).
    assert_elapsed(Duration::from_secs_f64(took), 3.9, 5.5);
}

// conformance: H2
#[test]
fn s3_21_threadsafe_coroutine_result_timeout_and_cancel() {
    let (lines, took) = run_ok("threadsafe_coroutine", 20);
    assert_eq!(
        lines,
        [
            "Coroutine started",
            "Coroutine finished",
            // `{result!r}`: Python's repr of a str, in single quotes.
            "The coroutine returned: 'Task result'",
            "Coroutine started",
            "The coroutine took too long, cancelling the task...",
            "Coroutine cancelled",
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 2.5, 4.5);
}

// conformance: P1
#[test]
fn s3_27a_subprocess_shell_runs_and_gathers_shell_commands() {
    let (lines, took) = run_ok("subprocess_shell", 20);
    let text = lines.join("\n");
    assert!(lines[0] == "['ls ./' exited with 0]", "{text}");
    assert_eq!(lines[1], "[stdout]");
    assert!(lines.contains(&"Cargo.toml".to_string()), "{text}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "['ls ./' exited with 0]")
            .count(),
        2
    );
    // The gathered `ls` finishes first, the 1 s command second.
    let sleep_at = lines
        .iter()
        .position(|l| l == "['sleep 1; echo \"hello\"' exited with 0]")
        .expect("the sleep command's line");
    assert_eq!(lines[sleep_at + 1..sleep_at + 3], ["[stdout]", "hello"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 3.0);
}

// conformance: P1
#[test]
fn s3_27b_subprocess_exec_communicates() {
    let (lines, _) = run_ok("subprocess_exec", 20);
    assert_eq!(lines[..2], ["[stdout]", "total 0"]);
    assert!(
        lines[2].starts_with("-rw") && lines[2].ends_with(" test.py"),
        "{lines:?}"
    );
    assert_eq!(
        lines[3..],
        [
            "",
            "Return code: 0",
            "[stdout] Hello, World!",
            "Return code: 0"
        ]
    );
}

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("tulip-examples-d-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Seed 003, lines ~2905–2930 (unlisted; S3.27b* in the README):
/// `ls -l | grep test` through `create_subprocess_shell` and
/// `communicate`, run in a directory with a `test` subdirectory, then in an
/// empty one, where grep finds nothing and exits with 1.
#[test]
fn s3_27bx_subprocess_grep_runs_ls_into_grep() {
    let dir = TempDir::new("subprocess-grep");
    std::fs::create_dir(dir.0.join("test")).unwrap();
    std::fs::write(dir.0.join("notes.txt"), "no match in the name\n").unwrap();
    // What the pipeline should print: the lines of `ls -l` that hold
    // `test` (the subdirectory's; an owner named *test* would add more).
    let ls = Command::new("sh")
        .args(["-c", "ls -l"])
        .current_dir(&dir.0)
        .output()
        .expect("run ls -l");
    let listing = String::from_utf8(ls.stdout).unwrap();
    let matched: Vec<&str> = listing.lines().filter(|l| l.contains("test")).collect();
    assert!(
        matched
            .iter()
            .any(|l| l.starts_with('d') && l.ends_with(" test")),
        "{listing}"
    );
    let (out, took) = run_example_in(&dir.0, "subprocess_grep", &[], Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    // `print(f'[stdout]\n{stdout.decode()}')`: grep's output ends with a
    // newline, and print adds one, hence the empty line.
    assert_eq!(
        stdout(&out),
        format!("[stdout]\n{}\n\nReturn code: 0\n", matched.join("\n"))
    );
    assert_elapsed(took, 0.0, 5.0);

    // Nothing matches in an empty directory (`ls -l` prints `total 0`):
    // no output, no errors, and grep's exit status 1.
    let empty = TempDir::new("subprocess-grep-empty");
    let (out, took) = run_example_in(&empty.0, "subprocess_grep", &[], Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Return code: 1\n");
    assert_eq!(stderr(&out), "");
    assert_elapsed(took, 0.0, 5.0);
}

// conformance: P1
#[test]
fn s3_27c_subprocess_pipe_runs_a_shell_pipeline() {
    let (lines, _) = run_ok("subprocess_pipe", 20);
    assert_eq!(lines, ["[stdout] Hello, World!", "Return code: 0"]);
}

// conformance: P1
#[test]
fn s3_27d_subprocess_readline_reads_one_line_then_waits() {
    let (lines, _) = run_ok("subprocess_readline", 20);
    assert_eq!(lines.len(), 1);
    let date = lines[0].strip_prefix("Current date: ").expect("prefix");
    // 2024-11-12 15:40:09.591518
    assert_eq!(date.len(), 26, "{date}");
    assert_eq!((&date[4..5], &date[10..11], &date[19..20]), ("-", " ", "."));
}

// conformance: P1
#[test]
fn s3_27e_subprocess_interactive_writes_drains_and_reads() {
    let (lines, _) = run_ok("subprocess_interactive", 20);
    assert_eq!(
        lines,
        ["[stdout] Hello from child process", "Return code: 0"]
    );
}

// conformance: P1
#[test]
fn s3_27f_subprocess_many_gathers_commands_with_return_codes() {
    let (lines, took) = run_ok("subprocess_many", 20);
    assert_eq!(
        lines,
        [
            "",
            "[Command: echo \"Hello, World!\"]",
            "Return code: 0",
            "[stdout] Hello, World!",
            "",
            "[Command: sleep 1; echo \"Task 1 completed\"]",
            "Return code: 0",
            "[stdout] Task 1 completed",
            "",
            "[Command: sleep 2; echo \"Task 2 completed\"]",
            "Return code: 0",
            "[stdout] Task 2 completed",
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 4.0);
}

/// Teaching example: a std child's stdin and stdout as pipe transports
/// under protocols of our own (`connect_write_pipe`, `connect_read_pipe`).
#[test]
fn example_pipe_protocol() {
    let (lines, _) = run_ok("pipe_protocol", 30);
    assert_eq!(
        lines,
        [
            "read pipe: connection_made",
            "write pipe: connection_lost(None)",
            "read pipe: line \"got: one\"",
            "read pipe: line \"got: two\"",
            "read pipe: line \"got: three\"",
            "read pipe: eof_received",
            "read pipe: connection_lost(None)",
            "child exited: 0",
        ]
    );
}

/// Teaching example: asyncio's `DateProtocol` on `loop.subprocess_exec`.
#[test]
fn example_subprocess_protocol() {
    let (lines, _) = run_ok("subprocess_protocol", 30);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "return code: Some(0)");
    let date = lines[1]
        .strip_prefix("Current date: ")
        .expect("a date line");
    let parts: Vec<&str> = date.split('-').collect();
    assert_eq!(parts.len(), 3, "{date:?}");
    assert!(
        parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "{date:?}"
    );
}

/// Teaching example: two loops on two threads, `run_coroutine_threadsafe`
/// and `wrap_future` (the main loop runs on while its task waits).
#[test]
fn example_two_loops() {
    let (lines, _) = run_ok("two_loops", 30);
    assert_eq!(
        lines,
        [
            "main: sent the job to the worker loop",
            "main: tick 1 (this loop runs while its task waits)",
            "main: tick 2 (this loop runs while its task waits)",
            "main: tick 3 (this loop runs while its task waits)",
            "main: got 42, computed on the thread named \"worker\"",
            "both loops are closed; the answer was 42",
        ]
    );
}
