"""The diff of our runs against the paper, one line per (row, metric, tier), with a verdict.

* tier (`resbench.protocol`): `exact` when our runs' data, BN statistics and recipe are the
  paper's (their arithmetic named: `exact (fp32)`, `exact (bf16+TF32)`), else `proxy: <the
  departures>`. Runs of different tiers are never averaged: each tier gets its own line.
  Only exact lines get reproduced / close / not reproduced. A proxy line shows its numbers,
  delta and interval, and its verdict is `proxy`: it says nothing about whether the paper's
  number was reproduced (the JPEG q75 data here makes every CIFAR-10 run a proxy).
* error metrics, in percentage points: ours is the mean over seeds (n, std, standard error),
  and `delta` = our mean - the paper's number. For the paper's single runs:
  - n >= 2: reproduced when the paper's number lies inside our 95% prediction interval for
    one new run (mean +- t(0.975, n-1) * std * sqrt(1 + 1/n)); else close when |delta| <=
    tolerance["close"]; else not reproduced. The interval is the noise our own seeds show.
  - n = 1: one seed is not enough for more than a tolerance check: reproduced when |delta| <=
    max(tolerance["reproduced"], 2 * sqrt(2) * the test-set sampling error of the paper's
    number, e.g. 0.80 pp at 8.75% on 10,000 images); close within tolerance["close"].
  ResNet-110, whose paper number is the best of 5 runs (mean 6.61 +- 0.16): `ours_best` is the
  best of exactly our seeds 0-4 (`best of 5` needs all five; with fewer the line says so) and
  `delta` is that best minus the paper's best; the verdict compares the means: reproduced when
  Welch's t-test finds no difference between our mean +- std and the paper's (two-sided p >=
  0.05, n >= 2), else close / not reproduced by the means' difference; with n = 1, the
  tolerance check against the paper's mean. A lower bound ("more than 60%") is reproduced
  when our mean exceeds it.
* computed metrics (params, FLOPs): params reproduced when they round to the paper's
  figure, FLOPs when within 2%; close within 5%.
* not run: no finished run of the paper's recipe for that row. Demo and smoke runs never
  earn a verdict against the paper: their numbers are shown, the verdict is "not run".
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
                "pi_low", "pi_high", "verdict", "check", "note"]
VERDICTS = ("reproduced", "close", "not reproduced", "proxy", "not run")
ERROR_METRICS = ("error", "top1_err", "top5_err")
TEST_IMAGES = {"cifar": 10_000, "imagenet": 50_000}  # the paper's test sets, for its numbers' sampling error
BEST_OF = 5  # ResNet-110's protocol: the best of 5 runs
DATA_NOTES = {
    "cifar10-jpeg-q75": "trained and tested on CIFAR-10 re-encoded as JPEG q75, not the paper's lossless images",
    "cifar10-original": "original CIFAR-10, as the paper",
    "synthetic": "synthetic test data: not comparable with the paper",
    "imagenet": "ImageNet train/val folders",
}

ENSEMBLE_NOTE = ("the paper's number is from the ILSVRC test server, which resbench cannot reach; "
                 "`resbench ensemble RUN_DIR...` tests an ensemble of ImageNet runs on val. "
                 "No ImageNet run was made: ImageNet is not available on this project's machines")


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
    return {**stats.spread([]), "delta": math.nan, "pi_low": math.nan, "pi_high": math.nan, "verdict": verdict,
            "check": "", **extra}


def error_verdict(exp: Experiment, row: Row, metric: str, spread: dict) -> dict:
    """delta, interval, verdict and the check that decided it, for an exact tier (see the module docstring)."""
    tol, paper, n = exp.tolerance, row.paper[metric], spread["n"]
    low, high = stats.prediction_interval(spread["ours_mean"], spread["ours_std"], n)
    line = {"delta": spread["ours_mean"] - paper, "pi_low": low, "pi_high": high}

    def by_tolerance(delta: float, reproduced: float, why: str) -> dict:
        verdict = "reproduced" if abs(delta) <= reproduced else \
            "close" if abs(delta) <= tol["close"] else "not reproduced"
        return {**line, "verdict": verdict, "check": f"|{delta:+.2f}| vs tolerance {reproduced:.2f} ({why})"}

    if row.bound == "lower":
        return {**line, "verdict": "reproduced" if spread["ours_mean"] > paper else "not reproduced",
                "check": f"mean {spread['ours_mean']:.2f} above the paper's bound {paper}? (n = {n})"}
    noise = 2 * math.sqrt(2) * stats.sampling_se(paper, TEST_IMAGES[exp.dataset])
    if row.seeds > 1:  # ResNet-110: the paper's best of 5, and its mean +- std
        mean, std = row.paper.get(f"{metric}_mean"), row.paper.get(f"{metric}_std")
        if mean is None or std is None or n < 2:
            return by_tolerance(spread["ours_mean"] - (mean or paper), max(tol["reproduced"], noise),
                                f"one seed vs the paper's {'mean' if mean else 'number'}: tolerance check only")
        p = stats.means_differ(spread, mean, std, row.seeds)
        if p >= stats.ALPHA:
            verdict = "reproduced"
        else:
            verdict = "close" if abs(spread["ours_mean"] - mean) <= tol["close"] else "not reproduced"
        return {**line, "verdict": verdict,
                "check": f"Welch's t, our mean {spread['ours_mean']:.2f}+-{spread['ours_std']:.2f} (n = {n}) vs the "
                         f"paper's {mean}+-{std} (n = {row.seeds}): p = {p:.3f}"}
    if n == 1:
        return by_tolerance(line["delta"], max(tol["reproduced"], noise),
                            "one seed: tolerance check only; the tolerance covers both tests' sampling error")
    inside = low <= paper <= high
    verdict = "reproduced" if inside else "close" if abs(line["delta"]) <= tol["close"] else "not reproduced"
    return {**line, "verdict": verdict,
            "check": f"paper {paper} {'inside' if inside else 'outside'} our 95% prediction interval "
                     f"[{low:.2f}, {high:.2f}] (n = {n})"}


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
                lines.append({**base, "tier": "", **_empty(), "note": _join(row.note, ENSEMBLE_NOTE)})
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
        return [{"tier": "", **_empty(), "note": _join(
            row.note, "no ImageNet run was made: ImageNet is not available on this project's machines")}]
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
            line.update(ours_best=float(first.min()), delta=float(first.min()) - row.paper[metric])
        else:
            line.update(ours_best=math.nan)
            notes.append(f"best of {BEST_OF} needs seeds 0-{BEST_OF - 1}; {len(first)} of them finished, "
                         "so delta is our mean - the paper's best")
    if preset != "paper":
        line["verdict"] = "not run"
        notes.append(f"{preset} runs only ({int(runs['iterations'].iloc[0]):,} iterations): "
                     "they show the pipeline works, not the paper's recipe")
    elif not is_exact(tier):
        line["verdict"] = "proxy"
        notes.append("proxy comparison: says nothing about whether the paper's number was reproduced")
    return {**line, "note": _join(*notes)}


def _join(*parts) -> str:
    return "; ".join(p for p in parts if p)
