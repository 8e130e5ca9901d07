"""The diff of our runs against the paper, one line per (row, metric, tier), with a verdict.

* tier (`resbench.paper.tiers`): `exact` when our runs' data, BN statistics and recipe are the
  paper's (their arithmetic named: `exact (fp32)`, `exact (bf16+TF32)`), else `proxy: <the
  departures>`. Runs of different tiers are never averaged: each tier gets its own line.
  Only exact lines get a verdict against the paper. A proxy line shows its numbers, delta and
  interval, and its verdict is `proxy`: it says nothing about whether the paper's number was
  reproduced (JPEG q75 data, a compressed schedule: each makes a run a proxy).
* error metrics, in percentage points: ours is the mean over seeds (n, std, standard error),
  `delta` = our mean - `reference` (the paper's number; for ResNet-110, whose number is the
  best of 5 runs, their mean 6.61, the paper column keeping its best 6.43), and
  [delta_low, delta_high] its 95% confidence interval. **The test: two one-sided tests at 2.5%
  each, read from that 95% CI: reproduced when it lies inside +-tolerance (0.5 pp), not
  reproduced when it lies wholly outside, otherwise inconclusive**, with about how many seeds
  at the same mean and std would decide, or that none can.
  The interval over n >= 2 seeds is t-based (mean +- t(0.975, n-1) * std / sqrt(n)). One seed
  cannot show its own spread: its interval is the t interval at the seed-to-seed std pooled over
  every group of >= 2 runs that differ only in seed among the runs read (a network in one tier,
  `stats.Noise`; the report names the std, its groups and degrees of freedom), on those degrees
  of freedom. It can be far enough off to be not reproduced, and is never reproduced; with no
  group to pool from it has no interval and is inconclusive. Where the paper's number is itself a mean over runs
  (ResNet-110: 6.61 +- 0.16 over 5), its own 95% half-width (0.20 pp) adds to ours in
  quadrature: a floor no number of our seeds removes, so a mean within 0.20 pp of the margin
  stays inconclusive. At a fixed mean and std the interval narrows as n grows (from one seed on
  where two seeds at that std give no wider an interval than the pooled one, else from two:
  a second seed replaces the borrowed spread by its own, on 1 degree of freedom), so more seeds can move a verdict
  out of inconclusive, never back into it and never across (a property test checks it for every
  declared row over a grid of means, stds and n).
  `ours_best` is the best of exactly our seeds 0-4 for ResNet-110 (`best of 5` needs all five).
  A lower bound ("more than 60%") is reproduced when the interval of our mean lies wholly above
  it, not reproduced when wholly below.
* computed metrics (params, FLOPs): params reproduced when they round to the paper's
  figure, FLOPs when within 2%; close within 5%.
* not run: no finished run of the paper's recipe for that row. Demo and smoke runs never
  earn a verdict against the paper: their numbers are shown, the verdict names the preset
  ("demo", "smoke").
* provenance: runs of different code versions, or with uncommitted changes, are averaged
  and the note names the versions.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from resbench.models import canonical_name
from resbench.paper.tiers import is_exact
from resbench.paper.declarations import Experiment, Row
from resbench.report import stats

DIFF_COLUMNS = ["row", "metric", "tier", "paper", "reference", "ours_best", "ours_mean", "ours_std", "ours_se", "n",
                "delta", "delta_low", "delta_high", "verdict", "check", "note"]  # reference: what delta is taken against
VERDICTS = ("reproduced", "close", "not reproduced", "inconclusive", "proxy", "demo", "smoke", "not run")  # close:
# computed only; demo, smoke: runs of those presets, shown and never judged
ERROR_METRICS = ("error", "top1_err", "top5_err")
BEST_OF = 5  # ResNet-110's protocol: the best of 5 runs
DATA_NOTES = {
    "cifar10-jpeg-q75": "trained and tested on CIFAR-10 re-encoded as JPEG q75, not the paper's lossless images",
    "cifar10-original": "original CIFAR-10, as the paper",
    "synthetic": "synthetic test data: not comparable with the paper",
    "imagenet": "ImageNet train/val folders",
}

NO_IMAGENET_RUN = "no finished ImageNet run among the runs read"
ENSEMBLE_NOTE = ("the paper's number is from the ILSVRC test server, which resbench cannot reach; "
                 "`resbench ensemble RUN_DIR...` tests an ensemble of finished ImageNet runs on val")


def row_runs(exp: Experiment, row: Row, runs: pd.DataFrame, preset: str) -> pd.DataFrame:
    """The runs behind one row: same network, the row's recipe options, the chosen preset.
    Runs with --set overrides belong to the row too, as proxies (their tier says so)."""
    if not row.model:
        return runs.iloc[0:0]
    options = json.dumps(row.options, sort_keys=True)
    model = runs["model"].map(canonical_name) if len(runs) else runs["model"]
    mask = (model == canonical_name(row.model)) & (runs["options"] == options) & (runs["preset"] == preset)
    return runs[mask]


def metric_column(exp: Experiment, metric: str) -> str:
    """The run column a paper metric is compared with: CIFAR "error" is the test error; ImageNet
    errors are read under the experiment's test protocol (every run was tested with each)."""
    return "test_error" if metric == "error" else f"{metric}_{exp.test}"


def code_versions(runs: pd.DataFrame) -> list[str]:
    """The git commits the runs were trained at (8 characters), "+dirty" for uncommitted changes."""
    dirty = runs["git_dirty"].map({True: "+dirty"}).fillna("")
    return sorted(set(runs["git_commit"].fillna("unknown").str[:8] + dirty))


def _empty(verdict: str = "not run", **extra) -> dict:
    return {**stats.spread([]), "delta": math.nan, "delta_low": math.nan, "delta_high": math.nan, "verdict": verdict,
            "check": "", **extra}


def error_verdict(exp: Experiment, row: Row, metric: str, spread: dict, noise: stats.Noise = stats.NO_NOISE) -> dict:
    """delta, its 95% interval, verdict and the check that decided it (see the module docstring); `noise`:
    the pooled spread one seed is judged at."""
    tol, n, mean, std = exp.tolerance["reproduced"], spread["n"], spread["ours_mean"], spread["ours_std"]
    reference, reference_std = row.paper.get(f"{metric}_mean"), row.paper.get(f"{metric}_std")
    paired = row.seeds > 1 and reference is not None and reference_std is not None
    reference = reference if paired else row.paper[metric]
    low, high = stats.difference_ci(mean - reference, std, n, reference_std if paired else None, row.seeds,
                                    noise=noise)
    how = f"95% CI over our {n} seeds" if n >= 2 else f"one seed, 95% t interval at {noise}"
    if paired:
        how += f", with the paper's {reference}+-{reference_std} over {row.seeds} runs"
    delta = mean - reference
    line = {"reference": reference, "delta": delta, "delta_low": low, "delta_high": high}
    if row.bound == "lower":
        verdict = "reproduced" if low > 0 else "not reproduced" if high < 0 else "inconclusive"
        check = f"our mean {mean:.2f}, {how}: [{low + reference:.2f}, {high + reference:.2f}] vs the bound {reference}"
    else:
        verdict = stats.equivalence((low, high), tol, n)
        check = f"delta {delta:+.2f} against {reference}, {how}: [{low:+.2f}, {high:+.2f}] vs +-{tol}"
    if verdict == "inconclusive" and row.bound is None:
        paper_floor = stats.floor(reference_std, row.seeds) if paired else 0.0
        needed = stats.seeds_needed(delta, std if n >= 2 else noise.std, tol, paper_floor)
        check += ": inconclusive (n = 1: no spread to judge it at; a second seed gives one)" if n == 1 and \
            not noise.dof else f": inconclusive (n = {n}, " + (
            f"need about {needed} seeds)" if needed and needed > n else
            "no number of seeds can decide: the paper's own spread reaches past the margin)"
            if paper_floor >= abs(abs(delta) - tol) else "a mean this close to the tolerance needs many more seeds)")
    return {**line, "verdict": verdict, "check": check}


def computed_verdict(metric: str, paper: float, ours: float) -> str:
    if metric == "params":
        decimals = len(repr(paper).split(".")[1]) if "." in repr(paper) else 0
        if round(ours, decimals) == paper:
            return "reproduced"
    elif abs(ours / paper - 1) <= 0.02:
        return "reproduced"
    return "close" if abs(ours / paper - 1) <= 0.05 else "not reproduced"


def diff_table(exp: Experiment, runs: pd.DataFrame, preset: str = "paper",
               complexity: dict | None = None, noise_runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One line per (row, paper metric, tier). `complexity`: model -> Complexity, for params/FLOPs;
    `noise_runs`: the runs one seed's spread is pooled from (`stats.seed_noise`; default: `runs`)."""
    lines = []
    for row in exp.rows:
        for metric, paper in row.paper.items():
            if metric.endswith(("_mean", "_std")):
                continue
            base = {"row": row.id, "metric": metric, "paper": paper, "note": row.note}
            if metric in ("params", "flops"):
                lines.append({**base, "tier": "computed", **_computed_line(row, metric, paper, complexity or {})})
            elif row.ensemble:
                imagenet = len(runs) and ((runs["dataset"] == "imagenet") & (runs["status"] == "done")).any()
                lines.append({**base, "tier": "", **_empty(),
                              "note": _join(row.note, ENSEMBLE_NOTE, "" if imagenet else NO_IMAGENET_RUN)})
            elif row.model is None:
                lines.append({**base, "tier": "", **_empty(), "note": _join(
                    row.note, "quoted from the paper for comparison; not a model resbench trains")})
            else:
                noise = stats.seed_noise(runs if noise_runs is None else noise_runs, metric_column(exp, metric))
                lines += [{**base, **line} for line in _run_lines(exp, row, metric, runs, preset, noise)]
    return pd.DataFrame(lines, columns=DIFF_COLUMNS)


def _computed_line(row: Row, metric: str, paper: float, complexity: dict) -> dict:
    c = complexity.get(row.model)
    if c is None:
        return _empty()
    ours = c.params / 1e6 if metric == "params" else c.macs / 1e9
    return {**_empty(computed_verdict(metric, paper, ours)), "ours_best": ours, "ours_mean": ours, "n": 0,
            "delta": ours - paper, "note": _join(row.note, "computed from the model (fvcore), not trained")}


def _run_lines(exp: Experiment, row: Row, metric: str, runs: pd.DataFrame, preset: str,
               noise: stats.Noise = stats.NO_NOISE) -> list[dict]:
    """One line per tier of the row's finished runs (exact tiers first), or one 'not run' line."""
    mine = row_runs(exp, row, runs, preset)
    if exp.dataset == "imagenet" and not (mine["status"] == "done").any():
        return [{"tier": "", **_empty(), "note": _join(row.note, NO_IMAGENET_RUN)}]
    finished = mine[mine["status"] == "done"]
    diverged = int((mine["status"] == "diverged").sum())
    if finished.empty:
        return [{"tier": "", **_empty(), "note": _join(
            row.note, f"no finished {preset} run", diverged and f"{diverged} diverged run(s) excluded")}]
    tiers = sorted(finished["tier"].unique(), key=lambda t: (not is_exact(t), t))
    return [_tier_line(exp, row, metric, finished[finished["tier"] == t], t, preset, diverged, noise) for t in tiers]


def _tier_line(exp: Experiment, row: Row, metric: str, runs: pd.DataFrame, tier: str, preset: str,
               diverged: int, noise: stats.Noise = stats.NO_NOISE) -> dict:
    notes = [row.note]
    versions = code_versions(runs)
    if len(versions) > 1:
        notes.append(f"averaged over runs of {len(versions)} code versions: {', '.join(versions)}")
    elif versions and versions[0].endswith("+dirty"):
        notes.append(f"code {versions[0]}: uncommitted changes")
    if diverged:
        notes.append(f"{diverged} diverged run(s) excluded")
    notes.extend(DATA_NOTES.get(v, v) for v in sorted(set(runs["data_variant"])))
    values = runs.sort_values("seed")[metric_column(exp, metric)]
    spread = stats.spread(values)
    line = {"tier": tier, **spread, **error_verdict(exp, row, metric, spread, noise)}
    if row.seeds > 1 and row.bound is None:  # the paper's best of N: ours over exactly seeds 0..N-1
        first = runs[runs["seed"] < BEST_OF].sort_values("seed")[metric_column(exp, metric)].dropna()
        if len(first) == BEST_OF:
            line.update(ours_best=float(first.min()))
            notes.append(f"best of seeds 0-{BEST_OF - 1}: {first.min():.2f} vs the paper's best {row.paper[metric]}")
        else:
            line.update(ours_best=math.nan)
            notes.append(f"best of {BEST_OF} needs seeds 0-{BEST_OF - 1}; {len(first)} of them finished")
    if preset != "paper":
        line["verdict"] = preset
        notes.append(f"{preset} runs only ({int(runs['iterations'].iloc[0]):,} iterations): "
                     "they show the pipeline works, not the paper's recipe")
    elif not is_exact(tier):
        line["verdict"] = "proxy"
        notes.append("proxy comparison: says nothing about whether the paper's number was reproduced")
    return {**line, "note": _join(*notes)}


def _join(*parts) -> str:
    return "; ".join(p for p in parts if p)
