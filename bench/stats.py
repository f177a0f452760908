"""The statistics behind the contrast benchmark's verdicts (bench/contrast.py): a speed-up with
a 95% interval from paired samples, the verdict that interval allows, the comparison of two
runs, and the machine's noise (load, steal time).

Why these methods (ARCHITECTURE.md, "The contrast benchmark", says it for readers):
- A sample of a configuration runs back to back with a sample of its baseline, so each pair
  shares the machine's state of the moment; the pair's ratio baseline / config cancels drift
  that a ratio of two medians taken minutes apart would keep.
- The speed-up is the geometric mean of the pairs' ratios (the mean of their logarithms): time
  ratios are multiplicative and skewed, and the log makes 2x and 0.5x symmetric.
- Its 95% interval is the UNION of two intervals on the mean log ratio: scipy's BCa bootstrap
  (no assumption about the noise's shape, robust to the odd slow sample) and Student's t
  (honest at the 5 to 12 pairs a time budget allows, where a bootstrap is known to be too
  narrow). The wider of two reasonable intervals is the cautious one: a verdict that holds
  under both holds.
- The verdict follows from the interval alone, with a practical margin (MARGIN, +-10%) as
  criterion.rs uses its noise threshold: `faster` when the whole interval lies above 1 + MARGIN,
  `slower` when it lies below 1 - MARGIN, `same` otherwise (it holds 1, lies within the margin,
  or reaches into it: no difference beyond the margin was shown). With fewer than
  MIN_PAIRS pairs there is no interval: `inconclusive`, said as such, never guessed.
- A verdict must also agree with what the run measured of the machine (exceeds_parallelism):
  on fixed CPU-bound work a way can gain only by running on more CPUs at once, so a whole
  interval above its parallelism's gain is no speed-up but a machine whose speed changed
  between a pair's two runs (seen here: a VM whose CPU ran at half speed for seconds at a
  time, with no steal time to show it). Such a verdict is `inconsistent`, never `faster`.
"""
import math
import random

MARGIN = 0.10  # a difference must clear 10% to be called one (ARCHITECTURE.md says why)
MIN_PAIRS = 3  # fewer pairs give no interval worth the name
BOOT_RESAMPLES = 4000
WIDE = 1.5  # an interval whose ends differ by more than this factor is too wide to call "same"

try:
    import numpy as np
    from scipy import stats as sps
except ImportError:  # the driver still runs; the intervals fall back to a plain bootstrap
    np = sps = None


def _t_quantile(df):
    if sps is not None:
        return float(sps.t.ppf(0.975, df))
    table = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
             10: 2.23, 15: 2.13, 20: 2.09, 30: 2.04}
    return table[min((k for k in table if k >= df), default=30)]


def _bootstrap_mean(xs, seed):
    """95% interval of the mean of xs: scipy's BCa bootstrap, or a percentile bootstrap."""
    if len(set(xs)) == 1:
        return xs[0], xs[0]
    if sps is not None:
        res = sps.bootstrap((np.asarray(xs),), np.mean, confidence_level=0.95,
                            n_resamples=BOOT_RESAMPLES, method="BCa",
                            random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(xs) for _ in xs) / len(xs) for _ in range(BOOT_RESAMPLES))
    return means[int(0.025 * len(means))], means[int(0.975 * len(means)) - 1]


def paired_speedup(base, cfg, seed=1):
    """Speed-up baseline / config from paired times (base[i] and cfg[i] ran back to back).
    Returns {"speedup", "ci95": [lo, hi] or None, "n", "method"}; pairs with a missing or
    non-positive time are dropped."""
    logs = [math.log(b / c) for b, c in zip(base, cfg)
            if b is not None and c is not None and b > 0 and c > 0]
    n = len(logs)
    if n == 0:
        return {"speedup": None, "ci95": None, "n": 0, "method": None}
    mean = sum(logs) / n
    out = {"speedup": math.exp(mean), "ci95": None, "n": n, "method": None}
    if n < MIN_PAIRS:
        return out
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (n - 1))
    half = _t_quantile(n - 1) * sd / math.sqrt(n)
    blo, bhi = _bootstrap_mean(logs, seed)
    lo, hi = min(mean - half, blo), max(mean + half, bhi)
    out["ci95"] = [math.exp(lo), math.exp(hi)]
    out["method"] = "paired: geometric mean of ratios; union of BCa bootstrap and t intervals"
    return out


def unpaired_ratio(a, b, seed=1):
    """Ratio median(a) / median(b) of two independent sets of samples, with a 95% percentile
    bootstrap interval (each set resampled on its own). Used where no pairing exists: a
    computed baseline, or two runs on different days (compare)."""
    a = [x for x in a if x is not None and x > 0]
    b = [x for x in b if x is not None and x > 0]
    if not a or not b:
        return {"speedup": None, "ci95": None, "n": min(len(a), len(b)), "method": None}
    med = _median
    out = {"speedup": med(a) / med(b), "ci95": None, "n": min(len(a), len(b)), "method": None}
    if min(len(a), len(b)) < MIN_PAIRS:
        return out
    rng = random.Random(seed)
    rs = sorted(med([rng.choice(a) for _ in a]) / med([rng.choice(b) for _ in b])
                for _ in range(BOOT_RESAMPLES))
    out["ci95"] = [rs[int(0.025 * len(rs))], rs[int(0.975 * len(rs)) - 1]]
    out["method"] = "unpaired: ratio of medians; percentile bootstrap"
    return out


def _median(xs):
    s = sorted(xs)
    k = len(s) // 2
    return s[k] if len(s) % 2 else (s[k - 1] + s[k]) / 2


def verdict(ci, margin=MARGIN):
    """faster / slower / same from a 95% interval of a speed-up alone; inconclusive without
    one."""
    if ci is None:
        return "inconclusive"
    lo, hi = ci
    if lo > 1 + margin:
        return "faster"
    if hi < 1 - margin:
        return "slower"
    return "same"


def exceeds_parallelism(ci, cfg_par, base_par, margin=MARGIN):
    """True when the whole 95% interval of a speed-up on fixed CPU-bound work lies above what
    the configuration's parallelism allows: its parallelism achieved (CPU time / wall time)
    over the baseline's, plus the margin. The same work done on p times as many CPUs at once
    takes at best 1/p of the time; more than that means the CPU's own speed changed between
    the runs of a pair. False when a figure is missing."""
    if ci is None or not cfg_par or not base_par:
        return False
    return ci[0] > cfg_par / base_par * (1 + margin)


def too_wide(ci):
    """True when an interval that contains 1 is too wide to say the two are alike: the run
    could not show a difference, which is not the same as showing there is none."""
    return ci is not None and ci[0] <= 1 <= ci[1] and ci[1] / ci[0] > WIDE


def undecided(ci, margin=MARGIN):
    """True when more pairs could change or sharpen the verdict: no interval yet, or one that
    reaches past an edge of the practical margin (1 +- margin) without clearing it."""
    if ci is None:
        return True
    lo, hi = ci
    return (lo <= 1 + margin < hi) or (lo < 1 - margin <= hi)


def cv(xs):
    """Coefficient of variation (stdev / mean) of the positive numbers in xs, or None."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) / m if m else None


def cpu_jiffies():
    """(steal, total) jiffies over all CPUs from /proc/stat, or None where unreadable."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice: inside user and nice]
    return (v[7] if len(v) > 7 else 0), sum(v[:8])


def steal_between(before, after):
    """The fraction of CPU time the hypervisor stole between two cpu_jiffies() readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])
