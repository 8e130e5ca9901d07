"""`resbench ensemble`: Table 5, ImageNet runs tested alone and as an ensemble."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from resbench.cli.common import check_device, console, fail, message
from resbench.data import DataError
from resbench.host.files import write_json
from resbench.runs.rundir import is_run_dir, read_config


def ensemble_cmd(
    runs: List[Path] = typer.Argument(..., help="finished ImageNet run directories"),
    test: str = typer.Option("multiscale", help="center, 10crop or multiscale (Table 5: multiscale)"),
    data_root: Optional[Path] = typer.Option(None, help="the ImageNet folder the runs trained on"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    out: Optional[Path] = typer.Option(None, help="also write the results as JSON here"),
) -> None:
    """Table 5: test several ImageNet runs alone and as an ensemble (softmax averaged)."""
    # imported when the command runs, as in cli/main.py: `resbench --help` need not load torch
    from resbench.data.imagenet import find_imagenet
    from resbench.evaluation.ensemble import ensemble_of_runs
    from resbench.train.engine import Engine

    try:
        if test not in ("center", "10crop", "multiscale"):
            raise ValueError(f"unknown test {test!r}; choose center, 10crop or multiscale")
        engine = Engine(device=check_device(device)).resolve()
        root = data_root or next((read_config(r)["data"]["source"] for r in runs if is_run_dir(r)), None)
        result = ensemble_of_runs(runs, find_imagenet(root), engine, test)
    except (DataError, ValueError, KeyError) as err:
        fail(message(err))
    table = Table(title=f"{test} test on {result['data_variant']} val")
    for col in ("run", "model", "top-1 err %", "top-5 err %"):
        table.add_column(col, justify="right" if "err" in col else "left")
    for m in result["members"]:
        table.add_row(m["run"], m["model"], f"{m['top1_err']:.2f}", f"{m['top5_err']:.2f}")
    table.add_row("[bold]ensemble[/]", f"{len(result['members'])} models", f"{result['top1_err']:.2f}",
                  f"{result['top5_err']:.2f}")
    console.print(table)
    if out:
        write_json(out, result)
        console.print(f"wrote {out}")
