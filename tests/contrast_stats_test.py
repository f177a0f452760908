#!/usr/bin/env python3
"""bench/stats.py, the contrast benchmark's statistics, on made-up samples whose answer is
known: the speed-up and its interval, the verdict at and around its boundaries, too few
pairs, drift that pairing cancels and a ratio of medians does not, the unpaired ratio,
/proc/stat's steal time.

    pytest-3 tests/contrast_stats_test.py

The first failed check fails the test. Under a second.
"""
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
