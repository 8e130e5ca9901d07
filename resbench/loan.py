"""A GPU loan in one command: what travels there and back (the training itself: `loan_plan`).

A loan is 15 minutes of one machine in all, its start included; a command runs at most 10
minutes, the machine goes back 30 s after one ends (nothing is kept), 64 MiB travel there and
at most 8 files (16 MiB each, 64 MiB in all, 2 folders deep) come back. So a loan is one
command, `scripts/gpu_loan.sh`, and what must survive it travels both ways:

  here   `bundle`   .gpu/: the CIFAR-10 files gzip'd (3x smaller) with their sha256, the commit,
                    airbench's source (the calibration's trainer: `resbench.calibrate`)
  there  `train`    unpack and check the data; seed the results from the committed runs
                    (finished ones are skipped) and the carried checkpoints; then `loan_plan.train`
                    trains to the deadline, packing after every finished run
  there  `pack`     the runs' small files in one archive, unfinished runs' checkpoints in bins of
                    at most 15.5 MiB, beside the preflight and the log (again after the timeout)
  here   `collect`  the small files into reports/runs/, the bins into .gpu/carry/ for the next loan

"""
from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from .calibrate import CALIBRATION_FOLDER

MIB = 1 << 20
BIN_BYTES = int(15.5 * MIB)  # one returned file: under the 16 MiB a file may have
CARRY_BYTES = 40 * MIB  # checkpoints that travel back out: 64 MiB less the data (18.6) and the tree
TRAVEL_BYTES = 64 * MIB  # what may travel to the machine, in all
MAX_FILES = 8  # files back from a command
COMMIT_FILE, SUMS_FILE = "commit", "SHA256SUMS"


def bundle(data_root: str | None, gpu_dir: Path, commit: str) -> dict:
    """Here, before a loan: gzip the CIFAR-10 files into `gpu_dir`/data with their sha256, and the commit."""
    from .data.cifar import cifar10_files

    files = cifar10_files(data_root)
    data = gpu_dir / "data" / files.layout
    for old in gpu_dir.iterdir() if gpu_dir.is_dir() else []:  # all of it travels: keep only the carry
        if old.name != "carry":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    data.mkdir(parents=True)
    for name in files.sha256:
        with open(files.folder / name, "rb") as src, gzip.open(data / f"{name}.gz", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    (data / SUMS_FILE).write_text("".join(f"{sha}  {name}\n" for name, sha in sorted(files.sha256.items())))
    (gpu_dir / COMMIT_FILE).write_text(commit + "\n")
    (gpu_dir / "carry").mkdir(exist_ok=True)
    return {"data": _size(gpu_dir / "data"), "carry": _size(gpu_dir / "carry"), "airbench": bundle_airbench(gpu_dir)}


def bundle_airbench(gpu_dir: Path) -> str | None:
    """airbench's source into `gpu_dir`/site, where the loan's calibration finds it (the GPU machine reaches no
    registry): its version, or None where this machine has no airbench of the version the calibration pins."""
    from importlib import metadata, util

    from .calibrate import AIRBENCH_VERSION

    spec = util.find_spec("airbench")
    if spec is None or spec.origin is None or metadata.version("airbench") != AIRBENCH_VERSION:
        return None
    shutil.copytree(Path(spec.origin).parent, gpu_dir / "site" / "airbench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return AIRBENCH_VERSION


def unpack_data(gpu_dir: Path, work: Path) -> Path:
    """There: the bundle's files unzipped under `work`/data, each checked against its sha256."""
    from .data import DataError
    from .data.cifar import sha256_file

    (bundled,) = [d for d in (gpu_dir / "data").iterdir() if d.is_dir()]
    folder = work / "data" / bundled.name
    folder.mkdir(parents=True, exist_ok=True)
    for line in (bundled / SUMS_FILE).read_text().splitlines():
        sha, name = line.split()
        with gzip.open(bundled / f"{name}.gz", "rb") as src, open(folder / name, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        if sha256_file(folder / name) != sha:
            raise DataError(f"{name} in the bundle does not match its sha256; run `resbench loan bundle` again")
    return work / "data"


def seed_runs(committed: Path, carry: Path, runs: Path) -> dict:
    """The results folder as the last loans left it: committed run directories, then carried checkpoints."""
    runs.mkdir(parents=True, exist_ok=True)
    copied = 0
    for run in sorted(committed.glob("*/config.json")) if committed.is_dir() else []:
        if not (runs / run.parent.name).exists():
            shutil.copytree(run.parent, runs / run.parent.name)
            copied += 1
    for run in sorted(committed.glob(f"{CALIBRATION_FOLDER}/*/config.json")) if committed.is_dir() else []:
        if not (runs / CALIBRATION_FOLDER / run.parent.name).exists():  # done seeds are not trained again
            shutil.copytree(run.parent, runs / CALIBRATION_FOLDER / run.parent.name)
    unpacked = []
    for archive in sorted(carry.glob("carry-*.tar")) if carry.is_dir() else []:
        with tarfile.open(archive) as tar:
            tar.extractall(runs, filter="data")
            unpacked += [m.name for m in tar.getmembers() if m.isfile()]
    return {"committed runs": copied, "carried checkpoints": unpacked}


def first_fit(sizes: dict[str, int], capacity: int = BIN_BYTES) -> list[list[str]]:
    """Names packed into bins of at most `capacity` bytes, biggest first (first-fit decreasing)."""
    bins: list[tuple[int, list[str]]] = []
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if size > capacity:
            raise ValueError(f"{name} ({size / MIB:.1f} MiB) is larger than one returned file may be")
        for i, (used, names) in enumerate(bins):
            if used + size <= capacity:
                bins[i] = (used + size, names + [name])
                break
        else:
            bins.append((size, [name]))
    return [names for _, names in bins]


def fits(sizes: dict[str, int]) -> bool:
    """Do these checkpoints travel back: within the carry budget, in bins that leave room for 4 other files
    (runs.tgz, preflight.json, loan.log, and an archive half-written when the loan was cut)?"""
    try:
        return sum(sizes.values()) <= CARRY_BYTES and len(first_fit(sizes)) <= MAX_FILES - 4
    except ValueError:
        return False


def unfinished(runs: Path) -> dict[str, int]:
    """Each unfinished run's latest checkpoint (run/checkpoint.pt -> bytes): what must travel back."""
    from .store import FINISHED, read_status

    return {f"{p.parent.name}/{p.name}": p.stat().st_size for p in sorted(runs.glob("*/checkpoint.pt"))
            if read_status(p.parent) not in FINISHED}


def pack(runs: Path, out: Path) -> list[str]:
    """runs.tgz (every run's small files) and carry-N.tar (unfinished runs' checkpoints) into `out`.

    Called after every finished run, not only at the end: a loan cut at any moment brings back what
    it finished. Each archive is written beside its name and then renamed over it, so a cut leaves
    the previous whole archive (and at most one partial file, which `fits` leaves room for)."""
    out.mkdir(parents=True, exist_ok=True)
    small = lambda info: None if info.name.endswith((".pt", ".lock", ".tmp")) or "/." in info.name else info  # noqa: E731
    with _replacing(out / "runs.tgz") as part, tarfile.open(part, "w:gz") as tar:
        for run in sorted(p.parent for p in runs.glob("*/config.json")):
            tar.add(run, arcname=run.name, filter=small)
        for run in sorted(p.parent for p in runs.glob(f"{CALIBRATION_FOLDER}/*/config.json")):
            tar.add(run, arcname=f"{CALIBRATION_FOLDER}/{run.name}", filter=small)
    bins = first_fit(unfinished(runs))
    for i, names in enumerate(bins, 1):
        with _replacing(out / f"carry-{i}.tar") as part, tarfile.open(part, "w") as tar:
            for name in names:
                tar.add(runs / name, arcname=name)
    for stale in out.glob("carry-*.tar"):  # bins of checkpoints that have since finished
        if int(stale.stem.split("-")[1]) > len(bins):
            stale.unlink()
    return ["runs.tgz"] + [f"carry-{i}.tar" for i in range(1, len(bins) + 1)]


@contextlib.contextmanager
def _replacing(path: Path):
    part = path.with_name(f".{path.name}.part")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def collect(files_at: Path, repo: Path) -> dict:
    """Here, after a loan: small files into reports/runs/, checkpoints into .gpu/carry/, the preflight and
    the log into reports/gpu/ (named by the loan's start). Refused as a whole if the next loan's carry
    would not travel."""
    bins = sorted(files_at.glob("carry-*.tar"))
    data = _size(repo / ".gpu" / "data")
    carry = sum(b.stat().st_size for b in bins)
    tree = sent_size(repo)
    if data + carry + tree > TRAVEL_BYTES:
        raise ValueError(f"the next loan would send {(data + carry + tree) / MIB:.1f} MiB "
                         f"(data {data / MIB:.1f}, carry {carry / MIB:.1f}, tree {tree / MIB:.1f}): "
                         f"over {TRAVEL_BYTES // MIB} MiB")
    runs = repo / "reports" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    members = []  # a loan cut before its first finished run brings back no runs.tgz: its log still counts
    if (files_at / "runs.tgz").exists():
        with tarfile.open(files_at / "runs.tgz") as tar:
            members = [m for m in tar.getmembers() if not m.name.endswith(".pt")]
            tar.extractall(runs, members=members, filter="data")
    shutil.rmtree(repo / ".gpu" / "carry", ignore_errors=True)
    (repo / ".gpu" / "carry").mkdir(parents=True)
    for b in bins:
        shutil.copy2(b, repo / ".gpu" / "carry" / b.name)
    gpu = repo / "reports" / "gpu"
    gpu.mkdir(parents=True, exist_ok=True)
    stamp = loan_started(files_at / "loan.log") or time.strftime("%Y%m%d-%H%M%S")
    for name in ("preflight.json", "loan.log"):
        if (files_at / name).exists():
            shutil.copy2(files_at / name, gpu / f"{stamp}-{name}")
    parts = [m.name.split("/") for m in members]
    calibration = {p[1] for p in parts if p[0] == CALIBRATION_FOLDER and len(p) > 1}
    return {"runs": len({p[0] for p in parts} - {CALIBRATION_FOLDER}), "calibration runs": len(calibration),
            "carry MiB": round(carry / MIB, 1),
            "next loan sends MiB": round((data + carry + sent_size(repo)) / MIB, 1)}


def loan_started(log: Path) -> str | None:
    """'20261130-011719' from the log's first line ('loan of 2026-11-30T01:17:19Z: ...')."""
    first = log.read_text().partition("\n")[0] if log.exists() else ""
    found = re.match(r"loan of (\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", first)
    return "{}{}{}-{}{}{}".format(*found.groups()) if found else None


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def sent_size(repo: Path) -> int:
    """What a loan sends of the working tree besides .gpu: as the device tool does, the tracked files and the
    untracked ones git does not ignore (reports/runs/ included; .venv, runs/, caches not)."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode == 0:
        names = [repo / n for n in listed.stdout.split("\0") if n]
    else:  # not a git checkout: everything but what .gitignore names at the top
        skip = {".git", ".venv", ".gpu", "runs", ".pytest_cache", ".benchmarks"}
        names = [p for p in repo.rglob("*") if p.relative_to(repo).parts[0] not in skip and "__pycache__" not in p.parts]
    return sum(p.stat().st_size for p in names if p.is_file())
