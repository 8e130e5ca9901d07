"""Training jobs, each under its lock: one at a time, a row's seeds fused, or K runs packed side by side.

Whoever trains a run holds its lock in the store (`resbench.runs.store`), so any number of workers can
share one list of jobs: each takes the next run that is neither finished nor taken. A run whose
code raises is `failed` (traceback in its error.txt) and the others go on.
"""
from __future__ import annotations

import contextlib
import json
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

from resbench.data.cifar import CifarData, CifarFiles
from resbench.data.imagenet import ImageFolderData
from resbench.runs.rundir import read_status, read_summary, write_config, write_error, write_summary
from resbench.runs.store import ENDED
from resbench.sweep.options import Schedule
from resbench.train.distributed import claim_once, world
from resbench.train.engine import Engine
from resbench.train.fused import fusable, train_fused
from resbench.train.imagenet import train_imagenet
from resbench.train.pack import train_packed
from resbench.train.loop import train_cifar
from resbench.train.runspec import CifarRun, ImageNetRun
from resbench.train.stop import Deadline, requested, stop_on_signals

Run = CifarRun | ImageNetRun
Data = CifarData | CifarFiles | ImageFolderData

# --fuse auto on a GPU: runs fused per process. 1 until `resbench bench fuse` has been measured on
# the GPU; off the GPU fusing saves little and it is always 1.
FUSE_AUTO = 1

@dataclass(frozen=True)
class Job:
    """A planned run resolved against the data and engine: its config and its directory."""

    run: Run
    config: dict
    dir: Path
    precision: str | None = None  # the declaration's arithmetic for this run (a precision control), else the engine's


class TimeBox(Protocol):
    """What training under a deadline asks of it (`resbench.sweep.timebox.TimeBox` is one)."""

    def seconds_left(self) -> float: ...
    def admit(self, job: Job, deadline: Deadline, active: Sequence[Job] = ()) -> bool: ...
    def not_started(self, jobs: Sequence[Job], results: Sequence[dict]) -> list[dict]: ...
    def summary(self, jobs: Sequence[Job], results: Sequence[dict]) -> list[str]: ...


def job_engine(job: Job, engine: Engine) -> Engine:
    """The engine `job` trains with: the sweep's, in the precision its declaration asks for."""
    return replace(engine, precision=job.precision) if job.precision else engine


def train_run(run: Run, data: Data, run_dir: Path, engine: Engine, progress: bool,
              time_limit_s: float | None) -> dict:
    if isinstance(run, CifarRun):
        data = data.load() if isinstance(data, CifarFiles) else data
        return train_cifar(run, data, run_dir, engine, progress, time_limit_s)
    return train_imagenet(run, data, run_dir, engine, progress, time_limit_s)


def make_groups(jobs: list[Job], fuse: int) -> list[list[Job]]:
    """Jobs in groups of at most `fuse` CIFAR runs that differ only in seed (seeds in order), each
    group where its first job was in `jobs`; ImageNet runs alone. The same set of jobs always
    gives the same groups, whatever its order, so every worker of a sweep forms the same ones."""
    by_config: dict[str, list[Job]] = {}
    for job in jobs:
        same = {k: v for k, v in job.config.items() if k not in ("seed", "key")}
        key = json.dumps(same, sort_keys=True) if isinstance(job.run, CifarRun) and fuse > 1 else str(job.dir)
        by_config.setdefault(key, []).append(job)
    groups = []
    for members in by_config.values():
        members = sorted(members, key=lambda j: j.run.seed)
        groups += [members[i:i + fuse] for i in range(0, len(members), fuse)]
    return groups


def resolve_fuse(fuse: int | str, engine: Engine) -> int:
    """--fuse: a number, or auto: what the GPU measurement chose (FUSE_AUTO), 1 off the GPU and where
    runs cannot be fused (`fused.fusable`). An engine resolved already is the one the runs train with
    (for Slurm's GPU nodes, from a login node without one): it is judged as it is, not for this machine."""
    engine = engine if engine.is_resolved else engine.resolve()
    if fuse == "auto":
        return FUSE_AUTO if engine.device.startswith("cuda") and not fusable(engine) else 1
    if not str(fuse).isdigit() or int(fuse) < 1:
        raise ValueError(f"--fuse takes a number of runs >= 1 or auto, got {fuse!r}")
    if int(fuse) > 1 and (why := fusable(engine)):
        raise ValueError(why)
    return int(fuse)


def train_group(jobs: list[Job], data: Data, engine: Engine, *, progress: bool = True,
                time_limit_s: float | None = None) -> list[dict]:
    """Train (or resume) jobs that differ only in seed, fused into one training when several are
    left; returns a summary per job. Each job is trained only while its lock is held (see
    `train_job`); the group trains the jobs it holds and that are not finished."""
    results: dict[Path, dict] = {}
    with contextlib.ExitStack() as held:
        todo = []
        for job in jobs:
            if (skipped := _take(job, data, engine, held)) is not None:
                results[job.dir] = skipped
            else:
                todo.append(job)
        if todo:
            try:
                summaries = _train(todo, data, job_engine(todo[0], engine), progress, time_limit_s)
            except OSError:
                raise
            except Exception as err:
                error = f"{type(err).__name__}: {err}".splitlines()[0]
                summaries = [_failed(job.dir, error, traceback.format_exc()) for job in todo]
            results.update({job.dir: {"dir": str(job.dir), **s} for job, s in zip(todo, summaries)})
    return [results[job.dir] for job in jobs]


def train_pack(jobs: list[Job], data: Data, engine: Engine, slots: int, *, progress: bool = True,
               time_limit_s: float | None = None,
               admit: Callable[[Job, Deadline, Sequence[Job]], bool] | None = None):
    """Train CIFAR jobs `slots` at a time in one process (`resbench.train.pack`), each while its lock is
    held; yields each job's summary as it ends (finished and taken ones at once, as they come up).
    `admit(job, deadline, active)`: whether a job may start now beside the pack's running jobs (e.g.
    whether it fits before a deadline); a refused one is left as it is."""
    data = data.load() if isinstance(data, CifarFiles) else data
    by_dir, held, skipped = {job.dir: job for job in jobs}, {}, []

    def take(run, run_dir: Path, deadline: Deadline) -> bool:
        job, claim = by_dir[run_dir], contextlib.ExitStack()
        active = [by_dir[d] for d in held]
        if admit is not None and read_status(run_dir) not in ENDED and not admit(job, deadline, active):
            return False
        if (summary := _take(job, data, engine, claim)) is not None:
            claim.close()
            skipped.append(summary)
            return False
        held[run_dir] = claim
        return True

    for run_dir, summary in train_packed(((j.run, j.dir) for j in jobs), data, engine, slots, progress,
                                         time_limit_s, take):
        yield from _drain(skipped)
        if summary["status"] == "failed":
            summary = _failed(run_dir, summary["error"], summary["traceback"])
        held.pop(run_dir).close()
        yield {"dir": str(run_dir), **summary}
    yield from _drain(skipped)


def _drain(items: list) -> list:
    out, items[:] = list(items), []
    return out


def _take(job: Job, data: Data, engine: Engine, held: contextlib.ExitStack) -> dict | None:
    """Claim a job for this process: None when it is ours to train (its config written), else why not
    (another process holds it, or it has ended: its summary)."""
    if not held.enter_context(claim_once(job.dir)):
        return {"dir": str(job.dir), "status": "taken"}
    if read_status(job.dir) in ENDED:
        return {"dir": str(job.dir), "already": True, **read_summary(job.dir)}
    if job.config["data"] != job.run.config(data, engine)["data"]:
        raise ValueError(f"{job.dir}: this process's data ({data.variant}, {data.source}) is not the "
                         "data the run was planned on; give every worker the same --data-root")
    if world()[0] == 0:
        write_config(job.dir, job.config)
    return None


def _failed(run_dir: Path, error: str, trace: str) -> dict:
    """A run that raised: its traceback in error.txt, status failed (the next sweep retries it)."""
    failed = {"status": "failed", "error": error, "iteration": None}
    if world()[0] == 0:
        write_error(run_dir, trace)
        write_summary(run_dir, failed)
    return failed


def _train(jobs: list[Job], data: Data, engine: Engine, progress: bool, time_limit_s: float | None) -> list[dict]:
    if len(jobs) == 1:
        return [train_run(jobs[0].run, data, jobs[0].dir, engine, progress, time_limit_s)]
    data = data.load() if isinstance(data, CifarFiles) else data
    return train_fused([j.run for j in jobs], data, [j.dir for j in jobs], engine, progress, time_limit_s)


def train_job(job: Job, data: Data, engine: Engine, *, progress: bool = True,
              time_limit_s: float | None = None) -> dict:
    """Train (or resume) one job unless it is finished or taken; returns its summary.

    The summary has "status": a run status (see `resbench.runs.store`), or "taken" when another
    process holds the run. An exception inside training marks the run "failed" (traceback
    in error.txt) and the sweep goes on without it; the next sweep retries it. OSError
    (disk full, no write permission) is not a property of the run, so it is raised.
    Under torchrun, process 0 holds the lock and writes; the others follow its decision.
    """
    return train_group([job], data, engine, progress=progress, time_limit_s=time_limit_s)[0]


def train_jobs(jobs: list[Job], data: Data, engine: Engine, schedule: Schedule = Schedule(),
               say: Callable[[str], None] = print, box: TimeBox | None = None) -> list[dict]:
    """Train the jobs in this process, `schedule.fuse` seeds at a time or `schedule.pack` runs side by side
    (skipping finished and taken ones), within its time limit; SIGTERM or Ctrl-C pauses the runs in training
    and starts no other (`resbench.train.stop`). `box` (--deadline, `resbench.sweep.timebox`): start only the
    jobs whose estimated time fits before its end, pause the rest at it, and say at the end what came of each;
    a job it did not start is in the results as "not started", with the reason."""
    if not (str(schedule.fuse).isdigit() and str(schedule.pack).isdigit()):
        raise ValueError("--fuse auto and --pack auto are decided before training (resbench.sweep.launch.start)")
    fuse, pack = int(schedule.fuse), int(schedule.pack)
    if box is not None and fuse > 1:
        raise ValueError("--deadline plans runs one at a time or packed (--pack); it does not combine with --fuse")
    if pack > 1:
        if fuse > 1 or not all(isinstance(j.run, CifarRun) for j in jobs):
            raise ValueError("--pack trains CIFAR runs side by side, each alone; it does not combine with --fuse")
        results = _train_packs(jobs, data, engine, schedule, say, box)
    else:
        results = _train_groups(jobs, data, engine, schedule, say, box)
    if box is not None:
        results += box.not_started(jobs, results)
        for line in box.summary(jobs, results):
            say(line)
    return results


def _train_packs(jobs: list[Job], data: Data, engine: Engine, schedule: Schedule, say: Callable[[str], None],
                 box: TimeBox | None) -> list[dict]:
    results = []
    with stop_on_signals():  # one stop for every pack below: a signal during one starts no other
        clock = Deadline(box.seconds_left() if box is not None else schedule.time_limit_s)
        for precision in dict.fromkeys(j.precision for j in jobs):  # a pack computes in one arithmetic
            share = [j for j in jobs if j.precision == precision]
            if (limit := clock.left()) is not None and limit <= 0 or requested():
                break
            for summary in train_pack(share, data, job_engine(share[0], engine), int(schedule.pack),
                                      progress=schedule.progress, time_limit_s=limit,
                                      admit=box.admit if box is not None else None):
                say(describe(summary))
                results.append(summary)
    return results


def _train_groups(jobs: list[Job], data: Data, engine: Engine, schedule: Schedule, say: Callable[[str], None],
                  box: TimeBox | None) -> list[dict]:
    results = []
    with stop_on_signals():
        deadline = Deadline(box.seconds_left() if box is not None else schedule.time_limit_s)
        for group in make_groups(jobs, int(schedule.fuse)):
            if reason := deadline.reason():
                if box is None:
                    say(f"{reason}; not started: {', '.join(str(j.dir) for j in group)}")
                continue
            if box is not None and read_status(group[0].dir) not in ENDED and not box.admit(group[0], deadline):
                continue
            for summary in train_group(group, data, engine, progress=schedule.progress,
                                       time_limit_s=deadline.left()):
                say(describe(summary))
                results.append(summary)
    return results


def describe(summary: dict) -> str:
    """One line about a run's outcome, for the console."""
    status, where = summary["status"], summary["dir"]
    if summary.get("already"):
        return f"{status} already: {where}"
    if status == "taken":
        return f"taken by another process: {where}"
    if status == "not started":
        return f"not started: {where} ({summary['reason']})"
    if status == "failed":
        return f"failed: {where}  {summary['error']} (traceback in error.txt)"
    if status == "diverged":
        return f"diverged: {where}  {summary.get('reason', '')}"
    if status == "paused":
        return f"paused at iteration {summary['iteration']:,} ({summary.get('reason', 'time limit')}): {where}; " \
               "a rerun resumes it"
    return f"{status}: {where}  test error {summary.get('test_error')}"
