"""Portable runs: run directories moved between machines as one archive (`resbench runs export`; the
import is `resbench.runs.unarchive`).

An archive is a tar.gz whose first entry is a manifest, `resbench-archive.json`: each run's name, key and
state, the iteration of the checkpoint it carries (if any), and every file's sha256. Then the files, as
`<run>/<path in the run>`. A finished run travels without checkpoints (its result is its small files);
an unfinished one (paused, stopped, failed) takes its newest readable checkpoint only when asked, so that
it resumes where it was on the machine it goes to. A run is read under its lock, so no process trains it
meanwhile (a run that changes between the listing and the writing of its files fails the export), and
only if its name carries the key this code computes from its config (`rundir.config_key`):
the name `resbench run` looks for, here and on the machine it goes to.
"""
from __future__ import annotations

import contextlib
import datetime
import fnmatch
import hashlib
import io
import json
import platform
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from resbench import __version__
from resbench.host.files import atomic_file
from resbench.runs.checkpoint import LATEST, PREVIOUS
from resbench.runs.rundir import CALIBRATION_FOLDER, RunDirError, config_key, read_config, read_status, run_dirs
from resbench.runs.store import FINISHED, LOCK, claim

MANIFEST = "resbench-archive.json"
FORMAT = "resbench-archive/1"
CHECKPOINTS = (LATEST, PREVIOUS)
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*-(?P<key>[0-9a-f]{10})-s(?P<seed>\d+)")


class ArchiveError(ValueError):
    """An archive that cannot be written or read as it is: the message says which and why, in one line."""


@dataclass(frozen=True)
class Moved:
    """What export or import did with one run: `action` (exported, left out, added, replaced, kept, same)."""
    name: str
    state: str
    action: str
    detail: str = ""
    files: dict[str, str] = field(default_factory=dict, compare=False)  # path in the run -> sha256
    checkpoint_iteration: int | None = None


def choose_runs(root: Path, names: list[str] | None = None, models: set[str] | None = None) -> list[Path]:
    """The run directories of `root`, and its calibration runs (`resbench calibrate`, in `<root>/calibration`),
    whose names match one of `names` (shell patterns, e.g. 'resnet20-*'; every run without) and whose model is
    in `models` (any without; calibration runs have none). A name that matches nothing is an error."""
    if not Path(root).is_dir():
        raise ArchiveError(f"{root} is not a folder of runs")
    found = run_dirs(root) + run_dirs(Path(root) / CALIBRATION_FOLDER)
    if names:
        for name in names:
            if not any(fnmatch.fnmatchcase(d.name, name) for d in found):
                raise ArchiveError(f"no run named {name!r} in {root}")
        found = [d for d in found if any(fnmatch.fnmatchcase(d.name, name) for name in names)]
    if models is not None:
        found = [d for d in found if read_config(d).get("model") in models]
    if not found:
        raise ArchiveError(f"no runs to export in {root}" + (" for those models" if models is not None else ""))
    return found


def checkpoint_iteration(run_dir: Path) -> tuple[str, int] | None:
    """The newest readable checkpoint's file name and iteration, or None. Read as tensors and numbers only
    (`weights_only`): an archive's checkpoint is compared before anything in it is trusted."""
    for name in CHECKPOINTS:
        path = run_dir / name
        if path.exists():
            try:
                return name, int(torch.load(path, map_location="cpu", weights_only=True)["state"]["iteration"])
            except Exception:  # noqa: BLE001  (truncated zip, bad pickle: any unreadable file; try the older)
                continue
    return None


def _files(run_dir: Path) -> list[str]:
    """A run's files as paths inside it, without checkpoints, its lock and hidden temp files."""
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name not in (*CHECKPOINTS, LOCK)
                  and not any(part.startswith(".") for part in p.relative_to(run_dir).parts))


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def held(run_dir: Path) -> Iterator[bool]:
    """The run's lock while it is read or replaced: False while a process trains it. A run without a lock
    file was never trained in this folder (a trainer makes one before it starts), and none is made for
    it: a committed or copied folder of runs is left as it was. A read-only one has no trainer to fear."""
    with contextlib.ExitStack() as stack:
        try:
            mine = stack.enter_context(claim(run_dir)) if (run_dir / LOCK).exists() else True
        except PermissionError:
            mine = True
        yield mine


def export_runs(chosen: list[Path], archive: Path, with_checkpoints: bool = False) -> list[Moved]:
    """Write the runs `chosen` to the tar.gz `archive` (replaced whole, or left as it was on failure);
    returns what happened to each run. A run being trained now is left out."""
    moved = [_inventory(d, with_checkpoints) for d in chosen]
    shipped = [(m, d) for m, d in zip(moved, chosen) if m.action == "exported"]
    if not shipped:
        raise ArchiveError("every chosen run is being trained now; nothing exported")
    _write_archive(Path(archive), shipped)
    return moved


def _write_archive(archive: Path, shipped: list[tuple[Moved, Path]]) -> None:
    """The manifest, then each run's files, into a temp file renamed into place once whole."""
    with atomic_file(archive) as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
        manifest = _manifest([m for m, _ in shipped])
        _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        for m, run_dir in shipped:
            with held(run_dir) as mine:  # a run at a time: a folder of many runs holds one lock
                if not mine:
                    raise ArchiveError(f"{run_dir} began training during the export; export again")
                for path, digest in m.files.items():
                    _add_file(tar, run_dir / path, f"{m.name}/{path}", digest)


def _inventory(run_dir: Path, with_checkpoints: bool) -> Moved:
    """One run's entry: its files and their sha256, read under its lock (taken again while they are
    written, and each file hashed again then: a run that changed in between fails the export)."""
    name = archived_name(run_dir)
    if problem := misnamed(run_dir, name):
        raise ArchiveError(f"{run_dir}: {problem}; nothing exported")
    with held(run_dir) as mine:
        if not mine:
            return Moved(name, "running", "left out", "being trained now")
        return _entry(run_dir, name, with_checkpoints)


def _entry(run_dir: Path, name: str, with_checkpoints: bool) -> Moved:
    state = state_of(run_dir)
    paths = _files(run_dir)
    detail, at = "", None
    if state not in FINISHED and (ckpt := checkpoint_iteration(run_dir)):
        if with_checkpoints:
            paths.append(ckpt[0])
            at, detail = ckpt[1], f"checkpoint at iteration {ckpt[1]:,}"
        else:
            detail = f"without its checkpoint (iteration {ckpt[1]:,}; --with-checkpoints takes it)"
    return Moved(name, state, "exported", detail, {p: sha256_of(run_dir / p) for p in paths}, at)


def _manifest(runs: list[Moved]) -> dict:
    return {"format": FORMAT, "resbench": __version__, "host": platform.node(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "runs": [{"name": m.name, "key": RUN_NAME.fullmatch(m.name.split("/")[-1])["key"], "state": m.state,
                      "checkpoint_iteration": m.checkpoint_iteration, "files": m.files} for m in runs]}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(datetime.datetime.now().timestamp()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: Path, name: str, digest: str) -> None:
    """Add one file, hashing what is written: a file that changed since it was listed fails the export."""
    info = tar.gettarinfo(path, arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as f:
        reader = HashingReader(f)
        tar.addfile(info, reader)
    if reader.hexdigest() != digest:
        raise ArchiveError(f"{path} changed while it was exported; export again")


class HashingReader:
    """A file object that hashes what is read from it."""

    def __init__(self, f):
        self.f, self.hash = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        self.hash.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def state_of(run_dir: Path) -> str:
    """done, diverged, paused, failed, or stopped (no summary): its state while this process holds its lock."""
    try:
        return read_status(run_dir) or "stopped"
    except ValueError as err:
        raise ArchiveError(f"{run_dir.name}: its summary cannot be read ({err})") from None


def archived_name(run_dir: Path) -> str:
    """A run's place in a folder of runs, as an archive names it: its name, under calibration/ for a
    calibration run."""
    calibration = read_config(run_dir).get("kind") == "calibration"
    return f"{CALIBRATION_FOLDER}/{run_dir.name}" if calibration else run_dir.name


def misnamed(run_dir: Path, name: str) -> str | None:
    """What is wrong with a run directory's `name` in an archive, if anything: it must end in the key this
    code computes from its config (what `resbench run` looks for) and its seed. A calibration run's key
    hashes airbench's version, which `resbench.calibrate` knows: it must agree with its config's."""
    match = RUN_NAME.fullmatch(run_dir.name)
    if not match:
        return "not a run directory's name (<model>-<preset>-<key>-s<seed>)"
    try:
        config = read_config(run_dir)
        calibration = config.get("kind") == "calibration"
        key = config.get("key") if calibration else config_key(config)
    except RunDirError:
        return "its config cannot be read"
    except (KeyError, TypeError, AttributeError):
        key, calibration = None, False
    if calibration != (name == f"{CALIBRATION_FOLDER}/{run_dir.name}") or name.split("/")[-1] != run_dir.name:
        return f"a {'calibration' if calibration else 'training'} run cannot lie at {name}"
    if key != match["key"] or config.get("key") != key or str(config.get("seed")) != match["seed"]:
        return (f"it is not named by its config's key ({key}): edited by hand, or written by a resbench that "
                "computes keys differently")
    return None


def unreadable_summary(run_dir: Path) -> str | None:
    try:
        state_of(run_dir)
    except ArchiveError:
        return "its summary cannot be read"
    return None


def where(at: int | None) -> str:
    return "no checkpoint" if at is None else f"checkpoint at iteration {at:,}"
