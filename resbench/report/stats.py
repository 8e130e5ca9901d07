"""The statistics behind verdicts and claims: seed spread, prediction intervals, Welch's t.

Everything is over runs that differ only in seed. Test errors are in percent.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95  # of prediction intervals
ALPHA = 0.05  # of one-sided tests (claims) and two-sided ones (means)
MIN_SEEDS = 3  # per side, before an ordering is tested at all


def spread(values) -> dict:
    """n, best (lowest), mean, std (ddof 1) and standard error of the mean of `values`."""
    v = np.asarray([x for x in values if x == x], dtype=float)  # NaN-free
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    return {"n": n, "ours_best": float(v.min()) if n else math.nan, "ours_mean": float(v.mean()) if n else math.nan,
            "ours_std": std, "ours_se": std / math.sqrt(n) if n > 1 else math.nan}


def prediction_interval(mean: float, std: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Where one new run's value falls with probability `level` (t-based; needs n >= 2)."""
    if n < 2 or not std == std:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * std * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def sampling_se(error: float, images: int) -> float:
    """Standard error (pp) of a test error from the finite test set alone: 0.28 pp at 8.75% on 10k."""
    p = error / 100
    return 100 * math.sqrt(p * (1 - p) / images)


def means_differ(ours: dict, mean: float, std: float, n: int) -> float:
    """Two-sided p of Welch's t-test between our runs and a reported mean +- std over n runs."""
    if ours["n"] < 2 or not ours["ours_std"] == ours["ours_std"]:
        return math.nan
    result = stats.ttest_ind_from_stats(ours["ours_mean"], ours["ours_std"], ours["n"], mean, std, n,
                                        equal_var=False)
    return float(result.pvalue)


def ordering(low, high) -> tuple[str, float]:
    """Is `low` below `high` (two samples of runs)? One-sided Welch tests both ways.

    pass: low < high at ALPHA; fail: low > high at ALPHA; inconclusive otherwise, or with fewer
    than MIN_SEEDS runs on a side (a strict ordering on one or two seeds is not evidence).
    Returns the outcome and the p-value of the claimed direction (NaN when untested).
    """
    a, b = (np.asarray([x for x in s if x == x], dtype=float) for s in (low, high))
    if min(len(a), len(b)) < MIN_SEEDS:
        return "inconclusive", math.nan
    less = stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue
    greater = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    if less < ALPHA:
        return "pass", float(less)
    if greater < ALPHA:
        return "fail", float(less)
    return "inconclusive", float(less)  # NaN too when both sides are constant


def above(values, bound: float) -> tuple[str, float]:
    """Do the runs lie above `bound`? One-sided one-sample t-test, as `ordering`."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) < MIN_SEEDS:
        return "inconclusive", math.nan
    if v.std() == 0:
        return ("pass" if v[0] > bound else "fail"), 0.0
    p = stats.ttest_1samp(v, bound, alternative="greater").pvalue
    if p < ALPHA:
        return "pass", float(p)
    if stats.ttest_1samp(v, bound, alternative="less").pvalue < ALPHA:
        return "fail", float(p)
    return "inconclusive", float(p)
