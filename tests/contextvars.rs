//! Per-task context values (the contextvars counterpart, seed S3.10):
//! `ContextVar`, `Context`, `copy_context`, `Context::run` and
//! `create_task(context=)`.

use std::panic::AssertUnwindSafe;

use tulip::{
    copy_context, create_task, get_running_loop, sleep, Context, ContextVar, Error, TaskGroup,
    TaskOptions,
};

static REQUEST_ID: ContextVar<u32> = ContextVar::new("request_id");
static USER: ContextVar<String> = ContextVar::new("user");

#[test]
fn child_inherits_a_copy_of_the_creators_context() {
    tulip::run(async {
        assert_eq!(REQUEST_ID.get(), None);
        REQUEST_ID.set(1)?;
        USER.set("ann".into())?;
        let child = create_task(async {
            let seen = (REQUEST_ID.get(), USER.get());
            REQUEST_ID.set(2)?; // the child's own copy
            sleep(0.001).await?;
            let grandchild = create_task(async { Ok(REQUEST_ID.get()) })?;
            Ok((seen, grandchild.await?))
        })?;
        // Set after the child was created: the child does not see it.
        USER.set("bob".into())?;
        let ((id, user), grand) = child.await?;
        assert_eq!((id, user.as_deref()), (Some(1), Some("ann")));
        assert_eq!(grand, Some(2), "inherited from the child");
        assert_eq!(
            REQUEST_ID.get(),
            Some(1),
            "the parent never sees the child's set"
        );
        assert_eq!(USER.get().as_deref(), Some("bob"));
        let token = REQUEST_ID.set(5)?;
        assert_eq!(token.old_value(), Some(&1));
        REQUEST_ID.reset(token)?;
        assert_eq!(REQUEST_ID.get(), Some(1));
        Ok(())
    })
    .unwrap();
}

#[test]
fn taskgroup_children_inherit_and_set_outside_a_task_fails() {
    assert!(REQUEST_ID.set(3).is_err(), "no task, no context");
    assert_eq!(REQUEST_ID.get_or(7), 7);
    tulip::run(async {
        REQUEST_ID.set(9)?;
        let (a, b) = TaskGroup::run(|tg| async move {
            let a = tg.create_task(async { Ok(REQUEST_ID.get()) })?;
            let b = tg.create_task(async { Ok(REQUEST_ID.get()) })?;
            Ok((a, b))
        })
        .await?;
        assert_eq!((a.result()?, b.result()?), (Some(9), Some(9)));
        Ok(())
    })
    .unwrap();
}

// ===== Context, copy_context, Context::run, create_task(context=) =====

static V: ContextVar<u32> = ContextVar::new("v");

fn in_context(ctx: &Context) -> TaskOptions {
    TaskOptions {
        context: Some(ctx.clone()),
        ..TaskOptions::default()
    }
}

#[test]
fn a_set_inside_ctx_run_is_seen_by_later_runs_but_not_outside() {
    tulip::run(async {
        V.set(1)?;
        let ctx = copy_context(); // a snapshot: V = 1
        assert_eq!(ctx.run(|| V.set(2))??.old_value(), Some(&1));
        assert_eq!(V.get(), Some(1), "the caller's context is untouched");
        assert_eq!(ctx.run(|| V.get())?, Some(2), "kept for later runs");
        assert_eq!((ctx.get(&V), ctx.len()), (Some(2), 1));
        V.set(3)?;
        assert_eq!(ctx.get(&V), Some(2), "copy_context() was a copy");

        // A task created inside ctx.run starts with a copy of ctx.
        let child = ctx.run(|| {
            create_task(async {
                let seen = V.get();
                V.set(20)?; // its own copy
                Ok(seen)
            })
        })??;
        assert_eq!(child.await?, Some(2));
        assert_eq!(ctx.get(&V), Some(2));

        // Entered at most once at a time, as Python's RuntimeError.
        let nested = ctx.run(|| ctx.run(|| ()))?;
        assert!(matches!(nested, Err(Error::Runtime(_))));
        // Other contexts nest; each run puts its caller's back.
        let other = Context::new();
        let seen = ctx.run(|| other.run(|| V.get()).map(|inner| (inner, V.get())))??;
        assert_eq!(seen, (None, Some(2)));
        assert_eq!(V.get(), Some(3));
        Ok(())
    })
    .unwrap();
}

#[test]
fn tasks_created_with_the_same_context_run_in_it_as_asyncio_does() {
    // CPython: Task(coro, context=ctx) runs in ctx itself (no copy), so a
    // set in one such task is seen by the others and by ctx afterwards.
    tulip::run(async {
        let lp = get_running_loop()?;
        let ctx = copy_context();
        ctx.run(|| V.set(1))??;
        let body = |val: u32| async move {
            let seen = V.get();
            V.set(val)?;
            sleep(0.01).await?;
            Ok((seen, V.get()))
        };
        let a = lp.create_task_with(body(10), in_context(&ctx))?;
        let b = lp.create_task_with(body(20), in_context(&ctx))?;
        assert_eq!(a.await?, (Some(1), Some(20)));
        assert_eq!(b.await?, (Some(10), Some(20)), "b saw a's set");
        assert_eq!(ctx.get(&V), Some(20));
        assert_eq!(V.get(), None, "the creator's own context is apart");

        // Private values: one copy per task (asyncio's ctx.copy()).
        let base = Context::new();
        base.run(|| V.set(1))??;
        let a = lp.create_task_with(body(10), in_context(&base.copy()))?;
        let b = lp.create_task_with(body(20), in_context(&base.copy()))?;
        assert_eq!(
            (a.await?, b.await?),
            ((Some(1), Some(10)), (Some(1), Some(20)))
        );
        assert_eq!(base.get(&V), Some(1));

        // A task running in ctx has ctx entered: ctx.run fails there.
        let c2 = ctx.clone();
        let t = lp.create_task_with(async move { Ok(c2.run(|| ()).is_err()) }, in_context(&ctx))?;
        assert!(t.await?);
        // Eager tasks and task groups take the option too.
        let eager = TaskOptions {
            eager: Some(true),
            ..in_context(&ctx)
        };
        let t = lp.create_task_with(async { Ok(V.get()) }, eager)?;
        assert!(t.done(), "ran eagerly");
        assert_eq!(t.result()?, Some(20));
        let ctx2 = ctx.clone();
        let seen = TaskGroup::run(|tg| async move {
            tg.create_task_with(async { Ok(V.get()) }, in_context(&ctx2))
        })
        .await?;
        assert_eq!(seen.result()?, Some(20));
        Ok(())
    })
    .unwrap();
}

#[test]
fn context_run_works_outside_any_task() {
    let ctx = Context::new();
    assert!(V.set(1).is_err(), "no task, no context");
    assert_eq!(ctx.run(|| V.set(5)).unwrap().unwrap().old_value(), None);
    assert_eq!(V.get(), None);
    assert_eq!(ctx.run(|| V.get()).unwrap(), Some(5));
    // tulip::run inside ctx.run: the main task starts with a copy of ctx.
    let seen = ctx
        .run(|| {
            tulip::run(async {
                let seen = V.get();
                V.set(6)?; // the main task's own copy
                Ok(seen)
            })
        })
        .unwrap()
        .unwrap();
    assert_eq!((seen, ctx.get(&V)), (Some(5), Some(5)));
    // A panic in the closure leaves the context too.
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| ctx.run(|| -> () { panic!("boom") })));
    assert!(r.is_err());
    assert_eq!(V.get(), None);
    assert_eq!(ctx.run(|| V.get()).unwrap(), Some(5), "not left entered");
    assert!(V.set(1).is_err());
}

#[test]
fn context_run_in_a_task_with_no_values_restores_an_empty_context() {
    tulip::run(async {
        let ctx = Context::new();
        ctx.run(|| V.set(7))??;
        assert_eq!(V.get(), None);
        V.set(8)?; // still the task's own
        assert_eq!((V.get(), ctx.get(&V)), (Some(8), Some(7)));
        assert!(format!("{ctx:?}").contains("vars=1"));
        Ok(())
    })
    .unwrap();
}

// asyncio's Runner copies the context once, at its lazy init, and runs
// every `run()`'s main task in that context (test_runners:
// `test_run_keeps_context`): a value set by one run is seen by the next.
#[test]
fn a_runner_keeps_one_context_across_its_runs() {
    static CV: ContextVar<i32> = ContextVar::new("runner_cv");
    let mut runner = tulip::Runner::new();
    let f = |val: i32| async move {
        let old = CV.get().unwrap_or(-1);
        tulip::sleep(0.0).await?;
        CV.set(val)?;
        Ok(old)
    };
    assert_eq!(runner.run(f(1)).unwrap(), -1);
    assert_eq!(runner.run(f(2)).unwrap(), 1);
    runner.close();
    // A new runner starts from the caller's context again.
    assert_eq!(tulip::run(f(3)).unwrap(), -1);
}

// asyncio's `Runner.run(coro, context=ctx)` (3.11): the main task runs in
// ctx itself, so what it sets is in ctx afterwards; the runner's own
// context, used by the next plain run(), does not see it.
#[test]
fn runner_run_with_context_runs_the_main_task_in_that_context() {
    static LINE: ContextVar<String> = ContextVar::new("runner_line");
    let mut runner = tulip::Runner::new();
    // Bounded: a hang ends the runs with Interrupted.
    let dog = runner
        .get_loop()
        .unwrap()
        .call_later(10.0, || tulip::interrupt())
        .unwrap();
    runner
        .run(async { LINE.set("runner's own".into()).map(drop) })
        .unwrap();
    let ctx = Context::new();
    ctx.run(|| USER.set("ann".into())).unwrap().unwrap();
    let seen = runner
        .run_with_context(
            async {
                let before = (USER.get(), LINE.get());
                // Something read from a real loopback peer goes into ctx.
                let server = tulip::start_server(
                    |_r, w| async move {
                        w.write(b"hello from the peer\n")?;
                        w.drain().await?;
                        w.close();
                        Ok(())
                    },
                    "127.0.0.1",
                    0,
                )
                .await?;
                let port = server.local_addrs()[0].port();
                let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
                let line = r.readline().await?;
                LINE.set(String::from_utf8_lossy(&line).trim_end().to_string())?;
                w.close();
                server.close();
                server.wait_closed().await?;
                Ok(before)
            },
            ctx.clone(),
        )
        .unwrap();
    assert_eq!(seen, (Some("ann".to_string()), None));
    assert_eq!(ctx.get(&LINE).as_deref(), Some("hello from the peer"));
    let next = runner.run(async { Ok(LINE.get()) }).unwrap();
    assert_eq!(next.as_deref(), Some("runner's own"));
    dog.cancel();
    runner.close();
}

#[test]
fn to_thread_runs_its_function_with_no_context() {
    // A documented deviation: asyncio's to_thread runs func in
    // copy_context(); tulip's context values are Rc and stay on the loop
    // thread, so the worker sees the defaults and cannot set.
    tulip::run(async {
        REQUEST_ID.set(9)?;
        let (seen, set_failed) =
            tulip::to_thread(|| (REQUEST_ID.get(), REQUEST_ID.set(1).is_err())).await?;
        assert_eq!(seen, None);
        assert!(set_failed);
        assert_eq!(REQUEST_ID.get(), Some(9));
        Ok(())
    })
    .unwrap();
}

// ----- callbacks run in a copy of their scheduler's context -----

/// asyncio's `Handle` takes `copy_context()` when it is made: a callback
/// scheduled from a task sees the task's values as they were then, and
/// what it sets stays in its copy.
#[test]
fn call_soon_and_call_later_callbacks_run_in_a_copy_of_the_callers_context() {
    let seen = tulip::run(async {
        let lp = get_running_loop()?;
        REQUEST_ID.set(7)?;
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let (a, b) = (log.clone(), log.clone());
        let _ = lp.call_soon(move || {
            a.borrow_mut().push(("soon", REQUEST_ID.get()));
            REQUEST_ID.set(8).unwrap(); // into the callback's own copy
            a.borrow_mut().push(("soon after set", REQUEST_ID.get()));
        })?;
        let _ = lp.call_later(0.001, move || {
            b.borrow_mut().push(("later", REQUEST_ID.get()))
        })?;
        REQUEST_ID.set(9)?; // after scheduling: the callbacks keep 7
        sleep(0.01).await?;
        assert_eq!(
            REQUEST_ID.get(),
            Some(9),
            "the callback's set stayed in its copy"
        );
        let out = log.borrow().clone();
        Ok(out)
    })
    .unwrap();
    assert_eq!(
        seen,
        [
            ("soon", Some(7)),
            ("soon after set", Some(8)),
            ("later", Some(7))
        ]
    );
}

/// A done callback runs in the context of the code that added it, not of
/// the code that completed the future.
#[test]
fn a_done_callback_runs_in_the_context_it_was_added_in() {
    let seen = tulip::run(async {
        let lp = get_running_loop()?;
        let fut = lp.create_future::<()>();
        let log = std::rc::Rc::new(std::cell::RefCell::new(None));
        let l = log.clone();
        let waiter = create_task({
            let fut = fut.clone();
            async move {
                USER.set("adder".into())?;
                fut.add_done_callback(move |_| *l.borrow_mut() = Some(USER.get()));
                Ok(())
            }
        })?;
        waiter.await?;
        let setter = create_task({
            let fut = fut.clone();
            async move {
                USER.set("completer".into())?;
                fut.set_result(())
            }
        })?;
        setter.await?;
        sleep(0.0).await?;
        let out = log.borrow().clone();
        Ok(out)
    })
    .unwrap();
    assert_eq!(seen, Some(Some("adder".to_string())));
}

/// A reader added from a task runs in a copy of the task's context; a task
/// created from a callback inherits the callback's context.
#[test]
fn readers_and_tasks_made_in_callbacks_see_the_schedulers_values() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let seen = tulip::run(async {
        let lp = get_running_loop()?;
        let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
        b.set_nonblocking(true)?;
        REQUEST_ID.set(11)?;
        let got = lp.create_future::<(Option<u32>, Option<u32>)>();
        let g = got.clone();
        let lp2 = lp.clone();
        let fd = b.as_raw_fd();
        lp.add_reader(fd, move || {
            let _ = lp2.remove_reader(fd);
            let in_reader = REQUEST_ID.get();
            let g = g.clone();
            let t = create_task(async move { Ok(REQUEST_ID.get()) }).unwrap();
            t.add_done_callback(move |t| {
                let _ = g.set_result((in_reader, t.result().unwrap()));
            });
        })?;
        REQUEST_ID.set(12)?;
        a.write_all(b"x")?;
        let out = tulip::timeout(5.0).run(got).await?;
        drop(b);
        Ok(out)
    })
    .unwrap();
    assert_eq!(seen, (Some(11), Some(11)));
}

/// With no values anywhere, a callback starts with no context: `get`
/// gives the default. Its `set` works, as in asyncio, where each callback
/// runs in its own copy of a context (empty here): the value is the
/// callback's alone, seen by what it calls and by a task it creates, and
/// gone when it returns; the next callback, the exception handler and the
/// tasks never see it.
#[test]
fn a_callback_scheduled_with_no_values_sets_into_a_context_of_its_own() {
    use std::cell::RefCell;
    use std::rc::Rc;
    static SEEN: ContextVar<Rc<()>> = ContextVar::new("seen");
    let kept = Rc::new(());
    let weak = Rc::downgrade(&kept);
    let (r, in_handler) = tulip::run(async move {
        let lp = get_running_loop()?;
        let in_handler = Rc::new(RefCell::new(Vec::new()));
        let h = in_handler.clone();
        lp.set_exception_handler(Some(
            move |_: &tulip::EventLoop, _: &tulip::ExceptionContext| {
                h.borrow_mut().push(REQUEST_ID.get())
            },
        ));
        let fut = lp.create_future::<(Option<u32>, Option<u32>, Option<u32>, Option<u32>)>();
        let (f, lp2) = (fut.clone(), lp.clone());
        let _ = lp.call_soon(move || {
            let before = REQUEST_ID.get();
            let token = REQUEST_ID.set(1).expect("a callback's own context");
            SEEN.set(kept).expect("same context");
            let during = REQUEST_ID.get();
            let child = create_task(async { Ok(REQUEST_ID.get()) }).expect("a task");
            REQUEST_ID.reset(token).expect("made here");
            let after_reset = REQUEST_ID.get();
            REQUEST_ID.set(2).expect("again");
            let f2 = f.clone();
            // Scheduled with a value current: a snapshot (2), as before.
            let _ = lp2.call_soon(move || {
                let _ = f2.set_result((before, during, after_reset, REQUEST_ID.get()));
            });
            child.add_done_callback(|t| assert_eq!(t.result().unwrap(), Some(1)));
            panic!("after the sets: the handler must not see them");
        })?;
        let out = fut.await?;
        // A callback scheduled from the task (which has no values).
        // Two callbacks scheduled from the task (which has no values): the
        // second does not see what the first set.
        let g = lp.create_future::<Option<u32>>();
        let g2 = g.clone();
        let _ = lp.call_soon(|| {
            REQUEST_ID.set(3).expect("a callback's own context");
        })?;
        let _ = lp.call_soon(move || {
            let _ = g2.set_result(REQUEST_ID.get());
        })?;
        assert_eq!(g.await?, None, "the next callback starts with none");
        assert_eq!(REQUEST_ID.get(), None, "the task never saw it");
        Ok((out, in_handler))
    })
    .unwrap();
    assert_eq!(r, (None, Some(1), None, Some(2)));
    assert_eq!(*in_handler.borrow(), [None]);
    assert!(
        weak.upgrade().is_none(),
        "the callback's values are dropped"
    );
}

/// A callback scheduled inside `Context::run` runs in a snapshot of that
/// context: later sets on the context are not seen.
#[test]
fn a_callback_scheduled_inside_context_run_sees_a_snapshot() {
    let lp = tulip::EventLoop::new().unwrap();
    let ctx = Context::new();
    let seen = std::rc::Rc::new(std::cell::Cell::new(None));
    let s = seen.clone();
    let l = lp.clone();
    ctx.run(|| {
        REQUEST_ID.set(3).unwrap();
        let _ = l.call_soon(move || s.set(REQUEST_ID.get())).unwrap();
    })
    .unwrap();
    ctx.run(|| REQUEST_ID.set(4)).unwrap().unwrap();
    let stop = lp.clone();
    let _ = lp.call_soon(move || stop.stop()).unwrap();
    lp.run_forever().unwrap();
    lp.close().unwrap();
    assert_eq!(seen.get(), Some(3));
}

/// A transport's reader takes a snapshot too (asyncio's `_add_reader`
/// makes a `Handle` with `copy_context()`): a protocol's `data_received`
/// sees the values of the task that made the connection.
#[test]
fn protocol_callbacks_run_in_the_context_the_transport_was_made_in() {
    use std::rc::Rc;
    use tulip::transports::prelude::*;

    struct Hello;
    impl Protocol for Hello {
        fn connection_made(&self, t: Rc<dyn Transport>) {
            let _ = t.write(b"hi");
        }
    }
    struct Client(tulip::Future<Option<u32>>);
    impl Protocol for Client {
        fn data_received(&self, _data: &[u8]) {
            if !self.0.done() {
                let _ = self.0.set_result(REQUEST_ID.get());
            }
        }
    }
    let seen = tulip::run(async {
        let lp = get_running_loop()?;
        let server = lp.create_server(|| Rc::new(Hello), "127.0.0.1", 0).await?;
        let port = server.local_addrs()[0].port();
        REQUEST_ID.set(5)?;
        let got = lp.create_future();
        let g = got.clone();
        let (t, _) = lp
            .create_connection(move || Rc::new(Client(g)), "127.0.0.1", port)
            .await?;
        REQUEST_ID.set(6)?; // later: the reader keeps its snapshot
        let v = tulip::timeout(5.0).run(got).await?;
        t.close();
        server.close();
        Ok(v)
    })
    .unwrap();
    assert_eq!(seen, Some(5));
}

/// A loop run inside `ctx.run` (as `ctx.run(|| tulip::run(..))` is
/// documented) does not lend `ctx` to its callbacks: a callback scheduled
/// where no value is current runs with no context, not in `ctx`. asyncio's
/// callback runs in its own `copy_context()` (here: empty), so it neither
/// sees `ctx`'s values nor changes `ctx`.
#[test]
fn a_loop_run_inside_context_run_does_not_lend_that_context_to_callbacks() {
    let ctx = Context::new();
    ctx.run(|| REQUEST_ID.set(5)).unwrap().unwrap();
    let seen = ctx
        .run(|| {
            tulip::run(async {
                let lp = get_running_loop()?;
                // The main task starts with a copy of ctx; a task made in
                // an empty context has no values.
                let t = lp.create_task_with(
                    async {
                        let lp = get_running_loop()?;
                        let fut = lp.create_future::<(Option<u32>, bool)>();
                        let f = fut.clone();
                        let _ = lp.call_soon(move || {
                            let seen = REQUEST_ID.get();
                            let _ = f.set_result((seen, REQUEST_ID.set(6).is_ok()));
                        })?;
                        tulip::timeout(5.0).run(fut).await
                    },
                    TaskOptions {
                        context: Some(Context::new()),
                        ..TaskOptions::default()
                    },
                )?;
                t.await
            })
        })
        .unwrap()
        .unwrap();
    assert_eq!(seen.0, None, "the callback saw the outer ctx's value");
    assert_eq!(ctx.get(&REQUEST_ID), Some(5), "the callback changed ctx");
}

/// A callback that runs in a copy of its scheduler's context keeps its own
/// name: in its handle (`callback_name`, the repr) and in the "Exception in
/// callback ..." report. asyncio's `Handle` repr names the callback, the
/// context aside; tulip named its own wrapper (`EventLoop::call_soon<..>`,
/// `FutureCore::add_done_callback<..>`) once a value was set.
#[test]
fn a_callback_run_in_a_context_keeps_its_own_name() {
    fn tick() {}
    fn failing_done(_: &tulip::Future<()>) {
        panic!("boom from a done callback");
    }
    let (soon, later, report) = tulip::run(async {
        let lp = get_running_loop()?;
        REQUEST_ID.set(1)?;
        let soon = lp.call_soon(tick)?;
        let later = lp.call_later(0.0, tick)?;
        let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let r = reports.clone();
        lp.set_exception_handler(Some(
            move |_: &tulip::EventLoop, c: &tulip::ExceptionContext| {
                r.borrow_mut().push(c.message.clone())
            },
        ));
        let fut = lp.create_future::<()>();
        fut.add_done_callback(failing_done);
        fut.set_result(())?;
        sleep(0.0).await?;
        sleep(0.0).await?;
        let report = reports.borrow().clone();
        Ok((soon.callback_name(), later.handle().callback_name(), report))
    })
    .unwrap();
    let tick_name = std::any::type_name_of_val(&tick);
    assert_eq!(soon, tick_name);
    assert_eq!(later, tick_name);
    let expected = format!(
        "Exception in callback {}",
        std::any::type_name_of_val(&failing_done)
    );
    assert_eq!(report, [expected]);
}

/// A reader's reports name the reader, whether it runs in a context or
/// not, and though a level-triggered reader is wrapped to re-arm itself.
#[test]
fn a_reader_keeps_its_own_name_in_reports() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    fn failing_reader() {
        panic!("boom from a reader");
    }
    let reports = tulip::run(async {
        let lp = get_running_loop()?;
        let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let r = reports.clone();
        lp.set_exception_handler(Some(
            move |_: &tulip::EventLoop, c: &tulip::ExceptionContext| {
                r.borrow_mut().push(c.message.clone())
            },
        ));
        let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
        a.write_all(b"x")?;
        for with_values in [false, true] {
            if with_values {
                REQUEST_ID.set(1)?;
            }
            lp.add_reader(b.as_raw_fd(), failing_reader)?;
            // Nothing else ready: the loop polls, and the reader runs.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let before = reports.borrow().len();
            while reports.borrow().len() == before {
                assert!(std::time::Instant::now() < deadline, "the reader never ran");
                sleep(0.001).await?;
            }
            lp.remove_reader(b.as_raw_fd())?;
        }
        let out = reports.borrow().clone();
        Ok(out)
    })
    .unwrap();
    let expected = format!(
        "Exception in callback {}",
        std::any::type_name_of_val(&failing_reader)
    );
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(reports.iter().all(|r| *r == expected), "{reports:?}");
}

// CPython runs each step of a task created with `context=ctx` inside
// `ctx.run`, so ctx stays entered for the whole step, also while another
// context is entered on top of it: `other.run(lambda: ctx.run(f))` there
// raises RuntimeError ("cannot enter context ... is already entered").
#[test]
fn a_tasks_context_stays_entered_under_another_context_run() {
    tulip::run(async {
        let lp = get_running_loop()?;
        let ctx = Context::new();
        ctx.run(|| V.set(1))??;
        let c2 = ctx.clone();
        let t = lp.create_task_with(
            async move {
                let other = Context::new();
                let nested = other.run(|| c2.run(|| V.set(2)).map(|_| ()))?;
                // Entered again once `other.run` has returned? No: it fails
                // directly too, and the task still runs in ctx.
                Ok((nested, c2.run(|| ()).is_err(), V.get()))
            },
            in_context(&ctx),
        )?;
        let (nested, direct, seen) = t.await?;
        assert!(
            matches!(nested, Err(Error::Runtime(_))),
            "ctx is entered by the task's step: {nested:?}"
        );
        assert!(direct);
        assert_eq!((seen, ctx.get(&V)), (Some(1), Some(1)));
        // Once the task is done, ctx is free again.
        assert_eq!(ctx.run(|| V.get())?, Some(1));
        Ok(())
    })
    .unwrap();
}

/// Python's `Token`: `reset(token)` puts back the value before the set
/// (or unsets), and refuses a token of another variable (ValueError) or
/// one made in another context (ValueError): a child task's (its own copy),
/// or a `Context::run`'s. A token cannot be used twice: `reset` takes it.
#[test]
fn reset_takes_a_token_of_this_variable_made_in_this_context() {
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    tulip::run(async {
        let first = V.set(1)?;
        assert_eq!(first.old_value(), None, "Token.MISSING");
        let second = V.set(2)?;
        assert_eq!(second.old_value(), Some(&1));
        // Another variable's token.
        let other = OTHER.set(9)?;
        let err = V.reset(other).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("different ContextVar")),
            "{err:?}"
        );
        // A token made in a child task's context.
        let slot = std::rc::Rc::new(std::cell::RefCell::new(None));
        let s2 = slot.clone();
        tulip::create_task(async move {
            *s2.borrow_mut() = Some(V.set(3)?);
            Ok(())
        })?
        .await?;
        let made_in_child = slot.borrow_mut().take().expect("set in the child");
        let err = V.reset(made_in_child).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("different Context")),
            "{err:?}"
        );
        // A token made inside a Context::run.
        let ctx = Context::new();
        let inside = ctx.run(|| V.set(4))??;
        let err = V.reset(inside).unwrap_err();
        assert!(matches!(&err, Error::InvalidArgument(_)), "{err:?}");
        assert_eq!(V.get(), Some(2), "failed resets change nothing");
        // In order, back to unset.
        V.reset(second)?;
        assert_eq!(V.get(), Some(1));
        V.reset(first)?;
        assert_eq!(V.get(), None);
        Ok(())
    })
    .unwrap();
}

// ===== Task.get_context(), call_soon(context=), add_done_callback(context=) =====

/// asyncio's `Task.get_context()` is the task's own context, not a copy:
/// `ctx.run` on it sees and changes the task's values, and asking twice
/// gives the same context. A task created with `context=ctx` gives `ctx`.
#[test]
fn task_get_context_is_the_tasks_own_context() {
    tulip::run(async {
        REQUEST_ID.set(1)?;
        let t = create_task(async {
            USER.set("ann".into())?;
            sleep(0.0).await?;
            sleep(0.0).await?;
            Ok((REQUEST_ID.get(), USER.get()))
        })?;
        sleep(0.0).await?; // t has set "ann" and waits
        let ctx = t.get_context();
        assert!(ctx.ptr_eq(&t.get_context()), "one context, asked twice");
        assert_eq!(ctx.get(&REQUEST_ID), Some(1), "inherited");
        assert_eq!(ctx.get(&USER).as_deref(), Some("ann"), "the task's own set");
        ctx.run(|| USER.set("bob".into()))??; // the task's value, changed
        ctx.run(|| REQUEST_ID.set(2))??;
        assert_eq!(REQUEST_ID.get(), Some(1), "the creator's own is apart");
        let (id, user) = t.await?;
        assert_eq!((id, user.as_deref()), (Some(2), Some("bob")));

        let shared = Context::new();
        let opts = TaskOptions {
            context: Some(shared.clone()),
            ..Default::default()
        };
        let u = get_running_loop()?.create_task_with(async { Ok(()) }, opts)?;
        assert!(u.get_context().ptr_eq(&shared));
        u.await?;
        // The current task's, through TaskRef (asyncio.current_task().get_context()).
        let me = tulip::current_task().expect("in a task").get_context();
        assert_eq!(me.get(&REQUEST_ID), Some(1));
        Ok(())
    })
    .unwrap();
}

/// Inside the task its own context is entered (asyncio runs each step in
/// `ctx.run`), also when asked for from inside another context's `run`,
/// where `get_context` still gives the task's own, not the one entered.
/// Tokens made before `get_context` still reset the same context.
#[test]
fn a_tasks_own_context_is_entered_while_it_runs() {
    tulip::run(async {
        let t = create_task(async {
            let token = REQUEST_ID.set(1)?;
            let other = Context::new();
            let (seen, refused) = other.run(|| {
                let own = tulip::current_task().expect("in a task").get_context();
                (own.get(&REQUEST_ID), own.run(|| ()).is_err())
            })?;
            assert_eq!(seen, Some(1), "the task's own context, not `other`");
            assert!(refused, "entered: the task runs in it");
            let own = tulip::current_task().expect("in a task").get_context();
            assert!(own.run(|| ()).is_err(), "entered while the task steps");
            REQUEST_ID.set(2)?;
            REQUEST_ID.reset(token)?; // made before get_context: same context
            assert_eq!(REQUEST_ID.get(), None);
            REQUEST_ID.set(3)?;
            Ok(own)
        })?;
        let own = t.await?;
        // Not left entered once the task is done.
        assert_eq!(own.run(|| REQUEST_ID.get())?, Some(3));
        Ok(())
    })
    .unwrap();
}

/// asyncio's `call_soon`/`call_later`/`call_at` with `context=ctx` and
/// `add_done_callback(fn, context=ctx)`: the callback runs in `ctx`
/// itself, so its sets stay there.
#[test]
fn callbacks_given_a_context_run_in_it() {
    static HITS: ContextVar<u32> = ContextVar::new("hits");
    fn bump() {
        HITS.set(HITS.get_or(0) + 1).expect("in a context");
    }
    tulip::run(async {
        let lp = get_running_loop()?;
        let ctx = Context::new();
        let _ = lp.call_soon_in(ctx.clone(), bump)?;
        let _ = lp.call_later_in(ctx.clone(), 0.0, bump)?;
        let _ = lp.call_at_in(ctx.clone(), lp.time(), bump)?;
        let fut = lp.create_future::<()>();
        fut.add_done_callback_in(ctx.clone(), |_| bump());
        fut.set_result(())?;
        let t = create_task(async { Ok(()) })?;
        t.add_done_callback_in(ctx.clone(), |_| bump());
        t.await?;
        sleep(0.0).await?;
        sleep(0.0).await?;
        assert_eq!(ctx.get(&HITS), Some(5));
        assert_eq!(HITS.get(), None, "the task's own context is apart");
        Ok(())
    })
    .unwrap();
}

/// A callback whose context is entered when its turn comes does not run:
/// asyncio's `ctx.run` raises RuntimeError, which the loop reports as the
/// callback's error.
#[test]
fn a_callback_in_an_entered_context_is_reported_and_does_not_run() {
    let ctx = Context::new();
    let ran = std::rc::Rc::new(std::cell::Cell::new(false));
    let reports = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let lp = tulip::EventLoop::new().unwrap();
    let r = reports.clone();
    lp.set_exception_handler(Some(
        move |_: &tulip::EventLoop, c: &tulip::ExceptionContext| {
            r.borrow_mut().push((c.message.clone(), c.error.clone()))
        },
    ));
    let (lp2, ctx2, ran2) = (lp.clone(), ctx.clone(), ran.clone());
    ctx.run(|| {
        lp2.run_until_complete(async move {
            let lp = get_running_loop()?;
            let _ = lp.call_soon_in(ctx2, move || ran2.set(true))?;
            sleep(0.0).await?;
            Ok(())
        })
    })
    .unwrap()
    .unwrap();
    assert!(!ran.get());
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (message, error) = &reports[0];
    assert!(message.starts_with("Exception in callback"), "{message}");
    assert!(
        matches!(error, Some(Error::Runtime(m)) if m.contains("already entered")),
        "{error:?}"
    );
}

/// A value of a callback's own context whose `Drop` sets a variable: it is
/// dropped at the next look at the context (the callback is over), and
/// what it sets there belongs to no callback. asyncio drops a callback's
/// context between callbacks, outside any `Handle._context.run`, so the
/// next callback (in a copy of its own) never sees that set. Before, the
/// destructor's set made a context marked as the next callback's: that
/// callback saw the value, and its own first `set` panicked ("made only
/// where there is no context").
#[test]
fn a_stale_callback_contexts_destructor_sets_nothing_for_the_next_callback() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    struct SetsOnDrop;
    impl Drop for SetsOnDrop {
        fn drop(&mut self) {
            let _ = USER.set("from drop".into());
        }
    }
    static GUARD: ContextVar<Rc<SetsOnDrop>> = ContextVar::new("guard");
    let lp = tulip::EventLoop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(
        move |_: &tulip::EventLoop, c: &tulip::ExceptionContext| {
            r.borrow_mut().push(format!("{}: {:?}", c.message, c.error))
        },
    ));
    let _ = lp
        .call_soon(|| {
            GUARD
                .set(Rc::new(SetsOnDrop))
                .expect("a callback's own context");
        })
        .unwrap();
    let seen = Rc::new(Cell::new(None));
    let s = seen.clone();
    let _ = lp
        .call_soon(move || {
            let first = REQUEST_ID.get(); // drops the previous callback's values
            let user = USER.get();
            REQUEST_ID.set(1).expect("a context of its own");
            let done = (first, user, REQUEST_ID.get());
            assert_eq!(done, (None, None, Some(1)));
            s.set(Some(done));
        })
        .unwrap();
    // Again, with a `set` as the next callback's first look.
    let _ = lp
        .call_soon(|| {
            GUARD
                .set(Rc::new(SetsOnDrop))
                .expect("a callback's own context");
        })
        .unwrap();
    let s = seen.clone();
    let _ = lp
        .call_soon(move || {
            REQUEST_ID.set(2).expect("a context of its own");
            s.set(Some((None, USER.get(), REQUEST_ID.get())));
        })
        .unwrap();
    let stop = lp.clone();
    let _ = lp.call_soon(move || stop.stop()).unwrap();
    lp.run_forever().unwrap();
    lp.close().unwrap();
    assert_eq!(*reports.borrow(), Vec::<String>::new());
    assert_eq!(seen.take(), Some((None, None, Some(2))));
}

/// asyncio's eager task runs its first step inside its creator's step
/// (`__eager_start`: `self._context.run(...)` nested in the creator's own
/// `_context.run`), so the creator's context is entered meanwhile: the
/// eager task cannot `run` it (RuntimeError), nor change the creator's
/// values through it. Before, tulip let it: the creator found its value
/// changed under it.
#[test]
fn an_eager_task_cannot_enter_its_creators_context() {
    let eager = || TaskOptions {
        eager: Some(true),
        ..TaskOptions::default()
    };
    tulip::run(async move {
        let lp = get_running_loop()?;
        // The main task runs in the runner's context (a shared Context).
        V.set(1)?;
        let me = tulip::current_task().expect("in a task");
        let t = lp.create_task_with(
            async move { Ok(me.get_context().run(|| V.set(2)).is_err()) },
            eager(),
        )?;
        assert!(t.await?, "the main task's context is entered");
        assert_eq!(V.get(), Some(1));
        // A task with its own values, made a Context by the eager task's
        // get_context: entered too, and the creator's own from then on.
        let lp2 = lp.clone();
        let creator = create_task(async move {
            V.set(3)?;
            let me = tulip::current_task().expect("in a task");
            let t = lp2.create_task_with(
                async move {
                    let ctx = me.get_context();
                    let refused = ctx.run(|| V.set(4)).is_err();
                    Ok((ctx, refused))
                },
                eager(),
            )?;
            let (ctx, refused) = t.result()?;
            let seen = V.get();
            V.set(5)?;
            let own = tulip::current_task().expect("in a task").get_context();
            Ok((refused, seen, ctx.ptr_eq(&own), ctx.get(&V)))
        })?;
        assert_eq!(creator.await?, (true, Some(3), true, Some(5)));
        // And inside a Context::run of the creator, the same.
        let ctx = Context::new();
        let c = ctx.clone();
        let lp3 = lp.clone();
        let refused = ctx.run(move || {
            lp3.create_task_with(async move { Ok(c.run(|| ()).is_err()) }, eager())
        })??;
        assert!(refused.await?);
        assert_eq!(ctx.run(|| V.get())?, None, "not left entered");
        Ok(())
    })
    .unwrap();
}

/// What a reader's calls see of each other's `set`s, as asyncio's reader
/// `Handle` holds one `copy_context()` for all its calls: with a value
/// current at `add_reader`, call 1 sees it and call 2 sees call 1's set,
/// while the task's later set is seen by neither; with none current, the
/// copy is an empty context that still persists (call 1 sees nothing,
/// call 2 sees call 1's set). CPython 3.12.1 and 3.13.0, a socketpair:
/// `with_value [1, 10]`, `no_value [None, 10]`, the task seeing its own 2
/// and None.
#[test]
fn a_readers_calls_share_one_context_as_asyncios_handle_does() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    for with_value in [true, false] {
        let (seen, task_sees) = tulip::run(async move {
            let lp = get_running_loop()?;
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            b.set_nonblocking(true)?;
            let (a, b) = (std::rc::Rc::new(a), std::rc::Rc::new(b));
            if with_value {
                REQUEST_ID.set(1)?;
            }
            let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let done = lp.create_future::<()>();
            let (s, d, lp2, a2, b2) =
                (seen.clone(), done.clone(), lp.clone(), a.clone(), b.clone());
            let fd = b.as_raw_fd();
            lp.add_reader(fd, move || {
                let _ = (&*b2).read(&mut [0; 1]);
                s.borrow_mut().push(REQUEST_ID.get());
                let n = s.borrow().len() as u32;
                REQUEST_ID.set(n * 10).expect("the reader's context");
                if n == 2 {
                    let _ = lp2.remove_reader(fd);
                    let _ = d.set_result(());
                } else {
                    let _ = (&*a2).write_all(b"y");
                }
            })?;
            if with_value {
                REQUEST_ID.set(2)?;
            }
            (&*a).write_all(b"x")?;
            tulip::timeout(5.0).run(done).await?;
            let out = seen.borrow().clone();
            Ok((out, REQUEST_ID.get()))
        })
        .unwrap();
        if with_value {
            assert_eq!((seen, task_sees), (vec![Some(1), Some(10)], Some(2)));
        } else {
            assert_eq!((seen, task_sees), (vec![None, Some(10)], None));
        }
    }
}

/// A signal handler's runs share one context too (asyncio's
/// `add_signal_handler` makes one `Handle`, which `_handle_signal`
/// schedules on each delivery): CPython gives `[2, 101]` with a value
/// current (the handler added after a set of 2) and `[None, 101]` with none.
#[test]
fn a_signal_handlers_runs_share_one_context_as_asyncios_handle_does() {
    for with_value in [true, false] {
        let seen = tulip::run(async move {
            let lp = get_running_loop()?;
            if with_value {
                REQUEST_ID.set(2)?;
            }
            let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let done = lp.create_future::<()>();
            let (s, d) = (seen.clone(), done.clone());
            lp.add_signal_handler(libc::SIGUSR1, move || {
                s.borrow_mut().push(REQUEST_ID.get());
                let n = s.borrow().len() as u32;
                REQUEST_ID.set(100 + n).expect("the handler's context");
                if n == 2 {
                    let _ = d.set_result(());
                } else {
                    // SAFETY: raise() signals this thread; the handler is installed.
                    unsafe { libc::raise(libc::SIGUSR1) };
                }
            })?;
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGUSR1) };
            tulip::timeout(5.0).run(done).await?;
            lp.remove_signal_handler(libc::SIGUSR1)?;
            let out = seen.borrow().clone();
            Ok(out)
        })
        .unwrap();
        let first = with_value.then_some(2);
        assert_eq!(seen, [first, Some(101)], "with_value={with_value}");
    }
}

/// asyncio 3.12's `Handle.get_context()`: the snapshot a handle took (the
/// same `Context` at each call, and the one the callback's `set` goes
/// into: CPython prints `1 True`, then `after run 5 1`), a timer's too,
/// and the very context given with `context=` (`given True`). tulip's
/// deviations: `None` for a handle made with no values (asyncio: an empty
/// `Context`) and for a cancelled one.
#[test]
fn handle_get_context_is_the_context_the_callback_runs_in() {
    tulip::run(async {
        let lp = get_running_loop()?;
        let none = lp.call_soon(|| ())?;
        assert!(none.get_context().is_none(), "made with no values");
        REQUEST_ID.set(1)?;
        let h = lp.call_soon(|| {
            REQUEST_ID.set(5).unwrap();
        })?;
        let ctx = h.get_context().expect("a snapshot");
        assert!(ctx.ptr_eq(&h.get_context().unwrap()), "one context");
        assert_eq!(ctx.get(&REQUEST_ID), Some(1));
        sleep(0.0).await?;
        assert_eq!(ctx.get(&REQUEST_ID), Some(5), "the callback's set");
        assert!(ctx.ptr_eq(&h.get_context().unwrap()), "kept after the run");
        assert_eq!(REQUEST_ID.get(), Some(1));
        let given = Context::new();
        let g = lp.call_soon_in(given.clone(), || ())?;
        assert!(g.get_context().unwrap().ptr_eq(&given));
        let t = lp.call_later(10.0, || ())?;
        assert_eq!(t.get_context().unwrap().get(&REQUEST_ID), Some(1));
        t.cancel();
        assert!(t.get_context().is_none(), "dropped with the callback");
        Ok(())
    })
    .unwrap();
}

/// Handed out by `get_context`, a snapshot can be entered when its
/// callback's turn comes: the callback then does not run and the loop
/// reports the `Runtime` error, as asyncio's `Handle._run` reports
/// `ctx.run`'s RuntimeError ("cannot enter context").
#[test]
fn a_callback_whose_snapshot_is_entered_is_reported_and_does_not_run() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    let lp = tulip::EventLoop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(
        move |_: &tulip::EventLoop, c: &tulip::ExceptionContext| {
            r.borrow_mut().push(c.error.clone())
        },
    ));
    let ran = Rc::new(Cell::new(false));
    let r2 = ran.clone();
    let outer = Context::new();
    let h = outer
        .run(|| {
            REQUEST_ID.set(1).unwrap();
            lp.call_soon(move || r2.set(true))
        })
        .unwrap()
        .unwrap();
    let snapshot = h.get_context().expect("a value was current");
    assert!(!snapshot.ptr_eq(&outer));
    snapshot
        .run(|| lp.run_until_complete(async { sleep(0.0).await }))
        .unwrap()
        .unwrap();
    lp.close().unwrap();
    assert!(!ran.get());
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        matches!(&reports[0], Some(Error::Runtime(m)) if m.contains("already entered")),
        "{reports:?}"
    );
}
