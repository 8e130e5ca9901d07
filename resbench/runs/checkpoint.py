"""Atomic checkpoints: the latest and the one before it, so a torn write never loses a run."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from resbench.host.files import atomic_file

LATEST, PREVIOUS = "checkpoint.pt", "checkpoint.prev.pt"


def save_checkpoint(run_dir: Path, state: dict) -> None:
    """The old latest becomes the previous one, then the new one is written whole and renamed into place: a
    cut at any moment leaves a readable checkpoint as new as the old latest (`load_checkpoint` falls back)."""
    latest = run_dir / LATEST
    if latest.exists():
        os.replace(latest, run_dir / PREVIOUS)
    with atomic_file(latest) as f:
        torch.save(state, f)


def load_checkpoint(run_dir: Path, map_location: torch.device | str = "cpu") -> dict | None:
    """The newest readable checkpoint, or None. A corrupt latest one falls back, with a warning."""
    for name in (LATEST, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location=map_location, weights_only=False)
        except Exception as err:  # truncated zip, bad pickle: any unreadable file
            warnings.warn(f"{path} is unreadable ({type(err).__name__}); trying an older checkpoint",
                          stacklevel=2)
    return None


def remove_checkpoints(run_dir: Path) -> None:
    for name in (LATEST, PREVIOUS):
        (run_dir / name).unlink(missing_ok=True)
