//! Conformance tests for the queues: Queue, LifoQueue, PriorityQueue (Q1–Q3).

mod common;

use common::settle;
use tulip::{create_task, sleep, wait_for, Error, LifoQueue, PriorityQueue, Queue};

// ===== Q1 =====

#[test]
fn put_blocks_at_maxsize() {
    // conformance: Q1
    common::run_watched(async {
        let q = Queue::new(2);
        q.put(1).await?;
        q.put(2).await?;
        assert!(q.full());
        let q2 = q.clone();
        let putter = create_task(async move { q2.put(3).await })?;
        settle().await?;
        assert!(!putter.done(), "put must block while full");
        assert_eq!(q.get().await?, 1);
        wait_for(putter, 1.0).await?;
        assert_eq!(q.qsize(), 2);
        assert!(matches!(q.put_nowait(9), Err(Error::QueueFull)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn woken_putter_and_getter_wait_again_when_overtaken() {
    // conformance: Q1
    // asyncio's put()/get() re-check in a `while self.full()` /
    // `while self.empty()` loop: a waiter woken for a slot (an item) that
    // a `*_nowait` call takes before it runs goes back to waiting.
    common::run_watched(async {
        let q = Queue::new(1);
        q.put_nowait(0)?;
        let q1 = q.clone();
        let putter = create_task(async move { q1.put(1).await })?;
        settle().await?;
        assert_eq!(q.get_nowait()?, 0); // wakes the putter...
        q.put_nowait(9)?; // ...but the slot is taken before it runs
        settle().await?;
        assert!(!putter.done(), "put must block again while full");
        assert_eq!(q.get_nowait()?, 9);
        wait_for(putter, 1.0).await?;
        assert_eq!(q.get_nowait()?, 1);

        let q2 = q.clone();
        let getter = create_task(async move { q2.get().await })?;
        settle().await?;
        q.put_nowait(5)?; // wakes the getter...
        assert_eq!(q.get_nowait()?, 5); // ...but the item is taken first
        settle().await?;
        assert!(!getter.done(), "get must block again while empty");
        q.put_nowait(6)?;
        assert_eq!(wait_for(getter, 1.0).await?, 6);
        Ok(())
    })
    .unwrap();
}

#[test]
fn blocked_getters_and_putters_are_served_in_fifo_order() {
    // conformance: Q1
    // asyncio keeps `_getters` and `_putters` in deques and
    // `_wakeup_next` pops the oldest: the first to block is the first
    // served.
    common::run_watched(async {
        use std::cell::RefCell;
        use std::rc::Rc;
        let q: Queue<u32> = Queue::new(1);
        let got = Rc::new(RefCell::new(Vec::new()));
        let mut getters = Vec::new();
        for i in 0..3 {
            let (q, got) = (q.clone(), got.clone());
            getters.push(create_task(async move {
                let item = q.get().await?;
                got.borrow_mut().push((i, item));
                Ok(())
            })?);
            settle().await?; // block them in order
        }
        for item in [10, 11, 12] {
            q.put(item).await?;
        }
        for g in getters {
            wait_for(g, 1.0).await?;
        }
        assert_eq!(*got.borrow(), vec![(0, 10), (1, 11), (2, 12)]);

        q.put_nowait(0)?;
        let mut putters = Vec::new();
        for i in 1..4 {
            let q = q.clone();
            putters.push(create_task(async move { q.put(i).await })?);
            settle().await?; // block them in order
        }
        let mut out = Vec::new();
        for _ in 0..4 {
            let q = q.clone();
            out.push(wait_for(async move { q.get().await }, 1.0).await?);
        }
        assert_eq!(out, vec![0, 1, 2, 3]);
        for p in putters {
            wait_for(p, 1.0).await?;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_getter_takes_no_item_and_leaves_waiters() {
    // conformance: Q1
    common::run_watched(async {
        let q: Queue<u32> = Queue::new(0);
        let (q1, q2) = (q.clone(), q.clone());
        let g1 = create_task(async move { q1.get().await })?;
        let g2 = create_task(async move { q2.get().await })?;
        settle().await?;
        assert!(format!("{q:?}").contains("_getters[2]"), "{q:?}");
        // Woken by the put, then cancelled before it runs: g2 must get the item.
        q.put_nowait(7)?;
        g1.cancel();
        assert_eq!(wait_for(g2, 1.0).await?, 7);
        g1.wait_done().await?;
        assert!(g1.cancelled());
        assert!(!format!("{q:?}").contains("_getters"), "{q:?}");
        assert!(q.empty());

        // A getter cancelled while waiting (not woken) is simply removed.
        let q3 = q.clone();
        let g3 = create_task(async move { q3.get().await })?;
        settle().await?;
        g3.cancel();
        g3.wait_done().await?;
        assert!(!format!("{q:?}").contains("_getters"), "{q:?}");
        q.put_nowait(8)?;
        assert_eq!(q.get_nowait()?, 8, "the cancelled getter took nothing");
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_putter_takes_no_slot() {
    // conformance: Q1
    common::run_watched(async {
        let q = Queue::new(1);
        q.put_nowait(0)?;
        let (q1, q2) = (q.clone(), q.clone());
        let p1 = create_task(async move { q1.put(1).await })?;
        let p2 = create_task(async move { q2.put(2).await })?;
        settle().await?;
        assert!(format!("{q:?}").contains("_putters[2]"), "{q:?}");
        assert_eq!(q.get_nowait()?, 0); // wakes p1...
        p1.cancel(); // ...cancelled before it runs: p2 gets the slot
        wait_for(p2, 1.0).await?;
        p1.wait_done().await?;
        assert!(p1.cancelled());
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get_nowait()?, 2);
        assert!(!format!("{q:?}").contains("_putters"), "{q:?}");
        Ok(())
    })
    .unwrap();
}

// ===== Q2 =====

#[test]
fn task_done_too_many_is_error_and_join() {
    // conformance: Q2
    common::run_watched(async {
        let q = Queue::new(0);
        // join() on a drained queue returns at once.
        let qj = q.clone();
        wait_for(async move { qj.join().await }, 0.001).await?;
        assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
        for i in 0..3 {
            q.put_nowait(i)?;
        }
        let q2 = q.clone();
        let worker = create_task(async move {
            for _ in 0..3 {
                q2.get().await?;
                sleep(0.001).await?;
                q2.task_done()?;
            }
            Ok(())
        })?;
        let qj = q.clone();
        wait_for(async move { qj.join().await }, 1.0).await?;
        assert_eq!(q.unfinished_tasks(), 0);
        worker.await?;
        assert!(q.task_done().is_err());
        Ok(())
    })
    .unwrap();
}

#[test]
fn join_waits_for_task_done_on_every_item_not_for_an_empty_queue() {
    // conformance: Q2
    // asyncio's join() waits while `_unfinished_tasks` > 0: items fetched
    // but not yet marked done still hold it, down to the last one.
    common::run_watched(async {
        let q = Queue::new(0);
        q.put_nowait(1)?;
        q.put_nowait(2)?;
        q.get_nowait()?;
        q.get_nowait()?;
        assert!(q.empty());
        let q2 = q.clone();
        let joiner = create_task(async move { q2.join().await })?;
        settle().await?;
        assert!(!joiner.done(), "join returned with two items not done");
        q.task_done()?;
        let q3 = q.clone();
        let late = create_task(async move { q3.join().await })?;
        settle().await?;
        assert!(!joiner.done(), "join returned with one item not done");
        assert!(!late.done(), "a join begun with one item not done returned");
        q.task_done()?;
        wait_for(joiner, 1.0).await?;
        wait_for(late, 1.0).await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn shutdown_fails_put_and_get() {
    // conformance: Q2
    common::run_watched(async {
        let q: Queue<u32> = Queue::new(1);
        q.put_nowait(1)?;
        let (qa, qb) = (q.clone(), q.clone());
        let putter = create_task(async move { qa.put(2).await })?;
        let q3: Queue<u32> = Queue::new(0);
        let q3b = q3.clone();
        let getter = create_task(async move { q3b.get().await })?;
        settle().await?;
        q.shutdown(false);
        q3.shutdown(false);
        putter.wait_done().await?;
        getter.wait_done().await?;
        assert!(matches!(putter.result(), Err(Error::QueueShutDown)));
        assert!(matches!(getter.result(), Err(Error::QueueShutDown)));
        assert!(matches!(q.put_nowait(3), Err(Error::QueueShutDown)));
        // Items already queued can still be taken, then get fails.
        assert_eq!(qb.get().await?, 1);
        assert!(matches!(q.get().await, Err(Error::QueueShutDown)));
        assert!(matches!(q.get_nowait(), Err(Error::QueueShutDown)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn shutdown_immediate_drains_and_releases_join() {
    // conformance: Q2
    common::run_watched(async {
        let q = Queue::new(0);
        for i in 0..5 {
            q.put_nowait(i)?;
        }
        let q2 = q.clone();
        let joiner = create_task(async move { q2.join().await })?;
        settle().await?;
        assert!(!joiner.done());
        q.shutdown(true);
        assert!(q.empty());
        wait_for(joiner, 1.0).await?;
        assert!(matches!(q.get_nowait(), Err(Error::QueueShutDown)));
        assert!(q.is_shutdown());
        Ok(())
    })
    .unwrap();
}

/// An item whose `Drop` panics (unless already unwinding).
struct PanicsOnDrop(u32);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("dropping item {}", self.0);
        }
    }
}

#[test]
fn shutdown_immediate_with_items_that_panic_when_dropped_still_shuts_down() {
    // conformance: Q2
    // asyncio's shutdown(immediate=True) drains the queue, releases
    // join() and wakes every blocked putter and getter; an item whose
    // __del__ raises is only printed ("Exception ignored in"). Here the
    // panic reaches the caller, but only once the queue is shut down: the
    // other items are dropped, join() returns, the blocked putter is woken.
    common::run_watched(async {
        let q = Queue::new(2);
        q.put_nowait(PanicsOnDrop(1))?;
        q.put_nowait(PanicsOnDrop(2))?;
        let q2 = q.clone();
        let joiner = create_task(async move { q2.join().await })?;
        let q3 = q.clone();
        let putter = create_task(async move {
            let item = PanicsOnDrop(3);
            let res = q3.put(item).await;
            Ok(matches!(res, Err(Error::QueueShutDown)))
        })?;
        settle().await?;
        assert!(!joiner.done() && !putter.done());
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.shutdown(true)));
        assert!(res.is_err(), "the item's panic reaches the caller");
        assert!(q.empty());
        assert_eq!(q.unfinished_tasks(), 0);
        wait_for(joiner, 1.0).await?;
        // The putter's own item panics when its failed put drops it: its
        // task fails with that panic, after the put returned QueueShutDown.
        let out = wait_for(putter, 1.0).await;
        assert!(
            matches!(&out, Err(Error::Panic(m)) if m.contains("dropping item 3")),
            "{out:?}"
        );
        assert!(matches!(q.get_nowait(), Err(Error::QueueShutDown)));
        Ok(())
    })
    .unwrap();
}

// ===== Q3 =====

#[test]
fn lifo_and_priority_order() {
    // conformance: Q3
    common::run_watched(async {
        let lq = LifoQueue::new(0);
        for i in 0..4 {
            lq.put(i).await?;
        }
        let mut out = vec![];
        while !lq.empty() {
            out.push(lq.get().await?);
        }
        assert_eq!(out, vec![3, 2, 1, 0]);

        let pq = PriorityQueue::new(0);
        for (p, s) in [(3, "c"), (1, "a"), (4, "d"), (2, "b"), (1, "a0")] {
            pq.put((p, s)).await?;
        }
        let mut out = vec![];
        while let Ok(x) = pq.get_nowait() {
            out.push(x);
        }
        assert_eq!(out, vec![(1, "a"), (1, "a0"), (2, "b"), (3, "c"), (4, "d")]);
        Ok(())
    })
    .unwrap();
}

// ===== Loop binding (asyncio's `_LoopBoundMixin`) =====

#[test]
fn a_queue_waited_on_in_one_loop_refuses_to_wait_in_another() {
    // conformance: Q1, Q2
    // asyncio's Queue is a `_LoopBoundMixin`: its first blocked get or put
    // binds it to the running loop, and one from another loop raises
    // RuntimeError rather than wait there. The *_nowait calls need no loop.
    let q: Queue<u32> = Queue::new(1);
    {
        let q = q.clone();
        common::run_watched(async move {
            let q2 = q.clone();
            let getter = create_task(async move { q2.get().await })?;
            settle().await?; // the getter waits: the queue is bound to this loop
            q.put_nowait(1)?;
            assert_eq!(getter.await?, 1);
            q.task_done()?;
            Ok(())
        })
        .unwrap();
    }
    common::run_watched(async move {
        let bound_elsewhere = |r: &tulip::Result<()>| {
            matches!(r, Err(Error::Runtime(m)) if m.contains("bound to a different event loop"))
        };
        let r = tulip::timeout(1.0).run(async { q.get().await.map(drop) }).await;
        assert!(bound_elsewhere(&r), "{r:?}");
        q.put_nowait(2)?; // no waiting: fine from any loop
        let r = tulip::timeout(1.0).run(q.put(3)).await;
        assert!(bound_elsewhere(&r), "{r:?}");
        assert_eq!(q.get().await?, 2);
        assert_eq!(q.qsize(), 0);
        Ok(())
    })
    .unwrap();
}
