"""`resbench runs export / import`: results moved from a cluster or an offline node to where reports are built."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from resbench.cli.common import comma_list, console, fail, message, one

runs_app = typer.Typer(help="Move runs between machines: one archive of run directories, verified on import.",
                       no_args_is_help=True)
RUNS = typer.Option([Path("runs")], "--runs", help="folder of run directories (resbench run --out)")
ACTION_STYLE = {"exported": "green", "added": "green", "replaced": "cyan", "same": "dim", "kept": "yellow",
                "left out": "yellow"}


@runs_app.command("export")
def export_cmd(
    archive: Path = typer.Argument(..., help="the archive to write, e.g. node12-runs.tar.gz"),
    names: Optional[List[str]] = typer.Argument(None, help="run directory names or patterns, e.g. 'resnet20-*' "
                                                "(default: every run in --runs)"),
    runs_: List[Path] = RUNS,
    experiment: Optional[str] = typer.Option(None, help="only the runs of this experiment's rows"),
    models: Optional[str] = typer.Option(None, help="only these models, comma-separated, e.g. resnet20,plain56"),
    with_checkpoints: bool = typer.Option(False, "--with-checkpoints", help="unfinished runs take their latest "
                                          "checkpoint, to resume where they stopped (finished runs never need one)"),
) -> None:
    """Write chosen runs into one archive: finished ones small (no checkpoints); unfinished ones with their latest
    checkpoint when asked."""
    from resbench.runs.archive import choose_runs, export_runs

    runs = one(runs_, "--runs")
    try:
        chosen = choose_runs(runs, names, _models(experiment, models))
        moved = export_runs(chosen, archive, with_checkpoints)
    except (ValueError, KeyError) as err:
        fail(message(err))
    except OSError as err:
        fail(f"cannot write {archive}: {err.strerror or err}")
    table = Table(title=f"{archive} from {runs}/")
    for col in ("run", "state", "", "files", "note"):
        table.add_column(col, no_wrap=col == "run")
    for m in moved:
        table.add_row(m.name, m.state, _styled(m.action), str(len(m.files)) if m.files else "", m.detail)
    console.print(table)
    shipped = sum(m.action == "exported" for m in moved)
    size = archive.stat().st_size / 2**20
    console.print(f"wrote {archive} ({shipped} run{'s' * (shipped != 1)}, {size:.1f} MiB); on the other machine: "
                  f"resbench runs import {archive.name} --runs FOLDER", highlight=False, soft_wrap=True)


@runs_app.command("import")
def import_cmd(
    archive: Path = typer.Argument(..., help="an archive written by `resbench runs export`"),
    runs_: List[Path] = RUNS,
) -> None:
    """Bring an archive's runs into a folder: verified whole first; never replaces a finished run, nor a
    checkpoint with an older one."""
    from resbench.runs.unarchive import import_runs

    runs = one(runs_, "--runs")
    try:
        moved = import_runs(archive, runs)
    except ValueError as err:
        fail(message(err))
    except OSError as err:
        fail(f"cannot write to {runs}: {err.strerror or err}")
    table = Table(title=f"{archive} into {runs}/")
    for col in ("run", "state", "", "note"):
        table.add_column(col, no_wrap=col == "run")
    for m in moved:
        table.add_row(m.name, m.state, _styled(m.action), m.detail)
    console.print(table)
    counts = {a: sum(m.action == a for m in moved) for a in ACTION_STYLE if any(m.action == a for m in moved)}
    console.print(", ".join(f"{n} {a}" for a, n in counts.items()) + f"; see them: resbench status --out {runs}",
                  highlight=False, soft_wrap=True)


def _models(experiment: Optional[str], models: Optional[str]) -> Optional[set[str]]:
    """The models --experiment and --models leave in (None: every model)."""
    from resbench.paper.declarations import load_experiment

    named = set(comma_list(models) or []) if models is not None else None
    if named is not None and not named:
        raise ValueError(f"--models {models!r} names no model")
    if experiment is None:
        return named
    rows = {r.model for r in load_experiment(experiment).runnable_rows}
    if named and (unknown := named - rows):
        raise ValueError(f"{experiment} has no rows for {', '.join(sorted(unknown))}; its models: "
                         f"{', '.join(sorted(rows))}")
    return named or rows


def _styled(action: str) -> str:
    return f"[{ACTION_STYLE[action]}]{action}[/]"
