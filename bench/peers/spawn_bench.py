"""The `spawn` group for asyncio and uvloop, in the same shape as
bench/src/spawn_group.rs.

    python3 spawn_bench.py --loop asyncio|uvloop --case spawn --ops 2000
    python3 spawn_bench.py --loop asyncio|uvloop --case communicate --ops 100   # MiB
"""

import argparse
import asyncio
import shutil
import time

from common import new_loop, result

BATCH = 64


async def spawn(true, n):
    done = 0
    while done < n:
        k = min(BATCH, n - done)
        procs = [await asyncio.create_subprocess_exec(true) for _ in range(k)]
        codes = await asyncio.gather(*[p.wait() for p in procs])
        assert all(c == 0 for c in codes), codes
        done += k
    return done


async def communicate(cat, data):
    proc = await asyncio.create_subprocess_exec(
        cat,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(data)
    assert len(out) == len(data), len(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", required=True, choices=["asyncio", "uvloop"])
    ap.add_argument("--case", required=True, choices=["spawn", "communicate"])
    ap.add_argument("--ops", type=int, required=True)
    a = ap.parse_args()
    loop = new_loop(a.loop)
    asyncio.set_event_loop(loop)
    # Looked up in PATH before the clock starts, as the Rust contenders do.
    true, cat = shutil.which("true"), shutil.which("cat")
    if a.case == "spawn":
        cpu0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        loop.run_until_complete(spawn(true, a.ops))
        ns = time.perf_counter_ns() - t0
        cpu = time.process_time_ns() - cpu0
        result(
            us_per_proc=f"{ns / a.ops / 1000:.2f}",
            cpu_us_per_proc=f"{cpu / a.ops / 1000:.2f}",
            procs=a.ops,
            ns=ns,
        )
    else:
        mib = a.ops
        data = b"x" * (mib * 1024 * 1024)  # built before the clock starts
        t0 = time.perf_counter_ns()
        loop.run_until_complete(communicate(cat, data))
        ns = time.perf_counter_ns() - t0
        # MB/s (10^6 bytes), as the Rust contenders compute it.
        result(mb_per_s=f"{len(data) / 1e6 / (ns / 1e9):.1f}", mib=mib, ns=ns)
    loop.close()


if __name__ == "__main__":
    main()
