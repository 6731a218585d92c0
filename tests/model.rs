//! Model-based randomized tests: random operation sequences drive a tulip
//! component, and a small model of what asyncio does (written from
//! `Lib/asyncio/base_events.py`, `streams.py`, `queues.py`, `locks.py`)
//! checks it after every step. Fixed seeds, so every run is the same;
//! time is never waited on: timers are either long past (due at once) or
//! far in the future (never due), so only ordering matters.
//!
//! The calls that wake tasks are made from a callback on the running loop:
//! a wake off the running loop takes the thread-safe path and runs one
//! iteration late (a documented deviation, ARCHITECTURE.md chapter 1).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::rc::Rc;

use common::Rng;
use tulip::{BaseTransport, Error, EventLoop, ExtraInfo, Handle, ReadTransport, StreamReader};

// ===== timers (L2, T1, T2) =====

/// When a timer is due: long past (due at the next iteration) or far in
/// the future (never due in the test). A few values of each, so that many
/// timers tie.
#[derive(Clone, Copy, Debug)]
enum When {
    Past(u8),
    Future(u8),
}

/// What a callback does when it runs.
#[derive(Clone, Debug)]
enum Act {
    /// Cancels the callback or timer with this id (a no-op if there is none yet).
    Cancel(usize),
    /// `call_at` a new timer.
    Timer(Rc<Spec>),
    /// `call_soon` a new callback.
    Soon(Rc<Spec>),
}

/// A callback: its id (what it logs when it runs) and what it then does.
#[derive(Debug)]
struct Spec {
    id: usize,
    when: When,
    acts: Vec<Act>,
}

/// Makes random specs, numbering them in the order they are made.
struct Gen {
    rng: Rng,
    next_id: usize,
}

impl Gen {
    fn when(&mut self) -> When {
        let k = self.rng.below(4) as u8;
        if self.rng.below(3) == 0 {
            When::Future(k)
        } else {
            When::Past(k)
        }
    }

    fn spec(&mut self, depth: u32) -> Rc<Spec> {
        let id = self.next_id;
        self.next_id += 1;
        let when = self.when();
        let mut acts = Vec::new();
        if depth > 0 {
            for _ in 0..self.rng.below(4) {
                acts.push(match self.rng.below(5) {
                    0 | 1 => Act::Cancel(self.rng.below(self.next_id as u64 + 4) as usize),
                    2 | 3 => Act::Timer(self.spec(depth - 1)),
                    _ => Act::Soon(self.spec(depth - 1)),
                });
            }
        }
        Rc::new(Spec { id, when, acts })
    }
}

/// The real loop, and what its callbacks log.
struct RealTimers {
    lp: EventLoop,
    past: f64,
    future: f64,
    log: RefCell<Vec<usize>>,
    handles: RefCell<HashMap<usize, Handle>>,
}

impl RealTimers {
    fn when(&self, w: When) -> f64 {
        match w {
            When::Past(k) => self.past + f64::from(k),
            When::Future(k) => self.future + f64::from(k),
        }
    }

    fn run(self: &Rc<Self>, spec: &Rc<Spec>) {
        self.log.borrow_mut().push(spec.id);
        for act in &spec.acts {
            self.act(act);
        }
    }

    fn act(self: &Rc<Self>, act: &Act) {
        match act {
            Act::Cancel(id) => {
                let h = self.handles.borrow().get(id).cloned();
                if let Some(h) = h {
                    h.cancel();
                }
            }
            Act::Timer(spec) => {
                let (me, s) = (self.clone(), spec.clone());
                let h = self
                    .lp
                    .call_at(self.when(spec.when), move || me.run(&s))
                    .unwrap();
                self.handles
                    .borrow_mut()
                    .insert(spec.id, h.handle().clone());
            }
            Act::Soon(spec) => {
                let (me, s) = (self.clone(), spec.clone());
                let h = self.lp.call_soon(move || me.run(&s)).unwrap();
                self.handles.borrow_mut().insert(spec.id, h);
            }
        }
    }
}

/// asyncio's `_run_once`, on ids: `_ready`, `_scheduled` and the
/// cancelled flags.
#[derive(Default)]
struct ModelTimers {
    ready: VecDeque<Rc<Spec>>,
    /// `(when, seq, spec)`; `when` as `(past?, k)`, ordered: past first.
    heap: Vec<((u8, u8), u64, Rc<Spec>)>,
    seq: u64,
    cancelled: HashSet<usize>,
    log: Vec<usize>,
}

impl ModelTimers {
    fn act(&mut self, act: &Act) {
        match act {
            Act::Cancel(id) => {
                self.cancelled.insert(*id);
            }
            Act::Timer(spec) => {
                let key = match spec.when {
                    When::Past(k) => (0, k),
                    When::Future(k) => (1, k),
                };
                self.heap.push((key, self.seq, spec.clone()));
                self.seq += 1;
            }
            Act::Soon(spec) => self.ready.push_back(spec.clone()),
        }
    }

    fn iteration(&mut self, made: &mut HashSet<usize>) {
        // 1. Cancelled timers.
        let count = self
            .heap
            .iter()
            .filter(|e| self.cancelled.contains(&e.2.id))
            .count();
        self.heap.sort_by_key(|e| (e.0, e.1));
        if self.heap.len() > 100 && count as f64 / self.heap.len() as f64 > 0.5 {
            let cancelled = &self.cancelled;
            self.heap.retain(|e| !cancelled.contains(&e.2.id));
        } else {
            while self
                .heap
                .first()
                .is_some_and(|e| self.cancelled.contains(&e.2.id))
            {
                self.heap.remove(0);
            }
        }
        // 4. Due timers, in (when, seq) order.
        let due: Vec<_> = self.heap.iter().filter(|e| e.0 .0 == 0).cloned().collect();
        self.heap.retain(|e| e.0 .0 != 0);
        self.ready.extend(due.into_iter().map(|e| e.2));
        // 5. Exactly what is ready now.
        for _ in 0..self.ready.len() {
            let spec = self.ready.pop_front().unwrap();
            if self.cancelled.contains(&spec.id) {
                continue;
            }
            self.log.push(spec.id);
            for act in &spec.acts {
                self.do_act(act, made);
            }
        }
    }

    fn do_act(&mut self, act: &Act, made: &mut HashSet<usize>) {
        match act {
            // Only ids already made: a cancel must not reach a later one.
            Act::Cancel(id) => {
                if made.contains(id) {
                    self.act(act)
                }
            }
            Act::Timer(s) | Act::Soon(s) => {
                made.insert(s.id);
                self.act(act)
            }
        }
    }
}

/// Random `call_at`/`call_soon`/cancel sequences, from outside and from
/// inside callbacks, against asyncio's `_run_once`: timers run in `(when,
/// seq)` order; one iteration runs exactly what was ready when it began,
/// its due timers after the callbacks already queued; a cancelled handle
/// never runs, even one cancelled by a callback of the same iteration; the
/// heap sheds cancelled timers as asyncio's does (popped from the head, or
/// rebuilt past 100 timers and half cancelled).
// conformance: L2, T1, T2
#[test]
fn random_timer_schedules_match_asyncios_run_once() {
    for seed in 1..=200u64 {
        let lp = EventLoop::new().unwrap();
        let now = lp.time();
        let real = Rc::new(RealTimers {
            lp: lp.clone(),
            past: now - 10_000.0,
            future: now + 10_000.0,
            log: RefCell::new(Vec::new()),
            handles: RefCell::new(HashMap::new()),
        });
        let mut model = ModelTimers::default();
        let mut made = HashSet::new();
        let mut gen = Gen {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            next_id: 0,
        };
        for round in 0..40 {
            // From outside: a few operations, now and then a burst, so
            // that the heap passes 100 timers and the one-pass paths run.
            let n = if gen.rng.below(6) == 0 {
                20 + gen.rng.below(80)
            } else {
                gen.rng.below(6)
            };
            for _ in 0..n {
                let act = match gen.rng.below(6) {
                    0 | 1 => Act::Cancel(gen.rng.below(gen.next_id as u64 + 1) as usize),
                    2..=4 => Act::Timer(gen.spec(2)),
                    _ => Act::Soon(gen.spec(2)),
                };
                real.act(&act);
                model.do_act(&act, &mut made);
            }
            // Now and then, cancel about half of everything made so far,
            // so that the heap gets rebuilt.
            if gen.rng.below(8) == 0 {
                let mut ids: Vec<usize> = made.iter().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    if gen.rng.below(2) == 0 {
                        let act = Act::Cancel(id);
                        real.act(&act);
                        model.do_act(&act, &mut made);
                    }
                }
            }
            // A tick, so that the iteration never waits in poll.
            let tick = Act::Soon(gen.spec(0));
            real.act(&tick);
            model.do_act(&tick, &mut made);

            lp.run_once().unwrap();
            model.iteration(&mut made);
            assert_eq!(
                *real.log.borrow(),
                model.log,
                "seed {seed}, round {round}: callbacks ran in the wrong order"
            );
            assert_eq!(
                lp.scheduled_timer_count(),
                model.heap.len(),
                "seed {seed}, round {round}: timers in the heap"
            );
        }
        real.handles.borrow_mut().clear();
        lp.close().unwrap();
    }
}

// ===== StreamReader (N1, N2) =====

/// A read transport that records pause/resume calls.
#[derive(Default)]
struct FakeRead {
    pauses: Cell<u32>,
    resumes: Cell<u32>,
}

impl BaseTransport for FakeRead {
    fn get_extra_info(&self, _: &str) -> Option<ExtraInfo> {
        None
    }
    fn is_closing(&self) -> bool {
        false
    }
    fn close(&self) {}
}

impl ReadTransport for FakeRead {
    fn is_reading(&self) -> bool {
        self.pauses.get() == self.resumes.get()
    }
    fn pause_reading(&self) {
        self.pauses.set(self.pauses.get() + 1);
    }
    fn resume_reading(&self) {
        self.resumes.set(self.resumes.get() + 1);
    }
}

/// A read call.
#[derive(Clone, Copy, Debug)]
enum ReadOp {
    Read(usize),
    ReadToEof,
    Readline,
    Readexactly(usize),
    Readuntil(&'static [u8]),
    ReaduntilAny(&'static [&'static [u8]]),
}

/// What a read call gave.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Data(Vec<u8>),
    Incomplete(Vec<u8>, Option<usize>),
    Overrun(usize),
    Cancelled,
    Other(String),
}

fn outcome(r: tulip::Result<Vec<u8>>) -> Outcome {
    match r {
        Ok(v) => Outcome::Data(v),
        Err(Error::IncompleteRead { partial, expected }) => {
            Outcome::Incomplete(partial.to_vec(), expected)
        }
        Err(Error::LimitOverrun { consumed, .. }) => Outcome::Overrun(consumed),
        Err(e) if e.is_cancelled() => Outcome::Cancelled,
        Err(e) => Outcome::Other(e.to_string()),
    }
}

/// asyncio's `StreamReader`, on a plain byte vector (`read_to_eof` as
/// tulip documents it: the data stays buffered until EOF).
struct ModelReader {
    limit: usize,
    buf: Vec<u8>,
    eof: bool,
    paused: bool,
    pauses: u32,
    resumes: u32,
}

impl ModelReader {
    fn feed_data(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.buf.extend_from_slice(data);
        if !self.paused && self.buf.len() > 2 * self.limit {
            self.paused = true;
            self.pauses += 1;
        }
    }

    fn maybe_resume(&mut self) {
        if self.paused && self.buf.len() <= self.limit {
            self.paused = false;
            self.resumes += 1;
        }
    }

    /// `_wait_for_data`: resumes a paused transport.
    fn wait(&mut self) -> Option<Outcome> {
        if self.paused {
            self.paused = false;
            self.resumes += 1;
        }
        None
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        self.buf.drain(..n).collect()
    }

    /// Runs `op` until it returns or waits for data (`None`).
    fn step(&mut self, op: ReadOp) -> Option<Outcome> {
        match op {
            ReadOp::Read(0) | ReadOp::Readexactly(0) => Some(Outcome::Data(Vec::new())),
            ReadOp::Read(n) => {
                if self.buf.is_empty() && !self.eof {
                    return self.wait();
                }
                let data = self.take(n.min(self.buf.len()));
                self.maybe_resume();
                Some(Outcome::Data(data))
            }
            ReadOp::ReadToEof => {
                if !self.eof {
                    return self.wait();
                }
                let data = self.take(self.buf.len());
                self.maybe_resume();
                Some(Outcome::Data(data))
            }
            ReadOp::Readexactly(n) => {
                if self.buf.len() >= n {
                    let data = self.take(n);
                    self.maybe_resume();
                    Some(Outcome::Data(data))
                } else if self.eof {
                    let data = self.take(self.buf.len());
                    Some(Outcome::Incomplete(data, Some(n)))
                } else {
                    self.wait()
                }
            }
            ReadOp::Readuntil(sep) => self.readuntil(&[sep]),
            ReadOp::ReaduntilAny(seps) => self.readuntil(seps),
            ReadOp::Readline => match self.readuntil(&[b"\n"])? {
                Outcome::Incomplete(partial, _) => Some(Outcome::Data(partial)),
                Outcome::Overrun(consumed) => {
                    if self.buf.get(consumed) == Some(&b'\n') {
                        self.buf.drain(..consumed + 1);
                    } else {
                        self.buf.clear();
                    }
                    self.maybe_resume();
                    Some(Outcome::Overrun(consumed))
                }
                other => Some(other),
            },
        }
    }

    /// asyncio 3.13's `readuntil`, with one separator or several (the
    /// shortest chunk wins; on a tie, the shorter separator).
    fn readuntil(&mut self, seps: &[&[u8]]) -> Option<Outcome> {
        let mut seps = seps.to_vec();
        seps.sort_by_key(|s| s.len());
        let (min_seplen, max_seplen) = (seps[0].len(), seps[seps.len() - 1].len());
        let buflen = self.buf.len();
        if buflen >= min_seplen {
            let mut best: Option<(usize, usize)> = None;
            for sep in &seps {
                if let Some(i) = self.buf.windows(sep.len()).position(|w| w == *sep) {
                    if best.is_none_or(|(_, end)| i + sep.len() < end) {
                        best = Some((i, i + sep.len()));
                    }
                }
            }
            match best {
                Some((start, end)) => {
                    if start > self.limit {
                        return Some(Outcome::Overrun(start));
                    }
                    let data = self.take(end);
                    self.maybe_resume();
                    return Some(Outcome::Data(data));
                }
                None => {
                    let offset = (buflen + 1).saturating_sub(max_seplen);
                    if offset > self.limit {
                        return Some(Outcome::Overrun(offset));
                    }
                }
            }
        }
        if self.eof {
            let data = self.take(buflen);
            return Some(Outcome::Incomplete(data, None));
        }
        self.wait()
    }
}

fn read_op(
    reader: &StreamReader,
    op: ReadOp,
) -> Pin<Box<dyn std::future::Future<Output = tulip::Result<Vec<u8>>>>> {
    let r = reader.clone();
    match op {
        ReadOp::Read(n) => Box::pin(async move { r.read(n).await }),
        ReadOp::ReadToEof => Box::pin(async move { r.read_to_eof().await }),
        ReadOp::Readline => Box::pin(async move { r.readline().await }),
        ReadOp::Readexactly(n) => Box::pin(async move { r.readexactly(n).await }),
        ReadOp::Readuntil(sep) => Box::pin(async move { r.readuntil(sep).await }),
        ReadOp::ReaduntilAny(seps) => Box::pin(async move { r.readuntil_any(seps).await }),
    }
}

/// Random chunks and EOF fed while one task makes random reads, against
/// asyncio's `StreamReader`: what every call returns or raises
/// (IncompleteRead with its partial, LimitOverrun with its `consumed`),
/// what stays buffered, `at_eof`, and when the transport is paused and
/// resumed. A small limit, so that the limit paths run.
// conformance: N1, N2
#[test]
fn random_reads_and_feeds_match_asyncios_stream_reader() {
    const SEPS: [&[u8]; 4] = [b"\n", b"ab", b"aba", b"xyz"];
    const SEP_SETS: [&[&[u8]]; 3] = [&[b"\n", b"ab"], &[b"xyz", b"y"], &[b"aba", b"ba", b"\n"]];
    const ALPHABET: &[u8] = b"ab\nxyz";
    common::run_bounded(60.0, async {
        let lp = tulip::get_running_loop()?;
        for seed in 1..=200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let limit = 1 + rng.below(8) as usize;
            let reader = StreamReader::with_loop(&lp, limit);
            let transport = Rc::new(FakeRead::default());
            reader.set_transport(transport.clone());
            let mut m = ModelReader {
                limit,
                buf: Vec::new(),
                eof: false,
                paused: false,
                pauses: 0,
                resumes: 0,
            };
            let mut trace = Vec::new();
            for _ in 0..60 {
                let op = match rng.below(6) {
                    5 => ReadOp::ReaduntilAny(SEP_SETS[rng.below(3) as usize]),
                    0 => ReadOp::Read(rng.below(12) as usize),
                    1 => ReadOp::ReadToEof,
                    2 => ReadOp::Readline,
                    3 => ReadOp::Readexactly(rng.below(20) as usize),
                    _ => ReadOp::Readuntil(SEPS[rng.below(4) as usize]),
                };
                trace.push(format!("{op:?}"));
                let task = lp.create_task(read_op(&reader, op))?;
                common::settle().await?;
                let mut expect = m.step(op);
                while expect.is_none() {
                    // Pending: feed, end, or cancel it.
                    let r = rng.below(12);
                    if r == 0 {
                        trace.push("cancel".into());
                        task.cancel();
                        expect = Some(Outcome::Cancelled);
                    } else if r == 1 && !m.eof {
                        trace.push("eof".into());
                        reader.feed_eof();
                        m.eof = true;
                        expect = m.step(op);
                    } else if !m.eof {
                        let chunk: Vec<u8> = (0..rng.below(6))
                            .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                            .collect();
                        trace.push(format!("feed {:?}", String::from_utf8_lossy(&chunk)));
                        reader.feed_data(&chunk);
                        let woken = !chunk.is_empty();
                        m.feed_data(&chunk);
                        if woken {
                            expect = m.step(op);
                        }
                    }
                    common::settle().await?;
                }
                let expect = expect.unwrap();
                assert!(task.done(), "seed {seed}: {trace:?}: task not done");
                let got = outcome(task.result());
                assert_eq!(got, expect, "seed {seed}: {trace:?}");
                let state = (
                    reader.buffered(),
                    reader.at_eof(),
                    reader.is_paused(),
                    transport.pauses.get(),
                    transport.resumes.get(),
                );
                let want = (
                    m.buf.len(),
                    m.eof && m.buf.is_empty(),
                    m.paused,
                    m.pauses,
                    m.resumes,
                );
                assert_eq!(
                    state, want,
                    "seed {seed}: {trace:?}: (buffered, at_eof, paused, pauses, resumes)"
                );
                // Between reads, more data may come.
                if !m.eof && rng.below(2) == 0 {
                    let chunk: Vec<u8> = (0..rng.below(10))
                        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize])
                        .collect();
                    trace.push(format!("feed {:?}", String::from_utf8_lossy(&chunk)));
                    reader.feed_data(&chunk);
                    m.feed_data(&chunk);
                }
                if m.eof && m.buf.is_empty() {
                    break;
                }
            }
        }
        Ok(())
    });
}

// ===== Queue, LifoQueue, PriorityQueue (Q1, Q2, Q3) =====

/// An item: `(priority, serial)`, so that every item is distinct and a
/// PriorityQueue's order is total.
type Item = (u8, u32);

/// What a queue call gave, as asyncio names it.
type QRes = std::result::Result<Option<Item>, &'static str>;

fn qres<T>(r: tulip::Result<T>, f: impl FnOnce(T) -> Option<Item>) -> QRes {
    match r {
        Ok(v) => Ok(f(v)),
        Err(e) if e.is_cancelled() => Err("CancelledError"),
        Err(Error::QueueShutDown) => Err("QueueShutDown"),
        Err(Error::QueueFull) => Err("QueueFull"),
        Err(Error::QueueEmpty) => Err("QueueEmpty"),
        Err(Error::InvalidArgument(_)) => Err("ValueError"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum QKind {
    Fifo,
    Lifo,
    Priority,
}

/// The real queue, whichever kind.
enum RealQ {
    Fifo(tulip::Queue<Item>),
    Lifo(tulip::LifoQueue<Item>),
    Priority(tulip::PriorityQueue<Item>),
}

macro_rules! each_q {
    ($q:expr, $v:ident => $e:expr) => {
        match $q {
            RealQ::Fifo($v) => $e,
            RealQ::Lifo($v) => $e,
            RealQ::Priority($v) => $e,
        }
    };
}

type QTask = tulip::Task<Option<Item>>;

impl RealQ {
    fn spawn(&self, lp: &EventLoop, op: QOp) -> QTask {
        each_q!(self, q => {
            let q = q.clone();
            match op {
                QOp::Put(x) => lp.create_task(async move { q.put(x).await.map(|_| None) }),
                QOp::Get => lp.create_task(async move { q.get().await.map(Some) }),
                QOp::Join => lp.create_task(async move { q.join().await.map(|_| None) }),
            }
        })
        .unwrap()
    }
    fn put_nowait(&self, x: Item) -> QRes {
        qres(each_q!(self, q => q.put_nowait(x)), |_| None)
    }
    fn get_nowait(&self) -> QRes {
        qres(each_q!(self, q => q.get_nowait()), Some)
    }
    fn task_done(&self) -> QRes {
        qres(each_q!(self, q => q.task_done()), |_| None)
    }
    fn shutdown(&self, immediate: bool) {
        each_q!(self, q => q.shutdown(immediate))
    }
    /// `(qsize, full, unfinished_tasks, is_shutdown)`.
    fn state(&self) -> (usize, bool, usize, bool) {
        each_q!(self, q => (q.qsize(), q.full(), q.unfinished_tasks(), q.is_shutdown()))
    }
}

/// A call the test makes on the queue (or on one of its tasks).
#[derive(Clone, Copy, Debug)]
enum QCall {
    Spawn(QOp),
    PutNowait(Item),
    GetNowait,
    TaskDone,
    Cancel(usize),
    Shutdown(bool),
}

/// A queue call made in a task.
#[derive(Clone, Copy, Debug)]
enum QOp {
    Put(Item),
    Get,
    Join,
}

/// A model future: pending, or done (cancelled or not), and the task that
/// awaits it.
struct MFut {
    done: bool,
    cancelled: bool,
    task: Option<usize>,
}

/// Where a model task is.
#[derive(Clone, Debug, PartialEq)]
enum MState {
    /// In the ready queue: not started, or woken from the await of `fut`.
    Scheduled(Option<usize>),
    /// Awaiting `fut`.
    Waiting(usize),
    Done(QRes),
}

struct MTask {
    op: QOp,
    state: MState,
    must_cancel: bool,
}

/// asyncio's `Queue` (3.13, with `shutdown`), its `Event`, and the
/// `Task` machinery they need (`__step`, `__wakeup`, `cancel`), on ids.
struct ModelQ {
    kind: QKind,
    maxsize: usize,
    items: Vec<Item>,
    getters: VecDeque<usize>,
    putters: VecDeque<usize>,
    unfinished: usize,
    finished: bool,
    finished_waiters: Vec<usize>,
    shutdown: bool,
    futs: Vec<MFut>,
    tasks: Vec<MTask>,
    ready: VecDeque<usize>,
}

impl ModelQ {
    fn full(&self) -> bool {
        self.maxsize > 0 && self.items.len() >= self.maxsize
    }

    fn new_fut(&mut self, task: usize) -> usize {
        self.futs.push(MFut {
            done: false,
            cancelled: false,
            task: Some(task),
        });
        self.futs.len() - 1
    }

    /// `set_result` or `cancel` of a pending future: its task's
    /// `__wakeup` is scheduled.
    fn complete(&mut self, f: usize, cancelled: bool) -> bool {
        if self.futs[f].done {
            return false;
        }
        self.futs[f].done = true;
        self.futs[f].cancelled = cancelled;
        if let Some(t) = self.futs[f].task {
            if self.tasks[t].state == MState::Waiting(f) {
                self.tasks[t].state = MState::Scheduled(Some(f));
                self.ready.push_back(t);
            }
        }
        true
    }

    fn wakeup_next(&mut self, getters: bool) {
        loop {
            let next = if getters {
                self.getters.pop_front()
            } else {
                self.putters.pop_front()
            };
            match next {
                Some(f) if !self.futs[f].done => {
                    self.complete(f, false);
                    return;
                }
                Some(_) => continue,
                None => return,
            }
        }
    }

    fn event_set(&mut self) {
        if !self.finished {
            self.finished = true;
            for f in self.finished_waiters.clone() {
                self.complete(f, false);
            }
        }
    }

    fn put_nowait(&mut self, x: Item) -> QRes {
        if self.shutdown {
            return Err("QueueShutDown");
        }
        if self.full() {
            return Err("QueueFull");
        }
        self.items.push(x);
        self.unfinished += 1;
        self.finished = false;
        self.wakeup_next(true);
        Ok(None)
    }

    fn get_nowait(&mut self) -> QRes {
        if self.items.is_empty() {
            return Err(if self.shutdown {
                "QueueShutDown"
            } else {
                "QueueEmpty"
            });
        }
        let i = match self.kind {
            QKind::Fifo => 0,
            QKind::Lifo => self.items.len() - 1,
            QKind::Priority => (0..self.items.len())
                .min_by_key(|&i| self.items[i])
                .unwrap(),
        };
        let x = self.items.remove(i);
        self.wakeup_next(false);
        Ok(Some(x))
    }

    fn task_done(&mut self) -> QRes {
        if self.unfinished == 0 {
            return Err("ValueError");
        }
        self.unfinished -= 1;
        if self.unfinished == 0 {
            self.event_set();
        }
        Ok(None)
    }

    fn shutdown(&mut self, immediate: bool) {
        self.shutdown = true;
        if immediate {
            while !self.items.is_empty() {
                self.items.remove(0);
                self.unfinished = self.unfinished.saturating_sub(1);
            }
            if self.unfinished == 0 {
                self.event_set();
            }
        }
        for f in std::mem::take(&mut self.getters) {
            self.complete(f, false);
        }
        for f in std::mem::take(&mut self.putters) {
            self.complete(f, false);
        }
    }

    fn spawn(&mut self, op: QOp) -> usize {
        self.tasks.push(MTask {
            op,
            state: MState::Scheduled(None),
            must_cancel: false,
        });
        let t = self.tasks.len() - 1;
        self.ready.push_back(t);
        t
    }

    /// `Task.cancel()`.
    fn cancel(&mut self, t: usize) -> bool {
        match self.tasks[t].state.clone() {
            MState::Done(_) => false,
            MState::Waiting(f) if self.complete(f, true) => true,
            _ => {
                self.tasks[t].must_cancel = true;
                true
            }
        }
    }

    /// Runs the ready tasks until none is left.
    fn settle(&mut self) {
        while let Some(t) = self.ready.pop_front() {
            self.step(t);
        }
    }

    /// `Task.__step`: runs the task's body to its next await.
    fn step(&mut self, t: usize) {
        let MState::Scheduled(resumed) = self.tasks[t].state.clone() else {
            return;
        };
        let throw = std::mem::replace(&mut self.tasks[t].must_cancel, false);
        let op = self.tasks[t].op;
        let res = match resumed {
            None if throw => Some(Err("CancelledError")),
            None => self.body(t, op),
            Some(f) if throw || self.futs[f].cancelled => {
                // The `except:` (or `finally:`) around the await.
                match op {
                    QOp::Put(_) => {
                        self.futs[f].done = true;
                        self.putters.retain(|&p| p != f);
                        if !self.full() && !self.futs[f].cancelled {
                            self.wakeup_next(false);
                        }
                    }
                    QOp::Get => {
                        self.futs[f].done = true;
                        self.getters.retain(|&g| g != f);
                        if !self.items.is_empty() && !self.futs[f].cancelled {
                            self.wakeup_next(true);
                        }
                    }
                    QOp::Join => self.finished_waiters.retain(|&w| w != f),
                }
                Some(Err("CancelledError"))
            }
            Some(f) => match op {
                QOp::Join => {
                    self.finished_waiters.retain(|&w| w != f);
                    Some(Ok(None))
                }
                _ => self.body(t, op),
            },
        };
        self.tasks[t].state = match res {
            Some(r) => MState::Done(r),
            None => self.tasks[t].state.clone(),
        };
    }

    /// The body from its loop head: `Some` when it returns, `None` when
    /// it awaits (the task's state is then `Waiting`).
    fn body(&mut self, t: usize, op: QOp) -> Option<QRes> {
        match op {
            QOp::Put(x) => {
                if self.full() {
                    if self.shutdown {
                        return Some(Err("QueueShutDown"));
                    }
                    let f = self.new_fut(t);
                    self.putters.push_back(f);
                    self.tasks[t].state = MState::Waiting(f);
                    return None;
                }
                Some(self.put_nowait(x))
            }
            QOp::Get => {
                if self.items.is_empty() {
                    if self.shutdown {
                        return Some(Err("QueueShutDown"));
                    }
                    let f = self.new_fut(t);
                    self.getters.push_back(f);
                    self.tasks[t].state = MState::Waiting(f);
                    return None;
                }
                Some(self.get_nowait())
            }
            QOp::Join => {
                if self.unfinished > 0 && !self.finished {
                    let f = self.new_fut(t);
                    self.finished_waiters.push(f);
                    self.tasks[t].state = MState::Waiting(f);
                    return None;
                }
                Some(Ok(None))
            }
        }
    }
}

/// Runs the loop until nothing is ready (bounded).
fn settle_loop(lp: &EventLoop) {
    let mut n = 0;
    while lp.ready_count() > 0 {
        assert!(n < 1000, "the loop never settles");
        common::iterate(lp);
        n += 1;
    }
}

/// Random put/get (waiting and not), task_done, join, cancels of waiting
/// and of just-woken putters and getters, and shutdown, on the three
/// kinds of queue, against asyncio's `Queue`: what every call returns or
/// raises, which item each get takes, `qsize`/`full`/unfinished tasks
/// after every step. Several calls are sometimes made with no loop
/// iteration between them, so that a waiter is woken and cancelled before
/// it runs.
// conformance: Q1, Q2, Q3
#[test]
fn random_queue_operations_match_asyncios_queue() {
    for seed in 1..=500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let kind = [QKind::Fifo, QKind::Lifo, QKind::Priority][(seed % 3) as usize];
        let maxsize = rng.below(4) as usize;
        let lp = EventLoop::new().unwrap();
        let real = match kind {
            QKind::Fifo => RealQ::Fifo(tulip::Queue::new(maxsize)),
            QKind::Lifo => RealQ::Lifo(tulip::LifoQueue::new(maxsize)),
            QKind::Priority => RealQ::Priority(tulip::PriorityQueue::new(maxsize)),
        };
        let mut m = ModelQ {
            kind,
            maxsize,
            items: Vec::new(),
            getters: VecDeque::new(),
            putters: VecDeque::new(),
            unfinished: 0,
            finished: true,
            finished_waiters: Vec::new(),
            shutdown: false,
            futs: Vec::new(),
            tasks: Vec::new(),
            ready: VecDeque::new(),
        };
        let real = Rc::new(real);
        let tasks: Rc<RefCell<Vec<QTask>>> = Rc::default();
        let mut serial = 0u32;
        let mut ntasks = 0;
        let mut trace: Vec<String> = Vec::new();
        for _ in 0..60 {
            // A batch of one to three calls, made by one callback on the
            // running loop (a task woken off the running loop would take
            // the thread-safe path, one iteration late: ARCHITECTURE.md),
            // then the loop runs until nothing is ready.
            let mut batch = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let r = rng.below(100);
                serial += 1;
                let x = (rng.below(3) as u8, serial);
                batch.push(if r < 20 {
                    QCall::Spawn(QOp::Put(x))
                } else if r < 40 {
                    QCall::Spawn(QOp::Get)
                } else if r < 45 {
                    QCall::Spawn(QOp::Join)
                } else if r < 55 {
                    QCall::PutNowait(x)
                } else if r < 65 {
                    QCall::GetNowait
                } else if r < 75 {
                    QCall::TaskDone
                } else if r < 97 {
                    if ntasks == 0 {
                        continue;
                    }
                    // Mostly one of the latest tasks, which may still wait.
                    let back = if rng.below(4) == 0 {
                        ntasks
                    } else {
                        ntasks.min(3)
                    };
                    QCall::Cancel(ntasks - 1 - rng.below(back as u64) as usize)
                } else {
                    QCall::Shutdown(rng.below(2) == 0)
                });
                if let QCall::Spawn(_) = batch[batch.len() - 1] {
                    ntasks += 1;
                }
            }
            trace.push(format!("{batch:?}"));
            let got: Rc<RefCell<Vec<QRes>>> = Rc::default();
            {
                let (real, tasks, got, lp1) =
                    (real.clone(), tasks.clone(), got.clone(), lp.clone());
                let batch = batch.clone();
                common::soon(&lp, move || {
                    for call in batch {
                        let r = match call {
                            QCall::Spawn(op) => {
                                tasks.borrow_mut().push(real.spawn(&lp1, op));
                                continue;
                            }
                            QCall::PutNowait(x) => real.put_nowait(x),
                            QCall::GetNowait => real.get_nowait(),
                            QCall::TaskDone => real.task_done(),
                            QCall::Cancel(t) => Err(if tasks.borrow()[t].cancel() {
                                "true"
                            } else {
                                "false"
                            }),
                            QCall::Shutdown(immediate) => {
                                real.shutdown(immediate);
                                continue;
                            }
                        };
                        got.borrow_mut().push(r);
                    }
                });
            }
            let mut want = Vec::new();
            for call in &batch {
                want.push(match *call {
                    QCall::Spawn(op) => {
                        m.spawn(op);
                        continue;
                    }
                    QCall::PutNowait(x) => m.put_nowait(x),
                    QCall::GetNowait => m.get_nowait(),
                    QCall::TaskDone => m.task_done(),
                    QCall::Cancel(t) => Err(if m.cancel(t) { "true" } else { "false" }),
                    QCall::Shutdown(immediate) => {
                        m.shutdown(immediate);
                        continue;
                    }
                });
            }
            settle_loop(&lp);
            m.settle();
            assert_eq!(*got.borrow(), want, "seed {seed}: {trace:?}");
            assert_eq!(
                real.state(),
                (m.items.len(), m.full(), m.unfinished, m.shutdown),
                "seed {seed}: {trace:?}: (qsize, full, unfinished, shutdown)"
            );
            let states = |m: &ModelQ| -> (Vec<Option<QRes>>, Vec<Option<QRes>>) {
                let want = m.tasks.iter().map(|t| match &t.state {
                    MState::Done(r) => Some(*r),
                    _ => None,
                });
                let got = tasks
                    .borrow()
                    .iter()
                    .map(|t| t.done().then(|| qres(t.result(), |v| v)))
                    .collect();
                (got, want.collect())
            };
            let (got, want) = states(&m);
            assert_eq!(got, want, "seed {seed}: tasks: {trace:?}");
        }
        for t in tasks.borrow().iter() {
            t.cancel();
        }
        settle_loop(&lp);
        lp.close().unwrap();
    }
}

// ===== Semaphore, BoundedSemaphore (S3) =====

/// A call the test makes on the semaphore or one of its tasks.
#[derive(Clone, Copy, Debug)]
enum SCall {
    /// A task that acquires and keeps the permit (`forget`).
    Acquire,
    Release,
    Cancel(usize),
}

/// asyncio's `Semaphore` (3.12+: FIFO, `_wake_up_next`), with the task
/// machinery it needs, on ids.
struct ModelSem {
    bound: Option<usize>,
    value: usize,
    /// Waiter futures: `(id, done, cancelled)`.
    waiters: VecDeque<usize>,
    futs: Vec<(bool, bool, usize)>,
    /// Per task: its state (`Scheduled(resumed from)`, `Waiting`, `Done`).
    tasks: Vec<(MState, bool)>,
    ready: VecDeque<usize>,
}

impl ModelSem {
    fn locked(&self) -> bool {
        self.value == 0 || self.waiters.iter().any(|&f| !self.futs[f].1)
    }

    fn complete(&mut self, f: usize, cancelled: bool) -> bool {
        if self.futs[f].0 {
            return false;
        }
        self.futs[f].0 = true;
        self.futs[f].1 = cancelled;
        let t = self.futs[f].2;
        if self.tasks[t].0 == MState::Waiting(f) {
            self.tasks[t].0 = MState::Scheduled(Some(f));
            self.ready.push_back(t);
        }
        true
    }

    fn wake_up_next(&mut self) -> bool {
        let next = self.waiters.iter().copied().find(|&f| !self.futs[f].0);
        match next {
            Some(f) => {
                self.value -= 1;
                self.complete(f, false);
                true
            }
            None => false,
        }
    }

    fn release(&mut self) -> bool {
        if self.bound.is_some_and(|b| self.value >= b) {
            return false;
        }
        self.value += 1;
        self.wake_up_next();
        true
    }

    fn cancel(&mut self, t: usize) -> bool {
        match self.tasks[t].0.clone() {
            MState::Done(_) => false,
            MState::Waiting(f) if self.complete(f, true) => true,
            _ => {
                self.tasks[t].1 = true;
                true
            }
        }
    }

    fn spawn(&mut self) {
        self.tasks.push((MState::Scheduled(None), false));
        self.ready.push_back(self.tasks.len() - 1);
    }

    fn settle(&mut self) {
        while let Some(t) = self.ready.pop_front() {
            let MState::Scheduled(resumed) = self.tasks[t].0.clone() else {
                continue;
            };
            let throw = std::mem::replace(&mut self.tasks[t].1, false);
            self.tasks[t].0 = match resumed {
                None if throw => MState::Done(Err("CancelledError")),
                None if !self.locked() => {
                    self.value -= 1;
                    MState::Done(Ok(None))
                }
                None => {
                    self.futs.push((false, false, t));
                    let f = self.futs.len() - 1;
                    self.waiters.push_back(f);
                    MState::Waiting(f)
                }
                Some(f) => {
                    self.waiters.retain(|&w| w != f);
                    let cancelled = throw || self.futs[f].1;
                    if cancelled && self.futs[f].0 && !self.futs[f].1 {
                        self.value += 1; // granted, but not taken
                    }
                    while self.value > 0 {
                        if !self.wake_up_next() {
                            break;
                        }
                    }
                    MState::Done(if cancelled {
                        Err("CancelledError")
                    } else {
                        Ok(None)
                    })
                }
            };
        }
    }
}

/// Random acquires (each in its own task, keeping its permit), releases
/// and cancels of waiting and of just-granted acquirers, on a Semaphore
/// or a BoundedSemaphore, against asyncio's: which acquirer gets a permit
/// and when, `value()` and `locked()` after every step, and which
/// releases a BoundedSemaphore refuses.
// conformance: S3
#[test]
fn random_semaphore_operations_match_asyncios_semaphore() {
    for seed in 1..=500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let initial = rng.below(3) as usize;
        let bounded = seed % 2 == 0;
        let lp = EventLoop::new().unwrap();
        let sem = if bounded {
            (*tulip::BoundedSemaphore::new(initial)).clone()
        } else {
            tulip::Semaphore::new(initial)
        };
        let mut m = ModelSem {
            bound: bounded.then_some(initial),
            value: initial,
            waiters: VecDeque::new(),
            futs: Vec::new(),
            tasks: Vec::new(),
            ready: VecDeque::new(),
        };
        let tasks: Rc<RefCell<Vec<tulip::Task<()>>>> = Rc::default();
        let mut ntasks = 0;
        let mut trace: Vec<String> = Vec::new();
        for _ in 0..60 {
            let mut batch = Vec::new();
            for _ in 0..1 + rng.below(3) {
                batch.push(match rng.below(10) {
                    0..=3 => {
                        ntasks += 1;
                        SCall::Acquire
                    }
                    4..=6 => SCall::Release,
                    _ if ntasks > 0 => {
                        let back = if rng.below(4) == 0 {
                            ntasks
                        } else {
                            ntasks.min(3)
                        };
                        SCall::Cancel(ntasks - 1 - rng.below(back as u64) as usize)
                    }
                    _ => continue,
                });
            }
            trace.push(format!("{batch:?}"));
            let got: Rc<RefCell<Vec<bool>>> = Rc::default();
            {
                let (sem, tasks, got, lp1) = (sem.clone(), tasks.clone(), got.clone(), lp.clone());
                let batch = batch.clone();
                common::soon(&lp, move || {
                    for call in batch {
                        match call {
                            SCall::Acquire => {
                                let sem = sem.clone();
                                let t = lp1.create_task(async move {
                                    sem.acquire().await?.forget();
                                    Ok(())
                                });
                                tasks.borrow_mut().push(t.unwrap());
                            }
                            SCall::Release => got.borrow_mut().push(sem.release().is_ok()),
                            SCall::Cancel(t) => got.borrow_mut().push(tasks.borrow()[t].cancel()),
                        }
                    }
                });
            }
            let mut want = Vec::new();
            for call in &batch {
                match *call {
                    SCall::Acquire => m.spawn(),
                    SCall::Release => want.push(m.release()),
                    SCall::Cancel(t) => want.push(m.cancel(t)),
                }
            }
            settle_loop(&lp);
            m.settle();
            assert_eq!(*got.borrow(), want, "seed {seed}: {trace:?}");
            assert_eq!(
                (sem.value(), sem.locked()),
                (m.value, m.locked()),
                "seed {seed}: {trace:?}: (value, locked)"
            );
            let got: Vec<Option<QRes>> = tasks
                .borrow()
                .iter()
                .map(|t| t.done().then(|| qres(t.result(), |_| None)))
                .collect();
            let want: Vec<Option<QRes>> = m
                .tasks
                .iter()
                .map(|(s, _)| match s {
                    MState::Done(r) => Some(*r),
                    _ => None,
                })
                .collect();
            assert_eq!(got, want, "seed {seed}: tasks: {trace:?}");
        }
        for t in tasks.borrow().iter() {
            t.cancel();
        }
        settle_loop(&lp);
        lp.close().unwrap();
    }
}

// ===== Lock and Condition (S1, S2) =====

/// A call the test makes on the lock, the condition, or one of its tasks.
#[derive(Clone, Copy, Debug)]
enum LCall {
    /// A task that acquires the lock and keeps it (`forget`).
    Acquire,
    /// A task that acquires the lock, then `wait()`s on the condition,
    /// and keeps the lock it re-acquired.
    Wait,
    Release,
    Notify(usize),
    Cancel(usize),
}

/// Where a model task is in its body.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LPc {
    Start,
    /// In `Lock.acquire`, awaiting its waiter.
    Acquire(usize),
    /// In `Condition.wait`, awaiting the notify.
    Notified(usize),
    /// In `Condition.wait`'s re-acquire loop; `true`: an error to re-raise.
    Reacquire(usize, bool),
    Done(QRes),
}

struct LTask {
    wait: bool,
    pc: LPc,
    must_cancel: bool,
    scheduled: bool,
}

/// asyncio's `Lock` and `Condition` (3.13) over it, with the task
/// machinery they need, on ids.
#[derive(Default)]
struct ModelLock {
    locked: bool,
    lock_waiters: VecDeque<usize>,
    cond_waiters: VecDeque<usize>,
    /// `(done, cancelled, task)`.
    futs: Vec<(bool, bool, usize)>,
    tasks: Vec<LTask>,
    ready: VecDeque<usize>,
}

impl ModelLock {
    fn new_fut(&mut self, t: usize) -> usize {
        self.futs.push((false, false, t));
        self.futs.len() - 1
    }

    fn complete(&mut self, f: usize, cancelled: bool) -> bool {
        if self.futs[f].0 {
            return false;
        }
        self.futs[f] = (true, cancelled, self.futs[f].2);
        let t = self.futs[f].2;
        let waits_on_f = matches!(self.tasks[t].pc,
            LPc::Acquire(g) | LPc::Notified(g) | LPc::Reacquire(g, _) if g == f);
        if waits_on_f && !self.tasks[t].scheduled {
            self.tasks[t].scheduled = true;
            self.ready.push_back(t);
        }
        true
    }

    fn wake_up_first(&mut self) {
        if let Some(&f) = self.lock_waiters.front() {
            if !self.futs[f].0 {
                self.complete(f, false);
            }
        }
    }

    fn release(&mut self) -> bool {
        if !self.locked {
            return false;
        }
        self.locked = false;
        self.wake_up_first();
        true
    }

    fn notify(&mut self, n: usize) -> bool {
        if !self.locked {
            return false;
        }
        let due: Vec<usize> = self
            .cond_waiters
            .iter()
            .copied()
            .filter(|&f| !self.futs[f].0)
            .take(n)
            .collect();
        for f in due {
            self.complete(f, false);
        }
        true
    }

    /// `Lock.acquire` up to its await: `None` if it took the lock at once.
    fn acquire(&mut self, t: usize) -> Option<usize> {
        if !self.locked && self.lock_waiters.iter().all(|&f| self.futs[f].1) {
            self.locked = true;
            return None;
        }
        let f = self.new_fut(t);
        self.lock_waiters.push_back(f);
        Some(f)
    }

    /// `Lock.acquire` after its await: true if it took the lock.
    fn acquired(&mut self, f: usize, throw: bool) -> bool {
        self.lock_waiters.retain(|&w| w != f);
        if throw || self.futs[f].1 {
            if !self.locked {
                self.wake_up_first();
            }
            return false;
        }
        self.locked = true;
        true
    }

    /// `Condition.wait` from its start (the lock is held).
    fn start_wait(&mut self, t: usize) -> LPc {
        self.locked = false;
        self.wake_up_first();
        let f = self.new_fut(t);
        self.cond_waiters.push_back(f);
        LPc::Notified(f)
    }

    /// `Condition.wait`'s re-acquire loop, and what follows it.
    fn reacquire(&mut self, t: usize, err: bool) -> LPc {
        match self.acquire(t) {
            Some(f) => LPc::Reacquire(f, err),
            None if err => {
                self.notify_one_unchecked();
                LPc::Done(Err("CancelledError"))
            }
            None => LPc::Done(Ok(None)),
        }
    }

    fn notify_one_unchecked(&mut self) {
        let was = self.locked;
        self.locked = true;
        self.notify(1);
        self.locked = was;
    }

    fn cancel(&mut self, t: usize) -> bool {
        let (scheduled, pc) = (self.tasks[t].scheduled, self.tasks[t].pc);
        match pc {
            LPc::Done(_) => false,
            LPc::Acquire(f) | LPc::Notified(f) | LPc::Reacquire(f, _)
                if !scheduled && self.complete(f, true) =>
            {
                true
            }
            _ => {
                self.tasks[t].must_cancel = true;
                true
            }
        }
    }

    fn spawn(&mut self, wait: bool) {
        self.tasks.push(LTask {
            wait,
            pc: LPc::Start,
            must_cancel: false,
            scheduled: true,
        });
        self.ready.push_back(self.tasks.len() - 1);
    }

    fn settle(&mut self) {
        while let Some(t) = self.ready.pop_front() {
            self.tasks[t].scheduled = false;
            let throw = std::mem::replace(&mut self.tasks[t].must_cancel, false);
            let wait = self.tasks[t].wait;
            let pc = match self.tasks[t].pc {
                LPc::Start if throw => LPc::Done(Err("CancelledError")),
                LPc::Start => match self.acquire(t) {
                    Some(f) => LPc::Acquire(f),
                    None if wait => self.start_wait(t),
                    None => LPc::Done(Ok(None)),
                },
                LPc::Acquire(f) => {
                    if !self.acquired(f, throw) {
                        LPc::Done(Err("CancelledError"))
                    } else if wait {
                        self.start_wait(t)
                    } else {
                        LPc::Done(Ok(None))
                    }
                }
                LPc::Notified(f) => {
                    self.cond_waiters.retain(|&w| w != f);
                    let err = throw || self.futs[f].1;
                    self.reacquire(t, err)
                }
                LPc::Reacquire(f, err) => {
                    if self.acquired(f, throw) {
                        if err {
                            self.notify_one_unchecked();
                            LPc::Done(Err("CancelledError"))
                        } else {
                            LPc::Done(Ok(None))
                        }
                    } else {
                        self.reacquire(t, true)
                    }
                }
                done @ LPc::Done(_) => done,
            };
            self.tasks[t].pc = pc;
        }
    }
}

/// Random acquirers and condition waiters (each in its own task, keeping
/// the lock it gets), releases, notifies, and cancels of tasks waiting
/// for the lock, for a notify, or for the lock again after a notify,
/// and of just-woken ones, against asyncio's `Lock` and `Condition`: who
/// gets the lock and when, that a cancelled wait re-acquires the lock
/// before it re-raises and passes its notify on, `locked()` after every
/// step, and which releases and notifies are refused.
// conformance: S1, S2
#[test]
fn random_lock_and_condition_operations_match_asyncios() {
    for seed in 1..=500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let lp = EventLoop::new().unwrap();
        let cond = tulip::Condition::new();
        let mut m = ModelLock::default();
        let tasks: Rc<RefCell<Vec<tulip::Task<()>>>> = Rc::default();
        let mut ntasks = 0;
        let mut trace: Vec<String> = Vec::new();
        for _ in 0..60 {
            let mut batch = Vec::new();
            for _ in 0..1 + rng.below(3) {
                batch.push(match rng.below(12) {
                    0 | 1 => {
                        ntasks += 1;
                        LCall::Acquire
                    }
                    2 | 3 => {
                        ntasks += 1;
                        LCall::Wait
                    }
                    4 | 5 => LCall::Release,
                    6 | 7 => LCall::Notify(1 + rng.below(3) as usize),
                    _ if ntasks > 0 => {
                        let back = if rng.below(4) == 0 {
                            ntasks
                        } else {
                            ntasks.min(3)
                        };
                        LCall::Cancel(ntasks - 1 - rng.below(back as u64) as usize)
                    }
                    _ => continue,
                });
            }
            trace.push(format!("{batch:?}"));
            let got: Rc<RefCell<Vec<bool>>> = Rc::default();
            {
                let (cond, tasks, got, lp1) =
                    (cond.clone(), tasks.clone(), got.clone(), lp.clone());
                let batch = batch.clone();
                common::soon(&lp, move || {
                    for call in batch {
                        let c = cond.clone();
                        match call {
                            LCall::Acquire => {
                                let t = lp1.create_task(async move {
                                    c.acquire().await?.forget();
                                    Ok(())
                                });
                                tasks.borrow_mut().push(t.unwrap());
                            }
                            LCall::Wait => {
                                let t = lp1.create_task(async move {
                                    c.acquire().await?.forget();
                                    c.wait().await
                                });
                                tasks.borrow_mut().push(t.unwrap());
                            }
                            LCall::Release => got.borrow_mut().push(c.release().is_ok()),
                            LCall::Notify(n) => got.borrow_mut().push(c.notify(n).is_ok()),
                            LCall::Cancel(t) => got.borrow_mut().push(tasks.borrow()[t].cancel()),
                        }
                    }
                });
            }
            let mut want = Vec::new();
            for call in &batch {
                match *call {
                    LCall::Acquire => m.spawn(false),
                    LCall::Wait => m.spawn(true),
                    LCall::Release => want.push(m.release()),
                    LCall::Notify(n) => want.push(m.notify(n)),
                    LCall::Cancel(t) => want.push(m.cancel(t)),
                }
            }
            settle_loop(&lp);
            m.settle();
            assert_eq!(*got.borrow(), want, "seed {seed}: {trace:?}");
            assert_eq!(cond.locked(), m.locked, "seed {seed}: {trace:?}: locked");
            let got: Vec<Option<QRes>> = tasks
                .borrow()
                .iter()
                .map(|t| t.done().then(|| qres(t.result(), |_| None)))
                .collect();
            let want: Vec<Option<QRes>> = m
                .tasks
                .iter()
                .map(|t| match t.pc {
                    LPc::Done(r) => Some(r),
                    _ => None,
                })
                .collect();
            assert_eq!(got, want, "seed {seed}: tasks: {trace:?}");
        }
        for t in tasks.borrow().iter() {
            t.cancel();
        }
        settle_loop(&lp);
        lp.close().unwrap();
    }
}
