"""The contrast benchmark's timeline (<stem>-timeline.svg): which executor thread runs a task,
and on single-lock which one holds the lock, over a short window, one panel per way, in the
spirit of David Beazley's pictures of the GIL. Drawn from the Chrome-format traces that weft
writes under WEFT_TRACE (the trace contract: "X" spans named `run` and `lock`, and `park`,
with `tid` the executor thread's index and thread names in "M" events; other events are
ignored).

    python3 bench/timeline.py OUT.svg LABEL=TRACE.json [LABEL=TRACE.json ...]

Plain SVG written by hand (no matplotlib): rectangles and text, small enough to inline.
"""
import html
import json
import sys

WINDOW_US = 20_000.0  # the window each panel shows: four switch intervals of the new GIL
WIDTH, LEFT, RIGHT = 1000, 215, 20
LANE, GAP = 14, 4
COLORS = {"run": "#4C72B0", "task": "#B9CBE4", "lock": "#DD8452", "park": "#C8C8C8"}


def load(path):
    """Reads a trace file: (spans by name {name: [(tid, ts, dur, args)]}, thread names
    {tid: name}, otherData). Raises ValueError on a file that is not a trace."""
    with open(path) as f:
        data = json.load(f)
    events = data.get("traceEvents") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise ValueError(f"{path}: no traceEvents list")
    spans, names = {"run": [], "lock": [], "park": []}, {}
    for e in events:
        if not isinstance(e, dict):
            continue
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[e.get("tid")] = str((e.get("args") or {}).get("name", e.get("tid")))
        elif e.get("ph") == "X" and e.get("name") in spans:
            try:
                ts, dur = float(e["ts"]), float(e.get("dur", 0))
            except (KeyError, TypeError, ValueError):
                continue
            spans[e["name"]].append((e.get("tid"), ts, dur, e.get("args") or {}))
    other = data.get("otherData", {}) if isinstance(data, dict) else {}
    return spans, names, other


def window(spans):
    """[start, end) in µs: WINDOW_US in the middle of the runs (steady state, away from start-up
    and shutdown), or the whole trace when it is shorter."""
    runs = spans["run"] or spans["lock"]
    if not runs:
        return None
    t0 = min(ts for _, ts, _, _ in runs)
    t1 = max(ts + d for _, ts, d, _ in runs)
    if t1 - t0 <= WINDOW_US:
        return t0, max(t1, t0 + 1)
    mid = (t0 + t1) / 2
    return mid - WINDOW_US / 2, mid + WINDOW_US / 2


def intervals(spans, tid):
    """A thread's spans as sorted, merged [start, end] intervals (µs)."""
    out = []
    for a, b in sorted((ts, ts + d) for t, ts, d, _ in spans if t == tid):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def intersect(xs, ys):
    """The intersection of two sorted, merged interval lists."""
    out, i, j = [], 0, 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append([a, b])
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def running(spans, tid):
    """When a thread really runs a task: its run spans, and where the way has a lock, only
    while it holds the lock (a single-lock run span lasts from a task's resumption until it
    suspends, so it includes the waits for the lock at weft::check())."""
    runs = intervals(spans["run"], tid)
    return intersect(runs, intervals(spans["lock"], tid)) if spans["lock"] else runs


def summary(spans, names):
    """Figures over the whole trace: per thread, the share of the traced time it really ran a
    task (running()); the parallelism that makes (their sum); the lock's hand-overs (lock
    spans that begin on another thread than the previous one)."""
    runs = spans["run"]
    out = {"run_spans": len(runs), "lock_spans": len(spans["lock"]), "busy": {},
           "handovers": 0}
    if runs:
        t0 = min(ts for _, ts, _, _ in runs)
        t1 = max(ts + d for _, ts, d, _ in runs)
        total = 0.0
        for tid in sorted({t for t, _, _, _ in runs}, key=str):
            ran = sum(b - a for a, b in running(spans, tid))
            total += ran
            out["busy"][str(names.get(tid, tid))] = round(ran / max(t1 - t0, 1e-9), 4)
        out["traced_ms"] = round((t1 - t0) / 1e3, 3)
        out["parallelism"] = round(total / max(t1 - t0, 1e-9), 3)
    last = None
    for tid, _, _, _ in sorted(spans["lock"], key=lambda s: s[1]):
        if last is not None and tid != last:
            out["handovers"] += 1
        last = tid
    return out


def _merge(xs, min_gap):
    """Adjacent [x0, x1] intervals closer than min_gap (px) merged: a span narrower than a
    pixel still shows, and 10,000 of them do not make a 10 MB file."""
    out = []
    for a, b in sorted(xs):
        if out and a - out[-1][1] < min_gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def panel(label, spans, names, other, y):
    """SVG elements of one panel starting at y; returns (elements, the y below it, figures)."""
    w = window(spans)
    fig = summary(spans, names)
    fig["label"] = label
    fig["mode"] = other.get("mode")
    fig["dropped_events"] = other.get("dropped_events", 0)
    els = []
    title = f"{label}"
    if w is None:
        els.append(f'<text x="10" y="{y + 14}" font-size="13" font-weight="bold">'
                   f'{html.escape(title)}: no run spans in the trace</text>')
        return els, y + 30, fig
    fig["window_ms"] = [round(w[0] / 1e3, 3), round(w[1] / 1e3, 3)]
    facts = [f"{fig['traced_ms']:.0f} ms traced" if "traced_ms" in fig else None,
             f"parallelism {fig['parallelism']:.2f}" if "parallelism" in fig else None,
             f"{fig['handovers']:,} lock hand-overs" if spans["lock"] else None,
             f"{fig['dropped_events']:,} events dropped" if fig["dropped_events"] else None]
    els.append(f'<text x="10" y="{y + 14}" font-size="13" font-weight="bold">'
               f'{html.escape(title)}</text>'
               f'<text x="{WIDTH - RIGHT}" y="{y + 14}" font-size="11" text-anchor="end" '
               f'fill="#444">{html.escape("; ".join(f for f in facts if f))}</text>')
    y += 22
    tids = sorted({t for k in spans for t, _, _, _ in spans[k]}, key=lambda t: (str(type(t)), t))
    scale = (WIDTH - LEFT - RIGHT) / (w[1] - w[0])
    lanes = [("run", "runs a task")] + ([("lock", "holds the lock")] if spans["lock"] else [])
    for tid in tids:
        name = names.get(tid, f"thread {tid}")
        # What each lane draws, in order (later on top): a single-lock run lane shows the task's
        # run spans lightly and, on top, when the thread really runs (it holds the lock).
        layers = {"run": ([("task", intervals(spans["run"], tid))] if spans["lock"] else []) +
                  [("park", intervals(spans["park"], tid)), ("run", running(spans, tid))],
                  "lock": [("lock", intervals(spans["lock"], tid))]}
        for kind, what in lanes:
            els.append(f'<text x="{LEFT - 6}" y="{y + LANE - 3}" font-size="11" '
                       f'text-anchor="end">{html.escape(f"{name}: {what}")}</text>')
            els.append(f'<rect x="{LEFT}" y="{y}" width="{WIDTH - LEFT - RIGHT}" '
                       f'height="{LANE}" fill="#F4F4F4"/>')
            for k, ivs in layers[kind]:
                xs = [((max(a, w[0]) - w[0]) * scale, (min(b, w[1]) - w[0]) * scale)
                      for a, b in ivs if a < w[1] and b > w[0]]
                for a, b in _merge(xs, 0.5):
                    h = LANE if k != "park" else LANE / 3
                    els.append(f'<rect x="{LEFT + a:.2f}" y="{y + (LANE - h) / 2:.1f}" '
                               f'width="{max(b - a, 0.5):.2f}" height="{h:.1f}" '
                               f'fill="{COLORS[k]}"/>')
            y += LANE + 2
        y += GAP
    # the time axis: ms from the window's start
    span_ms = (w[1] - w[0]) / 1e3
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
                if span_ms / s <= 10)
    k = 0
    while k * step <= span_ms + 1e-9:
        x = LEFT + k * step * 1e3 * scale
        els.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#666"/>'
                   f'<text x="{x:.1f}" y="{y + 15}" font-size="10" text-anchor="middle">'
                   f'{k * step:g}</text>')
        k += 1
    els.append(f'<text x="{LEFT - 6}" y="{y + 15}" font-size="10" text-anchor="end">ms</text>')
    return els, y + 34, fig


def render(traces, path):
    """Draws one panel per (label, trace path) into an SVG at path; returns the figures per
    panel (for the JSON). Raises ValueError when no trace could be read."""
    panels, y, figures, errors = [], 36, [], []
    for label, trace in traces:
        try:
            spans, names, other = load(trace)
        except (OSError, ValueError) as e:
            errors.append(f"{label}: {e}")
            continue
        els, y, fig = panel(label, spans, names, other, y)
        panels += els
        figures.append(fig)
    if not figures:
        raise ValueError("no readable trace: " + "; ".join(errors))
    legend = "".join(
        f'<rect x="{10 + i * 245}" y="{y}" width="14" height="{LANE}" fill="{c}"/>'
        f'<text x="{10 + i * 245 + 20}" y="{y + 11}" font-size="11">{t}</text>'
        for i, (c, t) in enumerate(((COLORS["run"], "runs a task"),
                                    (COLORS["task"], "in a task, waiting for the lock"),
                                    (COLORS["lock"], "holds the global lock"),
                                    (COLORS["park"], "parked (sleeps in its ring)"))))
    height = y + LANE + 12
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
           f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="sans-serif">'
           f'<rect width="100%" height="100%" fill="white"/>'
           f'<text x="10" y="20" font-size="15" font-weight="bold">Who runs, who holds the '
           f'lock: countdown at N=2, a {WINDOW_US / 1e3:g} ms window from the middle of each '
           f'run</text>' + "".join(panels) + legend + "</svg>\n")
    with open(path, "w") as f:
        f.write(svg)
    return {"panels": figures, "errors": errors}


def main(argv):
    if len(argv) < 2 or any("=" not in a for a in argv[1:]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        out = render([tuple(a.split("=", 1)) for a in argv[1:]], argv[0])
    except ValueError as e:
        print(f"timeline.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
