#!/usr/bin/env python3
"""bench/stats.py, the contrast benchmark's statistics, on made-up samples whose answer is
known: the speed-up and its interval, the verdict at and around its boundaries, too few
pairs, drift that pairing cancels and a ratio of medians does not, the unpaired ratio,
/proc/stat's steal time; and bench/contrast.py's verdicts on a real run whose CPU changed
speed between paired runs (tests/fixtures/contrast-bimodal-countdown.json).

    pytest-3 tests/contrast_stats_test.py

The first failed check fails the test. Under a second.
"""
import json
import math
import random
import sys

import harness
from contrast_check import check, checked, need_debian_python

need_debian_python(required=False)  # stats.py falls back without scipy
sys.path.insert(0, str(harness.source_dir() / "bench"))
import stats  # noqa: E402


def test_stats():


    r = stats.paired_speedup([2.0] * 5, [1.0] * 5)
    check(math.isclose(r["speedup"], 2) and r["ci95"] == [2.0, 2.0] and r["n"] == 5 and
          stats.verdict(r["ci95"]) == "faster",
          "identical pairs at 2x: 2x, a point interval, faster",
          str(r))
    r = stats.paired_speedup([1.0] * 5, [2.0] * 5)
    check(math.isclose(r["speedup"], 0.5) and stats.verdict(r["ci95"]) == "slower",
          "identical pairs at 0.5x: slower", str(r))
    rng = random.Random(7)
    base = [1 + rng.uniform(-0.005, 0.005) for _ in range(8)]
    r = stats.paired_speedup(base, [b * (1 + rng.uniform(-0.005, 0.005)) for b in base])
    check(stats.verdict(r["ci95"]) == "same" and 1 - stats.MARGIN <= r["ci95"][0] and
          r["ci95"][1] <= 1 + stats.MARGIN, "pairs within 0.5% of each other: same, inside the "
          "margin", str(r))
    r = stats.paired_speedup([1, 1, 1, 1, 1], [0.6, 1.7, 0.9, 1.4, 0.7])
    check(stats.verdict(r["ci95"]) == "same" and stats.too_wide(r["ci95"]) and
          stats.undecided(r["ci95"]), "scattered pairs around 1: same, but too wide to call alike, "
          "and undecided (more pairs wanted)", str(r))
    r = stats.paired_speedup([1, 1], [0.5, 0.5])
    check(r["ci95"] is None and stats.verdict(r["ci95"]) == "inconclusive",
          f"{r['n']} pairs (< {stats.MIN_PAIRS}): no interval, inconclusive, never a guess", str(r))
    r = stats.paired_speedup([1, None, 1, 0, 1], [0.5, 0.5, None, 0.5, 0.5])
    check(r["n"] == 2, "pairs with a failed or zero half are dropped", str(r))
    check(stats.verdict([1.11, 1.3]) == "faster" and stats.verdict([0.7, 0.89]) == "slower" and
          stats.verdict([0.99, 1.2]) == "same" and stats.verdict([0.98, 1.02]) == "same" and
          stats.verdict([1.05, 1.2]) == "same" and stats.verdict([0.8, 0.95]) == "same",
          "verdicts at the boundaries: clear of the margin above and below, holding 1, within the "
          "margin, reaching into it")
    check(stats.undecided([1.05, 1.2]) and not stats.undecided([1.11, 1.3]) and
          not stats.undecided([0.95, 1.06]),
          "undecided: only an interval across an edge of the margin")

    # The machine slows down 2x over the run; the way is exactly as fast as its baseline. Pairs
    # see 1x; medians of the first-half baselines against the second-half ways see a difference.
    speed = [1 + i / 9 for i in range(10)]
    base = [s * (1 + rng.uniform(-0.01, 0.01)) for s in speed]
    cfg = [s * (1 + rng.uniform(-0.01, 0.01)) for s in speed]
    paired = stats.paired_speedup(base, cfg)
    unp = stats.unpaired_ratio(base[:5], cfg[5:])
    check(stats.verdict(paired["ci95"]) == "same" and stats.verdict(unp["ci95"]) == "slower",
          "drift: paired says same, a ratio of medians taken apart says slower",
          f"paired {paired}\nunpaired {unp}")
    r = stats.unpaired_ratio([2.0, 2.1, 1.9, 2.0], [1.0, 1.05, 0.95, 1.0])
    check(math.isclose(r["speedup"], 2.0) and r["ci95"][0] > 1.5 and
          stats.verdict(r["ci95"]) == "faster", "unpaired ratio of medians with its interval",
          str(r))
    check(stats.cv([1, 1, 1]) == 0 and stats.cv([1]) is None and
          math.isclose(stats.cv([1, 3]), math.sqrt(2) / 2), "coefficient of variation")
    j = stats.cpu_jiffies()
    check(j is None or (j[1] > 0 and 0 <= j[0] <= j[1]), f"/proc/stat jiffies: {j}")
    check(stats.steal_between((10, 100), (15, 200)) == 0.05 and
          stats.steal_between(None, (1, 2)) is None, "steal fraction between two readings")
    print(f"contrast stats test: ok ({len(checked)} checks)")


def test_parallelism_bounds_a_cpu_bound_speedup():
    check(stats.exceeds_parallelism([1.13, 2.42], 1.0007, 1.0006) and
          not stats.exceeds_parallelism([1.20, 3.07], 1.82, 1.0) and
          not stats.exceeds_parallelism(None, 1.0, 1.0) and
          not stats.exceeds_parallelism([1.5, 2.0], None, 1.0),
          "a whole interval above parallelism x (1 + margin) exceeds it; missing figures never do")
    # A real run (2-vCPU VM): the sequential baseline took 0.48 s or 0.95 s, its CPU time
    # doubling with it, and four of cooperative N=4's five baselines drew the slow state. The
    # paired interval [1.13, 2.42] cleared the margin: plain verdict() says faster, on one
    # thread, which no way of running one thread can be.
    sys.path.insert(0, str(harness.source_dir() / "bench"))
    import contrast
    rec = json.loads((harness.source_dir() / "tests" / "fixtures" /
                      "contrast-bimodal-countdown.json").read_text())
    ci = contrast.interval(rec, "cooperative N=4")["ci95"]
    check(stats.verdict(ci) == "faster", "the fixture still shows the false faster", str(ci))
    contrast.summarize("countdown", rec)
    by = {c["name"]: c["summary"] for c in rec["configs"]}
    check(by["cooperative N=4"]["verdict"] == "inconsistent",
          "one thread faster than one thread allows: inconsistent, not faster",
          str(by["cooperative N=4"]))
    check(by["multi-thread N=4"]["verdict"] == "faster" and
          by["processes N=4"]["verdict"] == "faster",
          "ways that ran on both CPUs keep their faster",
          f'{by["multi-thread N=4"]["verdict"]} {by["processes N=4"]["verdict"]}')
    n = rec["noise"]
    check(n["noisy"] and "cooperative N=4" in n["affected"] and
          any("parallelism allows" in r for r in n["reasons"]),
          "the run is called noisy and names the inconsistent verdict", str(n))
    text = contrast.against("inconsistent", ci, "sequential")
    check("no verdict" in text and "faster than sequential by more" in text, text)
    check(contrast.still_open(rec, "cooperative N=4") and
          not contrast.still_open(rec, "multi-thread N=4"),
          "an inconsistent verdict asks for more pairs; a clear one does not")
