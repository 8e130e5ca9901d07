"""The paper's tables and figures as declared in `experiments/*.toml`.

One file per table or figure lists its rows: the model (the row id unless a row says
otherwise), recipe options, and the values the paper reports for that row. The runner,
`resbench list`, `resbench flops` and the report notebooks all read these declarations,
so adding a row is one edit there.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from resbench.models import parse_model_name

KINDS = ("complexity", "train", "ensemble")
DATASETS = ("cifar", "imagenet")


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
    """experiments/ as installed (resbench.experiments), or beside the package in a bare checkout
    run with PYTHONPATH=. (as on the GPU machine, which has no build tools)."""
    try:
        return resources.files("resbench.experiments")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "experiments"


@cache
def load_experiment(name: str) -> Experiment:
    """Load `experiments/<name>.toml`; raises KeyError listing the known names."""
    if name not in experiment_names():
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(experiment_names())}")
    text = _declarations().joinpath(f"{name}.toml").read_text()
    raw = tomllib.loads(text)
    rows = tuple(_row(r, f"{name}.toml") for r in raw.pop("rows"))
    panels = tuple(tuple(p) for p in raw.pop("panels", ()))
    exp = Experiment(name=name, rows=rows, claims=tuple(raw.pop("claims", ())), panels=panels, **raw)
    if exp.kind not in KINDS or exp.dataset not in DATASETS:
        raise ValueError(f"{name}.toml: kind must be one of {KINDS} and dataset one of {DATASETS}")
    return exp


@cache
def experiment_names() -> tuple[str, ...]:
    files = _declarations().iterdir()
    names = sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))
    return tuple(sorted(names, key=lambda n: (not n.startswith("table"), n)))


def all_experiments() -> list[Experiment]:
    return [load_experiment(n) for n in experiment_names()]
