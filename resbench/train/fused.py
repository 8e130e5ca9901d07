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
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from ..data.cifar import CifarData
from .engine import Engine, compile_for_run, graphs_compiled, sgd_update, step_path, sync
from .loop import CifarRun, Member, progress_bar
from .splits import bn_momenta, forward_parts
from .stop import Deadline, stop_on_signals


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
            # BN statistics per split, as the paper's data-parallel GPUs each had their own
            if bn_splits > 1 and engine.one_forward:
                logits = forward_parts(stack.base, params, buffers, x, bn_splits, momenta)
            else:
                logits = torch.cat([functional_call(stack.base, (params, buffers), (part,))
                                    for part in x.chunk(bn_splits)])
        return F.cross_entropy(logits.float(), y), (logits.argmax(1) != y).sum()

    forward = vmap(one_run)
    if engine.compile:
        forward = compile_for_run(forward, engine)

    def step(x: torch.Tensor, y: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, wrong = forward(stack.params, stack.buffers, x, y)
        grads = torch.autograd.grad(loss.sum(), list(stack.params.values()))  # runs are independent
        stack.sgd(list(grads), lr)
        return loss.detach(), wrong.detach()

    return step


def train_fused(runs: list[CifarRun], data: CifarData, run_dirs: list[Path], engine: Engine = Engine(),
                progress: bool = True, time_limit_s: float | None = None) -> list[dict]:
    """Train (or resume) runs that differ only in seed, together; returns their summaries in order.

    Runs that resume from different iterations cannot step together: each iteration's
    members train as their own group, one group after another.
    """
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
            group = [m for m in members if m.iteration == first]
            summaries.update(_train_group(group, engine, progress, deadline))
    return [summaries[d] for d in run_dirs]


def _train_group(members: list[Member], engine: Engine, progress: bool, deadline: Deadline) -> dict:
    recipe, device, finished = members[0].recipe, engine.device, {}
    stack = Stack(members)
    step = make_fused_step(stack, recipe.bn_splits, engine)
    first = members[0].iteration
    started = tick = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{members[0].run.model} x{len(members)} fused", total=recipe.iterations,
                            completed=first, rate="", status="")
        for it in range(first, recipe.iterations):
            x, y = (torch.stack(t) for t in zip(*(m.loader.batch(it) for m in members)))
            lrs = [m.lr(it) for m in members]
            graphs = graphs_compiled()
            loss, wrong = step(x, y, torch.tensor(lrs, device=device))
            if it == first:
                for m in members:
                    m.state["step"] = step_path(engine, graphs)
            due_log, due_eval, due_ckpt, last = [m.record(loss[i], wrong[i], y.shape[1])
                                                 for i, m in enumerate(members)][0]  # one schedule for all
            pause = None if last else deadline.reason()
            if not (due_log or due_eval or due_ckpt or pause):
                continue
            sync(device)
            now = time.perf_counter()
            for m in members:
                m.state["train_s"] += now - tick  # each run's wall time is the group's
            if due_log:
                losses = [m.log_train(lr) for m, lr in zip(members, lrs)]
                for m, train_loss in zip(members, losses):
                    if not math.isfinite(train_loss):
                        finished[m.dir] = m.diverged(train_loss)
                if any(m.dir in finished for m in members):
                    rows = [i for i, m in enumerate(members) if m.dir not in finished]
                    if not rows:
                        return finished
                    stack.keep(rows)
                    members = [members[i] for i in rows]
                    step = make_fused_step(stack, recipe.bn_splits, engine)
                bar.update(task, completed=it + 1, rate=f"{len(members) * (it + 1 - first) / (now - started):.1f} "
                           "run-it/s", status=f"loss {min(losses):.3f}..{max(losses):.3f}")
            if due_eval or due_ckpt or pause:
                stack.write_back(members)
            if due_eval:
                for m in members:
                    m.log_test()
            if due_ckpt or pause:
                for m in members:
                    m.checkpoint()
            if pause:
                for m in members:
                    finished[m.dir] = m.finish("paused", train_error=m.train_err, test_error=None, reason=pause)
                return finished
            tick = time.perf_counter()
    stack.write_back(members)
    return {**finished, **{m.dir: m.finish("done") for m in members}}
