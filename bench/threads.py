#!/usr/bin/env python3
"""weft's threads benchmark: the single-lock and multi-thread executors against their baselines,
all measured in one run (./run bench threads).

    python3 bench/threads.py [--build build] [--reps 5] [--quick] [--only SUITE ...]
                             [--workers 1,2,4,8,16]
                             [--out bench-results/threads.json] [size options, see --help]

Every suite runs --reps repetitions; each repetition runs every configuration of the suite once,
in an order rotated by one every repetition (A B C, B C A, C A B, ...), so drift over time hits
every configuration alike. A ratio is the median of the per-repetition ratios against the
baseline of the same repetition; the absolute figures are medians too. The JSON file keeps every
raw sample, the machine, the load average before and after, and the command.

Suites:
  countdown  examples/countdown, CPU-bound: sequential (no runtime) vs multi-thread --workers=2,
             single-lock --workers=2 (new GIL) and single-lock --workers=2 --gil=ticks:100
             (old GIL); speedup = sequential wall / mode wall, with single-lock's lock counters.
             Also two sequential processes counting half each at once: the parallelism the
             machine itself gives at that moment, the ceiling for any executor.
  io         bench/io_bound: --io-tasks tasks that each sleep --io-rounds times --io-sleep-ms,
             on single-lock and multi-thread with 2 workers, and one std::thread per task.
  micro      bench/threads_micro on multi-thread with 2 workers (and 1, and cooperative, for
             reference):
             spawn+join of --tasks trivial tasks, and a token ping-ponged --round-trips times
             through two bounded(1) channels; beside bench/reference/threads.go (GOMAXPROCS=2)
             when go is installed, and bench/reference/tokio/threads.rs (multi_thread with 2
             workers, current_thread) when Debian's cargo and librust-tokio-dev are.
  echo       examples/echo_server (port 0, SIGINT at the end) loaded by examples/echo_client
             (--echo-connections, 64-byte messages, --echo-duration s): cooperative, multi-thread
             with 1 and 2 workers unpinned, multi-thread 2 workers on CPUs 0-1 with the client
             pinned to CPU 1, and multi-thread 1 worker on CPU 0 with the client on CPU 1.
             On a 2-CPU machine the server's workers share the CPUs with the load generator.
  sweep      (only with --workers or --only sweep) countdown, spawn+join and echo on
             multi-thread at each worker count of --workers (default 1,2,4,8,16): speed-up of
             countdown over sequential and of spawn+join and echo over the first count, each
             with a 95% interval, as a table and a chart (matplotlib, error bars) beside --out.
             Counts above the CPU count only oversubscribe the CPUs.

Nothing here is a test of speed: PASS/MISS compare the medians with the targets, and --quick
(one tiny repetition) only checks the plumbing. Exit status 0 when every run worked, 1 when some
run failed, 2 on bad arguments.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import stats  # bench/stats.py, beside this file: paired speed-ups with 95% intervals

KV = re.compile(r"(\w+)=([-+0-9.eE]+)(?=\s|$)")
SUITES = ("countdown", "io", "micro", "echo", "sweep")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except (OSError, ValueError):
        return None


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rotated(configs, rep):
    k = rep % len(configs)
    return configs[k:] + configs[:k]


def run_cmd(argv, timeout):
    """Runs argv to its end; returns (status, stdout, stderr); status None when killed."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err + f"\n(killed after {timeout:.0f} s)"
    finally:
        if proc.poll() is None:  # interrupted: nothing of the group outlives the run
            os.killpg(proc.pid, signal.SIGKILL)


def last_fields(out):
    lines = [line for line in out.splitlines() if line.strip()]
    return ({k: float(v) for k, v in KV.findall(lines[-1])} if lines else {}), lines


class Suite:
    """Samples of one suite: config -> list of per-repetition dicts (None for a failed run)."""

    def __init__(self, name, configs):
        self.name, self.configs = name, configs
        self.samples = {c: [] for c in configs}
        self.errors = []

    def run(self, reps, one):
        for rep in range(reps):
            for config in rotated(self.configs, rep):
                try:
                    s = one(config)
                except Exception as e:  # a failed run is a result, not the end of the run
                    s = None
                    self.errors.append(f"{config} rep {rep + 1}: {type(e).__name__}: {e}")
                    log(f"  {self.name} {config} rep {rep + 1}/{reps}: FAILED: {e}")
                else:
                    log(f"  {self.name} {config} rep {rep + 1}/{reps}: {s.get('value'):.6g} "
                        f"{s.get('unit', '')}".rstrip())
                if s is not None:
                    s["load1"] = (loadavg() or [None])[0]  # the 1-minute load just after
                self.samples[config].append(s)

    def values(self, config, key="value"):
        return [s.get(key) if s else None for s in self.samples[config]]

    def med(self, config, key="value"):
        return median(self.values(config, key))

    def ratio(self, num, den, key="value"):
        """Median over repetitions of num[key] / den[key] (same repetition)."""
        rs = [a / b for a, b in zip(self.values(num, key), self.values(den, key))
              if a is not None and b]
        return median(rs), rs


# ---------------------------------------------------------------------------------------------
# suites


def countdown_halves(exe, count):
    """Two `countdown --mode=sequential` processes counting half of `count` each, started at
    once: the wall time from starting both to the end of both, and each one's own wall_s. What
    the machine itself gives two CPU-bound processes at that moment (the ceiling)."""
    half = [exe, f"--count={count // 2}", "--mode=sequential"]
    start = time.monotonic()
    procs = [subprocess.Popen(half, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    wall = time.monotonic() - start
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError(f"{' '.join(half)}: {[o[1][-300:] for o in outs]}")
    return {"value": wall, "unit": "s",
            "each_wall_s": [last_fields(o[0])[0].get("wall_s") for o in outs]}


def countdown_sample(exe, count, options):
    """One `countdown --count=count options...` run: its wall_s and its output lines."""
    argv = [exe, f"--count={count}"] + options
    status, out, err = run_cmd(argv, timeout=600)
    fields, lines = last_fields(out)
    if status != 0 or "wall_s" not in fields:
        raise RuntimeError(f"{' '.join(argv)}: status {status}: {(err or out)[-300:]}")
    return {"value": fields["wall_s"], "unit": "s", "lines": lines}


# What the machine itself gives: two processes without any runtime, each counting half, at
# once (the wall time from starting both to the end of both). If this is not ~2x faster than
# sequential, no executor can be: the CPUs are not free to run two threads at full speed.
PARALLEL = "2 processes x C/2 (no runtime)"


def countdown_suite(args, configs, sample=None):
    """examples/countdown in each configuration (name -> arguments) and as PARALLEL, args.reps
    times; `sample` may add to each configuration's sample. Shared with bench/processes.py."""
    exe = os.path.join(args.build, "examples", "countdown")
    suite = Suite("countdown", list(configs) + [PARALLEL])

    def one(config):
        if config == PARALLEL:
            return countdown_halves(exe, args.count)
        s = countdown_sample(exe, args.count, configs[config])
        return sample(s) if sample else s

    suite.run(args.reps, one)
    return suite


def ceiling_row(suite, what):
    """The row of PARALLEL against sequential: what the machine gives, and each half's time."""
    r, rs = suite.ratio("sequential", PARALLEL)
    each = [w for s in suite.samples[PARALLEL] if s for w in s["each_wall_s"] if w]
    return row("countdown", f"speedup {PARALLEL}", suite.med(PARALLEL), "s", "sequential",
               suite.med("sequential"), r, rs, None,
               f"{what}; each half took {fmt(median(each), 3)} s (median)", speedup=True)


def with_lock_counters(s):
    lock = [line for line in s["lines"] if line.startswith("single-lock:")]
    if lock:  # the second-to-last line: the lock's counters
        s["lock"] = {k: float(v) for k, v in KV.findall(lock[0])}
    return s


def suite_countdown(args, rows, result):
    configs = {
        "sequential": ["--mode=sequential"],
        "multi-thread w=2": ["--mode=multi-thread", "--workers=2"],
        "single-lock w=2": ["--mode=single-lock", "--workers=2"],
        "single-lock w=2 ticks:100": ["--mode=single-lock", "--workers=2", "--gil=ticks:100"],
    }
    parallel = PARALLEL
    suite = countdown_suite(args, configs, with_lock_counters)
    result["countdown"] = {"count": args.count, "samples": suite.samples, "errors": suite.errors}
    seq = suite.med("sequential")
    rows.append(ceiling_row(suite, "the machine's own parallelism"))
    r, rs = suite.ratio(parallel, "multi-thread w=2")
    rows.append(row("countdown", "multi-thread w=2 vs 2 processes", suite.med("multi-thread w=2"),
                    "s", parallel, suite.med(parallel), r, rs, None,
                    "1.00x: weft's 2 workers as fast as 2 bare processes", speedup=True))
    for config, goal in (("multi-thread w=2", (">=", 1.85)), ("single-lock w=2", ("<=", 1.0)),
                         ("single-lock w=2 ticks:100", ("<=", 1.0))):
        r, rs = suite.ratio("sequential", config)
        detail = ""
        lock = [s["lock"] for s in suite.samples[config] if s and "lock" in s]
        if lock:
            detail = (f"switches {median(x.get('switches') for x in lock):,.0f}, forced "
                      f"{median(x.get('forced_switches') for x in lock):,.0f}, lock_wait_s "
                      f"{median(x.get('lock_wait_s') for x in lock):.3f}")
            if any("releases_at_check" in x and x["releases_at_check"] for x in lock):
                detail += (f", releases_at_check "
                           f"{median(x.get('releases_at_check') for x in lock):,.0f}")
        rows.append(row("countdown", f"speedup {config}", suite.med(config), "s", "sequential",
                        seq, r, rs, goal, detail, speedup=True))
    result["countdown"]["medians_s"] = {c: suite.med(c) for c in suite.configs}


def suite_io(args, rows, result):
    exe = os.path.join(args.build, "bench", "io_bound")
    configs = {"single-lock w=2": ["--mode=single-lock", "--workers=2"],
               "multi-thread w=2": ["--mode=multi-thread", "--workers=2"],
               "thread per task": ["--mode=threads"]}
    suite = Suite("io", list(configs))
    sizes = [f"--tasks={args.io_tasks}", f"--rounds={args.io_rounds}",
             f"--sleep-ms={args.io_sleep_ms}"]

    def one(config):
        argv = [exe] + configs[config] + sizes
        status, out, err = run_cmd(argv, timeout=600)
        fields, lines = last_fields(out)
        if status != 0 or "wall_s" not in fields:
            raise RuntimeError(f"{' '.join(argv)}: status {status}: {(err or out)[-300:]}")
        s = dict(fields, value=fields["wall_s"], unit="s", line=lines[-1])
        s["overhead_s"] = fields["wall_s"] - fields["ideal_s"]
        if err.strip():
            s["stderr"] = err.strip()[-500:]
        return s

    suite.run(args.reps, one)
    created = [s["created"] for s in suite.samples["thread per task"] if s]
    result["io"] = {"tasks": args.io_tasks, "rounds": args.io_rounds,
                    "sleep_ms": args.io_sleep_ms, "ideal_s": args.io_rounds * args.io_sleep_ms / 1e3,
                    "threads_created": min(created) if created else None,
                    "samples": suite.samples, "errors": suite.errors,
                    "medians_s": {c: suite.med(c) for c in suite.configs},
                    "median_overhead_s": {c: suite.med(c, "overhead_s") for c in suite.configs}}
    note = ""
    if created and min(created) < args.io_tasks:
        note = f"only {min(created):,.0f} of {args.io_tasks:,} threads could be created"
    ov = result["io"]["median_overhead_s"]
    r, rs = suite.ratio("single-lock w=2", "multi-thread w=2")
    rows.append(row("io", "wall single-lock / multi-thread", suite.med("single-lock w=2"), "s",
                    "multi-thread w=2", suite.med("multi-thread w=2"), r, rs, ("within", 0.10),
                    f"overhead over the ideal {result['io']['ideal_s']:.2f} s: single-lock "
                    f"{fmt(ov['single-lock w=2'], 3)} s, multi-thread "
                    f"{fmt(ov['multi-thread w=2'], 3)} s"))
    for config in ("multi-thread w=2", "single-lock w=2"):
        r, rs = suite.ratio("thread per task", config)
        rows.append(row("io", f"wall thread-per-task / {config}", suite.med("thread per task"),
                        "s", config, suite.med(config), r, rs, (">", 1.0),
                        (f"thread-per-task overhead {fmt(ov['thread per task'], 3)} s" +
                         (f"; {note}" if note else "")) if config.startswith("multi") else ""))


def build_go(workdir):
    go = shutil.which("go")
    if not go:
        return None, "skipped: go is not installed (apt-get install golang-go)"
    sources = ("threads.go", "goshared.go")  # goshared.go: what it shares with micro.go
    for name in sources:  # outside any module: plain files
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", name),
                    os.path.join(workdir, name))
    exe = os.path.join(workdir, "threads_go")
    proc = subprocess.run([go, "build", "-o", exe, *sources], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return None, f"go build failed: {proc.stderr.strip()[-300:]}"
    return exe, None


def build_tokio(build):
    """The Tokio reference programs' directory, or (None, why they are skipped)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "tokio",
                          "build.sh")
    out = os.path.join(os.path.dirname(os.path.abspath(build)), "build-tokio")  # beside build/
    proc = subprocess.run([script, out], capture_output=True, text=True, timeout=900)
    if proc.returncode == 3:
        return None, f"skipped: {proc.stdout.strip()}"
    if proc.returncode != 0:
        return None, f"cargo build failed: {proc.stderr.strip()[-300:]}"
    return proc.stdout.strip(), None


def suite_micro(args, rows, result, workdir):
    weft = os.path.join(args.build, "bench", "threads_micro")
    sizes = [f"--tasks={args.tasks}", f"--round-trips={args.round_trips}", "--capacity=1"]
    configs = {"weft multi-thread w=2": [weft, "--workers=2"] + sizes,
               "weft multi-thread w=1": [weft, "--workers=1"] + sizes,
               "weft cooperative": [weft, "--executor=cooperative"] + sizes}
    go_exe, go_skip = build_go(workdir)
    if go_exe:
        configs["go GOMAXPROCS=2"] = [go_exe, "--procs", "2", "--tasks", str(args.tasks),
                                      "--round-trips", str(args.round_trips), "--capacity", "1"]
    tokio_dir, tokio_skip = build_tokio(args.build)
    tokio_mt, tokio_ct = "tokio multi_thread w=2", "tokio current_thread"
    if tokio_dir:
        exe = os.path.join(tokio_dir, "tokio_threads")
        tsizes = ["--tasks", str(args.tasks), "--round-trips", str(args.round_trips),
                  "--capacity", "1"]
        configs[tokio_mt] = [exe, "--runtime", "multi_thread", "--procs", "2"] + tsizes
        configs[tokio_ct] = [exe, "--runtime", "current_thread"] + tsizes
    suite = Suite("micro", list(configs))

    def one(config):
        status, out, err = run_cmd(configs[config], timeout=600)
        if status != 0:
            raise RuntimeError(f"{config}: status {status}: {(err or out)[-300:]}")
        data = json.loads(out.strip().splitlines()[-1])
        s = {r["name"]: r for r in data["results"]}
        s["runtime"] = data.get("runtime")
        s["value"] = s["spawn_join"]["ns_per_task"]
        s["unit"] = "ns/task (spawn_join)"
        s["ns_per_task"] = s["spawn_join"]["ns_per_task"]
        s["ns_per_round_trip"] = s["ping_pong"]["ns_per_round_trip"]
        return s

    suite.run(args.reps, one)
    w2 = "weft multi-thread w=2"
    result["micro"] = {"tasks": args.tasks, "round_trips": args.round_trips, "capacity": 1,
                       "go": go_skip or "go GOMAXPROCS=2",
                       "tokio": tokio_skip or f"{tokio_mt}, {tokio_ct}", "samples": suite.samples,
                       "errors": suite.errors,
                       "medians": {c: {"ns_per_task": suite.med(c, "ns_per_task"),
                                       "ns_per_round_trip": suite.med(c, "ns_per_round_trip")}
                                   for c in suite.configs}}

    def stat(config, workload, key):
        return median(s[workload].get(key) for s in suite.samples[config] if s)

    def detail(workload, config):
        keys = (("stolen", "steals", "injected", "overflows", "parks") if workload == "spawn_join"
                else ("cross_thread_round_trips", "lifo_runs", "tasks_run", "steals", "parks"))
        return ", ".join(f"{k} {fmt(stat(config, workload, k), 0)}" for k in keys)

    for key, workload, figure in (("ns_per_task", "spawn_join", "spawn+join ns/task"),
                                  ("ns_per_round_trip", "ping_pong", "ping-pong ns/round trip")):
        if go_exe:
            r, rs = suite.ratio(w2, "go GOMAXPROCS=2", key)
            rows.append(row("micro", f"{figure} weft w=2 / Go", suite.med(w2, key), "ns",
                            "go GOMAXPROCS=2", suite.med("go GOMAXPROCS=2", key), r, rs,
                            ("<=", 1.0), detail(workload, w2)))
        else:
            rows.append({"suite": "micro", "figure": f"{figure} weft w=2 / Go",
                         "value": suite.med(w2, key), "unit": "ns", "skipped": go_skip})
        for weft_config, base, short in ((w2, tokio_mt, "w=2 / Tokio multi_thread w=2"),
                                         ("weft cooperative", tokio_ct,
                                          "cooperative / Tokio current_thread")):
            if tokio_dir:
                r, rs = suite.ratio(weft_config, base, key)
                rows.append(row("micro", f"{figure} weft {short}", suite.med(weft_config, key),
                                "ns", base, suite.med(base, key), r, rs, None))
            else:
                rows.append({"suite": "micro", "figure": f"{figure} weft {short}",
                             "value": suite.med(weft_config, key), "unit": "ns",
                             "skipped": tokio_skip})
        for base, short in (("weft multi-thread w=1", "w=1"), ("weft cooperative", "cooperative")):
            r, rs = suite.ratio(w2, base, key)
            # time w=2 / time base: the geometric mean of the pairs with its 95% interval
            sp = stats.paired_speedup(suite.values(w2, key), suite.values(base, key))
            parts = [detail(workload, base) + " (w=1)"] if short == "w=1" else []
            if sp["ci95"]:
                parts.append(f"w=2 / {short} {sp['speedup']:.2f}x [{sp['ci95'][0]:.2f}-"
                             f"{sp['ci95'][1]:.2f}] (geometric mean, 95% interval)")
            rows.append(row("micro", f"{figure} weft w=2 / {short}", suite.med(w2, key), "ns",
                            base, suite.med(base, key), r, rs, None, "; ".join(parts)))


class EchoServer:
    """examples/echo_server on port 0, optionally pinned; stopped with SIGINT."""

    def __init__(self, argv, workdir, name):
        self.argv, self.name = argv, name
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.proc, self.port = None, None

    def __enter__(self):
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = re.search(r"listening on (\S+)", open(self.out_path).read())
            if m:
                self.port = int(m.group(1).rsplit(":", 1)[1])
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"echo_server exited with status {self.proc.returncode}: "
                                   f"{open(self.err_path).read()[-300:]}")
            time.sleep(0.02)
        raise RuntimeError("echo_server did not print 'listening on' within 10 s")

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait()

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return False


def echo_sample(args, workdir, name, server, mode, client):
    """One echo run: `server` (argv, maybe behind taskset) with `mode` on port 0, loaded by
    `client` (argv) with args.echo_connections connections of 64-byte messages for
    args.echo_duration s; msg/s as the value, with both sides' CPU use."""
    argv = server + ["--port=0", "--drain-timeout=2"] + mode
    with EchoServer(argv, workdir, name) as srv:
        before = srv.cpu_s()
        cargv = client + [f"--port={srv.port}", f"--connections={args.echo_connections}",
                          "--size=64", f"--duration={args.echo_duration}"]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        status, out, err = run_cmd(cargv, timeout=args.echo_duration + 60)
        cpu = srv.cpu_s() - before
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client, reaped just now
        client_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        server_status = srv.stop()
    fields, lines = last_fields(out)
    if status != 0 or "messages_per_s" not in fields:
        raise RuntimeError(f"echo_client status {status}: {(err or out)[-300:]}")
    if server_status != 0:
        raise RuntimeError(f"echo_server exited with status {server_status} on SIGINT")
    return dict(fields, value=fields["messages_per_s"], unit="msg/s", line=lines[-1],
                server_cpu_s=cpu, server_cpu_util=cpu / args.echo_duration,
                client_cpu_s=client_cpu, client_cpu_util=client_cpu / args.echo_duration)


def suite_echo(args, rows, result, workdir):
    server = os.path.join(args.build, "examples", "echo_server")
    client = os.path.join(args.build, "examples", "echo_client")
    cpus = sorted(os.sched_getaffinity(0))
    first, last = str(cpus[0]), str(cpus[-1])
    both = ",".join(str(c) for c in cpus)
    # name -> (server argv prefix (taskset), server mode args, client taskset)
    configs = {
        "cooperative": ([], ["--mode=cooperative"], []),
        "multi-thread w=1": ([], ["--mode=multi-thread", "--workers=1"], []),
        "multi-thread w=2": ([], ["--mode=multi-thread", "--workers=2"], []),
        f"multi-thread w=2, server CPUs {both}, client CPU {last}":
            (["taskset", "-c", both], ["--mode=multi-thread", "--workers=2"],
             ["taskset", "-c", last]),
        f"multi-thread w=1, server CPU {first}, client CPU {last}":
            (["taskset", "-c", first], ["--mode=multi-thread", "--workers=1"],
             ["taskset", "-c", last]),
    }
    suite = Suite("echo", list(configs))
    counter = [0]

    def one(config):
        pin, mode, client_pin = configs[config]
        counter[0] += 1
        return echo_sample(args, workdir, f"echo{counter[0]}", pin + [server], mode,
                           client_pin + [client])

    suite.run(args.reps, one)
    result["echo"] = {"connections": args.echo_connections, "size": 64,
                      "duration_s": args.echo_duration, "cpus": cpus,
                      "samples": suite.samples, "errors": suite.errors,
                      "medians_msg_per_s": {c: suite.med(c) for c in suite.configs}}

    def util(config):
        u, c = suite.med(config, "server_cpu_util"), suite.med(config, "client_cpu_util")
        return (f"CPU: server {u * 100:.0f}%, client {c * 100:.0f}%" if u is not None and
                c is not None else "")

    mt1, mt2 = "multi-thread w=1", "multi-thread w=2"
    r, rs = suite.ratio(mt2, mt1)
    rows.append(row("echo", "msg/s multi-thread w=2 / w=1", suite.med(mt2), "msg/s", mt1,
                    suite.med(mt1), r, rs, (">=", 1.7),
                    f"w=2 {util(mt2)}; w=1 {util(mt1)}; the client shares the {len(cpus)} CPUs"))
    r, rs = suite.ratio(mt1, "cooperative")
    rows.append(row("echo", "msg/s multi-thread w=1 / cooperative", suite.med(mt1), "msg/s",
                    "cooperative", suite.med("cooperative"), r, rs, None, util("cooperative")))
    pinned2, pinned1 = list(configs)[3], list(configs)[4]
    for config in (pinned2, pinned1):
        r, rs = suite.ratio(config, mt1)
        rows.append(row("echo", f"msg/s {config} / w=1", suite.med(config), "msg/s", mt1,
                        suite.med(mt1), r, rs, None, util(config)))


def suite_sweep(args, rows, result, workdir):
    """countdown, spawn+join and echo on multi-thread at each worker count of args.workers.
    Every repetition runs every (workload, W) once, rotated, with a sequential countdown in it:
    the ratios pair samples of the same repetition (stats.paired_speedup: geometric mean and a
    95% interval)."""
    countdown = os.path.join(args.build, "examples", "countdown")
    micro = os.path.join(args.build, "bench", "threads_micro")
    server = os.path.join(args.build, "examples", "echo_server")
    client = os.path.join(args.build, "examples", "echo_client")
    ws = args.workers
    configs = ["countdown sequential"] + [f"{k} w={w}" for w in ws
                                          for k in ("countdown", "spawn", "echo")]
    suite = Suite("sweep", configs)

    def one(config):
        kind, _, w = config.partition(" ")
        if config == "countdown sequential":
            return countdown_sample(countdown, args.count, ["--mode=sequential"])
        w = int(w[2:])
        if kind == "countdown":
            return countdown_sample(countdown, args.count, ["--mode=multi-thread",
                                                            f"--workers={w}"])
        if kind == "spawn":
            argv = [micro, f"--workers={w}", f"--tasks={args.tasks}", "--only=spawn_join"]
            status, out, err = run_cmd(argv, timeout=600)
            if status != 0:
                raise RuntimeError(f"{' '.join(argv)}: status {status}: {(err or out)[-300:]}")
            r = json.loads(out.strip().splitlines()[-1])["results"][0]
            return dict(r, value=r["ns_per_task"], unit="ns/task")
        return echo_sample(args, workdir, f"sweep-echo-w{w}", [server],
                           ["--mode=multi-thread", f"--workers={w}"], [client])

    suite.run(args.reps, one)
    table = []
    for w in ws:
        entry = {"workers": w}
        for kind, base, faster_is in (("countdown", "countdown sequential", "lower"),
                                      ("spawn", f"spawn w={ws[0]}", "lower"),
                                      ("echo", f"echo w={ws[0]}", "higher")):
            config = f"{kind} w={w}"
            a, b = suite.values(base), suite.values(config)
            # speed-up over the baseline: time base / time config, or rate config / rate base
            sp = (stats.paired_speedup(a, b) if faster_is == "lower"
                  else stats.paired_speedup(b, a))
            entry[kind] = {"median": suite.med(config), "unit": "s" if kind == "countdown" else
                           ("ns/task" if kind == "spawn" else "msg/s"),
                           "speedup": sp["speedup"], "ci95": sp["ci95"], "n": sp["n"],
                           "baseline": base}
        table.append(entry)
    result["sweep"] = {"workers": ws, "count": args.count, "tasks": args.tasks,
                       "echo_connections": args.echo_connections,
                       "echo_duration_s": args.echo_duration, "nproc": os.cpu_count(),
                       "samples": suite.samples, "errors": suite.errors, "table": table,
                       "method": "speed-up: geometric mean of per-repetition ratios, 95% "
                                 "interval (bench/stats.py paired_speedup)"}
    for entry in table:
        for kind in ("countdown", "spawn", "echo"):
            e = entry[kind]
            rows.append({"suite": "sweep", "figure": f"{kind} w={entry['workers']} speed-up",
                         "value": e["median"], "unit": e["unit"], "baseline": e["baseline"],
                         "baseline_value": suite.med(e["baseline"]), "ratio": e["speedup"],
                         "ratios": [], "ci95": e["ci95"], "ratio_meaning": "speed-up",
                         "detail": "", "failed": e["speedup"] is None})
    result["sweep"]["chart"] = sweep_chart(result["sweep"], args.out)


def ci_text(e):
    if e["speedup"] is None:
        return "-"
    ci = e["ci95"]
    return f"{e['speedup']:.2f}x" + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "")


def print_sweep(sweep):
    """The sweep's own table: per worker count, each workload's median and speed-up."""
    print(f"\nworkers sweep (multi-thread; {sweep['nproc']} CPUs here: beyond that the workers "
          "share them); speed-up [95% interval]: countdown over sequential, spawn+join and echo "
          f"over w={sweep['workers'][0]}")
    head = ["workers", "countdown s", "speed-up", "spawn ns/task", "speed-up", "echo msg/s",
            "speed-up"]
    lines = [head]
    for e in sweep["table"]:
        lines.append([str(e["workers"]), fmt(e["countdown"]["median"], 3),
                      ci_text(e["countdown"]), fmt(e["spawn"]["median"], 1),
                      ci_text(e["spawn"]), fmt(e["echo"]["median"], 0), ci_text(e["echo"])])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    for r in lines:
        print("  ".join(c.rjust(widths[i]) for i, c in enumerate(r)))
    print(f"chart: {sweep['chart']}" if sweep.get("chart") else
          "chart: skipped (matplotlib is not installed: apt-get install python3-matplotlib)")


def sweep_chart(sweep, out):
    """A PNG beside the JSON file: speed-up against workers, one line per workload, with the
    95% intervals as error bars; None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ws = sweep["workers"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = {"countdown": "countdown (over sequential)", "spawn": f"spawn+join (over w={ws[0]})",
              "echo": f"echo msg/s (over w={ws[0]})"}
    for kind, marker in (("countdown", "o"), ("spawn", "s"), ("echo", "^")):
        xs, ys, lo, hi = [], [], [], []
        for e in sweep["table"]:
            v = e[kind]
            if v["speedup"] is None:
                continue
            ci = v["ci95"] or [v["speedup"], v["speedup"]]
            xs.append(e["workers"])
            ys.append(v["speedup"])
            lo.append(v["speedup"] - ci[0])
            hi.append(ci[1] - v["speedup"])
        ax.errorbar(xs, ys, yerr=[lo, hi], marker=marker, capsize=4, label=labels[kind])
    ideal = [min(w, sweep["nproc"]) for w in ws]
    ax.plot(ws, ideal, "k:", label=f"ideal on {sweep['nproc']} CPUs")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ws)
    ax.set_xticklabels([str(w) for w in ws])
    ax.set_xlabel("workers")
    ax.set_ylabel("speed-up (95% interval)")
    ax.set_title("weft multi-thread: scaling with workers")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.splitext(out)[0] + "-sweep.png"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# report


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def row(suite, figure, value, unit, baseline, baseline_value, ratio, ratios, goal, detail="",
        speedup=False):
    r = {"suite": suite, "figure": figure, "value": value, "unit": unit, "baseline": baseline,
         "baseline_value": baseline_value, "ratio": ratio, "ratios": ratios, "detail": detail}
    if speedup:
        r["ratio_meaning"] = "baseline / value (speedup)"
    if goal is not None:
        op, bound = goal
        r["goal"] = f"within {bound:.0%}" if op == "within" else f"{op} {bound:.2f}x"
        if ratio is None:
            r["verdict"] = "FAILED"
        elif op == "within":
            r["verdict"] = "PASS" if abs(ratio - 1) <= bound else "MISS"
        elif op == ">=":
            r["verdict"] = "PASS" if ratio >= bound else "MISS"
        elif op == ">":
            r["verdict"] = "PASS" if ratio > bound else "MISS"
        else:
            r["verdict"] = "PASS" if ratio <= bound else "MISS"
    if ratio is None:
        r["failed"] = True
    return r


def print_table(rows, result, quick):
    head = ["suite", "figure", "value", "baseline", "ratio", "goal", ""]
    table = []
    for r in rows:
        digits = 3 if r.get("unit") == "s" else (1 if r.get("unit") == "ns" else 0)
        if "skipped" in r:
            table.append([r["suite"], r["figure"], fmt(r.get("value"), digits), r["skipped"],
                          "", "", ""])
            continue
        table.append([r["suite"], r["figure"], f"{fmt(r['value'], digits)} {r['unit']}",
                      f"{fmt(r['baseline_value'], digits)} {r['unit']}",
                      "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", r.get("goal", ""),
                      r.get("verdict", "")])
    load = result["load_before"], result["load_after"]
    print_figures(f"threads benchmark ({result['reps']} reps, medians; ratio = median of "
                  f"per-rep ratios; countdown: sequential / mode; load average before {load[0]}, "
                  f"after {load[1]})", head, table, rows, result, SUITES, quick)


def print_figures(title, head, table, rows, result, suites, quick):
    """The figures table of bench/threads.py and bench/processes.py: the title, the columns
    padded (value, baseline and ratio right-aligned), each row's detail, each suite's errors."""
    widths = [max(len(head[i]), *(len(t[i]) for t in table)) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.rjust(widths[i]) if 2 <= i <= 4 else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()
    print(title)
    print(line(head))
    print("-" * len(line(head)))
    for t in table:
        print(line(t))
    for r in rows:
        if r.get("detail"):
            print(f"  {r['suite']} {r['figure']}: {r['detail']}")
    for name in suites:
        for e in result.get(name, {}).get("errors", []):
            print(f"error: {name} {e}")
    if result.get("sweep", {}).get("table"):
        print_sweep(result["sweep"])
    if quick:
        print("note: --quick runs one tiny repetition: a smoke test of the plumbing, not a "
              "measurement (PASS/MISS there mean nothing)")


def first_line(argv, timeout=30):
    """The first line a program prints, or None (not installed, no output, too slow)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def machine(args):
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), None)
    except OSError:
        pass
    return {"cpu": cpu, "nproc": os.cpu_count(), "cpus": sorted(os.sched_getaffinity(0)),
            "kernel": platform.release(), "compiler": first_line(["c++", "--version"]),
            "go": first_line(["go", "version"]) if shutil.which("go") else None}


def worker_list(text):
    """"1,2,4" -> [1, 2, 4]: distinct counts from 1 to 1024, in increasing order."""
    try:
        ws = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        ws = []
    if not ws or ws[0] < 1 or ws[-1] > 1024:
        raise argparse.ArgumentTypeError(f"wants worker counts from 1 to 1024 like 1,2,4, "
                                         f"not '{text}'")
    return ws


def driver_args(description, epilog, suites, out):
    """The options bench/threads.py and bench/processes.py share: --build, --reps, --quick,
    --only, --out."""
    ap = argparse.ArgumentParser(description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="meson build directory (default: build)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; --quick 1)")
    ap.add_argument("--quick", action="store_true",
                    help="one repetition with tiny sizes (a smoke test, not a measurement)")
    ap.add_argument("--only", action="append", choices=suites, help="run only this suite")
    ap.add_argument("--out", default=out, help="JSON output file")
    return ap


def apply_defaults(ap, args, defaults, positive=True):
    """Sets each option left out to its (full, quick) default; with `positive`, refuses one
    that is not above zero (exit status 2, through the parser)."""
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if args.quick else full)
        if positive and getattr(args, k) <= 0:
            ap.error(f"--{k.replace('_', '-')} wants a positive number")


def parse_args(argv):
    ap = driver_args("weft's threads benchmark: single-lock and multi-thread executors",
                     __doc__.split("\n\n", 2)[2], SUITES, "bench-results/threads.json")
    ap.add_argument("--count", type=int, help="countdown count (default 2e9; --quick 2e7)")
    ap.add_argument("--io-tasks", type=int, help="io: tasks/threads (default 10000; quick 500)")
    ap.add_argument("--io-rounds", type=int, help="io: sleeps per task (default 5; quick 2)")
    ap.add_argument("--io-sleep-ms", type=int, help="io: ms per sleep (default 100; quick 20)")
    ap.add_argument("--tasks", type=int, help="micro spawn+join tasks (default 1e6; quick 2e4)")
    ap.add_argument("--round-trips", type=int,
                    help="micro ping-pong round trips (default 2e5; quick 2e4)")
    ap.add_argument("--echo-connections", type=int, help="echo connections (default 100)")
    ap.add_argument("--echo-duration", type=float, help="echo seconds per run (default 3; "
                    "quick 0.5)")
    ap.add_argument("--workers", type=worker_list, default=None,
                    help="the sweep's worker counts, comma-separated (default 1,2,4,8,16; "
                    "quick 1,2); giving it runs the sweep (alone unless --only says more)")
    args = ap.parse_args(argv)
    if args.only is None:  # the sweep runs when asked for; the default run stays as it was
        args.only = ["sweep"] if args.workers else [n for n in SUITES if n != "sweep"]
    if args.workers is None:
        args.workers = [1, 2] if args.quick else [1, 2, 4, 8, 16]
    defaults = {"reps": (5, 1), "count": (2_000_000_000, 20_000_000), "io_tasks": (10_000, 500),
                "io_rounds": (5, 2), "io_sleep_ms": (100, 20), "tasks": (1_000_000, 20_000),
                "round_trips": (200_000, 20_000), "echo_connections": (100, 20),
                "echo_duration": (3.0, 0.5)}
    apply_defaults(ap, args, defaults)
    return args


def run_suites(suites, only, rows, result):
    """Runs each suite (name -> callable) unless --only leaves it out. A suite that fails is
    recorded as failed, in its rows and its errors, and the others still run."""
    for name, run in suites.items():
        if only and name not in only:
            continue
        log(f"== {name}")
        try:
            run()
        except Exception as e:  # keep going: the other suites still run
            result.setdefault(name, {}).setdefault("errors", []).append(
                f"{type(e).__name__}: {e}")
            rows.append({"suite": name, "figure": "-", "failed": True, "skipped": f"FAILED: {e}"})


def write_results(rows, result, args, print_table, suites):
    """Finishes `result` (load after, end time, rows), prints the table, writes the JSON file
    to args.out. Gives the exit status: 1 when a run failed, 0 otherwise."""
    result["load_after"] = loadavg()
    result["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["results"] = rows
    print_table(rows, result, args.quick)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"raw samples: {args.out}")
    failed = any(r.get("failed") for r in rows) or any(
        result.get(n, {}).get("errors") for n in suites)
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    result = {"date": started.isoformat(timespec="seconds"),
              "command": [sys.executable] + (sys.argv if argv is None else ["threads.py"] + argv),
              "machine": machine(args), "reps": args.reps, "quick": args.quick,
              "settings": vars(args), "load_before": loadavg()}
    log(f"threads benchmark: {args.reps} rep(s), load average {result['load_before']}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="weft-threads-") as workdir:
        run_suites({"countdown": lambda: suite_countdown(args, rows, result),
                    "io": lambda: suite_io(args, rows, result),
                    "micro": lambda: suite_micro(args, rows, result, workdir),
                    "echo": lambda: suite_echo(args, rows, result, workdir),
                    "sweep": lambda: suite_sweep(args, rows, result, workdir)},
                   args.only, rows, result)
    return write_results(rows, result, args, print_table, SUITES)


if __name__ == "__main__":
    sys.exit(main())
