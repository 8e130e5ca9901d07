"""Building blocks shared by the CIFAR-10 and ImageNet networks of the paper.

Every convolution is followed by BN (Sec. 3.4); the pair is one `ConvBN` module so
that the Fig. 7 probe can find "the output of each 3x3 layer, after BN and before
ReLU or addition" without guessing from module order.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

# A: identity, zero-padded where dimensions grow (parameter-free). B: projection only
# where dimensions grow. C: projection everywhere (Table 3). None: a plain net.
Shortcut = Literal["A", "B", "C"] | None
SHORTCUTS = ("A", "B", "C", None)


class ConvBN(nn.Sequential):
    """conv (no bias) -> BN. No activation: callers add ReLU where the paper has one."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    @property
    def kernel_size(self) -> int:
        return self[0].kernel_size[0]


class ZeroPadShortcut(nn.Module):
    """Option A: subsample spatially by `stride` and zero-pad the new channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.extra, self.stride = out_ch - in_ch, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))


def make_shortcut(kind: Shortcut, in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """The shortcut branch of a block, or None for a plain block."""
    if kind is None:
        return None
    grows = stride != 1 or in_ch != out_ch
    if kind == "C" or (kind == "B" and grows):
        return ConvBN(in_ch, out_ch, kernel=1, stride=stride)
    if kind in ("A", "B"):
        return ZeroPadShortcut(in_ch, out_ch, stride) if grows else nn.Identity()
    raise ValueError(f"unknown shortcut option {kind!r}; choose one of A, B, C")


class BasicBlock(nn.Module):
    """Two 3x3 layers (Fig. 5 left). With `shortcut=None` it is the plain twin."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, shortcut: Shortcut):
        super().__init__()
        self.conv1 = ConvBN(in_ch, width, 3, stride)
        self.conv2 = ConvBN(width, width, 3)
        self.shortcut = make_shortcut(shortcut, in_ch, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)  # the second ReLU comes after the addition


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (Fig. 5 right).

    `stride_on="1x1"` is v1, as the paper's released Caffe models (and its FLOP counts);
    `"3x3"` is torchvision's v1.5 placement (~4.1 vs 3.9 GMACs for ResNet-50).
    """

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, shortcut: Shortcut,
                 stride_on: Literal["1x1", "3x3"] = "1x1"):
        super().__init__()
        if stride_on not in ("1x1", "3x3"):
            raise ValueError(f"stride_on must be '1x1' (v1) or '3x3' (v1.5), got {stride_on!r}")
        s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
        out_ch = width * self.expansion
        self.conv1 = ConvBN(in_ch, width, 1, s1)
        self.conv2 = ConvBN(width, width, 3, s3)
        self.conv3 = ConvBN(width, out_ch, 1)
        self.shortcut = make_shortcut(shortcut, in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


def he_init(model: nn.Module, zero_init_last_bn: bool = False) -> nn.Module:
    """He ("MSRA") init of every conv, as the paper [13]; BN weight 1, bias 0.

    `zero_init_last_bn` (off by default, NOT in the paper) zeroes the last BN of each
    residual branch so that every block starts as the identity (Goyal et al., 2017).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_last_bn:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)) and m.shortcut is not None:
                last = m.conv3 if isinstance(m, Bottleneck) else m.conv2
                nn.init.zeros_(last[1].weight)
    return model
