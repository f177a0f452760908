#!/usr/bin/env python3
"""Draws a weft trace (WEFT_TRACE=FILE, Chrome Trace Event JSON) as a timeline.

  python3 docs/plot_trace.py TRACE.json OUT.svg [--title TEXT] [--from MS] [--to MS]

One row per executor thread: `run` spans coloured by task (the legend names them), `park`
spans in light grey, and on single-lock a thin bar above each row while the thread holds the
lock. Instant events (steal, handover, ...) are ticks under the row. Offline, no web UI.
"""

import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.patches import Patch  # noqa: E402


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("out")
    parser.add_argument("--title", default=None)
    parser.add_argument("--from", dest="start", type=float, default=None, help="ms")
    parser.add_argument("--to", dest="end", type=float, default=None, help="ms")
    args = parser.parse_args()

    trace = load(args.trace)
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("ph") == "M"}
    tids = sorted(names)
    start = args.start * 1000 if args.start is not None else None
    end = args.end * 1000 if args.end is not None else None

    def visible(e):
        t0, t1 = e["ts"], e["ts"] + e.get("dur", 0)
        return (start is None or t1 >= start) and (end is None or t0 <= end)

    tasks = {}
    for e in events:
        if e.get("ph") == "X" and e["name"] == "run" and visible(e):
            task = e["args"]["task"]
            label = e["args"]["name"] or f"task {task}"
            tasks.setdefault(task, label)
    cmap = plt.get_cmap("tab10")
    colour = {task: cmap(i % 10) for i, task in enumerate(sorted(tasks))}

    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.7 * len(tids)))
    row = {tid: len(tids) - 1 - i for i, tid in enumerate(tids)}
    for e in events:
        if e.get("ph") != "X" or not visible(e):
            continue
        y = row[e["tid"]]
        x, w = e["ts"] / 1000, e["dur"] / 1000
        if e["name"] == "run":
            ax.broken_barh([(x, w)], (y - 0.3, 0.5), color=colour[e["args"]["task"]])
        elif e["name"] == "park":
            ax.broken_barh([(x, w)], (y - 0.3, 0.5), color="0.88")
        elif e["name"] == "lock":
            ax.broken_barh([(x, w)], (y + 0.25, 0.1), color="black")
    for e in events:
        if e.get("ph") == "i" and e["name"] in ("steal", "handover") and visible(e):
            y = row[e["tid"]]
            ax.plot([e["ts"] / 1000] * 2, [y - 0.42, y - 0.32], color="crimson", lw=0.8)

    ax.set_yticks([row[t] for t in tids], [names[t] for t in tids])
    ax.set_xlabel("time since the run began (ms)")
    if start is not None or end is not None:
        ax.set_xlim(left=args.start, right=args.end)
    other = trace.get("otherData", {})
    ax.set_title(args.title or f"weft trace: {other.get('mode', '?')}, "
                 f"{other.get('workers', '?')} thread(s)")
    handles = [Patch(color=colour[t], label=tasks[t]) for t in sorted(tasks)][:10]
    handles.append(Patch(color="0.88", label="park"))
    if any(e["name"] == "lock" for e in events if e.get("ph") == "X"):
        handles.append(Patch(color="black", label="holds the lock"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    fig.savefig(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
