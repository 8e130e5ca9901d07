"""The CIFAR-10 training loop: iteration-based, checkpointed, resumable, logged."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..data.cifar import CifarData, stratified_split
from ..data.pipeline import DeviceLoader
from ..models import build_model
from ..probes.responses import response_stds
from ..results import MetricsLog, environment, write_json
from .checkpoint import load_checkpoint, save_checkpoint
from .engine import Engine, evaluate, make_optimizer, make_train_step, sync
from .recipe import CifarRecipe


@dataclass(frozen=True)
class CifarRun:
    """Everything that determines a run's result; its hash names the run directory."""

    model: str
    recipe: CifarRecipe
    seed: int
    preset: str = "paper"
    options: tuple[tuple[str, object], ...] = ()  # the recipe options the row asked for (the paper's)
    overrides: tuple[tuple[str, object], ...] = ()  # --set options: departures from the paper's recipe

    def config(self, data: CifarData, engine: Engine) -> dict:
        return {"model": self.model, "preset": self.preset, "seed": self.seed,
                "options": dict(self.options), "overrides": dict(self.overrides), "recipe": asdict(self.recipe),
                "data": {"variant": data.variant, "sha256": data.sha256, "split": data.split},
                **engine.arithmetic}


class Window:
    """Sums of loss and wrong predictions since the last read, on the device; images on the host."""

    def __init__(self, device: str):
        self.sums = torch.zeros(2, device=device, dtype=torch.float64)
        self.images = 0

    def add(self, loss: torch.Tensor, wrong: torch.Tensor, n: int) -> None:
        self.sums += torch.stack([loss.double() * n, wrong.double()])
        self.images += n

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


def train_cifar(run: CifarRun, data: CifarData, run_dir: Path, engine: Engine = Engine(),
                progress: bool = True, time_limit_s: float | None = None) -> dict:
    """Train (or resume) one run in `run_dir`; returns its summary (also in summary.json).

    `time_limit_s` checkpoints and stops with status "paused" once that much wall time has
    passed, so that a long run can span several limited jobs.
    """
    engine = engine.resolve()
    engine.apply_global_settings()
    recipe, device = run.recipe.validate(), engine.device
    run_dir.mkdir(parents=True, exist_ok=True)
    env = environment(torch.device(device), data.provenance())
    log = MetricsLog(run_dir / "metrics.jsonl")

    torch.manual_seed(run.seed)
    model = build_model(run.model).to(device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, device)
    state = {"iteration": 0, "warming_up": recipe.warmup, "warmup_ended_at": None,
             "train_s": 0.0, "images": 0}
    if (ckpt := load_checkpoint(run_dir, map_location=device)) is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["state"])
        log.truncate_after(state["iteration"])
        log.append({"iter": state["iteration"], "split": "event", "event": "resumed",
                    "git": env["git"], "gpu": env["gpu"], "torch": env["torch"]})
    else:
        log.truncate_after(0)
        write_json(run_dir / "env.json", env)

    loader = DeviceLoader(data.train_x, data.train_y, recipe.batch_size, run.seed, device)
    test_x, test_y = data.test_x, data.test_y
    if recipe.test_subset and recipe.test_subset < len(test_y):
        _, keep = stratified_split(test_y, recipe.test_subset, seed=0)
        test_x, test_y = test_x[keep], test_y[keep]
    step = make_train_step(model, optimizer, recipe.bn_splits, engine)

    def test_batches():
        return loader.eval_batches(test_x, test_y)

    def checkpoint() -> None:
        save_checkpoint(run_dir, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "state": dict(state), "rng_cpu": torch.get_rng_state()})

    def finish(status: str, **extra) -> dict:
        summary = {"status": status, "iteration": state["iteration"], "train_s": round(state["train_s"], 2),
                   "img_per_s": round(state["images"] / max(state["train_s"], 1e-9), 1),
                   "warmup_ended_at": state["warmup_ended_at"],
                   "params": sum(p.numel() for p in model.parameters()), **extra}
        write_json(run_dir / "summary.json", summary)
        return summary

    window, warm = Window(device), Window(device)
    first, train_err = state["iteration"], None
    last_log = (state["images"], state["train_s"])
    started = tick = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(run_dir.name, total=recipe.iterations, completed=first, rate="", status="")
        for it in range(first, recipe.iterations):
            x, y = loader.batch(it)
            lr = recipe.lr_at(it, state["warming_up"])
            loss, wrong = step(x, y, lr)
            window.add(loss, wrong, len(y))
            done = state["iteration"] = it + 1
            state["images"] += len(y)
            if state["warming_up"]:
                warm.add(loss, wrong, len(y))
                if done % recipe.warmup_window == 0:
                    # the paper's condition: back to lr 0.1 once training error is below 80%
                    error = warm.read()[1]
                    log.append({"iter": done, "split": "warmup", "error": error})
                    if error < recipe.warmup_until:
                        state["warming_up"], state["warmup_ended_at"] = False, done
            last = done == recipe.iterations
            due_log, due_eval, due_ckpt = (last or done % every == 0 for every in
                                           (recipe.log_every, recipe.eval_every, recipe.checkpoint_every))
            if not (due_log or due_eval or due_ckpt):
                continue
            sync(device)
            now = time.perf_counter()
            state["train_s"] += now - tick  # training time only: evaluation and I/O excluded
            if due_log:
                train_loss, train_err = window.read()
                images, seconds = state["images"] - last_log[0], state["train_s"] - last_log[1]
                last_log = (state["images"], state["train_s"])
                log.append({"iter": done, "split": "train", "loss": train_loss, "error": train_err,
                            "lr": lr,  # of the window's last step
                            "img_per_s": round(images / max(seconds, 1e-9), 1)})
                bar.update(task, completed=done, rate=f"{(done - first) / (now - started):.1f} it/s",
                           status=f"loss {train_loss:.3f}  train err {train_err:.1f}%")
                if not math.isfinite(train_loss):
                    return finish("diverged", train_error=None, test_error=None,
                                  reason=f"training loss became {train_loss} by iteration {done}")
            if due_eval:
                test_loss, test_err = evaluate(model, test_batches(), engine)
                log.append({"iter": done, "split": "test", "loss": test_loss, "error": test_err})
            if due_ckpt:
                checkpoint()
            tick = time.perf_counter()
            if time_limit_s is not None and not last and tick - started > time_limit_s:
                checkpoint()
                return finish("paused", train_error=train_err, test_error=None)
    _, test_err = evaluate(model, test_batches(), engine)
    write_json(run_dir / "responses.json",
               response_stds(model, test_batches(), bn_images=recipe.batch_size // recipe.bn_splits))
    return finish("done", train_error=train_err, test_error=test_err)
