"""One training loop for every run: what is due after each step, and the order things happen in.

A driver knows one kind of training (one CIFAR run, a fused group of seeds, an ImageNet run
over data-parallel processes): how to take a step, and how to log, test, checkpoint, pause
and finish. `drive` runs any of them the same way:

    for each iteration: step -> Schedule.after(done) says what is due, and the deadline
    whether to pause -> (nothing due: next step) -> wait for the device, count the time ->
    log (a diverged run ends here) -> test -> checkpoint -> pause -> ... -> finish

Training time excludes tests and checkpoints. The deadline (`resbench.train.stop`) is read
after every step; a driver whose processes must agree (ImageNet) decides at due points only.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .engine import sync
from .stop import Deadline


@dataclass(frozen=True)
class Due:
    log: bool
    eval: bool
    checkpoint: bool
    last: bool

    @property
    def any(self) -> bool:
        return self.log or self.eval or self.checkpoint


@dataclass(frozen=True)
class Schedule:
    """When a run logs, tests and checkpoints (every N iterations, and at its last)."""

    iterations: int
    log_every: int
    eval_every: int
    checkpoint_every: int

    @classmethod
    def of(cls, recipe) -> "Schedule":
        return cls(recipe.iterations, recipe.log_every, recipe.eval_every, recipe.checkpoint_every)

    def after(self, done: int) -> Due:
        """What is due once `done` iterations are done."""
        last = done == self.iterations
        return Due(*(last or done % every == 0 for every in (self.log_every, self.eval_every, self.checkpoint_every)),
                   last)


class Driver(Protocol):
    name: str  # the progress bar's label
    first: int  # the iteration training starts (or resumes) from
    schedule: Schedule

    def step(self, iteration: int) -> None: ...
    def add_time(self, seconds: float) -> None: ...  # training time since the last due point
    def log(self) -> tuple[str, dict | None]: ...  # (progress text, the summary if the run diverged)
    def test(self) -> None: ...
    def checkpoint(self) -> None: ...
    def pause(self, reason: str) -> dict: ...
    def finish(self) -> dict: ...


def progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"), disable=not enabled)


def drive(driver: Driver, deadline: Deadline, device: str, progress: bool,
          agree=lambda reason, due: reason) -> dict:
    """Train `driver` to its last iteration, or until the deadline pauses it; returns its summary.

    `agree(reason, due)` turns this process's reason to pause into the decision every process
    takes (data-parallel runs: at due points only, where they meet anyway)."""
    first, schedule = driver.first, driver.schedule
    started = tick = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(driver.name, total=schedule.iterations, completed=first, rate="", status="")
        for it in range(first, schedule.iterations):
            driver.step(it)
            due = schedule.after(it + 1)
            pause = None if due.last else agree(deadline.reason(), due)
            if not (due.any or pause):
                continue
            sync(device)
            now = time.perf_counter()
            driver.add_time(now - tick)
            if due.log:
                status, diverged = driver.log()
                bar.update(task, completed=it + 1, rate=f"{(it + 1 - first) / (now - started):.1f} it/s",
                           status=status)
                if diverged is not None:
                    return diverged
            if due.eval:
                driver.test()
            if due.checkpoint or pause:
                driver.checkpoint()
            if pause:
                return driver.pause(pause)
            tick = time.perf_counter()
    return driver.finish()
