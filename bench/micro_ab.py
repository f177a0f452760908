#!/usr/bin/env python3
"""Compares builds of bench/micro in one run: the binaries take turns, round after round.

    micro_ab.py [--rounds 6] [--filter REGEX] [--json out.json] NAME=BINARY NAME=BINARY ...

The first binary is the baseline. Each round runs every binary once (in a fresh random order,
so a slow spell of a shared machine does not always hit the same one); a run gives each
benchmark's repetitions (micro registers 5), whose median is that round's figure. The ratio
of a binary to the baseline is taken per round, and its 95% interval is a t interval on the
log ratios over the rounds (two builds' noise is shared within a round, so pairing by round
narrows the interval). Figures are per item, from CPU time (ns) on a machine that other jobs
share, and from the counters for bytes.

Used for docs/decisions/tracing-cost.md: pre-tracing main against the tracing build.
"""
import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Student's t, two-sided 95%, for 1..30 degrees of freedom (no scipy needed).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

# benchmark -> (items counter, what the figure is)
PER_ITEM = {
    "spawn_join": "tasks",
    "spawn_join_each": "tasks",
    "switch": "switches",
    "switch_run": "switches",
    "floor_spawn_join": "tasks",
    "floor_spawn_join_each": "tasks",
    "floor_switch": "switches",
    "channel_round_trip": "round_trips",
}
COUNTERS = {"sleepers": "bytes_per_sleeper"}


def run_once(binary, flt, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "micro.json"
        subprocess.run([binary, f"--benchmark_filter={flt}", f"--benchmark_out={out}",
                        "--benchmark_out_format=json", *args],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        data = json.loads(out.read_text())
    reps = {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["name"].split("/")[0]
        if name in PER_ITEM:
            # cpu_time is in the benchmark's unit (ms); one iteration per repetition
            ms = b["cpu_time"] * {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
            reps.setdefault(name, []).append(ms * 1e6 / b[PER_ITEM[name]])
        elif name in COUNTERS:
            reps.setdefault(name, []).append(b[COUNTERS[name]])
    return {k: statistics.median(v) for k, v in reps.items()}


def interval(ratios):
    # A round whose figure is not positive (micro writes -1 for a sleepers run that could not
    # measure) has no ratio.
    logs = [math.log(r) for r in ratios if r > 0]
    if not logs:
        return math.nan, math.nan, math.nan
    m = statistics.mean(logs)
    if len(logs) < 2:
        return math.exp(m), math.nan, math.nan
    df = len(logs) - 1
    t = T975[df - 1] if df <= len(T975) else 1.96
    half = t * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--filter", default="^(spawn_join|spawn_join_each|switch|sleepers)/")
    ap.add_argument("--json")
    ap.add_argument("builds", nargs="+", help="NAME=BINARY; the first is the baseline")
    args, extra = ap.parse_known_args()
    builds = [b.split("=", 1) for b in args.builds]
    if any(len(b) != 2 for b in builds) or len(builds) < 2:
        sys.exit("micro_ab: give at least two NAME=BINARY")
    rounds = []
    for r in range(args.rounds):
        order = list(builds)
        random.shuffle(order)
        rounds.append({name: run_once(binary, args.filter, extra) for name, binary in order})
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    if args.json:  # the raw rounds first: nothing measured is lost if a later step fails
        Path(args.json).write_text(json.dumps({"rounds": rounds}, indent=2))
    base = builds[0][0]
    benches = sorted({k for rnd in rounds for k in rnd[base]})
    result = {"rounds": rounds, "ratios": {}}
    print(f"{'benchmark':22s} " + " ".join(f"{n:>12s}" for n, _ in builds) +
          "   ratio to " + base + " [95% interval]")
    for bench in benches:
        medians = [statistics.median(rnd[n][bench] for rnd in rounds if bench in rnd[n])
                   if all(bench in rnd[n] for rnd in rounds) else math.nan for n, _ in builds]
        line = f"{bench:22s} " + " ".join(f"{m:12.1f}" for m in medians)
        for name, _ in builds[1:]:
            if not all(bench in rnd[name] for rnd in rounds):
                continue
            g, lo, hi = interval([rnd[name][bench] / rnd[base][bench] for rnd in rounds
                                  if rnd[base][bench] > 0])
            result["ratios"].setdefault(bench, {})[name] = {"ratio": g, "lo": lo, "hi": hi}
            line += f"   {name}: {g:.3f} [{lo:.3f}, {hi:.3f}]"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
