"""What every benchmark is set up from, once: the device and its arithmetic resolved, the data found, and
the results written beside the machine that measured them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from resbench.data.cifar import CifarData, load_cifar10
from resbench.host.files import write_json
from resbench.models import parse_model_name
from resbench.runs.provenance import environment
from resbench.train.engine import Engine

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
