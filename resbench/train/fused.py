"""Fused multi-run training: runs that differ only in seed, trained together in one process.

Small CIFAR nets leave a GPU nearly idle at batch 128. Fusing N runs makes every layer
compute all N in one kernel: the runs' parameters, BN buffers and momentum are stacked
along a new first dimension, and one forward `vmap`s the network's own `nn.Module`
(`torch.func.functional_call` on a parameter-less copy), which turns each convolution into
one grouped convolution over the runs (HFTA, Wang et al. 2021, fuses the same way). No
second definition of any network exists.

Each run keeps everything it has alone (`loop.Member`): its seeded initialisation, data
order and augmentation, learning rate (ResNet-110's warm-up ends at its own iteration), BN
statistics per bn_splits part of its own batch and its own running statistics, its
metrics, checkpoints, Fig. 7 probe and summary. Its parameters are copied back into its
Member's model before it is evaluated, checkpointed or finished, so the run directory is
the one an unfused run writes (plus `fused_with`), and either resumes the other.

SGD on the stacked parameters is torch.optim.SGD's arithmetic (momentum, coupled weight
decay, dampening 0) with a learning rate per run, in a few foreach kernels. A run whose
loss becomes NaN or inf is finished as diverged and leaves the group; the others go on.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from pathlib import Path

import torch
from torch.func import stack_module_state, vmap

from resbench.data.cifar import CifarData
from resbench.train.engine import Engine, compile_for_run, graphs_compiled, sgd_update, step_path
from resbench.train.loop import Member, drive
from resbench.train.runspec import CifarRun, Schedule
from resbench.train.splits import bn_momenta, split_loss
from resbench.train.stop import Deadline, stop_on_signals


class Stack:
    """The Members' parameters, BN buffers and SGD momentum, stacked: index i is member i."""

    def __init__(self, members: list[Member]):
        models = [m.model for m in members]
        self.base = copy.deepcopy(models[0]).to("meta")  # the architecture, without storage
        self.params, self.buffers = stack_module_state(models)
        buffers = [_momentum(m) for m in members]
        self.momentum = {name: torch.stack([b[name] for b in buffers]) for name in self.params}
        recipe = members[0].recipe
        self.momentum_factor, self.weight_decay = recipe.momentum, recipe.weight_decay

    def sgd(self, grads: list[torch.Tensor], lr: torch.Tensor) -> None:
        """torch.optim.SGD's step (`engine.sgd_update`), with each run's learning rate."""
        params, bufs = list(self.params.values()), list(self.momentum.values())
        sgd_update(params, grads, bufs, [lr.view(-1, *[1] * (p.dim() - 1)) for p in params], self.momentum_factor,
                   self.weight_decay)

    @torch.no_grad()
    def write_back(self, members: list[Member]) -> None:
        """Copy each member's slice into its model and optimizer, as if it had trained alone."""
        for i, m in enumerate(members):
            for name, p in m.model.named_parameters():
                p.copy_(self.params[name][i])
                m.optimizer.state[p]["momentum_buffer"] = self.momentum[name][i].clone()
            for name, b in m.model.named_buffers():
                b.copy_(self.buffers[name][i])

    def keep(self, rows: list[int]) -> None:
        """Only these members go on (a diverged run leaves the group)."""
        index = torch.tensor(rows, device=next(iter(self.params.values())).device)
        self.params = {k: v.detach()[index].requires_grad_() for k, v in self.params.items()}
        self.buffers = {k: v[index] for k, v in self.buffers.items()}
        self.momentum = {k: v[index] for k, v in self.momentum.items()}


def _momentum(member: Member) -> dict[str, torch.Tensor]:
    """Each parameter's SGD momentum buffer (zeros before the first step)."""
    state = member.optimizer.state
    return {name: state[p]["momentum_buffer"].detach().clone() if "momentum_buffer" in state.get(p, {})
            else torch.zeros_like(p) for name, p in member.model.named_parameters()}


def make_fused_step(stack: Stack, bn_splits: int, engine: Engine):
    """step(x (N, B, ...), y (N, B), lr (N,)) -> (loss (N,), number wrong (N,)), on the device."""
    momenta = bn_momenta(stack.base)

    def one_run(params, buffers, x, y):
        with engine.autocast():
            return split_loss(stack.base, x, y, bn_splits, engine.one_forward, momenta, params, buffers)

    forward = vmap(one_run)
    if engine.compile:
        forward = compile_for_run(forward, engine)

    def step(x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, wrong = forward(stack.params, stack.buffers, x, y)
        grads = torch.autograd.grad(loss.sum(), list(stack.params.values()))  # runs are independent
        stack.sgd(list(grads), lr)
        return loss.detach(), wrong.detach()

    return step


def fusable(engine: Engine) -> str | None:
    """Why runs cannot be fused on this engine, or None. In fp32 on CUDA, batch norm under vmap asks
    whether its input is channels_last-contiguous, which torch's vmap does not implement ("NYI:
    querying is_contiguous inside of vmap ...", seen on an H200 with torch 2.11): packing
    (`resbench.train.pack`) trains such runs side by side instead."""
    engine = engine if engine.is_resolved else engine.resolve()  # resolved: maybe for other machines (Slurm)
    if engine.device.startswith("cuda") and engine.precision == "fp32":
        return "fused runs cannot train in fp32 on CUDA (torch's vmap cannot run its batch norm); pack them (--pack)"
    return None


def train_fused(runs: list[CifarRun], data: CifarData, run_dirs: list[Path], engine: Engine = Engine(),
                progress: bool = True, time_limit_s: float | None = None) -> list[dict]:
    """Train (or resume) runs that differ only in seed, together; returns their summaries in order.

    Runs that resume from different iterations cannot step together: each iteration's
    members train as their own group, one group after another.
    """
    if why := fusable(engine):
        raise ValueError(why)
    engine = engine.resolve()
    engine.apply_global_settings()
    device = engine.device
    data = replace(data, train_x=data.train_x.to(device), train_y=data.train_y.to(device))  # once, not per run
    names = [d.name for d in run_dirs]
    members = [Member(run, data, d, engine, tuple(n for n in names if n != d.name)) for run, d in zip(runs, run_dirs)]
    summaries: dict[Path, dict] = {}
    with stop_on_signals():
        deadline = Deadline(time_limit_s)
        for first in sorted({m.iteration for m in members}):
            group = FusedGroup([m for m in members if m.iteration == first], engine)
            summaries.update(drive(group, deadline, engine.device, progress))
    return [summaries[d] for d in run_dirs]


class FusedGroup:
    """The skeleton's driver for Members that step together: one stacked step, each run's own files."""

    def __init__(self, members: list[Member], engine: Engine):
        self.members, self.engine, self.finished = members, engine, {}
        recipe = members[0].recipe
        self.name = f"{members[0].run.model} x{len(members)} fused"
        self.first, self.schedule = members[0].iteration, Schedule.of(recipe)
        self.stack = Stack(members)
        self.train_step = make_fused_step(self.stack, recipe.bn_splits, engine)
        self.lrs, self.synced = [], True

    def step(self, iteration: int) -> None:
        x, y = (torch.stack(t) for t in zip(*(m.loader.batch(iteration) for m in self.members)))
        self.lrs = [m.lr(iteration) for m in self.members]
        graphs = graphs_compiled()
        loss, wrong = self.train_step(x, y, torch.tensor(self.lrs, device=self.engine.device))
        for i, m in enumerate(self.members):
            if iteration == self.first:
                m.state["step"] = step_path(self.engine, graphs)
            m.record(loss[i], wrong[i], y.shape[1])
        self.synced = False

    def add_time(self, seconds: float) -> None:
        for m in self.members:
            m.state["train_s"] += seconds  # each run's wall time is the group's

    def log(self) -> tuple[str, dict | None]:
        losses = [m.log_train(lr) for m, lr in zip(self.members, self.lrs)]
        for m, loss in zip(self.members, losses):
            if not math.isfinite(loss):
                self.finished[m.dir] = m.diverged(loss)
        rows = [i for i, m in enumerate(self.members) if m.dir not in self.finished]
        if not rows:
            return "all diverged", self.finished
        if len(rows) < len(self.members):  # a diverged run leaves the group; the others go on
            self.stack.keep(rows)
            self.members = [self.members[i] for i in rows]
            self.lrs = [self.lrs[i] for i in rows]
            self.train_step = make_fused_step(self.stack, self.members[0].recipe.bn_splits, self.engine)
        return f"loss {min(losses):.3f}..{max(losses):.3f}", None

    def _sync(self) -> None:
        """Each Member's model and optimizer from the stack, once per step, before they are read."""
        if not self.synced:
            self.stack.write_back(self.members)
            self.synced = True

    def test(self) -> None:
        self._sync()
        for m in self.members:
            m.log_test()

    def checkpoint(self) -> None:
        self._sync()
        for m in self.members:
            m.checkpoint()

    def pause(self, reason: str) -> dict:
        return {**self.finished, **{m.dir: m.finish("paused", train_error=m.train_err, test_error=None, reason=reason)
                                    for m in self.members}}

    def finish(self) -> dict:
        self._sync()
        return {**self.finished, **{m.dir: m.finish("done") for m in self.members}}
