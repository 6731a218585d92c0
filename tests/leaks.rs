//! Resource leaks in long-running use: each scenario runs many times, then
//! the open fds must be back to their baseline and everything the scenario
//! captured (an `Rc` token, held by the loop's exception handler too, so
//! the loop itself must be freed) must have been dropped. CPython frees all
//! of these after `loop.close()` and a `gc.collect()`; tulip has no
//! collector. The tests take one lock: fds are counted process-wide.
#![allow(clippy::redundant_async_block, unused_must_use)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};

use tulip::{EventLoop, ExceptionContext};

static SERIAL: Mutex<()> = Mutex::new(());
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The loop holds `alive` through its exception handler: freed with the loop.
fn tracked_loop(alive: &Rc<()>) -> EventLoop {
    let lp = EventLoop::new().unwrap();
    let a = alive.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, _ctx: &ExceptionContext| {
        let _ = &a;
    }));
    lp
}

/// Named tokens, to tell which of several captures leaked.
type Tokens = Rc<RefCell<Vec<(&'static str, Rc<()>)>>>;

fn tok(name: &'static str, v: &Tokens) -> Rc<()> {
    let r = Rc::new(());
    v.borrow_mut().push((name, r.clone()));
    r
}
fn check_toks(v: &Tokens) {
    let leaked: Vec<_> = v
        .borrow()
        .iter()
        .filter(|(_, r)| Rc::strong_count(r) > 1)
        .map(|(n, _)| *n)
        .collect();
    assert!(leaked.is_empty(), "leaked: {leaked:?}");
}

fn check(name: &str, before: usize, alive: Rc<()>) {
    assert_eq!(Rc::strong_count(&alive), 1, "{name}: objects leaked");
    assert_eq!(open_fds(), before, "{name}: fds leaked");
}

/// The common shape: `body` runs on a fresh loop, given a token that all
/// the scenario makes must hold; then the loop is closed and dropped, and
/// the fds must be back to their count and the token freed everywhere.
fn scenario<F>(name: &str, body: impl FnOnce(Rc<()>) -> F)
where
    F: std::future::Future<Output = tulip::Result<()>> + 'static,
{
    let _g = serial();
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    lp.run_until_complete(body(alive.clone())).unwrap();
    lp.close().unwrap();
    drop(lp);
    check(name, before, alive);
}

/// A stream server on loopback whose handler holds `alive` and the
/// writer, and reads until the client's EOF.
async fn eof_server(alive: &Rc<()>) -> tulip::Result<tulip::Server> {
    let alive = alive.clone();
    tulip::start_server(
        move |r, w| {
            let a = alive.clone();
            async move {
                let _a = a;
                let _ = r.read_to_eof().await;
                let _w = w;
                Ok(())
            }
        },
        "127.0.0.1",
        0,
    )
    .await
}

#[test]
fn streams_normal_close() {
    scenario("streams_normal_close", |a| async move {
        let a2 = a.clone();
        let server = tulip::start_server(
            move |r, w| {
                let a = a2.clone();
                async move {
                    let _a = a;
                    let line = r.readline().await?;
                    w.write(&line)?;
                    w.close();
                    w.wait_closed().await
                }
            },
            "127.0.0.1",
            0,
        )
        .await?;
        let port = server.local_addrs()[0].port();
        for _ in 0..100 {
            let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
            w.write(b"hi\n")?;
            let l = r.readline().await?;
            assert_eq!(l, b"hi\n");
            w.close();
            w.wait_closed().await?;
        }
        server.close();
        server.wait_closed().await?;
        drop(a);
        Ok(())
    });
}

#[test]
fn streams_abort() {
    scenario("streams_abort", |a| async move {
        let server = eof_server(&a).await?;
        let port = server.local_addrs()[0].port();
        for _ in 0..100 {
            let (_r, w) = tulip::open_connection("127.0.0.1", port).await?;
            w.write(b"hi\n")?;
            w.transport().abort();
            tulip::sleep(0.0).await?;
        }
        for _ in 0..20 {
            tulip::sleep(0.001).await?;
        }
        server.close();
        server.wait_closed().await?;
        drop(a);
        Ok(())
    });
}

#[test]
fn streams_open_at_loop_close() {
    let _g = serial();
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    let a = alive.clone();
    let keep: Rc<RefCell<Vec<tulip::StreamWriter>>> = Rc::default();
    let k = keep.clone();
    lp.run_until_complete(async move {
        let server = eof_server(&a).await?;
        let port = server.local_addrs()[0].port();
        for _ in 0..50 {
            let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
            let a = a.clone();
            tulip::create_task(async move {
                let _a = a;
                let _ = r.read_to_eof().await;
                Ok(())
            })?;
            k.borrow_mut().push(w);
        }
        for _ in 0..5 {
            tulip::sleep(0.001).await?;
        }
        drop(a);
        drop(server);
        Ok(())
    })
    .unwrap();
    lp.close().unwrap();
    drop(lp);
    keep.borrow_mut().clear();
    check("streams_open_at_loop_close", before, alive);
}

#[test]
fn streams_open_at_loop_drop_without_close() {
    let _g = serial();
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    let a = alive.clone();
    lp.run_until_complete(async move {
        let server = eof_server(&a).await?;
        let port = server.local_addrs()[0].port();
        for _ in 0..50 {
            let (r, w) = tulip::open_connection("127.0.0.1", port).await?;
            let a = a.clone();
            tulip::create_task(async move {
                let _a = a;
                let _w = w;
                let _ = r.read_to_eof().await;
                Ok(())
            })?;
        }
        for _ in 0..5 {
            tulip::sleep(0.001).await?;
        }
        drop(a);
        drop(server);
        Ok(())
    })
    .unwrap();
    drop(lp);
    check("streams_open_at_loop_drop_without_close", before, alive);
}

#[test]
fn server_close_clients() {
    scenario("server_close_clients", |a| async move {
        let server = eof_server(&a).await?;
        let port = server.local_addrs()[0].port();
        let mut clients = vec![];
        for _ in 0..50 {
            clients.push(tulip::open_connection("127.0.0.1", port).await?);
        }
        tulip::sleep(0.01).await?;
        server.close();
        server.abort_clients();
        server.wait_closed().await?;
        for (r, _w) in &clients {
            let _ = r.read_to_eof().await;
        }
        drop(clients);
        tulip::sleep(0.0).await?;
        drop(a);
        Ok(())
    });
}

#[test]
fn gathers_cancelled() {
    scenario("gathers_cancelled", |a| async move {
        for _ in 0..200 {
            let a1 = a.clone();
            let a2 = a.clone();
            let c1 = tulip::create_task(async move {
                let _a = a1;
                tulip::sleep(3600.0).await
            })?;
            let c2 = tulip::create_task(async move {
                let _a = a2;
                tulip::sleep(3600.0).await
            })?;
            let g = tulip::gather(vec![c1, c2]);
            let t = tulip::create_task(async move { g.await.map(drop) })?;
            tulip::sleep(0.0).await?;
            t.cancel();
            let _ = t.wait_done().await;
        }
        let lp = tulip::get_running_loop()?;
        // shield, wait, as_completed
        for _ in 0..100 {
            let a1 = a.clone();
            let inner = tulip::create_task(async move {
                let _a = a1;
                tulip::sleep(0.0).await?;
                Ok(1)
            })?;
            let s = tulip::shield(inner);
            let t = tulip::create_task(async move { s.await })?;
            tulip::sleep(0.0).await?;
            t.cancel();
            let _ = t.wait_done().await;
            let a1 = a.clone();
            let c = lp.create_task(async move {
                let _a = a1;
                tulip::sleep(3600.0).await
            })?;
            let t = tulip::create_task(async move {
                tulip::wait(vec![c], Some(0.0), tulip::ReturnWhen::AllCompleted)
                    .await
                    .map(drop)
            })?;
            let _ = t.wait_done().await;
            let a1 = a.clone();
            let c = lp.create_task(async move {
                let _a = a1;
                tulip::sleep(3600.0).await
            })?;
            let mut ac = tulip::as_completed(vec![c.clone()], None);
            let t = tulip::create_task(async move { ac.next().await.unwrap() })?;
            tulip::sleep(0.0).await?;
            t.cancel();
            c.cancel();
            let _ = t.wait_done().await;
        }
        for _ in 0..10 {
            tulip::sleep(0.0).await?;
        }
        drop(a);
        Ok(())
    });
}

#[test]
fn taskgroups() {
    scenario("taskgroups", |a| async move {
        for i in 0..100 {
            let a = a.clone();
            let t = tulip::create_task(async move {
                tulip::TaskGroup::run(|tg2| async move {
                    let a1 = a.clone();
                    tg2.create_task(async move {
                        let _a = a1;
                        tulip::sleep(3600.0).await
                    })?;
                    let a1 = a.clone();
                    tg2.create_task(async move {
                        let _a = a1;
                        if i % 2 == 0 {
                            Err(tulip::Error::Runtime("boom".into()))
                        } else {
                            tulip::sleep(3600.0).await
                        }
                    })?;
                    tulip::sleep(3600.0).await
                })
                .await
            })?;
            tulip::sleep(0.0).await?;
            tulip::sleep(0.0).await?;
            t.cancel();
            let _ = t.wait_done().await;
        }
        drop(a);
        Ok(())
    });
}

/// A loop closed while a TaskGroup still has children: a pending child
/// (its notification holds the group, whose slab holds the child) and a
/// child done at `create_task` whose notification still waits in the
/// ready queue. Closing breaks both cycles, as gather's (CPython's
/// collector frees them).
#[test]
fn taskgroup_children_left_when_the_loop_closes() {
    let _g = serial();
    let toks: Tokens = Rc::default();
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    lp.set_task_factory(tulip::TaskFactory::Eager);
    let (pending, done, body) = (
        tok("pending child", &toks),
        tok("done child", &toks),
        tok("body", &toks),
    );
    let reached = Rc::new(std::cell::Cell::new(false));
    let r = reached.clone();
    let parent = lp
        .create_task(async move {
            let _body = body;
            tulip::TaskGroup::run(|tg| async move {
                tg.create_task(async move {
                    let _p = pending;
                    tulip::sleep(3600.0).await
                })?;
                let d = tg.create_task(async move {
                    let _d = done;
                    Err::<(), _>(tulip::Error::msg("failed"))
                })?;
                // The done child's notification waits in the ready queue,
                // and the loop stops at the end of this iteration.
                r.set(d.done() && tg.len() == 2);
                tulip::get_running_loop()?.stop();
                tulip::sleep(3600.0).await
            })
            .await
        })
        .unwrap();
    // One iteration: the parent's step runs the body up to its sleep,
    // the children eagerly inside it, and stops the loop.
    lp.run_forever().unwrap();
    assert!(reached.get() && !parent.done());
    drop(parent);
    lp.close().unwrap();
    drop(lp);
    check_toks(&toks);
    check("taskgroup children at close", before, alive);
}

#[test]
fn handlers_capturing_the_loop_are_freed_by_close() {
    let _g = serial();
    let toks = Rc::new(RefCell::new(Vec::new()));
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    // reader capturing the loop and the alive token
    let (rd, wr) = std::os::unix::net::UnixStream::pair().unwrap();
    {
        let (l, a) = (lp.clone(), tok("reader", &toks));
        lp.add_reader(std::os::fd::AsRawFd::as_raw_fd(&rd), move || {
            let _ = (&l, &a);
        })
        .unwrap();
        let (l, a) = (lp.clone(), tok("writer", &toks));
        lp.add_writer(std::os::fd::AsRawFd::as_raw_fd(&wr), move || {
            let _ = (&l, &a);
        })
        .unwrap();
        let (l, a) = (lp.clone(), tok("signal", &toks));
        lp.add_signal_handler(libc::SIGUSR2, move || {
            let _ = (&l, &a);
        })
        .unwrap();
        let (l, a) = (lp.clone(), tok("timer", &toks));
        lp.call_later(3600.0, move || {
            let _ = (&l, &a);
        })
        .unwrap();
        let (l, a) = (lp.clone(), tok("soon", &toks));
        lp.call_soon(move || {
            let _ = (&l, &a);
        })
        .unwrap();
        let (l, a) = (lp.clone(), tok("donecb", &toks));
        let f: tulip::Future<()> = lp.create_future();
        f.add_done_callback(move |_| {
            let _ = (&l, &a);
        });
        let (l, a) = (lp.clone(), tok("task", &toks));
        lp.create_task(async move {
            let _ = (&l, &a);
            let me = tulip::current_task();
            let _ = &me;
            tulip::sleep(3600.0).await
        })
        .unwrap();
        let l = lp.clone();
        lp.add_close_hook(move || drop(l));
    }
    lp.run_until_complete(async { tulip::sleep(0.0).await })
        .unwrap();
    lp.close().unwrap();
    drop(lp);
    drop((rd, wr));
    check_toks(&toks);
    check("handlers", before, alive);
}

#[test]
fn handlers_capturing_the_loop_at_drop_without_close() {
    let _g = serial();
    let toks = Rc::new(RefCell::new(Vec::new()));
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    {
        let a = tok("signal", &toks);
        lp.add_signal_handler(libc::SIGUSR2, move || {
            let _ = &a;
        })
        .unwrap();
        let a = tok("donecb", &toks);
        let f: tulip::Future<()> = lp.create_future();
        f.add_done_callback(move |_| {
            let _ = &a;
        });
        let a = tok("task", &toks);
        let h = lp.handle();
        lp.create_task(async move {
            let _ = (&a, &h);
            tulip::sleep(3600.0).await
        })
        .unwrap();
    }
    lp.run_until_complete(async { tulip::sleep(0.0).await })
        .unwrap();
    drop(lp);
    check_toks(&toks);
    check("handlers_drop", before, alive);
}

#[test]
fn threadsafe_and_executor_pending_at_close() {
    let _g = serial();
    let before = open_fds();
    let alive = Rc::new(());
    let lp = tracked_loop(&alive);
    let token = std::sync::Arc::new(());
    {
        let h = lp.handle();
        let t = token.clone();
        let h2 = h.clone();
        h.call_soon_threadsafe(move || {
            let _ = (&t, &h2);
        })
        .unwrap();
        let a = alive.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let t = token.clone();
        lp.create_task(async move {
            let _a = a;
            tulip::to_thread(move || {
                let _t = t;
                let _ = rx
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(5));
            })
            .await
        })
        .unwrap();
        lp.run_until_complete(async { tulip::sleep(0.01).await })
            .unwrap();
        tx.send(()).unwrap();
    }
    lp.close().unwrap();
    drop(lp);
    // the pool's threads join in close
    let t0 = std::time::Instant::now();
    while std::sync::Arc::strong_count(&token) > 1 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(std::sync::Arc::strong_count(&token), 1);
    check("threadsafe", before, alive);
}

#[test]
fn sync_primitives_waiters() {
    scenario("sync", |a| async move {
        let q: tulip::Queue<Rc<()>> = tulip::Queue::new(1);
        let lock = tulip::Lock::new();
        let ev = tulip::Event::new();
        let cond = tulip::Condition::new();
        let sem = tulip::Semaphore::new(0);
        let g = lock.acquire().await?;
        q.put(a.clone()).await?;
        for _ in 0..100 {
            let (q1, l1, e1, c1, s1, a1) = (
                q.clone(),
                lock.clone(),
                ev.clone(),
                cond.clone(),
                sem.clone(),
                a.clone(),
            );
            let t = tulip::create_task(async move {
                let _a = a1.clone();
                q1.put(a1).await?;
                let _ = l1.acquire().await?;
                e1.wait().await?;
                let _g = c1.acquire().await?;
                c1.wait().await?;
                let _ = s1.acquire().await?;
                Ok(())
            })?;
            tulip::sleep(0.0).await?;
            t.cancel();
            let _ = t.wait_done().await;
        }
        drop(g);
        drop(q.get_nowait());
        drop(a);
        Ok(())
    });
}

#[test]
fn subprocesses() {
    scenario("subprocesses", |a| async move {
        let _a = a;
        for i in 0..60 {
            let mut cmd = tulip::subprocess::Command::new("cat");
            cmd.stdios(tulip::subprocess::Stdios::piped());
            let mut p = cmd.spawn()?;
            match i % 3 {
                0 => {
                    let (o, _) = p.communicate(Some(b"x")).await?;
                    assert_eq!(o, b"x");
                }
                1 => {
                    p.kill()?;
                    p.wait().await?;
                }
                _ => {
                    let t = tulip::create_task(async move { p.communicate(None).await.map(drop) })?;
                    tulip::sleep(0.0).await?;
                    t.cancel();
                    let _ = t.wait_done().await;
                }
            }
        }
        // one left running at close
        let mut cmd = tulip::subprocess::Command::new("cat");
        cmd.stdios(tulip::subprocess::Stdios::piped());
        let p = cmd.spawn()?;
        tulip::create_task(async move {
            let _p = p;
            tulip::sleep(3600.0).await
        })?;
        tulip::sleep(0.01).await?;
        Ok(())
    });
}

#[test]
fn exception_handler_capturing_the_loop() {
    let _g = serial();
    let before = open_fds();
    let alive = Rc::new(());
    let lp = EventLoop::new().unwrap();
    let (l, a) = (lp.clone(), alive.clone());
    lp.set_exception_handler(Some(move |_: &EventLoop, _ctx: &ExceptionContext| {
        let _ = (&a, &l);
    }));
    lp.close().unwrap();
    drop(lp);
    check("exc handler", before, alive);
}

struct P {
    a: Rc<()>,
    t: RefCell<Option<Rc<dyn tulip::Transport>>>,
}
impl tulip::Protocol for P {
    fn connection_made(&self, t: Rc<dyn tulip::Transport>) {
        let _ = &self.a;
        *self.t.borrow_mut() = Some(t);
    }
    fn data_received(&self, _data: &[u8]) {}
}

#[test]
fn protocols_holding_their_transport() {
    scenario("protocols", |a| async move {
        let lp = tulip::get_running_loop()?;
        let a1 = a.clone();
        let server = lp
            .create_server(
                move || {
                    Rc::new(P {
                        a: a1.clone(),
                        t: RefCell::new(None),
                    })
                },
                "127.0.0.1",
                0,
            )
            .await?;
        let port = server.local_addrs()[0].port();
        for i in 0..60 {
            let a1 = a.clone();
            let (t, p) = lp
                .create_connection(
                    move || {
                        Rc::new(P {
                            a: a1.clone(),
                            t: RefCell::new(None),
                        })
                    },
                    "127.0.0.1",
                    port,
                )
                .await?;
            if i % 3 == 0 {
                tulip::BaseTransport::close(&*t);
            } else if i % 3 == 1 {
                tulip::WriteTransport::abort(&*t);
            } // else left open
            drop(p);
        }
        tulip::sleep(0.01).await?;
        server.close();
        drop(a);
        Ok(())
    });
}
