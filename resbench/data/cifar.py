"""CIFAR-10 readers: the original `cifar-10-batches-py`, or the packed JPEG-q75 archives.

Finding the data (`cifar10_files`) only hashes its files: that is all a run's name needs,
so a sweep whose runs are finished decodes nothing. Training decodes everything once into
uint8 tensors (N, 3, 32, 32) (`CifarFiles.load`), which the training pipeline
(`resbench.data.pipeline`) keeps resident on the device. The JPEG archives' decoded pixels
are cached on disk by the archive's sha256 (`decoded_cache_dir`), so worker processes and
later commands read them instead of decoding 60,000 JPEGs again.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from resbench.data import DataError
from resbench.host.files import atomic_file
from resbench.host.machine import cache_dir

JPEG_DIR = "cifar10-jpeg"
ORIGINAL_DIR = "cifar-10-batches-py"
VARIANTS = {ORIGINAL_DIR: "cifar10-original", JPEG_DIR: "cifar10-jpeg-q75"}
# each layout's files, the original first: it is preferred wherever both are found
LAYOUT_FILES = {ORIGINAL_DIR: ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                               "test_batch"),
                JPEG_DIR: ("train.npz", "test.npz")}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class CifarData:
    train_x: torch.Tensor  # uint8 (N, 3, 32, 32)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor  # the 10k test set, or the 5k validation split
    test_y: torch.Tensor
    variant: str  # cifar10-original | cifar10-jpeg-q75 (| synthetic in tests)
    source: str  # the folder it was read from
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    split: str = "train/test"  # or "45k/5k" (validation split, for choosing schedules)

    def provenance(self) -> dict:
        return {"variant": self.variant, "source": self.source, "sha256": self.sha256,
                "split": self.split, "train": len(self.train_y), "test": len(self.test_y)}


@dataclass(frozen=True)
class CifarFiles:
    """CIFAR-10 found and hashed, not decoded yet: what names a run (variant, sha256, split)."""

    layout: str  # ORIGINAL_DIR or JPEG_DIR
    folder: Path
    sha256: dict[str, str]  # file name -> sha256
    val_split: bool = False  # the paper's 45k/5k split instead of train/test
    split_seed: int = 0
    _loaded: list = field(default_factory=list, compare=False, repr=False)  # load()'s result, once

    @property
    def variant(self) -> str:
        return VARIANTS[self.layout]

    @property
    def source(self) -> str:
        return str(self.folder.resolve())

    @property
    def split(self) -> str:
        return self.load().split if self.val_split else "train/test"

    def provenance(self) -> dict:
        return self.load().provenance()

    def load(self) -> CifarData:
        """The decoded images (once per process; see the module docstring for the disk cache)."""
        if not self._loaded:
            reader = _read_original if self.layout == ORIGINAL_DIR else _read_jpeg_npz
            (train_x, train_y), (test_x, test_y) = reader(self.folder, self.sha256)
            data = CifarData(train_x, train_y, test_x, test_y, self.variant, self.source, self.sha256)
            self._loaded.append(validation_split(data, self.split_seed) if self.val_split else data)
        return self._loaded[0]


def candidate_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Where CIFAR-10 is looked for, in order (documented in README.md); the last is where
    `resbench data fetch` puts it (`resbench.data.download`)."""
    roots = [data_root, os.environ.get("RESBENCH_DATA"), "data", "../shared/data", fetched_root()]
    return [Path(r).expanduser() for r in roots if r]


def fetched_root() -> Path:
    """Where `resbench data fetch` puts CIFAR-10 by default: ~/.cache/resbench/data ($RESBENCH_CACHE/data)."""
    return cache_dir("data")


def find_cifar10(data_root: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(layout, folder) of CIFAR-10. A `data_root` the user named must hold it; else the roots of
    `candidate_roots` in order, the lossless original anywhere before the JPEG re-encoding anywhere
    (a run on the original is the paper's data; one on the JPEG is a proxy)."""
    roots = candidate_roots(data_root)[:1] if data_root else candidate_roots()
    for layout in LAYOUT_FILES:
        for root in roots:
            for folder in (root / layout, root):
                if _has_layout(folder, layout):
                    return layout, folder
    if data_root:
        raise DataError(f"no CIFAR-10 in {roots[0]}: expected {ORIGINAL_DIR}/ (the python version's batches) "
                        f"or {JPEG_DIR}/ (train.npz, test.npz) there")
    looked = ", ".join(str(r) for r in roots)
    raise DataError(f"CIFAR-10 not found (looked in {looked}); run `resbench data fetch`, or pass --data-root "
                    f"DIR or set RESBENCH_DATA to a folder holding {ORIGINAL_DIR}/ or {JPEG_DIR}/")


def _has_layout(folder: Path, layout: str) -> bool:
    """Whether `folder` holds every file of `layout`. Some of them only is no data: a one-line error
    (an interrupted copy or unpacking, which would otherwise fail later or train on other data)."""
    present = [name for name in LAYOUT_FILES[layout] if (folder / name).is_file()]
    if present and len(present) < len(LAYOUT_FILES[layout]):
        missing = ", ".join(n for n in LAYOUT_FILES[layout] if n not in present)
        again = ("unpack cifar-10-python.tar.gz there again, or remove the folder and run `resbench data fetch`"
                 if layout == ORIGINAL_DIR else "copy the folder again")
        raise DataError(f"{folder} holds part of CIFAR-10 only ({missing} missing): {again}")
    return bool(present)


def cifar10_files(data_root: str | os.PathLike | None = None, val_split: bool = False,
                  split_seed: int = 0) -> CifarFiles:
    """The first CIFAR-10 found (see `candidate_roots`), hashed but not decoded."""
    layout, folder = find_cifar10(data_root)
    return CifarFiles(layout, folder, {f: sha256_file(folder / f) for f in LAYOUT_FILES[layout]}, val_split,
                      split_seed)


def load_cifar10(data_root: str | os.PathLike | None = None, val_split: bool = False,
                 split_seed: int = 0) -> CifarData:
    """Read and decode CIFAR-10 from the first root that has it (see `candidate_roots`)."""
    return cifar10_files(data_root, val_split, split_seed).load()


def validation_split(data: CifarData, seed: int = 0, n_val: int = 5000) -> CifarData:
    """The paper's 45k/5k split: random, seeded, stratified by class (the JPEG set is sorted)."""
    train_idx, val_idx = stratified_split(data.train_y, n_val, seed)
    return CifarData(data.train_x[train_idx], data.train_y[train_idx], data.train_x[val_idx],
                     data.train_y[val_idx], data.variant, data.source, data.sha256,
                     split=f"{len(train_idx) // 1000}k/{n_val // 1000}k seed {seed}")


def stratified_split(labels: torch.Tensor, n_val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    per_class = n_val // len(classes)
    val = []
    for c in classes:
        idx = (labels == c).nonzero().flatten()
        val.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    val_idx = torch.cat(val).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[val_idx] = False
    return mask.nonzero().flatten(), val_idx


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decoded_cache_dir() -> Path:
    """$RESBENCH_CACHE, else ~/.cache/resbench (or $XDG_CACHE_HOME/resbench), then decoded/."""
    return cache_dir("decoded")


def _read_jpeg_npz(folder: Path, sha256: dict[str, str]) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    return tuple(_cached(decoded_cache_dir() / f"{sha256[name]}.npz", lambda name=name: _decode_npz(folder / name))
                 for name in ("train.npz", "test.npz"))


def _cached(path: Path, decode: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded images and labels kept at `path`, else `decode()` and keep them there.

    The name is the archive's sha256, so a changed archive never meets stale pixels. The
    cache only saves time: a folder that cannot be written costs the decoding, no more.
    """
    try:
        with np.load(path) as z:
            return torch.from_numpy(z["images"]), torch.from_numpy(z["labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        pass
    images, labels = decode()
    try:
        with atomic_file(path) as f:  # a concurrent reader sees the whole file or none
            np.savez(f, images=images.numpy(), labels=labels.numpy())
    except OSError:
        pass
    return images, labels


def _decode_jpeg(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"))


def _decode_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image once with PIL (about 5 s for 50k images on one core)."""
    try:
        with np.load(path) as z:
            jpeg, offsets, labels = z["jpeg"], z["offsets"], z["labels"]
        if len(offsets) != len(labels) + 1 or offsets[-1] != len(jpeg):
            raise ValueError("offsets do not match the JPEG bytes")
        blobs = [jpeg[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
        images = [_decode_jpeg(blob) for blob in blobs]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'no detail'}); copy it again") from None
    if any(img.shape != (32, 32, 3) for img in images):
        raise DataError(f"{path}: every image must decode to 32x32 RGB; copy the file again")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.astype(np.int64))


def _read_original(folder: Path, sha256: dict[str, str] | None = None) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    train = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(folder / "test_batch")
    train_x = torch.cat([x for x, _ in train])
    train_y = torch.cat([y for _, y in train])
    return (train_x, train_y), test


def _unpickle(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as err:
        raise DataError(f"{path} is corrupt or truncated ({type(err).__name__}); "
                        f"unpack cifar-10-python.tar.gz again") from None
    return torch.from_numpy(x.copy()), torch.from_numpy(y)


def write_jpeg_npz(path: Path, images: torch.Tensor, labels: torch.Tensor, quality: int = 75) -> None:
    """Pack uint8 images (N, 3, H, W) in the shared JPEG format (used by tests and tools)."""
    blobs = []
    for img in images:
        buffer = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=offsets,
             labels=labels.numpy().astype(np.uint8), classes=np.array(CLASSES))
