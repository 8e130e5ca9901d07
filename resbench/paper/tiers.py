"""How a run departs from the paper's protocol, and the tier that puts it in.

A run is `exact` when its data, its BN statistics and its recipe are the paper's; its
arithmetic is named beside the tier (`exact (fp32)`, `exact (bf16+TF32)`) until a
precision control shows whether bf16 moves the result. Otherwise it is a `proxy`, and the
tier lists every departure: `proxy: JPEG q75 data (bf16+TF32)`. Reports compare only exact
runs with the paper's numbers, and never average runs of different tiers.

Everything here is read from a run's config.json, so old runs get a tier too.
"""
from __future__ import annotations

from resbench.paper.recipes import CifarRecipe, ImageNetRecipe

PAPER_DATA = {"cifar10-original", "imagenet"}
IMAGENET_TESTS = ("center", "10crop", "multiscale")  # every finished ImageNet run is tested with each (Sec. 3.4)
DATA_NAMES = {"cifar10-jpeg-q75": "JPEG q75 data", "synthetic": "synthetic data"}
PAPER_BN_IMAGES = {"cifar": CifarRecipe().batch_size // CifarRecipe().bn_splits,  # 2 GPUs x 64 (Sec. 4.2)
                   "imagenet": ImageNetRecipe().bn_group}  # 8 GPUs x 32 (Sec. 3.4)


def arithmetic(config: dict) -> str:
    """fp32, bf16 or bf16+TF32: how the run's convolutions computed."""
    precision = config.get("precision", "fp32")
    return precision + ("+TF32" if config.get("tf32") else "")


def departures(config: dict) -> list[str]:
    """Every way the run's data, BN statistics and recipe differ from the paper's."""
    out = []
    variant = config["data"]["variant"]
    if variant not in PAPER_DATA:
        out.append(DATA_NAMES.get(variant, f"{variant} data"))
    if config["data"].get("split", "train/test") not in ("train/test", "train/val"):
        out.append(f"{config['data']['split']} validation split")
    recipe = config["recipe"]
    dataset = "imagenet" if "bn_group" in recipe else "cifar"
    bn_images = recipe["bn_group"] if dataset == "imagenet" else recipe["batch_size"] // recipe["bn_splits"]
    if bn_images != PAPER_BN_IMAGES[dataset]:
        out.append(f"BN statistics over {bn_images} images (paper: {PAPER_BN_IMAGES[dataset]})")
    preset, budget = config.get("preset", "paper"), config.get("budget", "1")
    if preset != "paper" or budget != "1":  # a shorter schedule: "schedule 1/32 (2,000 iterations)"
        name = "schedule" if preset == "paper" else f"{preset} preset"
        out.append(name + ("" if budget == "1" else f" {budget}") + f" ({recipe['iterations']:,} iterations)")
    out += [f"--set {key}={value}" for key, value in sorted(config.get("overrides", {}).items())]
    return out


def tier(config: dict) -> str:
    """`exact (ARITHMETIC)` or `proxy: DEPARTURES (ARITHMETIC)`."""
    gone = departures(config)
    return ("exact" if not gone else "proxy: " + ", ".join(gone)) + f" ({arithmetic(config)})"


def is_exact(tier_name: str) -> bool:
    return tier_name.startswith("exact")
