"""Fetching the original CIFAR-10 (the python version's batches) for a machine that has none.

torchvision's downloader does the work (progress bar, md5 check, unpacking) in a staging folder
beside the destination; only a complete, verified `cifar-10-batches-py/` is renamed into place, so
an interrupted or corrupt download never leaves a folder that looks like data. A mirror or an
offline copy of the archive replaces the URL (and its md5, if it is another file):
`$RESBENCH_CIFAR10_URL` / `$RESBENCH_CIFAR10_MD5`, or `resbench data fetch --url --md5`;
a file:// URL or a path to a copy of the archive works the same way, without a network.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from resbench.host import vision as _vision  # noqa: F401  (before torchvision: see resbench/host/vision.py)
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from resbench.data import DataError
from resbench.data.cifar import JPEG_DIR, LAYOUT_FILES, ORIGINAL_DIR, fetched_root

# the original archive as torchvision's own CIFAR10 dataset downloads and checks it
ARCHIVE, CIFAR10_URL, CIFAR10_MD5 = CIFAR10.filename, CIFAR10.url, CIFAR10.tgz_md5
ARCHIVE_MB = 163


@dataclass(frozen=True)
class Source:
    """Where the archive comes from and the md5 it must have."""

    url: str = CIFAR10_URL
    md5: str = CIFAR10_MD5

    @classmethod
    def chosen(cls, url: str | None = None, md5: str | None = None) -> Source:
        """The options given, else $RESBENCH_CIFAR10_URL / $RESBENCH_CIFAR10_MD5, else the original's."""
        return cls(url or os.environ.get("RESBENCH_CIFAR10_URL") or CIFAR10_URL,
                   md5 or os.environ.get("RESBENCH_CIFAR10_MD5") or CIFAR10_MD5)


def fetch_root(data_root: str | os.PathLike | None = None) -> Path:
    """Where a fetch puts the data: --data-root, else $RESBENCH_DATA, else ~/.cache/resbench/data:
    the places `resbench run` looks (`resbench.data.cifar.candidate_roots`). A folder that is itself a
    CIFAR-10 (the JPEG re-encoding's train.npz beside test.npz) is not a place for another: from
    $RESBENCH_DATA the fetch goes to the cache, where runs find it and prefer it; a --data-root is refused."""
    if data_root:
        root = Path(data_root).expanduser()
        if layout := _layout_of(root):
            raise DataError(f"{root} is a CIFAR-10 folder itself ({layout}); pass --data-root the folder that is "
                            f"to hold {ORIGINAL_DIR}/ (its parent, say), and give runs that folder")
        return root
    env = os.environ.get("RESBENCH_DATA")
    return Path(env).expanduser() if env and not _layout_of(Path(env).expanduser()) else fetched_root()


def _layout_of(folder: Path) -> str | None:
    """The layout whose files lie directly in `folder` (it is a dataset, not a folder of datasets), if any."""
    return next((layout for layout, names in LAYOUT_FILES.items() if any((folder / n).is_file() for n in names)),
                None)


def fetch_cifar10(root: Path, source: Source = Source()) -> Path:
    """Download, verify and unpack the original CIFAR-10 into `root`/cifar-10-batches-py (replacing
    an incomplete folder there); returns that folder. One-line DataError when it cannot."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".cifar10-fetch-", dir=root))
    except OSError as err:
        raise DataError(f"cannot write to {root} ({err.strerror or err}); pass --data-root DIR") from None
    try:
        _download(source, staging, root)
        fetched = staging / ORIGINAL_DIR
        if missing := [name for name in LAYOUT_FILES[ORIGINAL_DIR] if not (fetched / name).is_file()]:
            raise DataError(f"the archive at {source.url} holds no complete {ORIGINAL_DIR}/ "
                            f"({', '.join(missing)} missing): it is not CIFAR-10's python version")
        target = root / ORIGINAL_DIR
        if target.exists():  # incomplete (a complete one is never fetched again): set it aside, removed below
            os.replace(target, staging / "replaced")
        os.replace(fetched, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(source: Source, staging: Path, root: Path) -> None:
    try:
        if local := _local_copy(source.url):  # torchvision downloads over http(s) only; a verified archive
            shutil.copyfile(local, staging / ARCHIVE)  # already in place is unpacked without a download
            if not check_integrity(staging / ARCHIVE, source.md5):
                raise RuntimeError("md5")
        download_and_extract_archive(source.url, staging, filename=ARCHIVE, md5=source.md5, remove_finished=True)
    except RuntimeError:  # torchvision's "File not found or corrupted.": the md5 differs
        raise DataError(f"the file at {source.url} does not have md5 {source.md5} (an interrupted download, or "
                        f"another file: for a mirror's own archive pass --md5); nothing was kept") from None
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"the archive at {source.url} cannot be unpacked ({type(err).__name__}); nothing was kept") \
            from None
    except OSError as err:  # no network, a URL that does not answer, no such file, a full disk
        reason = getattr(err, "reason", None) or err.strerror or err
        raise DataError(f"cannot fetch CIFAR-10 from {source.url} ({reason}). Without internet, put "
                        f"{ORIGINAL_DIR}/ (from {ARCHIVE}) or {JPEG_DIR}/ (train.npz, test.npz) in {root}, or "
                        f"set RESBENCH_CIFAR10_URL to a copy of {ARCHIVE} (file:///path/{ARCHIVE} works)") from None


def fetched(root: Path) -> Path | None:
    """`root`/cifar-10-batches-py if it holds every batch, else None."""
    folder = root / ORIGINAL_DIR
    return folder if all((folder / name).is_file() for name in LAYOUT_FILES[ORIGINAL_DIR]) else None


def _local_copy(url: str) -> Path | None:
    """The file a file:// URL or a plain path names; None for a URL to download."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    return None if parsed.scheme else Path(url).expanduser()
