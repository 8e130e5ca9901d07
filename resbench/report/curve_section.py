"""The budget curve in a report (Table 6, the error figures): the fitted curves over the points, their
extrapolations in columns of their own, where each ordering is predicted to turn, and the validation
against full-recipe runs. See `resbench.report.curve` for the method; `resbench.report.sections` shows it."""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from resbench.paper.declarations import Experiment
from resbench.report import curve as fits
from resbench.report.claims import CLAIMS
from resbench.report.curve import Curve, budget_label

EXTRAPOLATION = "extrapolation"  # the word every predicted column carries


@dataclass
class CurveSection:
    curves: list[Curve] = field(default_factory=list)
    missing: dict = field(default_factory=dict)  # (model, family) -> what keeps it from a curve
    turns: pd.DataFrame = field(default_factory=pd.DataFrame)
    validation: pd.DataFrame = field(default_factory=pd.DataFrame)
    full: dict = field(default_factory=dict)  # (model, family) -> full-recipe test errors, drawn at b = 1

    @classmethod
    def build(cls, exp: Experiment, runs: pd.DataFrame, draws: int = fits.DRAWS) -> "CurveSection":
        """Curves of `runs` (the report's runs) at compressed budgets; empty where it has none."""
        points = fits.budget_points(runs)
        full = {key: p[1.0] for key, p in points.items() if 1.0 in p}
        if not any(b < 1 for p in points.values() for b in p):
            return cls(full=full)
        curves, missing = fits.curves(runs, draws)
        tolerance = exp.tolerance.get("reproduced", 0.5)
        return cls(curves, missing, turns_table(exp, curves), validation_table(curves, full, tolerance), full)

    @property
    def shown(self) -> bool:
        """Whether the report has a section: runs at compressed budgets."""
        return bool(self.curves or self.missing)

    def table(self) -> pd.DataFrame:
        lines = []
        for c in self.curves:
            predicted, low, high = c.predict(1.0)
            lines.append({"network": c.model, "family": c.family,
                          "budgets fitted (seeds)": ", ".join(f"{budget_label(b)} ({len(c.points[b])})"
                                                             for b in c.budgets),
                          "fit": f"{c.fit.e_inf:.2f} + {c.fit.c:.3g}·b^-{c.fit.alpha:.3f}",
                          f"{EXTRAPOLATION}: error at b = 1 (%)": round(predicted, 2),
                          f"{EXTRAPOLATION}: 95% bootstrap interval": f"[{low:.2f}, {high:.2f}]",
                          "resamples": f"{len(c.draws)} ({c.failed} failed to fit)"})
        return pd.DataFrame(lines)

    def save(self, out: Path) -> None:
        """curve.csv, curve-validation.csv and curve-turns.csv (the report saves the figure)."""
        if not self.curves:
            return
        self.table().to_csv(out / "curve.csv", index=False)
        if not self.validation.empty:
            self.validation.to_csv(out / "curve-validation.csv", index=False)
        if not self.turns.empty:
            self.turns.to_csv(out / "curve-turns.csv", index=False)

    def figure(self) -> plt.Figure | None:
        """One panel per family: each run's error at its budget, the fitted curve (dashed beyond the last
        budget measured: the extrapolation) with its 95% bootstrap band, and full-recipe runs at b = 1."""
        if not self.curves:
            return None
        families = list(dict.fromkeys(c.family for c in self.curves))
        fig, axes = plt.subplots(1, len(families), figsize=(6.0 * len(families), 4.4), squeeze=False)
        for ax, family in zip(axes[0], families):
            for i, c in enumerate(x for x in self.curves if x.family == family):
                _draw(ax, c, f"C{i % 10}", {k[1]: v for k, v in self.full.items() if k[0] == c.model})
            ax.set_xscale("log", base=2)
            ticks = sorted({b for c in self.curves for b in c.points} | {1.0})
            ax.set_xticks(ticks, [budget_label(b) for b in ticks])
            ax.set(xlabel="budget: share of the paper's 64k-iteration schedule", ylabel="test error (%)",
                   title=family)
            ax.legend(fontsize=7, loc="best")
        caption = ("dots: runs; line: e(b) = e_inf + c·b^-alpha fitted over them, dashed where it extrapolates; "
                   "band: 95% bootstrap over runs; squares at b = 1: full-recipe runs (their own family, named in "
                   "the legend).")
        fig.text(0.5, -0.02, "\n".join(textwrap.wrap(caption, 60 * len(families))), ha="center", va="top",
                 fontsize=8)
        fig.tight_layout()
        return fig


def _draw(ax, c: Curve, color: str, full: dict[str, list[float]]) -> None:
    for b, errors in c.points.items():
        ax.plot([b] * len(errors), errors, "o", color=color, ms=4, alpha=0.8)
    last = max(c.budgets)
    grid = np.exp2(np.linspace(math.log2(min(c.budgets)), 0.0, 200))
    if len(c.draws):
        band = np.quantile(fits.error_at(grid, *c.draws.T[:, :, None]), [0.025, 0.975], axis=0)
        ax.fill_between(grid, band[0], band[1], color=color, alpha=0.15, lw=0)
    inside = grid <= last
    ax.plot(grid[inside], c.fit(grid[inside]), "-", color=color, lw=1.4, label=f"{c.model} fit")
    ax.plot(grid[~inside], c.fit(grid[~inside]), "--", color=color, lw=1.2, label=f"{c.model} {EXTRAPOLATION}")
    for j, (family, errors) in enumerate(full.items()):
        ax.plot([1.0 * (1 + 0.03 * j)] * len(errors), errors, "s", color=color, mec="k", ms=6,
                label=f"{c.model} full recipe [{family}]")


def turns_table(exp: Experiment, curves: list[Curve]) -> pd.DataFrame:
    """Per test-error ordering of the experiment's claims with a curve on both sides in one family."""
    by = {(c.model, c.family): c for c in curves}
    lines = []
    for family in dict.fromkeys(c.family for c in curves):
        def has(model: str, column: str) -> bool:
            return column == "test_error" and (model, family) in by
        for name in exp.claims:
            if name not in CLAIMS:
                continue
            for low, high, column in CLAIMS[name].orderings(exp, has):
                if not (has(low, column) and has(high, column)):
                    continue
                t = fits.turn(by[(low, family)], by[(high, family)])
                lines.append({"claim": name, "ordering": f"{low} < {high}", "family": family,
                              f"{EXTRAPOLATION}: turns at budget": _turn_text(t["turn"], t["start"]),
                              f"{EXTRAPOLATION}: 95% bootstrap interval":
                                  f"[{_turn_text(t['turn_low'], t['start'])}, {_turn_text(t['turn_high'], t['start'])}]",
                              "resamples never turning by b = 1": f"{t['never']:.0%}"})
    return pd.DataFrame(lines)


def _turn_text(b: float, start: float) -> str:
    if not b == b:
        return "—"
    if math.isinf(b):
        return "not by 1"
    if b <= start:
        return f"holds from {budget_label(start)}"
    return f"{b:.3f} (about 1/{1 / b:.1f})"


def validation_table(curves: list[Curve], full: dict, tolerance: float) -> pd.DataFrame:
    """Each curve's prediction at b = 1 against every family of >= 2 full-recipe runs of its network."""
    lines = []
    for c in curves:
        for (model, family), errors in full.items():
            if model != c.model or len(errors) < 2:
                continue
            v = fits.validate(c, errors, tolerance)
            lines.append({"network": model, "fitted on": f"{', '.join(budget_label(b) for b in c.budgets)} "
                                                         f"`{c.family}`",
                          f"{EXTRAPOLATION}: predicted at b = 1 (%)":
                              f"{v['predicted']:.2f} [{v['predicted_low']:.2f}, {v['predicted_high']:.2f}]",
                          "measured at b = 1 (%)": f"{v['measured']:.2f} ± {v['measured_std']:.2f} (n = {v['n']}) "
                                                   f"[{v['measured_low']:.2f}, {v['measured_high']:.2f}] `{family}`",
                          "miss: measured - predicted (pp)":
                              f"{v['miss']:+.2f} [{v['miss_low']:+.2f}, {v['miss_high']:+.2f}]",
                          "margin": f"±{tolerance}", "validation": v["outcome"],
                          "departure": "" if family == c.family else "the full-recipe runs differ from the curve's in "
                                       "more than the budget (their families above): the miss holds that too"})
    return pd.DataFrame(lines)

