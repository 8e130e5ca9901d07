"""Figures in the paper's style, from run results (seaborn/matplotlib), saved beside a report's README.md."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from resbench.paper.declarations import Experiment, load_experiment
from resbench.report.diff import metric_column, row_runs

sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
# the same figure, the same SVG bytes: element ids hashed from a fixed salt (else a random one), no date
plt.rcParams["svg.hashsalt"] = "resbench"
SAVE_METADATA = {"png": None, "svg": {"Date": None}}


def save_figure(fig: plt.Figure, folder: Path, stem: str) -> str:
    """<stem>.png and .svg into `folder`, the same bytes every time; the figure closed (a notebook shows the
    PNG, not a second drawing). Returns the PNG's file name, which README.md links."""
    for ext in ("png", "svg"):
        fig.savefig(folder / f"{stem}.{ext}", dpi=130, bbox_inches="tight", metadata=SAVE_METADATA[ext])
    plt.close(fig)
    return f"{stem}.png"


def _palette(models: list[str]) -> dict[str, tuple]:
    return dict(zip(models, sns.color_palette("tab10", len(models))))


def _paper_final_error(model: str) -> float | None:
    for name in ("table6", "figure6"):
        for row in load_experiment(name).rows:
            if row.model == model and "error" in row.paper:
                return row.paper["error"]
    return None


def curves_figure(exp: Experiment, curves: pd.DataFrame, tiers: dict[str, list[str]]) -> plt.Figure | None:
    """Fig. 1/4/6: training error dashed, test error bold, error (%) vs iterations, per panel; one row of
    panels per tier (runs of different data, budgets or arithmetic are never averaged together).

    Curves are averaged over seeds; the paper's final test errors (Table 6) are marked with x.
    """
    runs = [r for names in tiers.values() for r in names]
    if curves.empty or not runs:
        return None
    mine = curves[curves["run"].isin(runs)]
    panels = exp.panels or (tuple(r.model for r in exp.runnable_rows),)
    panels = [p for p in panels if mine["model"].isin(p).any()]  # the paper's panels that have runs
    if not panels:
        return None
    rows = [(tier, names) for tier, names in tiers.items() if mine["run"].isin(names).any()]
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(5.2 * len(panels), 4.2 * len(rows)), squeeze=False)
    for (tier, names), row_axes in zip(rows, axes):
        of_tier = mine[mine["run"].isin(names)]
        scale, unit = (1e4, "iter. (1e4)") if of_tier["iter"].max() >= 10_000 else (1, "iterations")
        for ax, models in zip(row_axes, panels):
            if not of_tier["model"].isin(models).any():
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"no finished runs of {', '.join(models)}\nin {tier}", ha="center", va="center",
                        fontsize=8, color="0.5", transform=ax.transAxes)
                continue
            _curves_panel(ax, of_tier, models, scale)
            families = {m.rstrip("0123456789") for m in models}
            family = "plain networks" if families == {"plain"} else "ResNets" if families == {"resnet"} else ""
            ax.set_title(f"{family}\n{tier}" if len(rows) > 1 or family else tier, fontsize=9)
            ax.set_xlabel(unit)
    fig.suptitle(exp.title, fontsize=10)
    fig.tight_layout()
    return fig


def _curves_panel(ax, curves: pd.DataFrame, models: tuple[str, ...], scale: float) -> None:
    colors = _palette(list(models))
    for model in models:
        for record, style in (("train", dict(ls="--", lw=1.0)), ("test", dict(ls="-", lw=2.2))):
            points = curves[(curves["model"] == model) & (curves["record"] == record)]
            if points.empty:
                continue
            mean = points.groupby("iter")["error"].mean()
            ax.plot(mean.index / scale, mean.values, color=colors[model],
                    label=f"{model} (n={points['run'].nunique()})" if record == "test" else None, **style)
            paper = _paper_final_error(model)
            if record == "test" and paper is not None and mean.index.max() >= 60_000:
                ax.plot(mean.index.max() / scale, paper, "x", color=colors[model], ms=9, mew=2)
    ax.set_ylabel("error (%)")
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="bold: test, dashed: train", fontsize=8, title_fontsize=8)


def responses_figure(exp: Experiment, responses: pd.DataFrame, tiers: dict[str, list[str]]) -> plt.Figure | None:
    """Fig. 7: std of each 3x3 layer's response, in layer order (top) and sorted (bottom); a column per tier."""
    runs = [r for names in tiers.values() for r in names]
    mine = responses[responses["run"].isin(runs)] if not responses.empty else responses
    if mine.empty:
        return None
    columns = [(tier, names) for tier, names in tiers.items() if mine["run"].isin(names).any()]
    fig, axes = plt.subplots(2, len(columns), figsize=(7.5 * len(columns), 7), squeeze=False)
    for (tier, names), (top, bottom) in zip(columns, axes.T):
        of_tier = mine[mine["run"].isin(names)]
        models = [m for m in (exp.panels[0] if exp.panels else sorted(of_tier["model"].unique()))
                  if m in set(of_tier["model"])]
        colors = _palette(models)
        for model in models:
            of_model = of_tier[of_tier["model"] == model]
            stds = of_model.groupby("layer")["std"].mean()
            style = dict(color=colors[model], lw=1.6, ls="-" if model.startswith("resnet") else "--",
                         label=f"{model} (n={of_model['run'].nunique()})")
            top.plot(stds.index, stds.values, **style)
            bottom.plot(range(1, len(stds) + 1), sorted(stds.values, reverse=True), **style)
        top.set(xlabel="layer index (original)", ylabel="std")
        top.set_title(tier, fontsize=9)
        bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std")
        top.legend(fontsize=8)
    fig.suptitle(exp.title, fontsize=10)
    fig.tight_layout()
    return fig


def short_tier(tier: str) -> str:
    """A tier as a tick label, a few short lines: 'proxy: JPEG q75 data, schedule 1/32 (2,000 iterations) (bf16)'
    -> 'proxy: JPEG, 1/32\nbf16'; the full schedule is 'full'; BN statistics over 16 images -> 'BN over 16';
    --set overrides by their keys (or their number, past two): the whole tier is in the table beside it."""
    if not tier:
        return ""
    departures, _, arithmetic = tier.rpartition(" (")
    kind, _, listed = departures.partition(": ")
    overridden = re.findall(r"--set (\w+)=", listed)
    listed = re.sub(r"(^|, )--set .*$", "", listed)  # overrides come last (resbench.paper.tiers)
    listed = re.sub(r" \([\d,]+ iterations\)", "", listed).replace("schedule ", "").replace("JPEG q75 data", "JPEG")
    listed = re.sub(r"BN statistics over (\d+) images \(paper: \d+\)", r"BN over \1", listed)
    items = [listed] if listed else []
    if kind == "proxy" and "1/" not in listed and "preset" not in listed:
        items.append("full")
    if overridden:
        items.append("--set " + (", ".join(overridden) if len(overridden) <= 2 else f"{len(overridden)} options"))
    label = kind + (": " + ", ".join(items) if items else "")
    return "\n".join(textwrap.wrap(label, 24)) + f"\n{arithmetic.rstrip(')')}"


def table_figure(exp: Experiment, diff: pd.DataFrame, complexity: dict, runs: pd.DataFrame,
                 preset: str) -> plt.Figure | None:
    """Tables: per row (and tier) each seed's error as a dot, their mean with the 95% CI its verdict reads
    (`diff.error_verdict`), and the paper's number as a red tick; the complexity if no error was measured."""
    errors = diff[diff["metric"].isin(["error", "top1_err", "top5_err"]) & diff["ours_mean"].notna()]
    if errors.empty:
        return _complexity_figure(exp, complexity)
    fig, ax = plt.subplots(figsize=(min(12.0, max(5.0, 1.1 * len(errors) + 2)), 4))
    values = []
    for x, line in enumerate(errors.itertuples()):
        mine = row_runs(exp, exp.row(line.row), runs, preset)
        seeds = mine[(mine["tier"] == line.tier) & (mine["status"] == "done")][metric_column(exp, line.metric)]
        seeds = seeds.dropna().astype(float).tolist()
        jitter = [x - 0.18 + 0.06 * (i - (len(seeds) - 1) / 2) for i in range(len(seeds))]  # left of the mean
        ax.plot(jitter, seeds, "o", color="C0", alpha=0.55, ms=5, label="ours: each seed" if x == 0 else None)
        low, high = line.reference + line.delta_low, line.reference + line.delta_high  # the verdict's interval
        bar = [[line.ours_mean - low], [high - line.ours_mean]] if low == low else None
        ax.errorbar([x], [line.ours_mean], yerr=bar, fmt="D", color="C0", ms=8, mfc="white", capsize=5,
                    label="ours: mean, 95% CI (the verdict's)" if x == 0 else None)
        ax.plot([x], [line.paper], "_", color="C3", ms=28, mew=3, label="paper" if x == 0 else None)
        values += [*seeds, line.ours_mean, line.paper, *([low, high] if low == low else [])]
    low, high = min(values), max(values)
    pad = max(0.5, 0.12 * (high - low))
    ax.set_ylim(max(0.0, low - pad), high + pad)
    ax.set_xlim(-0.7, len(errors) - 0.3)
    ax.set_xticks(range(len(errors)), [f"{r}\n{m}\n{short_tier(t)}" for r, m, t in zip(errors["row"], errors["metric"],
                                                                                      errors["tier"])], fontsize=8)
    ax.set_ylabel("error (%)")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(exp.title, fontsize=10)
    fig.tight_layout()
    return fig


def _complexity_figure(exp: Experiment, complexity: dict) -> plt.Figure | None:
    if not complexity:
        return None
    fig, ax = plt.subplots(figsize=(min(12.0, max(5.0, 0.9 * len(complexity) + 2)), 4))
    names = list(complexity)
    ax.bar(names, [complexity[n].macs / 1e9 for n in names], color="C0", label="ours (computed)")
    paper = [next((r.paper.get("flops") for r in exp.rows if r.model == n), None) for n in names]
    ax.plot([n for n, p in zip(names, paper) if p], [p for p in paper if p], "_", color="C3", ms=28, mew=3,
            label="paper")
    ax.set_ylabel("G multiply-adds")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    ax.set_title(exp.title, fontsize=10)
    fig.tight_layout()
    return fig
