"""Run directories: everything about one training run, as plain files pandas reads.

    <out>/<model>-<preset>-<key>-s<seed>/
        config.json      resolved config (model, recipe, seed, data, precision) and its key
        env.json         git commit (+ dirty), versions, device/GPU, data variant and sha256
        metrics.jsonl    one JSON object per record: train (loss, error, lr) and test (error)
        responses.json   Fig. 7 probe: std of every 3x3 layer's response, in layer order
        summary.json     status (done | diverged | paused | failed), final test error, wall time, img/s
        error.txt        traceback of a failed run
        checkpoint.pt    latest checkpoint (previous one kept as checkpoint.prev.pt); never committed
        .lock            held by the process training the run (see resbench.runs.store)

Many run directories in one folder make the result store (`resbench.runs.store`).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import torch

from resbench.host.machine import cpu_model

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path):
    return json.loads(path.read_text())


# Recipe fields that say when a run logs, tests and checkpoints: they change what is written
# down, never what is trained. (ImageNet's eval_every stays: the plateau schedule reads it.)
CADENCE = {"cifar": ("log_every", "eval_every", "checkpoint_every"), "imagenet": ("log_every", "checkpoint_every")}


def identity(config: dict) -> dict:
    """What determines a run's result: model, training recipe, seed, data, arithmetic, budget.

    Not in it: labels (preset name, tier wording, which options were the row's and which
    were --set), the cadence of logs, tests and checkpoints, where the data lies, and how
    fast the step ran (layout, compile, fusing). A run keeps its name through edits of those.
    """
    recipe = dict(config["recipe"])
    for name in CADENCE["imagenet" if "bn_group" in recipe else "cifar"]:
        recipe.pop(name, None)
    data = {k: v for k, v in config["data"].items() if k != "source"}
    return {"model": config["model"], "seed": config["seed"], "recipe": recipe, "data": data,
            "precision": config["precision"], "tf32": config.get("tf32", False),
            "budget": config.get("budget", "1")}


def config_key(config: dict) -> str:
    """Short stable hash of a run's identity (`identity`): same result, same run directory."""
    return hashlib.sha256(json.dumps(identity(config), sort_keys=True).encode()).hexdigest()[:10]


def git_info() -> dict:
    """The commit of this code: RESBENCH_COMMIT where set (a source tree copied without .git, as onto an offline node,
    says its commit), else the git checkout that holds this package, and only if it is this project's
    (a tree copied inside another checkout would otherwise take that checkout's commit)."""
    if os.environ.get("RESBENCH_COMMIT"):
        commit, _, flag = os.environ["RESBENCH_COMMIT"].partition("+")
        return {"commit": commit, "dirty": flag == "dirty"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        top = git("rev-parse", "--show-toplevel")
        if not top or Path(top).resolve() != PACKAGE_DIR.parent.resolve():
            return {"commit": "unknown", "dirty": False}
        return {"commit": git("rev-parse", "HEAD") or "unknown",
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": False}


def environment(device: torch.device, data_provenance: dict) -> dict:
    from resbench.host import vision as _vision  # noqa: F401  (before torchvision)
    import torchvision

    from resbench import __version__

    env = {
        "git": git_info(), "resbench": __version__, "python": platform.python_version(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": str(device), "host": platform.node(), "data": data_provenance,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["gpu"] = None
        env["cpu_threads"] = torch.get_num_threads()
    env["cpu"] = cpu_model()  # with "(native bf16)" where it computes bf16 in hardware
    env["cpu_cores"] = os.cpu_count()
    return env


class MetricsLog:
    """Append-only JSON lines; on resume, records past the checkpoint are dropped first."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, iteration: int) -> list[dict]:
        """Keep the records up to `iteration` (a checkpoint's) and return them; a torn record (a process
        killed, or a disk full, while it appended) is dropped with everything after it."""
        keep: list[dict] = []
        if self.path.exists():
            for line in filter(None, self.path.read_text().splitlines()):
                try:
                    record = json.loads(line)
                except ValueError:
                    break
                if record["iter"] <= iteration:
                    keep.append(record)
            atomic_write_text(self.path, "".join(f"{json.dumps(r)}\n" for r in keep))
        return keep

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def last_error(records: list[dict], split: str = "train") -> float | None:
    """The error of the last record of `split`: what a run resumed at its end reports as its final one."""
    return next((r["error"] for r in reversed(records) if r["split"] == split), None)


CALIBRATION_FOLDER = "calibration"  # of a folder of runs: `resbench calibrate`'s runs, which reports read there
