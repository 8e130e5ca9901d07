"""The statement at the top of every report: exactly which tests decide its verdicts, and at what levels."""
from __future__ import annotations

from resbench.paper.declarations import Experiment
from resbench.report import stats
from resbench.report.claims import FIG7_CLAIMS


def statement(exp: Experiment, noise: stats.Noise, curve: bool = False) -> str:
    """One paragraph, in italics: the row test, the one-seed rule with the spread it was judged at, the
    claims' test, Fig. 7's primary reading, and (where a budget curve is shown) what its predictions are."""
    tolerance = exp.tolerance.get("reproduced", 0.5)
    if noise.dof:
        one_seed = (f"one seed's interval is the 95% t interval at {noise} (±{noise.half_width():.2f} pp), and "
                    "one seed is never reproduced")
    else:
        one_seed = ("one seed has no interval (no group of >= 2 seeds to pool a spread from) and is "
                    "inconclusive")
    parts = [f"Tests: a row is reproduced when the 95% confidence interval of (ours - paper) lies inside "
             f"±{tolerance} pp and not reproduced when it lies wholly outside (two one-sided tests at 2.5% "
             f"each); {one_seed}. A claim's ordering passes by a one-sided Welch t-test at 5% with at least "
             f"{stats.MIN_SEEDS} seeds a side; its bars are 90% Welch intervals, that test's own."]
    if any(name in FIG7_CLAIMS for name in exp.claims):
        parts.append("Fig. 7's claims are judged at 5% on one reading named before looking: the std pooled over "
                     "images, channels and positions, BN on its running statistics, over every 3x3 layer (the "
                     "paper's \"std of layer responses\", the outputs of each 3x3 layer, on the test set); every "
                     "other reading is exploratory: shown with its uncorrected test, counted apart, never a "
                     "verdict.")
    if curve:
        parts.append("The budget curve's predictions (the error at the full recipe, the budget where an "
                     "ordering turns) are extrapolations of a fitted form with bootstrap intervals, never "
                     "verdicts; its validation against full-recipe runs is an equivalence test at the same "
                     "margin.")
    return "*" + " ".join(parts) + "*"
