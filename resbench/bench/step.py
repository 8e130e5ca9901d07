"""`resbench bench step`: what makes a deep net's captured step faster, measured side by side.

A captured CUDA graph (`train.graphs`) takes the host's launches out of a step; what is left is
the kernels themselves, and a deep CIFAR net's step is hundreds of small ones (per layer: a
convolution, BN's statistics and normalisation, ReLU, the shortcut's add, and their backward).
torch.compile fuses the elementwise ones into fewer Triton kernels; captured with the rest of
the step, the graph replays fewer, larger kernels. For each network, from one initialisation on
the same batches:

* `captured`: the eager step recorded in a graph (resbench.train.graphs);
* `compiled`: the forward compiled (inductor, its default mode) and then recorded.

Each way's steady img/s after its set-up (compilation, warm-up, capture: timed as `setup_s`),
the speed-up, the iterations a run needs before the set-up has paid for itself (against the
paper's 64,000), and the largest difference between the two ways' losses over the steps both
took. A compiled step rounds differently: equal losses here are necessary, not sufficient; the
way becomes a default only after a control over seeds shows the same test error.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterator

import torch

from resbench.data.cifar import CifarData
from resbench.data.pipeline import DeviceLoader
from resbench.models import build_model
from resbench.train.engine import Engine, graphs_compiled, make_optimizer, sync
from resbench.train.graphs import WARMUP_STEPS
from resbench.paper.recipes import CifarRecipe
from resbench.train.steps import make_train_step
from resbench.train.stop import Deadline

WAYS = {"captured": False, "compiled": True}


class Cut(Exception):
    """A measurement stopped by its deadline (time limit, SIGTERM, Ctrl-C) before it ended: no figure."""  # way -> the forward torch.compile'd before the capture


def one_way(model_name: str, data: CifarData, engine: Engine, iterations: int,
            recipe: CifarRecipe = CifarRecipe(), deadline: Deadline | None = None) -> dict:
    """A network's step one way: set-up seconds (the steps up to and including the capture), steady img/s, losses.
    Raises `Cut` as soon as `deadline` says to stop."""
    engine.apply_global_settings()
    torch.manual_seed(0)
    model = build_model(model_name).to(engine.device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, engine.device)
    step = make_train_step(model, optimizer, recipe.bn_splits, engine)
    loader = DeviceLoader(data.train_x, data.train_y, recipe.batch_size, seed=0, device=engine.device)
    losses, setup, graphs = [], WARMUP_STEPS + 1, graphs_compiled()
    started = time.perf_counter()
    for it in range(setup + iterations):
        if deadline is not None and (reason := deadline.reason()):
            raise Cut(reason)
        if it == setup:  # compiled, warmed up and captured: what follows is the steady step
            sync(engine.device)
            setup_s, started = time.perf_counter() - started, time.perf_counter()
        losses.append(step(*loader.batch(it), recipe.lr)[0])
    sync(engine.device)
    return {"model": model_name, "img_per_s": iterations * recipe.batch_size / (time.perf_counter() - started),
            "setup_s": setup_s, "path": getattr(step, "path", "eager"), "dynamo_graphs": graphs_compiled() - graphs,  # 0: nothing compiled
            "losses": [float(v) for v in losses]}


def step_rows(models: list[str], data: CifarData, engine: Engine, iterations: int,
              recipe: CifarRecipe = CifarRecipe()) -> Iterator[dict]:
    """Both ways for each network, and how they compare (see the module docstring), each row as soon as it
    is measured: a cut during the compiled way's compilation keeps the captured way's row."""
    graph = "cuda" if engine.device.startswith("cuda") else "dry"
    for name in models:
        base = one_way(name, data, replace(engine, graph=graph, compile=WAYS["captured"]), iterations, recipe)
        yield _row(base, "captured", graph, base, recipe)
        fast = one_way(name, data, replace(engine, graph=graph, compile=WAYS["compiled"]), iterations, recipe)
        yield _row(fast, "compiled", graph, base, recipe)


def step_table(models: list[str], data: CifarData, engine: Engine, iterations: int,
               recipe: CifarRecipe = CifarRecipe()) -> list[dict]:
    return list(step_rows(models, data, engine, iterations, recipe))


def _row(measured: dict, way: str, graph: str, base: dict, recipe: CifarRecipe) -> dict:
    row = {**{k: v for k, v in measured.items() if k != "losses"}, "way": way, "graph": graph,
           "speedup": measured["img_per_s"] / base["img_per_s"], "pays_after_iterations": None, "max_loss_diff": None}
    if measured is not base:
        per_image_saved = 1 / base["img_per_s"] - 1 / measured["img_per_s"]  # seconds
        row["pays_after_iterations"] = (measured["setup_s"] - base["setup_s"]) / (per_image_saved * recipe.batch_size) \
            if per_image_saved > 0 else None  # never: it is not faster
        row["max_loss_diff"] = max(abs(a - b) for a, b in zip(base["losses"], measured["losses"]))
    return row
