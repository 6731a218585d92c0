"""Area B's benchmark cases on asyncio (and uvloop if installed): the same
cases as bench/src/bin/bench_b.rs, printed the same way (`name seconds`,
best of 3). Usage: python3 bench/py/bench_b.py [--uvloop]"""
import asyncio
import sys
import time


async def lock_uncontended():
    lock = asyncio.Lock()
    for _ in range(1_000_000):
        async with lock:
            pass


async def lock_contended():
    lock = asyncio.Lock()

    async def worker():
        for _ in range(10_000):
            async with lock:
                await asyncio.sleep(0)

    await asyncio.gather(*[worker() for _ in range(100)])


async def queue_1m():
    q = asyncio.Queue(maxsize=100)

    async def producer():
        for i in range(1_000_000):
            await q.put(i)

    p = asyncio.create_task(producer())
    s = 0
    for _ in range(1_000_000):
        s += await q.get()
    await p
    assert s == 499_999_500_000


async def gather_100k():
    async def triv(i):
        return i

    out = await asyncio.gather(*[triv(i) for i in range(100_000)])
    assert len(out) == 100_000


def best_of_3(name, case, runner):
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        runner(case())
        best = min(best, time.perf_counter() - start)
    print(f"{name} {best:.4f}")


def main():
    runner = asyncio.run
    if "--uvloop" in sys.argv:
        import uvloop

        runner = uvloop.run
    best_of_3("lock_uncontended_1m", lock_uncontended, runner)
    best_of_3("lock_contended_100x10k", lock_contended, runner)
    best_of_3("queue_1m_maxsize100", queue_1m, runner)
    best_of_3("gather_100k", gather_100k, runner)


if __name__ == "__main__":
    main()
