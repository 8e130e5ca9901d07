"""`resbench tune`: this machine measured once into its profile (resbench/bench/tune.py), read by `run --pack auto`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from resbench.cli.common import DEVICE, comma_list, console, fail, message
from resbench.sweep.durations import parse_duration


def tune_cmd(
    networks: str = typer.Option("resnet20", help="comma-separated CIFAR networks to measure"),
    time_limit: str = typer.Option("10m", help="wall time for everything, e.g. 90s, 10m, 1h; every row measured "
                                   "by then is kept"),
    device: str = DEVICE,
    precision: str = typer.Option("auto", help="auto (bf16 on a GPU, fp32 on a CPU), bf16 or fp32"),
    graph: Optional[bool] = typer.Option(None, "--graph/--no-graph", help="packs step captured in CUDA graphs "
                                         "(default: on CUDA, as `run --pack` steps them)"),
    iterations: int = typer.Option(200, min=8, help="timed steps per measurement (per run, in a pack)"),
    batch_size: int = typer.Option(128, min=2, help="the paper's 128 (BN per half of it)"),
    sizes: str = typer.Option("1,2,4,8,16,32", help="pack sizes K, in order, until one fails or is no faster"),
    profile: Optional[Path] = typer.Option(None, help="the profile file (default: $RESBENCH_CACHE/profiles/"
                                           "<device>--torch-<version>.json, ~/.cache/resbench by default)"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10 (default: as `resbench run`)"),
) -> None:
    """Measure this device within a time limit: plain vs captured step, pack sizes (packed runs checked
    against runs alone), the bf16 peak. Each row goes to the machine's profile as soon as it is measured;
    `run --pack auto` reads it. SIGTERM or Ctrl-C stops it at once, the rows so far kept."""
    try:  # the options first: a refusal comes at once, before torch (and then torchvision) is imported
        seconds = parse_duration(time_limit)
        names = comma_list(networks) or []
        counts = [int(k) for k in comma_list(sizes) or []]
        if not names or not counts or min(counts) < 1:
            raise ValueError("--networks and --sizes need at least one network and one size of 1 or more")
        from resbench.models import parse_model_name

        for name in names:  # an unknown network fails here, before anything is measured
            if parse_model_name(name).dataset != "cifar":
                raise ValueError(f"{name} is an ImageNet network; tune measures CIFAR ones (e.g. resnet20, resnet110)")
    except (ValueError, KeyError) as err:
        fail(message(err))
    from resbench.bench.tune import chosen_pack, profile_path, tune
    from resbench.data import DataError
    from resbench.data.cifar import load_cifar10
    from resbench.train.engine import Engine

    try:
        engine = Engine(device=device, precision=precision, compile=False).resolve()
        path = profile or profile_path(engine.device)
        data = load_cifar10(str(data_root) if data_root else None)
        result = tune(data, engine, path, tuple(names), seconds, iterations, batch_size, tuple(counts), graph,
                      say=lambda line: console.print(line, highlight=False, soft_wrap=True))
    except (DataError, ValueError, KeyError) as err:
        fail(message(err))
    except OSError as err:
        fail(f"cannot write the profile: {err}")
    _table(result, names)
    for name in names:
        k = chosen_pack(result, name, engine.precision)
        console.print(f"{name}: run --pack auto trains {k if k else '1 (no pack measured)'} at a time")
    console.print(f"profile: {path}" + (f" (stopped: {result['stopped']})" if "stopped" in result else ""))


def _table(profile: dict, names: list[str]) -> None:
    rows = [r for r in profile["rows"] if r.get("network") in names and r["what"] in ("step", "pack")]
    table = Table(title=f"{profile.get('device')}, torch {profile.get('torch')}: img/s, batch 128")
    for col in ("network", "precision", "measured", "img/s, all runs", "img/s per run", "step"):
        table.add_column(col, justify="right" if "img/s" in col else "left")
    for r in rows:
        what = f"{r['way']} step" if r["what"] == "step" else f"pack of {r['slots']}"
        if "failed" in r:
            table.add_row(r["network"], r["precision"], what, "", "", f"[red]{r['failed']}[/]")
            continue
        per_run = r.get("per_run_img_per_s", r["img_per_s"])
        table.add_row(r["network"], r["precision"], what, f"{r['img_per_s']:,.0f}", f"{per_run:,.0f}",
                      r.get("path") or r.get("step") or "")
    console.print(table)
