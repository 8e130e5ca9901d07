"""What the `resbench` commands share: the console, one-line errors, argument parsing, small formats."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

console = Console()


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and a non-zero exit: how every user error ends."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def message(err: Exception) -> str:
    """An error's text: a KeyError's own message, not its repr in quotes; any other's str, quotes kept."""
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


def comma_list(value: Optional[str]) -> Optional[list[str]]:
    """'a, b,c' -> ['a', 'b', 'c']; None or '' -> None."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def name_list(value: Optional[str], option: str) -> Optional[list[str]]:
    """--models a,b: the names; None when the option is not given. An empty name is refused, not read as
    'every row' (`--models ,` or a stray comma would otherwise train the whole experiment)."""
    if value is None:
        return None
    found = [v.strip() for v in value.split(",")]
    if not all(found):
        fail(f"{option} has an empty name in {value!r}: give comma-separated names, or leave {option} out for all")
    return found


def check_device(value: str) -> str:
    """--device, checked before anything is planned or written: auto, cpu, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        fail(f"unknown device {value!r}; choose auto, cpu, cuda or cuda:N")
    return value


# every command's --device, refused at parsing (before data is looked for or anything is written)
DEVICE = typer.Option("auto", help="auto, cpu, cuda or cuda:N", callback=check_device)


def overrides(settings: Optional[List[str]]) -> dict:
    """--set key=value (value as JSON where it parses, e.g. lr=0.05, milestones=[100,200])."""
    out = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def one(values: List[Path], option: str) -> Path:
    """The single folder an option takes; two given is a mistake to say, not to settle by taking the last."""
    if len(values) != 1:
        fail(f"{option} takes one folder, got {len(values)}: {', '.join(map(str, values))}")
    return values[0]


RUNS_HELP = "results folder: one run directory per run"
OLD_OUT_HELP = "the old name of --runs"  # hidden: kept so that scripts written for it still work


def runs_folder(runs: Optional[List[Path]], old_out: Optional[List[Path]]) -> Path:
    """The results folder: --runs, or the old spelling --out with a one-line note; runs/ when neither is given."""
    if old_out:
        if runs:
            fail("--out is the old name of --runs: give --runs only")
        Console(stderr=True).print("note: --out is now --runs (the results folder); --out will go in a later "
                                   "version", highlight=False, soft_wrap=True)
        return one(old_out, "--out")
    return one(runs or [Path("runs")], "--runs")


def outcome(results: list[dict]) -> str:
    """'3/4 runs done, 1 running in another process'."""
    names = {"taken": "running in another process", "running": "running in another process"}
    counts: dict[str, int] = {}
    for r in results:
        if r["status"] != "done":
            name = names.get(r["status"], r["status"])
            counts[name] = counts.get(name, 0) + 1
    done = sum(r["status"] == "done" for r in results)
    return f"{done}/{len(results)} runs done" + "".join(f", {n} {s}" for s, n in counts.items())


def is_missing(value) -> bool:
    return value is None or value != value  # None or NaN


def duration(seconds: float) -> str:
    """3725 -> '1:02:05'."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
