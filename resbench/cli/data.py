"""`resbench data`: which CIFAR-10 runs train on, and `resbench data fetch` for a machine that has none."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from resbench.cli.common import console, fail

data_app = typer.Typer(help="CIFAR-10 on this machine: which one runs find, and fetching the original.",
                       invoke_without_command=True)
# what each layout is, for a reader deciding whether to fetch the original
KINDS = {"cifar-10-batches-py": "the original (lossless): runs on it are the paper's data",
         "cifar10-jpeg": "a JPEG q75 re-encoding (lossy): runs on it are a proxy of the paper's, never judged "
                         "against its numbers"}


@data_app.callback()
def show(ctx: typer.Context,
         data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10 (as `resbench run` takes it)")
         ) -> None:
    """Which CIFAR-10 `resbench run` trains on, and its kind; what to do if there is none."""
    if ctx.invoked_subcommand is None:
        _describe(data_root)


@data_app.command("fetch")
def fetch(
    if_missing: bool = typer.Option(False, "--if-missing", help="do nothing when a CIFAR-10 is found already "
                                    "(original or JPEG)"),
    url: Optional[str] = typer.Option(None, help="the archive's URL: a mirror, or file:///path/cifar-10-python.tar.gz "
                                      "(default: $RESBENCH_CIFAR10_URL, else the original's)"),
    md5: Optional[str] = typer.Option(None, help="the archive's md5 (default: $RESBENCH_CIFAR10_MD5, else the "
                                      "original's)"),
    data_root: Optional[Path] = typer.Option(None, help="where to put it (default: $RESBENCH_DATA, else "
                                             "~/.cache/resbench/data, where `resbench run` looks)"),
) -> None:
    """Download the original CIFAR-10 (163 MB, md5 checked) where `resbench run` finds it."""
    from resbench.data import DataError
    from resbench.data.cifar import find_cifar10
    from resbench.data.download import ARCHIVE_MB, Source, fetch_cifar10, fetch_root, fetched

    try:
        if if_missing:
            _, folder = find_cifar10(data_root)
            console.print(f"CIFAR-10 found in {folder.resolve()}: nothing fetched", highlight=False, soft_wrap=True)
            return
    except DataError:
        pass  # none, or only part of one: fetch
    try:
        root = fetch_root(data_root)
        if folder := fetched(root):
            console.print(f"the original CIFAR-10 is in {folder} already: nothing fetched", highlight=False,
                          soft_wrap=True)
        else:
            source = Source.chosen(url, md5)
            console.print(f"fetching the original CIFAR-10 ({ARCHIVE_MB} MB) from {source.url} into {root}",
                          highlight=False, soft_wrap=True)
            fetch_cifar10(root, source)
    except DataError as err:
        fail(str(err))
    _describe(data_root)


def _describe(data_root: Optional[Path]) -> None:
    from resbench.data import DataError
    from resbench.data.cifar import ORIGINAL_DIR, find_cifar10
    from resbench.data.download import ARCHIVE_MB, fetch_root

    try:
        layout, folder = find_cifar10(data_root)
    except DataError as err:
        fail(str(err), code=1)
    console.print(f"CIFAR-10: {folder.resolve()}, {KINDS[layout]}", highlight=False, soft_wrap=True)
    if layout != ORIGINAL_DIR:
        try:
            where = f"into {fetch_root(data_root)}; runs then prefer it"
        except DataError:  # --data-root names the JPEG folder itself
            where = "into the folder given as --data-root DIR (not this one: it is the JPEG re-encoding itself)"
        console.print(f"`resbench data fetch` downloads the original ({ARCHIVE_MB} MB) {where}",
                      highlight=False, soft_wrap=True)
