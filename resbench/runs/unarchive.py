"""`resbench runs import`: an archive's runs brought into a folder of runs (the format: `resbench.runs.archive`).

The archive is checked whole before anything changes: the manifest, each file's sha256, that every path stays
inside its run directory, each run's key. Then, run by run, under the run's lock: a run that is not here is
added; a finished run here is never replaced; an unfinished one here is replaced by the archive's finished one,
or by an unfinished one whose checkpoint is further on, never by an older or missing checkpoint.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from resbench.runs.archive import (FORMAT, MANIFEST, RUN_NAME, ArchiveError, HashingReader, Moved,
                                   checkpoint_iteration, held, misnamed, sha256_of, state_of, unreadable_summary,
                                   where)
from resbench.runs.rundir import CALIBRATION_FOLDER
from resbench.runs.store import FINISHED


def import_runs(archive: Path, root: Path) -> list[Moved]:
    """Verify `archive` whole, then bring each of its runs into the folder of runs `root` (see the module's
    docstring for which run wins); returns what happened to each. A refused archive changes nothing. (An
    import killed midway leaves a hidden `.import-*` folder in `root`, which nothing reads: delete it.)"""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".import-"))  # beside the runs: a rename moves one in
    try:
        runs = _unpack(Path(archive), staging)
        return [_install(staging, run["name"], run["files"], root) for run in runs]
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
        if problem := misnamed(staging / run["name"], run["name"]) or unreadable_summary(staging / run["name"]):
            raise ArchiveError(f"{archive}: run {run['name']}: {problem}; nothing imported")
    return runs


def _read_manifest(text: bytes, archive: Path) -> list[dict]:
    try:
        manifest = json.loads(text)
        runs = manifest["runs"]
        if manifest["format"] != FORMAT:
            raise ArchiveError(f"{archive} is in format {manifest['format']!r}; this resbench reads {FORMAT}")
        names = [run["name"] for run in runs]
        for run in runs:
            match = RUN_NAME.fullmatch(run["name"].removeprefix(f"{CALIBRATION_FOLDER}/"))
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
    reader = HashingReader(source)
    with open(dest, "wb") as f:
        shutil.copyfileobj(reader, f)
    if reader.hexdigest() != digest:
        raise _Altered(name)


def _install(staging: Path, name: str, files: dict[str, str], root: Path) -> Moved:
    """Bring the verified run `staging`/`name` into `root`, unless what is there already has as much or more."""
    staged = staging / name
    state = state_of(staged)
    ckpt = checkpoint_iteration(staged)
    at = ckpt[1] if ckpt else None
    target = root / name
    if not target.exists():
        target.parent.mkdir(exist_ok=True)  # <root>/calibration
        os.replace(staged, target)
        return Moved(name, state, "added", where(at) if state not in FINISHED else "", files, at)
    with held(target) as mine:
        if not mine:
            return Moved(name, state, "kept", "being trained here now", files, at)
        if problem := unreadable_summary(target):
            return Moved(name, state, "kept", f"{problem} here: left for you to look at", files, at)
        here = state_of(target)
        if all((target / p).is_file() and sha256_of(target / p) == d for p, d in files.items()):
            return Moved(name, state, "same", "already here", files, at)
        if here in FINISHED:
            return Moved(name, state, "kept", f"{here} here: a finished run is never replaced", files, at)
        here_ckpt = checkpoint_iteration(target)
        here_at = here_ckpt[1] if here_ckpt else None
        if state not in FINISHED and _further(here_at, at):
            return Moved(name, state, "kept", f"here: {here}, {where(here_at)}; the archive's: {where(at)}",
                         files, at)
        old = staging / f"{staged.name}.replaced"  # removed with the staging folder
        os.replace(target, old)
        os.replace(staged, target)
        return Moved(name, state, "replaced", f"was {here}, {where(here_at)}", files, at)


def _further(here: int | None, incoming: int | None) -> bool:
    """Whether the checkpoint here is at least as far on as the incoming one (none is before any)."""
    return (-1 if here is None else here) >= (-1 if incoming is None else incoming)
