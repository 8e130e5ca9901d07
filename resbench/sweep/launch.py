"""Running a sweep's jobs in other processes: N workers on this machine, or Slurm tasks.

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

Note for a sweep deadline (a sweep that starts only the runs that fit before it, not built
here): each try of a Slurm task has a walltime of its own, so a task's deadline would be its
start plus the walltime less `SlurmOptions.signal_s`, taken again after every requeue, and a run
longer than one walltime would still start, to span several tries.
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

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from resbench.sweep.jobs import Job, describe, make_groups, train_jobs
from resbench.runs.rundir import last_iteration, read_status, read_summary
from resbench.runs.store import ENDED, run_state
from resbench.train.engine import Engine
from resbench.train.stop import WALLTIME, request, requested, stop_on_signals

LAUNCHERS = ("inline", "local", "slurm")
# a long run crosses many walltimes: submitit's default of 3 requeues after a timeout would end it
MAX_REQUEUES = 1000


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    gpus: int = 1  # GPUs per task (one run per task)
    cpus: int = 8  # CPU cores per task
    time_min: int = 240  # wall-time limit per task; longer runs are requeued and resume
    mem_gb: int | None = 32  # memory per task; None: the cluster's default
    nodes: int = 1  # ImageNet runs: nodes per run, one process per GPU

    @property
    def signal_s(self) -> int:
        """Seconds before the walltime that Slurm warns the task (`--signal`): a sixth of the walltime,
        at most submitit's 90 s, so that a short walltime is not warned at its start. Slurm checks
        every 30 s or so and may warn that much earlier; the run needs only one step and a checkpoint."""
        return min(90, self.time_min * 60 // 6)

    def executor_parameters(self, parallel: int, data_parallel: bool = False) -> dict:
        """submitit's parameter names for these options."""
        params = {"slurm_partition": self.partition, "slurm_account": self.account,
                  "gpus_per_node": self.gpus, "cpus_per_task": self.cpus, "timeout_min": self.time_min,
                  "mem_gb": self.mem_gb, "slurm_signal_delay_s": self.signal_s,
                  "slurm_array_parallelism": parallel, "name": "resbench"}
        if data_parallel:
            params.update(nodes=self.nodes, tasks_per_node=self.gpus)
        return {k: v for k, v in params.items() if v is not None}


class Worker:
    """One process's share of a sweep: load the data (from `data_root`: the folder the planner
    read), train what is left of `jobs`."""

    def __init__(self, jobs: list[Job], data_root: str | None, engine: Engine,
                 time_limit_s: float | None = None, threads: int | None = None, data_parallel: bool = False,
                 fuse: int = 1, decode: str = "workers"):
        self.jobs, self.data_root, self.engine, self.decode = jobs, data_root, engine, decode
        self.time_limit_s, self.threads, self.data_parallel, self.fuse = time_limit_s, threads, data_parallel, fuse

    def __call__(self) -> list[dict]:
        import torch

        from resbench.sweep.plan import load_data

        if threads := self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0)):
            torch.set_num_threads(threads)
        if self.data_parallel:  # one of the run's Slurm tasks: join the others
            import submitit

            from resbench.train.distributed import init_from_env

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            if (device := init_from_env()) is not None:
                self.engine = replace(self.engine, device=device)
        data = load_data([j.run for j in self.jobs], self.data_root, decode=self.decode, device=self.engine.device)
        with stop_on_signals(), _walltime_signal() as requeue:
            results = train_jobs(self.jobs, data, self.engine, progress=False, time_limit_s=self.time_limit_s,
                                 say=lambda line: print(line, flush=True), fuse=self.fuse)  # to the task's log
        if requested() == WALLTIME and any(read_status(j.dir) not in ENDED for j in self.jobs):
            requeue()  # the runs have checkpointed: submitit pickles this Worker, requeues the task and exits
        return results

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


def launch_local(jobs: list[Job], workers: int, data_root: str | None, engine: Engine, out: Path,
                 time_limit_s: float | None = None, progress: bool = True,
                 say: Callable[[str], None] = print, fuse: int = 1, decode: str = "workers") -> list[dict]:
    """Train `jobs` with `workers` processes on this machine and wait for them; returns summaries.
    With `fuse` > 1 each worker trains whole fused groups (`jobs.make_groups`)."""
    import submitit

    if all(read_status(j.dir) in ENDED for j in jobs):  # nothing to train: start no process
        return [{"dir": str(j.dir), **read_summary(j.dir), "already": True, "status": run_state(j.dir)} for j in jobs]
    executor = submitit.LocalExecutor(folder=Path(out) / ".submitit" / "%j")
    # submitit kills a local job after timeout_min (default 2 minutes): allow the whole sweep
    executor.update_parameters(timeout_min=int((time_limit_s or 30 * 24 * 3600) / 60) + 10)
    gpus = _local_gpus(engine)
    threads = max(1, (os.cpu_count() or 1) // workers)
    groups = make_groups(jobs, fuse)
    submitted = []
    for i in range(min(workers, len(groups))):
        # every worker gets every group, rotated, so that they start on different ones
        share = [job for group in groups[i:] + groups[:i] for job in group]
        if gpus:
            executor.update_parameters(gpus_per_node=1, visible_gpus=[gpus[i % len(gpus)]])
        submitted.append(executor.submit(Worker(share, data_root, engine, time_limit_s, threads, fuse=fuse,
                                                decode=decode)))
    try:
        _watch(jobs, submitted, progress, say)
    except KeyboardInterrupt:  # stop the workers too; their runs resume on the next `resbench run`
        for worker in submitted:
            worker.cancel()
        raise
    for worker in submitted:
        if (exc := worker.exception()) is not None:
            say(f"worker {worker.job_id} stopped: {str(exc).strip().splitlines()[-1]}; "
                f"log: {worker.paths.stderr}")
    return [{"dir": str(j.dir), **read_summary(j.dir), "status": run_state(j.dir)} for j in jobs]


def submit_slurm(jobs: list[Job], parallel: int, data_root: str | None, engine: Engine, out: Path,
                 options: SlurmOptions, fuse: int = 1, decode: str = "workers") -> list[str]:
    """Submit one array task per run, or per fused group of runs (at most `parallel` at once);
    returns the Slurm job ids."""
    import submitit

    from resbench.train.runspec import ImageNetRun

    data_parallel = any(isinstance(job.run, ImageNetRun) for job in jobs)
    executor = submitit.AutoExecutor(folder=Path(out) / ".submitit" / "%j", cluster="slurm",
                                     slurm_max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(**options.executor_parameters(parallel, data_parallel))
    with executor.batch():
        submitted = [executor.submit(Worker(group, data_root, engine, data_parallel=data_parallel, fuse=len(group),
                                            decode=decode)) for group in make_groups(jobs, fuse)]
    return [j.job_id for j in submitted]


def _local_gpus(engine: Engine) -> list[int]:
    if not engine.device.startswith("cuda"):
        return []
    import torch

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
