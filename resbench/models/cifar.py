"""The CIFAR-10 networks of Sec. 4.2: 6n+2 weighted layers, 16/32/64 filters."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resbench.models.blocks import SHORTCUTS, BasicBlock, ConvBN, Shortcut, he_init

WIDTHS = (16, 32, 64)  # filters on the 32x32, 16x16 and 8x8 maps


def blocks_per_stage(depth: int) -> int:
    """n of the paper's 6n+2; raises for any other depth."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR-10 depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, 1202 ...), got {depth}")
    return (depth - 2) // 6


class CifarNet(nn.Module):
    """3x3 conv (16) -> 3 stages of n blocks -> global average pool -> 10-way FC."""

    def __init__(self, depth: int, shortcut: Shortcut = "A", num_classes: int = 10):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; choose A, B, C or None (plain)")
        n = blocks_per_stage(depth)
        self.depth, self.shortcut = depth, shortcut
        self.stem = ConvBN(3, WIDTHS[0], 3)
        layers, in_ch = [], WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1  # subsampling by stride-2 conv
                layers.append(BasicBlock(in_ch, width, stride, shortcut))
                in_ch = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(x.mean((2, 3)))  # global average pool (a plain mean: vmap has a rule for it)


def cifar_resnet(depth: int, shortcut: Shortcut = "A", zero_init_last_bn: bool = False) -> CifarNet:
    """ResNet-`depth` for CIFAR-10. Option A (the paper's) by default."""
    return he_init(CifarNet(depth, shortcut), zero_init_last_bn)


def cifar_plain(depth: int) -> CifarNet:
    """The plain twin: same layers and parameters, no shortcuts."""
    return he_init(CifarNet(depth, shortcut=None))
