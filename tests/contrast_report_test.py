#!/usr/bin/env python3
"""The contrast benchmark's pictures and report page, rendered as a reader sees them:

  - bench/timeline.py draws the committed synthetic trace (tests/fixtures/
    trace-single-lock-interval.json, the trace contract's format), a real one from weft's
    tracing (trace-real-single-lock-interval.json: a thread runs only while it holds the
    lock, though its run span lasts longer) and traces made by
    tests/fixtures/make_trace.py for the other ways: one panel per way, the lock lane only where
    there is a lock, the spans in the window, events it does not know ignored; a file that is
    not a trace is refused with a clear error;
  - a short real run (bench/contrast.py --quick --only countdown cpython --n 2) writes the JSON,
    the chart and the page; the page is rebuilt with that timeline beside it (a build without
    tracing draws none of its own);
  - headless Chromium loads the page from a file with the network off: no console error, every
    <img> loaded with a non-zero size (the page's own script sets data-images="ok N" on <body>,
    read back with --dump-dom), the chart and the timeline among them, nothing fetched from
    elsewhere (no http: or https: URL in any src or href), the tables and the verdicts there;
    a screenshot is taken (kept with --keep DIR, for a person to look at).

    [WEFT_CONTRAST_KEEP=DIR] pytest-3 tests/contrast_report_test.py --build=BUILD_DIR

Skipped without chromium; the first failed check fails the test.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import pytest

import harness
from contrast_check import check, checked, need_debian_python

need_debian_python()
HERE = os.path.dirname(os.path.abspath(__file__))


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans():
    """Makes this test the subreaper of what it starts: Chromium leaves helper processes (its
    zygote, crashpad) that outlive the browser and would otherwise be orphans (no_orphans.py
    fails a test for them)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def end_orphans():
    """Kills and reaps every child still left (the browser's own helpers, after it exited)."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        if ppid == me:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def render(browser, page, tmp, shot):
    """--dump-dom and a screenshot of page; returns (dom, stderr of the dump)."""
    base = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            "--disable-extensions", "--user-data-dir=" + os.path.join(tmp, "profile"),
            "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000"]
    url = "file://" + os.path.abspath(page)
    d = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1200,2400", url],
                   capture_output=True, text=True, timeout=120)
    end_orphans()
    return d.stdout, d.stderr


def test_report_page():
    assert main() == 0


def main():
    driver = str(harness.source_dir() / "bench" / "contrast.py")
    build = str(harness.build_dir())
    keep = os.environ.get("WEFT_CONTRAST_KEEP")
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium (Debian package chromium)")
    adopt_orphans()
    sys.path.insert(0, os.path.dirname(os.path.abspath(driver)))
    import contrast
    import report_html
    import timeline
    sys.path.insert(0, os.path.join(HERE, "fixtures"))
    import make_trace

    with tempfile.TemporaryDirectory(prefix="contrast-report-") as tmp:
        traces = [("single-lock N=2 interval (fixture)",
                   os.path.join(HERE, "fixtures", "trace-single-lock-interval.json"))]
        for mode in ("single-lock-ticks", "multi-thread", "cooperative"):
            path = os.path.join(tmp, f"{mode}.json")
            with open(path, "w") as f:
                json.dump(make_trace.make(mode), f)
            traces.append((mode, path))
        svg = os.path.join(tmp, "timeline.svg")
        figs = timeline.render(traces, svg)
        root = ET.parse(svg).getroot()
        check(root.tag.endswith("svg"), f"the timeline parses as SVG ({os.path.getsize(svg):,} "
              "bytes)")
        text = open(svg).read()
        check(all(label in text for label, _ in traces), "one panel per trace, each labelled")
        p = {f["label"]: f for f in figs["panels"]}
        lock = p["single-lock N=2 interval (fixture)"]
        check(lock["handovers"] == 7 and lock["busy"] == {"single-lock 0": 0.4999,
                                                          "single-lock 1": 0.4999},
              "single-lock fixture: 7 lock hand-overs, each thread busy half the time",
              json.dumps(lock))
        check(p["multi-thread"]["parallelism"] > 1.9 and p["multi-thread"]["lock_spans"] == 0,
              "multi-thread: both threads at once (parallelism ~2), no lock lane",
              json.dumps(p["multi-thread"]))
        check(p["cooperative"]["parallelism"] <= 1.0 and len(p["cooperative"]["busy"]) == 1,
              "cooperative: one thread", json.dumps(p["cooperative"]))
        check(text.count(": holds the lock") == 4, "lock lanes only for the two single-lock ways "
              "(2 threads each)", str(text.count(": holds the lock")))
        check(os.path.getsize(svg) < 400_000, "the timeline stays small (spans merged below a "
              "pixel)", str(os.path.getsize(svg)))
        # A real trace (weft's tracing, single-lock interval, countdown at N=2): run spans
        # include the waits for the lock, so a thread runs only while it also holds the lock.
        real = timeline.render([("real", os.path.join(HERE, "fixtures",
                                                      "trace-real-single-lock-interval.json"))],
                               os.path.join(tmp, "real.svg"))["panels"][0]
        check(real["parallelism"] <= 1.05 and real["handovers"] >= 5 and
              all(b > 0.3 for b in real["busy"].values()),
              "a real single-lock trace: parallelism about 1 (not the run spans' ~2), hand-overs, "
              "both threads taking turns", json.dumps(real))
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as f:
            f.write('{"no": "trace"}')
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(driver), "timeline.py"),
                            os.path.join(tmp, "x.svg"), f"bad={bad}"], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 1 and "no traceEvents" in r.stderr,
              "timeline.py refuses a file that is not a trace, exit 1", r.stderr)
        r = subprocess.run([sys.executable, os.path.join(os.path.dirname(driver), "timeline.py")],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 2, "timeline.py without arguments: usage, exit 2")

        # The harness's traced runs, against a stand-in program that writes a synthetic trace
        # where WEFT_TRACE says (the real one does so once weft's tracing is in the build).
        fake = os.path.join(tmp, "fakebuild")
        os.makedirs(os.path.join(fake, "bench"))
        with open(os.path.join(fake, "bench", "contrast"), "w") as f:
            f.write(f"#!/bin/sh\ncase \"$*\" in *single-lock*) m=single-lock-interval ;; "
                    f"*multi-thread*) m=multi-thread ;; *) m=cooperative ;; esac\n"
                    f"[ -n \"$WEFT_TRACE\" ] && exec {sys.executable} "
                    f"{os.path.join(HERE, 'fixtures', 'make_trace.py')} $m \"$WEFT_TRACE\"\n")
        os.chmod(os.path.join(fake, "bench", "contrast"), 0o755)
        args = contrast.parse_args(["--build", fake, "--quick"])
        fake_result = {"workloads": {"countdown": {"configs": [{}]}},
                       "files": {"timeline": None}}
        tl = os.path.join(tmp, "harness-timeline.svg")
        note = contrast.draw_timeline(args, fake_result, tl)
        check(note is None and fake_result["files"]["timeline"] == tl and
              len(fake_result["timeline"]["panels"]) == 4,
              "the harness runs the 4 traced ways under WEFT_TRACE and draws their timeline",
              str(note))
        os.remove(os.path.join(fake, "bench", "contrast"))
        with open(os.path.join(fake, "bench", "contrast"), "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(os.path.join(fake, "bench", "contrast"), 0o755)
        fake_result["files"]["timeline"] = None
        note = contrast.draw_timeline(args, fake_result, os.path.join(tmp, "none.svg"))
        check(note and "wrote no trace" in note and fake_result["files"]["timeline"] is None,
              "a build that writes no trace: no timeline, and a note that says why", str(note))

        out = os.path.join(tmp, "out")
        r = subprocess.run([sys.executable, driver, "--build", build, "--quick", "--only",
                            "countdown", "cpython", "--n", "2", "--out-dir", out],
                           capture_output=True, text=True, timeout=240)
        check(r.returncode == 0, "contrast.py --quick --only countdown cpython --n 2 exits 0",
              r.stdout[-2000:] + r.stderr[-2000:])
        jpath = next(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".json"))
        with open(jpath) as f:
            result = json.load(f)
        page = result["files"]["html"]
        check(page and os.path.exists(page), f"the run wrote its page {page}")
        if not result["files"]["timeline"]:
            result["files"]["timeline"] = svg  # this build writes no trace: use the fixture's
        report_html.write(result, page, contrast.table_rows)
        html = open(page).read()
        check(not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html),
              "the page fetches nothing: no http(s) or protocol-relative URL")
        shot = os.path.join(keep or tmp, "report.png")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(page, os.path.join(keep, "report.html"))
        dom, log = render(browser, page, tmp, shot)
        m = re.search(r'<body[^>]*data-images="([^"]*)"', dom)
        check(m is not None, "the page's script ran (data-images set on <body>)", dom[:1500])
        check(m.group(1) == "ok 2", f"every image loaded with a non-zero size: {m.group(1)} "
              "(the chart and the timeline)", m.group(1))
        errors = [line for line in log.splitlines()
                  if "CONSOLE" in line or "Uncaught" in line or "net::ERR" in line]
        check(not errors, "no console error or failed load", "\n".join(errors[:10]))
        check("All verdicts" in dom and "countdown" in dom and "cpython" in dom and
              dom.count("<table") >= 4, "the tables and the verdicts are on the page")
        check(os.path.exists(shot) and os.path.getsize(shot) > 10_000,
              f"a screenshot was taken ({shot})")
    print(f"contrast report test: ok ({len(checked)} checks)")
    return 0
