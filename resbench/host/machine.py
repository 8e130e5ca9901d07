"""Facts about the machine a run trains on, for choosing an arithmetic and for a run's provenance."""
from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch


@cache
def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX), as torch detects it."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    if capabilities:
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU's model name and whether it computes bf16 natively, e.g. 'AMD EPYC (native bf16)'."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return name + (" (native bf16)" if native_bf16() else "")


def cache_dir(kind: str) -> Path:
    """$RESBENCH_CACHE, else ~/.cache/resbench (or $XDG_CACHE_HOME/resbench), then `kind`/."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("RESBENCH_CACHE") or Path(cache) / "resbench").expanduser() / kind
