"""The paper's tables and figures as declared in `experiments/*.toml`.

One file per table or figure lists its rows: the model (the row id unless a row says
otherwise), recipe options, and the values the paper reports for that row. The runner,
`resbench list`, `resbench flops` and the report notebooks all read these declarations,
so adding a row is one edit there.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from resbench.models import parse_model_name
from resbench.paper.recipes import parse_budget

# plan: runs to train that feed the tables' and figures' reports (`reports`), with no paper numbers of its own
KINDS = ("complexity", "train", "ensemble", "plan")
DATASETS = ("cifar", "imagenet")
ORDERS = ("declared", "cheapest")  # the order of an experiment's runs: as its rows are, or cheapest first
PRECISIONS = ("bf16", "fp32")  # a row's arithmetic (resbench.train.engine's, a layer above this one)


@dataclass(frozen=True)
class Row:
    id: str  # the row's name in the paper's table (and in reported.csv)
    model: str | None  # None for rows quoted from other papers
    paper: dict[str, float] = field(default_factory=dict)  # metric -> reported value
    options: dict = field(default_factory=dict)  # recipe overrides, e.g. {"warmup": True}
    seeds: int = 1  # how many runs the paper's number summarises
    bound: str | None = None  # "lower": the paper gives only a lower bound
    members: tuple[str, ...] = ()  # an ensemble row's models (Table 5), where the paper lists them
    ensemble: bool = False  # the row is an ensemble of trained models (Table 5)
    precision: str | None = None  # the row's arithmetic (a precision control's rows); None: the engine's
    note: str = ""

    @property
    def runnable(self) -> bool:
        return self.model is not None or bool(self.members)


@dataclass(frozen=True)
class Experiment:
    name: str  # table1 ... figure7
    title: str
    dataset: str
    kind: str
    metrics: dict[str, str]  # metric -> unit
    rows: tuple[Row, ...]
    recipe: str | None = None
    test: str = "single"  # final test: single (CIFAR: the one 32x32 view), center, 10crop, multiscale
    claims: tuple[str, ...] = ()
    panels: tuple[tuple[str, ...], ...] = ()  # figures: the models of each panel
    # the equivalence margin of verdicts: how far our mean may lie from the paper's number, in the
    # metric's unit (percentage points for errors); see resbench/report/diff.py
    tolerance: dict[str, float] = field(default_factory=lambda: {"reproduced": 0.5})
    # a plan over budgets (CIFAR): every row at each of these shares of the schedule (e.g. "1/32"), in
    # place of --budget; empty: the one budget the command gives
    budgets: tuple[str, ...] = ()
    order: str = "declared"  # "cheapest": runs ordered by their cost, so a deadline cut keeps most results
    reports: tuple[str, ...] = ()  # a plan: the reports its runs feed

    @property
    def report_options(self) -> str:
        """The `resbench report` options of the reports this experiment's runs feed: its own ("--table 6"), or
        a plan's `reports` ("--table 6 --figure 6")."""
        named = [re.fullmatch(r"(table|figure)(\d+)", name) for name in self.reports or (self.name,)]
        return " ".join(f"--{m[1]} {m[2]}" for m in named if m)

    @property
    def trains(self) -> bool:
        return self.kind in ("train", "plan")

    def row(self, row_id: str) -> Row:
        for row in self.rows:
            if row.id == row_id:
                return row
        raise KeyError(f"{self.name} has no row {row_id!r}; rows: {', '.join(r.id for r in self.rows)}")

    @property
    def runnable_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.runnable)


def _row(raw: dict, where: str) -> Row:
    raw = dict(raw)
    reference = raw.pop("reference", False)
    row_id = raw.pop("id")
    ensemble = raw.pop("ensemble", False)
    model = None if reference or ensemble else raw.pop("model", row_id)
    members = tuple(raw.pop("members", ()))
    for name in (model, *members):
        if name is not None:
            parse_model_name(name)  # fail at load time on a typo, with the model error
    row = Row(id=row_id, model=model, members=members, ensemble=ensemble, **raw)
    unknown = set(row.paper) - {"params", "flops", "error", "error_mean", "error_std",
                                "top1_err", "top5_err"}
    if unknown:
        raise ValueError(f"{where}: row {row_id!r} has unknown paper metrics {sorted(unknown)}")
    return row


def _declarations():
    """experiments/ beside the package in a checkout (its own, even where another checkout is installed
    editable: run with PYTHONPATH=.), else as installed (resbench.experiments)."""
    checkout = Path(__file__).resolve().parents[2] / "experiments"
    if (checkout / "table6.toml").is_file():
        return checkout
    return resources.files("resbench.experiments")


@cache
def load_experiment(name: str) -> Experiment:
    """Load `experiments/<name>.toml` (a table, a figure or a plan); raises KeyError listing the known names."""
    if name not in declared_names():
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(declared_names())}")
    text = _declarations().joinpath(f"{name}.toml").read_text()
    raw = tomllib.loads(text)
    rows = tuple(_row(r, f"{name}.toml") for r in raw.pop("rows"))
    panels = tuple(tuple(p) for p in raw.pop("panels", ()))
    budgets = tuple(str(b) for b in raw.pop("budgets", ()))
    exp = Experiment(name=name, rows=rows, claims=tuple(raw.pop("claims", ())), panels=panels, budgets=budgets,
                     reports=tuple(raw.pop("reports", ())), **raw)
    return validate(exp, f"{name}.toml")


def validate(exp: Experiment, where: str) -> Experiment:
    """`exp`, or a ValueError naming what in its declaration cannot be run."""
    if exp.kind not in KINDS or exp.dataset not in DATASETS:
        raise ValueError(f"{where}: kind must be one of {KINDS} and dataset one of {DATASETS}")
    if exp.order not in ORDERS:
        raise ValueError(f"{where}: order must be one of {ORDERS}, got {exp.order!r}")
    if exp.kind == "plan" and (not exp.runnable_rows or any(r.paper for r in exp.rows)):
        raise ValueError(f"{where}: a plan lists networks to train and no paper numbers (those are a table's)")
    if unknown := set(exp.reports) - set(declared_names()):
        raise ValueError(f"{where}: reports names no declared table or figure: {sorted(unknown)}")
    if exp.budgets:
        if exp.dataset != "cifar" or not exp.trains:
            raise ValueError(f"{where}: budgets compress the CIFAR-10 schedule of a train experiment")
        try:
            shares = [parse_budget(b) for b in exp.budgets]
        except ValueError as err:
            raise ValueError(f"{where}: budgets: {err}") from None
        if len(set(shares)) < len(shares):
            raise ValueError(f"{where}: budgets {list(exp.budgets)} name a budget twice")
    for row in exp.rows:
        if row.precision is not None and (row.precision not in PRECISIONS or not exp.trains):
            raise ValueError(f"{where}: row {row.id!r}: precision must be one of {PRECISIONS} in a train "
                             f"experiment, got {row.precision!r}")
        if row.seeds < 1:
            raise ValueError(f"{where}: row {row.id!r}: seeds must be at least 1, got {row.seeds}")
    return exp


@cache
def declared_names() -> tuple[str, ...]:
    """Every declaration: the paper's tables, its figures, then the plans."""
    files = _declarations().iterdir()
    names = sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))
    return tuple(sorted(names, key=lambda n: (not n.startswith("table"), not n.startswith("figure"), n)))


@cache
def experiment_names() -> tuple[str, ...]:
    """The paper's tables and figures: what `resbench report` builds."""
    return tuple(n for n in declared_names() if load_experiment(n).kind != "plan")


def plan_names() -> tuple[str, ...]:
    """The declared plans (experiments/ladder.toml, precision.toml): runs that feed the reports."""
    return tuple(n for n in declared_names() if load_experiment(n).kind == "plan")


def all_experiments() -> list[Experiment]:
    return [load_experiment(n) for n in experiment_names()]
