"""`resbench calibrate`: what this data costs a trainer with published numbers (resbench/calibrate.py)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from resbench.cli.common import OLD_OUT_HELP, console, fail, message, runs_folder


def calibrate_cmd(
    plan: Optional[List[str]] = typer.Argument(None, help="PEER:SEEDS, e.g. airbench94:10 airbench96:3 (the "
                                               "default); peers: airbench94, airbench95, airbench96"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10 (default: as `resbench run`)"),
    runs: Optional[List[Path]] = typer.Option(None, "--runs", show_default="runs", help="results folder: the "
                                              "calibration runs go in its calibration/, where `resbench report "
                                              "--runs` reads them"),
    old_out: Optional[List[Path]] = typer.Option(None, "--out", hidden=True, help=OLD_OUT_HELP + " (the "
                                                 "calibration folder itself)"),
    time_limit: Optional[str] = typer.Option(None, help="a duration (90s, 45m, 2h, 1h30m): no seed starts that "
                                             "would end later"),
) -> None:
    """What this CIFAR-10 costs a trainer with published numbers: airbench's own recipe on it (a GPU only).

    Its error here minus its published error on the original images; reports show it beside their verdicts."""
    from resbench.calibrate.peers import DEFAULT_PLAN, CalibrationUnavailable, calibrate, parse_plan
    from resbench.runs.rundir import CALIBRATION_FOLDER
    from resbench.data import DataError
    from resbench.data.cifar import cifar10_files
    from resbench.report.calibration import calibration_table, load_calibration_runs, sentence
    from resbench.sweep.durations import parse_duration

    folder = runs_folder(runs, old_out)
    out = folder if old_out else folder / CALIBRATION_FOLDER
    try:
        deadline = time.time() + parse_duration(time_limit) if time_limit is not None else None
        peers = parse_plan(plan or list(DEFAULT_PLAN))
        files = cifar10_files(str(data_root) if data_root else None)
        written = calibrate(files, peers, out, deadline,
                            say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except (CalibrationUnavailable, DataError, ValueError) as err:
        fail(message(err))
    done = [w for w in written if w["status"] == "done"]
    console.print(f"{len(done)} calibration run(s) trained into {out}; failed: {len(written) - len(done)}")
    for _, line in calibration_table(load_calibration_runs(out)).iterrows():  # every finished seed in `out`
        console.print(f"{line['data_variant']}: {sentence(line)}", highlight=False, soft_wrap=True)
    if len(done) < len(written):
        raise typer.Exit(1)
