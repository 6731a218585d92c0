"""Differential fuzzer: random DSL programs run on CPython's asyncio and on
tulip, traces compared line by line. See DEVELOPERS.md.

    python3 scripts/difffuzz/fuzz.py --seeds 2000            # fuzz
    python3 scripts/difffuzz/fuzz.py --replay FILE.jsonl     # rerun programs
    python3 scripts/difffuzz/fuzz.py --record NAME PROG.json # add to corpus

It builds the Rust side (`cargo test --test difffuzz --no-run`) and runs its
ignored `difffuzz_driver` test, which reads programs from $DIFFFUZZ_IN.
Differences are minimised (ops and tasks removed while the two sides still
differ) and printed up to the first differing line.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import interp  # noqa: E402

CORPUS = os.path.join(ROOT, "tests", "data", "difffuzz")
TICK = 0.01  # tulip's, in seconds (--tick)


class Gen:
    def __init__(self, seed, size=1):
        self.r = random.Random(seed)
        self.n = 0
        self.size = size  # 2: more tasks, longer and deeper op lists

    def label(self, p="o"):
        self.n += 1
        return "%s%d" % (p, self.n)

    def program(self):
        r = self.r
        self.names = ["t%d" % i for i in range(1, r.randint(1, 2 + self.size) + 1)]
        tasks = [[n, self.ops(i + 1, 0, False)] for i, n in enumerate(self.names)]
        return {"eager": r.random() < 0.3, "tasks": tasks, "main": self.ops(0, 0, False)}

    def ops(self, owner, depth, in_scope, lo=1, hi=4):
        hi += self.size - 1
        return [self.op(owner, depth, in_scope) for _ in range(self.r.randint(lo, hi))]

    def refs(self, owner):
        """Tasks `owner` may wait for: only later ones, so no cycle."""
        return self.names[owner:]

    def child(self, owner, depth, refs_ok=True):
        refs = self.refs(owner) if refs_ok else []
        if refs and self.r.random() < 0.4:
            return self.r.choice(refs)
        return [self.label("c"), self.ops(owner, depth + 1, False, 1, 3)]

    def children(self, owner, depth, refs_ok=True, dups=False):
        out, used = [], set()
        for _ in range(self.r.randint(1, 3)):
            c = self.child(owner, depth, refs_ok)
            if isinstance(c, str):
                if c in used and not dups:
                    continue
                used.add(c)
            out.append(c)
        return out

    def op(self, owner, depth, in_scope):
        r = self.r
        L = self.label()
        nested = depth < 1 + self.size
        choices = [("sleep", 20), ("sleep0", 8), ("cancel", 12), ("cancel_soon", 4), ("uncancel", 3),
                   ("cancelling", 4), ("raise", 4)]
        if nested:
            choices += [("try", 10), ("gather", 6), ("shield", 4), ("wait_for", 5),
                        ("wait", 5), ("as_completed", 4), ("timeout", 8), ("taskgroup", 5)]
        if self.refs(owner):
            choices.append(("await", 8))
        if in_scope:
            choices += [("reschedule", 5), ("expired", 3)]
        kind = r.choices([c for c, _ in choices], [w for _, w in choices])[0]
        if kind == "sleep":
            return [kind, L, r.randint(1, 4)]
        if kind in ("cancelling", "uncancel") and r.random() < 0.3:
            return [kind, L, r.choice(self.names)]
        if kind in ("sleep0", "uncancel", "cancelling", "expired"):
            return [kind, L]
        if kind == "cancel":
            targets = self.names + ["self"] + (["main"] if r.random() < 0.2 else [])
            return [kind, L, r.choice(targets), r.choice([None, "m" + L])]
        if kind == "cancel_soon":
            targets = self.names + ["self"] + (["main"] if r.random() < 0.2 else [])
            return [kind, L, r.choice(targets), r.choice([None, "m" + L]),
                    r.choice([None, None, 1, 2, 3])]
        if kind == "raise":
            return [kind, L, "x" + L]
        if kind == "try":
            return [kind, L, self.ops(owner, depth + 1, in_scope, 1, 4)]
        if kind == "await":
            return [kind, L, r.choice(self.refs(owner))]
        if kind == "gather":
            return [kind, L, self.children(owner, depth, dups=True), r.random() < 0.5]
        if kind == "shield":
            return [kind, L, self.child(owner, depth)]
        if kind == "wait_for":
            c = self.child(owner, depth)
            # A timeout <= 0 only on a task: tulip never starts a coroutine
            # then, where asyncio makes a task and waits for its cancel (a
            # documented deviation, K5).
            return [kind, L, c, r.randint(0 if isinstance(c, str) else 1, 4)]
        if kind == "wait":
            return [kind, L, self.children(owner, depth),
                    r.choice(["first_completed", "first_exception", "all_completed"]),
                    r.choice([None, None, 1, 2, 3])]
        if kind == "as_completed":
            return [kind, L, self.children(owner, depth), r.choice([None, None, 1, 2, 3])]
        if kind == "timeout":
            return [kind, L, r.choice([None, 1, 2, 3, 4]), self.ops(owner, depth + 1, True, 1, 4)]
        if kind == "reschedule":
            return [kind, L, r.choice([None, 0, 1, 2, 3])]
        if kind == "taskgroup":
            return [kind, L, self.children(owner, depth, False),
                    self.ops(owner, depth + 1, False, 0, 3)]
        raise AssertionError(kind)


def cargo_env():
    env = dict(os.environ)
    env.setdefault("CARGO_INCREMENTAL", "0")
    return env


def rust_binary():
    out = subprocess.run(
        ["cargo", "test", "--test", "difffuzz", "--no-run", "--message-format=json"],
        cwd=ROOT, env=cargo_env(), check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "difffuzz" \
                and msg.get("executable"):
            return msg["executable"]
    raise SystemExit("no difffuzz test binary")


def run_rust(binary, progs, jobs):
    with tempfile.TemporaryDirectory() as d:
        inp, outp = os.path.join(d, "in.jsonl"), os.path.join(d, "out.jsonl")
        with open(inp, "w") as f:
            for p in progs:
                f.write(json.dumps(p) + "\n")
        env = dict(os.environ, DIFFFUZZ_IN=inp, DIFFFUZZ_OUT=outp, DIFFFUZZ_JOBS=str(jobs),
                   DIFFFUZZ_TICK=str(TICK))
        subprocess.run([binary, "--ignored", "--exact", "difffuzz_driver", "--quiet"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        with open(outp) as f:
            return [json.loads(line)["trace"] for line in f]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if not interp.lines_match(x, y):
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def shrink_candidates(prog):
    """Programs with one op (anywhere) or one task removed."""
    def lists(ops, path):
        """Every op list under `ops`, as a path of indices."""
        yield path
        for i, op in enumerate(ops):
            kind = op[0]
            if kind == "try":
                yield from lists(op[2], path + [i, 2])
            if kind in ("timeout", "taskgroup"):
                yield from lists(op[3], path + [i, 3])
            if kind in ("gather", "wait", "as_completed", "taskgroup"):
                for k, c in enumerate(op[2]):
                    if isinstance(c, list):
                        yield from lists(c[1], path + [i, 2, k, 1])
            if kind in ("shield", "wait_for") and isinstance(op[2], list):
                yield from lists(op[2][1], path + [i, 2, 1])

    def get(root, path):
        for p in path:
            root = root[p]
        return root
    roots = [("main", None)] + [("tasks", i) for i in range(len(prog["tasks"]))]
    for key, ti in roots:
        base = prog["main"] if key == "main" else prog["tasks"][ti][1]
        for path in list(lists(base, [])):
            for i in range(len(get(base, path))):
                p2 = json.loads(json.dumps(prog))
                b2 = p2["main"] if key == "main" else p2["tasks"][ti][1]
                del get(b2, path)[i]
                yield p2
    if len(prog["tasks"]) > 1:
        for i in range(len(prog["tasks"]) - 1, -1, -1):
            name = prog["tasks"][i][0]
            if name not in json.dumps([prog["main"]] + [t for t in prog["tasks"] if t[0] != name]):
                p2 = json.loads(json.dumps(prog))
                del p2["tasks"][i]
                yield p2
    if prog.get("eager"):
        p2 = dict(prog, eager=False)
        yield p2


def differs(binary, prog):
    py = interp.run_program(prog)
    if "trace" not in py:
        return None
    rs = run_rust(binary, [prog], 1)[0]
    return (py["trace"], rs) if first_diff(py["trace"], rs) is not None else None


def minimise(binary, prog):
    changed = True
    while changed:
        changed = False
        for cand in shrink_candidates(prog):
            if differs(binary, cand):
                prog, changed = cand, True
                break
    return prog


OTHER_PY = {"3.12": "/root/.pyenv/versions/3.13.0/bin/python3",
            "3.13": "/root/.pyenv/versions/3.12.1/bin/python3"}.get(
    "%d.%d" % sys.version_info[:2])


def other_trace(prog):
    """The trace under the other CPython (3.12 <-> 3.13), if it is installed."""
    if not OTHER_PY or not os.path.exists(OTHER_PY):
        return None
    out = subprocess.run([OTHER_PY, os.path.join(HERE, "interp.py")], input=json.dumps(prog),
                         capture_output=True, text=True).stdout
    return json.loads(out).get("trace")


def show(prog, py, rs):
    """Prints the difference; returns True if the other CPython version
    agrees with tulip (a version-specific behaviour, not a tulip bug)."""
    i = first_diff(py, rs)
    print("program:", json.dumps(prog))
    other = other_trace(prog)
    versioned = other is not None and first_diff(other, rs) is None
    if versioned:
        print("  (the other CPython version agrees with tulip: version-specific)")
    for line in py[:i]:
        print("   ", line)
    print("  asyncio:", py[i] if i < len(py) else "<end>")
    print("  tulip:  ", rs[i] if i < len(rs) else "<end>")
    return versioned


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=500)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--size", type=int, default=1, help="1: small programs, 2: bigger")
    ap.add_argument("--tick", type=float, default=0.01, help="tulip's tick, in seconds")
    ap.add_argument("--replay")
    ap.add_argument("--record", nargs=2, metavar=("NAME", "PROG"))
    ap.add_argument("--no-minimise", action="store_true")
    a = ap.parse_args()
    global TICK
    TICK = a.tick
    if a.record:
        name, prog = a.record
        prog = json.loads(open(prog).read() if os.path.exists(prog) else prog)
        res = interp.run_program(prog)
        if "trace" not in res:
            raise SystemExit("not recordable: %s" % res)
        os.makedirs(CORPUS, exist_ok=True)
        with open(os.path.join(CORPUS, name + ".json"), "w") as f:
            f.write('{"program": %s,\n "trace": [\n  %s\n ]}\n' % (
                json.dumps(prog), ",\n  ".join(json.dumps(line) for line in res["trace"])))
        return
    binary = rust_binary()
    if a.replay:
        progs = [json.loads(line) for line in open(a.replay) if line.strip()]
        seeds = list(range(len(progs)))
    else:
        seeds = list(range(a.start, a.start + a.seeds))
        progs = [Gen(s, a.size).program() for s in seeds]
    kept, skips = [], {}
    for s, p in zip(seeds, progs):
        res = interp.run_program(p)
        if "trace" in res:
            kept.append((s, p, res["trace"]))
        else:
            skips[res["skip"]] = skips.get(res["skip"], 0) + 1
    print("%d programs, %d kept, skipped: %s" % (len(progs), len(kept), skips), flush=True)
    rs = run_rust(binary, [p for _, p, _ in kept], a.jobs)
    bad = versioned = 0
    for (s, p, py), r in zip(kept, rs):
        if first_diff(py, r) is None:
            continue
        # Confirm alone (no parallel load), twice, before calling it a difference.
        again = differs(binary, p) and differs(binary, p)
        if not again:
            print("seed %d: differed once, not alone (timing?)" % s)
            continue
        bad += 1
        print("=== seed %d differs" % s)
        if not a.no_minimise:
            small = minimise(binary, p)
            small_diff = differs(binary, small)
            if small_diff:  # else a timing fluke took the minimiser astray
                p, again = small, small_diff
        versioned += show(p, *again)
    print("%d of %d kept programs differ (%d of them version-specific)"
          % (bad, len(kept), versioned))


if __name__ == "__main__":
    main()
