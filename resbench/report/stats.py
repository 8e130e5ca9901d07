"""The statistics behind verdicts and claims: seed spread, confidence intervals, Welch's t.

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


def mean_ci(mean: float, std: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The `level` confidence interval of a mean over n >= 2 runs (t with n-1 degrees of freedom)."""
    if n < 2 or not std == std:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def welch_ci(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int,
             level: float = LEVEL) -> tuple[float, float]:
    """The `level` confidence interval of mean_a - mean_b (Welch-Satterthwaite degrees of freedom)."""
    if min(n_a, n_b) < 2 or not (std_a == std_a and std_b == std_b):
        return math.nan, math.nan
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    diff = mean_a - mean_b
    if va + vb == 0:
        return diff, diff
    dof = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * math.sqrt(va + vb)
    return diff - half, diff + half


def effect(low, high) -> dict:
    """How much higher `high`'s runs are than `low`'s: difference of means and its 95% Welch CI."""
    a, b = spread(low), spread(high)
    ci = welch_ci(b["ours_mean"], b["ours_std"], b["n"], a["ours_mean"], a["ours_std"], a["n"])
    return {"n_low": a["n"], "n_high": b["n"], "effect": b["ours_mean"] - a["ours_mean"],
            "ci_low": ci[0], "ci_high": ci[1]}


def equivalence(ci: tuple[float, float], tolerance: float) -> str:
    """Two one-sided tests read from a CI of (ours - paper): reproduced when it lies inside
    +-tolerance, not reproduced when it lies wholly outside, else inconclusive. A narrower CI
    (more seeds, same mean) can only move a verdict out of inconclusive, never across."""
    low, high = ci
    if not (low == low and high == high):
        return "inconclusive"
    if -tolerance <= low and high <= tolerance:
        return "reproduced"
    if low > tolerance or high < -tolerance:
        return "not reproduced"
    return "inconclusive"


def seeds_needed(delta: float, std: float, tolerance: float, level: float = LEVEL, most: int = 100) -> int | None:
    """About how many seeds at this mean and std make the equivalence test decide (None: more than `most`)."""
    margin = abs(abs(delta) - tolerance)
    if not std == std or std <= 0:
        return None
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n) < margin:
            return n
    return None


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
