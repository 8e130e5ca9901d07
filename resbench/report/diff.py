"""The diff of our runs against the paper, one line per (row, metric, tier), with a verdict.

* tier (`resbench.protocol`): `exact` when our runs' data, BN statistics and recipe are the
  paper's (their arithmetic named: `exact (fp32)`, `exact (bf16+TF32)`), else `proxy: <the
  departures>`. Runs of different tiers are never averaged: each tier gets its own line.
  Only exact lines get a verdict against the paper. A proxy line shows its numbers, delta and
  interval, and its verdict is `proxy`: it says nothing about whether the paper's number was
  reproduced (JPEG q75 data, a compressed schedule: each makes a run a proxy).
* error metrics, in percentage points: ours is the mean over seeds (n, std, standard error),
  `delta` = our mean - the paper's number, and [delta_low, delta_high] its 95% confidence
  interval. The verdict is an equivalence test (two one-sided tests) on that interval:
  reproduced when it lies inside +-tolerance["reproduced"], not reproduced when it lies wholly
  outside, otherwise inconclusive, with about how many seeds at the same mean and std would
  decide. The interval is t-based over our seeds (n >= 2: mean +- t(0.975, n-1) * std /
  sqrt(n)); with one seed it is the test set's sampling error alone (+- 1.96 * sqrt(p(1-p)/N):
  0.55 pp at 8.75% on 10,000 images), a lower bound on the run-to-run noise. From two seeds
  on, more seeds at the same mean and spread narrow the interval: they can move a verdict out
  of inconclusive, never back into it, and never from reproduced to not reproduced or back.
  A second seed replaces the sampling error by the seeds' measured spread, so it can leave a
  one-seed verdict inconclusive; it cannot turn it to the other side.
  ResNet-110, whose paper number is the best of 5 runs with their mean +- std (6.61 +- 0.16):
  the interval is Welch's, of our mean minus the paper's mean, and the same test decides (a
  Welch p >= 0.05 alone is no evidence of reproduction). `ours_best` is the best of exactly
  our seeds 0-4 (`best of 5` needs all five; with fewer the line says so). A lower bound
  ("more than 60%") is reproduced when the interval of our mean lies wholly above it, not
  reproduced when wholly below.
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

from ..models import canonical_name
from ..protocol import is_exact
from ..spec import Experiment, Row
from . import stats

DIFF_COLUMNS = ["row", "metric", "tier", "paper", "ours_best", "ours_mean", "ours_std", "ours_se", "n", "delta",
                "delta_low", "delta_high", "verdict", "check", "note"]
VERDICTS = ("reproduced", "close", "not reproduced", "inconclusive", "proxy", "demo", "smoke", "not run")  # close:
# computed only; demo, smoke: runs of those presets, shown and never judged
ERROR_METRICS = ("error", "top1_err", "top5_err")
TEST_IMAGES = {"cifar": 10_000, "imagenet": 50_000}  # the paper's test sets, for its numbers' sampling error
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


def error_verdict(exp: Experiment, row: Row, metric: str, spread: dict) -> dict:
    """delta, its 95% interval, verdict and the check that decided it (see the module docstring)."""
    tol, n, mean, std = exp.tolerance["reproduced"], spread["n"], spread["ours_mean"], spread["ours_std"]
    reference, reference_std = row.paper.get(f"{metric}_mean"), row.paper.get(f"{metric}_std")
    if row.seeds > 1 and reference is not None and reference_std is not None and n >= 2:
        low, high = stats.welch_ci(mean, std, n, reference, reference_std, row.seeds)
        how = f"Welch's 95% CI of our mean (n = {n}) - the paper's {reference}+-{reference_std} (n = {row.seeds})"
    else:
        reference = reference if reference is not None else row.paper[metric]
        if n >= 2:
            low, high = (x - reference for x in stats.mean_ci(mean, std, n))
            how = f"95% CI over our {n} seeds"
        else:
            half = 1.96 * stats.sampling_se(mean, TEST_IMAGES[exp.dataset])
            low, high = mean - reference - half, mean - reference + half
            how = "one seed: 95% CI from the test set's sampling error alone"
    delta = mean - reference
    line = {"delta": delta, "delta_low": low, "delta_high": high}
    if row.bound == "lower":
        verdict = "reproduced" if low > 0 else "not reproduced" if high < 0 else "inconclusive"
        check = f"our mean {mean:.2f}, {how}: [{low + reference:.2f}, {high + reference:.2f}] vs the bound {reference}"
    else:
        verdict = stats.equivalence((low, high), tol)
        check = f"delta {delta:+.2f}, {how}: [{low:+.2f}, {high:+.2f}] vs +-{tol}"
    if verdict == "inconclusive" and row.bound is None:
        noise = std if n >= 2 else (high - low) / 2 / 1.96  # one seed: the sampling error stands in
        needed = stats.seeds_needed(delta, noise, tol)
        check += f": inconclusive (n = {n}, " + (f"need about {needed} seeds)" if needed and needed > n else
                                                  "a mean this close to the tolerance needs many more seeds)")
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
               complexity: dict | None = None) -> pd.DataFrame:
    """One line per (row, paper metric, tier). `complexity`: model -> Complexity, for params/FLOPs."""
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
                lines += [{**base, **line} for line in _run_lines(exp, row, metric, runs, preset)]
    return pd.DataFrame(lines, columns=DIFF_COLUMNS)


def _computed_line(row: Row, metric: str, paper: float, complexity: dict) -> dict:
    c = complexity.get(row.model)
    if c is None:
        return _empty()
    ours = c.params / 1e6 if metric == "params" else c.macs / 1e9
    return {**_empty(computed_verdict(metric, paper, ours)), "ours_best": ours, "ours_mean": ours, "n": 0,
            "delta": ours - paper, "note": _join(row.note, "computed from the model (fvcore), not trained")}


def _run_lines(exp: Experiment, row: Row, metric: str, runs: pd.DataFrame, preset: str) -> list[dict]:
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
    return [_tier_line(exp, row, metric, finished[finished["tier"] == t], t, preset, diverged) for t in tiers]


def _tier_line(exp: Experiment, row: Row, metric: str, runs: pd.DataFrame, tier: str, preset: str,
               diverged: int) -> dict:
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
    line = {"tier": tier, **spread, **error_verdict(exp, row, metric, spread)}
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
