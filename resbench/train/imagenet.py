"""The ImageNet training loop: data-parallel over `torchrun` processes, checkpointed, resumable.

Launch N processes on one node, or several nodes, with torchrun; every process runs the
same `resbench run` command and takes 1/N of each global batch:

    torchrun --nproc-per-node 8 -m resbench run table3 --data-root /data/imagenet
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:29500 -m resbench run table3 ...

Process 0 writes the run directory (metrics, checkpoints, summary); all processes take
the same learning rate, because the plateau decision is made on process 0 and broadcast.
It is a driver of the one loop skeleton (`resbench.train.loop`), as the CIFAR runs are.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from resbench.data.imagenet import ImageFolderData
from resbench.data.imagenet_views import FolderLoader
from resbench.evaluation.imagenet import TESTS, evaluate
from resbench.models import build_model
from resbench.runs.provenance import environment
from resbench.runs.rundir import MetricsLog, last_error, write_env, write_summary
from resbench.runs.checkpoint import load_checkpoint, save_checkpoint
from resbench.train.distributed import after_lead, any_rank, broadcast, world
from resbench.train.engine import Engine, Window, graphs_compiled, make_optimizer, step_path
from resbench.train.loop import drive
from resbench.train.runspec import ImageNetRun, Schedule
from resbench.train.steps import make_train_step
from resbench.train.stop import Deadline

__all__ = ["ImageNetRun", "train_imagenet"]


class ImageNetTraining:
    """The skeleton's driver for one ImageNet run on this process; process 0 writes the run directory."""

    def __init__(self, run: ImageNetRun, data: ImageFolderData, run_dir: Path, engine: Engine, workers: int):
        rank, self.size = world()
        self.lead, self.data, self.dir, self.engine, self.workers = rank == 0, data, run_dir, engine, workers
        self.recipe, device = run.recipe.validate(), engine.device
        self.loader = FolderLoader(data, self.recipe.views(), self.recipe.batch_size, run.seed, rank, self.size,
                                   workers, decode_on=device if data.decode == "device" else None)
        if self.loader.local % self.recipe.bn_group:
            raise ValueError(f"each of {self.size} processes gets {self.loader.local} images, not a multiple of "
                             f"bn_group {self.recipe.bn_group}")
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = MetricsLog(run_dir)
        torch.manual_seed(run.seed)
        layout = torch.channels_last if engine.channels_last else torch.contiguous_format
        self.net = build_model(run.model).to(device, memory_format=layout)
        # gradient_as_bucket_view: gradients live in the all-reduce buckets, laid out like the
        # channels_last parameters; without it, DDP's gradients for channels_last parameters
        # came out wrong here (test_ddp_on_two_processes_matches_one_process caught it)
        model = torch.nn.parallel.DistributedDataParallel(self.net, gradient_as_bucket_view=True) \
            if self.size > 1 else self.net
        self.optimizer = make_optimizer(self.net, self.recipe.lr, self.recipe.momentum, self.recipe.weight_decay,
                                        device)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=self.recipe.lr_decay, patience=self.recipe.plateau_patience,
            threshold=self.recipe.plateau_threshold, threshold_mode="abs")
        self.state = {"iteration": 0, "train_s": 0.0, "images": 0, "lr": self.recipe.lr}
        self.train_err = None  # the last logged window's: a run resumed at its end reports the logged one
        self._resume_or_start()
        self.train_step = make_train_step(model, self.optimizer, self.loader.local // self.recipe.bn_group, engine)
        self.name, self.first, self.schedule = run_dir.name, self.state["iteration"], Schedule.of(self.recipe)
        self.window = Window(device)
        self.batches = self.loader.batches(self.first)

    def _resume_or_start(self) -> None:
        if (ckpt := load_checkpoint(self.dir, map_location=self.engine.device)) is not None:
            self.net.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.plateau.load_state_dict(ckpt["plateau"])
            self.state.update(ckpt["state"])
            if self.lead:
                self.train_err = last_error(self.log_file.truncate_after(self.state["iteration"]))
                self.log_file.append({"iter": self.state["iteration"], "record": "event", "event": "resumed",
                                      "processes": self.size})
        elif self.lead:
            self.log_file.truncate_after(0)
            write_env(self.dir, {**environment(torch.device(self.engine.device),
                                                             self.data.provenance()), "processes": self.size})

    def lr(self, iteration: int) -> float:
        return self.recipe.step_lr(iteration) if self.recipe.schedule == "steps" else self.state["lr"]

    def step(self, iteration: int) -> None:
        x, y = next(self.batches)
        x = x.to(self.engine.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        graphs = graphs_compiled()
        loss, wrong = self.train_step(x, y.to(self.engine.device, non_blocking=True), self.lr(iteration))
        if iteration == self.first:
            self.state["step"] = step_path(self.engine, graphs)
        self.window.add(loss, wrong, len(y))
        self.state["iteration"] = iteration + 1
        self.state["images"] += len(y) * self.size

    def add_time(self, seconds: float) -> None:
        self.state["train_s"] += seconds

    def log(self) -> tuple[str, dict | None]:
        done = self.state["iteration"]
        train_loss, self.train_err = self.window.read()  # this process's share of the batches
        if self.lead:
            self.log_file.append({"iter": done, "record": "train", "loss": train_loss, "error": self.train_err,
                                  "lr": self.lr(done - 1)})
        status = f"loss {train_loss:.3f}  train err {self.train_err:.1f}%"
        if any_rank(not math.isfinite(train_loss)):  # every process stops, or none
            return status, self._finish("diverged", reason=f"training loss became non-finite on a process by "
                                                           f"iteration {done} (here: {train_loss})")
        return status, None

    def test(self) -> None:
        val = after_lead(self._evaluate("center", self.recipe.val_limit))
        if self.lead:
            self.log_file.append({"iter": self.state["iteration"], "record": "test", "error": val["top1_err"],
                                  "top5": val["top5_err"]})
        if self.recipe.schedule == "plateau":  # every process takes the same decision
            self.plateau.step(val["top1_err"])
            self.state["lr"] = self.optimizer.param_groups[0]["lr"]

    def _evaluate(self, mode: str, limit: int | None) -> dict | None:
        """Process 0 tests; the others get its result from `after_lead`."""
        if not self.lead:
            return None
        return evaluate(self.net, self.data, self.recipe.views(), self.engine, mode, limit, self.workers)

    def checkpoint(self) -> None:
        if self.lead:
            save_checkpoint(self.dir, {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                                       "plateau": self.plateau.state_dict(), "state": dict(self.state)})

    def pause(self, reason: str) -> dict:
        return self._finish("paused", train_error=self.train_err, reason=reason)

    def finish(self) -> dict:
        tests = after_lead({mode: self._evaluate(mode, None) for mode in TESTS} if self.lead else None)
        return self._finish("done", tests=tests, test_error=tests["center"]["top1_err"], train_error=self.train_err)

    def _finish(self, status: str, **extra) -> dict:
        state = self.state
        summary = {"status": status, "iteration": state["iteration"], "train_s": round(state["train_s"], 2),
                   "img_per_s": round(state["images"] / max(state["train_s"], 1e-9), 1), "processes": self.size,
                   "params": sum(p.numel() for p in self.net.parameters()),
                   "decode": self.data.decode, "step": state.get("step"), **extra}
        if self.lead:
            write_summary(self.dir, summary)
        return summary


def train_imagenet(run: ImageNetRun, data: ImageFolderData, run_dir: Path, engine: Engine = Engine(),
                   progress: bool = True, time_limit_s: float | None = None, workers: int | None = None) -> dict:
    """Train (or resume) one run; every process calls it, process 0 writes `run_dir`.

    `workers`: decoding processes per training process (default: this process's share of the cores).
    The processes pause together: process 0's reason (time limit, SIGTERM) decides at due points.
    """
    if engine.graph != "off":
        raise ValueError("a captured CUDA-graph step is for CIFAR runs; ImageNet runs compile or run eager")
    size = world()[1]
    workers = workers if workers is not None else max(1, min(8, len(os.sched_getaffinity(0)) // size))
    engine = engine.resolve()
    engine.apply_global_settings()
    training = ImageNetTraining(run, data, run_dir, engine, workers)

    def agree(reason: str | None, due) -> str | None:
        return broadcast(reason) if due.any else None  # the lead's decision, where the processes meet anyway

    return drive(training, Deadline(time_limit_s), engine.device, progress and training.lead, agree)
