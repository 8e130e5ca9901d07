"""Fig. 7 probe: the std of every 3x3 layer's response (after BN, before ReLU or addition)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..models import ConvBN


def response_layers(model: nn.Module) -> list[tuple[str, ConvBN]]:
    """Every 3x3 conv+BN in network order: the first conv and two per basic block."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ConvBN) and m.kernel_size == 3]


@torch.no_grad()
def response_stds(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[dict]:
    """Std of each 3x3 layer's BN output over all images, channels and positions of `batches`.

    The model runs in eval mode (BN uses its running statistics, as at test time); sums are
    kept in float64 so 10k images x 64 channels x 32x32 positions lose nothing.
    """
    layers = response_layers(model)
    device = next(model.parameters()).device
    sums = torch.zeros(len(layers), 3, dtype=torch.float64, device=device)  # n, sum, sum of squares
    handles = []
    for i, (_, module) in enumerate(layers):
        def hook(_m, _inp, out, i=i):
            out = out.detach().double()
            sums[i, 0] += out.numel()
            sums[i, 1] += out.sum()
            sums[i, 2] += out.square().sum()
        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        for x, _ in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n, s, ss = sums.cpu().unbind(1)
    std = (ss / n - (s / n).square()).clamp_min(0).sqrt()
    return [{"layer": i + 1, "name": name, "std": float(std[i])} for i, (name, _) in enumerate(layers)]
