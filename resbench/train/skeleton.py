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

import torch

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from resbench.train.engine import sync
from resbench.train.stop import Deadline


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


class Window:
    """Sums of loss and wrong predictions since the last read, on the device; images on the host."""

    def __init__(self, device: str):
        self.sums = torch.zeros(2, device=device, dtype=torch.float64)
        self.images = 0

    def add(self, loss: torch.Tensor, wrong: torch.Tensor, n: int) -> None:
        self.sums += torch.stack([loss.double() * n, wrong.double()])
        self.images += n

    def state_dict(self) -> dict:
        """What a checkpoint keeps of a window cut short by a pause, so the next record is whole."""
        return {"sums": self.sums.tolist(), "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.sums.copy_(torch.tensor(state["sums"], dtype=torch.float64))
        self.images = state["images"]

    def read(self) -> tuple[float, float]:
        """(mean loss, error %) since the last read; synchronises with the device once."""
        loss_sum, wrong = self.sums.tolist()
        n, self.images = self.images, 0
        self.sums.zero_()
        return loss_sum / n, 100.0 * wrong / n


def progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}"), disable=not enabled)


class Training:
    """One driver through the loop, an iteration at a time: `drive` runs one to its end; a pack
    (`resbench.train.pack`) interleaves several, each waiting only for its own work (`wait`)."""

    def __init__(self, driver: Driver, deadline: Deadline, wait, bar: Progress,
                 agree=lambda reason, due: reason):
        self.driver, self.deadline, self.wait, self.agree, self.bar = driver, deadline, wait, agree, bar
        self.it = driver.first
        self.task = bar.add_task(driver.name, total=driver.schedule.iterations, completed=driver.first, rate="",
                                 status="")
        self.started = self.tick = time.perf_counter()

    def advance(self) -> dict | None:
        """One step and what is due after it; the run's summary once it has ended, else None."""
        driver, schedule = self.driver, self.driver.schedule
        if self.it >= schedule.iterations:  # resumed at its last iteration
            return driver.finish()
        driver.step(self.it)
        self.it += 1
        due = schedule.after(self.it)
        pause = None if due.last else self.agree(self.deadline.reason(), due)
        if not (due.any or pause):
            return None
        self.wait()
        now = time.perf_counter()
        driver.add_time(now - self.tick)
        if due.log:
            status, diverged = driver.log()
            self.bar.update(self.task, completed=self.it, status=status,
                            rate=f"{(self.it - driver.first) / (now - self.started):.1f} it/s")
            if diverged is not None:
                return diverged
        if due.eval:
            driver.test()
        if due.checkpoint or pause:
            driver.checkpoint()
        if pause:
            return driver.pause(pause)
        self.tick = time.perf_counter()
        return driver.finish() if due.last else None


def drive(driver: Driver, deadline: Deadline, device: str, progress: bool,
          agree=lambda reason, due: reason) -> dict:
    """Train `driver` to its last iteration, or until the deadline pauses it; returns its summary.

    `agree(reason, due)` turns this process's reason to pause into the decision every process
    takes (data-parallel runs: at due points only, where they meet anyway)."""
    with progress_bar(progress) as bar:
        training = Training(driver, deadline, lambda: sync(device), bar, agree)
        while (summary := training.advance()) is None:
            pass
        return summary
