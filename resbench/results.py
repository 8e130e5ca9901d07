"""Run directories: everything about one training run, as plain files pandas reads.

    <out>/<model>-<preset>-<key>-s<seed>/
        config.json      resolved config (model, recipe, seed, data, precision) and its key
        env.json         git commit (+ dirty), versions, device/GPU, data variant and sha256
        metrics.jsonl    one JSON object per record: train (loss, error, lr) and test (error)
        responses.json   Fig. 7 probe: std of every 3x3 layer's response, in layer order
        summary.json     status (done | diverged | paused | failed), final test error, wall time, img/s
        error.txt        traceback of a failed run
        checkpoint.pt    latest checkpoint (previous one kept as checkpoint.prev.pt); never committed
        .lock            held by the process training the run (see resbench.store)

Many run directories in one folder make the result store (`resbench.store`).
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

PACKAGE_DIR = Path(__file__).resolve().parent


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


def config_key(config: dict) -> str:
    """Short stable hash of a resolved config: same config, same run directory."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def git_info() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"commit": commit or "unknown", "dirty": dirty}


def environment(device: torch.device, data_provenance: dict) -> dict:
    from . import _vision  # noqa: F401  (before torchvision)
    import torchvision

    from . import __version__

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
    return env


class MetricsLog:
    """Append-only JSON lines; on resume, records past the checkpoint are dropped first."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, iteration: int) -> None:
        if self.path.exists():
            keep = [line for line in self.path.read_text().splitlines()
                    if line and json.loads(line)["iter"] <= iteration]
            atomic_write_text(self.path, "".join(f"{line}\n" for line in keep))

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
