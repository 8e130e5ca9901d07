"""The paper's qualitative claims, checked on our runs: pass, fail, or not run."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from ..models import parse_model_name
from ..spec import Experiment
from .diff import row_runs


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str
    check: Callable[[dict[str, pd.DataFrame], pd.DataFrame], tuple[bool | None, str]]


def _means(by_model: dict[str, pd.DataFrame], column: str, family: str, max_depth: int = 110) -> dict[int, float]:
    out = {}
    for model, runs in by_model.items():
        spec = parse_model_name(model)
        if spec.family == family and spec.depth <= max_depth and runs[column].notna().any():
            out[spec.depth] = float(runs[column].mean())
    return dict(sorted(out.items()))


def _fmt(values: dict[int, float], family: str) -> str:
    return ", ".join(f"{family}-{d} {v:.2f}" for d, v in values.items())


def degradation(by_model, responses):
    train = _means(by_model, "train_error", "plain")
    if len(train) < 2:
        return None, "needs finished runs of two plain nets"
    shallow, deep = list(train.values())[0], list(train.values())[-1]
    return deep > shallow, f"final training error (%): {_fmt(train, 'plain')}"


def deeper_resnets_better(by_model, responses):
    test = _means(by_model, "test_error", "resnet")
    if len(test) < 2:
        return None, "needs finished runs of two ResNets up to 110 layers"
    values = list(test.values())
    ordered = all(b < a for a, b in zip(values, values[1:]))
    return ordered, f"mean test error (%): {_fmt(test, 'resnet')}"


def _response_means(by_model, responses) -> dict[str, float]:
    if responses.empty:
        return {}
    runs = set().union(*(set(df["run"]) for df in by_model.values())) if by_model else set()
    mine = responses[responses["run"].isin(runs)]
    return mine.groupby("model")["std"].mean().to_dict()


def resnet_responses_smaller(by_model, responses):
    means = _response_means(by_model, responses)
    pairs = [(d, means[f"resnet{d}"], means[f"plain{d}"]) for d in (20, 56, 110)
             if f"resnet{d}" in means and f"plain{d}" in means]
    if not pairs:
        return None, "needs the Fig. 7 probe of a ResNet and its plain twin"
    evidence = "; ".join(f"depth {d}: ResNet {r:.3f} vs plain {p:.3f}" for d, r, p in pairs)
    return all(r < p for _, r, p in pairs), f"mean response std, {evidence}"


def deeper_resnet_responses_smaller(by_model, responses):
    means = _response_means(by_model, responses)
    depths = sorted(parse_model_name(m).depth for m in means if m.startswith("resnet"))
    if len(depths) < 2:
        return None, "needs the Fig. 7 probe of two ResNets"
    values = [means[f"resnet{d}"] for d in depths]
    evidence = ", ".join(f"ResNet-{d} {v:.3f}" for d, v in zip(depths, values))
    return all(b < a for a, b in zip(values, values[1:])), f"mean response std: {evidence}"


def shortcuts_help_depth(by_model, responses):
    return None, "no ImageNet run was made (ImageNet is not available on this project's machines)"


CLAIMS = {c.name: c for c in (
    Claim("degradation", "The deeper plain net has the higher training error (Fig. 1 and 6)", degradation),
    Claim("deeper_resnets_better", "Deeper ResNets have lower test error, up to 110 layers (Table 6)",
          deeper_resnets_better),
    Claim("resnet_responses_smaller", "ResNets' layer responses are smaller than their plain twins' (Fig. 7)",
          resnet_responses_smaller),
    Claim("deeper_resnet_responses_smaller", "Deeper ResNets have smaller responses (Fig. 7)",
          deeper_resnet_responses_smaller),
    Claim("shortcuts_help_depth", "With shortcuts the 34-layer net beats the 18-layer one (Table 2, Fig. 4)",
          shortcuts_help_depth),
)}


def check_claims(exp: Experiment, runs: pd.DataFrame, responses: pd.DataFrame, preset: str = "paper") -> pd.DataFrame:
    """One line per claim the experiment declares: claim, statement, status, evidence."""
    by_model = {}
    for row in exp.runnable_rows:
        mine = row_runs(exp, row, runs, preset)
        mine = mine[mine["status"] == "done"]
        if len(mine):
            by_model[row.model] = mine
    lines = []
    for name in exp.claims:
        claim = CLAIMS[name]
        outcome, evidence = claim.check(by_model, responses)
        status = "not run" if outcome is None else ("pass" if outcome else "fail")
        if outcome is not None and preset != "paper":
            status, evidence = "not run", f"{preset} runs only, which would say {'pass' if outcome else 'fail'}: {evidence}"
        lines.append({"claim": name, "statement": claim.statement, "status": status, "evidence": evidence})
    return pd.DataFrame(lines, columns=["claim", "statement", "status", "evidence"])
