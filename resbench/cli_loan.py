"""`resbench loan ...`: a GPU loan in one command (scripts/gpu_loan.sh), and its two ends here."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Optional

import typer

from .cli_common import console, fail, split as _split

loan_app = typer.Typer(help="A GPU loan: bundle here, train and pack there (scripts/gpu_loan.sh), collect here.")
GPU_DIR = typer.Option(Path(".gpu"), help="what travels to the machine beside the tree (carried as .gpu)")


@loan_app.command("bundle")
def bundle_cmd(data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10"),
               gpu_dir: Path = GPU_DIR) -> None:
    """Before a loan: the data gzip'd with its sha256, and this checkout's commit, in .gpu/."""
    from .data import DataError
    from .loan import MIB, bundle

    commit = _git("rev-parse", "HEAD") or "unknown"
    commit += "+dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
    try:
        sizes = bundle(str(data_root) if data_root else None, gpu_dir, commit)
    except DataError as err:
        fail(str(err))
    peer = f"airbench {sizes['airbench']}" if sizes["airbench"] else \
        "no airbench (the loan skips the calibration: pip install -e '.[calibrate]', then bundle again)"
    console.print(f"{gpu_dir}/: data {sizes['data'] / MIB:.1f} MiB, carry {sizes['carry'] / MIB:.1f} MiB, {peer}, "
                  f"commit {commit}; now: run(command='sh scripts/gpu_loan.sh', carry=['{gpu_dir}'])")


@loan_app.command("train")
def train_cmd(out: Path = typer.Option(..., help="what comes back ($OUT)"),
              deadline: float = typer.Option(..., help="absolute time (seconds since the epoch) to pause by"),
              work: Path = typer.Option(Path("/tmp/resbench-loan"), help="data and results on the machine"),
              device: str = typer.Option("cuda", help="cuda, or cpu for a rehearsal"),
              preset: str = typer.Option("paper", help="paper; smoke for a rehearsal"),
              stages: str = typer.Option("1/32,1/16,1", help="budgets in order (1 = the full recipe)"),
              models: Optional[str] = typer.Option(None, help="networks, cheapest first (default: the ten of "
                                                   "Table 6 / Fig. 6; name resnet1202 to include it)"),
              seeds: int = typer.Option(3, min=1),
              preflight_iterations: int = typer.Option(50, min=8),
              min_start: float = typer.Option(90, help="seconds: no run starts with less left"),
              margin: float = typer.Option(20, help="seconds before the deadline by which runs pause"),
              pack_sizes: Optional[str] = typer.Option(None, help="pack sizes the preflight measures (default "
                                                       "1,2,4,8,16,32, doubled beyond while it pays; 1: no pack)"),
              calibrate: str = typer.Option("airbench94:10,airbench96:3", help="the data calibration first "
                                            "(`resbench calibrate`); '' for none"),
              calibrate_s: float = typer.Option(180, help="seconds the calibration may take at most"),
              control_seeds: int = typer.Option(3, min=0, help="ResNet-20 in true fp32 at the full recipe, before "
                                                "the ladder: the precision control (0: none)"),
              steps_s: float = typer.Option(90, help="seconds for `resbench bench step` on the deep nets after "
                                            "the preflight (a GPU only; 0: none)"),
              gpu_dir: Path = GPU_DIR) -> None:
    """On the machine: unpack, calibrate, preflight, control, train until the deadline (resbench/loan_plan.py)."""
    from .loan_plan import MODELS, train

    def say(line: str) -> None:
        console.print(f"[{time.strftime('%H:%M:%S')}] {line}", highlight=False, soft_wrap=True)

    out.mkdir(parents=True, exist_ok=True)
    sizes = tuple(int(k) for k in _split(pack_sizes) or ()) or None
    result = train(gpu_dir, Path.cwd(), work, out, deadline, device, preset, tuple(_split(stages) or ()),
                   tuple(_split(models) or MODELS), seeds, preflight_iterations, min_start, margin, say, sizes,
                   tuple(_split(calibrate) or ()), calibrate_s, control_seeds, steps_s)
    how = f"packs of {result['pack']}" if "pack" in result else f"{result['fuse']} seeds fused"
    say(f"trained {len(result['trained'])} runs with {result['engine']}, {how}")


@loan_app.command("pack")
def pack_cmd(out: Path = typer.Option(..., help="what comes back ($OUT)"),
             work: Path = typer.Option(Path("/tmp/resbench-loan"))) -> None:
    """On the machine, last: runs.tgz and carry-N.tar into $OUT."""
    from .loan import pack

    console.print(f"packed: {', '.join(pack(work / 'runs', out))}")


@loan_app.command("collect")
def collect_cmd(files_at: Path = typer.Argument(..., help="where the loan's files came back"),
                repo: Path = typer.Option(Path("."), help="this checkout")) -> None:
    """After a loan: small files into reports/runs/, checkpoints into .gpu/carry/, preflight into reports/gpu/."""
    from .loan import collect

    try:
        console.print(json.dumps(collect(files_at, repo)))
    except (ValueError, FileNotFoundError) as err:
        fail(str(err))


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
