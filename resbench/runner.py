"""From a declared experiment to run directories: which runs, where, and which are done."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .data.cifar import CifarData, load_cifar10
from .models import parse_model_name
from .results import config_key, read_json, write_json
from .spec import Experiment, load_experiment
from .train.checkpoint import remove_checkpoints
from .train.engine import Engine
from .train.loop import CifarRun, train_cifar
from .train.recipe import cifar_recipe

SMOKE_MAX_DEPTH = 110  # smoke runs skip ResNet-1202 unless it is named with --models


@dataclass(frozen=True)
class PlannedRun:
    row: str
    run: CifarRun
    skip_reason: str | None = None


def plan(exp: Experiment, preset: str, models: list[str] | None = None,
         seeds: int | None = None) -> list[PlannedRun]:
    """The runs of `exp`'s rows (optionally only `models`), seeds 0..seeds-1 each."""
    if exp.kind != "train":
        raise ValueError(f"{exp.name} has nothing to train ({exp.kind}); "
                         + ("see `resbench flops`" if exp.kind == "complexity" else "see its declaration"))
    if exp.dataset != "cifar":
        raise ValueError(f"{exp.name} needs ImageNet training, which this version of resbench does not "
                         "have yet; CIFAR-10 experiments: table6, figure1, figure6, figure7")
    rows = exp.runnable_rows
    if models:
        unknown = set(models) - {r.model for r in rows}
        if unknown:
            raise ValueError(f"{exp.name} has no rows for {', '.join(sorted(unknown))}; "
                             f"its models: {', '.join(r.model for r in rows)}")
        rows = tuple(r for r in rows if r.model in models)
    planned = []
    for row in rows:
        recipe = cifar_recipe(preset, **row.options)
        skip = None
        if preset == "smoke" and not models and parse_model_name(row.model).depth > SMOKE_MAX_DEPTH:
            skip = f"too big for a smoke run; name it with --models {row.model} to include it"
        for seed in range(seeds or 1):
            run = CifarRun(row.model, recipe, seed, preset, tuple(sorted(row.options.items())))
            planned.append(PlannedRun(row.id, run, skip))
    return planned


def run_dir_for(out: Path, run: CifarRun, key: str) -> Path:
    return Path(out) / f"{run.model}-{run.preset}-{key}-s{run.seed}"


def is_done(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.exists() and read_json(summary).get("status") in ("done", "diverged")


def run_experiment(name: str, preset: str = "paper", models: list[str] | None = None,
                   seeds: int | None = None, out: str | Path = "runs", data: CifarData | None = None,
                   data_root: str | None = None, engine: Engine = Engine(), progress: bool = True,
                   time_limit_s: float | None = None, fresh: bool = False,
                   say: Callable[[str], None] = print) -> list[dict]:
    """Train every planned run of experiment `name` that has not finished; returns summaries."""
    planned = plan(load_experiment(name), preset, models, seeds)
    engine = engine.resolve()
    data = data or load_cifar10(data_root, val_split=any(p.run.recipe.val_split for p in planned))
    out = Path(out)
    started, results = time.perf_counter(), []
    for p in planned:
        if p.skip_reason:
            say(f"skip {p.run.model}: {p.skip_reason}")
            continue
        config = p.run.config(data, engine)
        config["key"] = config_key(config)
        run_dir = run_dir_for(out, p.run, config["key"])
        if is_done(run_dir) and not fresh:
            say(f"done already: {run_dir}")
            results.append({"dir": str(run_dir), **read_json(run_dir / "summary.json")})
            continue
        if fresh:
            remove_checkpoints(run_dir)
            for f in ("summary.json", "metrics.jsonl"):
                (run_dir / f).unlink(missing_ok=True)
        write_json(run_dir / "config.json", config)
        left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - started)
        if left is not None and left <= 0:
            say(f"time limit reached; not started: {run_dir}")
            continue
        summary = train_cifar(p.run, data, run_dir, engine, progress, left)
        say(f"{summary['status']}: {run_dir}  test error {summary.get('test_error')}")
        results.append({"dir": str(run_dir), **summary})
    return results
