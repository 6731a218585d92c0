//! Runs every area-B example and checks its output and its elapsed time.
//!
//! Lines ending in `*` in the expectations are prefixes: the rest of the
//! line holds a clock reading or a measured duration. Lines ending in `?`
//! are optional: a seed whose timers tie by design may or may not print them. Examples with long
//! seed timings run with `--scale` (their sleeps shrink by that factor).

mod common;

use common::{assert_elapsed, run_example, stderr, stdout};
use std::time::Duration;

/// Runs `name args`, then checks the output lines and that it took about
/// `secs` seconds. Returns the run, for checks of its stderr.
fn check(name: &str, args: &[&str], secs: f64, expected: &[&str]) -> std::process::Output {
    let (out, elapsed) = run_example(name, args, Duration::from_secs_f64(secs + 30.0));
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{name} failed: {}\n{text}",
        stderr(&out)
    );
    let lines: Vec<&str> = text.lines().collect();
    let mut got = lines.iter().peekable();
    for want in expected {
        if let Some(line) = want.strip_suffix('?') {
            if got.peek() == Some(&&line) {
                got.next();
            }
            continue;
        }
        let Some(line) = got.next() else {
            panic!("{name}: output ended before {want:?}:\n{text}");
        };
        match want.strip_suffix('*') {
            Some(prefix) => assert!(
                line.starts_with(prefix),
                "{name}: {line:?} should start with {prefix:?}\n{text}"
            ),
            None => assert_eq!(line, want, "{name}: whole output:\n{text}"),
        }
    }
    assert!(
        got.next().is_none(),
        "{name}: unexpected extra output:\n{text}"
    );
    assert_elapsed(elapsed, secs - 0.05, secs + 1.5);
    out
}

/// Like [`check`], for programs whose random sleeps can tie: the lines
/// are compared as a multiset, since two tasks waking at the same second
/// may print in either order.
fn check_unordered(name: &str, args: &[&str], secs: f64, expected: &[&str]) {
    let (out, elapsed) = run_example(name, args, Duration::from_secs_f64(secs + 30.0));
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{name} failed: {}\n{text}",
        stderr(&out)
    );
    // Measured durations vary: keep what comes before them.
    let strip = |l: &str| {
        let l = l.trim_end_matches('*');
        let l = l.split(" in").next().unwrap_or(l);
        l.split("(took").next().unwrap_or(l).to_string()
    };
    let mut got: Vec<String> = text.lines().map(&strip).collect();
    let mut want: Vec<String> = expected.iter().map(|l| strip(l)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{name}: unexpected output:\n{text}");
    assert_elapsed(elapsed, secs - 0.05, secs + 1.5);
}

#[test]
fn example_count() {
    // seed: S1.1
    check(
        "count",
        &[],
        2.0,
        &["one", "one", "one", "two", "two", "two"],
    );
}

#[test]
fn example_named_tasks() {
    // seed: S1.2
    check(
        "named_tasks",
        &[],
        2.0,
        &[
            "1",
            "1",
            "2",
            "2",
            "[<Task finished name='n1'>, <Task finished name='n2'>]",
        ],
    );
}

#[test]
fn example_wait_list() {
    // seed: S1.3
    check(
        "wait_list",
        &[],
        2.0,
        &["1", "1", "2", "2", "done: 2, pending: 0"],
    );
}

#[test]
fn example_ten_sites() {
    // seed: S2.2
    check(
        "ten_sites",
        &[],
        2.0,
        &[
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "消耗时间:*",
        ],
    );
}

#[test]
fn example_gather_groups() {
    // seed: S2.3
    check(
        "gather_groups",
        &[],
        2.0,
        &[
            "开始访问网站:http://www.baidu.com",
            "开始访问网站:http://www.baidu.com",
            "开始访问网站:http://www.baidu.com",
            "开始访问网站:http://www.hupu.com",
            "开始访问网站:http://www.hupu.com",
            "开始访问网站:http://www.hupu.com",
            "开始访问网站:http://www.hupu.com",
            "开始访问网站:http://www.hupu.com",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
        ],
    );
}

#[test]
fn example_gather_groups_cancel_group2() {
    // seed: S2.3, with the seed's commented-out `group2.cancel()`. group2's
    // tasks are cancelled before they start (they print nothing); the outer
    // gather (return_exceptions=False) fails with CancelledError as soon as
    // group2 is done, so run_until_complete raises at once: group1 only
    // printed its starts, nothing succeeds, and the program ends with the
    // error (CPython: a CancelledError traceback, exit status 1).
    let (out, elapsed) = run_example(
        "gather_groups",
        &["--cancel-group2"],
        Duration::from_secs(30),
    );
    let text = stdout(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "开始访问网站:http://www.baidu.com",
            "开始访问网站:http://www.baidu.com",
            "开始访问网站:http://www.baidu.com",
        ],
        "whole output:\n{text}"
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    assert!(
        stderr(&out).to_lowercase().contains("cancelled"),
        "the CancelledError escapes: {}",
        stderr(&out)
    );
    assert_elapsed(elapsed, 0.0, 1.0);
}

#[test]
fn example_ensure_future() {
    // seed: S2.4
    check(
        "ensure_future",
        &[],
        2.0,
        &[
            "开始访问网站:http://www.baidu.com",
            "网站访问成功",
            "success",
        ],
    );
}

#[test]
fn example_many_results() {
    // seed: S2.6
    check(
        "many_results",
        &[],
        2.0,
        &[
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "开始访问网站:http://www.test.com",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "网站访问成功",
            "获取结果:['success', 'success', 'success', 'success', 'success', 'success', 'success', 'success', 'success', 'success']",
            "消耗时间:*",
        ],
    );
}

#[test]
fn example_shared_counter() {
    // seed: S2.21
    check("shared_counter", &[], 2.0, &["0"]);
}

#[test]
fn example_lock_call_later() {
    // seed: S2.22
    check(
        "lock_call_later",
        &[],
        0.5,
        &[
            "线程锁已上锁",
            "任务1等待线程释放",
            "任务2等待线程释放",
            "线程锁已释放",
            "任务1线程锁上锁",
            "任务1线程锁释放",
            "任务2线程锁上锁",
            "任务2线程锁释放",
        ],
    );
}

#[test]
fn example_condition() {
    // seed: S2.24
    check(
        "condition",
        &[],
        4.1,
        &[
            "producer准备sleep 2秒",
            "c1: 正在等待",
            "c2: 正在等待",
            "生产者 1 号",
            "c1: 得到响应",
            "生产者 2 号",
            "c2: 得到响应",
            "---分割线---",
            "producer2准备sleep 2秒",
            "c1: 正在等待",
            "c2: 正在等待",
            "释放信号量，通知所有消费者",
            "c1: 得到响应",
            "c2: 得到响应",
        ],
    );
}

#[test]
fn example_condition_pingpong() {
    // seed: S2.25
    check(
        "condition_pingpong",
        &["--seconds", "3.5"],
        3.5,
        &[
            "开始执行任务A",
            "当前num为：-1",
            "暂停执行任务A",
            "开始执行任务B",
            "当前num为：0",
            "暂停执行任务B",
            "开始执行任务A",
            "当前num为：-1",
            "暂停执行任务A",
            "开始执行任务B",
        ],
    );
}

#[test]
fn example_event_call_later() {
    // seed: S2.26
    check(
        "event_call_later",
        &[],
        0.1,
        &[
            "事件是否设置: False",
            "e1 的事件未设置",
            "e2 的事件未设置",
            "开始设置事件",
            "e1 的事件已设置",
            "e2 的事件已设置",
            "最终事件状态: True",
        ],
    );
}

#[test]
fn example_traffic_light() {
    // seed: S2.27
    check(
        "traffic_light",
        &["--seconds", "6.5"],
        6.5,
        &[
            "一辆[奔驰]开来，看到红灯，无奈的停下了...",
            "一辆[宝马]开来，看到红灯，无奈的停下了...",
            "一辆[奥迪]开来，看到红灯，无奈的停下了...",
            " 绿灯亮...",
            "[奔驰] 看到绿灯亮了，瞬间飞起.....",
            "一辆[奔驰] 呼啸开过...",
            "[宝马] 看到绿灯亮了，瞬间飞起.....",
            "一辆[宝马] 呼啸开过...",
            "[奥迪] 看到绿灯亮了，瞬间飞起.....",
            "一辆[奥迪] 呼啸开过...",
            "一辆[奔驰] 呼啸开过...",
            "一辆[宝马] 呼啸开过...",
            "一辆[奥迪] 呼啸开过...",
            "一辆[奔驰] 呼啸开过...",
            "一辆[宝马] 呼啸开过...",
            "一辆[奥迪] 呼啸开过...",
            "一辆[奔驰] 呼啸开过...",
            "一辆[宝马] 呼啸开过...",
            "一辆[奥迪] 呼啸开过...",
            "一辆[奔驰] 呼啸开过...",
            "一辆[宝马] 呼啸开过...",
            "一辆[奥迪] 呼啸开过...",
            " 红灯亮...",
            "一辆[奔驰]开来，看到红灯，无奈的停下了...",
            "一辆[宝马]开来，看到红灯，无奈的停下了...",
            "一辆[奥迪]开来，看到红灯，无奈的停下了...",
        ],
    );
}

#[test]
fn example_queue_letters() {
    // seed: S2.28
    check(
        "queue_letters",
        &["--seconds", "2.5"],
        2.5,
        &["x", "a", "V", "(stopped after 2.5 s; 100 letters queued)"],
    );
}

#[test]
fn example_say_after() {
    // seed: S3.5
    check(
        "say_after",
        &[],
        5.0,
        &[
            "started at *",
            "hello",
            "world",
            "finished at *",
            "started at *",
            "hello",
            "world",
            "finished at *",
        ],
    );
}

#[test]
fn example_taskgroup() {
    // seed: S3.6
    check(
        "taskgroup",
        &[],
        2.0,
        &["started at *", "hello", "world", "finished at *"],
    );
}

#[test]
fn example_task_context() {
    // seed: S3.10
    check("task_context", &[], 1.0, &["Task request_id: 12345"]);
}

#[test]
fn example_taskgroup_errors() {
    // seed: S3.12
    let out = check(
        "taskgroup_errors",
        &[],
        6.0,
        &[
            "Task 1 done",
            "Task 2 done",
            "Task 3 done",
            "Task 1: Result 1,Task 2: Result 2,Task 3: Result 3",
            "---",
            "Task 1 done",
            "An exception occurred: unhandled errors in a TaskGroup (1 sub-exception)",
            // The seed's `print(f"Task 1: {task1.result()},Task 2: {task2.result()},...")`
            // never prints: task2.result() raises the ValueError, which ends
            // that program (see the stderr check below).
            "---",
            "Task 1: start",
            "Task 2: start",
            "Task 1: done",
            "---",
            "Task 1 done",
            "Task 3 was cancelled!",
            "An exception occurred: unhandled errors in a TaskGroup (1 sub-exception)",
        ],
    );
    let err = stderr(&out);
    assert!(
        err.contains("ValueError: Task 2 encountered an error!"),
        "the error from task2.result() escapes example 2: {err}"
    );
}

#[test]
fn example_gather_exceptions() {
    // seed: S3.14
    check(
        "gather_exceptions",
        &["--scale", "0.2"],
        1.6,
        &[
            "Task 1 completed",
            "Task 2 completed",
            "Task 3 completed",
            "Results: ['Num 1', 'Num 2', 'Num 3']",
            "Task 1 completed",
            "An error occurred: Task 2 failed!",
            "Task 1 completed",
            "Task 3 completed",
            "Results: ['Num 1', ValueError('Task 2 failed!'), 'Num 3']",
        ],
    );
}

#[test]
fn example_shield() {
    // seed: S3.17
    check(
        "shield",
        &[],
        1.0,
        &[
            "Task started",
            "Cancelling task...",
            "Protected task was cancelled",
        ],
    );
}

#[test]
fn example_timeouts() {
    // seed: S3.18
    check(
        "timeouts",
        &["--scale", "0.2"],
        1.8,
        &[
            "Task started",
            "Task took too long and was cancelled due to timeout.",
            "Task started",
            "Looks like we haven't finished on time.",
            "Task started",
            "Task was cancelled due to timeout.",
            "Task started",
            "Task took too long and was cancelled due to timeout.",
        ],
    );
}

#[test]
fn example_wait_as_completed() {
    // seed: S3.19
    check(
        "wait_as_completed",
        &["--scale", "0.2"],
        1.8,
        &[
            "Task A started",
            "Task B started",
            "Task C started",
            "Task A completed",
            "",
            "Results:",
            "A completed",
            "Pending tasks:",
            "<Task pending name='Task-3'>",
            "<Task pending name='Task-4'>",
            // B sleeps exactly as long as wait()'s timeout: it completes only
            // if its timer comes due in the same iteration as the timeout
            // (usual, but not under load); otherwise run() cancels it.
            "Task B completed?",
            "Task A started",
            "Task B started",
            "Task C started",
            "Task B completed",
            "Task B has finished",
            "Task C completed",
            "Task C has finished",
            "Task A completed",
            "Task A has finished",
            "Task A started",
            "Task B started",
            "Task C started",
            "Task C completed",
            "Task C has finished",
            "Task A completed",
            "Task A has finished",
            "Some tasks did not complete within the timeout period",
        ],
    );
}

#[test]
fn example_sync_primitives() {
    // seed: S3.26
    check(
        "sync_primitives",
        &[],
        7.0,
        &[
            "== Lock",
            "Worker 1 获得了锁",
            "Worker 1 释放了锁",
            "Worker 2 获得了锁",
            "Worker 2 释放了锁",
            "== Event",
            "等待事件设置...",
            "设置事件",
            "事件已设置!",
            "== Condition",
            "等待条件满足...",
            "条件已满足,通知消费者",
            "条件满足,开始消费数据",
            "== Semaphore",
            "Worker 1 获得了访问权限",
            "Worker 2 获得了访问权限",
            "Worker 1 释放了访问权限",
            "Worker 2 释放了访问权限",
            "Worker 3 获得了访问权限",
            "Worker 3 释放了访问权限",
            "== Barrier",
            "Worker 1 到达屏障",
            "Worker 2 到达屏障",
            "Worker 3 到达屏障",
            "Worker 3 跨过屏障",
            "Worker 1 跨过屏障",
            "Worker 2 跨过屏障",
        ],
    );
}

#[test]
fn example_countasync() {
    // seed: S4.1
    check(
        "countasync",
        &[],
        1.0,
        &[
            "One",
            "One",
            "One",
            "Two",
            "Two",
            "Two",
            "examples/countasync.rs executed in*",
        ],
    );
}

#[test]
fn example_makerandom() {
    // seed: S4.2
    check_unordered(
        "makerandom",
        &["--scale", "0.1"],
        1.8,
        &[
            "Initiated makerandom(0).",
            "makerandom(0) == 8 too low; retrying.",
            "Initiated makerandom(1).",
            "---> Finished: makerandom(1) == 10",
            "Initiated makerandom(2).",
            "makerandom(2) == 5 too low; retrying.",
            "---> Finished: makerandom(0) == 10",
            "makerandom(2) == 4 too low; retrying.",
            "makerandom(2) == 6 too low; retrying.",
            "makerandom(2) == 3 too low; retrying.",
            "makerandom(2) == 4 too low; retrying.",
            "makerandom(2) == 5 too low; retrying.",
            "---> Finished: makerandom(2) == 9",
            "",
            "r1: 10, r2: 10, r3: 9",
        ],
    );
}

#[test]
fn example_chained() {
    // seed: S4.3
    // The seeded sleeps never tie (the closest events are 1 s apart, 0.1 s
    // at this scale), so the order is checked too.
    check(
        "chained",
        &["--scale", "0.1"],
        2.0,
        &[
            "part1(1) sleeping for 10 seconds.",
            "part1(2) sleeping for 5 seconds.",
            "part1(3) sleeping for 8 seconds.",
            "Returning part1(2) == result2-1.",
            "part2(2, 'result2-1') sleeping for 4 seconds.",
            "Returning part1(3) == result3-1.",
            "part2(3, 'result3-1') sleeping for 9 seconds.",
            "Returning part2(2, 'result2-1') == result2-2 derived from result2-1.",
            "-->Chained result2 => result2-2 derived from result2-1 (took *",
            "Returning part1(1) == result1-1.",
            "part2(1, 'result1-1') sleeping for 10 seconds.",
            "Returning part2(3, 'result3-1') == result3-2 derived from result3-1.",
            "-->Chained result3 => result3-2 derived from result3-1 (took *",
            "Returning part2(1, 'result1-1') == result1-2 derived from result1-1.",
            "-->Chained result1 => result1-2 derived from result1-1 (took *",
            "Program finished in*",
        ],
    );
}

#[test]
fn example_asyncq() {
    // seed: S4.4
    // Which consumer gets which item depends on which of two tasks waking
    // in the same instant runs first, so check the structure: every item
    // added is got exactly once, each producer and consumer slept, and the
    // run took the producers' (seeded) time.
    let (out, elapsed) = run_example(
        "asyncq",
        &["-p", "2", "-c", "5", "--scale", "0.1"],
        Duration::from_secs(40),
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "asyncq failed: {}
{text}",
        stderr(&out)
    );
    let item = |l: &str| {
        l.split('<')
            .nth(1)
            .and_then(|r| r.split('>').next())
            .map(str::to_string)
    };
    let mut added: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" added <"))
        .filter_map(item)
        .collect();
    let mut got: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" got element <"))
        .filter_map(item)
        .collect();
    assert!(!added.is_empty(), "{text}");
    added.sort();
    got.sort();
    assert_eq!(
        added, got,
        "every item is consumed once:
{text}"
    );
    for who in ["Producer 0", "Producer 1", "Consumer 0", "Consumer 4"] {
        assert!(
            text.contains(&format!("{who} sleeping for ")),
            "{who} never slept:
{text}"
        );
    }
    assert!(text
        .lines()
        .last()
        .unwrap()
        .starts_with("Program completed in "));
    assert_elapsed(elapsed, 4.65, 4.7 + 1.5);
}

#[test]
fn example_reverse_seq() {
    // seed: S4.6
    check(
        "reverse_seq",
        &["--scale", "0.1"],
        2.3,
        &[
            "t: type tulip::tasks::Task<alloc::vec::Vec<u32>>",
            "t done: True",
            "Start: *",
            "End: *",
            "Both tasks done: True",
            "[[1, 2, 3], [0, 5, 10]]",
            "Start: *",
            "res: [1, 2, 3] completed at *",
            "res: [0, 5, 10] completed at *",
            "End: *",
            "Both tasks done: True",
        ],
    );
}

#[test]
fn example_reverse_seq_prints_wall_clock_times() {
    // seed: S4.6 prints `time.strftime('%X')`: `Start: 16:20:11`,
    // `res: [1, 2, 3] completed at 09:49:10`.
    let (out, _) = run_example("reverse_seq", &["--scale", "0.1"], Duration::from_secs(30));
    let text = stdout(&out);
    let is_clock = |t: &str| {
        let parts: Vec<&str> = t.split(':').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut timed = 0;
    for line in text.lines() {
        let time = if let Some(t) = line.strip_prefix("Start: ") {
            t
        } else if let Some(t) = line.strip_prefix("End: ") {
            t
        } else if let Some((_, t)) = line.split_once(" completed at ") {
            t
        } else {
            continue;
        };
        assert!(is_clock(time), "{line:?} should end with HH:MM:SS\n{text}");
        timed += 1;
    }
    assert_eq!(timed, 6, "{text}");
}

#[test]
fn example_custom_primitive() {
    // seed: chapter 6
    // The bucket's schedule is checked from the times printed, with room
    // for a loaded machine (a line prints its time to 0.1 s, so an exact
    // match allowed only 50 ms of lateness).
    let out = check(
        "custom_primitive",
        &[],
        0.6,
        &[
            "request 1 sent at *",
            "request 2 sent at *",
            "request 3 sent at *",
            "request 4 cancelled",
            "request 5 sent at *",
            "request 6 sent at *",
            "<TokenBucket tokens=0 waiters=0>",
        ],
    );
    let text = stdout(&out);
    let sent: Vec<(u32, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("request ")?;
            let (n, at) = rest.split_once(" sent at ")?;
            Some((n.parse().ok()?, at.strip_suffix(" s")?.parse().ok()?))
        })
        .collect();
    let due = [(1, 0.0), (2, 0.0), (3, 0.2), (5, 0.4), (6, 0.6)];
    assert_eq!(sent.len(), due.len(), "{text}");
    for ((n, at), (want_n, want_at)) in sent.iter().zip(due) {
        assert_eq!(*n, want_n, "{text}");
        assert!(
            *at >= want_at - 0.05 && *at <= want_at + 0.25,
            "request {n} sent at {at} s, due at {want_at} s:\n{text}"
        );
    }
}
