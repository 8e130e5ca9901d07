"""Packed training: K CIFAR runs side by side in one process, each computing exactly what it does alone.

A batch-128 step of a small CIFAR net is a chain of tiny kernels: one run leaves an H200 idle
99% of the time. A pack keeps K runs in flight: each has its own model, optimizer, data order,
checkpoints and run directory (`cifar.Member`, driven by `cifar.OneRun` through the one loop
loop skeleton), and on a GPU its slot's CUDA stream, so the kernels of different runs overlap. Each
run's step is the engine's step (on CUDA by default a captured CUDA graph, replayed onto the
slot's stream), so a packed run computes what it computes alone, operation for operation; only
the interleaving differs. The runs may differ in depth, recipe and seed.

* One stream per slot, made once and handed to the next run when one ends: CUDA hands streams
  out from a pool of 32, so a stream per run (or two, with the capture's) would make runs share
  streams long before 32 slots; beyond 32 slots they share anyway.
* A run that joins a running pack waits for its own stream only (its capture too:
  `graphs.CapturedStep`), never for the whole device.
* One copy of the data on the device, read by every run.
* The host never waits in the hot loop: losses and errors add up on the device (`engine.Window`);
  a run waits for its own stream only at its due points (log, test, checkpoint).
* A run that ends (done, paused, diverged, failed) leaves the pack and the next run the caller
  admits takes its slot, so the device stays full until the deadline.
* torch.compile is not used in a pack: dynamo's caches are reset per compiled run
  (`engine.compile_for_run`), which would recompile every other run of the pack. The captured
  step takes its place: on an H200 one ResNet-20 run stepped 7,262 img/s with eager kernels and
  39,123 captured (`resbench tune` measures a pack on the user's own GPU).
"""
from __future__ import annotations

import contextlib
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from resbench.data.cifar import CifarData
from resbench.train.engine import Engine
from resbench.train.loop import Member, OneRun, Training, progress_bar
from resbench.train.runspec import CifarRun
from resbench.train.stop import Deadline, stop_on_signals


@dataclass
class Slot:
    dir: Path
    stream: torch.cuda.Stream | None
    training: Training

    def on_stream(self):
        return torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext()


class SlotStreams:
    """One CUDA stream per pack slot (None off CUDA): made when a slot first fills, then handed from a run
    that ends to the next run admitted."""

    def __init__(self, device: str):
        self.device, self.free = device, []

    def take(self) -> torch.cuda.Stream | None:
        return self.free.pop() if self.free else new_stream(self.device)

    def give(self, stream: torch.cuda.Stream | None) -> None:
        if stream is not None:
            self.free.append(stream)


def new_stream(device: str) -> torch.cuda.Stream | None:
    """A stream from torch's pool on CUDA; None elsewhere (a CPU runs each op before the next)."""
    return torch.cuda.Stream(device) if device.startswith("cuda") else None


def on_device(data: CifarData, device: str) -> CifarData:
    """The data set moved to the device once, for every run of the pack to read."""
    moved = replace(data, train_x=data.train_x.to(device), train_y=data.train_y.to(device),
                    test_x=data.test_x.to(device), test_y=data.test_y.to(device))
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)  # the copies are done before any run's stream reads them
    return moved


def pack_engine(engine: Engine) -> Engine:
    """The engine a pack steps with: the caller's, resolved, without torch.compile."""
    return replace(engine.resolve(), compile=False)


def train_packed(runs: Iterable[tuple[CifarRun, Path]], data: CifarData, engine: Engine, slots: int,
                 progress: bool = True, time_limit_s: float | None = None,
                 admit: Callable[[CifarRun, Path, Deadline], bool] = lambda run, run_dir, deadline: True,
                 ) -> Iterator[tuple[Path, dict]]:
    """Train `runs` at most `slots` at a time; yields (run directory, summary) as each run ends.

    `runs` is read lazily, in order, whenever a slot is free: `admit(run, dir, deadline)` says whether
    that run starts now (a refused one is skipped, and not yielded). The deadline (`time_limit_s`,
    SIGTERM, Ctrl-C) pauses every run in flight at its next step and admits no other. An exception in
    one run ends that run only: its summary is {"status": "failed", "error", "traceback"}."""
    if slots < 1:
        raise ValueError(f"a pack needs at least one slot, got {slots}")
    engine = pack_engine(engine)
    engine.apply_global_settings()
    data = on_device(data, engine.device)
    waiting, streams = iter(runs), SlotStreams(engine.device)
    active: list[Slot] = []
    with stop_on_signals(), progress_bar(progress) as bar:
        deadline = Deadline(time_limit_s)
        while True:
            while len(active) < slots and not deadline.reason() and (entry := next(waiting, None)) is not None:
                run, run_dir = entry
                if admit(run, run_dir, deadline):
                    stream = streams.take()
                    slot = _start(run, run_dir, data, engine, deadline, bar, slots, stream)
                    if isinstance(slot, Slot):
                        active.append(slot)
                    else:
                        streams.give(stream)
                        yield run_dir, slot
            if not active:
                return
            for slot in list(active):
                summary = _advance(slot)
                if summary is not None:
                    active.remove(slot)
                    streams.give(slot.stream)
                    bar.remove_task(slot.training.task)
                    yield slot.dir, summary


def _start(run: CifarRun, run_dir: Path, data: CifarData, engine: Engine, deadline: Deadline, bar,
           slots: int, stream: torch.cuda.Stream | None) -> Slot | dict:
    """A run's slot: the slot's stream, the run's Member and place in the loop (or the summary of a run that
    failed to start)."""
    try:
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            member = Member(run, data, run_dir, engine)
            member.packed = {"pack_slots": slots}
            driver = OneRun(member, engine)
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001  (this run only)
        return _failed(err)
    wait = stream.synchronize if stream is not None else (lambda: None)
    return Slot(run_dir, stream, Training(driver, deadline, wait, bar))


def _advance(slot: Slot) -> dict | None:
    try:
        with slot.on_stream():
            return slot.training.advance()
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001  (this run only; the others go on)
        return _failed(err)


def _failed(err: Exception) -> dict:
    return {"status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0],
            "iteration": None, "traceback": traceback.format_exc()}
