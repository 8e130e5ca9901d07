"""`resbench run` as one call (`start`): the launcher picked, the engine settled, the runs planned, then
trained here (`resbench.sweep.jobs`), by worker processes on this machine, or submitted as Slurm tasks.

Worker processes and Slurm tasks:

Both go through submitit. Locally (`--launcher local`, the default for `--jobs N > 1`)
N worker processes share one list of jobs; each trains the next run (or fused group of
runs, `--fuse`) that is neither finished nor held by another worker (the store's locks),
so long and short runs balance themselves and small CIFAR models can share one GPU. On
Slurm (`--launcher slurm`) every run or fused group is one task of a job array, at most
`--jobs` at once; a task that is preempted or reaches its time limit is requeued by
submitit and resumes from the run's last checkpoint (`Worker` is `Checkpointable`). An
ImageNet run is one task per GPU on `--nodes` nodes, joined into one data-parallel process
group through submitit's `TorchDistributedEnvironment` (the same roles torchrun gives
processes locally).

On Slurm, stopping is ordered so that no step is lost: Slurm's warning signal (`--signal`,
`SlurmOptions.signal_s` before the walltime) and its SIGTERM (preemption, `scontrol requeue`,
`scancel`) only request a stop (`resbench.train.stop`, with the reason); the run checkpoints
after its current step and ends "paused"; only then, at the walltime, does submitit requeue the
task (`Worker.__call__`), and a preempted task is requeued by Slurm itself. A requeued task loads
the data again and resumes every unfinished run from its checkpoint, so it ends as an
uninterrupted run would. A task takes its torch threads from SLURM_CPUS_PER_TASK.

Under a deadline (`--deadline`, an end time) every worker and every Slurm task gets the same end and
admits a run only when its estimate fits before it (`resbench.sweep.timebox`), as a sweep in one process
does; a Slurm task's own end is the earlier of the deadline and its walltime (less `SlurmOptions.signal_s`),
taken again after each requeue. A task whose runs paused at the deadline is not requeued (the sweep is over
for now; the same command resumes them), while one preempted or at its walltime before it is requeued as
without a deadline.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from resbench.paper.declarations import load_experiment
from resbench.runs.rundir import last_iteration, read_status, read_summary
from resbench.runs.store import ENDED, run_state
from resbench.sweep.jobs import Job, describe, make_groups, resolve_fuse, train_jobs
from resbench.sweep.options import LAUNCHERS, Schedule, SlurmOptions  # noqa: F401  (SlurmOptions: here as before)
from resbench.sweep.plan import load_data, prepare, time_box
from resbench.sweep.timebox import FIRST, TimeBox, deadline_summary
from resbench.train.distributed import init_from_env
from resbench.train.engine import Engine
from resbench.train.runspec import ImageNetRun
from resbench.train.stop import WALLTIME, request, requested, stop_on_signals

# submitit is imported by the launchers that use it, not here: runs trained in this process need only
# torch, as on a bare GPU node where nothing else is installed

# how --pack auto picks its size: (engine, jobs, data, packable, profile, graph, say) -> runs at a time. The
# caller gives it (resbench.bench.tune.auto_pack: the machine profile sits above the sweep); None: 1
PackSize = Callable[..., int]


@dataclass(frozen=True)
class Started:
    """What a sweep's start came to."""

    results: list[dict]  # each run's summary (trained here or by workers); empty when submitted to Slurm
    submitted: list[str]  # the Slurm job ids of the submitted tasks
    report: str  # the `resbench report` options of the reports these runs feed, e.g. "--table 6"


def start(sweep: Sweep, schedule: Schedule, engine: Engine, say: Callable[[str], None] = print,
          pack_size: PackSize | None = None) -> Started:
    """Train `sweep` as `schedule` says, on `engine`: in this process (and under torchrun, as one of its
    data-parallel processes), in worker processes, or as Slurm tasks (submitted; this returns at once).
    Every option is checked before the data is looked for; a ValueError says what is wrong in one line."""
    schedule = schedule.picked()
    if (rank_device := init_from_env()) is not None:  # started by torchrun: one data-parallel process
        engine, schedule = replace(engine, device=rank_device), replace(schedule, launcher="inline", jobs=1)
    sweep.validate()
    schedule.validate()
    if schedule.launcher == "slurm" and schedule.slurm.gpus:  # resolved for the GPU nodes, not this one
        engine = engine.resolve(cuda_available=True)
    # a deadline plans runs one at a time: --fuse auto is 1 there
    fuse = 1 if schedule.deadline is not None and schedule.fuse == "auto" else resolve_fuse(schedule.fuse, engine)
    jobs, data, engine = prepare(sweep, engine, say=say)
    root, decode = data.source, getattr(data, "decode", "workers")  # workers read the data the plan was made on
    pack = 1
    if schedule.pack != "auto":
        pack = int(schedule.pack)
    elif pack_size is not None:
        pack = pack_size(engine, jobs, data, schedule.launcher == "inline" and fuse == 1, schedule.profile,
                         schedule.graph, say)
    if schedule.graph is None and pack > 1 and engine.device.startswith("cuda"):
        engine = replace(engine, graph="cuda")  # a pack cannot torch.compile: its runs step captured
    schedule = replace(schedule, fuse=fuse, pack=pack)
    report = load_experiment(sweep.experiment).report_options
    if schedule.launcher == "slurm":
        return Started([], submit_slurm(jobs, engine, sweep.out, schedule, root, decode), report)
    if schedule.launcher == "local":
        return Started(launch_local(jobs, engine, sweep.out, schedule, root, decode, say), [], report)
    box = time_box(schedule.deadline, engine, pack) if schedule.deadline is not None else None
    return Started(train_jobs(jobs, data, engine, schedule, say, box), [], report)


# a long run crosses many walltimes: submitit's default of 3 requeues after a timeout would end it
MAX_REQUEUES = 1000


class Worker:
    """One process's share of a sweep: load the data (from `data_root`: the folder the planner
    read, decoded where `decode` says), train what is left of `jobs` as `schedule` says."""

    def __init__(self, jobs: list[Job], data_root: str | None, engine: Engine, schedule: Schedule,
                 decode: str = "workers", threads: int | None = None, data_parallel: bool = False):
        self.jobs, self.data_root, self.engine, self.schedule, self.decode = jobs, data_root, engine, schedule, decode
        self.threads, self.data_parallel = threads, data_parallel

    def __call__(self) -> list[dict]:
        if threads := self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)):
            torch.set_num_threads(threads)
        if self.data_parallel:  # one of the run's Slurm tasks: join the others
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            if (device := init_from_env()) is not None:
                self.engine = replace(self.engine, device=device)
        data = load_data([j.run for j in self.jobs], self.data_root, decode=self.decode, device=self.engine.device)
        box = self.time_box()
        schedule = replace(self.schedule, progress=False)  # to the task's log: no bars
        with stop_on_signals(), _walltime_signal() as requeue:
            results = train_jobs(self.jobs, data, self.engine, schedule, say=lambda line: print(line, flush=True),
                                 box=box)
        if self.requeue_due(results, box):
            requeue()  # the runs have checkpointed: submitit pickles this Worker, requeues the task and exits
        return results

    def time_box(self) -> TimeBox | None:
        """The deadline's time box in this process: its end, or a Slurm task's walltime (less the time Slurm
        warns before it) where that comes first; taken when the process starts, so again after a requeue."""
        end = self.schedule.deadline
        if end is None:
            return None
        if self.schedule.launcher == "slurm" and "SLURM_JOB_ID" in os.environ:
            walltime = self.schedule.slurm
            end = min(end, time.time() + walltime.time_min * 60 - walltime.signal_s)
        return time_box(end, self.engine)

    def requeue_due(self, results: list[dict], box: TimeBox | None = None) -> bool:
        """Whether this Slurm task goes on in a requeued try: some run is unfinished and the task's walltime
        stopped it before the deadline (Slurm's warning, or `box`, this task's time box, ending at the walltime).
        A task whose runs paused at the deadline is over: the deadline is the user's end of the sweep, for now."""
        if all(read_status(j.dir) in ENDED for j in self.jobs):
            return False
        deadline = self.schedule.deadline
        if requested() == WALLTIME:
            return deadline is None or time.time() < deadline
        walltime_first = box is not None and deadline is not None and box.end < deadline
        return walltime_first and requested() is None and any(r["status"] == "paused" for r in results)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or timeout: requeue; the run resumes from its checkpoint."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@contextlib.contextmanager
def _walltime_signal() -> Iterator[Callable[[], None]]:
    """In a Slurm task started by submitit: Slurm's warning signal requests a stop (WALLTIME) instead
    of running submitit's handler, which would requeue from inside the step, before the checkpoint.
    Yields what requeues the task (submitit's handler, called once the runs have paused)."""
    from submitit.slurm.slurm import SlurmJobEnvironment

    sig = SlurmJobEnvironment._usr_sig()
    submitit_handler = signal.getsignal(sig)
    if not callable(submitit_handler) or threading.current_thread() is not threading.main_thread():
        yield lambda: None  # not a submitit task: nothing to requeue
        return
    signal.signal(sig, lambda signum, frame: request(WALLTIME))
    try:
        yield lambda: submitit_handler(sig, None)
    finally:
        signal.signal(sig, submitit_handler)


def launch_local(jobs: list[Job], engine: Engine, out: Path, schedule: Schedule, data_root: str | None = None,
                 decode: str = "workers", say: Callable[[str], None] = print) -> list[dict]:
    """Train `jobs` with `schedule.jobs` processes on this machine and wait for them; returns summaries.
    With `schedule.fuse` > 1 each worker trains whole fused groups (`jobs.make_groups`); under
    `schedule.deadline` each admits only the runs that fit before it, and the end says what came of each."""
    import submitit

    if all(read_status(j.dir) in ENDED for j in jobs):  # nothing to train: start no process
        return [{"dir": str(j.dir), **read_summary(j.dir), "already": True, "status": run_state(j.dir)} for j in jobs]
    began = time.time()
    executor = submitit.LocalExecutor(folder=Path(out) / ".submitit" / "%j")
    # submitit kills a local job after timeout_min (default 2 minutes): allow the whole sweep
    limit_s = schedule.time_limit_s or (schedule.deadline - began if schedule.deadline else 30 * 24 * 3600)
    executor.update_parameters(timeout_min=int(limit_s / 60) + 10)
    gpus = _local_gpus(engine)
    threads = max(1, (os.cpu_count() or 1) // schedule.jobs)
    groups = make_groups(jobs, int(schedule.fuse))
    submitted = []
    for i in range(min(schedule.jobs, len(groups))):
        # every worker gets every group, rotated, so that they start on different ones
        share = [job for group in groups[i:] + groups[:i] for job in group]
        if gpus:
            executor.update_parameters(gpus_per_node=1, visible_gpus=[gpus[i % len(gpus)]])
        submitted.append(executor.submit(Worker(share, data_root, engine, schedule, decode, threads)))
    try:
        _watch(jobs, submitted, schedule.progress, say)
    except KeyboardInterrupt:  # stop the workers too; their runs resume on the next `resbench run`
        for worker in submitted:
            worker.cancel()
        raise
    refused: dict[str, str] = {}
    for worker in submitted:
        if (exc := worker.exception()) is not None:
            say(f"worker {worker.job_id} stopped: {str(exc).strip().splitlines()[-1]}; "
                f"log: {worker.paths.stderr}")
        else:
            refused.update({r["dir"]: r["reason"] for r in worker.result() if r["status"] == "not started"})
    results = [{"dir": str(j.dir), **read_summary(j.dir), "status": run_state(j.dir)} for j in jobs]
    if schedule.deadline is None:
        return results
    results = [{"dir": r["dir"], "status": "not started", "reason": refused.get(r["dir"], FIRST)}
               if r["status"] == "stopped" and not last_iteration(j.dir) else r for j, r in zip(jobs, results)]
    for line in deadline_summary(schedule.deadline, began, jobs, results):
        say(line)
    return results


def submit_slurm(jobs: list[Job], engine: Engine, out: Path, schedule: Schedule, data_root: str | None = None,
                 decode: str = "workers") -> list[str]:
    """Submit one array task per run, or per fused group of runs (at most `schedule.jobs` at once, each with
    `schedule.slurm`'s resources); returns the Slurm job ids."""
    import submitit

    data_parallel = any(isinstance(job.run, ImageNetRun) for job in jobs)
    executor = submitit.AutoExecutor(folder=Path(out) / ".submitit" / "%j", cluster="slurm",
                                     slurm_max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(**schedule.slurm.executor_parameters(schedule.jobs, data_parallel))
    with executor.batch():
        submitted = [executor.submit(Worker(group, data_root, engine, replace(schedule, fuse=len(group)), decode,
                                            data_parallel=data_parallel))
                     for group in make_groups(jobs, int(schedule.fuse))]
    return [j.job_id for j in submitted]


def _local_gpus(engine: Engine) -> list[int]:
    if not engine.device.startswith("cuda"):
        return []
    if ":" in engine.device:
        return [int(engine.device.split(":")[1])]
    return list(range(torch.cuda.device_count()))


def _watch(jobs: list[Job], workers: list, progress: bool, say: Callable[[str], None]) -> None:
    """A progress bar over all runs' iterations, read from the store, until the workers end."""
    total = sum(j.run.recipe.iterations for j in jobs)
    reported: set[Path] = {j.dir for j in jobs if read_status(j.dir) in ENDED}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[runs]}"), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"{len(jobs)} runs, {len(workers)} workers", total=total, runs="")
        while True:
            finished = all(w.done() for w in workers)
            done_iters, counts = 0, {"done": 0}
            for j in jobs:
                status = read_status(j.dir)
                if status in ENDED:
                    counts["done"] += 1
                    done_iters += j.run.recipe.iterations
                    if j.dir not in reported:
                        reported.add(j.dir)
                        line = describe({"dir": str(j.dir), **read_summary(j.dir)})
                        bar.console.print(line) if progress else say(line)
                else:
                    done_iters += last_iteration(j.dir)
            bar.update(task, completed=done_iters, runs=f"{counts['done']}/{len(jobs)} runs finished")
            if finished:
                return
            time.sleep(1.0)
