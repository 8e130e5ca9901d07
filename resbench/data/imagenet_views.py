"""ImageNet's training augmentation, test views and loaders (the folder: `resbench.data.imagenet`).

Training augmentation (Sec. 3.4): the shorter side resized to a random length in
[256, 480], a random 224x224 crop, a random horizontal flip, the mean subtracted, and
AlexNet's PCA colour augmentation. The paper subtracts the per-pixel mean image; for
images of random size and crop no mean image lines up with the pixels, so resbench
subtracts its per-channel average (the ImageNet mean image is nearly uniform), as the
Torch and Caffe re-implementations of the paper did.

Every random choice for a sample (scale, crop, flip, colour) is drawn from a generator
seeded by (run seed, epoch, position in the epoch), in whatever worker reads it, so a
batch is a pure function of the iteration: resume is exact without loader state, and N
data-parallel processes see the same global batch as one process would.

Two places decode (`ImageFolderData.decode`, chosen by `decode_place`): "workers" decodes and augments with PIL in DataLoader
processes; "device" has the workers only read the JPEG bytes and draw the sample's random
choices, and decodes the batch on the training device (nvJPEG on a GPU), augmenting it
there in a helper thread a few batches ahead. Both apply the same choices with the same
functions, so they give the same batches up to the decoders' rounding.
"""
from __future__ import annotations

import io
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import torch
from PIL import Image
from resbench.host import vision as _vision  # noqa: F401  (before torchvision: see resbench/host/vision.py)
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from resbench.data import DataError, Views
from resbench.data.imagenet import ImageFolderData, read_image

MEAN_RGB = (0.485, 0.456, 0.406)  # ImageNet training-set channel means, pixels in [0, 1]
# AlexNet's PCA colour augmentation: eigenvalues/vectors of the RGB covariance of ImageNet
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
# torchvision 0.29 deprecates its decoders for TorchCodec's, whose PyPI wheel has no nvJPEG;
# torchvision's decode_jpeg is the GPU decoder every torch install has. Filtered once here,
# not per call: catch_warnings is not thread-safe and decoding runs in a helper thread.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def sample_generator(seed: int, epoch: int, position: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + position)


def draw_train_view(height: int, width: int, views: Views, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A sample's random choices for an image of this size: ([shorter side, top, left, flip]
    as int64, PCA colour shift (3,)). Drawn before decoding, from the size alone."""
    short = int(torch.randint(views.scale_min, views.scale_max + 1, (1,), generator=gen))
    h, w = resized_size(height, width, short)
    top = int(torch.randint(0, h - views.crop + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - views.crop + 1, (1,), generator=gen))
    flip = int(torch.rand(1, generator=gen) < 0.5)
    alpha = torch.randn(3, generator=gen) * views.pca_std
    colour = torch.tensor(PCA_EIGVEC) @ (alpha * torch.tensor(PCA_EIGVAL))
    return torch.tensor([short, top, left, flip]), colour


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) after resizing the shorter side to `short`, as torchvision's resize rounds it."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def crop_view(img: torch.Tensor, choice: list[int], crop: int) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, crop, crop): resize, crop and flip as `choice` says."""
    short, top, left, flip = choice
    img = TF.crop(TF.resize(img, short, antialias=True), top, left, crop, crop)
    return TF.horizontal_flip(img) if flip else img


def train_view(img: torch.Tensor, views: Views, gen: torch.Generator) -> torch.Tensor:
    """uint8 (3, H, W) -> float (3, crop, crop): scale, crop, flip, mean, PCA colour."""
    choice, colour = draw_train_view(*img.shape[-2:], views, gen)
    return normalize(crop_view(img, choice.tolist(), views.crop)) + colour[:, None, None]


def train_batch(images: list[torch.Tensor], choices: torch.Tensor, colours: torch.Tensor,
                views: Views) -> torch.Tensor:
    """train_view over decoded images with their drawn choices: float (B, 3, crop, crop)."""
    crops = torch.stack([crop_view(img, c, views.crop) for img, c in zip(images, choices.tolist())])
    return normalize(crops) + colours.to(crops.device)[:, :, None, None]


def normalize(img: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float in [0, 1] less the channel means."""
    return img.float().div(255) - torch.tensor(MEAN_RGB, device=img.device)[:, None, None]


def center_view(img: torch.Tensor, views: Views) -> torch.Tensor:
    return normalize(TF.center_crop(TF.resize(img, views.test_size, antialias=True), views.crop))


def ten_views(img: torch.Tensor, views: Views) -> torch.Tensor:
    """(10, 3, crop, crop): the standard 10-crop test (AlexNet's, which the paper uses): the 4
    corners and the center of the central test_size x test_size patch of the image resized to
    shorter side test_size, and their flips; not the corners of the whole rectangle."""
    square = TF.center_crop(TF.resize(img, views.test_size, antialias=True), [views.test_size] * 2)
    return torch.stack([normalize(v) for v in TF.ten_crop(square, [views.crop, views.crop])])


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


class EncodedTrainSet(TrainSet):
    """Like TrainSet, but items hold the JPEG bytes and the drawn choices, for decoding on the device."""

    def __getitem__(self, item: tuple[int, int, int]):
        epoch, position, index = item
        path, label = self.samples[index]
        encoded, (height, width) = read_jpeg_bytes(path)
        choice, colour = draw_train_view(height, width, self.views, sample_generator(self.seed, epoch, position))
        return encoded, choice, colour, label


def collate_encoded(items):
    encoded, choices, colours, labels = zip(*items)
    return list(encoded), torch.stack(choices), torch.stack(colours), torch.tensor(labels)


def read_jpeg_bytes(path: str) -> tuple[torch.Tensor, tuple[int, int]]:
    """(the file's bytes as uint8 (N,), (height, width)), reading only the header to size it.

    nvJPEG takes baseline/progressive RGB and greyscale JPEGs; the few ImageNet files that are
    CMYK JPEGs, or PNGs named .JPEG, are decoded here and re-encoded at quality 95.
    """
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and img.mode in ("RGB", "L"):
                return torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8), (img.height, img.width)
            buffer = io.BytesIO()
            img.convert("RGB").save(buffer, format="JPEG", quality=95)
            return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8), (img.height, img.width)
    except (OSError, ValueError) as err:
        raise DataError(f"{path} cannot be decoded ({str(err).splitlines()[0]}); remove or replace it") from None


def decode_on(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode JPEG bytes to uint8 (3, H, W) RGB images on `device` (nvJPEG, batched, on CUDA)."""
    try:
        return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as err:
        raise DataError(f"a JPEG in this batch cannot be decoded on {device}: {str(err).splitlines()[0]}") from None


def on_device(batches, views: Views, device: torch.device, ahead: int = 2):
    """(x, y) on `device` from EncodedTrainSet batches: decoded and augmented in a helper
    thread `ahead` batches early, on its own CUDA stream so that it overlaps training."""
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def prepare(batch):
        encoded, choices, colours, labels = batch
        with torch.cuda.stream(stream) if stream else nullcontext():
            x = train_batch(decode_on(encoded, device), choices, colours, views)
            y = labels.to(device)
            ready = torch.cuda.Event() if stream else None
            if ready:
                ready.record(stream)
        return x, y, ready

    batches = iter(batches)
    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        pending = deque(pool.submit(prepare, next(batches)) for _ in range(ahead))
        while True:
            x, y, ready = pending.popleft().result()
            pending.append(pool.submit(prepare, next(batches)))
            if ready:
                current = torch.cuda.current_stream(device)
                current.wait_event(ready)
                x.record_stream(current)  # freed memory is not reused by the helper stream too early
                y.record_stream(current)
            yield x, y


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
                 world: int = 1, workers: int = 4, decode_on: str | torch.device | None = None):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} must divide among {world} processes")
        if len(data.train) < batch_size:
            raise ValueError(f"batch size {batch_size} exceeds the {len(data.train)} training images")
        self.data, self.views, self.batch_size, self.seed = data, views, batch_size, seed
        self.rank, self.world, self.workers = rank, world, workers
        self.decode_on = torch.device(decode_on) if decode_on is not None else None  # None: in the workers
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
        """(x, y) for iterations start, start + 1, ... forever (one loader across epochs); on
        the decoding device already when it decodes."""
        if self.decode_on is None:
            yield from self._loader(TrainSet, start, pin_memory=torch.cuda.is_available())
        else:
            yield from on_device(self._loader(EncodedTrainSet, start, collate_fn=collate_encoded), self.views,
                                 self.decode_on)

    def _loader(self, dataset: type[TrainSet], start: int, **options) -> DataLoader:
        return DataLoader(dataset(self.data, self.views, self.seed), batch_size=self.local, sampler=self.items(start),
                          num_workers=self.workers, prefetch_factor=4 if self.workers else None, **options)


def test_loader(data: ImageFolderData, views: Views, mode: str, batch_size: int = 64, workers: int = 4,
                limit: int | None = None) -> DataLoader:
    samples = data.val[:limit] if limit else data.val
    return DataLoader(TestSet(samples, views, mode), batch_size=batch_size, num_workers=workers)
