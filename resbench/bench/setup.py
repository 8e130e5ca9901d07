"""What every benchmark is set up from, once: the device and its arithmetic resolved, the data found, and
the results written beside the machine that measured them."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from resbench.data.cifar import CifarData, load_cifar10
from resbench.host.files import write_json
from resbench.models import parse_model_name
from resbench.paper.recipes import CifarRecipe
from resbench.runs.provenance import environment
from resbench.runs.rundir import read_metrics
from resbench.train.engine import Engine, sync

NETWORKS = {"cifar": "CIFAR networks (e.g. resnet20, plain56)", "imagenet": "ImageNet networks (e.g. resnet50)"}


@dataclass(frozen=True)
class Setup:
    """A benchmark's machine side, as `resbench bench` takes it: what `Engine` resolves, and the data's folder."""
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    precision: str = "auto"
    compile: bool | None = None  # None: on a GPU
    compile_mode: str = "reduce-overhead"
    compile_backend: str = "inductor"
    one_forward: bool = False
    # where the benchmark's data is: CIFAR-10 (None: where `resbench run` looks), or an ImageNet folder
    # for `bench imagenet` (None: JPEGs generated for the benchmark)
    data_root: Path | None = None

    def engine(self) -> Engine:
        """The engine resolved on this machine; ValueError (one line) for a device it lacks."""
        return Engine(device=self.device, precision=self.precision, compile=self.compile,
                      compile_mode=self.compile_mode, compile_backend=self.compile_backend,
                      one_forward=self.one_forward).resolve()


def networks(names: list[str], dataset: str) -> list[str]:
    """The networks a benchmark of `dataset` ("cifar" or "imagenet") measures, checked before anything is set up:
    ValueError (one line) for none, an unknown name, or a network of the other dataset."""
    if not names:
        raise ValueError("--models names no network")
    for name in names:
        if parse_model_name(name).dataset != dataset:
            raise ValueError(f"this benchmark measures {NETWORKS[dataset]}; {name} is not one")
    return names


def cifar_setup(setup: Setup) -> tuple[Engine, CifarData]:
    """(resolved engine, CIFAR-10) for a CIFAR benchmark; raises ValueError or DataError with a one-line message."""
    return setup.engine(), load_cifar10(setup.data_root)


def write_results(out: Path, results: list | dict, engine: Engine, data) -> None:
    """The results and the machine they were measured on (GPU name, versions, data) as one JSON file:
    a benchmark's rows under "results", or one benchmark's dict (`bench imagenet`) with "env" beside its keys."""
    env = environment(torch.device(engine.device), data.provenance())
    write_json(out, {**results, "env": env} if isinstance(results, dict) else {"results": results, "env": env})


def timed_rate(step, batches, warmup: int, iterations: int, batch_size: int, device: str) -> float:
    """img/s of `iterations` calls of `step` on `batches` after `warmup` untimed ones, the device waited for
    at both ends: how every benchmark times a loop."""
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step(*next(batches))
    sync(device)
    return iterations * batch_size / (time.perf_counter() - start)


def bench_recipe(iterations: int, batch_size: int = 128) -> CifarRecipe:
    """The paper's recipe for `iterations` steps, logged 20 times, tested only at the end."""
    return CifarRecipe().with_options(iterations=iterations, milestones=(iterations,), eval_every=iterations,
                                      log_every=max(1, iterations // 20), checkpoint_every=iterations,
                                      test_subset=1000, batch_size=batch_size)


def steady_rate(run_dir: Path, iterations: int) -> float:
    """A run's img/s in the middle of training (30-80% of the iterations: compilation over)."""
    rates = [r["img_per_s"] for r in read_metrics(run_dir, "train") if 0.3 * iterations < r["iter"] <= 0.8 * iterations]
    return sum(rates) / len(rates) if rates else float("nan")
