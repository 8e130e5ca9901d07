"""BN statistics per part of the batch (the paper's 2 GPUs x 64 images): the one definition of that forward.

The paper's BN normalised each GPU's half of the batch on its own. The plain way runs the
network once per part (`bn_splits` forwards a step), and BN's running statistics take one
update per part, one after another. `forward_parts` runs all parts as one forward instead:
it vmaps the network over the parts, each with its own copy of the BN buffers, then folds
the copies into the running statistics the parts would have left one after another,
r_n = (1-m)^n r + sum_i (1-m)^(n-i) (r_i - (1-m) r), where r_i = (1-m) r + m mu_i is the copy
after part i (BN's running mean and variance are both updated that way). The arithmetic is
the loop's up to rounding (a CPU test checks it); which is faster is for the GPU to show,
and `Engine.one_forward` picks it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap


def bn_momenta(module: nn.Module) -> dict[str, float]:
    """Running-statistics buffer name -> the momentum of its BN layer."""
    return {f"{name}.{stat}": m.momentum for name, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) for stat in ("running_mean", "running_var")}


def forward_parts(module: nn.Module, params: dict, buffers: dict, x: torch.Tensor, parts: int,
                  momenta: dict[str, float]) -> torch.Tensor:
    """`module`'s logits for x, each of its `parts` normalised by its own BN statistics, in one forward."""
    copies = {name: torch.stack([b] * parts) for name, b in buffers.items()}

    def one_part(part_buffers, part):
        return functional_call(module, (params, part_buffers), (part,))

    logits = vmap(one_part)(copies, x.unflatten(0, (parts, -1)))
    with torch.no_grad():
        for name, b in buffers.items():
            if name in momenta:
                keep = 1 - momenta[name]
                folded = keep ** parts * b
                for i in range(parts):
                    folded = folded + keep ** (parts - 1 - i) * (copies[name][i] - keep * b)
                b.copy_(folded)
            elif name.endswith("num_batches_tracked"):
                b.add_(parts)
    return logits.flatten(0, 1)


def split_loss(module: nn.Module, x: torch.Tensor, y: torch.Tensor, bn_splits: int, one_forward: bool,
               momenta: dict[str, float], params: dict | None = None, buffers: dict | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, number wrong) of `module` on a batch whose BN statistics are taken per 1/bn_splits
    of it: one forward per part, or all parts in one vmapped forward (`one_forward`). `params` and
    `buffers` stand in for the module's own (fused runs: one run's slice of the stacked tensors)."""
    def call(part: torch.Tensor) -> torch.Tensor:
        return module(part) if params is None else functional_call(module, (params, buffers), (part,))

    if bn_splits > 1 and one_forward:
        own = params is None
        logits = forward_parts(module, dict(module.named_parameters()) if own else params,
                               dict(module.named_buffers()) if own else buffers, x, bn_splits, momenta)
    else:
        logits = torch.cat([call(part) for part in x.chunk(bn_splits)]) if bn_splits > 1 else call(x)
    return F.cross_entropy(logits.float(), y), (logits.argmax(1) != y).sum()
