#!/usr/bin/env python3
"""weft's contrast benchmark (./run bench): what threads, processes and coroutines each buy, by
measurement. One program, build/bench/contrast, runs four workloads each way weft knows; CPython
runs the Python tutorial's countdown beside them.

    python3 bench/contrast.py [--build build] [--quick] [--min-pairs N] [--max-pairs N]
                              [--budget S] [--target-s S] [--n N ...] [--out-dir bench/results]
                              [--only countdown|sleep|echo|mixed|cpython ...] [size options]
    python3 bench/contrast.py compare A.json B.json

Workloads (defaults; --quick: tiny sizes, a smoke test of the plumbing):
  countdown  the tutorial's `while n > 0: n -= 1` over --count (calibrated at the start so that
             sequential takes --target-s, 0.5 s, here, at least 3e8; quick 2e6) split into N
             parts, N = --n (1 2 4): cooperative (N tasks, one thread), single-lock
             --gil=interval (the new GIL) and --gil=ticks:100 (the old GIL, at 1/16 of the
             count: it is tens of times slower), multi-thread, threads (N std::threads, no
             runtime), processes (a process_pool of N).
  sleep      --tasks (10000; quick 200) tasks each sleeping --sleep-ms (100; quick 10), all at
             once: cooperative, single-lock w=2, multi-thread w=2, threads (one per task),
             processes w=2; the sequential baseline T x S is computed, never run.
  echo       an echo server and --connections (1000; quick 50) clients each doing --round-trips
             (10; quick 2) of --size (64) bytes: sequential (one connection at a time),
             cooperative, single-lock w=2, multi-thread w=2, threads, processes w=2.
  mixed      a CPU-bound countdown of --mixed-count (3e8; quick 2e6) and an echo server on the
             same executor, probed by a thread outside it doing back-to-back round trips until
             the countdown ends: idle (no CPU task: the baseline), cooperative, single-lock w=2
             interval and ticks:100, multi-thread w=2, threads, processes w=1; the statistic is
             the median round trip (rtt p50).
  cpython    bench/reference/countdown.py over --python-count (calibrated like the countdown;
             quick 2e5) with this interpreter: sequential, threads N and Pool(N) for each --n
             above 1 (multiprocessing's default start method), and a "GIL side by side" table:
             the tutorial's own figures, CPython here and weft's single-lock (and process_pool
             beside Pool) from the same run.

Paired design: every configuration runs in pairs with its baseline (sequential; idle for
mixed), back to back, the baseline first in every other pair, in an order rotated each round.
Each configuration gets --min-pairs pairs (5; quick 3); those whose interval still reaches
past an edge of the practical margin without clearing it get more, up to --max-pairs (12), while --budget (240 s of
measuring, shared out over the workloads) lasts. A configuration's speed-up is the geometric mean
of its pairs' ratios baseline / configuration, with a 95% interval (the union of a BCa bootstrap
and a Student t interval on the log ratios, bench/stats.py); its verdict, from the interval
alone: faster or slower when the whole interval clears 1 +- 10% (the practical margin), same
otherwise, inconclusive (too few pairs); on the CPU-bound countdown and cpython, a faster beyond
what the way's parallelism achieved allows is inconsistent (the machine's speed changed between
a pair's runs), never a verdict. Every sample records its CPU time and the parallelism achieved (CPU time / wall time),
the 1-minute load before it and the steal time during it; each workload records its noise (the
baseline's spread, its CPU share) and says when the run was too noisy to conclude, and which
verdicts that affects. A failed run is recorded with its reason and the rest still run.

Outputs: a table and a paragraph written from the verdicts per workload on stdout (progress on
stderr); <out-dir>/<YYYY-MM-DD>-<host>.json (-2, -3, ... when taken), with every raw sample,
the summaries, the top-level "verdicts" list, the noise, the calibration, the machine and the
settings, valid against bench/contrast.schema.json; <same stem>-contrast.svg, one chart panel
per workload with 95% error bars (needs python3-matplotlib); <same stem>-timeline.svg, who runs
and who holds the lock in countdown at N=2 (single-lock interval and ticks:100, multi-thread,
cooperative), drawn from traces the program writes under WEFT_TRACE (skipped with a note when
the build writes none; --no-timeline skips it); and <same stem>.html, a self-contained report
page with all of it.

compare A.json B.json prints B/A of the median per configuration (wall s; mixed: rtt p50 us)
with a 95% bootstrap interval (each run's samples resampled on their own) and flags a change
when the interval lies wholly outside 1 +- 10%; then the speed-up verdicts that
differ between the two runs. Countdown and CPython counts that differ (each run calibrates its
own) are compared per 1e9 iterations; other differing sizes are not compared. Configs in only
one file are listed as such.

Exit status: 0 when every run worked, 1 when some run failed, 2 on bad arguments or (compare)
a missing or unreadable file.
"""
import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

# Shared with ./run bench threads and processes: the rotated repetition loop (a failed run is
# recorded, not fatal), running a program with a time limit, its key=value last line, the
# machine's description, the load average.
from threads import apply_defaults, last_fields, loadavg, log, machine, median, rotated, run_cmd

import report_html
import stats
import timeline

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 2
T0 = time.monotonic()
TICKS_SCALE = 16  # the old GIL's countdowns count this many times less far (see plan())
NOISY_CV = 0.10  # a baseline that varies more than this over the run: a noisy run
NOISY_STEAL = 0.05  # steal time beyond this during a sample: a noisy run
NOISY_CPU = 0.9  # a one-thread baseline that got less of a CPU than this: a noisy run
# The ways the timeline shows: countdown at N=2 (label, mode, gil).
TIMELINE_WAYS = (("single-lock N=2 interval (new GIL)", "single-lock", "interval"),
                 ("single-lock N=2 ticks:100 (old GIL)", "single-lock", "ticks:100"),
                 ("multi-thread N=2", "multi-thread", None),
                 ("cooperative N=2", "cooperative", None))
WORKLOADS = ("countdown", "sleep", "echo", "mixed", "cpython")
BASE_KEYS = ("wall_s", "cpu_s", "peak_rss_kib", "workers")
# Fixed CPU-bound work: a way gains only by using more CPUs at once (judge()).
CPU_BOUND = ("countdown", "cpython")
LOCK_KEYS = ("switches", "forced_switches", "lock_wait_s")
EXTRA_KEYS = {"countdown": (), "sleep": ("tasks", "created", "ideal_s"), "echo": ("round_trips",),
              "mixed": ("rtt_p50_us", "rtt_p99_us", "rtt_max_us", "round_trips", "countdown_s"),
              "cpython": ()}
# The Python tutorial's figures (Intel Core i3, COUNT=1e8, CPython of its day): quoted, never
# measured here.
SEED = {"source": "Chosen aspects of concurrency in Python, "
                  "http://blog.idego.pl/2015/11/12/threading-and-multiprocessing-in-python-3/",
        "machine": "Intel Core i3",
        "count": 100_000_000, "wall_s": {"sequential": 9.16, "2 threads": 9.5, "4 threads": 10.7}}
DASH = "\u2013"
try:
    DASH.encode(sys.stdout.encoding or "ascii")
except (UnicodeEncodeError, LookupError):
    DASH = "-"


# ---------------------------------------------------------------------------------------------
# configurations


def config(name, argv, mode, workers=None, gil=None, pair_argv=None):
    """One way to run a workload. pair_argv: the baseline at this configuration's own sizes,
    run back to back with it (None: the workload's baseline is computed, or this is it)."""
    return {"name": name, "mode": mode, "workers": workers, "gil": gil, "argv": argv,
            "pair_argv": pair_argv, "computed": False}


def weft_argv(exe, workload, mode, workers, gil, sizes):
    return ([exe, f"--workload={workload}", f"--mode={mode}"] +
            ([f"--workers={workers}"] if workers else []) + ([f"--gil={gil}"] if gil else []) +
            sizes)


def plan(args):
    """workload -> {sizes, baseline, configs}: what each workload runs, in table order. Every
    configuration but the baseline carries the baseline's argv at its own sizes: the old GIL
    (ticks:100) counts TICKS_SCALE times less far, so that its samples (tens of times slower)
    fit the budget, and is paired with a sequential of that same count."""
    exe = os.path.join(args.build, "bench", "contrast")
    plans = {}

    def cd_sizes(gil):
        c = max(1, args.count // TICKS_SCALE) if gil == "ticks:100" else args.count
        return [f"--count={c}"]
    configs = [config("sequential", weft_argv(exe, "countdown", "sequential", None, None,
                                              cd_sizes(None)), "sequential")]
    for n in args.n:
        for mode, gil in (("cooperative", None), ("single-lock", "interval"),
                          ("single-lock", "ticks:100"), ("multi-thread", None), ("threads", None),
                          ("processes", None)):
            name = f"{mode} N={n}" + (f" {gil}" if gil else "")
            configs.append(config(
                name, weft_argv(exe, "countdown", mode, n, gil, cd_sizes(gil)), mode, n, gil,
                weft_argv(exe, "countdown", "sequential", None, None, cd_sizes(gil))))
    plans["countdown"] = {"sizes": {"count": args.count}, "baseline": "sequential",
                          "configs": configs}

    sizes = [f"--tasks={args.tasks}", f"--sleep-ms={args.sleep_ms}"]
    configs = [config(name, weft_argv(exe, "sleep", mode, w, gil, sizes), mode, w, gil)
               for name, mode, w, gil in (("cooperative", "cooperative", None, None),
                                          ("single-lock w=2", "single-lock", 2, "interval"),
                                          ("multi-thread w=2", "multi-thread", 2, None),
                                          ("threads", "threads", None, None),
                                          ("processes w=2", "processes", 2, None))]
    plans["sleep"] = {"sizes": {"tasks": args.tasks, "sleep_ms": args.sleep_ms},
                      "baseline": "sequential", "computed_baseline_s":
                      args.tasks * args.sleep_ms / 1e3, "configs": configs}

    sizes = [f"--connections={args.connections}", f"--round-trips={args.round_trips}",
             f"--size={args.size}"]
    seq = weft_argv(exe, "echo", "sequential", None, None, sizes)
    configs = [config("sequential", seq, "sequential")]
    configs += [config(name, weft_argv(exe, "echo", mode, w, gil, sizes), mode, w, gil, seq)
                for name, mode, w, gil in (("cooperative", "cooperative", None, None),
                                           ("single-lock w=2", "single-lock", 2, "interval"),
                                           ("multi-thread w=2", "multi-thread", 2, None),
                                           ("threads", "threads", None, None),
                                           ("processes w=2", "processes", 2, None))]
    plans["echo"] = {"sizes": {"connections": args.connections, "round_trips": args.round_trips,
                               "size": args.size}, "baseline": "sequential", "configs": configs}

    def mx_sizes(gil):
        c = max(1, args.mixed_count // TICKS_SCALE) if gil == "ticks:100" else args.mixed_count
        return [f"--count={c}", f"--size={args.size}"]
    idle = weft_argv(exe, "mixed", "idle", None, None, mx_sizes(None))
    configs = [config("idle", idle, "idle")]
    configs += [config(name, weft_argv(exe, "mixed", mode, w, gil, mx_sizes(gil)), mode, w, gil,
                       idle)
                for name, mode, w, gil in (("cooperative", "cooperative", None, None),
                                           ("single-lock w=2 interval", "single-lock", 2,
                                            "interval"),
                                           ("single-lock w=2 ticks:100", "single-lock", 2,
                                            "ticks:100"),
                                           ("multi-thread w=2", "multi-thread", 2, None),
                                           ("threads", "threads", None, None),
                                           ("processes w=1", "processes", 1, None))]
    plans["mixed"] = {"sizes": {"count": args.mixed_count, "size": args.size},
                      "baseline": "idle", "configs": configs}

    script = os.path.join(HERE, "reference", "countdown.py")

    def py(mode, n):
        return ([sys.executable, script, f"--mode={mode}", f"--count={args.python_count}"] +
                ([f"--workers={n}"] if n else []))
    configs = [config("sequential", py("sequential", None), "sequential")]
    ns = [n for n in args.n if n > 1]
    for kind, mode in (("threads", "threads"), ("Pool", "pool")):
        configs += [config(f"{kind} {n}", py(mode, n), mode, n, None, py("sequential", None))
                    for n in ns]
    plans["cpython"] = {"sizes": {"count": args.python_count}, "baseline": "sequential",
                        "configs": configs}
    return plans


# ---------------------------------------------------------------------------------------------
# running


def measure(workload, cfg, timeout, argv=None):
    """Runs one configuration once (argv: its paired baseline's instead). Returns the sample:
    the last line's numbers under "fields", the parallelism achieved (cpu_s / wall_s), the
    machine's state around it (1-minute load before, the fraction of CPU time stolen by the
    hypervisor during it), the child's whole CPU time as the kernel accounts it (rusage_cpu_s,
    start-up and reaped grandchildren included), the human lines, stderr, warnings about
    implausible figures; raises with the reason when the program failed or its last line lacks
    a figure this workload needs."""
    argv = argv or cfg["argv"]
    load1 = (loadavg() or [None])[0]
    jiffies = stats.cpu_jiffies()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    status, out, err = run_cmd(argv, timeout=timeout)
    elapsed = time.monotonic() - started
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    steal = stats.steal_between(jiffies, stats.cpu_jiffies())
    fields, lines = last_fields(out)
    if status != 0:
        reasons = [line for line in (err or "").splitlines() if line.strip()] or lines[-1:]
        raise RuntimeError(f"exit status {status}: "
                           f"{(reasons[-1] if reasons else '(no output)')[-300:]}")
    missing = [k for k in BASE_KEYS + EXTRA_KEYS[workload] if k not in fields]
    if missing:
        raise RuntimeError(f"the last line lacks {' '.join(missing)}: "
                           f"{(lines[-1] if lines else '(no output)')[-300:]}")
    s = {"fields": fields, "process_wall_s": round(elapsed, 6),
         "parallelism": round(fields["cpu_s"] / fields["wall_s"], 4) if fields["wall_s"] > 0
         else None,
         "rusage_cpu_s": round(ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime, 6),
         "load1": load1, "steal": None if steal is None else round(steal, 5),
         "t_s": round(started - T0, 3), "text": lines[:-1][-20:]}
    if err.strip():
        s["stderr"] = err.strip()[-1000:]
    warnings = plausibility(workload, cfg, fields)
    # The lock's counters only explain a figure; without them the run still measured it.
    lock_missing = [k for k in LOCK_KEYS if k not in fields] if cfg["mode"] == "single-lock" \
        else []
    if lock_missing:
        warnings.append(f"single-lock without {' '.join(lock_missing)} on its last line")
    if warnings:
        s["warnings"] = warnings
    return s


def plausibility(workload, cfg, f):
    """Figures that cannot be right, kept as warnings (the run still counts): they point at
    bugs in the measured program, not at slow machines."""
    w = []
    if f["wall_s"] <= 0 or f["cpu_s"] < 0 or f["peak_rss_kib"] <= 0:
        w.append(f"wall_s {f['wall_s']}, cpu_s {f['cpu_s']}, peak_rss_kib {f['peak_rss_kib']}: "
                 "a figure is not positive")
    # Workers are exact where they are threads or processes of their own; elsewhere (a
    # cooperative split, a thread per task) the program may count them its own way.
    exact = ("single-lock", "multi-thread", "processes") + (
        ("threads", "pool") if workload in ("countdown", "cpython") else ())
    if cfg["mode"] in exact and cfg["workers"] and f["workers"] != cfg["workers"]:
        w.append(f"workers={f['workers']:g}, asked for {cfg['workers']}")
    if cfg["mode"] == "single-lock" and f.get("forced_switches", 0) > f.get("switches", 0):
        w.append(f"forced_switches {f['forced_switches']:g} > switches {f['switches']:g}")
    if workload == "sleep":
        if f["created"] > f["tasks"]:
            w.append(f"created {f['created']:g} > tasks {f['tasks']:g}")
        if f["wall_s"] < f["ideal_s"]:
            w.append(f"wall_s {f['wall_s']} is shorter than one sleep (ideal_s {f['ideal_s']})")
    if workload == "echo":
        k = int(next(a for a in cfg["argv"] if a.startswith("--connections=")).split("=")[1])
        r = int(next(a for a in cfg["argv"] if a.startswith("--round-trips=")).split("=")[1])
        if f["round_trips"] != k * r:
            w.append(f"round_trips {f['round_trips']:g}, expected connections x round trips = "
                     f"{k * r}")
    if workload == "mixed":
        if not f["rtt_p50_us"] <= f["rtt_p99_us"] <= f["rtt_max_us"]:
            w.append(f"rtt p50 {f['rtt_p50_us']:g} <= p99 {f['rtt_p99_us']:g} <= max "
                     f"{f['rtt_max_us']:g} does not hold")
        if f["round_trips"] < 1:
            w.append("no round trip: the latency figures measure nothing")
        if cfg["mode"] == "idle" and f["countdown_s"] != 0:
            w.append(f"idle but countdown_s={f['countdown_s']:g}")
        if cfg["mode"] != "idle" and not 0 < f["countdown_s"] <= f["wall_s"] * 1.01:
            w.append(f"countdown_s {f['countdown_s']:g} is not within (0, wall_s "
                     f"{f['wall_s']:g}]")
    return w


def stat(xs):
    xs = [x for x in xs if x is not None]
    return {"median": median(xs), "min": min(xs) if xs else None, "max": max(xs) if xs else None}


def statistic(workload, sample):
    """The figure a verdict compares: wall time, or for mixed the echo's median round trip."""
    if not sample.get("ok"):
        return None
    return sample["fields"]["rtt_p50_us" if workload == "mixed" else "wall_s"]


def pairs_of(rec, cname):
    """(baseline figures, config figures) of a configuration's pairs, in run order. A computed
    baseline pairs the same constant with every sample."""
    by = {c["name"]: c for c in rec["configs"]}
    cfg = by[cname]
    if "computed_baseline_s" in rec:
        xs = [statistic(rec["workload"], s) for s in cfg["samples"]]
        return [rec["computed_baseline_s"]] * len(xs), xs
    base = {s["pair"]: statistic(rec["workload"], s)
            for s in by[rec["baseline"]]["samples"] if s.get("pair_of") == cname}
    xs = [(base.get(s["pair"]), statistic(rec["workload"], s)) for s in cfg["samples"]]
    return [b for b, _ in xs], [c for _, c in xs]


def interval(rec, cname):
    """The speed-up baseline / config with its interval (mixed: idle's median round trip over
    the configuration's, below 1 when the CPU task slowed the echo)."""
    return stats.paired_speedup(*pairs_of(rec, cname))


def parallelisms(rec, cname):
    """(configuration's, its paired baseline samples') median parallelism achieved."""
    by = {c["name"]: c for c in rec["configs"]}
    own = median([s.get("parallelism") for s in by[cname]["samples"] if s["ok"]])
    base = median([s.get("parallelism") for s in by[rec["baseline"]]["samples"]
                   if s["ok"] and s.get("pair_of") == cname])
    return own, base


def judge(rec, cname, ci):
    """The verdict of a configuration's interval (stats.verdict), unless it contradicts the
    run's own measurements: on CPU-bound work, a `faster` beyond what the configuration's
    parallelism allows is `inconsistent` (stats.exceeds_parallelism says why)."""
    v = stats.verdict(ci)
    if v == "faster" and rec["workload"] in CPU_BOUND and \
            stats.exceeds_parallelism(ci, *parallelisms(rec, cname)):
        return "inconsistent"
    return v


def still_open(rec, cname):
    """True when more pairs could change the configuration's verdict: its interval is
    undecided, or its verdict is inconsistent (a pair straddled a change of the machine's
    speed; more pairs dilute it)."""
    ci = interval(rec, cname)["ci95"]
    return stats.undecided(ci) or judge(rec, cname, ci) == "inconsistent"


def run_workload(name, p, args, deadline):
    """Runs the workload's configurations in pairs with their baseline: in round r, for each
    configuration (rotated), one baseline sample and one configuration sample back to back,
    the baseline first in every other pair. After --min-pairs rounds, only the configurations
    whose verdict is still open (still_open: the interval reaches past an edge of the margin
    without clearing it, or the verdict is inconsistent) run again, up to --max-pairs, while the workload's share of the budget (`deadline`, a
    monotonic time) allows. Returns the workload's JSON record (summaries: summarize)."""
    configs = {c["name"]: dict(c, samples=[]) for c in p["configs"]}
    base = p["baseline"]
    computed = "computed_baseline_s" in p
    others = [c for c in configs if c != base]
    rec = {k: v for k, v in p.items() if k != "configs"}
    rec["workload"] = name
    rec["configs"] = list(configs.values())
    errors, pair_id, last_round = [], 0, None

    def sample(cname, rnd, order, argv=None, pair_of=None):
        cfg = configs[base] if pair_of else configs[cname]
        try:
            s = dict({"ok": True}, **measure(name, cfg, args.timeout, argv))
            log(f"  {name} {cname}{' (pair of ' + pair_of + ')' if pair_of else ''} "
                f"round {rnd + 1}: {statistic(name, s):.6g}")
        except Exception as e:  # a failed run is a result, not the end of the run
            s = {"ok": False, "error": str(e) or type(e).__name__}
            who = f"{base} (paired with {cname})" if pair_of else cname
            errors.append(f"{who} round {rnd + 1}: {s['error']}")
            log(f"  {name} {cname} round {rnd + 1}: FAILED: {e}")
        s.update(rep=rnd + 1, order=order, pair=pair_id)
        if pair_of:
            s["pair_of"] = pair_of
            if argv != configs[base]["argv"]:
                s["scaled"] = True  # the baseline at another size (the old GIL's count)
        (configs[base] if pair_of else cfg)["samples"].append(s)

    rec["rounds"] = 0
    for rnd in range(args.max_pairs):
        todo = others
        if rnd >= args.min_pairs:
            todo = [c for c in others if still_open(rec, c)]
            if not todo:
                break
        # Past the pairs an interval needs, a round starts only when it should end within the
        # workload's share of the budget (as long as the last full round took, pro rata).
        if rnd >= min(args.min_pairs, stats.MIN_PAIRS) and last_round and \
                time.monotonic() + last_round * len(todo) / len(others) > deadline:
            if rnd < args.min_pairs:
                rec["budget_note"] = (f"the budget ran out after {rnd} of {args.min_pairs} "
                                      "rounds")
                log(f"  {name}: {rec['budget_note']}")
            break
        rec["rounds"] = rnd + 1
        started = time.monotonic()
        for cname in rotated(todo, rnd):
            pair_id += 1
            if computed:
                sample(cname, rnd, 1)
                continue
            # Each configuration's own pairs alternate which half runs first, round by round
            # (its place in the rotated order would not: with an even count it keeps parity).
            first = (rnd + others.index(cname)) % 2 == 0
            if first:
                sample(cname, rnd, 1, configs[cname]["pair_argv"], pair_of=cname)
            sample(cname, rnd, 2 if first else 1)
            if not first:
                sample(cname, rnd, 2, configs[cname]["pair_argv"], pair_of=cname)
        if rnd < args.min_pairs or todo == others:
            last_round = time.monotonic() - started
    if computed:
        # The sequential sleep would take T x S: stated as computed, never as measured.
        rec["configs"].insert(0, {"name": "sequential", "mode": "sequential", "workers": None,
                                  "gil": None, "argv": None, "pair_argv": None,
                                  "computed": True, "samples": [],
                                  "computed_from": "tasks x sleep_ms / 1000"})
    rec["errors"] = errors
    return rec


def base_summary(samples, computed=None):
    """Median, min and max of every figure over the samples that worked; a baseline's runs at
    another size (scaled: paired with the old GIL) are left out of its own figures."""
    samples = [s for s in samples if not s.get("scaled")]
    ok = [s for s in samples if s["ok"]]
    if computed is not None:
        wall = {"median": computed, "min": computed, "max": computed}
    else:
        wall = stat(s["fields"]["wall_s"] for s in ok)
    keys = sorted({k for s in ok for k in s["fields"]})
    st = {k: stat(s["fields"].get(k) for s in ok) for k in keys}
    rss = st.get("peak_rss_kib", {}).get("median")
    return {"ok_reps": len(ok), "failed_reps": len(samples) - len(ok),
            "errors": [s["error"] for s in samples if not s["ok"]], "wall_s": wall,
            "speedup": None, "ci95": None, "verdict": None, "pairs": 0,
            "cpu_s": st.get("cpu_s", {}).get("median"),
            "parallelism": stat(s.get("parallelism") for s in ok),
            "peak_rss_mib": None if rss is None else rss / 1024, "stats": st}


def summarize(name, rec):
    """Adds each config's summary: wall median [min, max], the speed-up against the baseline
    with its 95% interval and verdict (stats.py), CPU time and parallelism achieved, memory,
    and the workload's own figures; then the workload's noise (noise())."""
    for cfg in rec["configs"]:
        cfg["summary"] = base_summary(cfg["samples"], rec.get("computed_baseline_s")
                                      if cfg["computed"] else None)
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    idle = by.get("idle", {}).get("stats", {})
    for cfg in rec["configs"]:
        s = cfg["summary"]
        m, st = s["wall_s"]["median"], s["stats"]
        if cfg["name"] != rec["baseline"]:
            iv = interval(rec, cfg["name"])
            s.update(speedup=iv["speedup"], ci95=iv["ci95"], pairs=iv["n"],
                     verdict=judge(rec, cfg["name"], iv["ci95"]), method=iv["method"])
        if cfg["mode"] == "single-lock":
            for k in LOCK_KEYS:
                s[k] = st.get(k, {}).get("median")
        if name == "sleep" and not cfg["computed"]:
            s["created"] = st.get("created", {}).get("min")  # the fewest: when the system refused
            ideal = st.get("ideal_s", {}).get("median")
            s["overhead_s"] = m - ideal if m is not None and ideal is not None else None
        if name == "echo":
            rt = st.get("round_trips", {}).get("median")
            s["round_trips"] = rt
            s["round_trips_per_s"] = rt / m if rt and m else None
        if name == "mixed":
            for k in EXTRA_KEYS["mixed"]:
                s[k] = st.get(k, {}).get("median")
            for q in ("p50", "p99"):
                a, b = s[f"rtt_{q}_us"], idle.get(f"rtt_{q}_us", {}).get("median")
                s[f"{q}_vs_idle"] = a / b if a is not None and b else None
    rec["noise"] = noise(rec)


def noise(rec):
    """The machine's noise as this workload saw it: the spread of its baseline over the run
    (the same program every time, so its spread is the machine's), the 1-minute load before
    each sample and the steal time during it. `noisy` when the baseline's coefficient of
    variation passes NOISY_CV or the hypervisor stole more than NOISY_STEAL of the CPU during a
    sample; `affected` then lists the verdicts a quieter run might change: the `same` and
    `inconclusive` ones (noise widens intervals and can hide a difference). Noise that changes
    the CPU's own speed between the two runs of a pair can also make a difference that is not
    there; on CPU-bound work judge() catches it as `inconsistent`, which makes a run noisy and
    is always listed."""
    samples = [s for c in rec["configs"] for s in c["samples"] if s["ok"]]
    base = next((c for c in rec["configs"] if c["name"] == rec["baseline"]), None)
    bx = [statistic(rec["workload"], s) for s in (base or {}).get("samples", [])
          if s["ok"] and not s.get("scaled")]
    loads = [s["load1"] for s in samples if s.get("load1") is not None]
    steals = [s["steal"] for s in samples if s.get("steal") is not None]
    out = {"baseline_cv": stats.cv(bx), "baseline": stat(bx), "baseline_n": len(bx),
           "load1": stat(loads), "steal_max": max(steals) if steals else None,
           "steal_median": median(steals), "noisy": False, "reasons": [], "affected": []}
    if base and base.get("computed"):
        out["baseline_cv"] = stats.cv([s["fields"]["wall_s"] for c in rec["configs"]
                                       if c["name"] == "cooperative" for s in c["samples"]
                                       if s["ok"]])
        out["cv_of"] = "cooperative"
    if out["baseline_cv"] is not None and out["baseline_cv"] > NOISY_CV:
        out["reasons"].append(f"the {out.get('cv_of', 'baseline')} varied by "
                              f"{out['baseline_cv']:.0%} (coefficient of variation) over the run")
    # A one-thread baseline that got less than a CPU while it ran: the machine (other
    # containers, other load) took CPU time from it that no steal counter shows.
    bp = median([s.get("parallelism") for s in (base or {}).get("samples", [])
                 if s["ok"] and not s.get("scaled")])
    out["baseline_parallelism"] = bp
    if bp is not None and base and base["mode"] in ("sequential", "idle") and bp < NOISY_CPU:
        out["reasons"].append(f"the single-threaded {rec['baseline']} got {bp:.2f} of a CPU "
                              "(median CPU time / wall time): other load took the rest")
    # Plain std::threads (no runtime) at N >= 2 are the machine's own parallelism: when they
    # fall short of min(N, CPUs), other load held a CPU, whatever the baseline got.
    most = min(2, cpus_available())
    plain = [c for c in rec["configs"] if rec["workload"] == "countdown" and
             c["mode"] == "threads" and (c["workers"] or 1) >= 2 and most >= 2]
    tp = [(c["name"], (c.get("summary") or {}).get("parallelism", {}).get("median"))
          for c in plain]
    short = [(n, x) for n, x in tp if x is not None and x < 0.75 * most]
    out["machine_parallelism"] = max((x for _, x in tp if x is not None), default=None)
    if short:
        out["reasons"].append("plain threads reached a parallelism of only " +
                              ", ".join(f"{x:.2f} ({n})" for n, x in short) +
                              f" of a possible {most}: other load held a CPU")
    if out["steal_max"] is not None and out["steal_max"] > NOISY_STEAL:
        out["reasons"].append(f"the hypervisor stole up to {out['steal_max']:.0%} of the CPU time "
                              "during a sample")
    odd = [c["name"] for c in rec["configs"]
           if (c.get("summary") or {}).get("verdict") == "inconsistent"]
    if odd:
        out["reasons"].append(
            f"{', '.join(odd)} came out faster than {'its' if len(odd) == 1 else 'their'} "
            "parallelism allows: the CPU's speed changed between the runs of a pair (the "
            f"{rec['baseline']} took {fs(out['baseline']['min'])} to "
            f"{fs(out['baseline']['max'])} s)")
    out["noisy"] = bool(out["reasons"])
    if out["noisy"]:
        # Noise widens intervals, so it can hide a difference: the same and inconclusive
        # verdicts. A machine that withholds CPU also holds back the ways that need several
        # CPUs, whatever their verdict short of faster.
        starved = bp is not None and bp < NOISY_CPU or bool(short)
        parallel = ("multi-thread", "processes", "pool") + (
            () if rec["workload"] == "cpython" else ("threads",))  # CPython's threads: GIL
        out["affected"] = [c["name"] for c in rec["configs"]
                           if c["summary"].get("verdict") in ("same", "inconclusive",
                                                              "inconsistent") or
                           (starved and c["summary"].get("verdict") == "slower" and
                            c["mode"] in parallel and (c["workers"] or 1) > 1)]
    return out


# ---------------------------------------------------------------------------------------------
# terminal


def dash_for_none(format_value):
    """A cell formatter that shows a missing figure (None) as '-'."""
    return lambda v, *a: "-" if v is None else format_value(v, *a)


# Seconds, with enough digits for --quick's milliseconds.
fs = dash_for_none(lambda v: f"{v:.3f}" if v >= 0.1 else f"{v:.4f}" if v >= 0.001 else f"{v:.2g}")
fx = dash_for_none(lambda v, digits=2: f"{v:,.{digits}f}x")
# A ratio with digits where they matter: 0.04x, 1.32x, 13.3x, 166x.
fr = dash_for_none(lambda v: f"{v:,.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x")
fn = dash_for_none(lambda v, digits=0: f"{v:,.{digits}f}")


def sci(n):
    """3e8 rather than 3e+08 or 300,000,000 in headings."""
    m, e = f"{n:.1e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def wall_cell(s):
    w = s["wall_s"]
    if w["median"] is None:
        return "FAILED: " + (s["errors"][0][:60] if s["errors"] else "no run")
    cell = f"{fs(w['median'])} [{fs(w['min'])}{DASH}{fs(w['max'])}]"
    if s["failed_reps"]:
        cell += f" ({s['failed_reps']} of {s['failed_reps'] + s['ok_reps']} failed)"
    return cell


def table_rows(name, record):
    head = ["way", "wall s median [min" + DASH + "max]"]
    head += ["rtt p50 vs idle [95%]" if name == "mixed" else "speed-up [95%]", "verdict", "pairs"]
    head += ["CPU s", "parallelism", "peak MiB"]
    head += ["hand-overs"] + (["lock wait s"] if name == "countdown" else [])
    head += {"sleep": ["threads/tasks", "over ideal ms"], "echo": ["round trips", "rt/s"],
             "mixed": ["rtt p50/p99/max us", "round trips", "countdown s"]
             }.get(name, [])
    rows = []
    for cfg in record["configs"]:
        s = cfg["summary"]
        way = cfg["name"] + (" (computed T x S)" if cfg["computed"] else "")
        r = [way, wall_cell(s)]
        failed = s["wall_s"]["median"] is None
        lock = cfg["mode"] == "single-lock"
        sp, ci = s.get("speedup"), s.get("ci95")
        if name == "mixed" and sp:  # shown as the way's latency over idle's: above 1 is worse
            sp, ci = 1 / sp, [1 / ci[1], 1 / ci[0]] if ci else None
        if cfg["name"] == record["baseline"]:
            r += ["baseline", "", ""]
        else:
            r += [f"{fr(sp)}" + (f" [{fr(ci[0])[:-1]}{DASH}{fr(ci[1])[:-1]}]" if ci else ""),
                  s.get("verdict") or "-", str(s.get("pairs", 0))]
        r += [fs(s["cpu_s"]) if not cfg["computed"] else "-",
              par(s) if not cfg["computed"] else "-", fn(s["peak_rss_mib"], 1)]
        r += [fn(s.get("switches")) if lock else ""]
        if name == "countdown":
            r += [fs(s.get("lock_wait_s")) if lock else ""]
        if name == "sleep":
            t = s["stats"].get("tasks", {}).get("median")
            r += ["" if cfg["computed"] or cfg["mode"] != "threads" else
                  f"{fn(s.get('created'))}/{fn(t)}",
                  "" if cfg["computed"] else fn(None if s.get("overhead_s") is None
                                                 else s["overhead_s"] * 1e3, 1)]
        elif name == "echo":
            r += [fn(s.get("round_trips")), fn(s.get("round_trips_per_s"))]
        elif name == "mixed":
            r += ["/".join(fn(s.get(f"rtt_{q}_us")) for q in ("p50", "p99", "max")),
                  fn(s.get("round_trips")), fs(s.get("countdown_s"))]
        if failed:
            r = r[:2] + [""] * (len(r) - 2)
        rows.append(r)
    return head, rows


def print_table(head, rows, left=1):
    """Columns padded to their widest cell; the first `left` ones left-aligned (names), the
    rest right-aligned (figures)."""
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(widths[i]) if i < left else c.rjust(widths[i])
                         for i, c in enumerate(cells)).rstrip()
    print(line(head))
    print("-" * len(line(head)))
    for r in rows:
        print(line(r))


# ---------------------------------------------------------------------------------------------
# paragraphs, written from the verdicts


def cpus_available():
    return len(os.sched_getaffinity(0))


def ci_text(sp, ci):
    """'1.92x (95%: 1.85-1.99)' from a speed-up and its interval."""
    if sp is None:
        return "no figure"
    return f"{fr(sp)}" + (f" (95%: {ci[0]:.2f}{DASH}{ci[1]:.2f})" if ci else " (no interval)")


def against(v, ci, base):
    """The verdict in words, and nothing beyond what it says."""
    if v == "faster":
        return f"faster than {base}"
    if v == "slower":
        return f"slower than {base}"
    if v == "inconclusive":
        return f"too few pairs to compare with {base}"
    if v == "inconsistent":
        return (f"faster than {base} by more than its parallelism allows, so the machine's "
                "speed changed between paired runs: no verdict")
    if stats.too_wide(ci):
        return f"no difference from {base} this run could show (the interval is wide)"
    if ci and ci[0] >= 1 - stats.MARGIN and ci[1] <= 1 + stats.MARGIN:
        return f"the same as {base} (within {stats.MARGIN:.0%})"
    if ci and not ci[0] <= 1 <= ci[1]:
        return f"no difference beyond {stats.MARGIN:.0%} from {base} this run could show"
    return f"no difference from {base} this run could show"


def par(s):
    p = (s.get("parallelism") or {}).get("median")
    return "-" if p is None else f"{p:.2f}"


def judged(s, base="sequential"):
    """'1.92x (95%: 1.85-1.99), faster than sequential' from a summary."""
    ci = s.get("ci95")
    return f"{ci_text(s.get('speedup'), ci)}, {against(s.get('verdict'), ci, base)}"


def handovers(n):
    return f"{fn(n)} hand-over" + ("" if n == 1 else "s")


def countdown_sentence(cname, cfg, s, by, cpus, by_noise=None):
    n, mode, v = cfg["workers"] or 1, cfg["mode"], s.get("verdict")
    p = (s.get("parallelism") or {}).get("median")
    head = f"{cname}: {judged(s)}, parallelism {par(s)}"
    if mode == "cooperative":
        if v == "faster":
            return head + ": one thread cannot explain a gain, so this run measured something " \
                          "the method does not account for"
        return head + ": one thread runs the tasks one after another" + \
            (", and the split only added overhead" if v == "slower" else "")
    if mode == "single-lock":
        sw = s.get("switches")
        if cfg["gil"] != "interval":
            iv = by.get(f"single-lock N={n} interval", {}).get("switches")
            more = f", {sw / iv:,.0f}x the interval's" if sw and iv and sw > 1.5 * iv else ""
            return head + f"; {handovers(sw)}{more}" + (
                ": the old GIL releases and retakes the lock every 100 iterations, whether or not "
                "another thread waits"
                if v == "slower" else "")
        if v == "faster":
            return head + ", which one lock should not allow"
        return head + f" ({handovers(sw)}): the lock lets one thread count at a time" \
            if p is not None and p < 1.2 else head + f" ({handovers(sw)})"
    # multi-thread, threads, processes: parallel ways
    most = min(n, cpus)
    if v == "faster":
        return head + (f" of a possible {most}: they ran in parallel" if p and p >= 1.2 else
                       f" of a possible {most}: little of it ran in parallel, so this run "
                       "cannot say where the gain came from")
    if n > 1 and p is not None and p < 0.75 * most:
        return head + f" of a possible {most}: " + short_of_cpu(most, by_noise)
    return head + (f" of a possible {most}" if n > 1 else "")


def short_of_cpu(most, noise):
    """Why a parallel way's parallelism fell short, as far as the run can tell: the machine
    when the one-thread baseline itself got less than a CPU, else only the fact."""
    bp = (noise or {}).get("baseline_parallelism")
    mp = (noise or {}).get("machine_parallelism")
    if mp is not None and mp < 0.75 * most:
        return (f"they did not run on {most} CPUs at once, nor did plain threads (at best "
                f"{mp:.2f}): the machine did not give {most} CPUs")
    if bp is not None and bp < NOISY_CPU:
        return (f"they did not run on {most} CPUs at once, and the machine was short of CPU "
                f"(the one-thread baseline got {bp:.2f} of one)")
    return f"they did not run on {most} CPUs at once"


def countdown_paragraph(rec, load):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    cfgs = {c["name"]: c for c in rec["configs"]}
    cpus = cpus_available()
    seq = by["sequential"]["wall_s"]["median"]
    if seq is None:
        return "The sequential run failed, so no speed-up can be given."
    out = [f"Sequential counted {rec['sizes']['count']:,} in {seq:.3f} s (median of "
           f"{by['sequential']['ok_reps']} runs; parallelism {par(by['sequential'])}); {cpus} "
           f"CPUs were available (load average before: {load}). Each way ran paired with a "
           "sequential run of the same count (the old GIL's at 1/"
           f"{TICKS_SCALE} of it); speed-up = sequential / way with its 95% interval, and "
           "parallelism achieved = CPU time / wall time."]
    for n in sorted({c["workers"] for c in rec["configs"] if c["workers"]}):
        parts = [countdown_sentence(name, cfgs[name], by[name], by, cpus, rec.get("noise"))
                 for name in cfgs if cfgs[name]["workers"] == n]
        out.append(f"At N={n}: " + "; ".join(parts) + ".")
    return " ".join(out)


def unpaired(rec, a, b, key="wall_s"):
    """median(a) / median(b) of two configurations' samples with a bootstrap interval and
    its verdict (they did not run in pairs)."""
    by = {c["name"]: c for c in rec["configs"]}
    xs = [[s["fields"][key] for s in by[n]["samples"] if s["ok"]] for n in (a, b)]
    r = stats.unpaired_ratio(*xs)
    r["verdict"] = stats.verdict(r["ci95"])
    return r


def side_claims(rec):
    """The comparisons a paragraph makes besides the baseline's, with their statistics:
    (config, baseline, result)."""
    names = [c["name"] for c in rec["configs"]]
    out = []
    if rec["workload"] in ("sleep", "echo") and "cooperative" in names:
        for n in ("single-lock w=2", "multi-thread w=2", "threads", "processes w=2"):
            if n in names:
                out.append((n, "cooperative", unpaired(rec, "cooperative", n)))
    if rec["workload"] == "mixed" and {"single-lock w=2 interval",
                                       "single-lock w=2 ticks:100"} <= set(names):
        out.append(("single-lock w=2 ticks:100", "single-lock w=2 interval",
                    unpaired(rec, "single-lock w=2 interval", "single-lock w=2 ticks:100",
                             "rtt_p50_us")))
    return out


def sleep_paragraph(rec):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    t, ms = rec["sizes"]["tasks"], rec["sizes"]["sleep_ms"]
    out = [f"{t:,} sleeps of {ms} ms one after another would take "
           f"{rec['computed_baseline_s']:,.1f} s (computed, not run); every way ran them all at "
           "once."]
    for name, s in by.items():
        if name == "sequential" or s["wall_s"]["median"] is None:
            continue
        extra = ""
        if s.get("overhead_s") is not None:
            extra = f", {s['overhead_s'] * 1e3:,.1f} ms over a single sleep"
        out.append(f"{name}: {s['wall_s']['median']:.3f} s{extra}, {judged(s, 'sequential')}.")
    out += against_one_thread(rec, "Waiting needs no thread: a way that is not faster than one "
                              "cooperative thread gains nothing from its workers here.")
    th = by.get("threads")
    if th and th["wall_s"]["median"] is not None and th.get("created") is not None \
            and th["created"] < t:
        out.append(f"The system refused {t - th['created']:,.0f} of the {t:,} threads.")
    return " ".join(out)


def against_one_thread(rec, lesson):
    """The sentence comparing each way with one cooperative thread (sleep and echo), with the
    workload's lesson after it; an empty list when there is no such comparison."""
    claims = side_claims(rec)
    if not claims:
        return []
    return ["Against one cooperative thread (ratio of medians, bootstrap interval): " +
            "; ".join(f"{n} {ci_text(r['speedup'], r['ci95'])}, "
                      f"{against(r['verdict'], r['ci95'], 'one thread')}"
                      for n, _, r in claims) + ". " + lesson]


def echo_paragraph(rec):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    z = rec["sizes"]
    seq = by.get("sequential", {}).get("wall_s", {}).get("median")
    if seq is None:
        return "The sequential run failed: no speed-ups."
    out = [f"One connection at a time, {z['connections']:,} connections x {z['round_trips']} "
           f"round trips of {z['size']} B took {seq:.3f} s (median)."]
    for name, s in by.items():
        if name == "sequential" or s["wall_s"]["median"] is None:
            continue
        out.append(f"{name}: {judged(s)}, parallelism {par(s)}.")
    out += against_one_thread(rec, "Over 127.0.0.1 a round trip waits only for the other end's "
                              "CPU, and clients and server share the same CPUs.")
    return " ".join(out)


def mixed_paragraph(rec):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    cfgs = {c["name"]: c for c in rec["configs"]}
    idle = by.get("idle", {})
    if idle.get("rtt_p50_us") is None:
        return "The idle run failed: no latency baseline."
    out = [f"With no CPU task the probe's round trip took p50 {idle['rtt_p50_us']:,.0f} us "
           f"(median over {idle['ok_reps']} idle runs, each paired with a way). Figures: the "
           "way's median round trip against its paired idle run's (above 1x: slower)."]
    for name, s in by.items():
        if name == "idle" or s.get("rtt_p50_us") is None:
            continue
        sp, ci, v = s.get("speedup"), s.get("ci95"), s.get("verdict")
        k = ci_text(1 / sp if sp else None, [1 / ci[1], 1 / ci[0]] if ci else None)
        if v == "slower":
            what = "the echo waited behind the CPU task"
            if cfgs[name]["mode"] in ("multi-thread", "threads", "processes"):
                what += ", although the countdown had a thread or process of its own"
        elif v == "faster":
            what = "lower than idle's: idle is not the floor on this machine"
        else:
            what = against(v, ci, "idle").replace("faster", "lower").replace("slower", "higher")
        out.append(f"{name}: p50 {s['rtt_p50_us']:,.0f} us, {k} idle's: {what}.")
    for n, b, r in side_claims(rec):
        # r: the interval's median round trip over the old GIL's; shown the other way round
        sp, ci = r["speedup"], r["ci95"]
        word = {"faster": "lower than", "slower": "higher than"}.get(r["verdict"])
        out.append(f"The old GIL's median round trip over the interval's: "
                   f"{ci_text(1 / sp if sp else None, [1 / ci[1], 1 / ci[0]] if ci else None)}"
                   f", " + (f"{word} the interval's" if word else
                            against(r["verdict"], ci, "the interval's")) + ".")
    return " ".join(out)


def side_by_side(rec, countdown):
    """The GIL side by side: the tutorial's quoted figures, CPython here, weft's single-lock and
    process pool here, each as a speed-up against its own sequential, with intervals."""
    py = {c["name"]: c["summary"] for c in rec["configs"]}
    wf = {c["name"]: c["summary"] for c in countdown["configs"]} if countdown else {}
    seed = SEED["wall_s"]
    ways = [("sequential", "sequential", "sequential", "sequential")]
    for n in sorted({c["workers"] for c in rec["configs"] if c["workers"]}):
        ways.append((f"{n} threads", f"{n} threads" if f"{n} threads" in seed else None,
                     f"threads {n}", f"single-lock N={n} interval"))
    for n in sorted({c["workers"] for c in rec["configs"] if c["workers"]}):
        ways.append((f"{n} processes", None, f"Pool {n}", f"processes N={n}"))
    rows = []
    for way, s_key, p_key, w_key in ways:
        def cell(by, key):
            s = by.get(key)
            if not s or s["wall_s"]["median"] is None:
                return {"config": key, "wall_s": None, "speedup": None, "ci95": None,
                        "verdict": None}
            if key == "sequential":
                return {"config": key, "wall_s": s["wall_s"]["median"], "speedup": 1.0,
                        "ci95": None, "verdict": None}
            return {"config": key, "wall_s": s["wall_s"]["median"], "speedup": s["speedup"],
                    "ci95": s["ci95"], "verdict": s["verdict"]}
        rows.append({"way": way,
                     "seed": {"wall_s": seed.get(s_key),
                              "speedup": seed["sequential"] / seed[s_key] if s_key else None},
                     "cpython": cell(py, p_key), "weft": cell(wf, w_key)})
    return rows


def print_side_by_side(rows, rec, countdown):
    def c(x):
        if x["speedup"] is None:
            return "-"
        return ci_text(x["speedup"], x.get("ci95")) if x.get("ci95") else f"{x['speedup']:.2f}x"
    head = ["GIL side by side", f"seed: {SEED['machine']}, COUNT=1e8 (quoted)",
            f"CPython {platform.python_version()} here, count {sci(rec['sizes']['count'])}",
            "weft here" + (f", count {sci(countdown['sizes']['count'])}" if countdown and
                           countdown["configs"] else " (countdown not run or failed)")]
    body = [[r["way"] + (" (Pool / process_pool)" if "processes" in r["way"] else
                         " (weft: single-lock)" if "threads" in r["way"] else ""),
             c(r["seed"]), c(r["cpython"]), c(r["weft"])] for r in rows]
    print_table(head, body)
    print(f"speed-up against each one's own sequential, 95% intervals from paired samples; the "
          f"tutorial's figures are quoted from {SEED['source']}; Pool uses multiprocessing's "
          f"default start method, {rec.get('start_method')}")


def cpython_paragraph(rec, rows):
    py_by = {c["name"]: c["summary"] for c in rec["configs"]}
    ver = platform.python_version()
    cpus = cpus_available()
    seq = py_by["sequential"]["wall_s"]["median"]
    out = [f"CPython {ver} counted {rec['sizes']['count']:,} sequentially in "
           f"{fs(seq)} s (median); each way ran paired with a sequential run."]
    for r in rows:
        py = r["cpython"]
        if r["way"] == "sequential" or py["speedup"] is None:
            continue
        s = py_by[py["config"]]
        p = (s.get("parallelism") or {}).get("median")
        n = int(r["way"].split()[0])
        text = f"{py['config']}: {judged(s)}, parallelism {par(s)}"
        if "threads" in r["way"]:
            if py["verdict"] == "faster":
                text += (": the threads ran at once, so this interpreter did not serialise them"
                         if p is not None and p > 1.2 else
                         ", yet one thread ran at a time: this run cannot say where the gain "
                         "came from")
            elif p is not None and p < 1.2:
                text += ": the GIL lets one thread count at a time"
            if r["seed"]["speedup"]:
                text += f" (the tutorial's i3: {r['seed']['speedup']:.2f}x)"
        else:
            most = min(n, cpus)
            text += (f" of a possible {most}: the processes ran in parallel"
                     if py["verdict"] == "faster" and p is not None and p >= 1.2 else
                     f" of a possible {most}" if py["verdict"] == "faster" else
                     f" of a possible {most}: " + short_of_cpu(most, rec.get("noise"))
                     if p is not None and p < 0.75 * most else f" of a possible {most}")
        wf = r["weft"]
        if wf["speedup"] is not None:
            text += (f"; weft's {wf['config']}: {ci_text(wf['speedup'], wf['ci95'])}, "
                     f"{against(wf['verdict'], wf['ci95'], 'sequential')}")
        out.append(text + ".")
    return " ".join(out)


def all_verdicts(result):
    """The top-level verdicts list: one object per comparison the text makes."""
    out = []
    for w, rec in result["workloads"].items():
        noisy = set(rec.get("noise", {}).get("affected", []))
        stat_key = "rtt_p50_us" if w == "mixed" else "wall_s"
        for c in rec["configs"]:
            s = c.get("summary", {})
            if c["name"] == rec["baseline"] or "verdict" not in s:
                continue
            out.append({"workload": w, "config": c["name"], "baseline": rec["baseline"],
                        "speedup": s["speedup"], "ci95": s["ci95"], "verdict": s["verdict"],
                        "pairs": s["pairs"], "paired": True, "statistic": stat_key,
                        "noisy": c["name"] in noisy})
        for name, base, r in side_claims(rec) if rec["configs"] else []:
            out.append({"workload": w, "config": name, "baseline": base,
                        "speedup": r["speedup"], "ci95": r["ci95"], "verdict": r["verdict"],
                        "pairs": r["n"], "paired": False, "statistic": stat_key,
                        "noisy": bool(rec.get("noise", {}).get("noisy"))})
    return out


# ---------------------------------------------------------------------------------------------
# chart


def vc(s):
    """(speed-up, 95% interval) of a summary or side-by-side cell, for the chart."""
    return None if not s else (s.get("speedup"), s.get("ci95"))


def chart(result, path):
    """One panel per workload: speed-up against sequential per way (mixed: rtt p50 and p99,
    log scale). Returns the path, or None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart: skipped (python3-matplotlib is not installed)")
        return None
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    wl = result["workloads"]
    panels = [w for w in WORKLOADS if w in wl and wl[w].get("configs")]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 3.9 * len(panels)), squeeze=False,
                             layout="constrained")
    colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"]

    def bars(ax, groups, series, log=False, unit="x"):
        """groups: x labels; series: [(label, [(value, 95% interval or None) or None per
        group], what None means)]. Intervals are drawn as error bars."""
        width = 0.8 / len(series)
        for i, (label, cells, missing) in enumerate(series):
            values = [None if c is None or c[0] is None else c[0] for c in cells]
            for j, v in enumerate(values):
                x = j + (i - (len(series) - 1) / 2) * width
                ci = cells[j][1] if v is not None else None
                if v is None:
                    ax.text(x, 1 if log else 0, missing, rotation=90, ha="center", va="bottom",
                            fontsize=7, color="#C44E52" if missing == "FAILED" else "gray")
                    continue
                ax.bar(x, v, width * 0.95, color=colors[i % len(colors)],
                       label=label if j == next(k for k, y in enumerate(values)
                                                if y is not None) else None)
                if ci:
                    ax.errorbar(x, v, yerr=[[max(v - ci[0], 0)], [max(ci[1] - v, 0)]],
                                fmt="none", ecolor="black", elinewidth=1, capsize=2)
                ax.text(x, ci[1] if ci else v,
                        f"{v:,.0f}" if unit == "us" or v >= 100 else f"{v:.2f}",
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups, fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)

    for ax, w in zip(axes[:, 0], panels):
        rec = wl[w]
        by = {c["name"]: c["summary"] for c in rec["configs"]}
        if w == "countdown":
            kinds = ("cooperative", "single-lock", "single-lock ticks:100", "multi-thread",
                     "threads", "processes")
            names = {"single-lock": "single-lock N={} interval",
                     "single-lock ticks:100": "single-lock N={} ticks:100"}
            ns = sorted({c["workers"] for c in rec["configs"] if c["workers"]})
            series = [(f"N={n}", [vc(by.get(names.get(k, k + " N={}").format(n)))
                                  for k in kinds], "FAILED") for n in ns]
            present = [c[0] for _, cells, _ in series for c in cells if c and c[0]]
            log = bool(present) and max(present) / min(present) > 10
            bars(ax, [{"single-lock": "single-lock\ninterval",
                       "single-lock ticks:100": "single-lock\nticks:100"}.get(k, k)
                      for k in kinds], series, log=log)
            ax.axhline(1, color="gray", ls="--", lw=1)
            ax.axhline(cpus_available(), color="gray", ls=":", lw=1)
            ax.set_ylabel("speed-up vs sequential")
            ax.set_title(f"countdown of {rec['sizes']['count']:,}: speed-up against sequential "
                         f"(dashed: 1x; dotted: {cpus_available()} CPUs"
                         + ("; log scale" if log else "") + ")", fontsize=10)
            ax.legend(fontsize=8)
        elif w in ("sleep", "echo", "cpython"):
            cfgs = [c for c in rec["configs"] if c["name"] != "sequential"]
            vals = [vc(c["summary"]) for c in cfgs]
            present = [v[0] for v in vals if v and v[0]]
            log = bool(present) and max(present) / min(present) > 30
            if w == "cpython":
                rows = rec.get("side_by_side", [])

                rows = [r for r in rows if r["way"] != "sequential"]
                series = [("the tutorial (i3, quoted)",
                           [(r["seed"]["speedup"], None) for r in rows], "not in the tutorial"),
                          (f"CPython {platform.python_version()}",
                           [vc(r["cpython"]) for r in rows], "FAILED"),
                          ("weft (single-lock / process_pool)",
                           [vc(r["weft"]) for r in rows],
                           "FAILED" if wl.get("countdown", {}).get("configs") else "not run")]
                bars(ax, [r["way"] for r in rows], series)
                ax.set_title("GIL side by side: countdown speed-up against each one's own "
                             "sequential (seed: quoted, no process figures)", fontsize=10)
                ax.legend(fontsize=8)
            else:
                bars(ax, [c["name"] for c in cfgs], [("speed-up", vals, "FAILED")], log=log)
                base = ("the computed sequential T x S" if w == "sleep" else
                        "the measured sequential")
                ax.set_title(f"{w}: speed-up against {base}" + (" (log scale)" if log else ""),
                             fontsize=10)
            ax.axhline(1, color="gray", ls="--", lw=1)
            ax.set_ylabel("speed-up vs sequential")
        else:  # mixed
            cfgs = [c for c in rec["configs"] if c["name"] != "idle"]

            def slow(s):  # the way's median round trip over idle's, and its interval
                sp, ci = (s or {}).get("speedup"), (s or {}).get("ci95")
                return (1 / sp if sp else None, [1 / ci[1], 1 / ci[0]] if ci else None)
            bars(ax, [c["name"].replace(" w=2 ", " w=2\n") for c in cfgs],
                 [("rtt p50 / idle's", [slow(c["summary"]) for c in cfgs], "FAILED")],
                 log=True)
            ax.axhline(1, color="gray", ls="--", lw=1)
            ax.set_ylabel("rtt p50 / idle's (log)")
            ax.set_title(f"mixed: the echo's median round trip while a countdown of "
                         f"{rec['sizes']['count']:,} runs on the same executor, against its "
                         "paired idle run (above 1: slower)", fontsize=10)
    m = result["machine"]
    fig.suptitle(f"weft contrast benchmark, {result['date'][:10]}, {m.get('host')}: "
                 f"{m.get('cpu')}, {len(m.get('cpus') or [])} CPUs"
                 + (" (--quick: not a measurement)" if result["settings"]["quick"] else ""),
                 fontsize=11)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# compare


COMPARE_RULE = ("the 95% bootstrap interval of median(B) / median(A) (each run's samples "
                "resampled on their own) lies wholly outside "
                f"1 +- {stats.MARGIN:.0%}")


def samples_of(cfg, workload, per=1.0):
    """A configuration's figures in a results file (wall s; mixed: rtt p50 us), divided by
    `per`: its samples at its own size (a baseline's runs scaled to the old GIL's count are
    left out)."""
    key = "rtt_p50_us" if workload == "mixed" else "wall_s"
    return [s["fields"][key] / per for s in cfg.get("samples", [])
            if s.get("ok") and not s.get("scaled") and key in s.get("fields", {})]


def comparable(w, a, b):
    """(divisor for A, divisor for B, note): runs whose countdown counts differ (each run
    calibrates its own) are compared per 1e9 iterations, a countdown's time being linear in
    its count; other differing sizes make the workload incomparable (None, None, note)."""
    za, zb = a["workloads"][w].get("sizes", {}), b["workloads"][w].get("sizes", {})
    if za == zb:
        return 1.0, 1.0, None
    if w in ("countdown", "cpython") and {k for k in za if za[k] != zb.get(k)} == {"count"}:
        return (za["count"] / 1e9, zb["count"] / 1e9,
                f"{w}: counts differ (A {za['count']:,}, B {zb['count']:,}): compared in s per "
                "1e9 iterations")
    return None, None, f"{w}: sizes differ (A {za}, B {zb}): not compared"


def compare(argv):
    ap = argparse.ArgumentParser(
        prog="contrast.py compare",
        description="Did a way get faster or slower between two contrast results? For each "
                    "configuration: B/A of the median (wall s; mixed: rtt p50 us) with a 95% "
                    "bootstrap interval; CHANGED when " + COMPARE_RULE + ". Also the speed-up "
                    "verdicts that differ between the two runs. Exit status 0, or 2 when a "
                    "file is missing or unreadable.")
    ap.add_argument("a", help="the earlier results file (JSON)")
    ap.add_argument("b", help="the later results file (JSON)")
    args = ap.parse_args(argv)
    data = []
    for path in (args.a, args.b):
        try:
            with open(path) as f:
                d = json.load(f)
            if not isinstance(d, dict) or not isinstance(d.get("workloads"), dict):
                raise ValueError("not a contrast results file (no workloads)")
        except (OSError, ValueError) as e:
            print(f"contrast.py compare: {path}: {e}", file=sys.stderr)
            return 2
        data.append(d)
    a, b = data
    print(f"compare: A = {args.a} ({a.get('date')}), B = {args.b} ({b.get('date')})")
    print(f"B/A of the median (wall s; mixed: rtt p50 us) with its 95% bootstrap interval; "
          f"'<< CHANGED' when {COMPARE_RULE}")
    print("note: two runs are never paired, so a change of the machine between them (other "
          "load, another CPU frequency) counts as a change; the speed-up verdicts below, each "
          "paired within its own run, are immune to that")
    head = ["workload", "config", "A median", "B median", "B/A [95%]", ""]
    rows, only, flagged = [], [], 0
    notes = []
    for w in [w for w in WORKLOADS if w in a["workloads"] or w in b["workloads"]]:
        pa = pb = 1.0
        if w in a["workloads"] and w in b["workloads"]:
            pa, pb, note = comparable(w, a, b)
            if note:
                notes.append(note)
            if pa is None:
                continue
        ca = {c["name"]: c for c in a["workloads"].get(w, {}).get("configs", [])}
        cb = {c["name"]: c for c in b["workloads"].get(w, {}).get("configs", [])}
        for name in list(ca) + [n for n in cb if n not in ca]:
            if name not in ca or name not in cb:
                only.append(f"{w} {name}: only in {'A' if name in ca else 'B'}")
                continue
            if ca[name].get("computed") or cb[name].get("computed"):
                rows.append([w, name, "-", "-", "-", "computed"])
                continue
            xa, xb = samples_of(ca[name], w, pa), samples_of(cb[name], w, pb)
            if not xa or not xb:
                rows.append([w, name, fs(median(xa)), fs(median(xb)), "-", "failed in one run"])
                continue
            r = stats.unpaired_ratio(xa, xb)  # median(A) / median(B): B's speed-up over A
            v = stats.verdict(r["ci95"])
            ratio, ci = 1 / r["speedup"], r["ci95"]
            cell = f"{ratio:.3f}" + (f" [{1 / ci[1]:.3f}{DASH}{1 / ci[0]:.3f}]" if ci else "")
            mark = ""
            if v in ("faster", "slower"):
                flagged += 1
                mark = f"<< CHANGED ({v})"
            elif v == "inconclusive":
                mark = f"too few samples ({r['n']})"
            rows.append([w, name, fs(median(xa)), fs(median(xb)), cell, mark])
    if rows:
        print_table(head, rows, left=2)
    for line in notes + only:
        print(line)
    print(f"{flagged} change(s) beyond the noise")
    va = {(v["workload"], v["config"], v["baseline"]): v for v in a.get("verdicts", [])}
    moved = [(k, va[k]["verdict"], v["verdict"]) for v in b.get("verdicts", [])
             for k in [(v["workload"], v["config"], v["baseline"])]
             if k in va and va[k]["verdict"] != v["verdict"]]
    for (w, c, base), x, y in moved:
        print(f"verdict changed: {w} {c} against {base}: {x} in A, {y} in B")
    if a.get("verdicts") is not None and b.get("verdicts") is not None:
        print(f"{len(moved)} speed-up verdict(s) changed")
    return 0


# ---------------------------------------------------------------------------------------------
# main


def machine_info(args):
    m = machine(args)
    m["python"] = f"{platform.python_implementation()} {platform.python_version()}"
    m["host"] = socket.gethostname()
    m["executable"] = sys.executable
    try:
        with open("/proc/cpuinfo") as f:
            cores = {line for line in f if line.startswith(("physical id", "core id"))}
        m["cores"] = len([c for c in cores if c.startswith("core id")]) or None
    except OSError:
        m["cores"] = None
    try:
        with open("/proc/meminfo") as f:
            m["memory_kib"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        m["memory_kib"] = None
    # The compiler and build type meson used for the measured program, when it says.
    try:
        with open(os.path.join(args.build, "meson-logs", "meson-log.txt")) as f:
            for line in f:
                if line.startswith("C++ compiler for the host machine:"):
                    m["compiler"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open(os.path.join(args.build, "meson-info", "intro-buildoptions.json")) as f:
            m["buildtype"] = next((o["value"] for o in json.load(f) if o["name"] == "buildtype"),
                                  None)
    except (OSError, ValueError):
        m["buildtype"] = None
    return m


def positive_int(text):
    """A count such as 300000000 or 3e8: a whole number above 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}")
    if not v.is_integer() or v <= 0:
        raise argparse.ArgumentTypeError(f"wants a whole number above 0: {text!r}")
    return int(v)


def parse_args(argv):
    doc = __doc__.split("\n\n")
    ap = argparse.ArgumentParser(
        prog="contrast.py",
        usage="%(prog)s [options]\n       %(prog)s compare A.json B.json",
        description=doc[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc[2:]))
    ap.add_argument("--build", default="build", help="meson build directory (default: build)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, 3 pairs, no calibration: a smoke test of the plumbing")
    ap.add_argument("--min-pairs", "--reps", dest="min_pairs", type=positive_int,
                    help="pairs every configuration runs (default 5, at least 3 unless --quick; "
                    "--quick: 3)")
    ap.add_argument("--max-pairs", type=positive_int,
                    help="pairs at most, for configurations whose verdict is still open "
                    "(default 12; --quick: 3)")
    ap.add_argument("--budget", type=positive_int,
                    help="seconds of measuring after which no configuration gets more pairs "
                    "than --min-pairs (default 240; --quick: 1)")
    ap.add_argument("--target-s", type=float,
                    help="calibration: the countdown and CPython counts are chosen so that "
                    "sequential takes about this long here (default 0.5; not with --quick or "
                    "an explicit --count / --python-count)")
    ap.add_argument("--n", type=positive_int, action="extend", nargs="+", metavar="N",
                    help="countdown's N (default 1 2 4) and CPython's threads and Pool (those "
                    "above 1)")
    ap.add_argument("--no-timeline", action="store_true",
                    help="skip the traced runs that draw <stem>-timeline.svg")
    ap.add_argument("--out-dir", default=os.path.join("bench", "results"),
                    help="where the JSON, SVGs and HTML go (default: bench/results)")
    ap.add_argument("--only", action="extend", nargs="+", choices=WORKLOADS, metavar="WORKLOAD",
                    help=f"run only these workloads ({', '.join(WORKLOADS)})")
    ap.add_argument("--timeout", type=positive_int, default=120,
                    help="seconds before one run is killed and counted as failed (default 120)")
    sizes = ap.add_argument_group("sizes (default; --quick)")
    sizes.add_argument("--count", type=positive_int,
                       help="countdown count (calibrated, at least 3e8; 2e6)")
    sizes.add_argument("--tasks", type=positive_int, help="sleep: tasks (10000; 200)")
    sizes.add_argument("--sleep-ms", type=positive_int, help="sleep: ms per task (100; 10)")
    sizes.add_argument("--connections", type=positive_int, help="echo: connections (1000; 50)")
    sizes.add_argument("--round-trips", type=positive_int,
                       help="echo: round trips per connection (10; 2)")
    sizes.add_argument("--size", type=positive_int, help="echo and mixed: bytes (64; 64)")
    sizes.add_argument("--mixed-count", type=positive_int, help="mixed: countdown (3e8; 2e6)")
    sizes.add_argument("--python-count", type=positive_int,
                       help="cpython: countdown (calibrated; 2e5)")
    args = ap.parse_args(argv)
    args.calibrate = {"count": args.count is None and not args.quick,
                      "python_count": args.python_count is None and not args.quick}
    defaults = {"min_pairs": (5, 3), "max_pairs": (12, 3), "budget": (240, 1),
                "target_s": (0.5, 0.5), "n": ([1, 2, 4], [1, 2, 4]),
                "count": (300_000_000, 2_000_000), "tasks": (10_000, 200),
                "sleep_ms": (100, 10), "connections": (1000, 50), "round_trips": (10, 2),
                "size": (64, 64), "mixed_count": (300_000_000, 2_000_000),
                "python_count": (20_000_000, 200_000)}
    apply_defaults(ap, args, defaults, positive=False)  # positive_int checked them already
    args.n = sorted(set(args.n))
    if args.min_pairs < 3 and not args.quick:
        ap.error("--min-pairs wants 3 or more (an interval needs them); --quick allows fewer")
    if args.max_pairs < args.min_pairs:
        ap.error("--max-pairs wants at least --min-pairs")
    if not 0.05 <= args.target_s <= 60:
        ap.error("--target-s wants 0.05 to 60 seconds")
    args.reps = args.min_pairs
    return args


def calibrate(args, only):
    """Chooses the countdown's and CPython's counts so that sequential takes about --target-s
    here: timed once on a probe count (after a warm-up run), scaled, rounded up to 1e7 (1e6
    for CPython). Returns what it measured, for the JSON."""
    out = {"target_s": args.target_s}
    exe = os.path.join(args.build, "bench", "contrast")
    probes = []
    if args.calibrate["count"] and (not only or {"countdown"} & set(only)) \
            and os.access(exe, os.X_OK):
        probes.append(("count", [exe, "--workload=countdown", "--mode=sequential"],
                       100_000_000, 10_000_000, 300_000_000))
    if args.calibrate["python_count"] and (not only or "cpython" in only):
        probes.append(("python_count", [sys.executable, os.path.join(HERE, "reference",
                                                                   "countdown.py"),
                                        "--mode=sequential"], 2_000_000, 1_000_000, 2_000_000))
    for key, argv, probe, step, floor in probes:
        walls = []
        for _ in range(2):
            status, so, _ = run_cmd(argv + [f"--count={probe}"], timeout=args.timeout)
            fields, _ = last_fields(so)
            if status == 0 and fields.get("wall_s"):
                walls.append(fields["wall_s"])
        if not walls:
            out[key] = {"probe": probe, "wall_s": None, "chosen": getattr(args, key),
                        "note": "the probe failed: the default kept"}
            continue
        t = min(walls)  # the second run is warm; the smaller is the machine's speed
        chosen = max(floor, math.ceil(probe * args.target_s / t / step) * step)
        setattr(args, key, chosen)
        out[key] = {"probe": probe, "wall_s": t, "chosen": chosen}
        log(f"calibration: {key} {probe:,} took {t:.3f} s; {chosen:,} for {args.target_s} s")
    return out


def report(result, args):
    """Prints a table and a paragraph per workload (and the GIL side by side after cpython),
    storing the paragraphs in `result`; everything has run by now (the GIL table needs the
    countdown)."""
    load = result["load_before"]
    writers = {"countdown": lambda r: countdown_paragraph(r, load), "sleep": sleep_paragraph,
               "echo": echo_paragraph, "mixed": mixed_paragraph}
    wl = result["workloads"]
    for name, rec in wl.items():
        z = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in rec["sizes"].items())
        print(f"\n{name} ({z}; {args.min_pairs} to {args.max_pairs} pairs, medians; speed-up: "
              "geometric mean of the pairs' ratios, 95% interval)" +
              (f"; {rec['budget_note']}" if rec.get("budget_note") else ""))
        if rec["configs"]:
            print_table(*table_rows(name, rec))
        if name == "cpython" and rec["configs"]:
            rec["side_by_side"] = side_by_side(rec, wl.get("countdown"))
            print()
            print_side_by_side(rec["side_by_side"], rec, wl.get("countdown"))
        if rec["configs"]:
            try:
                text = (cpython_paragraph(rec, rec["side_by_side"]) if name == "cpython" else
                        writers[name](rec))
            except Exception as e:  # a gap in the figures must not lose the run's results
                text = f"(no paragraph: {type(e).__name__}: {e})"
            text += " " + noise_sentence(rec)
            if rec.get("budget_note"):
                text += (f" The time {rec['budget_note'][4:]}, so the intervals are wider than "
                         "asked for.")
        else:
            text = "The workload failed: " + "; ".join(rec["errors"])
        if args.quick:
            text = "(--quick sizes: what follows describes noise, not the ways.) " + text
        rec["paragraph"] = result["paragraphs"][name] = text
        print(textwrap.fill(text, 100))
        for c in rec["configs"]:
            for s in c["samples"]:
                for warn in s.get("warnings", []):
                    print(f"  warning: {c['name']} round {s['rep']}: {warn}")
        for e in rec["errors"]:
            print(f"  error: {e}")
    if args.quick:
        print("\nnote: --quick runs 3 tiny pairs: a smoke test of the plumbing, not a "
              "measurement")


def noise_sentence(rec):
    """What the machine's noise did to this workload, from noise()."""
    n = rec.get("noise") or {}
    cv = n.get("baseline_cv")
    load = n.get("load1", {})
    parts = []
    if cv is not None:
        parts.append(f"the {n.get('cv_of', rec['baseline'])} varied by {cv:.1%} over "
                     f"{n.get('baseline_n') or 'its'} runs")
    if load.get("min") is not None:
        parts.append(f"load average {load['min']:.2f}{DASH}{load['max']:.2f}")
    if n.get("steal_max") is not None:
        parts.append(f"steal time up to {n['steal_max']:.1%}")
    text = ("Noise: " + ", ".join(parts) + ".") if parts else ""
    if n.get("noisy"):
        text += (" This run was too noisy to conclude everything (" + "; ".join(n["reasons"]) +
                 "): " + (f"the verdicts of {', '.join(n['affected'])} may be different on a "
                          "quieter machine (noise widens the intervals and can hide a "
                          "difference, or make one that is not there by changing the CPU's "
                          "speed between a pair's runs; a machine that withholds CPU holds "
                          "back the ways that "
                          "need several); the other verdicts hold, their intervals exclude 1 "
                          "despite the noise." if n["affected"] else
                          "every verdict excluded 1 despite it."))
    return text


def output_stem(out_dir, when):
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname().split(".")[0]) or "host"
    base = f"{when:%Y-%m-%d}-{host}"
    stem, k = base, 1
    while any(os.path.exists(os.path.join(out_dir, stem + ext))
              for ext in (".json", "-contrast.svg", ".html", "-timeline.svg")):
        k += 1
        stem = f"{base}-{k}"
    return os.path.join(out_dir, stem)


def traced_runs(args, tmp):
    """Runs countdown at N=2 once per way the timeline shows, with WEFT_TRACE set. Returns
    ([(label, trace path)], note): the note says why there is no timeline when no trace
    appeared (a build without tracing writes none)."""
    exe = os.path.join(args.build, "bench", "contrast")
    out = []
    for label, mode, gil in TIMELINE_WAYS:
        # An eighth of a sample (~60 ms at the default 0.5 s): several of the new GIL's 5 ms
        # turns on each side of the 20 ms window; the old GIL counts 1/16 as far again.
        count = max(1, args.count // (8 * (TICKS_SCALE if gil == "ticks:100" else 1)))
        path = os.path.join(tmp, f"trace-{len(out)}.json")
        argv = weft_argv(exe, "countdown", mode, 2, gil, [f"--count={count}"])
        try:
            subprocess.run(argv, env=dict(os.environ, WEFT_TRACE=path), timeout=args.timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if os.path.exists(path):
            out.append((label, path))
    note = None if out else (f"skipped: {exe} wrote no trace under WEFT_TRACE (a build "
                             "without tracing)")
    return out, note


def run_all(args, result):
    plans = plan(args)
    failed = False
    names = [w for w in WORKLOADS if not args.only or w in args.only]
    # The budget's shares: the countdown has the most ways and the verdicts that matter most.
    weights = {"countdown": 6, "sleep": 0.5, "echo": 1, "mixed": 1, "cpython": 2.5}
    end = time.monotonic() + args.budget
    for i, name in enumerate(names):
        log(f"== {name}")
        rest = sum(weights[w] for w in names[i:])
        deadline = time.monotonic() + max(0, end - time.monotonic()) * weights[name] / rest
        exe = plans[name]["configs"][0]["argv"][0]
        try:
            if name != "cpython" and not os.access(exe, os.X_OK):
                # One clear reason rather than the same one for every run of every workload.
                raise RuntimeError(f"{exe} is missing: build it (ninja -C {args.build} "
                                   "bench/contrast)")
            rec = run_workload(name, plans[name], args, deadline)
            summarize(name, rec)
        except Exception as e:  # a broken workload is reported; the others still run
            rec = dict({k: v for k, v in plans[name].items() if k != "configs"}, configs=[],
                       workload=name, errors=[str(e) if isinstance(e, RuntimeError) else
                                              f"{type(e).__name__}: {e}"])
        if name == "cpython":
            starts = {re.search(r"start method (\w+)", line).group(1)
                      for c in rec["configs"] for s in c["samples"] if s["ok"]
                      for line in s.get("text", []) if "start method" in line}
            rec["start_method"] = ", ".join(sorted(starts)) or None
            rec["python"] = result["machine"]["python"]
            rec["seed"] = SEED
        result["workloads"][name] = rec
        failed |= bool(rec["errors"])
    return failed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare(argv[1:])
    args = parse_args(argv)
    now = datetime.datetime.now().astimezone()
    result = {"schema_version": SCHEMA_VERSION, "suite": "contrast",
              "date": now.isoformat(timespec="seconds"),
              "command": [sys.executable, sys.argv[0]] + argv, "machine": machine_info(args),
              "load_before": loadavg(), "workloads": {}, "paragraphs": {}}
    if result["machine"].get("buildtype") not in (None, "release"):
        log(f"warning: {args.build} is a {result['machine']['buildtype']} build: not weft as "
            "shipped")
    log(f"contrast benchmark: {args.min_pairs} to {args.max_pairs} pairs per way, budget "
        f"{args.budget} s, load average {result['load_before']}")
    result["calibration"] = calibrate(args, args.only)
    result["settings"] = dict({k: v for k, v in vars(args).items() if k != "calibrate"},
                              only=args.only or list(WORKLOADS), margin=stats.MARGIN)
    failed = run_all(args, result)
    result["load_after"] = loadavg()
    result["verdicts"] = all_verdicts(result)

    os.makedirs(args.out_dir, exist_ok=True)
    stem = output_stem(args.out_dir, now)
    result["files"] = {"json": stem + ".json", "svg": None, "timeline": None, "html": None}
    # The report is composed first and printed once the files are written: a closed terminal
    # (or `| head`) must not lose the measurements.
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report(result, args)
        result["failed"] = failed
        try:
            result["files"]["svg"] = chart(result, stem + "-contrast.svg")
        except Exception as e:  # a chart bug must not lose the measurements
            print(f"chart: failed: {type(e).__name__}: {e}")
        result["timeline_note"] = draw_timeline(args, result, stem + "-timeline.svg")
        print(result["timeline_note"] or f"timeline: {result['files']['timeline']}")
    result["total_s"] = round(time.monotonic() - T0, 3)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    try:
        result["files"]["html"] = report_html.write(result, stem + ".html", table_rows)
        with open(stem + ".json", "w") as f:  # now naming the page too
            json.dump(result, f, indent=1)
            f.write("\n")
    except Exception as e:  # the page must not lose the measurements either
        print(f"report page: failed: {type(e).__name__}: {e}", file=text)
    sys.stdout.write(text.getvalue())
    files = result["files"]
    print(f"\ntotal {result['total_s']:.1f} s; results: {stem}.json" +
          "".join(f"; {k}: {files[k]}" for k in ("svg", "timeline", "html") if files[k]))
    return 1 if failed else 0


def draw_timeline(args, result, path):
    """Runs the traced countdowns and draws <stem>-timeline.svg; returns a note when it could
    not (skipped, no trace, a drawing error), else None."""
    if args.no_timeline:
        return "timeline: skipped (--no-timeline)"
    if "countdown" not in result["workloads"] or not result["workloads"]["countdown"]["configs"]:
        return "timeline: skipped (the countdown did not run)"
    with tempfile.TemporaryDirectory(prefix="contrast-trace-") as tmp:
        traces, note = traced_runs(args, tmp)
        if note:
            return "timeline: " + note
        try:
            result["timeline"] = timeline.render(traces, path)
        except Exception as e:
            return f"timeline: failed: {type(e).__name__}: {e}"
    result["files"]["timeline"] = path
    return None


if __name__ == "__main__":
    sys.exit(main())
