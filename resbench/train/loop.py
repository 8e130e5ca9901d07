"""The CIFAR-10 training of one run: a driver of the one loop skeleton (`resbench.train.skeleton`)."""
from __future__ import annotations

import math
from pathlib import Path

from resbench.data.cifar import CifarData
from resbench.train.engine import Engine, graphs_compiled, step_path
from resbench.train.steps import make_train_step
from resbench.train.graphs import WARMUP_STEPS
from resbench.train.member import Member
from resbench.train.runspec import CifarRun
from resbench.train.skeleton import Schedule, drive
from resbench.train.stop import Deadline, stop_on_signals

__all__ = ["CifarRun", "train_cifar"]


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
