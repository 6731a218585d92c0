"""Shared helpers of the peer scripts: pick the loop, print the result line.

Every peer prints one line the bench harness reads:
    RESULT key=value key=value ...
or, when it cannot run here (uvloop not installed, ...):
    SKIP reason
"""

import asyncio
import sys


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
