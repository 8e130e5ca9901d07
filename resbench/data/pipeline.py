"""CIFAR-10 input pipeline that lives on the training device.

The whole uint8 data set sits in device memory; each batch is gathered, mean-subtracted
and augmented there (the paper's recipe, Sec. 4.2): per-pixel mean subtraction with the
training set's mean image, 4-pixel zero padding on each side, a random 32x32 crop,
and a random horizontal flip. Pixels are scaled to [0, 1] before the mean is subtracted,
and padding happens after it, so padded pixels hold the mean image's colour (a zero of
the network's input), as in the Caffe and Torch implementations of the time.

Everything random about an epoch (order, crop offsets, flips) is drawn at its start from
a generator seeded by (seed, epoch). A batch is therefore a pure function of the
iteration number, which is what makes resume exact without saving loader state.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

PAD = 4  # pixels of zero padding on each side (Sec. 4.2)
SIZE = 32


@dataclass(frozen=True)
class EpochPlan:
    order: torch.Tensor  # permutation of the training set
    dx: torch.Tensor  # crop offsets in [0, 2*PAD], per sample in `order`
    dy: torch.Tensor
    flip: torch.Tensor  # bool, per sample in `order`


def epoch_plan(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> EpochPlan:
    """The shuffling and augmentation of one epoch; drawn on the CPU so every device agrees."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    dx, dy = torch.randint(0, 2 * PAD + 1, (2, n), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    return EpochPlan(*(t.to(device) for t in (order, dx, dy, flip)))


def normalize(images: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, scaled to [0, 1], minus the mean image."""
    return images.float().div_(255).sub_(mean)


def augment(images: torch.Tensor, mean: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor,
            flip: torch.Tensor) -> torch.Tensor:
    """Normalise, zero-pad by PAD, crop 32x32 at (dy, dx) and flip, for a whole batch at once.

    The crop and the flip are one gather: column j of a flipped sample reads padded column
    dx + 31 - j. The result is channels_last in memory, the layout the fast path uses.
    """
    x = torch.nn.functional.pad(normalize(images, mean), (PAD, PAD, PAD, PAD))
    steps = torch.arange(SIZE, device=x.device)
    rows = dy[:, None] + steps  # (B, 32)
    cols = torch.where(flip[:, None], dx[:, None] + SIZE - 1 - steps, dx[:, None] + steps)
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    hwc = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, 32, 32, 3)
    return hwc.permute(0, 3, 1, 2)


class DeviceLoader:
    """Training batches by iteration number, from a data set resident on `device`."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device | str = "cpu"):
        if len(images) < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {len(images)} training images")
        self.images, self.labels = images.to(device), labels.to(device)
        self.mean = self.images.float().div(255).mean(0)  # the training set's mean image
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.steps_per_epoch = len(images) // batch_size  # the last partial batch is dropped
        self._plan = lru_cache(maxsize=1)(self._make_plan)

    def _make_plan(self, epoch: int) -> EpochPlan:
        return epoch_plan(len(self.images), self.seed, epoch, self.device)

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, step = divmod(iteration, self.steps_per_epoch)
        plan = self._plan(epoch)
        sl = slice(step * self.batch_size, (step + 1) * self.batch_size)
        idx = plan.order[sl]
        x = augment(self.images[idx], self.mean, plan.dx[sl], plan.dy[sl], plan.flip[sl])
        return x, self.labels[idx]

    def eval_batches(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000):
        """The single original 32x32 view, normalised with the training mean (test protocol)."""
        images, labels = images.to(self.device), labels.to(self.device)
        for i in range(0, len(images), batch_size):
            x = normalize(images[i:i + batch_size], self.mean)
            yield x.contiguous(memory_format=torch.channels_last), labels[i:i + batch_size]
