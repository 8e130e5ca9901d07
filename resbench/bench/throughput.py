"""`resbench bench cifar`: the plain training loop vs resbench's, side by side on one device.

plain: torchvision's CIFAR recipe as most tutorials write it: a Dataset of PIL images,
RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize in DataLoader
workers, fp32, eager, channels-first, the default (foreach) SGD.
fast: resbench's training step: data resident on the device, batched augmentation,
channels_last, and what `Engine` resolves to (on a GPU bf16 autocast, torch.compile, fused
SGD), once per precision asked for: fp32 and bf16 side by side, as a ratio.
Both train the same model with the same recipe and batch size; only the loop differs.

`resbench bench jobs` measures the other axis: several trainings as worker processes sharing one device, and
`resbench bench fuse` several seeds fused into one training (`resbench.train.fused`).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from resbench.host import vision as _vision  # noqa: F401  (before torchvision: see resbench/host/vision.py)
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from resbench.bench.setup import bench_recipe, steady_rate, timed_rate
from resbench.data.cifar import CifarData
from resbench.data.pipeline import DeviceLoader
from resbench.models import build_model
from resbench.paper.recipes import CifarRecipe
from resbench.sweep.launch import launch_local
from resbench.sweep.options import Schedule
from resbench.sweep.plan import resolve
from resbench.train.engine import PRECISIONS, Engine, make_optimizer
from resbench.train.fused import train_fused
from resbench.train.loop import CifarRun, train_cifar
from resbench.train.steps import make_train_step


@dataclass(frozen=True)
class BenchResult:
    model: str
    loop: str  # plain | fast
    img_per_s: float
    iterations: int
    device: str
    detail: str


@dataclass(frozen=True)
class CifarBench:
    """What `bench cifar` measures: for each model the plain loop, then the fast loop in each precision."""
    models: tuple[str, ...] = ("resnet20", "resnet56", "resnet110")
    iterations: int = 200  # timed iterations per loop
    warmup: int = 30  # untimed iterations first (compilation, cudnn autotune)
    precisions: tuple[str, ...] = ("fp32", "bf16")  # the fast loop's, side by side; the first is the reference
    workers: int = 8  # DataLoader workers of the plain loop
    bn_splits: int = 2  # fast loop: BN groups per batch (2 = the paper's 2x64)

    def __post_init__(self):  # refused here, before the device or the data is looked for
        self.recipe()
        if not self.precisions or set(self.precisions) - set(PRECISIONS):
            raise ValueError(f"--precisions takes a comma-separated subset of {', '.join(PRECISIONS)}")

    def recipe(self) -> CifarRecipe:
        return CifarRecipe(bn_splits=self.bn_splits).validate()


class PilCifar(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.permute(0, 2, 3, 1).numpy(), labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def plain_loop(model_name: str, data: CifarData, device: str, iterations: int, warmup: int,
               workers: int, recipe: CifarRecipe = CifarRecipe()) -> BenchResult:
    model = build_model(model_name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    loader = DataLoader(PilCifar(data.train_x, data.train_y), batch_size=recipe.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=device.startswith("cuda"),
                        persistent_workers=workers > 0)

    def batches():
        while True:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rate = timed_rate(step, batches(), warmup, iterations, recipe.batch_size, device)
    return BenchResult(model_name, "plain", rate, iterations, device, f"fp32 eager, DataLoader({workers} workers)")


def fast_loop(model_name: str, data: CifarData, engine: Engine, iterations: int, warmup: int,
              recipe: CifarRecipe = CifarRecipe()) -> BenchResult:
    engine = engine.resolve()
    engine.apply_global_settings()
    device = engine.device
    model = build_model(model_name).to(device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, device)
    step = make_train_step(model, optimizer, recipe.bn_splits, engine)
    loader = DeviceLoader(data.train_x, data.train_y, recipe.batch_size, seed=0, device=device)

    def batches():
        it = 0
        while True:
            x, y = loader.batch(it)
            it += 1
            yield x, y, recipe.lr

    rate = timed_rate(step, batches(), warmup, iterations, recipe.batch_size, device)
    detail = f"{engine.precision}, {'compile ' + engine.compile_mode if engine.compile else 'eager'}, " \
             f"bn_splits {recipe.bn_splits}{' in one forward' if engine.one_forward else ''}"
    return BenchResult(model_name, f"fast {engine.precision}", rate, iterations, device, detail)


def cifar_bench(options: CifarBench, data: CifarData, engine: Engine) -> Iterator[BenchResult]:
    """Each model's plain loop, then its fast loop in each of `options.precisions`, as each is measured."""
    recipe = options.recipe()
    for name in options.models:
        yield plain_loop(name, data, engine.device, options.iterations, options.warmup, options.workers)
        for precision in options.precisions:
            yield fast_loop(name, data, replace(engine, precision=precision), options.iterations, options.warmup,
                            recipe)


def fused_throughput(model_name: str, runs: int, iterations: int, data: CifarData, engine: Engine,
                     out: Path, batch_size: int = 128) -> dict:
    """Aggregate img/s of `runs` seeds of one model trained as one fused group (`resbench run --fuse`);
    one run alone (runs=1) is the rate of any number of runs trained one after another."""
    recipe = bench_recipe(iterations, batch_size)
    group = [CifarRun(model_name, recipe, seed, "bench") for seed in range(runs)]
    dirs = [out / f"{model_name}-fuse{runs}-s{seed}" for seed in range(runs)]
    started = time.perf_counter()
    if runs == 1:
        summaries = [train_cifar(group[0], data, dirs[0], engine, progress=False)]
    else:
        summaries = train_fused(group, data, dirs, engine, progress=False)
    wall = time.perf_counter() - started
    if any(s["status"] != "done" for s in summaries):
        raise RuntimeError(f"a fused {model_name} training of the benchmark ended {summaries}")
    steady = sum(steady_rate(d, iterations) for d in dirs)
    return {"model": model_name, "fuse": runs, "iterations": iterations, "device": engine.device,
            "steady_img_per_s": round(steady, 1), "per_run_img_per_s": round(steady / runs, 1),
            "wall_img_per_s": round(runs * iterations * recipe.batch_size / wall, 1), "wall_s": round(wall, 1)}


def jobs_throughput(model_name: str, workers: int, iterations: int, data: CifarData, data_root: str | None,
                      engine: Engine, out: Path) -> dict:
    """Aggregate img/s of `workers` copies of one training sharing the device (`resbench run --jobs`).

    Each worker trains `iterations` steps of the paper's recipe (evaluation only at the end).
    steady_img_per_s sums, over the workers, their rate in the middle of training (30-80% of
    the iterations: all workers running, compilation over); wall_img_per_s counts every
    image over the whole wall time, start-up and compilation included.
    """
    recipe = bench_recipe(iterations)
    jobs = [resolve(CifarRun(model_name, recipe, seed, "bench"), data, engine, out) for seed in range(workers)]
    started = time.perf_counter()
    results = launch_local(jobs, engine, out, Schedule("local", workers, progress=False), data_root,
                           say=lambda _: None)
    wall = time.perf_counter() - started
    for r in results:
        if r["status"] != "done":
            raise RuntimeError(f"a {model_name} training of the benchmark ended {r['status']}: "
                               f"{r.get('error', 'see ' + r['dir'])}")
    steady = [steady_rate(job.dir, iterations) for job in jobs]
    return {"model": model_name, "jobs": workers, "iterations": iterations, "device": engine.device,
            "steady_img_per_s": round(sum(steady), 1), "per_run_img_per_s": round(sum(steady) / workers, 1),
            "wall_img_per_s": round(workers * iterations * recipe.batch_size / wall, 1), "wall_s": round(wall, 1)}


def jobs_rows(models: list[str], counts: list[int], iterations: int, data: CifarData, engine: Engine, *,
              data_root: Path | None = None) -> Iterator[dict]:
    """`jobs_throughput` for each model and each number of jobs, each in a temporary results folder."""
    for name in models:
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
                row = jobs_throughput(name, n, iterations, data, str(data_root) if data_root else None, engine,
                                      Path(tmp))
            yield row


def fuse_rows(models: list[str], counts: list[int], iterations: int, data: CifarData, engine: Engine, *,
              data_root: Path | None = None, jobs: bool = True) -> Iterator[dict]:
    """`fused_throughput` for each model and each number of seeds; with `jobs`, beside it (under "jobs") as
    many runs as `jobs_throughput`'s worker processes."""
    for name in models:
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
                row = fused_throughput(name, n, iterations, data, engine, Path(tmp))
                if jobs and n > 1:
                    row["jobs"] = jobs_throughput(name, n, iterations, data, str(data_root) if data_root else None,
                                                  engine, Path(tmp) / "jobs")
            yield row
