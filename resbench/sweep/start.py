"""`resbench run` as one call: the launcher picked, the engine settled, the runs planned, then trained here,
by worker processes on this machine, or submitted as Slurm tasks."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from resbench.paper.declarations import load_experiment
from resbench.sweep.jobs import resolve_fuse, train_jobs
from resbench.sweep.launch import launch_local, submit_slurm
from resbench.sweep.options import Schedule, Sweep
from resbench.sweep.plan import prepare, time_box
from resbench.train.distributed import init_from_env
from resbench.train.engine import Engine

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
