"""Portable runs: run directories moved between machines as one archive (`resbench runs export / import`).

An archive is a tar.gz whose first entry is a manifest, `resbench-archive.json`: each run's name, key and
state, the iteration of the checkpoint it carries (if any), and every file's sha256. Then the files, as
`<run>/<path in the run>`. A finished run travels without checkpoints (its result is its small files);
an unfinished one (paused, stopped, failed) takes its newest readable checkpoint only when asked, so that
it resumes where it was on the machine it goes to.

Import checks everything before it changes anything: the manifest, each file's sha256, that every path
stays inside its run directory, and that each run's name carries the key this code computes from its
config (`rundir.config_key`), so an imported run is the one `resbench run` would look for. Then, run by
run, under the run's lock: a run that is not here is added; a finished run here is never replaced; an
unfinished run here is replaced by the archive's finished one, or by an unfinished one whose checkpoint is
further on, never by an older or missing checkpoint.
"""
from __future__ import annotations

import contextlib
import datetime
import fnmatch
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import torch

from resbench import __version__
from resbench.runs.checkpoint import LATEST, PREVIOUS
from resbench.runs.rundir import config_key, read_json
from resbench.runs.store import FINISHED, LOCK, RunDirError, claim, read_config, read_status, run_dirs

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
    """The run directories of `root` whose names match one of `names` (shell patterns, e.g. 'resnet20-*';
    every run without) and whose model is in `models` (any without). A name that matches nothing is an error."""
    if not Path(root).is_dir():
        raise ArchiveError(f"{root} is not a folder of runs")
    found = run_dirs(root)
    if names:
        for name in names:
            if not any(fnmatch.fnmatchcase(d.name, name) for d in found):
                raise ArchiveError(f"no run named {name!r} in {root}")
        found = [d for d in found if any(fnmatch.fnmatchcase(d.name, name) for name in names)]
    if models is not None:
        found = [d for d in found if read_config(d)["model"] in models]
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


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def _held(run_dir: Path) -> Iterator[bool]:
    """The run's lock while it is read: False while a process trains it. A folder this user cannot
    write to (a read-only copy) has no trainer to fear: read it without the lock."""
    try:
        with claim(run_dir) as mine:
            yield mine
    except PermissionError:
        yield True


def export_runs(chosen: list[Path], archive: Path, with_checkpoints: bool = False) -> list[Moved]:
    """Write the runs `chosen` to the tar.gz `archive` (replaced whole, or left as it was on failure);
    returns what happened to each run. A run being trained now is left out."""
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.")
    try:
        with contextlib.ExitStack() as locks:
            moved = [_inventory(d, with_checkpoints, locks) for d in chosen]
            shipped = [m for m in moved if m.action == "exported"]
            if not shipped:
                raise ArchiveError("every chosen run is being trained now; nothing exported")
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(_manifest(shipped), indent=1, sort_keys=True).encode())
                for m, run_dir in zip(moved, chosen):
                    for path, digest in m.files.items() if m.action == "exported" else ():
                        _add_file(tar, run_dir / path, f"{m.name}/{path}", digest)
                raw.flush()
                os.fsync(raw.fileno())
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return moved


def _inventory(run_dir: Path, with_checkpoints: bool, locks: contextlib.ExitStack) -> Moved:
    """One run's entry: its files and their sha256, read under its lock (held until the archive is written)."""
    if not locks.enter_context(_held(run_dir)):
        return Moved(run_dir.name, "running", "left out", "being trained now")
    state = _state(run_dir)
    paths = _files(run_dir)
    detail, at = "", None
    if state not in FINISHED and (ckpt := checkpoint_iteration(run_dir)):
        if with_checkpoints:
            paths.append(ckpt[0])
            at, detail = ckpt[1], f"checkpoint at iteration {ckpt[1]:,}"
        else:
            detail = f"without its checkpoint (iteration {ckpt[1]:,}; --with-checkpoints takes it)"
    return Moved(run_dir.name, state, "exported", detail, {p: _sha256(run_dir / p) for p in paths}, at)


def _manifest(runs: list[Moved]) -> dict:
    return {"format": FORMAT, "resbench": __version__, "host": platform.node(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "runs": [{"name": m.name, "key": RUN_NAME.fullmatch(m.name)["key"], "state": m.state,
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
        reader = _Hashing(f)
        tar.addfile(info, reader)
    if reader.hexdigest() != digest:
        raise ArchiveError(f"{path} changed while it was exported; export again")


class _Hashing:
    """A file object that hashes what is read from it."""

    def __init__(self, f):
        self.f, self.hash = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        self.hash.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def _state(run_dir: Path) -> str:
    """done, diverged, paused, failed, or stopped (no summary): its state while this process holds its lock."""
    try:
        return read_status(run_dir) or "stopped"
    except ValueError as err:
        raise ArchiveError(f"{run_dir.name}: its summary cannot be read ({err})") from None


def import_runs(archive: Path, root: Path) -> list[Moved]:
    """Verify `archive` whole, then bring each of its runs into the folder of runs `root` (see the module's
    docstring for which run wins); returns what happened to each. A refused archive changes nothing."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))  # beside the runs: a rename moves one in
    try:
        runs = _unpack(Path(archive), staging)
        return [_install(staging / run["name"], run["files"], root) for run in runs]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, staging: Path) -> list[dict]:
    """Extract `archive` into `staging`, checking each entry against the manifest; returns its runs."""
    if not archive.is_file():
        raise ArchiveError(f"no archive {archive}")
    try:
        with tarfile.open(archive, mode="r|gz") as tar:  # a stream: the manifest comes first
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise ArchiveError(f"{archive} is not a resbench archive: it does not start with {MANIFEST}")
            runs = _read_manifest(tar.extractfile(first).read(), archive)
            expected = {f"{r['name']}/{path}": digest for r in runs for path, digest in r["files"].items()}
            seen = set()
            while (member := tar.next()) is not None:  # (iterating would start again at the manifest)
                if member.name not in expected or member.name in seen or not member.isfile():
                    raise ArchiveError(f"{archive} holds {member.name!r}, which its manifest does not list "
                                       "as a file of one of its runs; nothing imported")
                seen.add(member.name)
                _write_checked(tar.extractfile(member), staging, member.name, expected[member.name])
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(f"{archive} is damaged or not a resbench archive ({type(err).__name__}: {err}); "
                           "nothing imported") from None
    except _Altered as err:
        raise ArchiveError(f"{archive}: {err.args[0]} does not match its sha256 in the manifest (damaged or "
                           "altered); nothing imported") from None
    if missing := sorted(set(expected) - seen):
        raise ArchiveError(f"{archive} is incomplete: {len(missing)} file(s) of its manifest are missing "
                           f"(first: {missing[0]}); nothing imported")
    for run in runs:
        _check_key(staging / run["name"], archive)
    return runs


def _read_manifest(text: bytes, archive: Path) -> list[dict]:
    try:
        manifest = json.loads(text)
        runs = manifest["runs"]
        if manifest["format"] != FORMAT:
            raise ArchiveError(f"{archive} is in format {manifest['format']!r}; this resbench reads {FORMAT}")
        names = [run["name"] for run in runs]
        for run in runs:
            match = RUN_NAME.fullmatch(run["name"])
            if not match or match["key"] != run["key"] or names.count(run["name"]) > 1:
                raise ArchiveError(f"{archive}: its manifest names a run {run['name']!r} that is not a "
                                   "run directory's name (or names it twice); nothing imported")
            for path, digest in run["files"].items():
                if not _inside(path) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                    raise ArchiveError(f"{archive}: run {run['name']} lists {path!r}, a path outside its "
                                       "directory (or without a sha256); nothing imported")
        return runs
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        if isinstance(err, ArchiveError):
            raise
        raise ArchiveError(f"{archive}: its manifest cannot be read ({type(err).__name__}: {err}); "
                           "nothing imported") from None


def _inside(path: str) -> bool:
    """A relative path that stays inside its run directory: no '..', no root, no hidden or empty parts."""
    parts = path.split("/")
    return "\\" not in path and "\0" not in path and all(p and not p.startswith(".") for p in parts)


class _Altered(Exception):
    """An archive's file whose bytes do not hash to the manifest's sha256."""


def _write_checked(source, staging: Path, name: str, digest: str) -> None:
    dest = (staging / name).resolve()
    if staging.resolve() not in dest.parents:  # `_inside` already refused it: a second lock on the same door
        raise ArchiveError(f"{name!r} is outside the folder it is imported into; nothing imported")
    dest.parent.mkdir(parents=True, exist_ok=True)
    reader = _Hashing(source)
    with open(dest, "wb") as f:
        shutil.copyfileobj(reader, f)
    if reader.hexdigest() != digest:
        raise _Altered(name)


def _check_key(run_dir: Path, archive: Path) -> None:
    """The run's name carries the key this code computes from its config, and its seed."""
    try:
        config = read_config(run_dir)
    except RunDirError:
        raise ArchiveError(f"{archive}: run {run_dir.name} has no readable config; nothing imported") from None
    match = RUN_NAME.fullmatch(run_dir.name)
    try:
        key = config_key(config)
    except (KeyError, TypeError, AttributeError):
        key = None
    if key != match["key"] or config.get("key") != key or str(config.get("seed")) != match["seed"]:
        raise ArchiveError(f"{archive}: run {run_dir.name} is not named by its config's key ({key}): altered, "
                           "or written by a resbench that computes keys differently; nothing imported")


def _install(staged: Path, files: dict[str, str], root: Path) -> Moved:
    """Bring one verified run into `root`, unless what is there already has as much or more."""
    name, state = staged.name, _state(staged)
    ckpt = checkpoint_iteration(staged)
    at = ckpt[1] if ckpt else None
    target = root / name
    if not target.exists():
        os.replace(staged, target)
        return Moved(name, state, "added", _where(at) if state not in FINISHED else "", files, at)
    with _held(target) as mine:
        if not mine:
            return Moved(name, state, "kept", "being trained here now", files, at)
        here = _state(target)
        if all((target / p).is_file() and _sha256(target / p) == d for p, d in files.items()):
            return Moved(name, state, "same", "already here", files, at)
        if here in FINISHED:
            return Moved(name, state, "kept", f"{here} here: a finished run is never replaced", files, at)
        here_ckpt = checkpoint_iteration(target)
        here_at = here_ckpt[1] if here_ckpt else None
        if state not in FINISHED and _further(here_at, at):
            return Moved(name, state, "kept", f"here: {here}, {_where(here_at)}; the archive's: {_where(at)}",
                         files, at)
        old = staged.with_name(f"{name}.replaced")  # in the staging folder, removed with it
        os.replace(target, old)
        os.replace(staged, target)
        return Moved(name, state, "replaced", f"was {here}, {_where(here_at)}", files, at)


def _further(here: int | None, incoming: int | None) -> bool:
    """Whether the checkpoint here is at least as far on as the incoming one (none is before any)."""
    return (-1 if here is None else here) >= (-1 if incoming is None else incoming)


def _where(at: int | None) -> str:
    return "no checkpoint" if at is None else f"checkpoint at iteration {at:,}"
