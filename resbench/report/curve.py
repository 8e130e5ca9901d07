"""A budget curve that predicts: test error against the share of the paper's schedule, extrapolated.

Per network and family (tiers that differ only in their schedule: `proxy: JPEG q75 data (bf16)` at 1/32,
1/16, 1/8 ...), the test error of every finished run is fitted against its budget b (the share of the
paper's 64,000 iterations) by e(b) = e_inf + c * b^(-alpha), c >= 0, alpha > 0 (least squares over
the runs, scipy's curve_fit). A curve is fitted only where a network has at least 3 budgets with at
least 2 seeds each. Its interval is a bootstrap over runs (seeded): the seeds of each budget resampled
with replacement, the curve fitted again, the 2.5% and 97.5% quantiles taken.

Read from it: the predicted error at the full recipe (b = 1) and, per ordering of the paper's claims
("ResNet-56 below ResNet-20"), the budget at which the two fitted curves cross, with its interval over
the bootstrap. Both are **extrapolations** of a form chosen before looking, never verdicts: the
form assumes the error keeps falling as a power of the budget, which the measured budgets cannot test
beyond themselves. Where a network also has full-recipe runs, the prediction from its compressed
budgets alone is compared with them (`validate`): the miss (measured - predicted) and its interval (the
measured mean's t interval and the prediction's bootstrap interval, half-widths in quadrature) against
the equivalence margin of the verdicts: pass inside it, fail wholly outside, else inconclusive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit

from resbench.report import stats

MIN_BUDGETS = 3  # a 3-parameter form through fewer budgets is not a fit
MIN_SEEDS = 2  # per budget: the bootstrap needs seeds to resample
DRAWS = 1000  # bootstrap resamples
LEVEL = 0.95
BOUNDS = ([0.0, 0.0, 1e-3], [100.0, np.inf, 5.0])  # e_inf, c, alpha: an error in %, falling with the budget
ALPHAS = np.linspace(0.05, 3.0, 60)  # the starting grid: for a fixed alpha the form is linear in (e_inf, c)

Points = dict[float, list[float]]  # budget -> the test errors of its runs


def error_at(b, e_inf: float, c: float, alpha: float):
    """e(b) = e_inf + c * b^(-alpha)."""
    return e_inf + c * np.power(b, -alpha)


@dataclass(frozen=True)
class Fit:
    e_inf: float
    c: float
    alpha: float

    def __call__(self, b):
        return error_at(b, self.e_inf, self.c, self.alpha)


def usable(points: Points) -> list[float]:
    """The budgets with at least MIN_SEEDS runs, smallest first."""
    return sorted(b for b, v in points.items() if len([x for x in v if x == x]) >= MIN_SEEDS)


def missing(points: Points) -> str:
    """What keeps `points` from a curve ('' when nothing does): the budgets it has, each with its seeds."""
    if len(usable(points)) >= MIN_BUDGETS:
        return ""
    have = ", ".join(f"{budget_label(b)} ({len(points[b])} seed{'s' * (len(points[b]) != 1)})"
                     for b in sorted(points)) or "no budget"
    return f"needs {MIN_BUDGETS} budgets with >= {MIN_SEEDS} seeds each; has {have}"


def fit(points: Points, start: Fit | None = None) -> Fit:
    """Least squares of e(b) over every run of the usable budgets, from `start` (else from the best point
    of a grid of alpha); ValueError with fewer than MIN_BUDGETS budgets, RuntimeError where it fails."""
    if why := missing(points):
        raise ValueError(f"cannot fit a budget curve: {why}")
    x, y = _xy({b: points[b] for b in usable(points)})
    p0 = [start.e_inf, start.c, start.alpha] if start else _start(x, y)
    found = curve_fit(error_at, x, y, p0=p0, bounds=BOUNDS, jac=_jacobian, maxfev=20_000)[0]
    return Fit(*(float(v) for v in found))


def _jacobian(b, e_inf: float, c: float, alpha: float) -> np.ndarray:
    power = np.power(b, -alpha)
    return np.stack([np.ones_like(b), power, -c * power * np.log(b)], 1)


def _xy(points: Points) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(b, e) for b, v in points.items() for e in v if e == e]
    return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)


def _start(x: np.ndarray, y: np.ndarray) -> list[float]:
    """The best (e_inf, c, alpha) on a grid of alpha, each solved linearly (normal equations), clipped into
    BOUNDS."""
    power = np.power(x[None, :], -ALPHAS[:, None])  # (alphas, runs)
    n, sp, spp = len(x), power.sum(1), (power ** 2).sum(1)
    sy, spy = y.sum(), (power * y).sum(1)
    det = np.where(n * spp - sp ** 2 == 0, np.inf, n * spp - sp ** 2)
    c = np.maximum((n * spy - sp * sy) / det, 1e-6)
    e_inf = np.clip((sy - c * sp) / n, 0, 100)
    loss = ((e_inf[:, None] + c[:, None] * power - y) ** 2).sum(1)
    i = int(loss.argmin())
    return [float(e_inf[i]), float(c[i]), float(ALPHAS[i])]


@dataclass(frozen=True)
class Curve:
    model: str
    family: str
    points: dict  # budget -> test errors (Points)
    fit: Fit
    draws: np.ndarray  # (DRAWS - failed, 3): e_inf, c, alpha of each bootstrap resample
    failed: int  # resamples whose fit did not converge (left out of the interval)

    @property
    def budgets(self) -> list[float]:
        return usable(self.points)

    def predict(self, b: float = 1.0, level: float = LEVEL) -> tuple[float, float, float]:
        """The fitted error at budget b and its bootstrap interval."""
        if not len(self.draws):  # every resample failed to fit: no interval
            return float(self.fit(b)), math.nan, math.nan
        low, high = np.quantile(error_at(b, *self.draws.T), [(1 - level) / 2, (1 + level) / 2])
        return float(self.fit(b)), float(low), float(high)


def budget_curve(model: str, family: str, points: Points, draws: int = DRAWS, seed: int = 0) -> Curve:
    """The fitted curve of one network in one family, with `draws` bootstrap resamples (seeded)."""
    points = {b: [e for e in v if e == e] for b, v in points.items()}
    central = fit(points)
    rng = np.random.default_rng(seed)
    budgets = usable(points)
    found, failed = [], 0
    for _ in range(draws):
        resample = {b: list(rng.choice(points[b], size=len(points[b]), replace=True)) for b in budgets}
        try:
            f = fit(resample, start=central)
        except RuntimeError:  # curve_fit's "optimal parameters not found"
            failed += 1
            continue
        found.append((f.e_inf, f.c, f.alpha))
    return Curve(model, family, {b: points[b] for b in sorted(points)}, central, np.array(found).reshape(-1, 3),
                 failed)


def budget_points(runs: pd.DataFrame) -> dict[tuple[str, str], Points]:
    """(model, family) -> budget -> the test errors of its finished runs of the paper's recipe."""
    done = runs[(runs["status"] == "done") & (runs["preset"] == "paper")] if len(runs) else runs
    found: dict[tuple[str, str], Points] = {}
    for (model, family, budget), group in done.groupby(["model", "family", done["budget"].fillna("1")]):
        errors = [float(e) for e in group["test_error"] if e == e]
        if errors:
            found.setdefault((model, family), {})[float(Fraction(budget))] = errors
    return found


def curves(runs: pd.DataFrame, draws: int = DRAWS) -> tuple[list[Curve], dict[tuple[str, str], str]]:
    """The curve of every (network, family) of compressed budgets that can have one, and what the others
    miss. Full-recipe runs (b = 1) are never fitted: they are what a curve predicts."""
    fitted, short = [], {}
    for (model, family), points in sorted(budget_points(runs).items()):
        points = {b: v for b, v in points.items() if b < 1}
        if not points:
            continue
        if why := missing(points):
            short[(model, family)] = why
        else:
            fitted.append(budget_curve(model, family, points, draws))
    return fitted, short


def turn(low: Curve, high: Curve, level: float = LEVEL, grid: int = 513) -> dict:
    """Where `low`'s error is predicted to fall below `high`'s: the smallest budget from the first measured
    one up to 1 from which high - low stays > 0 (inf: not by budget 1), for the fit and for each pair of
    bootstrap resamples; the interval's upper end is inf where more than its share of resamples never turn."""
    start = max(min(low.budgets), min(high.budgets))
    b = np.exp2(np.linspace(math.log2(start), 0.0, grid))

    def crossing(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:  # (k, 3) parameters -> (k,) budgets
        holds = error_at(b, *hi.T[:, :, None]) - error_at(b, *lo.T[:, :, None]) > 0
        from_here = np.flip(np.cumprod(np.flip(holds, 1), 1), 1).astype(bool)  # holds from here to b = 1
        first = from_here.argmax(1)
        return np.where(from_here[:, -1], b[first], np.inf)

    at = crossing(np.array([[low.fit.e_inf, low.fit.c, low.fit.alpha]]),
                  np.array([[high.fit.e_inf, high.fit.c, high.fit.alpha]]))[0]
    k = min(len(low.draws), len(high.draws))
    drawn = crossing(low.draws[:k], high.draws[:k])
    # quantiles that are drawn values (inverted CDF): "never" is inf, which interpolation would make nan
    ci = np.quantile(drawn, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf") if k else (math.nan,) * 2
    return {"turn": float(at), "turn_low": float(ci[0]), "turn_high": float(ci[1]), "start": float(start),
            "never": float(np.mean(np.isinf(drawn))) if k else math.nan}


def validate(curve: Curve, measured: list[float], tolerance: float, level: float = LEVEL) -> dict:
    """The curve's prediction at b = 1 against full-recipe runs: the miss, its interval, pass/fail/inconclusive."""
    predicted, p_low, p_high = curve.predict(1.0, level)
    s = stats.spread(measured)
    m_low, m_high = stats.mean_ci(s["ours_mean"], s["ours_std"], s["n"], level)
    miss = s["ours_mean"] - predicted
    # measured - predicted: its low end pairs the measured low with the prediction's high, and so on
    low = miss - math.hypot(s["ours_mean"] - m_low, p_high - predicted)
    high = miss + math.hypot(m_high - s["ours_mean"], predicted - p_low)
    outcome = {"reproduced": "pass", "not reproduced": "fail"}.get(
        stats.equivalence((low, high), tolerance, s["n"]), "inconclusive")
    return {"model": curve.model, "family": curve.family, "predicted": predicted, "predicted_low": p_low,
            "predicted_high": p_high, "measured": s["ours_mean"], "measured_std": s["ours_std"], "n": s["n"],
            "measured_low": m_low, "measured_high": m_high, "miss": miss, "miss_low": low, "miss_high": high,
            "tolerance": tolerance, "outcome": outcome}


def budget_label(b: float) -> str:
    return "1" if b == 1 else str(Fraction(b).limit_denominator(4096))
