"""How full a pack keeps the device: `resbench bench pack`, and what `resbench tune` measures of packs.

For each pack size K, K runs of the paper's recipe (`bench.setup.bench_recipe`: iterations steps,
tested once at the end) train side by side (`resbench.train.pack`) and their steady img/s add
up; the table gives each K's ratio to K = 1 and its share of the device's peak, both measured
in the same run:

* training FLOPs of an image: 6 x the forward multiply-adds (2 FLOPs per multiply-add; the
  backward pass costs twice the forward), counted by torch's FlopCounterMode;
* peak: a large bf16 matrix product timed on the device (8192^3 on a GPU), the ceiling a
  convolution net could approach.

`pack_agrees` is the check that makes packing safe to use: two runs packed against the same two
alone, every step logged, over an lr milestone; equal losses and weights (bit for bit where the
kernels are the same) or the pack is not used.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from functools import cache
from pathlib import Path

import torch

from resbench.bench.setup import bench_recipe, steady_rate
from resbench.data.cifar import CifarData
from resbench.models import build_model, parse_model_name
from resbench.probes.complexity import macs_flop_counter
from resbench.runs.checkpoint import load_checkpoint
from resbench.runs.rundir import read_metrics
from resbench.train.engine import Engine, sync
from resbench.train.loop import train_cifar
from resbench.train.pack import train_packed
from resbench.paper.recipes import CifarRecipe
from resbench.train.runspec import CifarRun

GROW = 1.10  # beyond the sizes asked for, K doubles while that adds this much throughput
NEAR_BEST = 0.95  # the pack chosen: the smallest K within this share of the best rate


@cache
def train_flops(model: str) -> float:
    """FLOPs to train on one image: 6 x its forward multiply-adds."""
    return 6.0 * macs_flop_counter(build_model(model), parse_model_name(model).input_size)


def peak_tflops(device: str) -> float:
    """bf16 matrix-product TFLOP/s on `device`: the fastest of 10 timed products after 3 warm-ups (a ceiling:
    anything else running on the device only slows a product; the median under load made a pack's share of
    the peak exceed 1 on a busy CPU)."""
    n = 8192 if device.startswith("cuda") else 1024
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    times = []
    for i in range(13):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return 2 * n ** 3 / min(times) / 1e12


def pack_throughput(models: list[str], slots: int, iterations: int, data: CifarData, engine: Engine,
                    out: Path, batch_size: int = 128, time_limit_s: float | None = None) -> dict:
    """Aggregate img/s of `slots` runs packed (the models taken in turn: mixed depths if several); raises
    RuntimeError where a run did not end done (paused by `time_limit_s` or a signal, failed, out of memory)."""
    recipe = bench_recipe(iterations, batch_size)
    runs = [(CifarRun(models[i % len(models)], recipe, i, "bench"), out / f"pack{slots}-{i}") for i in range(slots)]
    started = time.perf_counter()
    ended = dict(train_packed(runs, data, engine, slots, progress=False, time_limit_s=time_limit_s))
    wall = time.perf_counter() - started
    if any(s["status"] != "done" for s in ended.values()):
        raise RuntimeError(f"a pack of {slots} ended {[s.get('error', s['status']) for s in ended.values()]}")
    rates = [steady_rate(run_dir, iterations) for _, run_dir in runs]
    return {"models": models, "slots": slots, "iterations": iterations, "device": engine.device,
            "steady_img_per_s": round(sum(rates), 1), "per_run_img_per_s": round(sum(rates) / slots, 1),
            "tflop_per_s": round(sum(r * train_flops(run.model) for r, (run, _) in zip(rates, runs)) / 1e12, 3),
            "wall_s": round(wall, 1), "step": ended[runs[0][1]].get("step")}


def pack_table(models: list[str], sizes: list[int], iterations: int, data: CifarData, engine: Engine, out: Path,
               grow: bool = True, batch_size: int = 128, say=lambda line: None) -> list[dict]:
    """`pack_throughput` for each size (then doubling while it pays, if `grow`), with the ratio to the
    first size and the share of the measured peak."""
    peak = peak_tflops(engine.device)
    rows, sizes = [], sorted(sizes)
    while sizes:
        k = sizes.pop(0)
        row = pack_throughput(models, k, iterations, data, engine, out / f"k{k}", batch_size)
        row.update(ratio=round(row["steady_img_per_s"] / (rows[0] if rows else row)["steady_img_per_s"], 2),
                   peak_tflop_per_s=round(peak, 1), share_of_peak=round(row["tflop_per_s"] / peak, 4))
        rows.append(row)
        say(f"pack of {k}: {row['steady_img_per_s']:,.0f} img/s ({row['ratio']}x K={rows[0]['slots']}, "
            f"{100 * row['share_of_peak']:.2f}% of {peak:.0f} TFLOP/s)")
        if grow and not sizes and len(rows) > 1 and row["steady_img_per_s"] >= GROW * rows[-2]["steady_img_per_s"]:
            sizes.append(2 * k)
    return rows


def pack_bench(models: list[str], sizes: list[int], iterations: int, data: CifarData, engine: Engine, *,
               grow: bool = True, batch_size: int = 128, graph: bool | None = None) -> list[dict]:
    """`pack_table` in a temporary results folder, each run's step captured in a CUDA graph on a GPU (unless
    `graph` is False), elsewhere in the graph's dry mode (the same code, never captured)."""
    captured = engine.device.startswith("cuda") and graph is not False
    engine = replace(engine, graph="cuda" if captured else "dry")
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
        return pack_table(models, sizes, iterations, data, engine, Path(tmp), grow, batch_size)


def chosen_size(rows: list[dict]) -> int:
    """The smallest K within NEAR_BEST of the best aggregate rate: as fast, and sooner done per run."""
    best = max(r["steady_img_per_s"] for r in rows)
    return min(r["slots"] for r in rows if r["steady_img_per_s"] >= NEAR_BEST * best)


def pack_agrees(data: CifarData, engine: Engine, out: Path, steps: int = 12, batch_size: int = 128,
                model: str = "resnet20") -> dict:
    """Two runs packed against the same two alone: `steps` steps, each logged, the lr divided by 10 halfway.
    {"bitwise": every loss and weight equal, "max_loss_diff", "max_weight_diff", "agree": within 1e-3}."""
    recipe = CifarRecipe().with_options(iterations=steps, milestones=(steps // 2,), log_every=1, eval_every=steps,
                                        checkpoint_every=steps, test_subset=1000, batch_size=batch_size)
    runs = [CifarRun(model, recipe, seed, "check") for seed in (0, 1)]
    for run in runs:
        train_cifar(run, data, out / f"alone-{run.seed}", engine, progress=False)
    list(train_packed([(run, out / f"packed-{run.seed}") for run in runs], data, engine, 2, progress=False))
    loss_diff, weight_diff = 0.0, 0.0
    for run in runs:
        alone, packed = (_losses_and_weights(out / f"{how}-{run.seed}") for how in ("alone", "packed"))
        loss_diff = max([loss_diff] + [abs(a - b) for a, b in zip(alone[0], packed[0])])
        weight_diff = max([weight_diff] + [(alone[1][k] - packed[1][k]).abs().max().item() for k in alone[1]])
    return {"steps": steps, "bitwise": loss_diff == 0 and weight_diff == 0, "max_loss_diff": loss_diff,
            "max_weight_diff": weight_diff, "agree": loss_diff <= 1e-3 and weight_diff <= 1e-3}


def _losses_and_weights(run_dir: Path) -> tuple[list[float], dict]:
    losses = [r["loss"] for r in read_metrics(run_dir, "train")]
    return losses, load_checkpoint(run_dir)["model"]
