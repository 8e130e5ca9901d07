"""The ImageNet training loop: data-parallel over `torchrun` processes, checkpointed, resumable.

Launch N processes on one node, or several nodes, with torchrun; every process runs the
same `resbench run` command and takes 1/N of each global batch:

    torchrun --nproc-per-node 8 -m resbench run table3 --data-root /data/imagenet
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:29500 -m resbench run table3 ...

Process 0 writes the run directory (metrics, checkpoints, summary); all processes take
the same learning rate, because the plateau decision is made on process 0 and broadcast.
It shares the CIFAR loop's pieces (engine, checkpoints, metrics log, run directory).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.imagenet import FolderLoader, ImageFolderData
from ..evaluation import TESTS, evaluate
from ..models import build_model
from ..results import MetricsLog, environment, write_json
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import after_lead, any_rank, broadcast, world
from .engine import Engine, graphs_compiled, make_optimizer, make_train_step, step_path, sync
from .loop import Window, progress_bar
from .recipe import ImageNetRecipe
from .stop import Deadline


@dataclass(frozen=True)
class ImageNetRun:
    """Everything that determines a run's result; its hash names the run directory."""

    model: str
    recipe: ImageNetRecipe
    seed: int
    preset: str = "paper"
    options: tuple[tuple[str, object], ...] = ()  # the recipe options the row asked for (the paper's)
    overrides: tuple[tuple[str, object], ...] = ()  # --set options: departures from the paper's recipe
    # No test protocol: a network is trained once and its final checkpoint tested with every
    # protocol (TESTS), so Tables 2-4 and Fig. 4 share runs and each reads the protocol it reports.

    def config(self, data: ImageFolderData, engine: Engine) -> dict:
        return {"model": self.model, "preset": self.preset, "seed": self.seed, "options": dict(self.options),
                "overrides": dict(self.overrides),
                "recipe": asdict(self.recipe),
                "data": {"variant": data.variant, "source": data.root, "train": len(data.train),
                         "val": len(data.val), "split": "train/val"},
                **engine.arithmetic}


def train_imagenet(run: ImageNetRun, data: ImageFolderData, run_dir: Path, engine: Engine = Engine(),
                   progress: bool = True, time_limit_s: float | None = None, workers: int | None = None) -> dict:
    """Train (or resume) one run; every process calls it, process 0 writes `run_dir`.

    `workers`: decoding processes per training process (default: this process's share of the cores).
    """
    rank, size = world()
    workers = workers if workers is not None else max(1, min(8, len(os.sched_getaffinity(0)) // size))
    engine = engine.resolve()
    engine.apply_global_settings()
    recipe, device = run.recipe.validate(), engine.device
    lead = rank == 0
    loader = FolderLoader(data, recipe.views(), recipe.batch_size, run.seed, rank, size, workers,
                          decode_on=device if engine.decode == "device" else None)
    if loader.local % recipe.bn_group:
        raise ValueError(f"each of {size} processes gets {loader.local} images, not a multiple of "
                         f"bn_group {recipe.bn_group}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(run_dir / "metrics.jsonl")

    torch.manual_seed(run.seed)
    net = build_model(run.model).to(device, memory_format=torch.channels_last if engine.channels_last else torch.contiguous_format)
    # gradient_as_bucket_view: gradients live in the all-reduce buckets, laid out like the
    # channels_last parameters; without it, DDP's gradients for channels_last parameters
    # came out wrong here (test_ddp_on_two_processes_matches_one_process caught it)
    model = torch.nn.parallel.DistributedDataParallel(net, gradient_as_bucket_view=True) if size > 1 else net
    optimizer = make_optimizer(net, recipe.lr, recipe.momentum, recipe.weight_decay, device)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=recipe.lr_decay, patience=recipe.plateau_patience,
        threshold=recipe.plateau_threshold, threshold_mode="abs")
    state = {"iteration": 0, "train_s": 0.0, "images": 0, "lr": recipe.lr}
    if (ckpt := load_checkpoint(run_dir, map_location=device)) is not None:
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        plateau.load_state_dict(ckpt["plateau"])
        state.update(ckpt["state"])
        if lead:
            log.truncate_after(state["iteration"])
            log.append({"iter": state["iteration"], "split": "event", "event": "resumed", "processes": size})
    elif lead:
        log.truncate_after(0)
        write_json(run_dir / "env.json", {**environment(torch.device(device), data.provenance()), "processes": size})
    step = make_train_step(model, optimizer, loader.local // recipe.bn_group, engine)

    def checkpoint() -> None:
        if lead:
            save_checkpoint(run_dir, {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                      "plateau": plateau.state_dict(), "state": dict(state)})

    def lr_now(it: int) -> float:
        return recipe.step_lr(it) if recipe.schedule == "steps" else state["lr"]

    def finish(status: str, **extra) -> dict:
        summary = {"status": status, "iteration": state["iteration"], "train_s": round(state["train_s"], 2),
                   "img_per_s": round(state["images"] / max(state["train_s"], 1e-9), 1), "processes": size,
                   "params": sum(p.numel() for p in net.parameters()),
                   "decode": engine.decode, "step": state.get("step"), **extra}
        if lead:
            write_json(run_dir / "summary.json", summary)
        return summary

    window, first, train_err = Window(device), state["iteration"], None
    deadline = Deadline(time_limit_s)  # and SIGTERM, where the sweep installed its handler
    started = tick = time.perf_counter()
    batches = loader.batches(first)
    with progress_bar(progress and lead) as bar:
        task = bar.add_task(run_dir.name, total=recipe.iterations, completed=first, rate="", status="")
        for it in range(first, recipe.iterations):
            x, y = next(batches)
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            graphs = graphs_compiled()
            loss, wrong = step(x, y.to(device, non_blocking=True), lr_now(it))
            if it == first:
                state["step"] = step_path(engine, graphs)
            window.add(loss, wrong, len(y))
            done = state["iteration"] = it + 1
            state["images"] += len(y) * size
            last = done == recipe.iterations
            due_log, due_eval, due_ckpt = (last or done % every == 0 for every in
                                           (recipe.log_every, recipe.eval_every, recipe.checkpoint_every))
            if not (due_log or due_eval or due_ckpt):
                continue
            sync(device)
            now = time.perf_counter()
            state["train_s"] += now - tick
            if due_log:
                train_loss, train_err = window.read()  # this process's share of the batches
                if lead:
                    log.append({"iter": done, "split": "train", "loss": train_loss, "error": train_err,
                                "lr": lr_now(it)})
                bar.update(task, completed=done, rate=f"{(done - first) / (now - started):.2f} it/s",
                           status=f"loss {train_loss:.3f}  train err {train_err:.1f}%")
                if any_rank(not math.isfinite(train_loss)):  # every process stops, or none
                    return finish("diverged", reason=f"training loss became non-finite on a process by "
                                                     f"iteration {done} (here: {train_loss})")
            if due_eval:
                val = evaluate(net, data, recipe.views(), engine, "center", recipe.val_limit, workers) \
                    if lead else None
                val = after_lead(val)
                if lead:
                    log.append({"iter": done, "split": "test", "error": val["top1_err"], "top5": val["top5_err"]})
                if recipe.schedule == "plateau":  # every process takes the same decision
                    plateau.step(val["top1_err"])
                    state["lr"] = optimizer.param_groups[0]["lr"]
            if due_ckpt:
                checkpoint()
            tick = time.perf_counter()
            if not last and (pause := broadcast(deadline.reason())):  # the lead's decision, for every rank
                checkpoint()
                return finish("paused", train_error=train_err, reason=pause)
    tests = {mode: evaluate(net, data, recipe.views(), engine, mode, None, workers) if lead else None
             for mode in TESTS}
    tests = after_lead(tests)
    return finish("done", tests=tests, test_error=tests["center"]["top1_err"], train_error=train_err)
