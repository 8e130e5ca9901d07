"""What a sweep is asked to do, as two options objects: `Sweep` (which runs, on what data, where their results
go) and `Schedule` (how they train: where, how many at once, for how long). Each `validate()` refuses
nonsense with a one-line ValueError before any data is looked for or any run directory is made."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from resbench.paper.recipes import parse_budget

LAUNCHERS = ("inline", "local", "slurm")
PRESETS = ("paper", "demo", "smoke")
DECODES = ("auto", "device", "workers")


@dataclass(frozen=True)
class Sweep:
    """Which runs: an experiment's rows and seeds, and where their results go."""

    experiment: str  # a declaration in experiments/ (table6, figure1, a plan such as ladder)
    preset: str = "paper"  # paper: the full recipe; demo: 200 iterations of it; smoke: the fastest real run
    models: list[str] | None = None  # a subset of the rows by model name; None: every row
    seeds: int | None = None  # runs per row, seeds 0..N-1; None: as many as the paper's number summarises
    budget: str = "1"  # the share of the schedule trained, e.g. "1/32" (a budget tier: a proxy)
    overrides: dict = field(default_factory=dict)  # recipe key -> value (recorded: not the paper's recipe)
    out: Path = Path("runs")  # the results folder: one run directory per run
    data_root: str | None = None  # CIFAR-10 or ImageNet folder; None: $RESBENCH_DATA, $RESBENCH_IMAGENET, ...
    fresh: bool = False  # start unfinished or finished runs again from scratch
    synthetic: bool = False  # ImageNet: a small generated image folder for a dry run (marked synthetic)
    decode: str = "auto"  # ImageNet JPEGs: device (nvJPEG), workers (PIL); auto: device on CUDA

    def validate(self) -> Sweep:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"--seeds takes a number of runs per row (1 or more), got {self.seeds}")
        if self.models is not None and not all(self.models):
            raise ValueError("--models has an empty name: give comma-separated names, or leave it out for all")
        if self.decode not in DECODES:
            raise ValueError(f"--decode takes {', '.join(DECODES)}, got {self.decode!r}")
        parse_budget(self.budget)  # its own one-line error
        return self


@dataclass(frozen=True)
class SlurmOptions:
    """The resources of one Slurm task (`--launcher slurm`)."""

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


@dataclass(frozen=True)
class Schedule:
    """How a sweep's runs train: in this process, in worker processes or as Slurm tasks; how many at once;
    for how long."""

    # inline: this process; local: `jobs` worker processes here; slurm: a job array; None: inline for one
    # job at a time, else local
    launcher: str | None = None
    jobs: int = 1  # runs trained at once: worker processes (local) or Slurm tasks (slurm)
    fuse: int | str = 1  # a row's seeds stepped together in one process; "auto": the GPU measurement's choice
    pack: int | str = 1  # CIFAR runs side by side in one process (inline only); "auto": the machine profile's
    graph: bool | None = None  # CIFAR steps captured in CUDA graphs; None: in packs on CUDA
    profile: Path | None = None  # the machine profile --pack auto reads; None: resbench tune's
    time_limit_s: float | None = None  # checkpoint and stop (paused) after this many seconds
    deadline: float | None = None  # an end (epoch seconds): start only runs that fit before it, pause the rest
    progress: bool = True  # progress bars (off in worker processes and Slurm tasks: they write logs)
    slurm: SlurmOptions = SlurmOptions()  # each task's resources, for launcher slurm

    def picked(self) -> Schedule:
        """This schedule with its launcher decided."""
        return replace(self, launcher=self.launcher or ("inline" if self.jobs == 1 else "local"))

    def validate(self) -> Schedule:
        if self.launcher is None:
            return self.picked().validate()
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}; choose one of {', '.join(LAUNCHERS)}")
        if self.jobs < 1:
            raise ValueError(f"--jobs takes a number of runs at once (1 or more), got {self.jobs}")
        if self.launcher == "inline" and self.jobs > 1:
            raise ValueError("--launcher inline trains one run at a time in this process: leave out --jobs, "
                             "or use --launcher local or slurm")
        if self.deadline is not None and self.time_limit_s is not None:
            raise ValueError("--deadline and --time-limit both bound the time; give one")
        if not _count_or_auto(self.pack):
            raise ValueError(f"--pack takes a number of runs (1 or more) or auto, got {self.pack!r}")
        if not _count_or_auto(self.fuse):
            raise ValueError(f"--fuse takes a number of runs >= 1 or auto, got {self.fuse!r}")
        if str(self.pack) not in ("auto", "1") and self.launcher != "inline":
            raise ValueError("--pack trains its runs in this process: use it without --jobs or --launcher")
        if self.deadline is not None and str(self.fuse) not in ("auto", "1"):
            raise ValueError("--deadline plans runs one at a time or packed (--pack); it does not combine with "
                             "--fuse")
        return self


def _count_or_auto(value: int | str) -> bool:
    return value == "auto" or str(value).isdigit() and int(value) >= 1
