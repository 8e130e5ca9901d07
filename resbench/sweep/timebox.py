"""--deadline: which runs start, from estimates of how long each takes, and what the end of the time box says.

A time box (a Slurm walltime, a GPU booked for an hour, a spot instance) is best spent on runs that finish:
a run starts only when its estimated time fits in what is left, and the time a long run cannot use goes to
shorter runs of the plan. A run still training at the deadline (an estimate too low, or a signal) pauses at
a checkpoint, and the same command resumes it.

Estimates are img/s of a network training alone on this device, taken, in this order, from the run's own
log (a paused run), from finished or paused runs of the same network, arithmetic and device in the results
folder, or from a few steps measured now; `estimate_s` turns them into seconds, for one run or a pack.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch

from resbench.host.machine import cpu_model
from resbench.models import build_model
from resbench.runs.rundir import RunDirError, read_config, read_env, read_status, read_summary, run_dirs, recent_train_rates
from resbench.sweep.durations import format_duration
from resbench.sweep.jobs import Job, job_engine
from resbench.train.engine import Engine, make_optimizer, sync
from resbench.train.stop import Deadline
from resbench.train.steps import make_train_step

SAFETY = 1.2  # a run starts only when 1.2 x its estimate fits: rates wander, tests and checkpoints cost
# seconds a run spends before its first step (model, optimizer; on a GPU compilation or capture)
START_S = {"cpu": 2.0, "cuda": 60.0}
MEASURED_STEPS = 5  # timed steps of a short measurement, after 2 untimed ones


@dataclass(frozen=True)
class Pace:
    """How fast a network trains alone on this device (img/s), and where that number comes from."""

    img_per_s: float
    source: str


@dataclass(frozen=True)
class Work:
    """What a run has left to train: steps of `batch` images, images to test, its network's pace alone."""

    iterations: int
    batch: int
    test_images: int
    pace: Pace

    @property
    def step_s(self) -> float:
        return self.batch / self.pace.img_per_s


def estimate_s(run: Work, pack: Sequence[Work] = (), slots: int = 1, speedup: float = 1.0) -> float:
    """Seconds `run` needs: alone (no `pack`, one slot), or in a pack of `slots` runs beside the members `pack`.

    A pack moves in lockstep: each round steps every member once, so a round lasts the slowest member's
    step (the deepest net's) and the `slots` runs share the device: a round is slots x that step / speedup,
    where `speedup` is a pack's measured aggregate gain over one run (1: none, as on a CPU, which runs the
    members' steps one after the other; a machine profile can give it for a GPU). A test forward costs
    about a third of a training step per image."""
    shared = max(slots, 1 + len(pack)) / speedup
    round_s = max(w.step_s for w in (run, *pack)) * shared
    return run.iterations * round_s + run.test_images / (3 * run.pace.img_per_s) * shared


def device_name(engine: Engine) -> str:
    """What a run's env.json calls this device: the GPU's name, or the CPU's model."""
    if engine.device.startswith("cuda"):
        return torch.cuda.get_device_name(engine.device)
    return cpu_model()


def logged_pace(run_dir: Path) -> float | None:
    """The img/s a run's recent log records show, as the pace of its network alone: a packed run logged its
    share of the device (its summary's pack_slots K runs), so K x its rate (exact for equal members; for a
    mixed pack, too high for its deepest member and too low for the others)."""
    rates = recent_train_rates(run_dir)
    if not rates:
        return None
    return statistics.median(rates) * read_summary(run_dir).get("pack_slots", 1)


def measure_pace(job: Job, engine: Engine, steps: int = MEASURED_STEPS) -> float:
    """img/s of a few training steps of the job's network on random images, now: eager, without compilation
    or capture (whose set-up would not fit a short measurement), so on a GPU a rate on the slow side."""
    engine = replace(job_engine(job, engine).resolve(), compile=False, graph="off")
    recipe = job.run.recipe
    torch.manual_seed(0)
    model = build_model(job.run.model).to(engine.device)
    if engine.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step = make_train_step(model, make_optimizer(model, recipe.lr, recipe.momentum, recipe.weight_decay,
                                                 engine.device), recipe.bn_splits, engine)
    x = torch.randn(recipe.batch_size, 3, 32, 32, device=engine.device)
    y = torch.randint(0, 10, (recipe.batch_size,), device=engine.device)
    for _ in range(2):
        step(x, y, recipe.lr)
    sync(engine.device)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y, recipe.lr)
    sync(engine.device)
    return steps * recipe.batch_size / (time.perf_counter() - start)


class Paces:
    """Each job's network's pace alone, from the best source there is, found once per network."""

    def __init__(self, engine: Engine, measure: Callable[[Job, Engine], float] = measure_pace):
        self.engine, self.measure = engine, measure
        self.device = device_name(engine.resolve())
        self.found: dict[tuple, Pace] = {}

    def __call__(self, job: Job) -> Pace:
        if (own := logged_pace(job.dir)) is not None:
            return Pace(own, "its own log")
        kind = (job.run.model, job.config["precision"], job.run.recipe.batch_size)
        if kind not in self.found:
            self.found[kind] = self._find(job, kind)
        return self.found[kind]

    def _find(self, job: Job, kind: tuple) -> Pace:
        rates = [rate for run_dir in run_dirs(job.dir.parent) if self._same(run_dir, kind)
                 if (rate := logged_pace(run_dir)) is not None]
        if rates:
            return Pace(statistics.median(rates), f"{len(rates)} {kind[0]} run(s) in {job.dir.parent}")
        return Pace(self.measure(job, self.engine), f"measured now, {MEASURED_STEPS} steps")

    def _same(self, run_dir: Path, kind: tuple) -> bool:
        try:
            config, env = read_config(run_dir), read_env(run_dir)
        except (RunDirError, OSError, ValueError):
            return False
        name = env.get("gpu") if str(env.get("device", "")).startswith("cuda") else env.get("cpu")
        return name == self.device and kind == (config.get("model"), config.get("precision"),
                                                 config.get("recipe", {}).get("batch_size"))


def work_of(job: Job, pace: Pace) -> Work:
    """What `job` has left: all of it, or what follows its pause."""
    recipe = job.run.recipe
    done = read_summary(job.dir)["iteration"] if read_status(job.dir) == "paused" else 0
    left = max(0, recipe.iterations - done)
    tests = left // recipe.eval_every + 2  # the scheduled tests, the final one and the Fig. 7 probe
    return Work(left, recipe.batch_size, tests * (recipe.test_subset or 10_000), pace)


class TimeBox:
    """A deadline for a list of jobs: `admit` says whether a job starts now, `summary` what came of them.

    `slots`: runs trained side by side (--pack); `speedup`: a pack's aggregate gain over one run (see
    `estimate_s`); `pace`: a job's network's pace alone (`Paces`, or a machine profile later)."""

    def __init__(self, end: float, pace: Callable[[Job], Pace], slots: int = 1, speedup: float = 1.0,
                 start_s: float = START_S["cpu"]):
        self.end, self.pace, self.slots, self.speedup, self.start_s = end, pace, slots, speedup, start_s
        self.began = time.time()
        self.estimates: dict[Path, tuple[float, Pace]] = {}  # admitted or refused: (seconds, pace)
        self.ends: dict[Path, tuple[float, float]] = {}  # admitted: (estimated end, the round time it assumed)
        self.refused: dict[Path, str] = {}

    def seconds_left(self) -> float:
        return self.end - time.time()

    def admit(self, job: Job, deadline: Deadline, active: Sequence[Job] = ()) -> bool:
        """Whether `job` finishes before the end if it starts now beside `active` (a pack's running members),
        without making any of them miss it."""
        left = min(self.seconds_left(), deadline.left() if deadline.left() is not None else float("inf"))
        members = [work_of(j, self.pace(j)) for j in active if j.dir != job.dir]
        work = work_of(job, self.pace(job))
        seconds = self.start_s + estimate_s(work, members, self.slots, self.speedup)
        self.estimates[job.dir] = (seconds, work.pace)
        if seconds * SAFETY > left:
            self.refused[job.dir] = f"needs about {format_duration(seconds)}, {format_duration(left)} left"
            return False
        now, round_s = time.time(), max(w.step_s for w in (work, *members))
        for other in active:  # a deeper newcomer slows the lockstep of the runs already in the pack
            other_end, other_round = self.ends.get(other.dir, (now, round_s))
            if now + (other_end - now) * round_s / other_round > self.end:
                self.refused[job.dir] = f"would slow {other.dir.name} past the deadline"
                return False
        self.refused.pop(job.dir, None)
        self.ends[job.dir] = (now + seconds, round_s)
        return True

    def not_started(self, jobs: Sequence[Job], results: Sequence[dict]) -> list[dict]:
        """A result for each job of `jobs` that none of `results` is: not started, and why."""
        started = {Path(r["dir"]) for r in results}
        return [{"dir": str(j.dir), "status": "not started", "reason": self.refused.get(j.dir, FIRST)}
                for j in jobs if j.dir not in started]

    def summary(self, jobs: Sequence[Job], results: Sequence[dict]) -> list[str]:
        """What the deadline's user reads at the end: what finished, what is paused, what was not started and
        why, and where each estimate came from."""
        lines = deadline_summary(self.end, self.began, jobs, results)
        paces: dict[str, str] = {}
        for job in jobs:
            if job.dir in self.estimates:
                _, pace = self.estimates[job.dir]
                paces.setdefault(f"{job.run.model} ({job.config['precision']})",
                                 f"{pace.img_per_s:,.0f} img/s alone, from {pace.source}")
        if paces:
            packed = f", {self.slots} runs packed in lockstep" if self.slots > 1 else ""
            lines.append(f"  estimates{packed}: " + "; ".join(f"{k} {v}" for k, v in paces.items()))
        return lines


FIRST = "the deadline came first"  # why a job no estimate refused was not started


def deadline_summary(end: float, began: float, jobs: Sequence[Job], results: Sequence[dict]) -> list[str]:
    """What came of `jobs` under a deadline at `end` (epoch seconds): the runs finished, paused (each with its
    iteration) and not started (each with its reason, from a "not started" result)."""
    by_dir = {Path(r["dir"]): r for r in results}
    status = {j.dir: by_dir.get(j.dir, {}).get("status", "not started") for j in jobs}
    done = [j for j in jobs if status[j.dir] == "done"]
    paused = [j for j in jobs if status[j.dir] == "paused"]
    waiting = [j for j in jobs if status[j.dir] == "not started"]
    lines = [f"deadline {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(end))} "
             f"({format_duration(end - began)} from the start): {len(done)} run(s) finished, "
             f"{len(paused)} paused, {len(waiting)} not started"]
    lines += [f"  paused at iteration {by_dir[j.dir]['iteration']:,}: {j.dir.name} (the same command resumes it)"
              for j in paused]
    lines += [f"  not started: {j.dir.name} ({by_dir.get(j.dir, {}).get('reason', FIRST)})" for j in waiting]
    return lines
