"""The `loop` group for asyncio and uvloop: the same cases, in the same
shape, as bench/src/loop_group.rs.

    python3 loop_bench.py --loop asyncio|uvloop --case NAME --ops N
"""

import argparse
import asyncio

from common import Clock, new_loop, per_op_result

TASK_BATCH = 1000
SWITCH_TASKS = 100
MAX_DELAY = 0.050


def random_delays(n):
    """The delays of the `timers` case: the same xorshift sequence as
    `random_delays` in bench/src/loop_group.rs, value for value."""
    mask = (1 << 64) - 1
    x = 0x9E3779B97F4A7C15
    out = []
    append = out.append
    for _ in range(n):
        x ^= (x << 13) & mask
        x ^= x >> 7
        x ^= (x << 17) & mask
        append((x >> 11) / (1 << 53) * MAX_DELAY)
    return out


def callbacks(loop, n):
    count = 0

    def cb():
        nonlocal count
        count += 1

    t0 = Clock()
    call_soon = loop.call_soon
    for _ in range(n):
        call_soon(cb)
    call_soon(loop.stop)
    loop.run_forever()
    span = t0.stop()
    assert count == n, count
    return span


def chain(loop, n):
    left = n

    def step():
        nonlocal left
        if left == 0:
            loop.stop()
        else:
            left -= 1
            loop.call_soon(step)

    t0 = Clock()
    loop.call_soon(step)
    loop.run_forever()
    return t0.stop()


def timers(loop, n):
    delays = random_delays(n)
    live = n - n // 2
    fired = 0

    def cb():
        nonlocal fired
        fired += 1
        if fired == live:
            loop.stop()

    t0 = Clock()
    call_later = loop.call_later
    handles = [call_later(d, cb) for d in delays]
    for h in handles[::2]:
        h.cancel()
    del handles
    loop.run_forever()
    span = t0.stop()
    assert fired == live, fired
    return span


def tasks(loop, n):
    async def trivial(j):
        return j

    async def main():
        total = 0
        i = 0
        create_task = loop.create_task
        while i < n:
            batch = min(TASK_BATCH, n - i)
            ts = [create_task(trivial(j)) for j in range(i, i + batch)]
            for t in ts:
                total += await t
            i += batch
        return total

    t0 = Clock()
    total = loop.run_until_complete(main())
    span = t0.stop()
    assert total == n * (n - 1) // 2
    return span


def switch(loop, n):
    per = n // SWITCH_TASKS

    async def worker():
        for _ in range(per):
            await asyncio.sleep(0)
        return per

    async def main():
        ts = [loop.create_task(worker()) for _ in range(SWITCH_TASKS)]
        total = 0
        for t in ts:
            total += await t
        return total

    t0 = Clock()
    total = loop.run_until_complete(main())
    span = t0.stop()
    assert total == per * SWITCH_TASKS
    return span


CASES = {
    "callbacks": callbacks,
    "chain": chain,
    "timers": timers,
    "tasks": tasks,
    "switch": switch,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", required=True, choices=["asyncio", "uvloop"])
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--ops", type=int, default=1_000_000)
    a = ap.parse_args()
    loop = new_loop(a.loop)
    asyncio.set_event_loop(loop)
    wall, cpu = CASES[a.case](loop, a.ops)
    loop.close()
    per_op_result(wall, cpu, a.ops)


if __name__ == "__main__":
    main()
