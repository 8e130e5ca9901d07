"""The diff of our runs against the paper, one line per (row, metric), with a verdict.

* error metrics: `delta` = ours - paper, in percentage points. Our side is the best of
  our runs where the paper reports a best-of-N (ResNet-110), else the mean of our runs
  (the paper's other CIFAR numbers are single runs, whose expectation our mean estimates).
  |delta| <= tolerance["reproduced"] -> reproduced; <= tolerance["close"] -> close; else
  not reproduced. A row with the paper's mean±std is also reproduced when our mean lies
  within 2 std of the paper's mean. A lower bound ("more than 60%") is reproduced when our
  mean exceeds it.
* computed metrics (params, FLOPs): params reproduced when they round to the paper's
  figure, FLOPs when within 2%; close within 5%.
* not run: no finished run of the paper's recipe for that row. Smoke runs never earn a
  verdict against the paper: their numbers are shown, the verdict is "not run".
* provenance: runs on different data variants are never averaged (the row says so and
  gets no number; choose a variant); runs of different code versions, or with
  uncommitted changes, are averaged and the note names the versions.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from ..spec import Experiment, Row

DIFF_COLUMNS = ["row", "metric", "paper", "ours_best", "ours_mean", "ours_std", "n", "delta", "verdict", "note"]
VERDICTS = ("reproduced", "close", "not reproduced", "not run")
ERROR_METRICS = ("error", "top1_err", "top5_err")
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
    """The runs behind one row: same model, same recipe options, the chosen preset."""
    if not row.model:
        return runs.iloc[0:0]
    options = json.dumps(row.options, sort_keys=True)
    mask = (runs["model"] == row.model) & (runs["options"] == options) & (runs["preset"] == preset)
    return runs[mask]


def summarise(values: pd.Series) -> dict:
    values = values.dropna().astype(float)
    n = len(values)
    return {"ours_best": values.min() if n else math.nan, "ours_mean": values.mean() if n else math.nan,
            "ours_std": values.std(ddof=1) if n > 1 else math.nan, "n": n}


def error_verdict(row: Row, metric: str, stats: dict, tol: dict) -> tuple[float, str]:
    paper = row.paper[metric]
    if row.bound == "lower":
        delta = stats["ours_mean"] - paper
        return delta, "reproduced" if stats["ours_mean"] > paper else "not reproduced"
    best_of_n = row.seeds > 1
    ours = stats["ours_best"] if best_of_n else stats["ours_mean"]
    delta = ours - paper
    if abs(delta) <= tol["reproduced"]:
        return delta, "reproduced"
    mean, std = row.paper.get(f"{metric}_mean"), row.paper.get(f"{metric}_std")
    if mean is not None and std is not None and abs(stats["ours_mean"] - mean) <= 2 * std:
        return delta, "reproduced"
    return delta, "close" if abs(delta) <= tol["close"] else "not reproduced"


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
    """One line per (row, paper metric). `complexity`: model -> Complexity, for params/FLOPs."""
    lines = []
    for row in exp.rows:
        for metric, paper in row.paper.items():
            if metric.endswith(("_mean", "_std")):
                continue
            line = {"row": row.id, "metric": metric, "paper": paper, "note": row.note}
            if metric in ("params", "flops"):
                line.update(_computed_line(row, metric, paper, complexity or {}))
            elif row.ensemble:
                line.update(summarise(pd.Series(dtype=float)), delta=math.nan, verdict="not run",
                            note=_join(row.note, ENSEMBLE_NOTE))
            elif row.model is None:
                line.update(summarise(pd.Series(dtype=float)), delta=math.nan, verdict="not run",
                            note=_join(row.note, "quoted from the paper for comparison; not a model resbench trains"))
            else:
                line.update(_run_line(exp, row, metric, runs, preset))
            lines.append(line)
    return pd.DataFrame(lines, columns=DIFF_COLUMNS)


def _computed_line(row: Row, metric: str, paper: float, complexity: dict) -> dict:
    c = complexity.get(row.model)
    if c is None:
        return {**summarise(pd.Series(dtype=float)), "delta": math.nan, "verdict": "not run"}
    ours = c.params / 1e6 if metric == "params" else c.macs / 1e9
    return {"ours_best": ours, "ours_mean": ours, "ours_std": math.nan, "n": 0, "delta": ours - paper,
            "verdict": computed_verdict(metric, paper, ours),
            "note": _join(row.note, "computed from the model (fvcore), not trained")}


def _run_line(exp: Experiment, row: Row, metric: str, runs: pd.DataFrame, preset: str) -> dict:
    mine = row_runs(exp, row, runs, preset)
    if exp.dataset == "imagenet" and not (mine["status"] == "done").any():
        return {**summarise(pd.Series(dtype=float)), "delta": math.nan, "verdict": "not run",
                "note": _join(row.note, "no ImageNet run was made: ImageNet is not available on this project's machines")}
    finished = mine[mine["status"] == "done"]
    diverged = int((mine["status"] == "diverged").sum())
    notes = [row.note]
    if finished["data_variant"].nunique() > 1:
        variants = ", ".join(f"{v} x{n}" for v, n in finished["data_variant"].value_counts().sort_index().items())
        return {**summarise(pd.Series(dtype=float)), "delta": math.nan, "verdict": "not run",
                "note": _join(row.note, f"runs on different data ({variants}) are not averaged; "
                                        "report one with --data-variant")}
    versions = sorted(set(finished["git_commit"].fillna("unknown").str[:8]
                          + finished["git_dirty"].map({True: "+dirty"}).fillna("")))
    if len(versions) > 1:
        notes.append(f"averaged over runs of {len(versions)} code versions: {', '.join(versions)}")
    elif versions and versions[0].endswith("+dirty"):
        notes.append(f"code {versions[0]}: uncommitted changes")
    if diverged:
        notes.append(f"{diverged} diverged run(s) excluded")
    column = "test_error" if metric == "error" else metric  # CIFAR "error"; ImageNet top1_err, top5_err
    stats = summarise(finished[column] if len(finished) else pd.Series(dtype=float))
    if not stats["n"]:
        return {**stats, "delta": math.nan, "verdict": "not run", "note": _join(*notes, f"no finished {preset} run")}
    notes.extend(DATA_NOTES.get(v, v) for v in sorted(set(finished["data_variant"])))
    delta, verdict = error_verdict(row, metric, stats, exp.tolerance)
    if (finished["data_variant"] == "synthetic").any():
        verdict = "not run"  # a dry run of the code path, never compared with the paper
    if preset != "paper":
        verdict = "not run"
        notes.append(f"{preset} runs only ({int(finished['iterations'].iloc[0])} iterations): "
                     "they show the pipeline works, not the paper's recipe")
    return {**stats, "delta": delta, "verdict": verdict, "note": _join(*notes)}


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
