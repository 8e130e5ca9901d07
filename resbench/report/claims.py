"""The paper's qualitative claims, judged on our runs: pass, fail, inconclusive or not run.

Each claim is a set of orderings between networks ("plain-56 trains worse than plain-20").
Each ordering is judged over seeds with a one-sided Welch t-test (`stats.ordering`): pass
when it holds at p < 0.05, fail when the opposite holds at p < 0.05, inconclusive otherwise
or with fewer than 3 finished runs on a side: a strict ordering on one seed is not
evidence. A claim passes when every ordering passes, fails when one fails, and is
inconclusive otherwise. Runs of different tiers (`resbench.paper.tiers`: data, budget,
arithmetic) are never pooled: a claim is judged in every tier that has runs on both sides
of one of its orderings, one line per tier.

Fig. 7's claims are judged at 5% on one reading of "std", named before looking at any result:
the std pooled over images, channels and positions, with BN on its running statistics, over
every 3x3 layer (`FIG7_PRIMARY`). The paper's own description decides it: "the standard
deviations (std) of layer responses ... the outputs of each 3x3 layer, after BN and before other
nonlinearity", one std per layer of trained networks evaluated on the test set, i.e. one number
over all of a layer's outputs, with BN as at test time; a mean of per-channel stds or an RMS (the
mean included) is another quantity. The other readings (per-channel std, RMS, BN on batch
statistics, block outputs only) are **exploratory**: each line shows its own uncorrected test
(`outcome`), its status is `exploratory`, and summaries count them apart, never as verdicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from resbench.models import canonical_name
from resbench.probes.responses import READINGS
from resbench.paper.declarations import Experiment
from resbench.paper.tiers import is_exact
from resbench.report import stats
from resbench.report.diff import row_runs

CLAIM_COLUMNS = ["tier", "claim", "statement", "definition", "status", "outcome", "evidence"]  # outcome: the
# line's own test, uncorrected; status: the verdict, which an exploratory line does not get
CLAIM_STATUSES = ("pass", "fail", "inconclusive", "not run", "exploratory")  # summaries count each apart
Values = Callable[[str, str], list]  # (model, column) -> one value per finished run


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    # (lower model, higher model, column) per ordering, given the experiment and which models have runs
    orderings: Callable[[Experiment, Callable[[str], bool]], list[tuple[str, str, str]]]
    bound: tuple[str, str, float] | None = None  # (model, column, value) the model's runs stay above
    pairs_optional: bool = False  # an ordering without runs on both sides is left out (a net without its twin)


def _fmt(values: list) -> str:
    v = [x for x in values if x == x]
    if len(v) < stats.MIN_SEEDS:
        return "(" + ", ".join(f"{x:.2f}" for x in v) + ")"
    return f"({np.mean(v):.2f}±{np.std(v, ddof=1):.2f}, n={len(v)})"


def ordering_sentence(column: str, low: str, a: list, high: str, b: list, outcome: str, p: float) -> str:
    """'test error: resnet56 (24.32±1.14, n=3) is above resnet20 (19.54±0.05, n=3), the claim says below: fail
    (one-sided Welch p = 0.991)'."""
    what = column.replace("_", " ")
    if outcome == "pass":
        text = f"{low} {_fmt(a)} is below {high} {_fmt(b)}"
    elif outcome == "fail":
        text = f"{low} {_fmt(a)} is above {high} {_fmt(b)}, the claim says below"
    else:
        text = f"{low} {_fmt(a)} is not shown below {high} {_fmt(b)}"
    return f"{what}: {text}: {outcome} ({_tested(p, a, b)})"


def _tested(p: float, *sides: list) -> str:
    if p == p:
        return f"one-sided Welch p = {p:.3g}"
    return f"n = {', '.join(str(len(s)) for s in sides)}: untested below {stats.MIN_SEEDS} seeds a side"


def judge(claim: Claim, exp: Experiment, values: Values) -> tuple[str, str]:
    """(status, evidence) of one claim over the runs `values` gives."""
    outcomes, parts, missing, untested = [], [], [], []
    for low, high, column in claim.orderings(exp, lambda model, column: bool(values(model, column))):
        a, b = values(low, column), values(high, column)
        if claim.pairs_optional and (not a or not b):
            untested += [f"{low} vs {high}"] if a or b else []
            continue
        if not a or not b:
            missing += [m for m, v in ((low, a), (high, b)) if not v and m not in missing]
            continue
        outcome, p = stats.ordering(a, b)
        parts.append(ordering_sentence(column, low, a, high, b, outcome, p))
        outcomes.append(outcome)
    if claim.bound:
        model, column, bound = claim.bound
        v = values(model, column)
        if v:
            outcome, p = stats.above(v, bound)
            verb = {"pass": "lies above", "fail": "lies below", "inconclusive": "is not shown above"}[outcome]
            parts.append(f"{column.replace('_', ' ')}: {model} {_fmt(v)} {verb} {bound}: {outcome} ({_tested(p, v)})")
            outcomes.append(outcome)
        else:
            missing.append(model)
    chain = getattr(claim.orderings, "models", ())
    missing += [m for m in chain if m not in missing and not values(m, claim.orderings.column)]
    if not outcomes:
        return "not run", f"needs finished runs of {', '.join(missing) or 'both sides of an ordering'}"
    status = "fail" if "fail" in outcomes else "pass" if all(o == "pass" for o in outcomes) and not missing \
        else "inconclusive"
    evidence = "; ".join(parts) + (f"; no runs of {', '.join(missing)}" if missing else "") + \
        (f"; untested (one side has no runs): {', '.join(untested)}" if untested else "")
    return status, evidence


def _chain(models: tuple[str, ...], column: str, falls: bool = False):
    """Orderings of neighbours among the `models` that have runs: each one's value below the next one's
    (falls: above it). A chain with a network missing is judged on the ones present, and its claim
    cannot pass (see `judge`)."""
    def orderings(exp, has=lambda model, column: True):
        present = [m for m in models if has(m, column)]
        pairs = list(zip(present, present[1:])) if len(present) > 1 else list(zip(models, models[1:]))
        return [(b, a, column) if falls else (a, b, column) for a, b in pairs]
    orderings.models, orderings.column = models, column
    return orderings


def _degradation(exp: Experiment, has=None) -> list[tuple[str, str, str]]:
    shallow, deep = ("plain18", "plain34") if exp.dataset == "imagenet" else ("plain20", "plain56")
    return [(shallow, deep, "train_error"), (shallow, deep, "test_error")]


def _shortcuts_help(exp: Experiment, has=None) -> list[tuple[str, str, str]]:
    column = f"top1_err_{exp.test}"
    return [("resnet34", "resnet18", column), ("plain18", "plain34", column)]


CLAIMS = {c.name: c for c in (
    Claim("degradation", "The deeper plain net has higher training and test error than the shallower one "
          "(Fig. 1: plain-20 vs 56; Fig. 4: plain-18 vs 34)", _degradation),
    Claim("plain_training_error_rises", "Training error rises with depth: plain-20 < 32 < 44 < 56 (Fig. 6)",
          _chain(("plain20", "plain32", "plain44", "plain56"), "train_error")),
    Claim("plain110_fails", "Plain-110 fails: its error stays above 60% (Fig. 6)", lambda exp, has: [],
          bound=("plain110", "test_error", 60.0)),
    Claim("resnets_beat_plain_twins", "From 32 layers on, a ResNet has lower training and test error than its "
          "plain twin of the same depth (Fig. 6, left vs middle)",
          lambda exp, has: [(f"resnet{d}", f"plain{d}", column) for d in (32, 44, 56, 110)
                            for column in ("train_error", "test_error")], pairs_optional=True),
    Claim("deeper_resnets_better", "Test error falls with depth: ResNet-20 > 32 > 44 > 56 > 110 (Table 6)",
          _chain(("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"), "test_error", falls=True)),
    Claim("resnet1202_worse", "ResNet-1202 has higher test error than ResNet-110 (Table 6)",
          lambda exp, has: [("resnet110", "resnet1202", "test_error")]),
    Claim("shortcuts_help_depth", "ResNet-34 beats ResNet-18 while plain-34 is worse than plain-18 "
          "(Table 2, Fig. 4)", _shortcuts_help),
)}

# Fig. 7: a per-run number, the mean over layers of one reading, for two views of the layers
FIG7_VIEWS = {"all 3x3 layers": lambda r: r, "block outputs": lambda r: r[r["block_output"].astype(bool)]}
FIG7_PRIMARY = ("std", "all 3x3 layers")  # (reading, view) judged; the others are exploratory (module docstring)
FIG7_CLAIMS = {c.name: c for c in (
    Claim("resnet_responses_smaller", "ResNets' layer responses are smaller than their plain twins' (Fig. 7)",
          lambda exp, has: [(f"resnet{d}", f"plain{d}", "response") for d in (20, 56, 110)], pairs_optional=True),
    Claim("deeper_resnet_responses_smaller", "Deeper ResNets have smaller responses: ResNet-20 > 56 > 110 "
          "(Fig. 7)", _chain(("resnet20", "resnet56", "resnet110"), "response", falls=True)),
)}


def tiers_of(runs: pd.DataFrame) -> list[str]:
    """The tiers of the finished runs, exact ones first (`resbench.paper.tiers`)."""
    finished = runs[runs["status"] == "done"]
    return sorted(set(finished["tier"].dropna()), key=lambda t: (not is_exact(t), t))


def run_values(runs: pd.DataFrame) -> Values:
    """values(model, column): that column of every finished run of `model` among `runs`."""
    finished = runs[runs["status"] == "done"]
    models = finished["model"].map(canonical_name)

    def values(model: str, column: str) -> list:
        return [float(v) for v in finished.loc[models == canonical_name(model), column] if v is not None and v == v]
    return values


def check_claims(exp: Experiment, runs: pd.DataFrame, responses: pd.DataFrame, preset: str = "paper") -> pd.DataFrame:
    """One line per claim the experiment declares (per reading of std for Fig. 7's) and tier with runs on
    both sides of one of its orderings; a claim no tier can judge gets one line, "not run"."""
    mine = pd.concat([runs.iloc[0:0], *(row_runs(exp, r, runs, preset) for r in exp.runnable_rows)])
    mine = mine.drop_duplicates("run")
    lines = []
    for name in exp.claims:
        judged = []
        for tier in tiers_of(mine):
            of_tier = mine[mine["tier"] == tier]
            if name in FIG7_CLAIMS:
                found = _fig7_lines(FIG7_CLAIMS[name], exp, of_tier, responses)
            else:
                status, evidence = judge(CLAIMS[name], exp, run_values(of_tier))
                found = [{"claim": name, "statement": CLAIMS[name].statement, "definition": "", "status": status,
                          "outcome": status, "evidence": evidence}]
            if any(line["status"] != "not run" for line in found):
                judged += [{"tier": tier, **line} for line in found]
        if not judged:
            claim = FIG7_CLAIMS.get(name) or CLAIMS[name]
            status, evidence = judge(claim, exp, lambda model, column: [])
            judged = [{"tier": "", "claim": name, "statement": claim.statement, "definition": "",
                       "status": status, "outcome": status, "evidence": evidence}]
        lines += judged
    table = pd.DataFrame(lines, columns=CLAIM_COLUMNS)
    if preset != "paper":  # short runs: the numbers are shown, never judged
        judged = table["status"] != "not run"
        table.loc[judged, "evidence"] = f"{preset} runs only, too short to judge the paper's claim: " + \
            table.loc[judged, "evidence"]
        table["status"] = "not run"
    return table


def count_claims(statuses) -> dict[str, int]:
    """How many claim lines have each status (CLAIM_STATUSES): exploratory lines counted apart."""
    statuses = list(statuses)
    return {s: statuses.count(s) for s in CLAIM_STATUSES}


def claims_line(statuses) -> str:
    """'1 pass, 3 fail, 20 exploratory' (the statuses that occur)."""
    return ", ".join(f"{n} {s}" for s, n in count_claims(statuses).items() if n)


def response_values(runs: pd.DataFrame, responses: pd.DataFrame, reading: str, view: str) -> Values:
    """values(model, _): per finished run of `model`, the mean over its layers (in `view`) of `reading`."""
    finished = set(runs.loc[runs["status"] == "done", "run"])
    mine = responses[responses["run"].isin(finished)] if not responses.empty else responses
    if mine.empty or reading not in mine or "block_output" not in mine or mine[reading].isna().all():
        return lambda model, column: []
    per_run = FIG7_VIEWS[view](mine).groupby("run")[reading].mean()
    model_of = mine.drop_duplicates("run").set_index("run")["model"]

    def values(model: str, column: str) -> list:
        return [float(v) for run, v in per_run.items() if model_of[run] == model]
    return values


def _fig7_lines(claim: Claim, exp: Experiment, runs: pd.DataFrame, responses: pd.DataFrame) -> list[dict]:
    lines = []
    for view in FIG7_VIEWS:
        if view == "block outputs" and claim.name != "resnet_responses_smaller":
            continue  # the residual function's output is compared with the plain twin's layer
        for reading in READINGS:
            outcome, evidence = judge(claim, exp, response_values(runs, responses, reading, view))
            primary = (reading, view) == FIG7_PRIMARY
            status = outcome if primary or outcome == "not run" else "exploratory"
            lines.append({"claim": claim.name, "statement": claim.statement,
                          "definition": f"{reading}, {view}",
                          "status": status, "outcome": outcome,
                          "evidence": evidence if primary else f"exploratory, uncorrected: {evidence}"})
    return sorted(lines, key=lambda line: line["status"] == "exploratory")  # the primary reading first
