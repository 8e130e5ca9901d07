"""Data-parallel processes started by torchrun: who we are, and agreeing on decisions.

Every process runs the same command; process 0 writes the run directory and holds the
run's lock, and the others follow what it decides.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, number of processes): (0, 1) unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> str | None:
    """Join the process group torchrun describes in the environment; returns this process's
    device (cuda:LOCAL_RANK, or cpu), or None when not started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{torch.cuda.current_device()}" if cuda else "cpu"


def broadcast(obj):
    """Process 0's value, on every process."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def claim_once(run_dir: Path) -> Iterator[bool]:
    """The store's claim on a run, taken by process 0 only; its outcome on every process."""
    from ..store import claim

    rank, size = world()
    if rank == 0:
        with claim(run_dir) as mine:
            yield broadcast(mine) if size > 1 else mine
    else:
        yield broadcast(None)
