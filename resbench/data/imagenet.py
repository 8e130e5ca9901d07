"""ImageNet in the standard folder layout: reading, the paper's augmentation, test views.

    <root>/train/<wnid>/*.JPEG      <root>/val/<wnid>/*.JPEG

Training augmentation (Sec. 3.4): the shorter side resized to a random length in
[256, 480], a random 224x224 crop, a random horizontal flip, the mean subtracted, and
AlexNet's PCA colour augmentation. The paper subtracts the per-pixel mean image; for
images of random size and crop no mean image lines up with the pixels, so resbench
subtracts its per-channel average (the ImageNet mean image is nearly uniform), as the
Torch and Caffe re-implementations of the paper did.

Every random choice for a sample (scale, crop, flip, colour) is drawn from a generator
seeded by (run seed, epoch, position in the epoch), in whatever worker decodes it, so a
batch is a pure function of the iteration: resume is exact without loader state, and N
data-parallel processes see the same global batch as one process would.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from . import DataError

MEAN_RGB = (0.485, 0.456, 0.406)  # ImageNet training-set channel means, pixels in [0, 1]
# AlexNet's PCA colour augmentation: eigenvalues/vectors of the RGB covariance of ImageNet
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
SYNTHETIC_MARK = "SYNTHETIC"  # a file in generated folders: their runs are marked synthetic


@dataclass(frozen=True)
class Views:
    """Sizes of the training crop and test views (the paper's by default; smoke runs shrink them)."""

    scale_min: int = 256  # shorter side, random in [scale_min, scale_max] (Sec. 3.4)
    scale_max: int = 480
    crop: int = 224  # training and test crop (Sec. 3.4)
    test_size: int = 256  # shorter side before the center crop / 10-crop (standard 10-crop)
    pca_std: float = 0.1  # std of AlexNet's colour-augmentation coefficients


@dataclass(frozen=True)
class ImageFolderData:
    root: str
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]  # (path, label)
    val: tuple[tuple[str, int], ...]
    variant: str  # imagenet | synthetic

    @property
    def source(self) -> str:
        return self.root

    def provenance(self) -> dict:
        return {"variant": self.variant, "source": self.root, "classes": len(self.classes),
                "train": len(self.train), "test": len(self.val)}


def find_imagenet(data_root: str | os.PathLike | None) -> ImageFolderData:
    """The train/ and val/ folders under `data_root` (or $RESBENCH_IMAGENET), checked."""
    root = data_root or os.environ.get("RESBENCH_IMAGENET")
    if not root:
        raise DataError("ImageNet is needed: pass --data-root DIR (holding train/<wnid>/ and val/<wnid>/) "
                        "or set RESBENCH_IMAGENET; --synthetic makes a small generated folder for a dry run")
    root = Path(root).expanduser()
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"{root} has no {split}/ folder: expected {root}/train/<wnid>/*.JPEG and "
                            f"{root}/val/<wnid>/*.JPEG (val sorted into class folders)")
    classes, index = _classes(root / "train")
    val_classes, _ = _classes(root / "val")
    if set(val_classes) - set(classes):
        raise DataError(f"{root}/val has classes that train/ lacks, e.g. {sorted(set(val_classes) - set(classes))[0]}")
    train, val = (_images(root / split, index) for split in ("train", "val"))
    variant = "synthetic" if (root / SYNTHETIC_MARK).exists() else "imagenet"
    return ImageFolderData(str(root.resolve()), tuple(classes), tuple(train), tuple(val), variant)


def _classes(folder: Path) -> tuple[list[str], dict[str, int]]:
    try:
        return find_classes(str(folder))
    except FileNotFoundError as err:
        raise DataError(f"{folder}: {str(err).splitlines()[0]}") from None


def _images(folder: Path, index: dict[str, int]) -> list[tuple[str, int]]:
    try:
        return make_dataset(str(folder), index, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DataError(f"{folder}: {str(err).splitlines()[0]} (a class folder without images?)") from None


def make_synthetic(root: Path, classes: int = 10, per_class: int = 8, val_per_class: int = 2,
                   sides: tuple[int, int] = (80, 160), seed: int = 0) -> Path:
    """A labelled JPEG folder for dry runs, tests and benchmarks: each class a coloured bar on
    smooth noise, sides drawn from [sides[0], sides[1]) (ImageNet's average: about 400 x 350)."""
    gen = torch.Generator().manual_seed(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = (int(v) for v in torch.randint(*sides, (2,), generator=gen))
                noise = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=gen) * 120
                img = TF.resize(noise, [h, w], antialias=False)[0].to(torch.uint8)
                img[c % 3, h // 4: h // 4 + h // 2 * (1 + c // 5) // 2, (c * w) // classes: (c * w) // classes + w // 4] = 240
                (folder / f"{split}_{c}_{i}.JPEG").write_bytes(_jpeg(img))
    (root / SYNTHETIC_MARK).write_text("generated by resbench: not ImageNet\n")
    return root


def _jpeg(img: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def read_image(path: str) -> torch.Tensor:
    """uint8 (3, H, W), RGB. PIL (Pillow-SIMD where installed) in the loader's workers."""
    try:
        with Image.open(path) as img:
            return TF.pil_to_tensor(img.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path} cannot be decoded ({str(err).splitlines()[0]}); remove or replace it") from None


def sample_generator(seed: int, epoch: int, position: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + position)


def train_view(img: torch.Tensor, views: Views, gen: torch.Generator) -> torch.Tensor:
    """uint8 (3, H, W) -> float (3, crop, crop): scale, crop, flip, mean, PCA colour."""
    short = int(torch.randint(views.scale_min, views.scale_max + 1, (1,), generator=gen))
    img = TF.resize(img, short, antialias=True)
    h, w = img.shape[-2:]
    top = int(torch.randint(0, h - views.crop + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - views.crop + 1, (1,), generator=gen))
    img = TF.crop(img, top, left, views.crop, views.crop)
    if torch.rand(1, generator=gen) < 0.5:
        img = TF.horizontal_flip(img)
    alpha = torch.randn(3, generator=gen) * views.pca_std
    colour = torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))
    return normalize(img) + colour[:, None, None]


def normalize(img: torch.Tensor) -> torch.Tensor:
    return img.float().div(255) - torch.tensor(MEAN_RGB, device=img.device)[:, None, None]


def center_view(img: torch.Tensor, views: Views) -> torch.Tensor:
    return normalize(TF.center_crop(TF.resize(img, views.test_size, antialias=True), views.crop))


def ten_views(img: torch.Tensor, views: Views) -> torch.Tensor:
    """(10, 3, crop, crop): the 4 corners and the center of the resized image, and their flips."""
    return torch.stack([normalize(v) for v in TF.ten_crop(TF.resize(img, views.test_size, antialias=True),
                                                           [views.crop, views.crop])])


class TrainSet(Dataset):
    """Items are (epoch, position in epoch, index): a sample's randomness comes from where it is."""

    def __init__(self, data: ImageFolderData, views: Views, seed: int):
        self.samples, self.views, self.seed = data.train, views, seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int, int]):
        epoch, position, index = item
        path, label = self.samples[index]
        return train_view(read_image(path), self.views, sample_generator(self.seed, epoch, position)), label


class TestSet(Dataset):
    def __init__(self, samples, views: Views, mode: str = "center"):
        self.samples, self.views = samples, views
        self.view = {"center": center_view, "10crop": ten_views}[mode]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.view(read_image(path), self.views), label


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


class FolderLoader:
    """Training batches by iteration, for process `rank` of `world` (global batch = batch_size).

    Epoch e's order is one permutation of the training set; iteration i takes the i-th
    global batch of it, and rank r the r-th slice of that batch.
    """

    def __init__(self, data: ImageFolderData, views: Views, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, workers: int = 4):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} must divide among {world} processes")
        if len(data.train) < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {len(data.train)} training images")
        self.data, self.views, self.batch_size, self.seed = data, views, batch_size, seed
        self.rank, self.world, self.workers = rank, world, workers
        self.local = batch_size // world
        self.steps_per_epoch = len(data.train) // batch_size

    def items(self, start: int):
        """(epoch, position, index) of this process's samples from iteration `start` on, forever."""
        epoch, step = divmod(start, self.steps_per_epoch)
        while True:
            order = epoch_order(len(self.data.train), self.seed, epoch)
            for s in range(step, self.steps_per_epoch):
                first = s * self.batch_size + self.rank * self.local
                for p in range(first, first + self.local):
                    yield epoch, p, int(order[p])
            epoch, step = epoch + 1, 0

    def batches(self, start: int):
        """(x, y) for iterations start, start + 1, ... forever (one loader across epochs)."""
        loader = DataLoader(TrainSet(self.data, self.views, self.seed), batch_size=self.local,
                            sampler=self.items(start), num_workers=self.workers,
                            pin_memory=torch.cuda.is_available(), prefetch_factor=4 if self.workers else None)
        yield from loader


def test_loader(data: ImageFolderData, views: Views, mode: str, batch_size: int = 64, workers: int = 4,
                limit: int | None = None) -> DataLoader:
    samples = data.val[:limit] if limit else data.val
    return DataLoader(TestSet(samples, views, mode), batch_size=batch_size, num_workers=workers)
