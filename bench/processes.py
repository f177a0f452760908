#!/usr/bin/env python3
"""weft's processes benchmark: the process pool and the process spawner against Python's
multiprocessing and asyncio, all measured in one run (./run bench processes).

    python3 bench/processes.py [--build build] [--reps 5] [--quick] [--only SUITE ...]
                               [--out bench-results/processes.json] [size options, see --help]

Every suite runs --reps repetitions; each repetition runs every configuration of the suite once,
in an order rotated by one every repetition (A B C, B C A, C A B, ...), so drift over time hits
every configuration alike. A ratio is the median of the per-repetition ratios against the
baseline of the same repetition (always baseline / weft: how many times faster weft is); the
absolute figures are medians too. The JSON file keeps every raw sample, the machine, the load
average before and after, and the command.

Suites:
  countdown  examples/countdown, CPU-bound: sequential (no runtime) vs --mode=processes
             --workers=2 with start method spawn and fork (the pool's start-up and shutdown
             included); speedup = sequential wall / processes wall. Also two sequential
             processes counting half each, started at once from Python: the parallelism the
             machine itself gives at that moment, the ceiling for any pool.
  roundtrip  bench/process_bench --only=roundtrip beside bench/reference/pool_apply.py
             (multiprocessing.Pool, Python's default start method): a small job
             (square(long)) through a pool of 1 worker, --jobs sequential submits / applies
             after --warmup; 2 workers with 2 concurrent submitters (Python: 2 threads calling
             apply); map over --map-items items on 1 and 2 workers (Python: Pool.map, default
             chunksize); the time from creating a 1-worker pool to its first result, for both
             start methods.
  spawn      bench/process_bench --only=spawn beside bench/reference/asyncio_spawn.py: spawn
             /bin/true and wait for it, --children times one after the other
             (asyncio.create_subprocess_exec + await proc.wait()), and --concurrency at a time;
             subprocess.run(["/bin/true"]) for context, and the floor: bare posix_spawn +
             waitpid with no runtime, in process_bench itself.

Nothing here is a test of speed: PASS/MISS compare the medians with the targets, and --quick
(one tiny repetition) only checks the plumbing. Exit status 0 when every run worked, 1 when some
run failed, 2 on bad arguments.
"""
import datetime
import os
import platform
import re
import sys

# Shared with ./run bench threads: the repetition loop, the rows and their verdicts.
from threads import (PARALLEL, Suite, apply_defaults, ceiling_row, countdown_suite, driver_args,
                     fmt, loadavg, log, machine, median, print_figures, row, run_cmd, run_suites,
                     write_results)

SUITES = ("countdown", "roundtrip", "spawn")
HERE = os.path.dirname(os.path.abspath(__file__))
NAME_KV = re.compile(r"^(\w+)\s")
KV = re.compile(r"(\w+)=([-+0-9.eE]+)(?=\s|$)")


def measurements(out):
    """process_bench's (and the references') lines: {name: {key: number}}, the names that
    come several times told apart by keyed()."""
    found = {}
    for line in out.splitlines():
        m = NAME_KV.match(line)
        if not m:
            continue
        fields = {k: float(v) for k, v in KV.findall(line)}
        found[keyed(m.group(1), fields)] = fields
    return found


def keyed(name, fields):
    if name == "map":
        return f"map w={int(fields.get('workers', 0))}"
    if name == "pool_start":
        return f"pool_start {'fork' if fields.get('fork') else 'spawn'}"
    return name


def run_program(argv, expect, timeout=900):
    status, out, err = run_cmd(argv, timeout=timeout)
    found = measurements(out)
    missing = [k for k in expect if k not in found]
    if status != 0 or missing:
        raise RuntimeError(f"{' '.join(argv)}: status {status}, missing {missing}: "
                           f"{(err or out)[-400:]}")
    return found


# ---------------------------------------------------------------------------------------------
# suites


def suite_countdown(args, rows, result):
    configs = {
        "sequential": ["--mode=sequential"],
        "processes w=2 spawn": ["--mode=processes", "--workers=2", "--start-method=spawn"],
        "processes w=2 fork": ["--mode=processes", "--workers=2", "--start-method=fork"],
    }
    parallel = PARALLEL
    suite = countdown_suite(args, configs)
    result["countdown"] = {"count": args.count, "samples": suite.samples, "errors": suite.errors,
                           "medians_s": {c: suite.med(c) for c in suite.configs}}
    seq = suite.med("sequential")
    for config in ("processes w=2 spawn", "processes w=2 fork"):
        r, rs = suite.ratio("sequential", config)
        rows.append(row("countdown", f"speedup {config}", suite.med(config), "s", "sequential",
                        seq, r, rs, (">=", 1.85), speedup=True))
    rows.append(ceiling_row(suite, "the machine's own parallelism (the ceiling)"))
    r, rs = suite.ratio(parallel, "processes w=2 spawn")
    rows.append(row("countdown", "processes w=2 spawn vs 2 bare processes",
                    suite.med("processes w=2 spawn"), "s", parallel, suite.med(parallel), r, rs,
                    None, "1.00x would be the pool exactly as fast as 2 bare processes",
                    speedup=True))


def suite_roundtrip(args, rows, result):
    weft = [os.path.join(args.build, "bench", "process_bench"), "--only=roundtrip",
            f"--jobs={args.jobs}", f"--warmup={args.warmup}", f"--map-items={args.map_items}"]
    python = [sys.executable, os.path.join(HERE, "reference", "pool_apply.py"),
              "--jobs", str(args.jobs), "--warmup", str(args.warmup),
              "--map-items", str(args.map_items)]
    expect = ("pool_start spawn", "pool_start fork", "roundtrip", "roundtrip_concurrent",
              "map w=1", "map w=2")
    configs = {"weft process_pool": weft, "python multiprocessing.Pool": python}
    suite = Suite("roundtrip", list(configs))

    def one(config):
        found = run_program(configs[config], expect)
        s = {"value": found["roundtrip"]["us_per_job"], "unit": "us/job (apply w=1)",
             "raw": found}
        s["roundtrip_us"] = found["roundtrip"]["us_per_job"]
        s["concurrent_us"] = found["roundtrip_concurrent"]["us_per_job"]
        s["map1_us"] = found["map w=1"]["us_per_item"]
        s["map2_us"] = found["map w=2"]["us_per_item"]
        s["start_spawn_ms"] = found["pool_start spawn"]["first_result_s"] * 1e3
        s["start_fork_ms"] = found["pool_start fork"]["first_result_s"] * 1e3
        return s

    suite.run(args.reps, one)
    w, p = list(configs)
    keys = ("roundtrip_us", "concurrent_us", "map1_us", "map2_us", "start_spawn_ms",
            "start_fork_ms")
    result["roundtrip"] = {
        "jobs": args.jobs, "warmup": args.warmup, "map_items": args.map_items,
        "python_start_method": python_start_method(),
        "samples": suite.samples, "errors": suite.errors,
        "medians": {c: {k: suite.med(c, k) for k in keys} for c in suite.configs}}
    figures = (
        ("roundtrip_us", "apply round trip, 1 worker", "us", (">=", 10.0),
         f"{args.jobs:,} sequential submit(square, x) vs Pool(1).apply(square, (x,))"),
        ("concurrent_us", "round trip, 2 workers, 2 submitters", "us", None,
         "wall / jobs; Python: 2 threads calling Pool(2).apply"),
        ("map1_us", f"map {args.map_items:,} items, 1 worker, per item", "us", None,
         "both batch items: default chunk sizes (about 4 chunks per worker)"),
        ("map2_us", f"map {args.map_items:,} items, 2 workers, per item", "us", None,
         "Python: Pool(2).map, default chunksize"),
        ("start_spawn_ms", "pool(1) start to first result, spawn", "ms", None,
         "weft re-executes the program; Python starts a fresh interpreter"),
        ("start_fork_ms", "pool(1) start to first result, fork", "ms", None,
         "weft forks a fork server, which forks the worker; Python forks the worker"),
    )
    for key, figure, unit, goal, detail in figures:
        r, rs = suite.ratio(p, w, key)
        rows.append(row("roundtrip", figure, suite.med(w, key), unit, p, suite.med(p, key), r, rs,
                        goal, detail, speedup=True))


def python_start_method():
    try:
        import multiprocessing
        return multiprocessing.get_start_method()
    except Exception:  # only informative
        return None


def suite_spawn(args, rows, result):
    weft = [os.path.join(args.build, "bench", "process_bench"), "--only=spawn",
            f"--children={args.children}", f"--concurrency={args.concurrency}",
            f"--spawn-warmup={args.spawn_warmup}", f"--program={args.program}"]
    python = [sys.executable, os.path.join(HERE, "reference", "asyncio_spawn.py"),
              "--children", str(args.children), "--concurrency", str(args.concurrency),
              "--warmup", str(args.spawn_warmup), "--program", args.program]
    configs = {"weft io::command": weft, "python asyncio": python}
    suite = Suite("spawn", list(configs))

    def one(config):
        expect = ("spawn", "spawn_concurrent") + (("subprocess_run",) if "python" in config
                                                  else ("spawn_floor",))
        found = run_program(configs[config], expect)
        s = {"value": found["spawn"]["us_per_child"], "unit": "us/child (sequential)",
             "raw": found, "sequential_us": found["spawn"]["us_per_child"],
             "concurrent_us": found["spawn_concurrent"]["us_per_child"]}
        if "subprocess_run" in found:
            s["subprocess_run_us"] = found["subprocess_run"]["us_per_child"]
        if "spawn_floor" in found:
            s["floor_us"] = found["spawn_floor"]["us_per_child"]
        return s

    suite.run(args.reps, one)
    w, p = list(configs)
    result["spawn"] = {
        "children": args.children, "concurrency": args.concurrency, "warmup": args.spawn_warmup,
        "program": args.program, "samples": suite.samples, "errors": suite.errors,
        "medians": {w: {k: suite.med(w, k) for k in ("sequential_us", "concurrent_us",
                                                     "floor_us")},
                    p: {k: suite.med(p, k) for k in ("sequential_us", "concurrent_us",
                                                     "subprocess_run_us")}}}
    r, rs = suite.ratio(p, w, "sequential_us")
    rows.append(row("spawn", f"spawn+wait {args.program}, sequential", suite.med(w, "sequential_us"),
                    "us", p, suite.med(p, "sequential_us"), r, rs, (">=", 3.0),
                    "command(program).spawn() + co_await wait() vs create_subprocess_exec + "
                    "await proc.wait()", speedup=True))
    r, rs = suite.ratio(p, w, "concurrent_us")
    rows.append(row("spawn", f"spawn+wait, {args.concurrency} at a time, per child",
                    suite.med(w, "concurrent_us"), "us", p, suite.med(p, "concurrent_us"), r, rs,
                    None, "", speedup=True))
    # The floor: bare posix_spawn + waitpid in the same program, same repetition.
    rs = [s_w["floor_us"] / s_w["sequential_us"] for s_w in suite.samples[w]
          if s_w and s_w.get("floor_us") and s_w.get("sequential_us")]
    rows.append(row("spawn", "spawn+wait sequential vs bare posix_spawn+waitpid",
                    suite.med(w, "sequential_us"), "us", "posix_spawn + waitpid, no runtime",
                    suite.med(w, "floor_us"), median(rs), rs, None,
                    "the floor: the kernel's fork-exec-exit; no runtime can go below it",
                    speedup=True))
    # subprocess.run (blocking) against weft's sequential figure: same repetition's samples.
    rs = [s_p["subprocess_run_us"] / s_w["sequential_us"]
          for s_w, s_p in zip(suite.samples[w], suite.samples[p])
          if s_w and s_p and s_w.get("sequential_us") and s_p.get("subprocess_run_us")]
    rows.append(row("spawn", "spawn+wait sequential vs subprocess.run",
                    suite.med(w, "sequential_us"), "us", "python subprocess.run",
                    suite.med(p, "subprocess_run_us"), median(rs), rs, None,
                    "blocking subprocess.run([program]) in a loop", speedup=True))


# ---------------------------------------------------------------------------------------------
# report


def print_table(rows, result, quick):
    head = ["suite", "figure", "weft", "baseline", "ratio", "goal", "", "baseline is"]
    table = []
    for r in rows:
        digits = 3 if r.get("unit") == "s" else 1
        if "skipped" in r:
            table.append([r["suite"], r["figure"], "-", r["skipped"], "", "", "", ""])
            continue
        table.append([r["suite"], r["figure"], f"{fmt(r['value'], digits)} {r['unit']}",
                      f"{fmt(r['baseline_value'], digits)} {r['unit']}",
                      "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", r.get("goal", ""),
                      r.get("verdict", ""), r["baseline"]])
    load = result["load_before"], result["load_after"]
    print_figures(f"processes benchmark ({result['reps']} reps, medians; ratio = median of "
                  f"per-rep ratios baseline / weft, so > 1 means weft is faster; load average "
                  f"before {load[0]}, after {load[1]}; nproc {result['machine']['nproc']})",
                  head, table, rows, result, SUITES, quick)


def parse_args(argv):
    ap = driver_args("weft's processes benchmark: process pool and spawner vs Python",
                     __doc__.split("\n\n", 2)[2], SUITES, "bench-results/processes.json")
    ap.add_argument("--count", type=int, help="countdown count (default 4e9; --quick 2e7)")
    ap.add_argument("--jobs", type=int, help="roundtrip: sequential jobs (default 20000; "
                    "quick 300)")
    ap.add_argument("--warmup", type=int, help="roundtrip: jobs before the clock (default 1000; "
                    "quick 20)")
    ap.add_argument("--map-items", type=int, help="roundtrip: items per map (default 10000; "
                    "quick 300)")
    ap.add_argument("--children", type=int, help="spawn: children (default 1000; quick 40)")
    ap.add_argument("--concurrency", type=int, help="spawn: children at a time (default 8)")
    ap.add_argument("--spawn-warmup", type=int, help="spawn: children before the clock "
                    "(default 50; quick 5)")
    ap.add_argument("--program", default="/bin/true", help="spawn: the program (/bin/true)")
    args = ap.parse_args(argv)
    defaults = {"reps": (5, 1), "count": (4_000_000_000, 20_000_000), "jobs": (20_000, 300),
                "warmup": (1_000, 20), "map_items": (10_000, 300), "children": (1_000, 40),
                "concurrency": (8, 8), "spawn_warmup": (50, 5)}
    apply_defaults(ap, args, defaults)
    if args.jobs < 2:
        ap.error("--jobs wants 2 or more")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    result = {"date": started.isoformat(timespec="seconds"),
              "command": [sys.executable] + (sys.argv if argv is None else ["processes.py"] + argv),
              "machine": dict(machine(args), python=platform.python_version()),
              "reps": args.reps, "quick": args.quick, "settings": vars(args),
              "load_before": loadavg()}
    log(f"processes benchmark: {args.reps} rep(s), load average {result['load_before']}")
    rows = []
    run_suites({"countdown": lambda: suite_countdown(args, rows, result),
                "roundtrip": lambda: suite_roundtrip(args, rows, result),
                "spawn": lambda: suite_spawn(args, rows, result)},
               args.only, rows, result)
    return write_results(rows, result, args, print_table, SUITES)


if __name__ == "__main__":
    sys.exit(main())
