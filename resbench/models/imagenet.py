"""The ImageNet networks of Table 1, v1 (stride on the bottleneck's first 1x1) by default."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from resbench.models.blocks import SHORTCUTS, BasicBlock, Bottleneck, ConvBN, Shortcut, he_init

STAGES = {  # depth -> (block, blocks per stage conv2_x..conv5_x), Table 1
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
WIDTHS = (64, 128, 256, 512)


class ImageNetNet(nn.Module):
    """conv1 7x7/64 s2 -> max-pool s2 -> conv2_x..conv5_x -> average pool -> 1000-way FC."""

    def __init__(self, depth: int, shortcut: Shortcut, stride_on: Literal["1x1", "3x3"] = "1x1",
                 num_classes: int = 1000):
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"ImageNet depth must be one of {sorted(STAGES)}, got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut option {shortcut!r}; choose A, B, C or None (plain)")
        block, counts = STAGES[depth]
        extra = {"stride_on": stride_on} if block is Bottleneck else {}
        self.stem = ConvBN(3, 64, 7, stride=2)
        layers, in_ch = [], 64
        for stage, (width, count) in enumerate(zip(WIDTHS, counts)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1  # conv3_1, conv4_1, conv5_1
                layers.append(block(in_ch, width, stride, shortcut, **extra))
                in_ch = width * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(in_ch, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv5_x feature map, before average pooling."""
        return self.blocks(F.max_pool2d(F.relu(self.stem(x)), 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def imagenet_resnet(depth: int, shortcut: Shortcut = None, version: Literal["v1", "v1.5"] = "v1",
                    zero_init_last_bn: bool = False) -> ImageNetNet:
    """ResNet-`depth` for ImageNet. Default shortcut: A for 18/34 (Table 2), B for 50+ (Table 3)."""
    if shortcut is None:
        shortcut = "A" if depth < 50 else "B"
    if version not in ("v1", "v1.5"):
        raise ValueError(f"version must be 'v1' (the paper's) or 'v1.5' (torchvision's), got {version!r}")
    stride_on = "1x1" if version == "v1" else "3x3"
    return he_init(ImageNetNet(depth, shortcut, stride_on), zero_init_last_bn)


def imagenet_plain(depth: int) -> ImageNetNet:
    """Plain-18/34: the same stacks without shortcuts (Fig. 3 middle)."""
    return he_init(ImageNetNet(depth, shortcut=None))


def vgg(depth: Literal[16, 19]) -> nn.Module:
    """torchvision's VGG-16/19 (no BN), used only for the complexity comparison of Table 1."""
    from resbench.host import vision as _vision  # noqa: F401  (before torchvision)
    from torchvision import models  # imported here: it costs a second at every CLI start

    return {16: models.vgg16, 19: models.vgg19}[depth](weights=None)
