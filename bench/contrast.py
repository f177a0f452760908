#!/usr/bin/env python3
"""weft's contrast benchmark (./run bench): what threads, processes and coroutines each buy, by
measurement. One program, build/bench/contrast, runs four workloads each way weft knows; CPython
runs the seed's countdown beside them.

    python3 bench/contrast.py [--build build] [--quick] [--reps N] [--out-dir bench/results]
                              [--only countdown|sleep|echo|mixed|cpython ...] [size options]
    python3 bench/contrast.py compare A.json B.json

Workloads (defaults; --quick: tiny sizes, 1 repetition, a smoke test of the plumbing):
  countdown  the seed's `while n > 0: n -= 1` over --count (3e8; quick 2e6) split into N parts,
             N = 1, 2, 4: cooperative (N tasks, one thread), single-lock --gil=interval (the new
             GIL) and --gil=ticks:100 (the old GIL), multi-thread, threads (N std::threads, no
             runtime), processes (a process_pool of N); speed-up = sequential median / median.
  sleep      --tasks (10000; quick 200) tasks each sleeping --sleep-ms (100; quick 10), all at
             once: cooperative, single-lock w=2, multi-thread w=2, threads (one per task),
             processes w=2; the sequential baseline T x S is computed, never run.
  echo       an echo server and --connections (1000; quick 50) clients each doing --round-trips
             (10; quick 2) of --size (64) bytes: sequential (one connection at a time),
             cooperative, single-lock w=2, multi-thread w=2, threads, processes w=2.
  mixed      a CPU-bound countdown of --mixed-count (3e8; quick 2e6) and an echo server on the
             same executor, probed by a thread outside it doing back-to-back round trips until
             the countdown ends: idle (no CPU task), cooperative, single-lock w=2 interval and
             ticks:100, multi-thread w=2, threads, processes w=1; rtt p50/p99/max and their
             ratio to idle: what the convoy effect does to I/O in each way.
  cpython    bench/reference/countdown.py over --python-count (2e7; quick 2e5) with this
             interpreter: sequential, 2 and 4 threads, Pool(2) and Pool(4) (multiprocessing's
             default start method), and a "GIL side by side" table: the seed's own figures,
             CPython here and weft's single-lock (and process_pool beside Pool) from the same
             run, as speed-ups against each one's own sequential.

Every configuration runs --reps times (default 3; at least 3 unless --quick); each repetition
runs every configuration of a workload once, in an order rotated by one every repetition, so
drift over time hits every configuration alike. Figures are medians with [min-max]. A failed run
is recorded with its reason and the rest still run.

Outputs: a table and a paragraph written from the figures per workload on stdout (progress on
stderr); <out-dir>/<YYYY-MM-DD>-<host>.json (-2, -3, ... when taken), with every raw sample,
the summaries, the machine, the settings and the load average before and after, valid against
bench/contrast.schema.json; and <same stem>-contrast.svg, one chart panel per workload (needs
python3-matplotlib; skipped with a note without it).

compare A.json B.json prints B/A per configuration (median wall; mixed: median rtt p50) and
flags a change as beyond the noise when the two runs' [min, max] ranges do not overlap AND
|B/A - 1| is larger than the larger relative spread (max - min) / median of the two. Configs
in only one file are listed as such.

Exit status: 0 when every run worked, 1 when some run failed, 2 on bad arguments or (compare)
a missing or unreadable file.
"""
import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import re
import socket
import sys
import textwrap
import time

# Shared with ./run bench threads and processes: the rotated repetition loop (a failed run is
# recorded, not fatal), running a program with a time limit, its key=value last line, the
# machine's description, the load average.
from threads import Suite, last_fields, loadavg, log, machine, median, rotated, run_cmd

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 1
WORKLOADS = ("countdown", "sleep", "echo", "mixed", "cpython")
BASE_KEYS = ("wall_s", "cpu_s", "peak_rss_kib", "workers")
LOCK_KEYS = ("switches", "forced_switches", "lock_wait_s")
EXTRA_KEYS = {"countdown": (), "sleep": ("tasks", "created", "ideal_s"), "echo": ("round_trips",),
              "mixed": ("rtt_p50_us", "rtt_p99_us", "rtt_max_us", "round_trips", "countdown_s"),
              "cpython": ()}
# The seed's figures (Intel Core i3, COUNT=1e8, CPython of its day): quoted, never measured here.
SEED = {"source": "from shared/seed/concurrency-in-python.md", "machine": "Intel Core i3",
        "count": 100_000_000, "wall_s": {"sequential": 9.16, "2 threads": 9.5, "4 threads": 10.7}}
DASH = "\u2013"
try:
    DASH.encode(sys.stdout.encoding or "ascii")
except (UnicodeEncodeError, LookupError):
    DASH = "-"


# ---------------------------------------------------------------------------------------------
# configurations


def config(name, argv, mode, workers=None, gil=None):
    return {"name": name, "mode": mode, "workers": workers, "gil": gil, "argv": argv,
            "computed": False}


def weft_argv(exe, workload, mode, workers, gil, sizes):
    return ([exe, f"--workload={workload}", f"--mode={mode}"] +
            ([f"--workers={workers}"] if workers else []) + ([f"--gil={gil}"] if gil else []) +
            sizes)


def plan(args):
    """workload -> {sizes, baseline, configs}: what each workload runs, in table order."""
    exe = os.path.join(args.build, "bench", "contrast")
    plans = {}

    sizes = [f"--count={args.count}"]
    configs = [config("sequential", weft_argv(exe, "countdown", "sequential", None, None, sizes),
                      "sequential")]
    for n in (1, 2, 4):
        for mode, gil in (("cooperative", None), ("single-lock", "interval"),
                          ("single-lock", "ticks:100"), ("multi-thread", None), ("threads", None),
                          ("processes", None)):
            name = f"{mode} N={n}" + (f" {gil}" if gil else "")
            configs.append(config(name, weft_argv(exe, "countdown", mode, n, gil, sizes), mode,
                                  n, gil))
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
    configs = [config(name, weft_argv(exe, "echo", mode, w, gil, sizes), mode, w, gil)
               for name, mode, w, gil in (("sequential", "sequential", None, None),
                                          ("cooperative", "cooperative", None, None),
                                          ("single-lock w=2", "single-lock", 2, "interval"),
                                          ("multi-thread w=2", "multi-thread", 2, None),
                                          ("threads", "threads", None, None),
                                          ("processes w=2", "processes", 2, None))]
    plans["echo"] = {"sizes": {"connections": args.connections, "round_trips": args.round_trips,
                               "size": args.size}, "baseline": "sequential", "configs": configs}

    sizes = [f"--count={args.mixed_count}", f"--size={args.size}"]
    configs = [config(name, weft_argv(exe, "mixed", mode, w, gil, sizes), mode, w, gil)
               for name, mode, w, gil in (("idle", "idle", None, None),
                                          ("cooperative", "cooperative", None, None),
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
    configs = []
    for name, mode, n in (("sequential", "sequential", None), ("threads 2", "threads", 2),
                          ("threads 4", "threads", 4), ("Pool 2", "pool", 2),
                          ("Pool 4", "pool", 4)):
        argv = [sys.executable, script, f"--mode={mode}", f"--count={args.python_count}"]
        configs.append(config(name, argv + ([f"--workers={n}"] if n else []), mode, n))
    plans["cpython"] = {"sizes": {"count": args.python_count}, "baseline": "sequential",
                        "configs": configs}
    return plans


# ---------------------------------------------------------------------------------------------
# running


def measure(workload, cfg, timeout):
    """Runs one configuration once. Returns the sample (the last line's numbers under "fields",
    the human lines, stderr, warnings about implausible figures); raises with the reason when
    the program failed or its last line lacks a figure this workload needs."""
    started = time.monotonic()
    status, out, err = run_cmd(cfg["argv"], timeout=timeout)
    elapsed = time.monotonic() - started
    fields, lines = last_fields(out)
    if status != 0:
        reasons = [line for line in (err or "").splitlines() if line.strip()] or lines[-1:]
        raise RuntimeError(f"exit status {status}: "
                           f"{(reasons[-1] if reasons else '(no output)')[-300:]}")
    missing = [k for k in BASE_KEYS + EXTRA_KEYS[workload] if k not in fields]
    if missing:
        raise RuntimeError(f"the last line lacks {' '.join(missing)}: "
                           f"{(lines[-1] if lines else '(no output)')[-300:]}")
    s = {"value": fields["wall_s"], "unit": "s", "fields": fields,
         "process_wall_s": round(elapsed, 6), "text": lines[:-1][-20:]}
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


def run_workload(name, p, args):
    """Runs every configuration of a workload --reps times in rotated order; returns the
    workload's JSON record (configs with their samples; summaries are added by summarize)."""
    configs = {c["name"]: c for c in p["configs"]}
    suite = Suite(name, list(configs))
    errors = {}

    def one(cname):
        rep = len(suite.samples[cname])
        try:
            return measure(name, configs[cname], args.timeout)
        except Exception as e:
            errors[(cname, rep)] = str(e)
            raise

    suite.run(args.reps, one)
    for cname, cfg in configs.items():
        cfg["samples"] = []
        for rep, s in enumerate(suite.samples[cname]):
            order = rotated(suite.configs, rep).index(cname) + 1
            if s is None:
                cfg["samples"].append({"rep": rep + 1, "order": order, "ok": False,
                                       "error": errors.get((cname, rep), "failed")})
                continue
            s = {k: v for k, v in s.items() if k not in ("value", "unit")}
            cfg["samples"].append(dict({"rep": rep + 1, "order": order, "ok": True}, **s))
    record = {k: v for k, v in p.items() if k != "configs"}
    record["configs"] = list(configs.values())
    if "computed_baseline_s" in p:
        # The sequential sleep would take T x S: stated as computed, never as measured.
        t = p["computed_baseline_s"]
        record["configs"].insert(0, {"name": "sequential", "mode": "sequential", "workers": None,
                                     "gil": None, "argv": None, "computed": True, "samples": [],
                                     "computed_from": "tasks x sleep_ms / 1000"})
        record["configs"][0]["summary"] = base_summary([], t)
    place = {c: i for i, c in enumerate(suite.configs)}
    record["errors"] = [f"{c} rep {r + 1}: {e}" for (c, r), e in
                        sorted(errors.items(), key=lambda x: (place[x[0][0]], x[0][1]))]
    return record


def base_summary(samples, computed=None):
    ok = [s for s in samples if s["ok"]]
    if computed is not None:
        wall = {"median": computed, "min": computed, "max": computed}
    else:
        wall = stat(s["fields"]["wall_s"] for s in ok)
    keys = sorted({k for s in ok for k in s["fields"]})
    stats = {k: stat(s["fields"].get(k) for s in ok) for k in keys}
    rss = stats.get("peak_rss_kib", {}).get("median")
    return {"ok_reps": len(ok), "failed_reps": len(samples) - len(ok),
            "errors": [s["error"] for s in samples if not s["ok"]], "wall_s": wall,
            "speedup": None, "cpu_s": stats.get("cpu_s", {}).get("median"),
            "peak_rss_mib": None if rss is None else rss / 1024, "stats": stats}


def summarize(name, record):
    """Adds each config's summary: wall median [min, max], speed-up against the baseline
    (baseline median / median), CPU, memory, and the workload's own figures."""
    for cfg in record["configs"]:
        if not cfg["computed"]:
            cfg["summary"] = base_summary(cfg["samples"])
    by = {c["name"]: c["summary"] for c in record["configs"]}
    base = by.get(record["baseline"], {}).get("wall_s", {}).get("median")
    idle = by.get("idle", {}).get("stats", {})
    for cfg in record["configs"]:
        s = cfg["summary"]
        m, st = s["wall_s"]["median"], s["stats"]
        if name != "mixed" and base and m:
            s["speedup"] = base / m
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


# ---------------------------------------------------------------------------------------------
# terminal


def fs(v):
    """Seconds, with enough digits for --quick's milliseconds."""
    if v is None:
        return "-"
    return f"{v:.3f}" if v >= 0.1 else f"{v:.4f}" if v >= 0.001 else f"{v:.2g}"


def fx(v, digits=2):
    return "-" if v is None else f"{v:,.{digits}f}x"


def fr(v):
    """A ratio with digits where they matter: 0.04x, 1.32x, 13.3x, 166x."""
    if v is None:
        return "-"
    return f"{v:,.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"


def fn(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


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
    head += ["p50/p99 vs idle"] if name == "mixed" else ["speed-up"]
    head += ["CPU s", "peak MiB"]
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
        if name == "mixed":
            r += [f"{fr(s.get('p50_vs_idle'))}/{fr(s.get('p99_vs_idle'))}"]
        else:
            r += [fx(s["speedup"])]
        r += [fs(s["cpu_s"]) if not cfg["computed"] else "-",
              fn(s["peak_rss_mib"], 1)]
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
# paragraphs, written from the figures


def cpus_available():
    return len(os.sched_getaffinity(0))


def times(s):
    """'took 1.07x the sequential time' from a speed-up."""
    return f"{1 / s:.2f}x" if s else "-"


def pct(a, b):
    return f"{abs(a / b - 1) * 100:.0f}%"


def parallel_verdict(s, n, cpus, what, summary=None):
    """What a speed-up s says about n workers that could run in parallel on `cpus` CPUs;
    summary (its CPU time over its wall time) tells a machine that withheld CPUs from work
    that was serialised."""
    p = min(n, cpus)
    busy = ""
    if summary and summary.get("cpu_s") is not None and summary["wall_s"]["median"]:
        busy = f"; CPU time / wall {summary['cpu_s'] / summary['wall_s']['median']:.2f}"
    if p <= 1:
        return (f"{what} cannot run in parallel on {cpus} CPU" +
                (", yet ran faster than sequential" if s > 1.15 else ""))
    if s >= 0.85 * p:
        return f"{what} ran in parallel" + (f" ({n} on {cpus} CPUs: at most {cpus}x)"
                                            if n > cpus else "")
    if s < 0.9:
        return (f"{what} were slower than sequential: the overhead (start-up, hand-offs) "
                f"outweighed the work{busy}")
    if n == 2 and s < 1.5 or s < 0.75 * p:
        return (f"{what} got {s:.2f}x of the {p}x that {p} CPUs allow: the machine did not give "
                f"{p} full CPUs (other load, or shared cores){busy}")
    return f"{what} ran mostly in parallel ({s:.2f}x of a possible {p}x{busy})"


def serial_verdict(s, why):
    if s is None:
        return ""
    if s > 1.15:
        return f"faster than sequential, which {why} should not allow"
    if s >= 0.95:
        return f"{why} lets only one count at a time"
    return f"{why} lets only one count at a time, and the switching cost {1 / s - 1:.0%}"


def countdown_paragraph(rec, load):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    cpus = cpus_available()
    seq = by["sequential"]["wall_s"]["median"]
    if seq is None:
        return "The sequential run failed, so no speed-up can be given."

    def sp(name):
        return by.get(name, {}).get("speedup")
    out = [f"Sequential counted {rec['sizes']['count']:,} in {seq:.3f} s; {cpus} CPUs were "
           f"available (load average before: {load})."]
    one = [(label, sp(name)) for label, name in (
        ("cooperative", "cooperative N=1"), ("single-lock", "single-lock N=1 interval"),
        ("multi-thread", "multi-thread N=1"), ("threads", "threads N=1"),
        ("processes", "processes N=1"))]
    one = [(label, s) for label, s in one if s]
    if one:
        label, s = max(one, key=lambda x: 1 / x[1])
        cost = (1 / s - 1) * seq
        out.append("At N=1 (nothing to run in parallel) each way shows its overhead: " +
                   ", ".join(f"{m} {times(v)}" for m, v in one) + " the sequential time" +
                   (f"; the dearest, {label}, adds {cost:.3f} s" +
                    (" (starting a worker process)" if label == "processes" else "")
                    if cost > 0 else "") + ".")
    t1 = sp("single-lock N=1 ticks:100")
    if t1 and t1 < 0.8:
        ns = seq / rec["sizes"]["count"] * 1e9
        out.append(f"The old GIL (ticks:100) took {times(t1)} even at N=1, with nobody to hand "
                   f"the lock to: releasing it every 100 iterations of a {ns:.2f} ns loop costs "
                   "more than the counting.")
    for n in (2, 4):
        sl, tk = sp(f"single-lock N={n} interval"), sp(f"single-lock N={n} ticks:100")
        mt, th, pr = sp(f"multi-thread N={n}"), sp(f"threads N={n}"), sp(f"processes N={n}")
        co = sp(f"cooperative N={n}")
        parts = []
        if sl:
            sw = by[f"single-lock N={n} interval"].get("switches")
            parts.append(f"{n} single-lock threads took {times(sl)} the sequential time: "
                         f"{serial_verdict(sl, 'the lock')} ({fn(sw)} hand-overs)")
        if tk:
            sw_t = by[f"single-lock N={n} ticks:100"].get("switches")
            sw = by.get(f"single-lock N={n} interval", {}).get("switches")
            more = ""
            if sw and sw_t:
                more = (f", {sw_t / sw:,.0f}x the interval's hand-overs" if sw_t > 1.5 * sw else
                        f", {sw / sw_t:,.0f}x fewer than the interval's" if sw > 1.5 * sw_t else
                        ", about as many as the interval's")
            parts.append(f"with the old GIL (ticks:100) {times(tk)} and {fn(sw_t)} hand-overs"
                         f"{more}")
        if mt:
            parts.append(f"{n} multi-thread workers took {times(mt)}: "
                         f"{parallel_verdict(mt, n, cpus, 'they', by[f'multi-thread N={n}'])}")
        if th:
            rel = ""
            if mt:
                m_w, t_w = by[f"multi-thread N={n}"]["wall_s"]["median"], \
                    by[f"threads N={n}"]["wall_s"]["median"]
                rel = (f"; weft's multi-thread workers were within {pct(m_w, t_w)} of them"
                       if abs(m_w / t_w - 1) < 0.05 else
                       f"; weft's multi-thread workers were {pct(m_w, t_w)} "
                       f"{'slower' if m_w > t_w else 'faster'} than them")
            parts.append(f"{n} plain std::threads {times(th)}{rel}")
        if pr:
            extra = ""
            if th:
                d = by[f"processes N={n}"]["wall_s"]["median"] - \
                    by[f"threads N={n}"]["wall_s"]["median"]
                extra = (f", {d:+.3f} s against threads: the pool's start-up and shutdown"
                         if d > 0 else f", {d:+.3f} s against threads")
            parts.append(f"{n} worker processes {times(pr)}{extra}")
        if co:
            v = ("one thread runs them one after another, so the split buys nothing"
                 if 0.9 <= co <= 1.1 else
                 "faster than sequential on one thread, which should not happen" if co > 1.1
                 else f"one thread, and the task switching cost {1 / co - 1:.0%}")
            parts.append(f"{n} cooperative tasks {times(co)}: {v}")
        if parts:
            out.append("; ".join(parts) + ".")
    return " ".join(out)


def sleep_paragraph(rec):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    t, ms = rec["sizes"]["tasks"], rec["sizes"]["sleep_ms"]
    out = [f"{t:,} sleeps of {ms} ms one after another would take "
           f"{rec['computed_baseline_s']:,.1f} s (computed, not run)."]
    co = by.get("cooperative")
    if co and co["wall_s"]["median"] is not None:
        out.append(f"One cooperative thread ran them all at once in {co['wall_s']['median']:.3f} "
                   f"s, {co['overhead_s'] * 1e3:,.1f} ms over a single sleep "
                   f"({co['speedup']:,.0f}x): waiting needs no thread.")
        cw = co["wall_s"]["median"]
        for name in ("single-lock w=2", "multi-thread w=2"):
            s = by.get(name)
            if s and s["wall_s"]["median"] is not None:
                w = s["wall_s"]["median"]
                rel = (f"within {pct(w, cw)} of one thread: more workers do not help with "
                       "waiting" if abs(w / cw - 1) <= 0.1 else
                       f"{pct(w, cw)} {'slower' if w > cw else 'faster'} than one thread")
                out.append(f"{name}: {w:.3f} s, {rel}.")
    th = by.get("threads")
    if th and th["wall_s"]["median"] is not None:
        created = th.get("created")
        refused = (f"; the system refused {t - created:,.0f} of the {t:,} threads"
                   if created is not None and created < t else "")
        cmp = ""
        if co and co["wall_s"]["median"] is not None and co["peak_rss_mib"] and co["cpu_s"]:
            cmp = (f" against cooperative's {co['cpu_s']:.3f} s and {co['peak_rss_mib']:.1f} MiB"
                   f" ({th['peak_rss_mib'] / co['peak_rss_mib']:.1f}x the memory, "
                   f"{th['cpu_s'] / co['cpu_s']:.1f}x the CPU)")
        out.append(f"A thread per task ({fn(created)} created{refused}) took "
                   f"{th['wall_s']['median']:.3f} s, {th['cpu_s']:.3f} s of CPU and "
                   f"{th['peak_rss_mib']:.1f} MiB{cmp}.")
    pr = by.get("processes w=2")
    if pr and pr["wall_s"]["median"] is not None:
        out.append(f"Two processes sharing the tasks took {pr['wall_s']['median']:.3f} s and "
                   f"{pr['peak_rss_mib']:.1f} MiB: the same waiting, plus starting processes.")
    return " ".join(out)


def echo_paragraph(rec):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    z = rec["sizes"]
    seq = by.get("sequential", {}).get("wall_s", {}).get("median")
    out = []
    if seq is not None:
        out.append(f"One connection at a time, {z['connections']:,} connections x "
                   f"{z['round_trips']} round trips of {z['size']} B took {seq:.3f} s.")
    else:
        out.append("The sequential run failed: no speed-ups.")
    co = by.get("cooperative", {})
    cw = co.get("wall_s", {}).get("median")
    if cw is not None:
        sp = co["speedup"]
        out.append(f"All at once on one cooperative thread: {cw:.3f} s" +
                   (f", {sp:.1f}x faster: the waits on the network overlap." if sp and sp > 1.2
                    else f" ({fx(sp)}): overlapping the waits bought little here." if sp and
                    sp >= 0.9 else
                    f", {times(sp)} the sequential time: slower than one connection at a time; "
                    "over 127.0.0.1 there is little wait to overlap, so concurrency only added "
                    "its bookkeeping." if sp else "."))
    for name, what in (("multi-thread w=2", "a second worker"),
                       ("single-lock w=2", "two workers under one lock")):
        s = by.get(name, {})
        w = s.get("wall_s", {}).get("median")
        if w is None or cw is None:
            continue
        if w < cw * 0.87:
            v = f"{what} helped: {pct(w, cw)} faster than one thread"
        elif w <= cw * 1.15:
            v = (f"{what} did not help (within {pct(w, cw)} of one thread): the clients run in "
                 "the same program and share the CPUs")
        else:
            v = (f"{what} made it {pct(w, cw)} slower than one thread: handing work between "
                 "threads cost more than it gained")
        out.append(f"{name}: {w:.3f} s, {v}.")
    th = by.get("threads", {})
    if th.get("wall_s", {}).get("median") is not None:
        extra = ""
        if cw is not None and co.get("peak_rss_mib") and co.get("cpu_s"):
            extra = (f" against cooperative's {co['cpu_s']:.3f} s and "
                     f"{co['peak_rss_mib']:.1f} MiB")
        out.append(f"A thread per client and per server connection "
                   f"({2 * z['connections']:,} threads) took {th['wall_s']['median']:.3f} s, "
                   f"{th['cpu_s']:.3f} s of CPU and {th['peak_rss_mib']:.1f} MiB{extra}.")
    pr = by.get("processes w=2", {})
    if pr.get("wall_s", {}).get("median") is not None:
        out.append(f"Clients in 2 worker processes: {pr['wall_s']['median']:.3f} s"
                   + (f" ({fx(pr['speedup'])})." if pr.get("speedup") else "."))
    return " ".join(out)


def mixed_paragraph(rec):
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    idle = by.get("idle", {})
    if idle.get("rtt_p50_us") is None:
        return "The idle run failed: no latency baseline."
    out = [f"With no CPU task the probe's round trip took p50 {idle['rtt_p50_us']:,.0f} us, p99 "
           f"{idle['rtt_p99_us']:,.0f} us ({fn(idle['round_trips'])} round trips)."]
    expect_parallel = {"multi-thread w=2", "threads", "processes w=1"}
    idle_rate = idle["round_trips"] / idle["stats"]["wall_s"]["median"] \
        if idle.get("round_trips") and idle["stats"].get("wall_s", {}).get("median") else None
    below_idle = []  # ways whose median beat idle's: said once, after them all
    for cfg in rec["configs"]:
        name, s = cfg["name"], cfg["summary"]
        if name == "idle" or s.get("rtt_p50_us") is None:
            continue
        # The worse of the two ratios: with a handful of round trips p99 is p50, and an idle
        # p99 inflated by a noisy moment must not hide a median that grew 60-fold.
        worst = max(s.get("p50_vs_idle") or 0, s.get("p99_vs_idle") or 0)
        if worst < 3:
            v = "I/O barely noticed the CPU task"
        elif worst < 30:
            v = "I/O was slowed by the CPU task"
        else:
            v = "I/O waited behind the CPU task: the convoy effect"
        if name in expect_parallel and worst >= 30:
            own = "thread" if cfg["mode"] == "threads" else "process"
            v += (f", although there were {cfg['workers']} workers and {cpus_available()} CPUs"
                  if cfg["mode"] == "multi-thread" else
                  f", although the countdown had a {own} of its own")
        if name == "cooperative" and worst < 3:
            v += ", although the countdown shares the server's only thread"
        if (s.get("p50_vs_idle") or 1) < 0.8:
            below_idle.append(name)
        rt, cd = s.get("round_trips"), s.get("countdown_s")
        if rt is not None and rt <= 2 and cd:
            v += (f"; only {rt:.0f} round trip(s) got through in the countdown's {fs(cd)} s"
                  + (f" (idle: {idle_rate * cd:,.0f} in as long)" if idle_rate else ""))
        out.append(f"{name}: p50 {s['rtt_p50_us']:,.0f} us ({fr(s.get('p50_vs_idle'))} idle), "
                   f"p99 {s['rtt_p99_us']:,.0f} us ({fr(s.get('p99_vs_idle'))}), max "
                   f"{s['rtt_max_us']:,.0f} us, {fn(rt)} round trip(s), countdown "
                   f"{fs(cd)} s: {v}.")
    if below_idle:
        out.append(f"The median of {', '.join(below_idle)} was below idle's: a server whose "
                   "CPUs are busy answers a wake-up faster than an idle one, so idle is not the "
                   "floor.")
    a, b = by.get("single-lock w=2 interval", {}), by.get("single-lock w=2 ticks:100", {})
    if a.get("rtt_p50_us") and b.get("rtt_p50_us"):
        better = "interval" if a["rtt_p50_us"] < b["rtt_p50_us"] else "ticks:100"
        out.append(f"Of the two locks, {better} gave the lower median latency "
                   f"({a['rtt_p50_us']:,.0f} us with the interval, {b['rtt_p50_us']:,.0f} us with "
                   f"ticks:100).")
    return " ".join(out)


def side_by_side(rec, countdown):
    """The GIL side by side: the seed's quoted figures, CPython here, weft's single-lock and
    process pool here, each as a speed-up against its own sequential."""
    py = {c["name"]: c["summary"] for c in rec["configs"]}
    wf = {c["name"]: c["summary"] for c in countdown["configs"]} if countdown else {}
    seed = SEED["wall_s"]
    ways = (("sequential", "sequential", "sequential", "sequential"),
            ("2 threads", "2 threads", "threads 2", "single-lock N=2 interval"),
            ("4 threads", "4 threads", "threads 4", "single-lock N=4 interval"),
            ("2 processes", None, "Pool 2", "processes N=2"),
            ("4 processes", None, "Pool 4", "processes N=4"))
    rows = []
    for way, s_key, p_key, w_key in ways:
        def cell(by, key):
            s = by.get(key)
            if not s or s["wall_s"]["median"] is None:
                return {"config": key, "wall_s": None, "speedup": None}
            return {"config": key, "wall_s": s["wall_s"]["median"],
                    "speedup": 1.0 if key == "sequential" else s["speedup"]}
        rows.append({"way": way,
                     "seed": {"wall_s": seed.get(s_key),
                              "speedup": seed["sequential"] / seed[s_key] if s_key else None},
                     "cpython": cell(py, p_key), "weft": cell(wf, w_key)})
    return rows


def print_side_by_side(rows, rec, countdown):
    def c(x):
        return "-" if x["speedup"] is None else f"{x['speedup']:.2f}x ({fs(x['wall_s'])} s)"
    head = ["GIL side by side", f"seed: {SEED['machine']}, COUNT=1e8",
            f"CPython {platform.python_version()} here, count {sci(rec['sizes']['count'])}",
            "weft here" + (f", count {sci(countdown['sizes']['count'])}" if countdown and
                           countdown["configs"] else " (countdown not run or failed)")]
    body = [[r["way"] + (" (Pool / process_pool)" if "processes" in r["way"] else
                         " (weft: single-lock)" if "threads" in r["way"] else ""),
             c(r["seed"]), c(r["cpython"]), c(r["weft"])] for r in rows]
    print_table(head, body)
    print(f"speed-up against each one's own sequential; the seed's figures are quoted "
          f"{SEED['source']}; Pool uses multiprocessing's default start method, "
          f"{rec.get('start_method')}")


def cpython_paragraph(rec, rows):
    by = {r["way"]: r for r in rows}
    py_by = {c["name"]: c["summary"] for c in rec["configs"]}
    ver = platform.python_version()
    out = []
    for n in (2, 4):
        r = by[f"{n} threads"]
        py, sd, wf = r["cpython"]["speedup"], r["seed"]["speedup"], r["weft"]["speedup"]
        if py is None:
            continue
        v = ("the GIL lets one thread count at a time" if py < 1.15 else
             "faster than sequential: this interpreter did not serialise the threads")
        s = (f"CPython {ver}'s {n} threads took {times(py)} the sequential time (the seed's i3: "
             f"{times(sd)}): {v}")
        if wf is not None:
            s += (f"; weft's {n} single-lock threads took {times(wf)}, "
                  + ("the same serialisation, by design" if wf < 1.15 else
                     "which is not the serialisation a single lock should give"))
        out.append(s + ".")
    for n in (2, 4):
        r = by[f"{n} processes"]
        py, wf = r["cpython"]["speedup"], r["weft"]["speedup"]
        if py is None:
            continue
        cpus = cpus_available()
        s = (f"Pool({n}) ({rec.get('start_method')}) took {times(py)}: "
             f"{parallel_verdict(py, n, cpus, 'the processes', py_by.get(f'Pool {n}'))}")
        if wf is not None:
            s += f"; weft's process_pool of {n} took {times(wf)}"
        out.append(s + ".")
    return " ".join(out)


# ---------------------------------------------------------------------------------------------
# chart


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
        """groups: x labels; series: [(label, [value or None per group], what None means)]."""
        width = 0.8 / len(series)
        for i, (label, values, missing) in enumerate(series):
            for j, v in enumerate(values):
                x = j + (i - (len(series) - 1) / 2) * width
                if v is None:
                    ax.text(x, 1 if log else 0, missing, rotation=90, ha="center", va="bottom",
                            fontsize=7, color="#C44E52" if missing == "FAILED" else "gray")
                    continue
                ax.bar(x, v, width * 0.95, color=colors[i % len(colors)],
                       label=label if j == next(k for k, y in enumerate(values)
                                                if y is not None) else None)
                ax.text(x, v, f"{v:,.0f}" if unit == "us" or v >= 100 else f"{v:.2f}",
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
            series = [(f"N={n}", [by.get(names.get(k, k + " N={}").format(n), {})
                                  .get("speedup") for k in kinds], "FAILED") for n in (1, 2, 4)]
            bars(ax, [{"single-lock": "single-lock\ninterval",
                       "single-lock ticks:100": "single-lock\nticks:100"}.get(k, k)
                      for k in kinds], series)
            ax.axhline(1, color="gray", ls="--", lw=1)
            ax.axhline(cpus_available(), color="gray", ls=":", lw=1)
            ax.set_ylabel("speed-up vs sequential")
            ax.set_title(f"countdown of {rec['sizes']['count']:,}: speed-up against sequential "
                         f"(dashed: 1x; dotted: {cpus_available()} CPUs)", fontsize=10)
            ax.legend(fontsize=8)
        elif w in ("sleep", "echo", "cpython"):
            cfgs = [c for c in rec["configs"] if c["name"] != "sequential"]
            vals = [c["summary"]["speedup"] for c in cfgs]
            present = [v for v in vals if v]
            log = bool(present) and max(present) / min(present) > 30
            if w == "cpython":
                rows = rec.get("side_by_side", [])

                rows = [r for r in rows if r["way"] != "sequential"]
                series = [("seed (i3, quoted)", [r["seed"]["speedup"] for r in rows],
                           "not in the seed"),
                          (f"CPython {platform.python_version()}",
                           [r["cpython"]["speedup"] for r in rows], "FAILED"),
                          ("weft (single-lock / process_pool)",
                           [r["weft"]["speedup"] for r in rows],
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
            cfgs = rec["configs"]
            series = [(f"rtt {q}", [c["summary"].get(f"rtt_{q}_us") for c in cfgs], "FAILED")
                      for q in ("p50", "p99")]
            bars(ax, [c["name"].replace(" w=2 ", " w=2\n") for c in cfgs], series, log=True,
                 unit="us")
            ax.set_ylabel("round trip (us, log)")
            ax.set_title(f"mixed: echo latency while a countdown of {rec['sizes']['count']:,} "
                         "runs on the same executor (idle: no countdown)", fontsize=10)
            ax.legend(fontsize=8)
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


COMPARE_RULE = ("the two runs' [min, max] ranges do not overlap AND |B/A - 1| exceeds the "
                "larger relative spread (max - min) / median of the two")


def compare(argv):
    ap = argparse.ArgumentParser(
        prog="contrast.py compare",
        description="Ratios B/A between two contrast results, configuration by configuration: "
                    "median wall time (mixed: median rtt p50). A change is flagged when " +
                    COMPARE_RULE + ". Exit status 0, or 2 when a file is missing or unreadable.")
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
    print(f"ratio = B/A of the median (wall s; mixed: rtt p50 us); '<< CHANGED' when "
          f"{COMPARE_RULE}")
    for tag, d in (("A", a), ("B", b)):
        reps = d.get("settings", {}).get("reps")
        if isinstance(reps, int) and reps < 3:
            print(f"note: {tag} has {reps} repetition(s): a spread of one sample is 0, so any "
                  "difference from it is flagged; compare runs of 3 or more")
    head = ["workload", "config", "A median [min" + DASH + "max]", "B median [min" + DASH +
            "max]", "B/A", ""]
    rows, only, flagged = [], [], 0
    for w in [w for w in WORKLOADS if w in a["workloads"] or w in b["workloads"]]:
        ca = {c["name"]: c for c in a["workloads"].get(w, {}).get("configs", [])}
        cb = {c["name"]: c for c in b["workloads"].get(w, {}).get("configs", [])}
        for name in list(ca) + [n for n in cb if n not in ca]:
            if name not in ca or name not in cb:
                only.append(f"{w} {name}: only in {'A' if name in ca else 'B'}")
                continue
            key = "rtt_p50_us" if w == "mixed" else "wall_s"

            def st(c):
                s = c.get("summary", {})
                return s.get("wall_s") if key == "wall_s" else s.get("stats", {}).get(key)
            sa, sb = st(ca[name]) or {}, st(cb[name]) or {}
            ma, mb = sa.get("median"), sb.get("median")
            computed = ca[name].get("computed") or cb[name].get("computed")

            def cell(s):
                if s.get("median") is None:
                    return "FAILED"
                return f"{s['median']:.4g} [{s['min']:.4g}{DASH}{s['max']:.4g}]"
            if ma is None or mb is None or not ma:
                rows.append([w, name, cell(sa), cell(sb), "-", "failed in one run"])
                continue
            ratio = mb / ma
            spread = max((sa["max"] - sa["min"]) / ma, (sb["max"] - sb["min"]) / mb)
            apart = sa["max"] < sb["min"] or sb["max"] < sa["min"]
            mark = ""
            if computed:
                mark = "computed"
            elif apart and abs(ratio - 1) > spread:
                flagged += 1
                mark = "<< CHANGED (" + ("slower" if ratio > 1 else "faster") + ")"
            rows.append([w, name, cell(sa), cell(sb), f"{ratio:.3f}", mark])
    if rows:
        print_table(head, rows, left=2)
    for line in only:
        print(line)
    print(f"{flagged} change(s) beyond the noise")
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
                    help="tiny sizes, 1 repetition: a smoke test of the plumbing")
    ap.add_argument("--reps", type=positive_int, help="repetitions (default 3, at least 3 "
                    "unless --quick; --quick: 1)")
    ap.add_argument("--out-dir", default=os.path.join("bench", "results"),
                    help="where the JSON and SVG go (default: bench/results)")
    ap.add_argument("--only", action="extend", nargs="+", choices=WORKLOADS, metavar="WORKLOAD",
                    help=f"run only these workloads ({', '.join(WORKLOADS)})")
    ap.add_argument("--timeout", type=positive_int, default=120,
                    help="seconds before one run is killed and counted as failed (default 120)")
    sizes = ap.add_argument_group("sizes (default; --quick)")
    sizes.add_argument("--count", type=positive_int, help="countdown count (3e8; 2e6)")
    sizes.add_argument("--tasks", type=positive_int, help="sleep: tasks (10000; 200)")
    sizes.add_argument("--sleep-ms", type=positive_int, help="sleep: ms per task (100; 10)")
    sizes.add_argument("--connections", type=positive_int, help="echo: connections (1000; 50)")
    sizes.add_argument("--round-trips", type=positive_int,
                       help="echo: round trips per connection (10; 2)")
    sizes.add_argument("--size", type=positive_int, help="echo and mixed: bytes (64; 64)")
    sizes.add_argument("--mixed-count", type=positive_int, help="mixed: countdown (3e8; 2e6)")
    sizes.add_argument("--python-count", type=positive_int,
                       help="cpython: countdown (2e7; 2e5)")
    args = ap.parse_args(argv)
    defaults = {"reps": (3, 1), "count": (300_000_000, 2_000_000), "tasks": (10_000, 200),
                "sleep_ms": (100, 10), "connections": (1000, 50), "round_trips": (10, 2),
                "size": (64, 64), "mixed_count": (300_000_000, 2_000_000),
                "python_count": (20_000_000, 200_000)}
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if args.quick else full)
    if args.reps < 3 and not args.quick:
        ap.error("--reps wants 3 or more (a median and a spread need them); --quick allows 1")
    return args


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
        print(f"\n{name} ({z}; {args.reps} rep(s), medians)")
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
        else:
            text = "The workload failed: " + "; ".join(rec["errors"])
        if args.quick:
            text = "(--quick sizes: what follows describes noise, not the ways.) " + text
        rec["paragraph"] = result["paragraphs"][name] = text
        print(textwrap.fill(text, 100))
        for c in rec["configs"]:
            for s in c["samples"]:
                for warn in s.get("warnings", []):
                    print(f"  warning: {c['name']} rep {s['rep']}: {warn}")
        for e in rec["errors"]:
            print(f"  error: {e}")
    if args.quick:
        print("\nnote: --quick runs one tiny repetition: a smoke test of the plumbing, not a "
              "measurement")


def output_stem(out_dir, when):
    host = re.sub(r"[^A-Za-z0-9._-]+", "-", socket.gethostname().split(".")[0]) or "host"
    base = f"{when:%Y-%m-%d}-{host}"
    stem, k = base, 1
    while any(os.path.exists(os.path.join(out_dir, stem + ext))
              for ext in (".json", "-contrast.svg")):
        k += 1
        stem = f"{base}-{k}"
    return os.path.join(out_dir, stem)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare(argv[1:])
    args = parse_args(argv)
    t0 = time.monotonic()
    now = datetime.datetime.now().astimezone()
    result = {"schema_version": SCHEMA_VERSION, "suite": "contrast",
              "date": now.isoformat(timespec="seconds"),
              "command": [sys.executable, sys.argv[0]] + argv, "machine": machine_info(args),
              "settings": dict(vars(args), only=args.only or list(WORKLOADS)),
              "load_before": loadavg(), "workloads": {}, "paragraphs": {}}
    if result["machine"].get("buildtype") not in (None, "release"):
        log(f"warning: {args.build} is a {result['machine']['buildtype']} build: not weft as "
            "shipped")
    log(f"contrast benchmark: {args.reps} rep(s), load average {result['load_before']}")
    plans = plan(args)
    failed = False
    for name in WORKLOADS:
        if args.only and name not in args.only:
            continue
        log(f"== {name}")
        exe = plans[name]["configs"][0]["argv"][0]
        try:
            if name != "cpython" and not os.access(exe, os.X_OK):
                # One clear reason rather than the same one for every run of every workload.
                raise RuntimeError(f"{exe} is missing: build it (ninja -C {args.build} "
                                   "bench/contrast)")
            rec = run_workload(name, plans[name], args)
            summarize(name, rec)
        except Exception as e:  # a broken workload is reported; the others still run
            rec = dict({k: v for k, v in plans[name].items() if k != "configs"}, configs=[],
                       errors=[str(e) if isinstance(e, RuntimeError) else
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
    result["load_after"] = loadavg()

    # The report is composed first and printed once the files are written: a closed terminal
    # (or `| head`) must not lose the measurements.
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report(result, args)
    result["failed"] = failed
    os.makedirs(args.out_dir, exist_ok=True)
    stem = output_stem(args.out_dir, now)
    result["files"] = {"json": stem + ".json", "svg": None}
    with contextlib.redirect_stdout(text):
        try:
            svg = chart(result, stem + "-contrast.svg")
        except Exception as e:  # a chart bug must not lose the measurements
            print(f"chart: failed: {type(e).__name__}: {e}")
            svg = None
    result["files"]["svg"] = svg
    result["total_s"] = round(time.monotonic() - t0, 3)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    sys.stdout.write(text.getvalue())
    print(f"\ntotal {result['total_s']:.1f} s; results: {stem}.json" +
          (f"; chart: {svg}" if svg else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
