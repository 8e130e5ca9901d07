"""Fig. 7 probe: how large every 3x3 layer's response is (after BN, before ReLU or addition).

The paper plots "the standard deviations (std) of layer responses" without saying how the
std is taken, or whether BN uses its running statistics (as at test time) or the batch's
(as in training). So every reading is recorded, per layer:

    std            pooled over images, channels and positions (the default, in the figure)
    channel_std    per channel over images and positions, then averaged over channels
    rms            root mean square (the mean included)

each with BN in eval mode (running statistics) and, suffixed `_train`, in train mode (each
group of `bn_images` test images normalised by its own statistics, as training did; the
running statistics are left untouched). `block_output` marks each block's second 3x3
layer: the residual function's output in a ResNet, the same layer in its plain twin, which
is the comparison the paper's argument is about. The claims table judges every reading.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from resbench.models import ConvBN

READINGS = ("std", "channel_std", "rms", "std_train", "channel_std_train", "rms_train")


def response_layers(model: nn.Module) -> list[tuple[str, ConvBN]]:
    """Every 3x3 conv+BN in network order: the first conv and two per basic block."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ConvBN) and m.kernel_size == 3]


def moments(out: torch.Tensor) -> torch.Tensor:
    """(3, C): per channel, the number of values, their sum and their sum of squares (float64)."""
    x = out.detach().double().transpose(0, 1).flatten(1)  # (C, B*H*W)
    return torch.stack([torch.full((x.shape[0],), x.shape[1], dtype=torch.float64, device=x.device),
                        x.sum(1), x.square().sum(1)])


def readings(m: torch.Tensor) -> dict[str, float]:
    """std, channel_std and rms from per-channel moments (see the module docstring)."""
    n, s, ss = m
    pooled_var = ss.sum() / n.sum() - (s.sum() / n.sum()).square()
    channel_var = ss / n - (s / n).square()
    return {"std": float(pooled_var.clamp_min(0).sqrt()),
            "channel_std": float(channel_var.clamp_min(0).sqrt().mean()),
            "rms": float((ss.sum() / n.sum()).sqrt())}


@torch.no_grad()
def _layer_moments(model: nn.Module, batches: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    layers = response_layers(model)
    sums: list[torch.Tensor | int] = [0] * len(layers)
    handles = []
    for i, (_, module) in enumerate(layers):
        def hook(_m, _inp, out, i=i):
            sums[i] = sums[i] + moments(out)
        handles.append(module.register_forward_hook(hook))
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [s.cpu() for s in sums]


def response_stds(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  bn_images: int = 64) -> list[dict]:
    """Every reading of every 3x3 layer's response over `batches` (the test set).

    `bn_images`: the BN group of train mode, the training's batch / bn_splits (64: the paper's).
    """
    images = [x for x, _ in batches]
    was_training = model.training
    model.eval()
    try:
        eval_moments = _layer_moments(model, images)
    finally:
        model.train(was_training)
    twin = copy.deepcopy(model).train()  # batch statistics, without touching the model's running ones
    train_moments = _layer_moments(twin, (part for x in images for part in x.split(bn_images)))
    out = []
    for i, (name, _) in enumerate(response_layers(model)):
        train = {f"{k}_train": v for k, v in readings(train_moments[i]).items()}
        out.append({"layer": i + 1, "name": name, "block_output": name.endswith("conv2"),
                    **readings(eval_moments[i]), **train})
    return out
