"""Shared helpers of the peer scripts: pick the loop, print the result line.

Every peer prints one line the bench harness reads:
    RESULT key=value key=value ...
or, when it cannot run here (uvloop not installed, ...):
    SKIP reason
"""

import asyncio
import resource
import sys
import time


def new_loop(kind):
    """A fresh loop of the given kind: 'asyncio' or 'uvloop'."""
    if kind == "asyncio":
        return asyncio.new_event_loop()
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            skip("uvloop is not installed (run bench/setup.sh)")
        return uvloop.new_event_loop()
    raise SystemExit(f"unknown loop kind {kind!r}")


def skip(reason):
    print(f"SKIP {reason}", flush=True)
    sys.exit(0)


def result(**kv):
    print("RESULT " + " ".join(f"{k}={v}" for k, v in kv.items()), flush=True)


class Clock:
    """Wall and CPU (user + system) nanoseconds of a measured span."""

    def __init__(self):
        self.cpu0 = time.process_time_ns()
        self.wall0 = time.perf_counter_ns()

    def stop(self):
        wall = time.perf_counter_ns() - self.wall0
        cpu = time.process_time_ns() - self.cpu0
        return wall, cpu


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def per_op_result(wall, cpu, ops):
    """The RESULT line of a per-op case (same keys as the Rust children)."""
    result(
        ns_per_op=f"{wall / ops:.3f}",
        cpu_ns_per_op=f"{cpu / ops:.3f}",
        rss_mib=f"{peak_rss_mib():.1f}",
        ops=ops,
        ns=wall,
    )
