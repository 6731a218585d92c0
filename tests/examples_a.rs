//! Runs every area-A seed example (S1.4, S2.1, S2.5, S2.7, S2.9–S2.16,
//! S3.1, S3.3, S3.4, S3.7–S3.9, S3.11, S3.13, S3.16, S3.22, S3.23, and
//! the programs of seed 003 that seed-examples.md does not list: S3.8*,
//! S3.15*) and checks its output, in order, and its running time against
//! the seed's.

mod common;

use std::collections::HashMap;
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use common::{assert_elapsed, run_example, stderr, stdout};

/// Slack above a seed's timing: process start-up, a loaded machine.
const SLACK: f64 = 2.0;

/// The tasks of S3.16: a million in the seed, fewer here.
const EAGER_TASKS: &str = if cfg!(debug_assertions) {
    "20000"
} else {
    "200000"
};

/// Every example of this file, with its arguments and time limit (s).
const EXAMPLES: &[(&str, &[&str], u64)] = &[
    ("future_set_by_task", &[], 20),
    ("one_site", &[], 20),
    ("task_result", &[], 20),
    ("done_callback", &[], 20),
    ("stop_from_callback", &[], 20),
    ("close_then_run", &[], 20),
    ("nested", &[], 20),
    ("nested_callback", &[], 20),
    ("call_soon", &[], 20),
    ("call_later", &[], 20),
    ("call_at", &[], 20),
    ("call_soon_threadsafe", &[], 20),
    ("hello", &[], 20),
    ("loop_factory", &[], 20),
    ("runner", &[], 20),
    ("awaitables", &[], 20),
    ("future_manual", &[], 20),
    ("background_task", &[], 20),
    ("task_name", &[], 20),
    ("cancel_task", &[], 20),
    ("display_date", &[], 20),
    ("eager_task_factory", &[], 20),
    ("eager_tasks", &[EAGER_TASKS], 60),
    ("introspect_tasks", &[], 20),
    ("task_api", &[], 20),
];

/// What running one example gave: its output and wall time, or why it
/// could not run (e.g. not built).
type Run = Result<(Output, Duration), String>;

/// The runs of all the examples. The seeds mostly sleep, so they run all at
/// once, on first use: the file takes as long as the slowest one (5 s),
/// not the sum (about 40 s).
fn runs() -> &'static HashMap<&'static str, Run> {
    static RUNS: OnceLock<HashMap<&'static str, Run>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let threads: Vec<_> = EXAMPLES
            .iter()
            .map(|&(name, args, limit)| {
                let t =
                    std::thread::spawn(move || run_example(name, args, Duration::from_secs(limit)));
                (name, t)
            })
            .collect();
        threads
            .into_iter()
            .map(|(name, t)| {
                let run = t.join().map_err(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| format!("running {name} panicked"))
                });
                (name, run)
            })
            .collect()
    })
}

/// The run of `name`, whatever its exit status.
fn run_of(name: &str) -> (&'static Output, Duration) {
    match runs().get(name) {
        Some(Ok((out, took))) => (out, *took),
        Some(Err(why)) => panic!("{why}"),
        None => panic!("{name} is not in EXAMPLES"),
    }
}

/// The run of `name`, which must have succeeded: its stdout lines and its
/// wall time in seconds.
fn run_ok(name: &str) -> (Vec<String>, f64) {
    let (out, took) = run_of(name);
    assert!(
        out.status.success(),
        "{name} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    let lines = stdout(out).lines().map(String::from).collect();
    (lines, took.as_secs_f64())
}

/// The float after `prefix` (and before `suffix`) in `line`.
fn float_in(line: &str, prefix: &str, suffix: &str) -> f64 {
    let rest = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let num = rest
        .strip_suffix(suffix)
        .unwrap_or_else(|| panic!("{line:?} does not end with {suffix:?}"));
    num.parse()
        .unwrap_or_else(|_| panic!("{num:?} in {line:?} is not a number"))
}

#[test]
fn s1_4_future_set_by_task() {
    let (lines, took) = run_ok("future_set_by_task");
    assert!(lines.is_empty(), "the seed prints nothing: {lines:?}");
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s2_1_one_site() {
    let (lines, took) = run_ok("one_site");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], "开始访问网站:www.baidu.com");
    assert_eq!(lines[1], "网站访问成功");
    let t = float_in(&lines[2], "消耗时间:", "");
    assert!((2.0..2.0 + SLACK).contains(&t), "reported {t}");
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s2_5_task_result() {
    let (lines, took) = run_ok("task_result");
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[..3],
        [
            "开始访问网站:http://www.test.com",
            "网站访问成功",
            "获取结果:success"
        ]
    );
    let t = float_in(&lines[3], "消耗时间:", "");
    assert!((2.0..2.0 + SLACK).contains(&t), "reported {t}");
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s2_7_done_callback() {
    let (lines, took) = run_ok("done_callback");
    assert_eq!(
        lines,
        [
            "开始访问网站:http://www.test.com",
            "网站访问成功",
            "检测网址:http://www.test.com状态正常",
            "获取结果:success"
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s2_9_stop_from_callback() {
    let (lines, took) = run_ok("stop_from_callback");
    assert_eq!(
        lines,
        [
            // Part 1: the first coroutine to finish stops the loop (1 s).
            "Waiting 1",
            "Waiting 3",
            "Done",
            // Part 2: gather + a done callback that stops the loop (3 s).
            "Waiting 1",
            "Waiting 3",
            "Done",
            "Done",
            "<_GatheringFuture finished result=[None, None]>"
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 4.0, 4.0 + SLACK);
}

#[test]
fn s2_10_close_then_run() {
    let (out, took) = run_of("close_then_run");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the run after close() must fail"
    );
    let lines: Vec<String> = stdout(out).lines().map(String::from).collect();
    assert_eq!(lines, ["Waiting 1", "Done", "Waiting 3", "Done"]);
    assert_eq!(stderr(out).trim_end(), "RuntimeError: Event loop is closed");
    assert_elapsed(took, 4.0, 4.0 + SLACK);
}

#[test]
fn s2_11_nested() {
    let (lines, took) = run_ok("nested");
    assert_eq!(lines, ["开始执行传入参数相加:1000 + 2000", "3000"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

#[test]
fn s2_12_nested_callback() {
    let (lines, took) = run_ok("nested_callback");
    assert_eq!(lines, ["开始执行传入参数相加:100 + 200", "300"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

#[test]
fn s2_13_call_soon() {
    let (lines, took) = run_ok("call_soon");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[..2], ["预计消耗时间 5 s", "时间消耗完毕"]);
    let t = float_in(&lines[2], "总共耗时:", "");
    assert!(t < 1.0, "call_soon took {t} s");
    assert_elapsed(Duration::from_secs_f64(took), 0.0, SLACK);
}

#[test]
fn s2_14_call_later() {
    let (lines, took) = run_ok("call_later");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[..2], ["预计消耗时间 1.0 s", "时间消耗完毕"]);
    let t = float_in(&lines[2], "总共耗时:", "");
    assert!((5.0..5.0 + SLACK).contains(&t), "reported {t}");
    assert_elapsed(Duration::from_secs_f64(took), 5.0, 5.0 + SLACK);
}

#[test]
fn s2_15_call_at() {
    let (lines, took) = run_ok("call_at");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let t1 = float_in(&lines[0], "传入loop.time()时间为: ", " s");
    let t3 = float_in(&lines[1], "传入loop.time()时间为: ", " s");
    // The two callbacks ran about 2 s apart on the loop's clock.
    assert!((1.0..2.0 + SLACK).contains(&(t3 - t1)), "{t1} then {t3}");
    assert_eq!(lines[2], "时间消耗完毕");
    let t = float_in(&lines[3], "总共耗时:", "");
    assert!((5.0..5.0 + SLACK).contains(&t), "reported {t}");
    assert_elapsed(Duration::from_secs_f64(took), 5.0, 5.0 + SLACK);
}

#[test]
fn s2_16_call_soon_threadsafe() {
    let (lines, took) = run_ok("call_soon_threadsafe");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[..2], ["预计消耗时间 1 s", "时间消耗完毕"]);
    let t = float_in(&lines[2], "总共耗时:", "");
    assert!((1.0..1.0 + SLACK).contains(&t), "reported {t}");
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

#[test]
fn s3_1_hello() {
    let (lines, took) = run_ok("hello");
    assert_eq!(lines, ["Hello ...", "... World!"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

#[test]
fn s3_3_loop_factory() {
    let (lines, took) = run_ok("loop_factory");
    assert_eq!(lines, ["Task started", "Task finished"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

#[test]
fn s3_4_runner() {
    let (lines, took) = run_ok("runner");
    assert_eq!(
        lines,
        [
            "hello",
            "Task started",
            "Task finished",
            "same loop: True",
            "loop closed: False",
            "loop closed: True"
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s3_7_awaitables() {
    let (lines, took) = run_ok("awaitables");
    assert_eq!(lines, ["42", "42"]);
    assert_elapsed(Duration::from_secs_f64(took), 0.0, SLACK);
}

#[test]
fn s3_8_future_manual() {
    let (lines, took) = run_ok("future_manual");
    assert_eq!(lines, ["Future result"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

/// Seed 003, lines ~355–380 (unlisted; S3.8* in the README): `create_task`
/// returns before the task's first step, which runs when `main` awaits.
#[test]
fn s3_8x_background_task() {
    let (lines, took) = run_ok("background_task");
    assert_eq!(
        lines,
        [
            "Task is running in the background",
            "Task started",
            "Task finished"
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s3_9_task_name() {
    let (lines, took) = run_ok("task_name");
    assert_eq!(lines, ["Task Name: MyUniqueTask", "Named Task completed"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
}

#[test]
fn s3_11_cancel_task() {
    let (lines, took) = run_ok("cancel_task");
    assert_eq!(
        lines,
        [
            "Task started",
            "Task was cancelled!",
            "Task has been cancelled"
        ]
    );
    // Cancelled after 2 s: the 5 s sleep never completes.
    assert_elapsed(Duration::from_secs_f64(took), 2.0, 2.0 + SLACK);
}

#[test]
fn s3_13_display_date() {
    let (lines, took) = run_ok("display_date");
    assert_eq!(lines.len(), 5, "{lines:?}");
    let mut last_second = None;
    for line in &lines {
        // 2024-05-01 14:00:29.123456
        let (date, time) = line.split_once(' ').expect("a date and a time");
        assert_eq!(date.len(), 10, "{line}");
        assert_eq!(date.matches('-').count(), 2, "{line}");
        let secs: f64 = time.rsplit(':').next().unwrap().parse().unwrap();
        if let Some(prev) = last_second {
            // About a second apart (modulo the minute).
            let gap = (secs - prev + 60.0) % 60.0;
            assert!((0.9..1.0 + SLACK).contains(&gap), "{lines:?}");
        }
        last_second = Some(secs);
    }
    // Five lines, one a second: 4 s.
    assert_elapsed(Duration::from_secs_f64(took), 4.0, 4.0 + SLACK);
}

/// Seed 003, lines ~1020–1045 (unlisted; S3.15* in the README): one task
/// from `eager_task_factory`, named `MyTask`.
#[test]
fn s3_15x_eager_task_factory() {
    let (lines, took) = run_ok("eager_task_factory");
    assert_eq!(lines, ["Task completed"]);
    assert_elapsed(Duration::from_secs_f64(took), 1.0, 1.0 + SLACK);
    // `--show`: the name, and the first step ran inside `create_task_with`.
    let (out, took) = run_example("eager_task_factory", &["--show"], Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "Task name: MyTask",
            "Started in create_task: True",
            "Task completed"
        ]
    );
    assert_elapsed(took, 1.0, 1.0 + SLACK);
}

#[test]
fn s3_16_eager_tasks() {
    let (lines, _took) = run_ok("eager_tasks");
    assert_eq!(lines.len(), 6, "{lines:?}");
    for (i, part) in lines.chunks(3).enumerate() {
        assert_eq!(part[0], "Before running task group!", "run {i}");
        let t = float_in(&part[1], "It took ", " to run!");
        assert!((0.0..30.0).contains(&t), "run {i} took {t}");
        assert_eq!(part[2], "After running task group with eager task factory!");
    }
}

#[test]
fn s3_22_introspect_tasks() {
    let (lines, took) = run_ok("introspect_tasks");
    assert_eq!(
        lines,
        [
            "Current task: <Task pending name='Task-1'>",
            "Coroutine finished",
            "All tasks: {<Task pending name='Task-2'>, <Task pending name='Task-3'>, <Task pending name='Task-4'>}",
            "Task 1 started",
            "Task 2 started",
            "Task 1 finished",
            "Task 2 finished"
        ]
    );
    assert_elapsed(Duration::from_secs_f64(took), 3.0, 3.0 + SLACK);
}

#[test]
fn s3_23_task_api() {
    let (lines, took) = run_ok("task_api");
    assert_eq!(
        lines,
        [
            "Task name: Task-2",
            "Renamed to: doubler",
            "Task completed!",
            "Task is complete.",
            "Result: 42",
            "Task raised an exception: negative input",
            "Task was cancelled.",
            "Task loop: <EventLoop running=True closed=False debug=False>"
        ]
    );
    // 0.5 s + 0.5 s + 0.1 s.
    assert_elapsed(Duration::from_secs_f64(took), 1.1, 1.1 + SLACK);
}
