"""Every network of the paper, reachable by name.

Names follow the paper and Table 1/6: `resnet20 ... resnet1202`, `plain20 ... plain110`
(any 6n+2 depth) for CIFAR-10; `resnet18 resnet34` (option A), `resnet34_B resnet34_C`,
`resnet50 resnet101 resnet152` (option B), `plain18 plain34`, `vgg16 vgg19` for ImageNet.
Suffixes: `_A/_B/_C` pick the shortcut option, `_v1.5` the torchvision stride placement.
A `cifar_` or `imagenet_` prefix resolves depths both families share (50, 152).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from resbench.models.blocks import ConvBN, he_init
from resbench.models.cifar import CifarNet, blocks_per_stage, cifar_plain, cifar_resnet
from resbench.models.imagenet import STAGES as IMAGENET_DEPTHS, ImageNetNet, imagenet_plain, imagenet_resnet, vgg

__all__ = ["ModelSpec", "build_model", "canonical_name", "parse_model_name", "resnet", "plain", "vgg", "ConvBN",
           "CifarNet", "ImageNetNet", "he_init"]

_NAME = re.compile(r"^(?:(cifar|imagenet)_)?(resnet|plain|vgg)(\d+)(?:_([ABC]))?(_v1\.5)?$")


@dataclass(frozen=True)
class ModelSpec:
    """What a model name means: family, depth, options, and the input it expects."""

    name: str
    dataset: str  # "cifar" or "imagenet"
    family: str  # "resnet", "plain" or "vgg"
    depth: int
    shortcut: str | None = None  # A/B/C for ResNets; None for plain nets and VGG
    version: str = "v1"

    @property
    def input_size(self) -> int:
        return 32 if self.dataset == "cifar" else 224

    @property
    def num_classes(self) -> int:
        return 10 if self.dataset == "cifar" else 1000


def parse_model_name(name: str) -> ModelSpec:
    """Turn a name into a ModelSpec; raises ValueError with the accepted forms."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"unknown model {name!r}; expected e.g. resnet56, plain20, resnet34_B, "
                         "resnet50_v1.5, vgg19 (see `resbench flops` for the paper's models)")
    prefix, family, depth, shortcut, v15 = m.groups()
    depth = int(depth)
    if family == "vgg":
        if depth not in (16, 19) or prefix == "cifar" or shortcut or v15:
            raise ValueError(f"unknown model {name!r}; VGG comes as vgg16 or vgg19")
        return ModelSpec(name, "imagenet", "vgg", depth)
    dataset = prefix or ("imagenet" if depth in IMAGENET_DEPTHS else "cifar")
    if dataset == "cifar":
        try:
            blocks_per_stage(depth)
        except ValueError as err:
            raise ValueError(f"{name!r}: {err}") from None
        if v15:
            raise ValueError(f"{name!r}: _v1.5 applies only to ImageNet bottleneck ResNets")
    elif depth not in IMAGENET_DEPTHS:
        raise ValueError(f"{name!r}: ImageNet depths are {sorted(IMAGENET_DEPTHS)}")
    if family == "plain":
        if shortcut or v15:
            raise ValueError(f"{name!r}: plain nets have no shortcut option or version")
        return ModelSpec(name, dataset, "plain", depth)
    if shortcut is None:  # the paper's choice: A on CIFAR and for ImageNet 18/34, B for 50+
        shortcut = "A" if dataset == "cifar" or depth < 50 else "B"
    if v15 and depth < 50:
        raise ValueError(f"{name!r}: v1.5 moves the stride inside a bottleneck; ResNet-{depth} has none")
    return ModelSpec(name, dataset, "resnet", depth, shortcut, "v1.5" if v15 else "v1")


def canonical_name(name: str) -> str:
    """The shortest name of the same network: `resnet34_A` is `resnet34` (A is its default), so
    Table 2's ResNet-34 and Table 3's ResNet-34 A are one network, trained once."""
    spec = parse_model_name(name)
    default = parse_model_name(re.sub(r"_[ABC](?=(_v1\.5)?$)", "", name))
    if spec == ModelSpec(spec.name, default.dataset, default.family, default.depth, default.shortcut, default.version):
        return default.name
    return name


def resnet(depth: int, dataset: str = "cifar", shortcut: str | None = None, version: str = "v1",
           zero_init_last_bn: bool = False) -> nn.Module:
    """A ResNet of the paper. `shortcut=None` means the paper's choice for that network."""
    if dataset == "cifar":
        return cifar_resnet(depth, shortcut or "A", zero_init_last_bn)
    if dataset == "imagenet":
        return imagenet_resnet(depth, shortcut, version, zero_init_last_bn)
    raise ValueError(f"dataset must be 'cifar' or 'imagenet', got {dataset!r}")


def plain(depth: int, dataset: str = "cifar") -> nn.Module:
    """The plain counterpart of `resnet(depth, dataset)`."""
    if dataset == "cifar":
        return cifar_plain(depth)
    if dataset == "imagenet":
        return imagenet_plain(depth)
    raise ValueError(f"dataset must be 'cifar' or 'imagenet', got {dataset!r}")


def build_model(name: str, zero_init_last_bn: bool = False) -> nn.Module:
    """Build a model from its name (see the module docstring)."""
    spec = parse_model_name(name)
    if spec.family == "vgg":
        return vgg(spec.depth)
    if spec.family == "plain":
        return plain(spec.depth, spec.dataset)
    return resnet(spec.depth, spec.dataset, spec.shortcut, spec.version, zero_init_last_bn)
