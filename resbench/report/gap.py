"""Is our gap to the paper the same at every depth? (the data's share of a gap)

The shared CIFAR-10 is re-encoded as JPEG q75. A cost the data puts on every model shows
as one offset: the same gap at every depth, up to seed noise. A gap that differs between
depths beyond that noise is something else (a recipe or a depth-specific problem).

Each depth's gap is our mean minus the paper's mean (its single run where it gives one).
Its noise is the seed std sigma (pooled over our rows with 2+ seeds) over both sides'
run counts: sigma * sqrt(1/n_ours + 1/n_paper). A gap is off when it lies more than 2
noise-std from the median gap (the median, so that one outlying depth does not drag the
others off with it). Consistency is evidence for a shared cost, not proof of where it
comes from.
"""
from __future__ import annotations

import math

import pandas as pd

from resbench.models import parse_model_name
from resbench.paper.declarations import Experiment

GAP_COLUMNS = ["row", "depth", "paper_mean", "paper_runs", "ours_mean", "n", "gap", "noise_std", "off"]


def applies(exp: Experiment) -> bool:
    """Experiments with the paper's error for models of several depths (Table 6)."""
    return sum(1 for r in exp.rows if r.model and "error" in r.paper) >= 2


def gap_by_depth(exp: Experiment, diff: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """(one line per depth with finished runs, a verdict sentence) from a report's diff."""
    lines = []
    for row in exp.rows:
        if not row.model or "error" not in row.paper:
            continue
        mine = diff[(diff["row"] == row.id) & (diff["metric"] == "error")]
        if mine.empty or not mine["n"].iloc[0] or pd.isna(mine["ours_mean"].iloc[0]):
            continue
        d = mine.iloc[0]
        paper_mean = row.paper.get("error_mean", row.paper["error"])
        lines.append({"row": row.id, "depth": parse_model_name(row.model).depth, "paper_mean": paper_mean,
                      "paper_runs": row.seeds, "ours_mean": d.ours_mean, "n": int(d.n),
                      "ours_std": d.ours_std, "gap": d.ours_mean - paper_mean})
    table = pd.DataFrame(lines, columns=[*GAP_COLUMNS, "ours_std"])
    if len(table) < 2:
        return table[GAP_COLUMNS], "needs finished paper-recipe runs at two depths or more"
    sigma = _pooled_std(table)
    median_gap = table["gap"].median()
    spread = f"gaps from {table['gap'].min():+.2f} to {table['gap'].max():+.2f} pp (median {median_gap:+.2f})"
    if math.isnan(sigma):
        return table[GAP_COLUMNS], (f"{spread}; seed noise unknown, every row has one run: run --seeds 2 or "
                                    "more to tell one data-wide offset from depth-specific misses")
    table["noise_std"] = sigma * (1 / table["n"] + 1 / table["paper_runs"]) ** 0.5
    table["off"] = (table["gap"] - median_gap).abs() > 2 * table["noise_std"]
    if table["off"].any():
        off = ", ".join(f"depth {d} ({g:+.2f})" for d, g in table.loc[table["off"], ["depth", "gap"]].values)
        return table[GAP_COLUMNS], (f"depth-specific: {spread}; {off} lie more than 2 noise-std (seed std "
                                    f"{sigma:.2f}) from the median gap, which one data-wide offset does not explain")
    return table[GAP_COLUMNS], (f"one offset: {spread}, every depth within 2 noise-std (seed std {sigma:.2f}) of "
                                "the median: consistent with a cost the data puts on every depth (e.g. JPEG q75)")


def _pooled_std(table: pd.DataFrame) -> float:
    """Seed std pooled over the rows with 2+ runs (weights: their degrees of freedom)."""
    multi = table[table["n"] > 1]
    if multi.empty:
        return math.nan
    dof = multi["n"] - 1
    return float(((dof * multi["ours_std"] ** 2).sum() / dof.sum()) ** 0.5)
