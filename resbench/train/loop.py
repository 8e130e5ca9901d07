"""The training loop: the skeleton every training goes through, and one CIFAR-10 run driven by it.

A driver knows one kind of training (one CIFAR run, a fused group of seeds, an ImageNet run
over data-parallel processes): how to take a step, and how to log, test, checkpoint, pause
and finish. `drive` runs any of them the same way:

    for each iteration: step -> Schedule.after(done) says what is due, and the deadline
    whether to pause -> (nothing due: next step) -> wait for the device, count the time ->
    log (a diverged run ends here) -> test -> checkpoint -> pause -> ... -> finish

Training time excludes tests and checkpoints. The deadline (`resbench.train.stop`) is read
after every step; a driver whose processes must agree (ImageNet) decides at due points only.

One CIFAR-10 run, the paper's unit: its state as the loop keeps it (`Member`: model, optimizer,
data order, counters, files), the driver that steps it (`OneRun`), and `train_cifar`, which trains
one to its summary.json. Fused seeds (`resbench.train.fused`) and packs (`resbench.train.pack`) drive
the same Members; ImageNet (`resbench.train.imagenet`) has a driver of its own.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Protocol

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from resbench.data.cifar import CifarData, stratified_split
from resbench.data.pipeline import DeviceLoader
from resbench.models import build_model
from resbench.probes.responses import response_stds
from resbench.runs.checkpoint import load_checkpoint, save_checkpoint
from resbench.runs.provenance import environment
from resbench.runs.rundir import MetricsLog, last_error, write_env, write_responses, write_summary
from resbench.train.engine import Engine, Window, graphs_compiled, loss_and_error, make_optimizer, step_path, sync
from resbench.train.graphs import WARMUP_STEPS
from resbench.train.runspec import CifarRun, Schedule
from resbench.train.steps import make_train_step
from resbench.train.stop import Deadline, stop_on_signals

__all__ = ["CifarRun", "Member", "OneRun", "drive", "train_cifar"]


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


# One CIFAR-10 run

class Member:
    """One run as a training loop keeps it: model, optimizer, data order, log, counters, files.

    `train_cifar` drives one Member; `train_fused` (`resbench.train.fused`) drives several, stepping
    their parameters stacked and copying them back into each Member's model before it
    evaluates, checkpoints or finishes. The files a Member writes are the same either way.
    """

    def __init__(self, run: CifarRun, data: CifarData, run_dir: Path, engine: Engine, fused_with: tuple = ()):
        self.run, self.dir, self.engine = run, run_dir, engine
        self.recipe, device = run.recipe.validate(), engine.device
        run_dir.mkdir(parents=True, exist_ok=True)
        # the runs trained with this one (fused), written wherever a run records itself
        self.fused_with = {"fused_with": list(fused_with)} if fused_with else {}
        self.packed = {}  # {"pack_slots": K} when trained in a pack (`resbench.train.pack`): recorded in the summary
        env = {**environment(torch.device(device), data.provenance()), **self.fused_with}
        self.log = MetricsLog(run_dir)
        torch.manual_seed(run.seed)  # the run's initialisation, fused or not
        self.model = build_model(run.model).to(device)
        if engine.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = make_optimizer(self.model, self.recipe.lr, self.recipe.momentum, self.recipe.weight_decay,
                                        device)
        self.state = {"iteration": 0, "warming_up": self.recipe.warmup, "warmup_ended_at": None,
                      "train_s": 0.0, "wall_s": 0.0, "images": 0}
        self.clock = time.perf_counter()  # wall_s: training, tests and checkpoints, over every resume
        self.train_err = None  # the last logged window's: a run resumed at its end reports the logged one
        if (ckpt := load_checkpoint(run_dir, map_location=device)) is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.state.update(ckpt["state"])
            self.train_err = last_error(self.log.truncate_after(self.state["iteration"]))
            self.log.append({"iter": self.state["iteration"], "record": "event", "event": "resumed",
                             "git": env["git"], "gpu": env["gpu"], "cpu": env["cpu"], "host": env["host"],
                             "torch": env["torch"],  # a run can span machines: each leg names its own
                             **self.fused_with})
        else:
            self.log.truncate_after(0)
            write_env(run_dir, env)
        self.loader = DeviceLoader(data.train_x, data.train_y, self.recipe.batch_size, run.seed, device)
        self.test_x, self.test_y = data.test_x, data.test_y
        if self.recipe.test_subset and self.recipe.test_subset < len(self.test_y):
            _, keep = stratified_split(self.test_y, self.recipe.test_subset, seed=0)
            self.test_x, self.test_y = self.test_x[keep], self.test_y[keep]
        self.window, self.warm = Window(device), Window(device)
        if ckpt is not None and "windows" in ckpt:
            self.window.load_state_dict(ckpt["windows"]["train"])
            self.warm.load_state_dict(ckpt["windows"]["warmup"])
        self.last_log = (self.state["images"], self.state["train_s"])

    @property
    def iteration(self) -> int:
        return self.state["iteration"]

    def lr(self, iteration: int) -> float:
        return self.recipe.lr_at(iteration, self.state["warming_up"])

    def record(self, loss: torch.Tensor, wrong: torch.Tensor, n: int) -> None:
        """Count one step: its loss and errors, images, and the end of the warm-up when it comes."""
        self.window.add(loss, wrong, n)
        done = self.state["iteration"] = self.state["iteration"] + 1
        self.state["images"] += n
        if self.state["warming_up"]:
            self.warm.add(loss, wrong, n)
            if done % self.recipe.warmup_window == 0:
                # the paper's condition: back to lr 0.1 once training error is below 80%
                error = self.warm.read()[1]
                self.log.append({"iter": done, "record": "warmup", "error": error})
                if error < self.recipe.warmup_until:
                    self.state["warming_up"], self.state["warmup_ended_at"] = False, done

    def log_train(self, lr: float) -> float:
        """Write the window's training loss and error; returns the loss (NaN/inf: diverged)."""
        train_loss, self.train_err = self.window.read()
        images, seconds = self.state["images"] - self.last_log[0], self.state["train_s"] - self.last_log[1]
        self.last_log = (self.state["images"], self.state["train_s"])
        self.log.append({"iter": self.iteration, "record": "train", "loss": train_loss, "error": self.train_err,
                         "lr": lr,  # of the window's last step
                         "img_per_s": round(images / max(seconds, 1e-9), 1)})
        return train_loss

    def test_batches(self):
        return self.loader.eval_batches(self.test_x, self.test_y)

    def log_test(self) -> float:
        test_loss, test_err = loss_and_error(self.model, self.test_batches(), self.engine)
        self.log.append({"iter": self.iteration, "record": "test", "loss": test_loss, "error": test_err})
        return test_err

    def tick_wall(self) -> None:
        now = time.perf_counter()
        self.state["wall_s"] = self.state.get("wall_s", 0.0) + now - self.clock
        self.clock = now

    def checkpoint(self) -> None:
        self.tick_wall()
        save_checkpoint(self.dir, {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                   "state": dict(self.state),  # no RNG state: nothing random is drawn after
                                   # the initialisation but from generators seeded by (seed, epoch)
                                   "windows": {"train": self.window.state_dict(), "warmup": self.warm.state_dict()}})

    def finish(self, status: str, **extra) -> dict:
        if status == "done":
            _, extra["test_error"] = loss_and_error(self.model, self.test_batches(), self.engine)
            extra["train_error"] = self.train_err
            write_responses(self.dir, response_stds(
                self.model, self.test_batches(), bn_images=self.recipe.batch_size // self.recipe.bn_splits))
        self.tick_wall()
        summary = {"status": status, "iteration": self.iteration, "train_s": round(self.state["train_s"], 2),
                   "wall_s": round(self.state["wall_s"], 2),
                   "img_per_s": round(self.state["images"] / max(self.state["train_s"], 1e-9), 1),
                   "warmup_ended_at": self.state["warmup_ended_at"],
                   "step": self.state.get("step"),  # compiled, eager, or eager: compilation fell back
                   "params": sum(p.numel() for p in self.model.parameters()),
                   **self.fused_with, **self.packed, **extra}
        write_summary(self.dir, summary)
        return summary

    def diverged(self, loss: float) -> dict:
        return self.finish("diverged", train_error=None, test_error=None,
                           reason=f"training loss became {loss} by iteration {self.iteration}")


class OneRun:
    """The skeleton's driver for one run: its Member, stepped by the engine's train step."""

    def __init__(self, member: Member, engine: Engine):
        self.member, self.engine = member, engine
        self.name, self.first, self.schedule = member.dir.name, member.iteration, Schedule.of(member.recipe)
        self.train_step = make_train_step(member.model, member.optimizer, member.recipe.bn_splits, engine)
        self.lr = member.lr(self.first)

    def step(self, iteration: int) -> None:
        x, y = self.member.loader.batch(iteration)
        self.lr = self.member.lr(iteration)
        graphs = graphs_compiled()
        loss, wrong = self.train_step(x, y, self.lr)
        if iteration == self.first:
            self.member.state["step"] = step_path(self.engine, graphs, self.train_step)
        elif iteration == self.first + WARMUP_STEPS and hasattr(self.train_step, "path"):
            self.member.state["step"] = self.train_step.path  # a captured step, once it has captured
        self.member.record(loss, wrong, len(y))

    def add_time(self, seconds: float) -> None:
        self.member.state["train_s"] += seconds

    def log(self) -> tuple[str, dict | None]:
        loss = self.member.log_train(self.lr)
        status = f"loss {loss:.3f}  train err {self.member.train_err:.1f}%"
        return status, None if math.isfinite(loss) else self.member.diverged(loss)

    def test(self) -> None:
        self.member.log_test()

    def checkpoint(self) -> None:
        self.member.checkpoint()

    def pause(self, reason: str) -> dict:
        return self.member.finish("paused", train_error=self.member.train_err, test_error=None, reason=reason)

    def finish(self) -> dict:
        return self.member.finish("done")


def train_cifar(run: CifarRun, data: CifarData, run_dir: Path, engine: Engine = Engine(),
                progress: bool = True, time_limit_s: float | None = None) -> dict:
    """Train (or resume) one run in `run_dir`; returns its summary (also in summary.json).

    The run checkpoints and stops with status "paused" once `time_limit_s` of wall time has
    passed or a stop is requested (SIGTERM, Ctrl-C: `resbench.train.stop`), so that a long
    run can span several limited jobs and resumes exactly.
    """
    engine = engine.resolve()
    engine.apply_global_settings()
    with stop_on_signals():
        deadline = Deadline(time_limit_s)
        return drive(OneRun(Member(run, data, run_dir, engine), engine), deadline, engine.device, progress)
