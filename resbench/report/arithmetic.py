"""Does the arithmetic move the result? The same runs in fp32 and in bf16, compared over seeds.

For every network with finished runs in two tiers that differ only in their arithmetic (the
part of the tier in brackets: `fp32`, `bf16`, `bf16+TF32`), the difference of the mean test
errors (the other arithmetic minus fp32) with its 95% Welch confidence interval and Welch's
two-sided p. The verdict uses the equivalence margin of the experiment's verdicts: `no shift
beyond the margin` when the interval lies within it, `shifted` when it lies wholly outside,
else `inconclusive`: a difference that is not significant is not yet evidence of no effect.
A faster arithmetic becomes a default only on `no shift beyond the margin`.
"""
from __future__ import annotations

import pandas as pd

from resbench.report import stats

ARITHMETIC_COLUMNS = ["model", "setting", "reference", "other", "n_reference", "n_other", "mean_reference",
                      "std_reference", "mean_other", "std_other", "difference", "ci_low", "ci_high", "p", "verdict"]


def split_tier(tier: str) -> tuple[str, str]:
    """'proxy: JPEG q75 data, schedule 1/32 (2,000 iterations) (bf16)' -> (the setting, 'bf16')."""
    setting, _, arithmetic = tier.rpartition(" (")
    return setting, arithmetic.rstrip(")")


def arithmetic_control(runs: pd.DataFrame, margin: float) -> pd.DataFrame:
    """One line per (network, setting, arithmetic other than fp32) with fp32 runs beside it."""
    finished = runs[runs["status"] == "done"]
    lines = []
    for (model, tier_setting), group in finished.groupby(
            [finished["model"], finished["tier"].map(lambda t: split_tier(t)[0])], sort=True):
        by_arithmetic = {a: g["test_error"].dropna().astype(float).tolist()
                         for a, g in group.groupby(group["tier"].map(lambda t: split_tier(t)[1]))}
        reference = by_arithmetic.pop("fp32", None)
        for other, values in sorted(by_arithmetic.items()):
            if not reference or not values:
                continue
            a, b = stats.spread(reference), stats.spread(values)
            low, high = stats.welch_ci(b["ours_mean"], b["ours_std"], b["n"], a["ours_mean"], a["ours_std"], a["n"])
            p = stats.means_differ(b, a["ours_mean"], a["ours_std"], a["n"])
            verdict = {"reproduced": "no shift beyond the margin", "not reproduced": "shifted"}.get(
                stats.equivalence((low, high), margin), "inconclusive")
            lines.append({"model": model, "setting": tier_setting, "reference": "fp32", "other": other,
                          "n_reference": a["n"], "n_other": b["n"], "mean_reference": a["ours_mean"],
                          "std_reference": a["ours_std"], "mean_other": b["ours_mean"], "std_other": b["ours_std"],
                          "difference": b["ours_mean"] - a["ours_mean"], "ci_low": low, "ci_high": high, "p": p,
                          "verdict": verdict})
    return pd.DataFrame(lines, columns=ARITHMETIC_COLUMNS)
