"""Where a run's result came from: the code's commit, the versions, the machine and the data (a run's env.json)."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

from resbench import __version__
from resbench.host import vision as _vision  # noqa: F401  (before torchvision: see resbench/host/vision.py)
import torchvision  # noqa: E402
from resbench.host.machine import cpu_model

PACKAGE_DIR = Path(__file__).resolve().parents[1]


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
