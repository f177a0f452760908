#!/usr/bin/env python3
"""Collects one `./run bench` into a table on the terminal and one JSON file.

    report.py --out bench-results/report.json --micro micro.json
              [--go go.json] [--python python.json] [--demos demos.json]
              [--tokio-current-thread tokio.json] [--tokio-multi-thread tokio.json]

Inputs: Google Benchmark JSON from bench/micro, the reference programs' JSON
(bench/reference), and the demo timings gathered by ./run. A missing reference
is shown as skipped with its reason, never filled in.
"""
import argparse
import json
import statistics
import sys

TARGETS = {  # issue #2's targets for the cooperative executor
    "spawn_join": ("ns_per_task", "<=", 50.0),
    "spawn_join_each": ("ns_per_task", "<=", 50.0),
    "switch": ("ns_per_switch", "<=", 15.0),
    "sleepers": ("bytes_per_sleeper", "<=", 256.0),
    "sleepers_wake": ("late_max_s", "<=", 1.5),
}

# issue 21's targets: weft's figure over the floor's (bare coroutines and a FIFO ring of
# handles, no runtime: bench/micro's floor_* benchmarks, measured in the same run).
FLOOR_TARGETS = [
    # label, weft benchmark, floor benchmark, counter, limit of the ratio
    ("spawn+join (1M alive at once)", "spawn_join", "floor_spawn_join", "ns_per_task", 1.5),
    ("spawn+join (one at a time)", "spawn_join_each", "floor_spawn_join_each", "ns_per_task",
     1.5),
    ("yield switch", "switch", "floor_switch", "ns_per_switch", 2.0),
]


def floor_ratios(weft):
    """weft / floor for each FLOOR_TARGETS row whose two benchmarks ran."""
    out = {}
    for label, bench, floor, counter, limit in FLOOR_TARGETS:
        w = weft.get(bench, {}).get(counter)
        f = weft.get(floor, {}).get(counter)
        if w is None or not f:
            continue
        out[bench] = {"label": label, "weft": w, "floor": f, "ratio": w / f, "limit": limit,
                      "met": w / f <= limit}
    return out


def print_floor(ratios, weft):
    print()
    print("weft against the floor (bare coroutines, a FIFO ring; medians; same run)")
    if not ratios:
        print("  floor benchmarks not run")
    for r in ratios.values():
        print(f"  {r['label']:32s} weft {r['weft']:8.1f} ns  floor {r['floor']:8.1f} ns  "
              f"{r['ratio']:5.2f}x  target <= {r['limit']:g}x "
              f"{'ok' if r['met'] else 'MISSED'}")
    trip = weft.get("channel_round_trip", {}).get("ns_per_round_trip")
    if trip is not None:
        print(f"  {'channel round trip':32s} weft {trip:8.1f} ns  (two sends, two receives)")


def load(path):
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        return {"error": str(e)}


def weft_micro(data):
    """Median of the repetitions of each weft benchmark, per counter."""
    runs = {}
    for b in data.get("benchmarks", []):
        if b.get("run_type") != "iteration":
            continue
        name = b["name"].split("/")[0]
        runs.setdefault(name, []).append(b)
    bookkeeping = {"family_index", "per_family_instance_index", "repetition_index",
                   "repetitions", "threads", "iterations"}
    out = {}
    for name, items in runs.items():
        counters = {k for b in items for k, v in b.items()
                    if isinstance(v, (int, float)) and k not in bookkeeping}
        out[name] = {k: statistics.median(b[k] for b in items if k in b) for k in counters}
        out[name]["repetitions"] = len(items)
    return out


def reference(data):
    if data is None:
        return None
    if "error" in data or "skipped" in data:
        return data
    return {r["name"]: r for r in data.get("results", [])} | {"runtime": data.get("runtime")}


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--micro", required=True)
    ap.add_argument("--go")
    ap.add_argument("--python")
    ap.add_argument("--tokio-current-thread")
    ap.add_argument("--tokio-multi-thread")
    ap.add_argument("--demos")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    micro = load(args.micro)
    if micro is None or "error" in micro:
        sys.exit(f"report: cannot read {args.micro}: {micro and micro.get('error')}")
    weft = weft_micro(micro)
    refs = {"go": reference(load(args.go)),
            "tokio current_thread": reference(load(args.tokio_current_thread)),
            "tokio multi_thread (1 worker)": reference(load(args.tokio_multi_thread)),
            "python asyncio": reference(load(args.python))}
    demos = load(args.demos) or {}

    rows = [
        ("spawn+join, ns per task (1M alive at once)", "spawn_join", "ns_per_task", 1),
        ("spawn+join, ns per task (one at a time)", "spawn_join_each", "ns_per_task", 1),
        ("yield switch, ns per switch", "switch", "ns_per_switch", 1),
        ("channel round trip, ns", "channel_round_trip", "ns_per_round_trip", 1),
        ("sleeping task, bytes", "sleepers", "bytes_per_sleeper", 0),
        ("1M sleepers: last wake after deadline, s", "sleepers", "late_max_s", 3),
    ]
    header = ["workload", "weft", "target"] + list(refs)
    table = []
    for label, bench, key, digits in rows:
        w = weft.get(bench, {}).get(key)
        target_key = "sleepers_wake" if key == "late_max_s" else bench
        if target_key in TARGETS:
            _, op, limit = TARGETS[target_key]
            met = w is not None and w <= limit
            target = f"{op} {limit:g} {'ok' if met else 'MISSED'}"
        else:
            target = "-"
        line = [label, fmt(w, digits), target]
        for ref in refs.values():
            if ref is None or "error" in ref or "skipped" in ref:
                line.append("skipped")
            else:
                line.append(fmt(ref.get(bench, {}).get(key), digits))
        table.append(line)

    widths = [max(len(str(r[i])) for r in [header] + table) for i in range(len(header))]
    print()
    print("micro-benchmarks (cooperative executor; medians; same run)")
    for r in [header] + table:
        print("  " + "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
    for name, ref in refs.items():
        if ref is None:
            print(f"  note: {name} reference not run")
        elif "skipped" in ref:
            print(f"  note: {name} skipped: {ref['skipped']}")
        elif "error" in ref:
            print(f"  note: {name} failed: {ref['error']}")

    ratios = floor_ratios(weft)
    print_floor(ratios, weft)

    if demos:
        print()
        print("seed demos (wall seconds)")
        for name, value in demos.items():
            print(f"  {name:45s} {value:8.3f}")
        seq = demos.get("countdown sequential")
        for name, value in demos.items():
            if name.startswith("countdown cooperative") and seq:
                print(f"  {name:45s} {seq / value:8.2f}x of sequential speed")

    report = {"weft": weft, "references": refs, "demos": demos, "floor": ratios,
              "targets": {k: {"counter": c, "op": o, "limit": l} for k, (c, o, l) in TARGETS.items()},
              "context": micro.get("context", {})}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
