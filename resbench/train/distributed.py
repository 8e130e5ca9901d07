"""Data-parallel processes started by torchrun: who we are, and agreeing on decisions.

Every process runs the same command; process 0 writes the run directory and holds the
run's lock, and the others follow what it decides.
"""
from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist

from resbench.runs.store import claim


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


def any_rank(flag: bool) -> bool:
    """True on every process when `flag` is true on any one: a decision all must take together (a
    process that stopped alone would leave the others waiting in their next all-reduce forever)."""
    if world()[1] == 1:
        return flag
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    box = torch.tensor([float(flag)], device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item())


# How long the other processes wait for work only process 0 does: the final tests (center, 10-crop
# and multi-scale over 50k val images) outlast NCCL's default timeout of 10 minutes.
LEAD_WORK_TIMEOUT = timedelta(hours=6)
_waiting: list = []  # the CPU process group the others wait on, made once


def after_lead(obj):
    """Process 0's value once it has computed it alone; the others wait up to LEAD_WORK_TIMEOUT on a
    gloo group of their own (its timeout, not the training group's)."""
    if world()[1] == 1:
        return obj
    if not _waiting:
        _waiting.append(dist.new_group(backend="gloo", timeout=LEAD_WORK_TIMEOUT))
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_waiting[0])
    return box[0]


@contextlib.contextmanager
def claim_once(run_dir: Path) -> Iterator[bool]:
    """The store's claim on a run, taken by process 0 only; its outcome on every process."""
    rank, size = world()
    if rank == 0:
        with claim(run_dir) as mine:
            yield broadcast(mine) if size > 1 else mine
    else:
        yield broadcast(None)
