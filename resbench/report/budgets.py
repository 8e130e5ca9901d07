"""Claims across budgets: from which share of the paper's schedule does each claim hold?

Every ordering a claim makes ("plain-20 below plain-56") gets, in every tier with runs on
both sides, an effect: the higher side's mean minus the lower side's (positive where the
paper's direction holds), its 90% Welch confidence interval (the interval of the one-sided 5%
test, so a pass is a bar wholly above 0), and the ordering's verdict over
seeds (`stats.ordering`: pass, fail or inconclusive). Tiers that differ only in their
schedule make one family (`proxy: JPEG q75 data (bf16)` at 1/32, 1/16, 1/8 ...), drawn as
one line against the budget on a log axis. Where the paper's numbers give the same effect
at its full schedule (Table 6's test errors), it is drawn at budget 1. A budget run is a
proxy of the paper's recipe: the figure says from which budget a claim's direction shows,
never that the paper's number was reached. Fig. 7's claims enter with their primary reading
of "std" (pooled, BN on running statistics, all 3x3 layers), the one they are judged on.
"""
from __future__ import annotations

import math
import textwrap
from fractions import Fraction

import matplotlib.pyplot as plt
import pandas as pd

from resbench.paper.declarations import Experiment, load_experiment
from resbench.report import stats
from resbench.report.claims import CLAIMS, FIG7_CLAIMS, FIG7_PRIMARY, response_values, run_values, tiers_of

BUDGET_COLUMNS = ["claim", "ordering", "column", "family", "budget", "iterations", "n_low", "n_high", "effect",
                  "ci_low", "ci_high", "verdict", "p", "paper_effect"]
FIG7_READING = FIG7_PRIMARY  # the reading Fig. 7 draws and judges


def paper_error(model: str) -> float | None:
    """The paper's test error for `model` (Table 6; ResNet-110: the mean of its 5 runs)."""
    for row in load_experiment("table6").rows:
        if row.model == model and "error" in row.paper:
            return row.paper.get("error_mean", row.paper["error"])
    return None


def _paper_effect(low: str, high: str, column: str) -> float:
    a, b = paper_error(low), paper_error(high)
    return b - a if column == "test_error" and a is not None and b is not None else math.nan


def across_budgets(exp: Experiment, runs: pd.DataFrame, responses: pd.DataFrame) -> pd.DataFrame:
    """One line per (claim, ordering, tier) with runs on both sides; see the module docstring."""
    lines = []
    for tier in tiers_of(runs):
        of_tier = runs[(runs["tier"] == tier) & (runs["status"] == "done")]
        first = of_tier.iloc[0]
        budget, family = first.get("budget", "1"), first.get("family", tier)
        for name in exp.claims:
            fig7 = name in FIG7_CLAIMS
            claim = FIG7_CLAIMS[name] if fig7 else CLAIMS[name]
            values = response_values(of_tier, responses, *FIG7_READING) if fig7 else run_values(of_tier)
            for low, high, column in claim.orderings(exp, lambda model, column: bool(values(model, column))):
                a, b = values(low, column), values(high, column)
                if not a or not b:
                    continue
                verdict, p = stats.ordering(a, b)
                lines.append({"claim": name, "ordering": f"{low} < {high}", "column": column, "family": family,
                              "budget": str(budget), "iterations": int(first["iterations"]),
                              **stats.effect(a, b), "verdict": verdict, "p": p,
                              "paper_effect": _paper_effect(low, high, column)})
    table = pd.DataFrame(lines, columns=BUDGET_COLUMNS)
    order = table["budget"].map(lambda b: float(Fraction(b)))
    return table.assign(_order=order).sort_values(["claim", "ordering", "family", "_order"]).drop(columns="_order")


MARKERS = {"pass": dict(marker="o"), "fail": dict(marker="X"), "inconclusive": dict(marker="o", mfc="white")}


def budgets_figure(table: pd.DataFrame) -> plt.Figure | None:
    """One panel per claim: effect (90% CI) against the budget, a line per ordering and family."""
    if table.empty:
        return None
    claims = list(dict.fromkeys(table["claim"]))
    fig, axes = plt.subplots(1, len(claims), figsize=(5.2 * len(claims), 4.4), squeeze=False)
    budgets = sorted({float(Fraction(b)) for b in table["budget"]} | {1.0})
    for ax, claim in zip(axes[0], claims):
        mine = table[table["claim"] == claim]
        orderings = list(dict.fromkeys(mine["ordering"]))
        families = list(dict.fromkeys(mine["family"]))
        for i, ordering in enumerate(orderings):
            color = f"C{i % 10}"
            for j, family in enumerate(families):
                line = mine[(mine["ordering"] == ordering) & (mine["family"] == family)]
                if line.empty:
                    continue
                x = [float(Fraction(b)) * (1 + 0.04 * j) for b in line["budget"]]  # families side by side
                ax.plot(x, line["effect"], color=color, lw=1.2, ls=("-", "--", ":", "-.")[j % 4],
                        label=f"{ordering}" + (f" [{family}]" if len(families) > 1 else ""))
                for xi, row in zip(x, line.itertuples()):
                    if row.ci_low == row.ci_low:
                        ax.plot([xi, xi], [row.ci_low, row.ci_high], color=color, lw=1.0)
                    ax.plot([xi], [row.effect], color=color, ms=7, ls="none", **MARKERS[row.verdict])
            paper = mine.loc[mine["ordering"] == ordering, "paper_effect"].dropna()
            if len(paper):
                ax.plot([1.0], [paper.iloc[0]], "*", color=color, ms=13, mec="C3", mew=1.2)
        ax.axhline(0, color="0.4", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets, [_budget_label(b) for b in budgets])
        ax.set_xlim(min(budgets) / 1.5, 1.5)
        column = mine["column"].iloc[0]
        unit = "std of responses" if column == "response" else "error (pp)"
        ax.set(xlabel="budget: share of the paper's 64k-iteration schedule",
               ylabel=f"effect: higher - lower, {unit}")
        statement = (FIG7_CLAIMS.get(claim) or CLAIMS[claim]).statement
        ax.set_title("\n".join(textwrap.wrap(statement, 48)), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    fig.text(0.5, -0.02, "filled: the ordering passes (one-sided Welch, p < 0.05, >= 3 seeds a side); hollow: "
             "inconclusive; X: fails. Bars: 90% Welch CI, the one-sided 5% test's own interval (a filled marker's "
             "bar never crosses 0). Red-edged star: the paper's full-schedule effect.",
             ha="center", fontsize=8)
    fig.tight_layout()
    return fig


def _budget_label(budget: float) -> str:
    return "1" if budget == 1 else str(Fraction(budget).limit_denominator(4096))
