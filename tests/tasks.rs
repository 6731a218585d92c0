//! Conformance of tasks: C4–C6 (asyncio's test_tasks and
//! test_eager_task_factory), plus the Task API the seeds use.
// `async move { inner.await }` spells out "a task whose body awaits".
#![allow(clippy::redundant_async_block)]

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{capture_reports, entries, iterate, log, push};
use tulip::{Error, EventLoop, ExceptionContext, Future, Task, TaskFactory, TaskOptions};

fn eager() -> TaskOptions {
    TaskOptions {
        name: None,
        eager: Some(true),
        ..TaskOptions::default()
    }
}

// ===== C4 =====

// conformance: C4
#[test]
fn a_task_awaiting_itself_is_an_error() {
    let lp = EventLoop::new().unwrap();
    let slot: Rc<RefCell<Option<Task<u32>>>> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    let task = lp
        .create_task(async move {
            let me = s.borrow().clone().expect("set before the first step");
            match me.await {
                Err(Error::Runtime(m)) if m.contains("await on itself") => Ok(1),
                other => panic!("awaiting itself gave {other:?}"),
            }
        })
        .unwrap();
    *slot.borrow_mut() = Some(task.clone());
    // Bounded: a task that waited for itself would wait forever.
    let lp1 = lp.clone();
    let guard = lp.call_later(10.0, move || lp1.stop()).unwrap();
    let out = lp.run_until_complete(async move { task.await });
    guard.cancel();
    assert_eq!(out.expect("the task waited for itself"), 1);
    slot.borrow_mut().take();
}

// conformance: C4
#[test]
fn a_task_destroyed_while_pending_is_reported() {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let task = lp
        .create_task_with(
            async {
                tulip::sleep(3600.0).await?;
                Ok(())
            },
            TaskOptions {
                name: Some("sleeper".into()),
                eager: None,
                ..TaskOptions::default()
            },
        )
        .unwrap();
    iterate(&lp);
    assert!(!task.done());
    lp.close().unwrap();
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].message, "Task was destroyed but it is pending!");
    let t = reports[0].task.as_deref().unwrap();
    assert!(t.contains("pending") && t.contains("sleeper"), "{t}");
}

// conformance: C4
#[test]
fn a_pending_task_in_a_reference_cycle_is_freed_when_the_loop_closes() {
    // CPython's collector frees a pending task that only its own frame (or
    // a gather of it) still references, once its loop is gone. Without a
    // collector, `close()` must drop what the task can never run again.
    let lp = EventLoop::new().unwrap();
    let alive = Rc::new(());
    // The loop itself is freed too: its exception handler holds `alive`.
    let reports = Rc::new(RefCell::new(Vec::new()));
    let (r, a) = (reports.clone(), alive.clone());
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        let _ = &a;
        r.borrow_mut().push(ctx.clone());
    }));
    // A body that holds its own task.
    let a = alive.clone();
    let self_holder = lp
        .create_task(async move {
            let _a = a;
            let _me = tulip::current_task().unwrap();
            tulip::sleep(3600.0).await
        })
        .unwrap();
    // Children of a gather: each holds the gather through its done
    // notification, and the gather holds them.
    let a = alive.clone();
    let gatherer = lp
        .create_task(async move {
            let _a = a;
            let lp = tulip::get_running_loop()?;
            let children = (0..2)
                .map(|_| lp.create_task(async { tulip::sleep(3600.0).await }))
                .collect::<tulip::Result<Vec<_>>>()?;
            tulip::gather(children).await.map(drop)
        })
        .unwrap();
    iterate(&lp);
    iterate(&lp);
    assert_eq!(Rc::strong_count(&alive), 4);
    lp.close().unwrap();
    assert_eq!(reports.borrow().len(), 4, "{:?}", reports.borrow());
    drop((self_holder, gatherer));
    drop(lp);
    assert_eq!(
        Rc::strong_count(&alive),
        1,
        "a body in a reference cycle, or the loop, outlived the loop's close"
    );
}

// conformance: C4
#[test]
fn a_task_without_a_handle_still_runs_to_completion() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let l1 = l.clone();
    drop(
        lp.create_task(async move {
            for i in 0..3 {
                tulip::sleep(0.001).await?;
                push(&l1, format!("step {i}"));
            }
            Ok(())
        })
        .unwrap(),
    );
    assert_eq!(lp.all_tasks().len(), 1, "the loop owns it");
    lp.run_until_complete(async {
        tulip::sleep(0.05).await?;
        Ok(())
    })
    .unwrap();
    assert_eq!(entries(&l), ["step 0", "step 1", "step 2"]);
    assert!(lp.all_tasks().is_empty());
}

// conformance: C4
#[test]
fn an_unretrieved_task_error_is_reported_when_the_task_goes_away() {
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let task = lp
        .create_task(async { Err::<(), _>(Error::msg("nobody looked")) })
        .unwrap();
    drop(task);
    iterate(&lp);
    iterate(&lp);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].message, "Task exception was never retrieved");
    assert_eq!(
        reports[0].error.as_ref().unwrap().to_string(),
        "nobody looked"
    );

    // Retrieved (awaited) errors are not reported.
    drop(reports);
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let task = lp
        .create_task(async { Err::<(), _>(Error::msg("seen")) })
        .unwrap();
    assert!(lp.run_until_complete(async move { task.await }).is_err());
    iterate(&lp);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

// conformance: C4
#[test]
fn cancelling_a_failed_task_silences_its_unretrieved_error() {
    // asyncio's Task.cancel() starts with `self._log_traceback = False`,
    // before its `if self.done(): return False`: shutting down with
    // `for t in tasks: t.cancel()` reports none of the failed ones.
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let task = lp
        .create_task(async { Err::<(), _>(Error::msg("cancelled later")) })
        .unwrap();
    iterate(&lp);
    assert!(task.done());
    assert!(!task.cancel(), "a done task is not cancelled");
    let other = lp
        .create_task(async { Err::<(), _>(Error::msg("via a TaskRef")) })
        .unwrap();
    let other_ref = other.as_ref();
    iterate(&lp);
    assert!(!other_ref.cancel());
    drop((task, other, other_ref));
    iterate(&lp);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

// ===== C5 =====

// conformance: C5
#[test]
fn a_panic_inside_a_task_becomes_its_error_and_the_loop_survives() {
    let lp = EventLoop::new().unwrap();
    let bad = lp
        .create_task(async {
            tulip::sleep(0.0).await?;
            if true {
                panic!("task blew up");
            }
            Ok(1)
        })
        .unwrap();
    let l = log();
    let l1 = l.clone();
    let good = lp
        .create_task(async move {
            for i in 0..3 {
                tulip::sleep(0.0).await?;
                push(&l1, format!("good {i}"));
            }
            Ok(2)
        })
        .unwrap();
    let (b, g) = (bad.clone(), good.clone());
    let out = lp
        .run_until_complete(async move {
            let e = b.await.unwrap_err();
            Ok((e, g.await?))
        })
        .unwrap();
    assert!(
        matches!(&out.0, Error::Panic(m) if &**m == "task blew up"),
        "{:?}",
        out.0
    );
    assert_eq!(out.1, 2);
    assert!(bad.done() && !bad.cancelled());
    assert!(matches!(bad.exception(), Ok(Some(Error::Panic(_)))));
    assert_eq!(entries(&l), ["good 0", "good 1", "good 2"]);
}

// conformance: C5
#[test]
fn a_panic_in_an_eager_task_becomes_its_error_too() {
    let lp = EventLoop::new().unwrap();
    let lp1 = lp.clone();
    let out = lp
        .run_until_complete(async move {
            let t: Task<()> = lp1.create_task_with(async { panic!("eager boom") }, eager())?;
            assert!(t.done(), "it failed synchronously");
            Ok(t.await.unwrap_err())
        })
        .unwrap();
    assert!(
        matches!(&out, Error::Panic(m) if &**m == "eager boom"),
        "{out:?}"
    );
}

// ===== C6 =====

// conformance: C6
#[test]
fn an_eager_task_runs_synchronously_until_its_first_suspension() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    lp.run_until_complete(async move {
        let fut: Future<u32> = lp1.create_future();
        push(&l1, "before create_task");
        let (l2, f2) = (l1.clone(), fut.clone());
        let ready_before = lp1.ready_count();
        let t = lp1.create_task_with(
            async move {
                push(&l2, "eager body starts");
                let v = f2.await?;
                push(&l2, format!("resumed with {v}"));
                Ok(v)
            },
            eager(),
        )?;
        push(&l1, "after create_task");
        assert!(!t.done());
        assert_eq!(
            lp1.ready_count(),
            ready_before,
            "suspended on a future: not scheduled"
        );
        fut.set_result(5)?;
        assert_eq!(t.await?, 5);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        entries(&l),
        [
            "before create_task",
            "eager body starts",
            "after create_task",
            "resumed with 5"
        ]
    );
}

// conformance: C6
#[test]
fn an_eager_task_that_finishes_synchronously_is_never_scheduled() {
    let lp = EventLoop::new().unwrap();
    let lp1 = lp.clone();
    lp.run_until_complete(async move {
        let ready_before = lp1.ready_count();
        let t = lp1.create_task_with(async { Ok("done") }, eager())?;
        assert!(t.done());
        assert_eq!(t.result()?, "done");
        assert_eq!(lp1.ready_count(), ready_before, "nothing was scheduled");
        assert!(tulip::all_tasks().iter().all(|r| !r.ptr_eq(&t.as_ref())));
        Ok(())
    })
    .unwrap();
}

// conformance: C6
// conformance: C2
#[test]
fn an_eager_task_started_while_its_creator_has_a_cancel_pending_leaves_it_to_the_creator() {
    // A is cancelled while it waits on something that is not a runtime
    // future, so the cancel is held (`must_cancel`) and thrown at A's first
    // runtime await of its next step. In that step, before any runtime
    // await, A starts an eager task B. B's step must neither receive A's
    // throw nor lose it: B finishes normally, A's next await is cancelled.
    let lp = EventLoop::new().unwrap();
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    lp.run_until_complete(async move {
        let (l2, lp2) = (l1.clone(), lp1.clone());
        let b_slot: Rc<RefCell<Option<Task<&str>>>> = Rc::new(RefCell::new(None));
        let b_out = b_slot.clone();
        let a = lp1.create_task(async move {
            let mut first = true;
            // Pending once, waking itself: no fut_waiter is set.
            std::future::poll_fn(|cx| {
                if std::mem::take(&mut first) {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            })
            .await;
            let l3 = l2.clone();
            let b = lp2.create_task_with(
                async move {
                    tulip::sleep(0.0).await?; // B's own first runtime await
                    push(&l3, "b done");
                    Ok("b")
                },
                eager(),
            )?;
            *b_out.borrow_mut() = Some(b);
            match tulip::sleep(0.0).await {
                Err(Error::Cancelled(_)) => push(&l2, "a cancelled at its await"),
                other => push(&l2, format!("a: {other:?}")),
            }
            Err::<(), _>(Error::cancelled())
        })?;
        tulip::sleep(0.0).await?; // A's first step runs and suspends
        assert!(
            a.cancel(),
            "held as must_cancel: A waits on no runtime future"
        );
        let a_res = a.clone().await;
        assert!(matches!(a_res, Err(Error::Cancelled(_))), "{a_res:?}");
        let b = b_slot.borrow_mut().take().expect("A started B");
        assert_eq!(b.await?, "b");
        Ok(())
    })
    .unwrap();
    assert_eq!(entries(&l), ["a cancelled at its await", "b done"]);
}

// conformance: C6
#[test]
fn the_eager_task_factory_makes_every_task_eager() {
    let lp = EventLoop::new().unwrap();
    lp.set_task_factory(TaskFactory::Eager);
    assert_eq!(lp.task_factory(), TaskFactory::Eager);
    let l = log();
    let (l1, lp1) = (l.clone(), lp.clone());
    lp.run_until_complete(async move {
        let me = tulip::current_task().unwrap();
        let l2 = l1.clone();
        let t = lp1.create_task(async move {
            push(&l2, "in eager task");
            // The eager task is the current task while it runs...
            let cur = tulip::current_task().unwrap();
            Ok(cur.name())
        })?;
        // ...and the creator is current again afterwards.
        assert!(tulip::current_task().unwrap().ptr_eq(&me));
        push(&l1, "creator continues");
        assert_eq!(t.result()?, t.name());
        // Opting out per task.
        let lazy = lp1.create_task_with(
            async { Ok(()) },
            TaskOptions {
                name: None,
                eager: Some(false),
                ..TaskOptions::default()
            },
        )?;
        assert!(!lazy.done());
        lazy.await?;
        Ok(())
    })
    .unwrap();
    assert_eq!(entries(&l), ["in eager task", "creator continues"]);
}

// conformance: C6
#[test]
fn a_default_task_is_scheduled_not_run_inline() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let before = lp.ready_count();
    let t = lp
        .create_task(async move {
            r.set(true);
            Ok(())
        })
        .unwrap();
    assert!(!ran.get());
    assert_eq!(lp.ready_count(), before + 1);
    iterate(&lp);
    assert!(ran.get() && t.done());
}

// conformance: C6
#[test]
fn an_eager_task_starts_eagerly_only_on_a_running_loop() {
    // asyncio's Task.__init__: `if eager_start and self._loop.is_running()`;
    // otherwise the first step is scheduled. So run_until_complete on a
    // loop with the eager factory starts its main task normally, and that
    // task can use the running loop from its first line.
    let lp = EventLoop::new().unwrap();
    lp.set_task_factory(TaskFactory::Eager);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let t = lp
        .create_task_with(
            async move {
                r.set(true);
                Ok(())
            },
            eager(),
        )
        .unwrap();
    assert!(!ran.get(), "started outside a running loop");
    assert!(!t.done());
    let out = lp
        .run_until_complete(async {
            tulip::sleep(0.001).await?;
            let lp = tulip::get_running_loop()?;
            // On the running loop, the factory makes tasks eager again.
            let inner = lp.create_task(async { Ok(5) })?;
            assert!(inner.done());
            inner.await
        })
        .unwrap();
    assert_eq!(out, 5);
    assert!(ran.get() && t.done());
}

// ===== the Task API =====

#[test]
fn tasks_have_default_names_and_can_be_renamed() {
    let lp = EventLoop::new().unwrap();
    let t = lp.create_task(async { Ok(()) }).unwrap();
    assert_eq!(t.name(), format!("Task-{}", t.id()));
    t.set_name("renamed");
    assert_eq!(t.name(), "renamed");
    let named = lp
        .create_task_with(
            async { Ok(()) },
            TaskOptions {
                name: Some("given".into()),
                eager: None,
                ..TaskOptions::default()
            },
        )
        .unwrap();
    assert_eq!(named.name(), "given");
    assert!(format!("{named:?}").contains("name='given'"));
    assert!(t.get_loop().ptr_eq(&lp));
    lp.run_until_complete(async move {
        t.await?;
        named.await
    })
    .unwrap();
}

#[test]
fn a_task_created_with_a_name_takes_no_task_number() {
    // asyncio 3.13's Task.__init__ calls `_task_name_counter()` only `if
    // name is None`: the next unnamed task after a named one is the next
    // number. The counter is process-wide, as asyncio's, and the other
    // tests of this binary create tasks on their own threads, so the check
    // runs in a child process that runs this test alone.
    if common::rerun_alone("a_task_created_with_a_name_takes_no_task_number") {
        return;
    }
    let number = |name: String| -> u64 {
        let n = name
            .strip_prefix("Task-")
            .unwrap_or_else(|| panic!("{name}"));
        n.parse().unwrap()
    };
    let named = |name: &str, eager| TaskOptions {
        name: Some(name.into()),
        eager,
        ..TaskOptions::default()
    };
    let lp = EventLoop::new().unwrap();
    let a = lp.create_task(async { Ok(()) }).unwrap();
    let given = lp.create_task_with(async { Ok(()) }, named("given", None));
    let eager = lp.create_task_with(async { Ok(()) }, named("eager", Some(true)));
    let b = lp.create_task(async { Ok(()) }).unwrap();
    assert_eq!(number(b.name()), number(a.name()) + 1);
    let (given, eager) = (given.unwrap(), eager.unwrap());
    assert_eq!(
        (given.name().as_str(), eager.name().as_str()),
        ("given", "eager")
    );
    // Ids stay unique, named tasks' too.
    let ids = [a.id(), given.id(), eager.id(), b.id()];
    assert!(ids
        .iter()
        .all(|i| ids.iter().filter(|j| *j == i).count() == 1));
    let names = lp
        .run_until_complete(async {
            let c = tulip::create_task(async { Ok(()) })?;
            let d = tulip::create_task_named(async { Ok(()) }, "d")?;
            let e = tulip::create_task(async { Ok(()) })?;
            let names = (c.name(), d.name(), e.name());
            c.await?;
            d.await?;
            e.await?;
            Ok(names)
        })
        .unwrap();
    assert_eq!(names.1, "d");
    assert_eq!(number(names.2), number(names.0) + 1);
    for t in [a, given, eager, b] {
        lp.run_until_complete(t).unwrap();
    }
    lp.close().unwrap();
}

#[test]
fn current_task_and_all_tasks_see_the_running_tasks() {
    let lp = EventLoop::new().unwrap();
    assert!(tulip::current_task().is_none());
    let lp1 = lp.clone();
    let n = lp
        .run_until_complete(async move {
            let a = lp1.create_task(async {
                tulip::sleep(0.01).await?;
                Ok(())
            })?;
            let all = tulip::all_tasks();
            assert_eq!(all.len(), 2, "main and a");
            assert!(all.iter().any(|t| t.ptr_eq(&a.as_ref())));
            let me = tulip::current_task().unwrap();
            assert!(all.iter().any(|t| t.ptr_eq(&me)));
            a.await?;
            Ok(tulip::all_tasks().len())
        })
        .unwrap();
    assert_eq!(n, 1, "only main is left");
    assert!(tulip::current_task().is_none());
}

#[test]
fn done_callbacks_of_a_task_get_the_task() {
    let lp = EventLoop::new().unwrap();
    let l = log();
    let t = lp
        .create_task(async {
            tulip::sleep(0.001).await?;
            Ok(21)
        })
        .unwrap();
    let l1 = l.clone();
    t.add_done_callback(move |t| push(&l1, format!("done: {}", t.result().unwrap() * 2)));
    let t2 = t.clone();
    lp.run_until_complete(async move { t2.await }).unwrap();
    iterate(&lp);
    assert_eq!(entries(&l), ["done: 42"]);
}

// conformance: C4
#[test]
fn run_cancels_and_awaits_the_tasks_main_left_behind() {
    // asyncio.run: the leftovers are cancelled and awaited before the loop
    // closes, so none is reported as destroyed while pending.
    let reports = Rc::new(RefCell::new(Vec::<ExceptionContext>::new()));
    let r = reports.clone();
    let cleaned = Rc::new(Cell::new(false));
    let c = cleaned.clone();
    let t0 = std::time::Instant::now();
    let out = tulip::run_with_factory(
        async move {
            let _left = tulip::create_task(async move {
                let r = tulip::sleep(3600.0).await;
                c.set(r.as_ref().is_err_and(|e| e.is_cancelled()));
                r
            })?;
            tulip::sleep(0.0).await?;
            Ok("main done")
        },
        move || {
            let lp = EventLoop::new()?;
            let r = r.clone();
            lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
                r.borrow_mut().push(ctx.clone())
            }));
            Ok(lp)
        },
    )
    .unwrap();
    assert_eq!(out, "main done");
    assert!(cleaned.get(), "the leftover task saw no Cancelled");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

/// A future that hands the waker it is polled with to `slot` (a clone, or
/// just its address), then completes.
struct GrabWaker<'a>(&'a dyn Fn(&std::task::Waker));

impl std::future::Future for GrabWaker<'_> {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        (self.0)(cx.waker());
        std::task::Poll::Ready(())
    }
}

#[test]
fn a_finished_tasks_waker_nobody_holds_is_reused_by_the_next_task() {
    // A task's waker is made at its first step and, once the task is done
    // and no clone of it is left, goes back to the loop's pool: the next
    // task polls with the same waker (the `tasks` benchmark's one saved
    // allocation per task).
    let lp = EventLoop::new().unwrap();
    let addr = Rc::new(Cell::new(Vec::new()));
    let spawn = |lp: &EventLoop| {
        let addr = addr.clone();
        lp.create_task(async move {
            GrabWaker(&|w| {
                let mut v = addr.take();
                v.push(w.data() as usize);
                addr.set(v);
            })
            .await;
            Ok(())
        })
        .unwrap()
    };
    let a = spawn(&lp);
    lp.run_until_complete(a).unwrap();
    // Were the waker freed, this would take its memory (same size class),
    // so that a new waker could not land at the same address by chance.
    let squat: Vec<u8> = Vec::with_capacity(40);
    let b = spawn(&lp);
    lp.run_until_complete(b).unwrap();
    drop(squat);
    let seen = addr.take();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0], seen[1], "the second task got a new waker");
    lp.close().unwrap();
}

#[test]
fn tasks_suspended_together_never_share_a_pooled_waker() {
    // The pool keeps the waker put back last in a cell of its own and the
    // others in a list. Two rounds of 50 tasks suspended at the same time:
    // the second round runs on pooled wakers (from both places), and every
    // task must still get a waker of its own, so that each wake reaches
    // exactly its task.
    let lp = EventLoop::new().unwrap();
    for round in 0..2u32 {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let gates: Vec<Future<u32>> = (0..50).map(|_| Future::with_loop(&lp)).collect();
        let tasks: Vec<Task<u32>> = gates
            .iter()
            .map(|g| {
                let (g, seen) = (g.clone(), seen.clone());
                lp.create_task(async move {
                    GrabWaker(&|w| seen.borrow_mut().push(w.data() as usize)).await;
                    g.await
                })
                .unwrap()
            })
            .collect();
        iterate(&lp);
        let mut addrs = seen.borrow().clone();
        assert_eq!(addrs.len(), 50);
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(
            addrs.len(),
            50,
            "round {round}: two suspended tasks share a waker"
        );
        // Wake them in reverse order, each with its own value.
        for (i, g) in gates.iter().enumerate().rev() {
            g.set_result(i as u32 + 100 * round).unwrap();
        }
        let all = lp.run_until_complete(tulip::gather(tasks)).unwrap();
        assert_eq!(all, (0..50).map(|i| i + 100 * round).collect::<Vec<_>>());
    }
    lp.close().unwrap();
}

#[test]
fn a_stale_waker_of_a_finished_task_wakes_no_later_task() {
    // Wakers are recycled only when no clone is left: a clone kept after
    // its task finished must never wake a task created later (which might
    // reuse the finished task's slab slot).
    let lp = EventLoop::new().unwrap();
    let stale: Rc<RefCell<Option<std::task::Waker>>> = Rc::default();
    let keep = stale.clone();
    let a = lp
        .create_task(async move {
            GrabWaker(&|w| *keep.borrow_mut() = Some(w.clone())).await;
            Ok(())
        })
        .unwrap();
    lp.run_until_complete(a).unwrap();

    let never: Future<()> = Future::with_loop(&lp);
    let polls = Rc::new(Cell::new(0));
    let (n, p) = (never.clone(), polls.clone());
    let b = lp
        .create_task(async move {
            std::future::poll_fn(|cx| {
                p.set(p.get() + 1);
                std::future::Future::poll(std::pin::Pin::new(&mut n.clone()), cx)
            })
            .await
        })
        .unwrap();
    for _ in 0..3 {
        iterate(&lp);
    }
    assert_eq!(polls.get(), 1, "b is suspended on `never`");
    let w = stale.borrow_mut().take().unwrap();
    w.wake();
    for _ in 0..3 {
        iterate(&lp);
    }
    assert_eq!(polls.get(), 1, "the stale waker woke b");
    never.set_result(()).unwrap();
    lp.run_until_complete(b).unwrap();
    assert_eq!(polls.get(), 2);
    lp.close().unwrap();
}

/// Panics when dropped (not while unwinding).
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("drop boom");
        }
    }
}

/// A body that is done at once, and whose `Drop` panics.
struct DoneBody(#[allow(dead_code)] PanicOnDrop);

impl std::future::Future for DoneBody {
    type Output = tulip::Result<u32>;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(1))
    }
}

// conformance: L6
#[test]
fn a_body_whose_drop_panics_is_reported_and_the_loop_runs_on() {
    // CPython reports an exception raised while a coroutine is finalized
    // ("Exception ignored in ...") and goes on; so does tulip, for a panic
    // in the `Drop` of a finished body, and of one cancelled before it ran.
    let lp = EventLoop::new().unwrap();
    let reports = capture_reports(&lp);
    let done = lp.create_task(DoneBody(PanicOnDrop)).unwrap();
    let never_ran = lp.create_task(DoneBody(PanicOnDrop)).unwrap();
    never_ran.cancel();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| iterate(&lp)));
    assert!(r.is_ok(), "the panic escaped run_forever");
    assert_eq!(done.result().unwrap(), 1);
    assert!(never_ran.cancelled());
    let reports = reports.borrow();
    assert_eq!(reports.len(), 2, "{reports:?}");
    for r in reports.iter() {
        assert_eq!(r.message, "Exception ignored while dropping a task's body");
        assert!(matches!(&r.error, Some(Error::Panic(m)) if m.contains("drop boom")));
        assert!(r.task.is_some());
    }
    lp.close().unwrap();
}

// asyncio's `_wait` removes its `_on_completion` callback from every future
// in its `finally:`, so a wait that ends early (a timeout, a cancel, a
// select that took another branch) leaves nothing on the awaited task.
#[test]
fn an_abandoned_wait_done_leaves_no_callback_on_the_task() {
    let lp = EventLoop::new().unwrap();
    let fut: Future<u32> = lp.create_future();
    let f = fut.clone();
    let task = lp.create_task(async move { f.await }).unwrap();
    let t = task.clone();
    let left = lp
        .run_until_complete(async move {
            for _ in 0..10 {
                // Polled once (the hook is registered), then dropped.
                let mut w = Box::pin(t.wait_done());
                std::future::poll_fn(|cx| {
                    let _ = std::future::Future::poll(w.as_mut(), cx);
                    std::task::Poll::Ready(())
                })
                .await;
            }
            Ok(t.callback_count())
        })
        .unwrap();
    assert_eq!(
        left, 0,
        "every abandoned wait left its callback on the task"
    );
    fut.set_result(1).unwrap();
    iterate(&lp);
    assert_eq!(task.result().unwrap(), 1);
}

#[test]
fn a_task_result_whose_drop_panics_is_reported_and_the_loop_runs_on() {
    // conformance: L6
    // The task's handle is dropped at once, so the loop holds its last
    // reference: the result is dropped by the loop when the step ends (or
    // when its entry last runs), outside the body's catch_unwind.
    #[derive(Clone)]
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("a result that panics when dropped");
        }
    }
    let lp = tulip::EventLoop::new().unwrap();
    let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(
        move |_: &tulip::EventLoop, ctx: &tulip::ExceptionContext| {
            r.borrow_mut().push(format!("{ctx}"));
        },
    ));
    let after = lp
        .run_until_complete(async {
            drop(tulip::create_task(async { Ok(Bomb) })?);
            let gathered = tulip::create_task(async { Ok(Bomb) })?;
            drop(tulip::gather(vec![gathered]));
            for _ in 0..3 {
                tulip::sleep(0.0).await?;
            }
            Ok("the loop ran on")
        })
        .unwrap();
    assert_eq!(after, "the loop ran on");
    lp.close().unwrap();
    let reports = reports.borrow();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("a result that panics when dropped")),
        "{reports:?}"
    );
}
