"""A report folder's own record, `report.json`: what it judged (verdicts per tier, claims, runs read) and
which runs folder it was built from. Not a run's `summary.json`: the index and the CLI read this one."""
from __future__ import annotations

from pathlib import Path

from resbench.host.files import read_json, write_json

REPORT = "report.json"


def read_report(folder: Path) -> dict:
    """The record of a built report, or {} where none was built."""
    path = Path(folder) / REPORT
    return read_json(path) if path.exists() else {}


def write_report(folder: Path, record: dict) -> None:
    write_json(Path(folder) / REPORT, record)


def built_reports(out: Path) -> list[Path]:
    """The report folders of a reports folder (not one being built: those are hidden)."""
    return [p.parent for p in Path(out).glob(f"*/{REPORT}") if not p.parent.name.startswith(".")]
