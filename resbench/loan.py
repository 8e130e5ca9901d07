"""A GPU loan in one command: train to a deadline on a borrowed machine, bring back what it made.

A loan is 15 minutes of one machine in all, its start included; a command runs at most 10
minutes, the machine goes back 30 s after one ends (nothing is kept), 64 MiB travel there and
at most 8 files (16 MiB each, 64 MiB in all, 2 folders deep) come back. So a loan is one
command, `scripts/gpu_loan.sh`, and what must survive it travels both ways:

  here   `bundle`   .gpu/: the CIFAR-10 files gzip'd (3x smaller) with their sha256, the commit
  there  `train`    unpack and check the data; seed the results from the committed runs
                    (finished ones are skipped) and the carried checkpoints; a preflight (eager
                    vs the captured step, `train/graphs.py`) chooses the engine; then train the
                    plan until an absolute deadline, admitting a run only while it can still
                    finish (budget runs) and all unfinished checkpoints fit the carry budget
  there  `pack`     the runs' small files in one archive, unfinished runs' checkpoints in bins of
                    at most 15.5 MiB, beside the preflight and the log
  here   `collect`  the small files into reports/runs/, the bins into .gpu/carry/ for the next loan

The plan, in order: the budget ladder (the ten Table 6 / Fig. 6 networks at 1/32, then 1/16,
3 seeds each), then the paper's full recipe, cheapest network first, carried between loans.
ResNet-1202 only when named.
"""
from __future__ import annotations

import gzip
import json
import shutil
import tarfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

MIB = 1 << 20
BIN_BYTES = int(15.5 * MIB)  # one returned file: under the 16 MiB a file may have
CARRY_BYTES = 40 * MIB  # checkpoints that travel back out: 64 MiB less the data (18.6) and the tree
TRAVEL_BYTES = 64 * MIB  # what may travel to the machine, in all
MAX_FILES = 8  # files back from a command
MIN_START_S = 90  # no run starts with less time than this left
LADDER = ("1/32", "1/16")  # budgets, before the full recipe ("1")
MODELS = ("resnet20", "plain20", "resnet32", "plain32", "resnet44", "plain44", "resnet56", "plain56",
          "resnet110", "plain110")  # cheapest first; ResNet-1202 only when named
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
    return {"data": _size(gpu_dir / "data"), "carry": _size(gpu_dir / "carry")}


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
    """Do these checkpoints travel back: within the carry budget, in bins that leave room for 3 other files?"""
    try:
        return sum(sizes.values()) <= CARRY_BYTES and len(first_fit(sizes)) <= MAX_FILES - 3
    except ValueError:
        return False


def unfinished(runs: Path) -> dict[str, int]:
    """Each unfinished run's latest checkpoint (run/checkpoint.pt -> bytes): what must travel back."""
    from .store import FINISHED, read_status

    return {f"{p.parent.name}/{p.name}": p.stat().st_size for p in sorted(runs.glob("*/checkpoint.pt"))
            if read_status(p.parent) not in FINISHED}


def checkpoint_bytes(model: str) -> int:
    """A run's checkpoint: fp32 weights and SGD momentum, BN buffers, and a little more."""
    from .models import build_model

    net = build_model(model)
    return int(1.1 * sum(p.numel() * 8 for p in net.parameters())) + 64 * 1024


def seconds_per_run(model: str, iterations: int, batch: int, img_per_s: float) -> float:
    """A CIFAR run's time from the preflight's ResNet-20 rate: cost grows with depth (3x3 layers)."""
    from .models import parse_model_name

    return iterations * batch / img_per_s * (parse_model_name(model).depth - 2) / 18 * 1.15  # + tests


def pack(runs: Path, out: Path) -> list[str]:
    """There, last: runs.tgz (every run's small files) and carry-N.tar (unfinished runs' checkpoints)."""
    out.mkdir(parents=True, exist_ok=True)
    small = lambda info: None if info.name.endswith((".pt", ".lock", ".tmp")) or "/." in info.name else info  # noqa: E731
    with tarfile.open(out / "runs.tgz", "w:gz") as tar:
        for run in sorted(p.parent for p in runs.glob("*/config.json")):
            tar.add(run, arcname=run.name, filter=small)
    written = ["runs.tgz"]
    for i, names in enumerate(first_fit(unfinished(runs)), 1):
        with tarfile.open(out / f"carry-{i}.tar", "w") as tar:
            for name in names:
                tar.add(runs / name, arcname=name)
        written.append(f"carry-{i}.tar")
    return written


def collect(files_at: Path, repo: Path) -> dict:
    """Here, after a loan: small files into reports/runs/, checkpoints into .gpu/carry/, the preflight and
    the log into reports/gpu/. Refused as a whole if the next loan's carry would not travel."""
    bins = sorted(files_at.glob("carry-*.tar"))
    data = _size(repo / ".gpu" / "data")
    carry = sum(b.stat().st_size for b in bins)
    if data + carry + _tracked_size(repo) > TRAVEL_BYTES:
        raise ValueError(f"the next loan would send {(data + carry + _tracked_size(repo)) / MIB:.1f} MiB "
                         f"(data {data / MIB:.1f}, carry {carry / MIB:.1f}): over {TRAVEL_BYTES // MIB} MiB")
    runs = repo / "reports" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with tarfile.open(files_at / "runs.tgz") as tar:
        members = [m for m in tar.getmembers() if not m.name.endswith(".pt")]
        tar.extractall(runs, members=members, filter="data")
    shutil.rmtree(repo / ".gpu" / "carry", ignore_errors=True)
    (repo / ".gpu" / "carry").mkdir(parents=True)
    for b in bins:
        shutil.copy2(b, repo / ".gpu" / "carry" / b.name)
    gpu = repo / "reports" / "gpu"
    gpu.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in ("preflight.json", "loan.log"):
        if (files_at / name).exists():
            shutil.copy2(files_at / name, gpu / f"{stamp}-{name}")
    return {"runs": len({m.name.split("/")[0] for m in members}), "carry MiB": round(carry / MIB, 1),
            "next loan sends MiB": round((data + carry + _tracked_size(repo)) / MIB, 1)}


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _tracked_size(repo: Path) -> int:
    """What the working tree sends besides .gpu: its files outside .venv, .gpu, runs and caches."""
    skip = {".git", ".venv", ".gpu", "runs", ".pytest_cache", ".benchmarks", "__pycache__"}
    return sum(p.stat().st_size for p in repo.rglob("*")
               if p.is_file() and not skip.intersection(p.relative_to(repo).parts))


def train(gpu_dir: Path, repo: Path, work: Path, out: Path, deadline: float, device: str, preset: str,
          stages: tuple[str, ...], models: tuple[str, ...], seeds: int, preflight_iterations: int,
          min_start_s: float = MIN_START_S, margin_s: float = 20.0, say: Callable[[str], None] = print) -> dict:
    """There: everything up to packing (see the module docstring); returns what was trained."""
    from .data.cifar import cifar10_files
    from .preflight import preflight
    from .runner import make_groups, prepare, train_group
    from .store import FINISHED, read_status

    data = cifar10_files(unpack_data(gpu_dir, work))
    say(f"data unpacked and checked: {data.folder}")
    say(f"results seeded: {seed_runs(repo / 'reports' / 'runs', gpu_dir / 'carry', work / 'runs')}")
    from .train.recipe import cifar_recipe

    check = preflight(data, device, preflight_iterations, out / "preflight.json", cifar_recipe(preset).batch_size)
    say(f"preflight: {json.dumps(check['chosen'])}")
    engine, trained = check["engine"], []
    rate, fuse = check["chosen"]["run_img_per_s"], check["chosen"]["fuse"]
    for budget in stages:
        jobs, data, engine = prepare("figure6", preset, list(models), seeds, work / "runs", data=data,
                                     engine=engine, budget=budget, say=say)
        for group in make_groups(sorted(jobs, key=lambda j: models.index(j.run.model)), fuse):
            group = [job for job in group if read_status(job.dir) not in FINISHED]
            if not group:
                continue
            left = deadline - time.time()
            need = sum(seconds_per_run(j.run.model, j.run.recipe.iterations - _done(j.dir), j.run.recipe.batch_size,
                                       rate) for j in group)
            carry = {**unfinished(work / "runs"),
                     **{f"{j.dir.name}/checkpoint.pt": checkpoint_bytes(j.run.model) for j in group}}
            names = ", ".join(j.dir.name for j in group)
            why = f"less than {min_start_s:.0f} s left" if left < min_start_s else \
                "cannot finish before the deadline" if Fraction(budget) < 1 and need > left - margin_s else \
                "its checkpoints would not travel back" if not fits(carry) else None
            if why:
                say(f"not started: {names} ({why}; needs about {need:.0f} s, {left:.0f} s left)")
                continue
            for summary in train_group(group, data, engine, progress=False, time_limit_s=left - margin_s):
                trained.append({k: summary.get(k) for k in ("dir", "status", "iteration", "img_per_s", "step")})
                say(f"{summary['status']}: {Path(summary['dir']).name} at {summary.get('iteration')} "
                    f"({summary.get('img_per_s')} img/s, {summary.get('step')})")
    return {"trained": trained, "engine": repr(engine)}


def _done(run_dir: Path) -> int:
    from .store import last_iteration

    return last_iteration(run_dir) if run_dir.exists() else 0
