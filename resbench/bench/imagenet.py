"""`resbench bench imagenet`: ImageNet training img/s on one device, and the paper's 600k iterations projected.

Decoding alone (PIL in worker processes, and on the device where torchvision can), each model alone on a
batch already on the device, and the first model end to end, at a training crop that tests may shrink
(the recipe's scales shrink with it). Without an ImageNet folder the JPEGs are generated (sides 300-500
px, like ImageNet's) into a temporary folder; the data is named "synthetic" in the results' env.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from resbench.host.vision import has_image_ops  # before torchvision: see resbench/host/vision.py
import torch

from resbench.bench.setup import Setup, timed_rate
from resbench.data.imagenet import ImageFolderData, decode_place, find_imagenet, make_synthetic
from resbench.data.imagenet_views import FolderLoader
from resbench.models import build_model
from resbench.paper.recipes import ImageNetRecipe
from resbench.train.engine import Engine, make_optimizer
from resbench.train.steps import make_train_step


@dataclass(frozen=True)
class ImageNetBench:
    """What `bench imagenet` measures; the device and the ImageNet folder are its `Setup`."""
    models: tuple[str, ...] = ("resnet50", "plain34", "resnet34", "resnet101", "resnet152")  # first: end to end
    iterations: int = 30  # timed iterations per measurement
    warmup: int = 10  # untimed iterations first
    batch_size: int = 256  # the paper's global batch
    workers: int | None = None  # decoding processes (None: every core)
    decode: str = "auto"  # end to end: device (nvJPEG on the GPU), workers (PIL); auto: device on CUDA
    images: int = 2000  # generated images, where no ImageNet folder is given
    crop: int = 224  # training crop (smaller only for tests)

    def recipe(self) -> ImageNetRecipe:
        """The paper's recipe at this crop: the scale range and the test size shrink with a crop under 224."""
        crop = self.crop
        return ImageNetRecipe(crop=crop, scale_min=max(crop, min(256, 2 * crop)),
                              scale_max=max(crop, min(480, 4 * crop)), test_size=max(crop, 256 * crop // 224),
                              bn_group=min(32, self.batch_size)).validate()


def imagenet_bench(options: ImageNetBench, setup: Setup,
                   say: Callable[[str], None] = lambda line: None) -> tuple[Engine, ImageFolderData, dict]:
    """(engine, data, `imagenet_throughput`'s result); raises ValueError or DataError with a one-line message,
    before any JPEG is generated where the options or the device are wrong."""
    engine = setup.engine()
    decode = decode_place(options.decode, engine.device)
    recipe = options.recipe()
    workers = len(os.sched_getaffinity(0)) if options.workers is None else options.workers
    with tempfile.TemporaryDirectory(prefix="resbench-imagenet-") as tmp:
        if setup.data_root is None:
            say(f"generating {options.images} JPEGs (sides 300-500 px) in {tmp} ...")
            make_synthetic(Path(tmp), classes=10, per_class=max(1, options.images // 10), val_per_class=1,
                           sides=(300, 500))
        data = find_imagenet(setup.data_root or tmp)
        result = imagenet_throughput(list(options.models), data, engine, options.iterations, options.warmup,
                                     options.batch_size, workers, recipe, decode)
    return engine, data, result


def imagenet_throughput(model_names: list[str], data: ImageFolderData, engine: Engine, iterations: int, warmup: int,
                        batch_size: int = 256, workers: int = 8, recipe: ImageNetRecipe | None = None,
                        decode: str = "workers") -> dict:
    """ImageNet training img/s on one device: data pipeline alone, model alone, and end to end.

    pipeline: decode + augment, no model, both ways (`decode_place`): "workers" (PIL in
    `workers` DataLoader processes) and "device" (the workers read bytes, the device decodes).
    model: training steps on a batch already on the device, for each model. end to end:
    ResNet-50 (the first model) fed by the `decode` pipeline, as `resbench run` trains it.
    """
    recipe = recipe or ImageNetRecipe()

    def loader(decode: str) -> FolderLoader:
        return FolderLoader(data, recipe.views(), batch_size, seed=0, workers=workers,
                            decode_on=engine.device if decode == "device" else None)

    def fed():
        for x, y in loader(decode).batches(0):
            yield (x.to(engine.device, non_blocking=True).contiguous(memory_format=torch.channels_last),
                   y.to(engine.device, non_blocking=True), recipe.lr)

    def resident():
        x = torch.randn(batch_size, 3, recipe.crop, recipe.crop, device=engine.device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 1000, (batch_size,), device=engine.device)
        while True:
            yield x, y, recipe.lr

    def steps(name: str, feed) -> float:
        model = build_model(name).to(engine.device, memory_format=torch.channels_last)
        optimizer = make_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay, engine.device)
        step = make_train_step(model, optimizer, batch_size // recipe.bn_group, engine)
        return timed_rate(step, feed(), warmup, iterations, batch_size, engine.device)

    def no_step(x, y, lr):
        pass

    pipeline = {decode: timed_rate(no_step, ((x, y, 0) for x, y in loader(decode).batches(0)), warmup, iterations,
                               batch_size, engine.device)
                if decode == "workers" or has_image_ops() else None  # torchvision.io needs a CUDA build of torch
                for decode in ("workers", "device")}
    model_only = {name: steps(name, resident) for name in model_names}
    end_to_end = steps(model_names[0], fed)
    return {"pipeline_img_per_s": pipeline, "model_img_per_s": model_only,
            "end_to_end": {"model": model_names[0], "img_per_s": end_to_end, "decode": decode},
            "workers": workers, "batch_size": batch_size, "crop": recipe.crop, "device": engine.device,
            "projected_hours": {name: projected_hours(min(rate, pipeline[decode]), recipe.iterations,
                                                      batch_size)
                                for name, rate in model_only.items()}}


def projected_hours(img_per_s: float, iterations: int, batch_size: int) -> dict:
    """Wall time of `iterations` steps at `img_per_s` per GPU, on 1 GPU and on 8 (linear scaling
    assumed: each GPU with its own share of the cores decoding, as on a DGX node)."""
    hours = iterations * batch_size / img_per_s / 3600
    return {"1 GPU": round(hours, 1), "8 GPUs": round(hours / 8, 1)}
