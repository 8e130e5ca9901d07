"""The statistics behind verdicts and claims: seed spread, confidence intervals, Welch's t.

Everything is over runs that differ only in seed. Test errors are in percent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95  # of the confidence intervals verdicts read: two one-sided tests at 2.5% each
ALPHA = 0.05  # of the one-sided tests of orderings (claims); their intervals are 1 - 2 * ALPHA = 90% CIs
MIN_SEEDS = 3  # per side, before an ordering is tested at all


@dataclass(frozen=True)
class Noise:
    """The spread one seed is judged at, since it cannot show its own: the std between seeds pooled over
    every group of runs that differ only in seed (a network in one tier: data, budget, arithmetic) with at
    least 2 of them, and its degrees of freedom (the sum of each group's n - 1). Not the test set's
    binomial error: every run is tested on the same 10,000 images."""
    std: float = math.nan  # pp
    dof: int = 0
    groups: int = 0

    def half_width(self, level: float = LEVEL) -> float:
        """Half the `level` t interval of one seed at this spread (nan where nothing was pooled)."""
        return t_quantile(level, self.dof) * self.std if self.dof else math.nan

    def __str__(self) -> str:
        if not self.dof:
            return "no group of runs with >= 2 seeds to pool a spread from"
        return (f"the seed-to-seed std pooled over {self.groups} groups of >= 2 seeds, "
                f"{self.std:.2f} pp on {self.dof} degrees of freedom")


NO_NOISE = Noise()


def pooled_noise(groups: Iterable) -> Noise:
    """Noise from groups of values (runs that differ only in seed): sqrt(sum of squared deviations from each
    group's mean / sum of (n - 1)) over the groups of >= 2 values."""
    squares, dof, counted = 0.0, 0, 0
    for group in groups:
        v = np.asarray([x for x in group if x == x], dtype=float)
        if len(v) >= 2:
            squares, dof, counted = squares + float(((v - v.mean()) ** 2).sum()), dof + len(v) - 1, counted + 1
    return Noise(math.sqrt(squares / dof), dof, counted) if dof else NO_NOISE


def seed_noise(runs: pd.DataFrame, column: str = "test_error") -> Noise:
    """Noise of `column` over the finished `runs`, grouped by network, options and tier."""
    if runs.empty or column not in runs:
        return NO_NOISE
    done = runs[runs["status"] == "done"]
    return pooled_noise(group for _, group in done.groupby(["model", "options", "tier"])[column])


def spread(values) -> dict:
    """n, best (lowest), mean, std (ddof 1) and standard error of the mean of `values`."""
    v = np.asarray([x for x in values if x == x], dtype=float)  # NaN-free
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    return {"n": n, "ours_best": float(v.min()) if n else math.nan, "ours_mean": float(v.mean()) if n else math.nan,
            "ours_std": std, "ours_se": std / math.sqrt(n) if n > 1 else math.nan}


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


def effect(low, high, level: float = 1 - 2 * ALPHA) -> dict:
    """How much higher `high`'s runs are than `low`'s: difference of means and its Welch CI at `level`
    (90% by default: the interval of the one-sided 5% test `ordering` applies, so a bar and its
    verdict always agree)."""
    a, b = spread(low), spread(high)
    ci = welch_ci(b["ours_mean"], b["ours_std"], b["n"], a["ours_mean"], a["ours_std"], a["n"], level)
    return {"n_low": a["n"], "n_high": b["n"], "effect": b["ours_mean"] - a["ours_mean"],
            "ci_low": ci[0], "ci_high": ci[1]}


@lru_cache(maxsize=4096)
def t_quantile(level: float, dof: float) -> float:
    """The two-sided `level` quantile of Student's t (t(0.975, 1) = 12.71 at 95%)."""
    return float(stats.t.ppf(0.5 + level / 2, dof))


def half_width(std: float, n: int, level: float = LEVEL, noise: Noise = NO_NOISE) -> float:
    """Half the `level` CI of a mean over n >= 2 seeds (t, n - 1 degrees of freedom); one seed's is the
    t interval at the pooled spread `noise`, on its degrees of freedom (nan where nothing was pooled)."""
    if n < 1:
        return math.nan
    if n == 1:
        return noise.half_width(level)
    return t_quantile(level, n - 1) * std / math.sqrt(n) if std == std else math.nan


def difference_ci(delta: float, std: float, n: int, reference_std: float | None = None,
                  reference_n: int | None = None, level: float = LEVEL,
                  noise: Noise = NO_NOISE) -> tuple[float, float]:
    """The `level` CI of (our mean - the paper's number). Where the paper's number is itself a mean over
    `reference_n` runs with std `reference_std` (ResNet-110: 6.61 +- 0.16 over 5), the two sides' half-widths
    add in quadrature: the paper's part is a fixed floor, so the whole narrows with our n at a fixed std
    (Welch's interval does not: its degrees of freedom move with n)."""
    half = math.hypot(half_width(std, n, level, noise), floor(reference_std, reference_n, level))
    return delta - half, delta + half


def floor(reference_std: float | None, reference_n: int | None, level: float = LEVEL) -> float:
    """The paper's own share of the interval: the half-width of its mean (0 for a single reported number)."""
    if not reference_std or not reference_n or reference_n < 2:
        return 0.0
    return t_quantile(level, reference_n - 1) * reference_std / math.sqrt(reference_n)


def equivalence(ci: tuple[float, float], tolerance: float, n: int = 2) -> str:
    """Two one-sided tests read from a CI of (ours - paper): reproduced when it lies inside
    +-tolerance, not reproduced when it lies wholly outside, else inconclusive. One seed is never
    reproduced (it cannot show its spread). A narrower CI (more seeds, same mean) can only move a
    verdict out of inconclusive, never across."""
    low, high = ci
    if not (low == low and high == high):
        return "inconclusive"
    if -tolerance <= low and high <= tolerance and n >= 2:
        return "reproduced"
    if low > tolerance or high < -tolerance:
        return "not reproduced"
    return "inconclusive"


def seeds_needed(delta: float, std: float, tolerance: float, paper_floor: float = 0.0, level: float = LEVEL,
                 most: int = 100) -> int | None:
    """About how many seeds at this mean and std make the equivalence test decide; None where no number
    can (the paper's own floor reaches past the margin) or more than `most` would be needed."""
    margin = abs(abs(delta) - tolerance)
    if not std == std or std <= 0 or paper_floor >= margin:
        return None
    for n in range(2, most + 1):
        if math.hypot(half_width(std, n, level), paper_floor) < margin:
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
