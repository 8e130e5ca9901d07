"""What this data costs a trainer with published numbers (`resbench calibrate`), beside the verdicts.

A calibration run trains airbench's own recipe, unchanged, on the data the runs read; its test
error minus airbench's published error on the original CIFAR-10 is the data's penalty to a
trainer nobody here tuned. The interval is the 95% t interval of our mean over seeds; the
published mean is taken as exact (a mean over 200 to 1,000 runs). One seed has no interval.
Shown, never applied: every verdict stays against the paper's own number.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from resbench.runs.rundir import CALIBRATION_FOLDER, read_config, read_env, read_summary, run_dirs
from resbench.report import stats

CALIBRATION_COLUMNS = ["peer", "data_variant", "n", "mean_error", "std", "published_error", "published_runs",
                       "penalty", "ci_low", "ci_high", "gpus", "commits"]


def load_calibration(runs_root: str | os.PathLike) -> pd.DataFrame:
    """One row per finished calibration run under `runs_root`/calibration."""
    return load_calibration_runs(Path(runs_root) / CALIBRATION_FOLDER)


def load_calibration_runs(folder: str | os.PathLike) -> pd.DataFrame:
    """One row per finished calibration run in `folder` (`resbench calibrate --runs R` writes R/calibration)."""
    rows = []
    for run in run_dirs(Path(folder)):
        summary = read_summary(run)
        if summary.get("status") != "done":
            continue
        config, env = read_config(run), read_env(run)
        rows.append({"run": run.name, "peer": config["peer"], "seed": config["seed"],
                     "data_variant": config["data"].get("variant"), "test_error": summary["test_error"],
                     "published_error": config["published"]["error"], "published_runs": config["published"]["runs"],
                     "gpu": summary.get("gpu") or env.get("gpu"), "commit": env.get("git", {}).get("commit")})
    return pd.DataFrame(rows, columns=["run", "peer", "seed", "data_variant", "test_error", "published_error",
                                       "published_runs", "gpu", "commit"])


def calibration_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per (peer, data variant): our mean error over seeds, the published one, the penalty, its CI."""
    lines = []
    for (peer, variant), group in runs.groupby(["peer", "data_variant"], sort=True):
        s = stats.spread(group["test_error"])
        published = float(group["published_error"].iloc[0])
        low, high = stats.mean_ci(s["ours_mean"], s["ours_std"], s["n"])
        lines.append({"peer": peer, "data_variant": variant, "n": s["n"], "mean_error": s["ours_mean"],
                      "std": s["ours_std"], "published_error": published,
                      "published_runs": int(group["published_runs"].iloc[0]), "penalty": s["ours_mean"] - published,
                      "ci_low": low - published, "ci_high": high - published,
                      "gpus": ", ".join(sorted(set(group["gpu"].dropna()))),
                      "commits": ", ".join(sorted({str(c)[:8] for c in group["commit"].dropna()}))})
    return pd.DataFrame(lines, columns=CALIBRATION_COLUMNS)


def penalty_text(line: pd.Series) -> str:
    """'+0.44 ± 0.05 pp (95% CI, 10 seeds)', or '+0.44 pp (one seed: no interval)'."""
    if math.isnan(line["ci_low"]):
        return f"{line['penalty']:+.2f} pp (one seed: no interval)"
    return f"{line['penalty']:+.2f} ± {(line['ci_high'] - line['ci_low']) / 2:.2f} pp (95% CI, {line['n']} seeds)"


def sentence(line: pd.Series) -> str:
    """'on this data airbench94 ends at 6.43% test error (published 5.99% on the original CIFAR-10, over 1,000
    runs): +0.44 ± 0.05 pp (95% CI, 10 seeds; NVIDIA H200, code 1c9fe5fb)'."""
    where = "; ".join(filter(None, [line["gpus"], f"code {line['commits']}" if line["commits"] else ""]))
    return (f"on this data {line['peer']} ends at {line['mean_error']:.2f}% test error (published "
            f"{line['published_error']:.2f}% on the original CIFAR-10, over {line['published_runs']:,} runs): "
            f"{penalty_text(line)}" + (f" ({where})" if where else ""))


def header_lines(table: pd.DataFrame, variants: set[str]) -> list[str]:
    """The report header's word on the data: each lossy variant read, with its calibration or its absence."""
    lines = []
    for variant in sorted(v for v in variants if v and "jpeg" in v):
        mine = table[table["data_variant"] == variant]
        if mine.empty:
            lines.append(f"* Data calibration ({variant}): not measured yet. `resbench calibrate` on a CUDA GPU "
                         "trains airbench's own recipe on this data: its error beside its published "
                         "one says how much of a gap the data explains.")
        else:
            lines.append(f"* Data calibration ({variant}): " + "; ".join(sentence(line) for _, line in mine.iterrows())
                         + ". Shown beside the verdicts, never subtracted from them.")
    return lines


def gap_beside_penalty(diff: pd.DataFrame, runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Each full-schedule error row on calibrated data: our gap to the paper beside each peer's penalty."""
    if table.empty or runs.empty:
        return pd.DataFrame()
    done = runs[(runs["status"] == "done") & (runs["budget"].fillna("1") == "1")]
    variant_of = dict(zip(done["tier"], done["data_variant"]))
    lines = []
    for _, d in diff[(diff["metric"] == "error") & diff["tier"].isin(variant_of) & (diff["n"] > 0)].iterrows():
        peers = table[table["data_variant"] == variant_of[d["tier"]]]
        if peers.empty:
            continue
        line = {"row": d["row"], "tier": d["tier"], "n": int(d["n"]),
                "ours - paper (pp)": f"{d['delta']:+.2f} [{d['delta_low']:+.2f}, {d['delta_high']:+.2f}]"}
        line.update({f"{p['peer']} on this data - published": penalty_text(p) for _, p in peers.iterrows()})
        lines.append(line)
    return pd.DataFrame(lines)
