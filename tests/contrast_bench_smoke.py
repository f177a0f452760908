#!/usr/bin/env python3
"""Smoke test of ./run bench (bench/contrast.py, the contrast suite): one --quick run (tiny sizes,
three pairs) of every workload, then the checks of the plumbing, never of the speed:

  - the run exits 0 and prints a table per workload and the GIL side by side;
  - it writes one <YYYY-MM-DD>-<host>.json, one <same stem>-contrast.svg and one <same
    stem>.html in --out-dir (and <stem>-timeline.svg when the build writes traces);
  - the JSON has a verdict (speed-up, 95% interval, faster/slower/same/inconclusive/
    inconsistent) for every comparison the issue names, and every sample its parallelism;
  - the JSON is valid against bench/contrast.schema.json (the jsonschema module), and every
    workload has every expected configuration with a numeric median wall time (sleep's
    sequential baseline computed, as T x S, not measured);
  - the SVG parses as XML with an <svg> root;
  - `compare` of the file against itself exits 0 and flags nothing;
  - a bogus option and a bogus suite (--only nosuch) exit 2 with the usage on stderr, and so
    do `./run bench nosuch`, `./run bench micro extra` and `./run nosuch`;
  - the schema rejects a copy without its machine, one with a non-numeric wall time and one
    whose summary lacks its median.

    pytest-3 tests/contrast_bench_smoke.py --build=BUILD_DIR

Needs python3-jsonschema and python3-matplotlib (Debian packages; pytest-3 runs Debian's
python3, where they live). The first failed check fails the test.
"""
import copy
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import matplotlib  # noqa: F401  (the driver's chart needs it)

import harness
from contrast_check import check, checked

EXPECTED = {
    "countdown": ["sequential"] + [
        f"{way} N={n}" + (f" {lock}" if lock else "") for n in (1, 2, 4)
        for way, lock in (("cooperative", None), ("single-lock", "interval"),
                          ("single-lock", "ticks:100"), ("multi-thread", None),
                          ("threads", None), ("processes", None))],
    "sleep": ["sequential", "cooperative", "single-lock w=2", "multi-thread w=2", "threads",
              "processes w=2"],
    "echo": ["sequential", "cooperative", "single-lock w=2", "multi-thread w=2", "threads",
             "processes w=2"],
    "mixed": ["idle", "cooperative", "single-lock w=2 interval", "single-lock w=2 ticks:100",
              "multi-thread w=2", "threads", "processes w=1"],
    "cpython": ["sequential", "threads 2", "threads 4", "Pool 2", "Pool 4"],
}


def run(argv, timeout):
    return subprocess.run([sys.executable, driver] + argv, capture_output=True, text=True,
                          timeout=timeout)


driver = str(harness.source_dir() / "bench" / "contrast.py")
build = str(harness.build_dir())


def test_quick_run(tmp_path):
    schema_path = Path(driver).resolve().parent / "contrast.schema.json"
    schema = json.loads(schema_path.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    check(True, f"{schema_path.name} is itself a valid {validator_class.__name__} schema")

    tmp = str(tmp_path)
    r = run(["--build", build, "--quick", "--out-dir", tmp], timeout=240)
    check(r.returncode == 0, "contrast.py --quick exits 0",
          f"status {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    for name in EXPECTED:
        check(re.search(rf"^{name} \(", r.stdout, re.M) is not None,
              f"the terminal report has a {name} table", r.stdout[-3000:])
    check("GIL side by side" in r.stdout, "the terminal report has the GIL side by side")

    files = sorted(os.listdir(tmp))
    jsons = [f for f in files if f.endswith(".json")]
    svgs = [f for f in files if f.endswith("-contrast.svg")]
    htmls = [f for f in files if f.endswith(".html")]
    check(len(jsons) == 1 and len(svgs) == 1 and len(htmls) == 1,
          "one JSON, one chart SVG and one HTML page written", str(files))
    check(htmls[0] == jsons[0][:-5] + ".html", f"the page is named like the JSON: {htmls[0]}")
    check(re.fullmatch(r"\d{4}-\d{2}-\d{2}-.+\.json", jsons[0]) is not None and
          svgs[0] == jsons[0][:-5] + "-contrast.svg",
          f"named <date>-<host>: {jsons[0]}, {svgs[0]}")
    check(os.path.join(tmp, jsons[0]) in r.stdout and os.path.join(tmp, svgs[0]) in r.stdout,
          "both paths printed at the end")
    path = os.path.join(tmp, jsons[0])
    data = json.loads(Path(path).read_text())

    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
    check(not errors, "the results file is valid against the schema",
          "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10]))
    check(data["settings"]["quick"] is True and data["settings"]["min_pairs"] == 3,
          "settings record --quick and 3 pairs")
    verdicts = {(v["workload"], v["config"], v["baseline"]): v for v in data["verdicts"]}
    for w, names in EXPECTED.items():
        base = "idle" if w == "mixed" else "sequential"
        for n in names[1:]:
            v = verdicts.get((w, n, base))
            check(v is not None and v["verdict"] in ("faster", "slower", "same", "inconclusive",
                                                         "inconsistent")
                  and (v["ci95"] is None or v["ci95"][0] <= v["speedup"] <= v["ci95"][1]),
                  f"a verdict for {w} {n} against {base}, its speed-up inside its interval",
                  json.dumps(v))
    check(all(s["ok"] and isinstance(s.get("parallelism"), (int, float))
              for w in data["workloads"].values() for c in w["configs"] for s in c["samples"]),
          "every sample has its parallelism achieved (CPU / wall)")
    check(all(isinstance(w.get("noise", {}).get("noisy"), bool)
              for w in data["workloads"].values()), "every workload reports its noise")
    check(data["failed"] is False, "no run failed")

    for workload, names in EXPECTED.items():
        rec = data["workloads"].get(workload)
        check(rec is not None, f"workload {workload} present")
        got = [c["name"] for c in rec["configs"]]
        check(got == names, f"{workload}: every expected config, in order",
              f"expected {names}\ngot      {got}")
        for c in rec["configs"]:
            m = c["summary"]["wall_s"]["median"]
            if not (isinstance(m, (int, float)) and m > 0):
                check(False, f"{workload} {c['name']}: numeric median", json.dumps(c)[:1500])
        check(True, f"{workload}: every config has a positive numeric median wall time")
        check(isinstance(rec["paragraph"], str) and len(rec["paragraph"]) > 40,
              f"{workload}: a generated paragraph")

    seq = data["workloads"]["sleep"]["configs"][0]
    sizes = data["workloads"]["sleep"]["sizes"]
    check(seq["computed"] is True and not seq["samples"] and
          abs(seq["summary"]["wall_s"]["median"] - sizes["tasks"] * sizes["sleep_ms"] / 1e3)
          < 1e-9, "sleep's sequential baseline is computed (T x S), never measured")
    for w, rec in data["workloads"].items():
        for c in rec["configs"]:
            if c["computed"]:
                continue
            want = 3 * (len(rec["configs"]) - 1) if c["name"] == rec["baseline"] else 3
            check(len(c["samples"]) == want and all(s["ok"] for s in c["samples"]),
                  f"{w} {c['name']}: {want} raw samples", str(len(c["samples"])))
    base = data["workloads"]["countdown"]["configs"][0]
    for c in data["workloads"]["countdown"]["configs"][1:]:
        orders = [s["order"] for s in c["samples"]]
        check(orders in ([1, 2, 1], [2, 1, 2]),
              f"countdown {c['name']}: its pairs alternate which half runs first", str(orders))
    check({s["pair_of"] for s in base["samples"]} ==
          {c["name"] for c in data["workloads"]["countdown"]["configs"][1:]},
          "countdown's sequential samples are paired with every other config")
    lock = [c for c in data["workloads"]["countdown"]["configs"] if c["mode"] == "single-lock"]
    check(all(isinstance(c["summary"].get("switches"), (int, float)) for c in lock),
          "countdown's single-lock configs report their lock hand-overs")
    mixed = {c["name"]: c["summary"] for c in data["workloads"]["mixed"]["configs"]}
    check(all(isinstance(s.get("rtt_p50_us"), (int, float)) for s in mixed.values()),
          "mixed reports an rtt p50 for every way")
    gil = data["workloads"]["cpython"].get("side_by_side", [])
    check([g["way"] for g in gil][:3] == ["sequential", "2 threads", "4 threads"] and
          gil[1]["seed"]["speedup"] is not None and gil[1]["weft"]["speedup"] is not None,
          "the GIL side by side has the seed's and weft's figures")

    root = ET.parse(os.path.join(tmp, svgs[0])).getroot()
    check(root.tag.rsplit("}", 1)[-1] == "svg", f"the chart parses as XML with an <svg> root "
          f"({os.path.getsize(os.path.join(tmp, svgs[0])):,} bytes)", root.tag)

    c = run(["compare", path, path], timeout=60)
    check(c.returncode == 0 and "<< CHANGED (" not in c.stdout and
          "0 change(s) beyond the noise" in c.stdout,
          "compare of the file with itself exits 0 and flags nothing",
          f"status {c.returncode}\n{c.stdout[-2000:]}\n{c.stderr[-1000:]}")
    c = run(["compare", path, os.path.join(tmp, "missing.json")], timeout=60)
    check(c.returncode == 2 and len(c.stderr.strip().splitlines()) == 1,
          "compare with a missing file: a one-line error, exit 2", c.stderr)

    for argv, what in ((["--bogus"], "a bogus option"), (["--only", "nosuch"], "a bogus suite")):
        b = run(argv + ["--out-dir", tmp], timeout=60)
        check(b.returncode == 2 and "usage:" in b.stderr,
              f"{what} ({' '.join(argv)}): exit 2 and the usage on stderr",
              f"status {b.returncode}\n{b.stderr[-1000:]}")

    # ./run itself: an unknown suite and stray words print its usage and exit 2 before it
    # installs or builds anything.
    run_script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(driver))), "run")
    for argv in (["bench", "nosuch"], ["bench", "micro", "extra"], ["nosuch"]):
        b = subprocess.run([run_script] + argv, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        check(b.returncode == 2 and "usage: ./run bench" in b.stderr,
              f"./run {' '.join(argv)}: exit 2 and the usage on stderr",
              f"status {b.returncode}\n{b.stderr[-1000:]}")

    bad = copy.deepcopy(data)
    del bad["machine"]
    check(not validator.is_valid(bad), "the schema rejects a results file without its machine")
    bad = copy.deepcopy(data)
    bad["workloads"]["countdown"]["configs"][0]["samples"][0]["fields"]["wall_s"] = "fast"
    check(not validator.is_valid(bad), "the schema rejects a non-numeric wall time")
    bad = copy.deepcopy(data)
    del bad["workloads"]["echo"]["configs"][1]["summary"]["wall_s"]["median"]
    check(not validator.is_valid(bad), "the schema rejects a summary without its median")
    bad = copy.deepcopy(data)
    bad["verdicts"][0]["verdict"] = "probably faster"
    check(not validator.is_valid(bad), "the schema rejects a verdict outside its four words")
    bad = copy.deepcopy(data)
    del bad["verdicts"]
    check(not validator.is_valid(bad), "the schema rejects a results file without verdicts")

    print(f"contrast bench smoke: ok ({len(checked)} checks)")
