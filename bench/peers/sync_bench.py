"""The `sync` group for asyncio and uvloop: the same cases, in the same
shape, as bench/src/sync_group.rs.

    python3 sync_bench.py --loop asyncio|uvloop --case NAME --ops N
"""

import argparse
import asyncio

from common import Clock, new_loop, per_op_result

CONTENDERS = 100
QUEUE_MAXSIZE = 100


async def lock_uncontended(n):
    lock = asyncio.Lock()
    for _ in range(n):
        async with lock:
            pass
    return n


async def lock_contended(n):
    lock = asyncio.Lock()
    per = n // CONTENDERS
    held = 0

    async def worker():
        nonlocal held
        for _ in range(per):
            async with lock:
                held += 1
                # Hold the lock across a yield, so the others queue up on it.
                await asyncio.sleep(0)

    await asyncio.gather(*[worker() for _ in range(CONTENDERS)])
    return held


async def queue(n):
    q = asyncio.Queue(maxsize=QUEUE_MAXSIZE)

    async def producer():
        for i in range(n):
            await q.put(i)

    async def consumer():
        total = 0
        for _ in range(n):
            total += await q.get()
        return total

    p = asyncio.ensure_future(producer())
    total = await consumer()
    await p
    assert total == n * (n - 1) // 2
    return n


async def gather(n):
    async def trivial(j):
        return j

    out = await asyncio.gather(*[trivial(j) for j in range(n)])
    return out


async def taskgroup(n):
    async def trivial(j):
        return j

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(trivial(j)) for j in range(n)]
    assert sum(t.result() for t in tasks) == n * (n - 1) // 2
    return n


def check_gathered(out, n):
    # Every result, in argument order (checked after the clock stops).
    assert out == list(range(n)), len(out)
    return n


CASES = {
    "lock-uncontended": lock_uncontended,
    "lock-contended": lock_contended,
    "queue": queue,
    "gather": gather,
    "taskgroup": taskgroup,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", required=True, choices=["asyncio", "uvloop"])
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--ops", type=int, default=1_000_000)
    a = ap.parse_args()
    loop = new_loop(a.loop)
    asyncio.set_event_loop(loop)
    t0 = Clock()
    done = loop.run_until_complete(CASES[a.case](a.ops))
    wall, cpu = t0.stop()
    if a.case == "gather":
        done = check_gathered(done, a.ops)
    assert done == a.ops - a.ops % (CONTENDERS if a.case == "lock-contended" else 1), done
    loop.close()
    per_op_result(wall, cpu, a.ops)


if __name__ == "__main__":
    main()
