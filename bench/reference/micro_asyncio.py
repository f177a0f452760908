#!/usr/bin/env python3
"""Reference micro-benchmarks in Python asyncio, measured beside weft's own.

    python3 micro_asyncio.py [--tasks N] [--switches N] [--sleepers N]
                             [--sleep-ms N] [--only NAME]

NAME is one of spawn_join, switch, sleepers; without --only each benchmark
runs in its own child interpreter (see run_each_in_own_process). Stdlib only,
default event loop (no uvloop), default gc settings in every timed part (only
the untimed set-up of sleepers pauses gc). Stdout gets exactly one JSON
object; notes go to stderr.

What each workload means (kept in step with the C++ side and micro.go):
  spawn_join  create_task N coroutines that return at once, then await each
              task; wall time / N.
  switch      two tasks each loop `await asyncio.sleep(0)` (asyncio's yield)
              N/2 times; every resumption is one switch; wall time / N
              (an odd N is rounded down).
  sleepers    N tasks each sleep until one common deadline; see sleepers()
              for how the deadline and the memory are measured.
"""

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
MARGIN = 3  # sleepers: deadline >= MARGIN x start-up time after release


def note(*args):
    print(*args, file=sys.stderr, flush=True)


def rss_bytes():
    # Current RSS, not ru_maxrss: the peak would still hold whatever an
    # earlier benchmark in this process used, hiding this one's growth.
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def noop():
    pass


async def spawn_join(n):
    gc.collect()  # don't charge earlier garbage to this run
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(noop()) for _ in range(n)]
    for t in tasks:
        await t
    el = time.perf_counter() - t0
    return {"name": "spawn_join", "tasks": n, "ns_per_task": el * 1e9 / n}


async def yielder(k):
    for _ in range(k):
        await asyncio.sleep(0)


async def switch(n):
    half = n // 2
    t0 = time.perf_counter()
    await asyncio.gather(yielder(half), yielder(half))
    el = time.perf_counter() - t0
    return {"name": "switch", "switches": 2 * half, "ns_per_switch": el * 1e9 / (2 * half)}


async def sleepers(n, sleep_ms):
    """N tasks sleep until one shared deadline.

    Every task is first started and parked on an Event; only then is the
    deadline fixed (release time + sleep_ms), so spawning never eats into the
    sleep. Getting the parked tasks from the Event into asyncio.sleep took
    about 1.1x as long as starting them, and the full gc below another 0.35x
    (1M tasks, measured here), so if MARGIN x start-up exceeds sleep_ms the
    deadline is pushed out to that (said on stderr); any task that still
    reaches its sleep after the deadline is counted and reported.

    gc: paused while the tasks are set up (unmeasured; with 1M tasks being
    added, repeated full collections double the set-up time), then one full
    collection moves them all to the oldest generation, as in a long-running
    program, and gc is back on, at default settings, before the deadline.
    Setting up creates no garbage cycles, so this does not change the memory
    figure (checked: same RSS either way).

    Memory: /proc/self/statm RSS once every task is inside asyncio.sleep, minus
    RSS before spawning, / N. tracemalloc would be exact but far too slow at
    1M tasks; RSS also counts allocator slack, which is real cost. The task
    list is allocated before the baseline so it stays out of the delta.
    """
    loop = asyncio.get_running_loop()
    release = asyncio.Event()
    all_started = loop.create_future()
    all_asleep = loop.create_future()
    all_woken = loop.create_future()
    deadline = 0.0  # set before release; tasks read it after
    started = asleep = woken = missed = 0
    latest = float("-inf")

    async def sleeper():
        nonlocal started, asleep, woken, missed, latest
        started += 1
        if started == n:
            all_started.set_result(None)
        await release.wait()
        delay = deadline - loop.time()
        if delay <= 0:
            missed += 1
        asleep += 1
        if asleep == n:
            all_asleep.set_result(None)
        await asyncio.sleep(delay)
        t = loop.time()
        if t > latest:
            latest = t
        woken += 1
        if woken == n:
            all_woken.set_result(None)

    tasks = [None] * n
    gc.collect()
    rss0 = rss_bytes()
    gc.disable()

    t0 = loop.time()
    for i in range(n):
        tasks[i] = asyncio.create_task(sleeper())
    await all_started
    startup = loop.time() - t0

    wait = sleep_ms / 1000
    if MARGIN * startup > wait:
        note(f"sleepers: start-up took {startup:.3f}s, deadline set"
             f" {MARGIN * startup:.3f}s after release instead of {wait:.3f}s")
        wait = MARGIN * startup
    released = loop.time()
    deadline = released + wait
    release.set()

    await all_asleep
    rss1 = rss_bytes()
    asleep_at = loop.time() - released
    gc.collect()
    gc.enable()
    note(f"sleepers: all asleep {asleep_at:.3f}s after release,"
         f" gc done {loop.time() - released:.3f}s after")
    if loop.time() > deadline:
        note("sleepers: WARNING set-up ran past the deadline; some may have woken")
    await all_woken
    for t in tasks:
        await t  # all done by now; just reaps them

    if missed:
        note(f"sleepers: WARNING {missed} tasks reached sleep after the deadline")
    note(f"sleepers: start-up {startup:.3f}s, RSS {rss0 >> 20} -> {rss1 >> 20} MiB")
    late = latest - deadline
    return {"name": "sleepers", "sleepers": n, "bytes_per_sleeper": (rss1 - rss0) / n,
            "wake_all_s": late, "late_max_s": late}


NAMES = ["spawn_join", "switch", "sleepers"]


async def run_one(args):
    if args.only == "spawn_join":
        return await spawn_join(args.tasks)
    if args.only == "switch":
        return await switch(args.switches)
    return await sleepers(args.sleepers, args.sleep_ms)


def run_each_in_own_process(args):
    # A fresh interpreter per benchmark: memory pymalloc kept from 1M finished
    # tasks would otherwise be reused by the next benchmark, shrinking its RSS
    # delta (~3% at 1M) and sparing it page faults the others paid for.
    common = ["--tasks", str(args.tasks), "--switches", str(args.switches),
              "--sleepers", str(args.sleepers), "--sleep-ms", str(args.sleep_ms)]
    results = []
    for name in NAMES:
        out = subprocess.run([sys.executable, __file__, "--only", name] + common,
                             stdout=subprocess.PIPE, check=True, text=True).stdout
        results += json.loads(out)["results"]
    return results


def positive(lo):
    def parse(s):
        v = int(s)
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}")
        return v
    return parse


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=positive(1), default=1_000_000)
    p.add_argument("--switches", type=positive(2), default=1_000_000)
    p.add_argument("--sleepers", type=positive(1), default=1_000_000)
    p.add_argument("--sleep-ms", type=positive(0), default=1000)
    p.add_argument("--only", choices=NAMES)
    args = p.parse_args()
    runtime = f"python{platform.python_version()} asyncio"
    if args.only:
        note(f"{runtime}: {args.only}")
        results = [asyncio.run(run_one(args))]
    else:
        results = run_each_in_own_process(args)
    print(json.dumps({"runtime": runtime, "results": results}))
