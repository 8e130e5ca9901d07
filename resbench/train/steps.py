"""A training step as a function: step(x, y, lr) -> (loss, number wrong), the engine's way.

The plain step (torch.optim.SGD, optionally torch.compile'd), or the whole step captured in a
CUDA graph (`graphs.CapturedStep`). Both take the primitives of `engine` (the training forward,
SGD's arithmetic), so neither module imports the other.
"""
from __future__ import annotations

import torch
from torch import nn

from resbench.train.engine import Engine, compile_for_run, train_forward
from resbench.train.graphs import CapturedStep


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, bn_splits: int, engine: Engine):
    """step(x, y, lr) -> (loss, number wrong), both 0-d tensors left on the device."""
    if engine.graph != "off":
        return CapturedStep(model, optimizer, bn_splits, engine)
    forward = train_forward(model, bn_splits, engine)
    if engine.compile:
        forward = compile_for_run(forward, engine)

    def step(x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, wrong = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach().clone(), wrong.detach().clone()

    return step
