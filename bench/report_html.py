"""The contrast benchmark's report page (<stem>.html): one self-contained file, no network (the
charts are inlined as data: URIs, the CSS and the check script inline), with every table,
chart, the timeline, the verdicts and the paragraphs, written for a reader who never read the
code. bench/contrast.py calls write() after the JSON is written.

A small script in the page sets data-images="ok N" on <body> once every <img> has loaded with a
non-zero size (data-images="broken ..." otherwise): tests/contrast_report_test.py renders the
page in headless Chromium and reads that marker from the DOM.
"""
import base64
import html
import os

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.45}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}
.faster{color:#1a7f37;font-weight:bold}.slower{color:#b42318;font-weight:bold}
.same{color:#555}.inconclusive,.inconsistent{color:#9a6700}
.noisy{background:#fff4e5;border-left:4px solid #e69500;padding:.5em 1em}
.note{color:#555;font-size:.9em}img{max-width:100%;border:1px solid #eee}
"""

CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.body.setAttribute('data-images',
    (bad.length ? 'broken ' + bad.map(function (i) { return i.alt; }).join(',') : 'ok') +
    ' ' + imgs.length);
});
"""

EXPLAIN = {
    "countdown": "The Python tutorial's CPU-bound loop <code>while n &gt; 0: n -= 1</code>, split into N "
                 "equal parts and run each way. Only ways that run on several CPUs at once "
                 "can finish sooner than one thread counting alone.",
    "sleep": "Many tasks that only wait (a timer each). Waiting needs no CPU and no thread: "
             "one cooperative thread can wait for all of them at once.",
    "echo": "An echo server and many clients in the same program over 127.0.0.1: a round "
            "trip waits only for the other end's CPU.",
    "mixed": "A CPU-bound countdown and an echo server on the same executor, probed from "
             "outside: how long does I/O wait behind CPU-bound work (the convoy effect)?",
    "cpython": "The same countdown in CPython with threads (serialised by the GIL) and with "
               "a multiprocessing Pool, beside the tutorial's quoted figures and weft's "
               "single-lock, which imitates the GIL.",
}


def esc(x):
    return html.escape(str(x))


def img(path, alt):
    """An <img> with the file inlined as a data: URI (no network, no file beside the page)."""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/svg+xml;base64,{data}">'


def table(head, rows, verdict_col=None):
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            cls = f' class="{esc(c)}"' if i == verdict_col and c in (
                "faster", "slower", "same", "inconclusive", "inconsistent") else ""
            cells.append(f"<td{cls}>{esc(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def verdict_rows(result):
    rows = []
    for v in result.get("verdicts", []):
        ci = v.get("ci95")
        rows.append([v["workload"], v["config"], v["baseline"],
                     "-" if v["speedup"] is None else f"{v['speedup']:#.3g}x",
                     f"{ci[0]:#.3g}{chr(8211)}{ci[1]:#.3g}" if ci else "-", v["verdict"],
                     str(v.get("pairs", "")) + ("" if v.get("paired", True) else " (unpaired)"),
                     "yes" if v.get("noisy") else ""])
    return rows


def write(result, path, table_rows):
    """Writes the page; returns its path. table_rows: contrast.py's, (workload, record) ->
    (head, rows)."""
    m = result["machine"]
    files = result.get("files", {})
    s = result["settings"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>weft contrast benchmark {esc(result['date'][:10])}</title>"
             f"<style>{CSS}</style><script>{CHECK}</script></head><body>",
             "<h1>What do threads, processes and coroutines each buy? "
             f"weft's contrast benchmark, {esc(result['date'])}</h1>",
             f"<p>Machine: {esc(m.get('host'))}, {esc(m.get('cpu'))}, "
             f"{len(m.get('cpus') or [])} CPUs available, {esc(m.get('kernel'))}, "
             f"{esc(m.get('python'))}; load average {esc(result.get('load_before'))} before and "
             f"{esc(result.get('load_after'))} after; {result.get('total_s', 0):.0f} s in all."
             "</p>"]
    if s.get("quick"):
        parts.append("<p class='noisy'>A <code>--quick</code> run: tiny sizes, a smoke test of "
                     "the plumbing. Its figures describe noise, not the ways.</p>")
    parts.append(
        "<h2>How to read this page</h2><p>Every way was run as a separate program, many times. "
        "Each run of a way was paired with a run of its <em>baseline</em> (usually the plain "
        "sequential program) right before or after it, so that both saw the machine in the same "
        "state. The <strong>speed-up</strong> is baseline time / way's time (above 1: the way "
        "was faster), the geometric mean over the pairs, with a <strong>95% interval</strong>: "
        "the range the true speed-up lies in, given the scatter of the pairs. The "
        "<strong>verdict</strong> follows from the interval alone: <span class='faster'>faster"
        "</span> when all of it is above 1 + m, <span class='slower'>slower</span> when all of it "
        f"is below 1 - m, where m = {s.get('margin', 0.05):.0%} is a practical margin (a "
        "difference smaller than that is not called one), and <span class='same'>same</span> "
        "otherwise; 'no difference this run could show' is said "
        "when it contains 1 but is too wide to call the two alike. <strong>Parallelism "
        "achieved</strong> is CPU time / wall time of a run: 1.0 means one CPU busy the whole "
        "time, 2.0 means two. It does not depend on how fast the machine is.</p>")
    if files.get("svg") and os.path.exists(files["svg"]):
        parts.append("<h2>Speed-ups at a glance</h2><p class='note'>Error bars: 95% intervals."
                     "</p>" + img(files["svg"], "contrast chart"))
    parts.append("<h2>Who runs when: the timeline</h2>")
    if files.get("timeline") and os.path.exists(files["timeline"]):
        parts.append(
            "<p>The countdown at N=2, traced (<code>WEFT_TRACE</code>): each row is an executor "
            "thread; dark blue where it runs a task, light blue where its task waits for the "
            "single lock, orange where it holds the lock. Under "
            "single-lock the threads take turns (the new GIL hands over every 5 ms, the old one "
            "every 100 iterations); multi-thread's workers run at the same time; cooperative "
            "has one thread that runs one task after the other.</p>" +
            img(files["timeline"], "timeline"))
    else:
        parts.append(f"<p class='note'>{esc(result.get('timeline_note') or 'No timeline.')}"
                     "</p>")
    parts.append("<h2>All verdicts</h2>" + table(
        ["workload", "way", "against", "speed-up", "95% interval", "verdict", "pairs",
         "noisy run"], verdict_rows(result), verdict_col=5))
    for name, rec in result["workloads"].items():
        parts.append(f"<h2>{esc(name)}</h2><p>{EXPLAIN.get(name, '')}</p>")
        sizes = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in rec["sizes"].items())
        parts.append(f"<p class='note'>Sizes: {esc(sizes)}.</p>")
        if rec["configs"]:
            head, rows = table_rows(name, rec)
            parts.append(table(head, rows, verdict_col=3))
        n = rec.get("noise") or {}
        if n.get("noisy"):
            parts.append(f"<p class='noisy'>Too noisy to conclude everything: "
                         f"{esc('; '.join(n['reasons']))}. Verdicts that a quieter run might "
                         f"change: {esc(', '.join(n['affected']) or 'none')}.</p>")
        parts.append(f"<p>{esc(rec.get('paragraph', ''))}</p>")
        if name == "cpython" and rec.get("side_by_side"):
            rows = []
            for r in rec["side_by_side"]:
                def c(x):
                    if x.get("speedup") is None:
                        return "-"
                    ci = x.get("ci95")
                    return f"{x['speedup']:.2f}x" + (f" [{ci[0]:.2f}{chr(8211)}{ci[1]:.2f}]"
                                                     if ci else "")
                rows.append([r["way"], c(r["seed"]), c(r["cpython"]), c(r["weft"])])
            parts.append("<h3>The GIL side by side</h3>" + table(
                ["way", "the tutorial (quoted)", "CPython here", "weft here"], rows))
        for e in rec.get("errors", []):
            parts.append(f"<p class='slower'>error: {esc(e)}</p>")
    noise_rows = []
    for w, r in result["workloads"].items():
        n = r.get("noise") or {}
        load = n.get("load1") or {}
        noise_rows.append([
            w, "-" if n.get("baseline_cv") is None else f"{n['baseline_cv']:.1%}",
            str(n.get("baseline_n", "")),
            "-" if n.get("baseline_parallelism") is None else f"{n['baseline_parallelism']:.2f}",
            "-" if load.get("min") is None else f"{load['min']:.2f}{chr(8211)}{load['max']:.2f}",
            "-" if n.get("steal_max") is None else f"{n['steal_max']:.1%}",
            "; ".join(n.get("reasons") or []) or "no"])
    parts.append(
        "<h2>The machine's noise</h2><p>The baseline is the same program every time, so its "
        "spread over the run (coefficient of variation) is the machine's; a one-thread baseline "
        "that got less than 0.9 of a CPU (CPU time / wall time) lost time to other load; the "
        "load average was read before each run, the steal time (CPU taken by the hypervisor) "
        "during it.</p>" + table(
            ["workload", "baseline spread (CV)", "baseline runs", "baseline's CPU share",
             "load average", "steal max", "too noisy to conclude?"], noise_rows))
    parts.append(f"<p class='note'>Raw samples: {esc(files.get('json'))}. Method: "
                 "ARCHITECTURE.md, \"The contrast benchmark\".</p></body></html>\n")
    with open(path, "w") as f:
        f.write("".join(parts))
    return path
