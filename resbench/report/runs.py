"""Run directories as DataFrames, for reports and `resbench status`: one row per run, its curves, its Fig. 7 probe.

The store (`resbench.runs.store`) holds and reads run directories; this turns a folder of them into
tables: config, provenance, summary and state per run (`load_runs`), every metrics record
(`load_curves`), every probe reading (`load_responses`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from resbench.paper.tiers import IMAGENET_TESTS, tier
from resbench.runs.rundir import (last_error, reached, read_config, read_env, read_metrics, read_repeat,
                                  read_responses, read_summary, repeat_dirs, run_dirs)
from resbench.runs.store import ENDED, eta_s, run_state

IMAGENET_COLUMNS = [f"{metric}_{test}" for test in IMAGENET_TESTS for metric in ("top1_err", "top5_err")]
RUN_COLUMNS = ["run", "dir", "model", "preset", "seed", "key", "options", "overrides", "tier", "data_variant",
               "precision", "tf32", "iterations", "git_commit", "git_dirty", "gpu", "torch", "status", "test_error",
               "train_error", "iteration", "train_s", "img_per_s", "eta_s", "params", *IMAGENET_COLUMNS, "fused_with",
               "note", "budget", "cpu", "devices", "dataset", "family"]


DEVICES_SEP = "; "  # between the machines of a run's legs, in its "devices" column


def devices(env: dict, records: list[dict]) -> list[str]:
    """Every machine a run trained on, in order: where it started (env.json), then where each resume ran
    (its `resumed` event among the metrics `records`; those written before 2026-12-03 named a GPU but no CPU)."""
    legs = [env.get("gpu") or env.get("cpu") or "CPU"]
    legs += [e.get("gpu") or e.get("cpu") or "an unrecorded machine" for e in records if e.get("event") == "resumed"]
    return list(dict.fromkeys(legs))


def load_runs(root: str | os.PathLike) -> pd.DataFrame:
    """One row per run under `root` (none if it does not exist): config, provenance, summary.

    `status` is the run's state (see `resbench.runs.store`); `iteration` is where an
    unfinished run has got to; `note` says why a run failed or diverged; `tier` is how it
    departs from the paper's protocol (`resbench.paper.tiers`); ImageNet runs have their errors
    under every test protocol (`top1_err_10crop`, ...).
    """
    rows = []
    for d in run_dirs(Path(root)):
        cfg = read_config(d)
        env, summary, records = read_env(d), read_summary(d), read_metrics(d)
        summary["status"] = run_state(d)
        if summary["status"] == "done" and summary.get("train_error") is None:
            # older code left it out of a run resumed at its last iteration; the run's log has it
            summary["train_error"] = last_error(records)
        iteration = summary.get("iteration") or reached(records)
        rows.append({
            "run": d.name, "dir": str(d), "model": cfg["model"], "preset": cfg["preset"], "seed": cfg["seed"],
            "key": cfg["key"], "options": json.dumps(cfg["options"], sort_keys=True),
            "overrides": json.dumps(cfg.get("overrides", {}), sort_keys=True), "tier": tier(cfg),
            "data_variant": cfg["data"]["variant"], "precision": cfg["precision"], "tf32": cfg.get("tf32", False),
            "iterations": cfg["recipe"]["iterations"],
            "git_commit": env.get("git", {}).get("commit"), "git_dirty": env.get("git", {}).get("dirty"),
            "gpu": env.get("gpu"), "torch": env.get("torch"),
            **{k: summary.get(k) for k in ("status", "test_error", "train_error", "train_s", "img_per_s",
                                           "params")},
            **{f"{metric}_{test}": summary.get("tests", {}).get(test, {}).get(metric)
               for test in IMAGENET_TESTS for metric in ("top1_err", "top5_err")},
            "iteration": iteration,
            "fused_with": summary.get("fused_with", env.get("fused_with", [])),  # the runs trained with it
            "note": summary.get("error") or summary.get("reason"),
            "eta_s": None if summary["status"] in ENDED else eta_s(
                d, cfg["recipe"]["iterations"] - iteration,
                cfg["recipe"]["batch_size"], summary.get("img_per_s")),
            "budget": cfg.get("budget", "1"), "cpu": env.get("cpu"), "devices": DEVICES_SEP.join(devices(env, records)),
            "dataset": "imagenet" if "bn_group" in cfg["recipe"] else "cifar",
            "family": tier({**cfg, "budget": "1"}),  # the tier but for the schedule's budget
        })
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def load_curves(root: str | os.PathLike) -> pd.DataFrame:
    """All metrics records of all runs, long format: run, model, seed, record (train, test, ...), iter, error, ..."""
    frames = []
    for d in run_dirs(Path(root)):
        records = read_metrics(d)
        if records:
            cfg = read_config(d)
            df = pd.DataFrame(records)
            frames.append(df.assign(run=d.name, model=cfg["model"], seed=cfg["seed"], preset=cfg["preset"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_responses(root: str | os.PathLike) -> pd.DataFrame:
    """Fig. 7 probe output of all runs: run, model, seed, layer, name, std."""
    frames = []
    for d in run_dirs(Path(root)):
        responses = read_responses(d)
        if responses is not None:
            cfg = read_config(d)
            df = pd.DataFrame(responses)
            frames.append(df.assign(run=d.name, model=cfg["model"], seed=cfg["seed"], preset=cfg["preset"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


REPEAT_COLUMNS = ["run", "repeat", "device", "train_points", "train_identical", "test_points", "test_error_identical",
                  "max_test_loss_diff", "test_error", "repeat_test_error"]


def load_repeats(root: str | os.PathLike) -> pd.DataFrame:
    """Runs trained again (`<run>/repeats/<name>/`: the repeat's metrics.jsonl, summary.json, repeat.json),
    each compared with its run: how many logged training losses are identical to the last bit, how
    many test evaluations agree, and the final test errors."""
    rows = []
    for run, again in repeat_dirs(Path(root)):
        mine, theirs = ({kind: read_metrics(d, kind) for kind in ("train", "test")} for d in (run, again))
        train = [(r["iter"], r["loss"]) for r in mine["train"]], [(r["iter"], r["loss"]) for r in theirs["train"]]
        test = list(zip(mine["test"], theirs["test"]))
        about = read_repeat(again)
        rows.append({"run": run.name, "repeat": again.name, "device": about.get("device"),
                     "train_points": len(train[0]), "train_identical": sum(a == b for a, b in zip(*train))
                     if len(train[0]) == len(train[1]) else 0, "test_points": len(test),
                     "test_error_identical": sum(a["error"] == b["error"] for a, b in test),
                     "max_test_loss_diff": max((abs(a["loss"] - b["loss"]) for a, b in test), default=None),
                     "test_error": read_summary(run).get("test_error"),
                     "repeat_test_error": read_summary(again).get("test_error")})
    return pd.DataFrame(rows, columns=REPEAT_COLUMNS)

