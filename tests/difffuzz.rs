//! Differential fuzzing against CPython's asyncio: the tulip half.
//!
//! A program of the fuzzer's DSL (JSON: a few tasks, each a list of ops such
//! as `sleep`, `cancel`, `uncancel`, `gather`, `shield`, `wait_for`, `wait`,
//! `as_completed`, `timeout`, `TaskGroup`) runs here on tulip's public API
//! and appends one line per op to a trace; `scripts/difffuzz/interp.py` is the same
//! interpreter on asyncio, and `scripts/difffuzz/fuzz.py` generates
//! programs, runs both and compares (see DEVELOPERS.md).
//!
//! `corpus_replays_asyncio_traces` replays the checked-in corpus
//! (`tests/data/difffuzz/*.json`: a program and the trace CPython 3.12
//! recorded for it), so CI needs no Python. `difffuzz_driver` (ignored) is
//! what the fuzzer runs: programs from `$DIFFFUZZ_IN`, traces to
//! `$DIFFFUZZ_OUT`.
//!
//! One tick of the DSL is 10 ms here (50 ms for the corpus, whose programs
//! were picked with timers at least a tick apart); the fuzzer keeps only
//! programs whose timers are at least half a tick apart, so the traces do
//! not depend on how late the loop wakes.
//!
//! The corpus exercises: C1 C2 C3 C6 K1 K2 K3 K4 K5 K6 K7.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;

use tulip::{Child, Error, Result, ReturnWhen, Task, TaskFactory, TaskGroup, Timeout};

// ===== a small JSON reader (the workspace takes no serde) =====

#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn parse(s: &str) -> J {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing input in JSON");
        v
    }
    fn arr(&self) -> &[J] {
        match self {
            J::Arr(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }
    fn str(&self) -> &str {
        match self {
            J::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }
    fn num(&self) -> Option<f64> {
        match self {
            J::Num(n) => Some(*n),
            J::Null => None,
            other => panic!("expected a number, got {other:?}"),
        }
    }
    fn truthy(&self) -> bool {
        matches!(self, J::Bool(true))
    }
    fn get(&self, key: &str) -> &J {
        match self {
            J::Obj(kv) => kv
                .iter()
                .find(|(k, _)| k == key)
                .map_or(&J::Null, |(_, v)| v),
            other => panic!("expected an object, got {other:?}"),
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn list<T>(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let mut out = Vec::new();
        if self.eat(close) {
            return out;
        }
        loop {
            out.push(item(self));
            if self.eat(close) {
                return out;
            }
            assert!(self.eat(b','), "expected ',' at byte {}", self.i);
        }
    }
    fn string(&mut self) -> String {
        assert!(self.eat(b'"'), "expected a string at byte {}", self.i);
        let mut s = String::new();
        loop {
            let c = self.b[self.i];
            self.i += 1;
            match c {
                b'"' => return s,
                b'\\' => {
                    let e = self.b[self.i];
                    self.i += 1;
                    s.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        b'u' => {
                            let hex = std::str::from_utf8(&self.b[self.i..self.i + 4]).unwrap();
                            self.i += 4;
                            char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap_or('?')
                        }
                        other => other as char,
                    });
                }
                _ => {
                    // Copy a UTF-8 sequence whole.
                    let start = self.i - 1;
                    while self.i < self.b.len() && (self.b[self.i] & 0xC0) == 0x80 {
                        self.i += 1;
                    }
                    s.push_str(std::str::from_utf8(&self.b[start..self.i]).unwrap());
                }
            }
        }
    }
    fn value(&mut self) -> J {
        self.ws();
        match self.b[self.i] {
            b'[' => {
                self.i += 1;
                J::Arr(self.list(b']', |p| p.value()))
            }
            b'{' => {
                self.i += 1;
                J::Obj(self.list(b'}', |p| {
                    let k = p.string();
                    assert!(p.eat(b':'), "expected ':'");
                    (k, p.value())
                }))
            }
            b'"' => J::Str(self.string()),
            _ => {
                let start = self.i;
                while self.i < self.b.len() && !b",]} \n\t\r".contains(&self.b[self.i]) {
                    self.i += 1;
                }
                match std::str::from_utf8(&self.b[start..self.i]).unwrap() {
                    "null" => J::Null,
                    "true" => J::Bool(true),
                    "false" => J::Bool(false),
                    n => J::Num(n.parse().expect("a JSON number")),
                }
            }
        }
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ===== the interpreter =====

type BoxFut<T> = Pin<Box<dyn StdFuture<Output = Result<T>>>>;

#[derive(Clone)]
struct Env {
    trace: Rc<RefCell<Vec<String>>>,
    tasks: Rc<RefCell<HashMap<String, Task<String>>>>,
    /// The main task, which ops may cancel by the name `main`.
    main: Rc<RefCell<Option<tulip::TaskRef>>>,
    scopes: Rc<Vec<Timeout>>,
    tick: f64,
}

impl Env {
    fn log(&self, label: &str, kind: &str, what: impl std::fmt::Display) {
        self.trace
            .borrow_mut()
            .push(format!("{label} {kind} {what}"));
    }
    fn task(&self, name: &str) -> Option<Task<String>> {
        self.tasks.borrow().get(name).cloned()
    }
    /// A task by name for cancel, cancelling and uncancel: `self`, `main`,
    /// or a task of the program (`None`: not made yet).
    fn task_ref(&self, name: &str) -> Option<tulip::TaskRef> {
        match name {
            "self" => tulip::current_task(),
            "main" => self.main.borrow().clone(),
            _ => self.task(name).map(|t| t.as_ref()),
        }
    }
    fn ticks(&self, k: &J) -> Option<f64> {
        k.num().map(|k| k * self.tick)
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn fmt_err(e: &Error) -> String {
    match e {
        Error::Cancelled(None) => "Cancelled".into(),
        Error::Cancelled(Some(m)) => format!("Cancelled({m})"),
        Error::Timeout => "Timeout".into(),
        Error::Other(_) => e.to_string(),
        Error::Group { errors, .. } => {
            let v: Vec<String> = errors.iter().map(fmt_err).collect();
            format!("Group({})", v.join(","))
        }
        Error::InvalidState(_) => "InvalidState".into(),
        Error::Runtime(_) => "Runtime".into(),
        other => format!("Other({other:?})"),
    }
}

fn fmt_res(r: &Result<String>) -> String {
    match r {
        Ok(v) => v.clone(),
        Err(e) => fmt_err(e),
    }
}

/// A task or an inline child: runs `ops`, logs how it ended, returns its name.
fn run_body(env: Env, name: String, ops: J) -> BoxFut<String> {
    Box::pin(async move {
        let env = Env {
            scopes: Rc::new(Vec::new()),
            ..env
        };
        match run_ops(env.clone(), ops).await {
            Ok(()) => {
                env.log(&name, "end", "ok");
                Ok(name)
            }
            Err(e) => {
                env.log(&name, "end", fmt_err(&e));
                Err(e)
            }
        }
    })
}

fn run_ops(env: Env, ops: J) -> BoxFut<()> {
    Box::pin(async move {
        for op in ops.arr() {
            run_op(env.clone(), op.clone()).await?;
        }
        Ok(())
    })
}

async fn logged<T>(
    env: &Env,
    label: &str,
    kind: &str,
    fut: impl StdFuture<Output = Result<T>>,
    f: impl FnOnce(&T) -> String,
) -> Result<T> {
    match fut.await {
        Ok(v) => {
            env.log(label, kind, f(&v));
            Ok(v)
        }
        Err(e) => {
            env.log(label, kind, format!("raise {}", fmt_err(&e)));
            Err(e)
        }
    }
}

/// A child as a task: a task of the program, or an inline `[name, ops]`
/// wrapped in a new task (asyncio's `ensure_future(coro)`).
fn child(env: &Env, spec: &J) -> Child<String> {
    match spec {
        J::Str(name) => Child::Task(env.task(name).expect("a child refers to a later task")),
        J::Arr(c) => Child::new(run_body(env.clone(), c[0].str().into(), c[1].clone())),
        other => panic!("bad child {other:?}"),
    }
}

fn run_op(env: Env, op: J) -> BoxFut<()> {
    Box::pin(async move {
        let op = op.arr();
        let (kind, label) = (op[0].str(), op[1].str());
        let me = || tulip::current_task().expect("ops run in a task");
        match kind {
            "sleep" => {
                let d = env.ticks(&op[2]).unwrap();
                logged(&env, label, kind, tulip::sleep(d), |_| "ok".into()).await?;
            }
            "sleep0" => {
                logged(&env, label, kind, tulip::sleep(0.0), |_| "ok".into()).await?;
            }
            "cancel" => match env.task_ref(op[2].str()) {
                Some(t) => {
                    let r = match &op[3] {
                        J::Str(m) => t.cancel_with(m.clone()),
                        _ => t.cancel(),
                    };
                    env.log(label, kind, py_bool(r));
                }
                None => env.log(label, kind, "missing"),
            },
            "cancel_soon" => {
                // A cancel from a callback (call_soon, or call_later k ticks).
                let Some(task) = env.task_ref(op[2].str()) else {
                    env.log(label, kind, "missing");
                    return Ok(());
                };
                let msg = match &op[3] {
                    J::Str(m) => Some(m.clone()),
                    _ => None,
                };
                let (env2, label) = (env.clone(), label.to_string());
                let cb = move || {
                    let r = match msg {
                        Some(m) => task.cancel_with(m),
                        None => task.cancel(),
                    };
                    env2.log(&label, "cancel_soon", py_bool(r));
                };
                let lp = tulip::get_running_loop()?;
                match env.ticks(&op[4]) {
                    None => drop(lp.call_soon(cb)?),
                    Some(d) => drop(lp.call_later(d, cb)?),
                }
            }
            "uncancel" => match op.get(2).map_or(Some(me()), |t| env.task_ref(t.str())) {
                Some(t) => env.log(label, kind, t.uncancel()),
                None => env.log(label, kind, "missing"),
            },
            "cancelling" => match op.get(2).map_or(Some(me()), |t| env.task_ref(t.str())) {
                Some(t) => env.log(label, kind, t.cancelling()),
                None => env.log(label, kind, "missing"),
            },
            "raise" => {
                let x = op[2].str();
                env.log(label, kind, x);
                return Err(Error::msg(format!("E({x})")));
            }
            "try" => match run_ops(env.clone(), op[2].clone()).await {
                Ok(()) => env.log(label, kind, "ok"),
                Err(e) => env.log(label, kind, format!("caught {}", fmt_err(&e))),
            },
            "await" => {
                let t = env.task(op[2].str()).expect("await of a later task");
                logged(&env, label, kind, t, |v| v.clone()).await?;
            }
            "gather" => {
                // Made one by one as gather takes them, as asyncio's gather
                // makes a task of each coroutine argument in turn.
                let g = tulip::gather(op[2].arr().iter().map(|c| child(&env, c)));
                if op[3].truthy() {
                    let f = |v: &Vec<Result<String>>| {
                        let v: Vec<String> = v.iter().map(fmt_res).collect();
                        format!("[{}]", v.join(","))
                    };
                    logged(&env, label, kind, g.return_exceptions(), f).await?;
                } else {
                    let f = |v: &Vec<String>| format!("[{}]", v.join(","));
                    logged(&env, label, kind, g, f).await?;
                }
            }
            "shield" => {
                let c = child(&env, &op[2]);
                logged(&env, label, kind, tulip::shield(c), |v| v.clone()).await?;
            }
            "wait_for" => {
                let t = env.ticks(&op[3]);
                match &op[2] {
                    J::Str(name) => {
                        let task = env.task(name).expect("wait_for of a later task");
                        logged(&env, label, kind, tulip::wait_for(task, t), |v| v.clone()).await?;
                    }
                    J::Arr(c) => {
                        // asyncio's wait_for awaits a coroutine in the caller's task.
                        let body = run_body(env.clone(), c[0].str().into(), c[1].clone());
                        logged(&env, label, kind, tulip::wait_for(body, t), |v| v.clone()).await?;
                    }
                    other => panic!("bad child {other:?}"),
                }
            }
            "wait" => {
                let children: Vec<Child<String>> =
                    op[2].arr().iter().map(|c| child(&env, c)).collect();
                let mode = match op[3].str() {
                    "first_completed" => ReturnWhen::FirstCompleted,
                    "first_exception" => ReturnWhen::FirstException,
                    _ => ReturnWhen::AllCompleted,
                };
                let w = {
                    let children = children.clone();
                    let t = env.ticks(&op[4]);
                    async move {
                        tulip::wait(children.clone(), t, mode).await?;
                        Ok(children
                            .iter()
                            .map(|c| if c.done() { 'D' } else { 'P' })
                            .collect::<String>())
                    }
                };
                logged(&env, label, kind, w, |v| v.clone()).await?;
            }
            "as_completed" => {
                let children: Vec<Child<String>> =
                    op[2].arr().iter().map(|c| child(&env, c)).collect();
                let t = env.ticks(&op[3]);
                let body = async move {
                    let mut out = Vec::new();
                    for f in tulip::as_completed(children, t) {
                        // The child's error, a timeout, or a cancel of ours.
                        out.push(fmt_res(&f.await));
                    }
                    Ok(format!("[{}]", out.join(",")))
                };
                logged(&env, label, kind, body, |v| v.clone()).await?;
            }
            "timeout" => {
                let cm = tulip::timeout(env.ticks(&op[2]));
                let mut scopes = (*env.scopes).clone();
                scopes.push(cm.clone());
                let inner = Env {
                    scopes: Rc::new(scopes),
                    ..env.clone()
                };
                let body = {
                    let cm = cm.clone();
                    let ops = op[3].clone();
                    async move {
                        cm.clone().run(run_ops(inner, ops)).await?;
                        Ok(format!("ok expired={}", py_bool(cm.expired())))
                    }
                };
                logged(&env, label, kind, body, |v| v.clone()).await?;
            }
            "reschedule" => {
                let cm = env.scopes.last().expect("reschedule inside a timeout");
                let when = env
                    .ticks(&op[2])
                    .map(|d| tulip::get_running_loop().unwrap().time() + d);
                cm.reschedule(when)?;
                env.log(label, kind, "ok");
            }
            "expired" => {
                let cm = env.scopes.last().expect("expired inside a timeout");
                env.log(label, kind, py_bool(cm.expired()));
            }
            "taskgroup" => {
                let (children, ops) = (op[2].clone(), op[3].clone());
                let env2 = env.clone();
                let body = TaskGroup::run(move |tg| async move {
                    for c in children.arr() {
                        let c = c.arr();
                        // The group keeps it; the handle is not needed.
                        let _child: Task<String> = tg.create_task(run_body(
                            env2.clone(),
                            c[0].str().into(),
                            c[1].clone(),
                        ))?;
                    }
                    run_ops(env2, ops).await?;
                    Ok("ok".to_string())
                });
                logged(&env, label, kind, body, |v| v.clone()).await?;
            }
            other => panic!("unknown op {other}"),
        }
        Ok(())
    })
}

/// Runs one program on a new loop; returns its trace.
fn run_program(prog: &J, tick: f64) -> Vec<String> {
    let env = Env {
        trace: Rc::new(RefCell::new(Vec::new())),
        tasks: Rc::new(RefCell::new(HashMap::new())),
        main: Rc::new(RefCell::new(None)),
        scopes: Rc::new(Vec::new()),
        tick,
    };
    let trace = env.trace.clone();
    let prog = prog.clone();
    let r = tulip::run(async move {
        let lp = tulip::get_running_loop()?;
        *env.main.borrow_mut() = tulip::current_task();
        // "Task exception was never retrieved" and the like are not traced.
        lp.set_exception_handler(Some(|_: &tulip::EventLoop, _: &tulip::ExceptionContext| {}));
        if prog.get("eager").truthy() {
            lp.set_task_factory(TaskFactory::Eager);
        }
        // Created last to first: a task refers only to tasks after it,
        // which exist then even when it starts eagerly.
        for t in prog.get("tasks").arr().iter().rev() {
            let t = t.arr();
            let name = t[0].str().to_string();
            let task = lp.create_task(run_body(env.clone(), name.clone(), t[1].clone()))?;
            env.tasks.borrow_mut().insert(name, task);
        }
        let _ = run_body(env.clone(), "main".into(), prog.get("main").clone()).await;
        let me = tulip::current_task().expect("main is a task");
        // Waits for every task left; a cancel of main pending from its own
        // ops is taken first (see interp.py).
        if let Err(e) = tulip::sleep(0.0).await {
            env.trace
                .borrow_mut()
                .push(format!("drain raise {}", fmt_err(&e)));
        }
        loop {
            let mut others: Vec<_> = tulip::all_tasks()
                .into_iter()
                .filter(|t| !t.ptr_eq(&me) && !t.done())
                .collect();
            if others.is_empty() {
                break;
            }
            // In creation order, as the Python side sorts them.
            others.sort_by_key(|t| t.id());
            for t in others {
                if t.done() {
                    continue;
                }
                if let Err(e) = t.wait_done().await {
                    env.trace
                        .borrow_mut()
                        .push(format!("drain raise {}", fmt_err(&e)));
                }
            }
        }
        for t in prog.get("tasks").arr() {
            let name = t.arr()[0].str();
            let r = env.task(name).unwrap().result();
            env.trace
                .borrow_mut()
                .push(format!("final {name} {}", fmt_res(&r)));
        }
        Ok(())
    });
    let mut trace = trace.take();
    trace.push(match r {
        Ok(()) => "run ok".into(),
        Err(e) => format!("run raise {}", fmt_err(&e)),
    });
    trace
}

/// Runs `progs` on `jobs` threads (one loop each); traces in input order.
fn run_all(progs: Vec<J>, tick: f64, jobs: usize) -> Vec<Vec<String>> {
    let progs = std::sync::Arc::new(progs);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let (progs, next) = (progs.clone(), next.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= progs.len() {
                        return out;
                    }
                    out.push((i, run_program(&progs[i], tick)));
                }
            })
        })
        .collect();
    let mut all: Vec<(usize, Vec<String>)> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a program panicked"))
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// `Cancelled(msg)` -> `Cancelled`.
fn strip_cancel_messages(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("Cancelled(") {
        out.push_str(&rest[..i + "Cancelled".len()]);
        rest = &rest[i + "Cancelled(".len()..];
        rest = rest.find(')').map_or("", |j| &rest[j + 1..]);
    }
    out.push_str(rest);
    out
}

/// `interp.lines_match`: equal, except that a bare `Cancelled` from asyncio
/// matches a `Cancelled(msg)` from tulip. CPython hands a task's cancel
/// message only to the first retrieval of its CancelledError (the task
/// itself is cancelled with no message), and gather's return_exceptions
/// results never carry it; tulip keeps the message every time (see
/// DEVELOPERS.md, "Differential fuzzing").
fn lines_match(asyncio: &str, tulip: &str) -> bool {
    asyncio == tulip
        || (asyncio.contains("Cancelled")
            && strip_cancel_messages(asyncio) == strip_cancel_messages(tulip)
            && asyncio.matches("Cancelled(").count() <= tulip.matches("Cancelled(").count())
}

/// What `scripts/difffuzz/fuzz.py` runs: programs (JSON lines) from
/// `$DIFFFUZZ_IN`, one `{"trace": [...]}` line each to `$DIFFFUZZ_OUT`.
#[test]
#[ignore = "the fuzzer's driver: run by scripts/difffuzz/fuzz.py"]
fn difffuzz_driver() {
    let input = std::env::var("DIFFFUZZ_IN").expect("DIFFFUZZ_IN");
    let output = std::env::var("DIFFFUZZ_OUT").expect("DIFFFUZZ_OUT");
    let tick = std::env::var("DIFFFUZZ_TICK").map_or(0.01, |t| t.parse().unwrap());
    let jobs = std::env::var("DIFFFUZZ_JOBS").map_or(4, |t| t.parse().unwrap());
    let progs: Vec<J> = std::fs::read_to_string(input)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(J::parse)
        .collect();
    let mut out = String::new();
    for trace in run_all(progs, tick, jobs) {
        let lines: Vec<String> = trace.iter().map(|l| json_str(l)).collect();
        out.push_str(&format!("{{\"trace\": [{}]}}\n", lines.join(", ")));
    }
    std::fs::write(output, out).unwrap();
}

// conformance: C1
// conformance: C2
// conformance: C3
// conformance: C6
// conformance: K1
// conformance: K2
// conformance: K3
// conformance: K4
// conformance: K5
// conformance: K6
// conformance: K7
/// Every program of the corpus gives the trace CPython 3.12's asyncio gave.
#[test]
fn corpus_replays_asyncio_traces() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/difffuzz");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "the corpus is in {}", dir.display());
    let cases: Vec<(J, Vec<String>)> = names
        .iter()
        .map(|p| {
            let j = J::parse(&std::fs::read_to_string(p).unwrap());
            let want = j
                .get("trace")
                .arr()
                .iter()
                .map(|l| l.str().into())
                .collect();
            (j.get("program").clone(), want)
        })
        .collect();
    let got = run_all(cases.iter().map(|(p, _)| p.clone()).collect(), 0.05, 8);
    let mut failures = Vec::new();
    for ((name, (_, want)), got) in names.iter().zip(&cases).zip(&got) {
        let same = |(a, b): &(&String, &String)| lines_match(a, b);
        if want.len() != got.len() || !want.iter().zip(got).all(|p| same(&p)) {
            let i = want.iter().zip(got).take_while(same).count();
            failures.push(format!(
                "{}: line {i}: asyncio {:?}, tulip {:?}",
                name.display(),
                want.get(i),
                got.get(i)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
