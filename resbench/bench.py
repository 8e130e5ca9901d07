"""`resbench bench cifar`: the plain training loop vs resbench's, side by side on one device.

plain: torchvision's CIFAR recipe as most tutorials write it: a Dataset of PIL images,
RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize in DataLoader
workers, fp32, eager, channels-first, the default (foreach) SGD.
fast: resbench's training step: data resident on the device, batched augmentation,
bf16 autocast, channels_last, torch.compile, fused SGD (whatever `Engine` resolves to).
Both train the same model with the same recipe and batch size; only the loop differs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .data.cifar import CifarData
from .data.pipeline import DeviceLoader
from .models import build_model
from .train.engine import Engine, make_optimizer, make_train_step, sync
from .train.recipe import CifarRecipe


@dataclass(frozen=True)
class BenchResult:
    model: str
    loop: str  # plain | fast
    img_per_s: float
    iterations: int
    device: str
    detail: str


class PilCifar(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms as T

        self.images, self.labels = images.permute(0, 2, 3, 1).numpy(), labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                    T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _timed(step, batches, warmup: int, iterations: int, batch_size: int, device: str) -> float:
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step(*next(batches))
    sync(device)
    return iterations * batch_size / (time.perf_counter() - start)


def plain_loop(model_name: str, data: CifarData, device: str, iterations: int, warmup: int,
               workers: int, recipe: CifarRecipe = CifarRecipe()) -> BenchResult:
    model = build_model(model_name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    loader = DataLoader(PilCifar(data.train_x, data.train_y), batch_size=recipe.batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, pin_memory=device.startswith("cuda"),
                        persistent_workers=workers > 0)

    def batches():
        while True:
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    rate = _timed(step, batches(), warmup, iterations, recipe.batch_size, device)
    return BenchResult(model_name, "plain", rate, iterations, device, f"fp32 eager, DataLoader({workers} workers)")


def fast_loop(model_name: str, data: CifarData, engine: Engine, iterations: int, warmup: int,
              recipe: CifarRecipe = CifarRecipe()) -> BenchResult:
    engine = engine.resolve()
    engine.apply_global_settings()
    device = engine.device
    model = build_model(model_name).to(device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, device)
    step = make_train_step(model, optimizer, recipe.bn_splits, engine)
    loader = DeviceLoader(data.train_x, data.train_y, recipe.batch_size, seed=0, device=device)

    def batches():
        it = 0
        while True:
            x, y = loader.batch(it)
            it += 1
            yield x, y, recipe.lr

    rate = _timed(step, batches(), warmup, iterations, recipe.batch_size, device)
    detail = f"{engine.precision}, {'compile ' + engine.compile_mode if engine.compile else 'eager'}, " \
             f"bn_splits {recipe.bn_splits}"
    return BenchResult(model_name, "fast", rate, iterations, device, detail)
