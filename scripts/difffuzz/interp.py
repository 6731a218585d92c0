"""The DSL of the differential fuzzer, run on CPython's asyncio.

A program (JSON, one per line) is a few tasks, each a list of ops; every op
appends a line to a trace. `tests/difffuzz.rs` is the same interpreter on
tulip; DEVELOPERS.md describes the DSL and how to run the fuzzer.

This side runs on a loop with *virtual time* (one tick is 1.0 s of loop time,
and the selector jumps the clock to the next timer instead of sleeping), so a
program runs in microseconds and its trace does not depend on the machine.
tulip runs in real time (one tick is 10 ms by default), so a program is only
kept if no two timers can race there: `VirtualLoop` marks it `racy` when two
timers created in different loop iterations are due less than half a tick
apart (which one fires first would then depend on timer resolution and on
how late each earlier wake-up was).

Usage: python3 interp.py < programs.jsonl > traces.jsonl
Each output line is {"trace": [...]} or {"skip": "racy" | "deadlock" | ...}.
"""

import asyncio
import json
import logging
import re
import selectors
import sys
import warnings

# "Task exception was never retrieved" and the like are not in the trace.
logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
warnings.simplefilter("ignore")

TICK = 1.0


class Deadlock(Exception):
    pass


class VirtualSelector(selectors.SelectSelector):
    def __init__(self):
        super().__init__()
        self.loop = None

    def select(self, timeout=None):
        if timeout is None:
            raise Deadlock()
        self.loop.vt += timeout
        if self.loop.vt > 200 * TICK:
            raise Deadlock()
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self):
        sel = VirtualSelector()
        super().__init__(sel)
        sel.loop = self
        self.vt = 0.0
        self.iteration = 0
        self.timers = []  # (when, iteration, handle)
        self.racy = False
        self.min_gap = float("inf")  # between timers of different iterations
        self.seq = 0

    def time(self):
        return self.vt

    def _run_once(self):
        self.iteration += 1
        super()._run_once()

    def call_at(self, when, callback, *args, context=None):
        # In real time a timer made later is due later, even in the same
        # iteration with the same delay (heapq would break the tie anyhow),
        # and it fires in the same iteration (the step is below the clock
        # resolution, 1e-9).
        self.seq += 1
        when += self.seq * 1e-12
        h = super().call_at(when, callback, *args, context=context)
        self.timers = [t for t in self.timers if not t[2].cancelled() and t[0] >= self.vt]
        for w, it, _ in self.timers:
            if it != self.iteration:
                self.min_gap = min(self.min_gap, abs(w - when))
                if abs(w - when) < TICK / 2:
                    self.racy = True
        self.timers.append((when, self.iteration, h))
        return h


def _tg_create_task(self, coro, *, name=None, context=None):
    """TaskGroup.create_task as of CPython 3.12.9/3.13.2 (gh-128550), which
    tulip follows: the done callback is added even when the task finished
    eagerly inside create_task, instead of calling `_on_task_done` at once
    (3.12.1 and 3.13.0 do that, and so abort the group, and refuse the next
    create_task, before the body goes on). Its `_tasks` keeps creation
    order (see OrderedSet)."""
    if not self._entered:
        coro.close()
        raise RuntimeError(f"TaskGroup {self!r} has not been entered")
    if self._exiting and not self._tasks:
        coro.close()
        raise RuntimeError(f"TaskGroup {self!r} is finished")
    if self._aborting:
        coro.close()
        raise RuntimeError(f"TaskGroup {self!r} is shutting down")
    if context is None:
        task = self._loop.create_task(coro, name=name)
    else:
        task = self._loop.create_task(coro, name=name, context=context)
    if not isinstance(self._tasks, OrderedSet):
        self._tasks = OrderedSet()
    self._tasks.add(task)
    task.add_done_callback(self._on_task_done)
    return task


class OrderedSet(dict):
    """TaskGroup's `_tasks`, in creation order: asyncio's is a set, so the
    order in which `_abort` cancels the children follows their hashes (it
    differs from run to run); tulip cancels them in creation order."""

    def add(self, x):
        self[x] = None

    def discard(self, x):
        self.pop(x, None)


asyncio.TaskGroup.create_task = _tg_create_task


def fmt_err(e):
    if isinstance(e, asyncio.CancelledError):
        # gather(return_exceptions=True) makes CancelledError('') for "no message".
        return "Cancelled(%s)" % e.args[0] if e.args and e.args[0] else "Cancelled"
    if isinstance(e, TimeoutError):
        return "Timeout"
    if isinstance(e, UserError):
        return "E(%s)" % e.args[0]
    if isinstance(e, BaseExceptionGroup):
        return "Group(%s)" % ",".join(fmt_err(x) for x in e.exceptions)
    if isinstance(e, asyncio.InvalidStateError):
        return "InvalidState"
    if isinstance(e, RuntimeError):
        return "Runtime"
    return "Other(%s)" % type(e).__name__


class UserError(Exception):
    pass


CANCEL_MSG = re.compile(r"Cancelled\([^()]*\)")


def lines_match(asyncio_line, tulip_line):
    """Equal, except that a bare `Cancelled` from asyncio matches a
    `Cancelled(msg)` from tulip: CPython gives a task's cancel message only
    to the first retrieval of its CancelledError (`_make_cancelled_error`
    hands out the saved exception once; the task itself was cancelled with
    `super().cancel()`, no message), and gather's return_exceptions results
    never carry it. tulip keeps the message (a documented deviation).
    """
    if asyncio_line == tulip_line:
        return True
    if "Cancelled" in asyncio_line:
        return CANCEL_MSG.sub("Cancelled", asyncio_line) == CANCEL_MSG.sub("Cancelled", tulip_line) \
            and asyncio_line.count("Cancelled(") <= tulip_line.count("Cancelled(")
    return False


def fmt_res(r):
    if isinstance(r, list):
        return "[%s]" % ",".join(fmt_res(x) for x in r)
    if isinstance(r, BaseException):
        return fmt_err(r)
    return str(r)


class Env:
    def __init__(self, trace, tasks, scopes=()):
        self.trace = trace
        self.tasks = tasks
        self.scopes = scopes

    def with_scope(self, cm):
        return Env(self.trace, self.tasks, self.scopes + (cm,))

    def log(self, label, kind, what):
        self.trace.append("%s %s %s" % (label, kind, what))


def child_aw(env, spec, inline_as_task):
    """A child: a task name ("t2") or an inline coroutine [name, ops]."""
    if isinstance(spec, str):
        return env.tasks[spec]
    coro = run_body(Env(env.trace, env.tasks), spec[0], spec[1])
    return asyncio.ensure_future(coro) if inline_as_task else coro


async def run_body(env, name, ops):
    """A task or inline child: runs ops, logs how it ended, returns its name."""
    try:
        await run_ops(env, ops)
    except BaseException as e:
        env.log(name, "end", fmt_err(e))
        raise
    env.log(name, "end", "ok")
    return name


async def run_ops(env, ops):
    for op in ops:
        await run_op(env, op)


async def logged(env, label, kind, aw, fmt=fmt_res):
    try:
        r = await aw
    except BaseException as e:
        env.log(label, kind, "raise " + fmt_err(e))
        raise
    env.log(label, kind, fmt(r))
    return r


async def run_op(env, op):
    kind, label = op[0], op[1]
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    if kind == "sleep":
        await logged(env, label, kind, asyncio.sleep(op[2] * TICK), lambda r: "ok")
    elif kind == "sleep0":
        await logged(env, label, kind, asyncio.sleep(0), lambda r: "ok")
    elif kind == "cancel":
        t = me if op[2] == "self" else env.tasks.get(op[2])
        if t is None:  # not created yet (tasks are created last to first)
            env.log(label, kind, "missing")
        else:
            env.log(label, kind, t.cancel(op[3]) if op[3] is not None else t.cancel())
    elif kind == "cancel_soon":
        # A cancel from a callback (call_soon, or call_later k ticks).
        t = me if op[2] == "self" else env.tasks.get(op[2])
        if t is None:
            env.log(label, kind, "missing")
        else:
            def cb():
                env.log(label, kind, t.cancel(op[3]) if op[3] is not None else t.cancel())
            if op[4] is None:
                loop.call_soon(cb)
            else:
                loop.call_later(op[4] * TICK, cb)
    elif kind == "uncancel":
        t = me if len(op) == 2 else env.tasks.get(op[2])
        env.log(label, kind, "missing" if t is None else t.uncancel())
    elif kind == "cancelling":
        t = me if len(op) == 2 else env.tasks.get(op[2])
        env.log(label, kind, "missing" if t is None else t.cancelling())
    elif kind == "raise":
        env.log(label, kind, op[2])
        raise UserError(op[2])
    elif kind == "try":
        try:
            await run_ops(env, op[2])
        except BaseException as e:
            env.log(label, kind, "caught " + fmt_err(e))
        else:
            env.log(label, kind, "ok")
    elif kind == "await":
        await logged(env, label, kind, env.tasks[op[2]])
    elif kind == "gather":
        aws = [child_aw(env, c, False) for c in op[2]]
        await logged(env, label, kind, asyncio.gather(*aws, return_exceptions=op[3]))
    elif kind == "shield":
        await logged(env, label, kind, asyncio.shield(child_aw(env, op[2], False)))
    elif kind == "wait_for":
        await logged(env, label, kind, asyncio.wait_for(child_aw(env, op[2], False), op[3] * TICK))
    elif kind == "wait":
        fs = [child_aw(env, c, True) for c in op[2]]
        mode = {"first_completed": asyncio.FIRST_COMPLETED,
                "first_exception": asyncio.FIRST_EXCEPTION,
                "all_completed": asyncio.ALL_COMPLETED}[op[3]]
        t = None if op[4] is None else op[4] * TICK

        async def w():
            await asyncio.wait(fs, timeout=t, return_when=mode)
            return "".join("D" if f.done() else "P" for f in fs)
        await logged(env, label, kind, w())
    elif kind == "as_completed":
        fs = [child_aw(env, c, True) for c in op[2]]
        t = None if op[3] is None else op[3] * TICK
        if sum(f.done() for f in fs) > 1:
            # asyncio hears of children done already in set(aws) order:
            # their order in the results changes from run to run.
            loop.racy = True

        async def body():
            out = []
            for f in asyncio.as_completed(fs, timeout=t):
                try:
                    out.append(fmt_res(await f))
                except BaseException as e:  # the child's error, a timeout, or our cancel
                    out.append(fmt_err(e))
            return out
        await logged(env, label, kind, body())
    elif kind == "timeout":
        cm = asyncio.timeout(None if op[2] is None else op[2] * TICK)

        async def body():
            async with cm:
                await run_ops(env.with_scope(cm), op[3])
            return "ok expired=%s" % cm.expired()
        await logged(env, label, kind, body())
    elif kind == "reschedule":
        cm = env.scopes[-1]
        cm.reschedule(None if op[2] is None else loop.time() + op[2] * TICK)
        env.log(label, kind, "ok")
    elif kind == "expired":
        env.log(label, kind, env.scopes[-1].expired())
    elif kind == "taskgroup":
        async def body():
            async with asyncio.TaskGroup() as tg:
                for c in op[2]:
                    tg.create_task(run_body(Env(env.trace, env.tasks), c[0], c[1]))
                await run_ops(env, op[3])
            return "ok"
        await logged(env, label, kind, body())
    else:
        raise ValueError("unknown op %r" % kind)


CREATED = {}  # task -> creation number (tulip's task ids count the same way)


def numbering_factory(eager):
    """The program's task factory (eager or not), numbering tasks as they
    are made: before an eager one starts, as tulip gives a task its id."""
    counter = [0]

    def factory(loop, coro, **kwargs):
        counter[0] += 1
        n = counter[0]
        if eager:
            t = asyncio.eager_task_factory(loop, coro, **kwargs)
        else:
            t = asyncio.Task(coro, loop=loop, **kwargs)
        CREATED[t] = n
        return t
    return factory


async def main(prog, trace):
    loop = asyncio.get_running_loop()
    loop.set_task_factory(numbering_factory(prog.get("eager")))
    tasks = {"main": asyncio.current_task()}  # ops may cancel main by name
    env = Env(trace, tasks)
    # Created last to first: a task refers only to tasks after it, which
    # exist then even when it starts eagerly.
    for name, ops in reversed(prog["tasks"]):
        tasks[name] = loop.create_task(run_body(env, name, ops))
    try:
        await run_body(env, "main", prog["main"])
    except BaseException:
        pass
    me = asyncio.current_task()
    # Waits for every task left (tulip: `TaskRef::wait_done`, which returns
    # at once for a done task). A cancel of main pending from its own ops
    # is taken first, so that it does not depend on which wait it meets.
    try:
        await asyncio.sleep(0)
    except BaseException as e:
        trace.append("drain raise " + fmt_err(e))
    while True:
        others = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not others:
            break
        # In creation order (tulip's too): all_tasks() is a set.
        others.sort(key=lambda t: CREATED[t])
        for t in others:
            try:
                if not t.done():
                    await asyncio.wait([t])
            except BaseException as e:
                trace.append("drain raise " + fmt_err(e))
    for name, _ in prog["tasks"]:
        t = tasks[name]
        try:
            r = t.result()
        except BaseException as e:
            r = e
        trace.append("final %s %s" % (name, fmt_res(r)))


def run_program(prog):
    CREATED.clear()
    trace = []
    holder = {}

    def factory():
        holder["loop"] = VirtualLoop()
        return holder["loop"]
    try:
        asyncio.run(main(prog, trace), loop_factory=factory)
        trace.append("run ok")
    except Deadlock:
        return {"skip": "deadlock"}
    except (asyncio.CancelledError, UserError) as e:
        trace.append("run raise " + fmt_err(e))
    loop = holder["loop"]
    if loop.racy:
        return {"skip": "racy"}
    return {"trace": trace, "ticks": round(loop.vt, 3), "min_gap": round(min(loop.min_gap, 99), 3)}


if __name__ == "__main__":
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run_program(json.loads(line))), flush=True)
