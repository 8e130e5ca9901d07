"""From a declared experiment to run directories: which runs, and where.

plan (rows x seeds) -> resolve (config, hash, run directory) -> train the jobs (`resbench.sweep.jobs`),
here or in worker processes / Slurm tasks (`resbench.sweep.launch`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

from resbench.data.cifar import cifar10_files
from resbench.data.imagenet import decode_place, find_imagenet, make_synthetic
from resbench.models import canonical_name, parse_model_name
from resbench.paper.tiers import tier
from resbench.runs.rundir import config_key, forget_results, forget_summary, read_status, run_dir_for
from resbench.paper.declarations import Experiment, load_experiment
from resbench.sweep.jobs import Data, Job, Run, job_engine, resolve_fuse, train_jobs
from resbench.sweep.options import Schedule, Sweep
from resbench.runs.store import is_locked
from resbench.sweep.timebox import START_S, Pace, Paces, TimeBox
from resbench.runs.checkpoint import remove_checkpoints
from resbench.train.engine import Engine
from resbench.train.runspec import CifarRun, ImageNetRun
from resbench.paper.recipes import cifar_recipe, imagenet_recipe, parse_budget


# the short presets (smoke, demo) skip the deepest nets unless they are named with --models
SMOKE_MAX_DEPTH = {"cifar": 110, "imagenet": 50}


@dataclass(frozen=True)
class PlannedRun:
    row: str
    run: Run
    skip_reason: str | None = None
    precision: str | None = None  # the row's arithmetic, where it declares one (a precision control)

    @property
    def cost(self) -> int:
        """Images x depth: a CIFAR run's training arithmetic, up to a constant (every stage of these nets
        has the same multiply-adds per layer), for ordering runs cheapest first."""
        return self.run.recipe.iterations * self.run.recipe.batch_size * parse_model_name(self.run.model).depth


def plan(exp: Experiment, preset: str, models: list[str] | None = None, seeds: int | None = None,
         overrides: dict | None = None, budget: Fraction = Fraction(1)) -> list[PlannedRun]:
    """The runs of `exp`'s rows (optionally only `models`), seeds 0..seeds-1 each.

    Without `seeds`, a row gets as many runs as the paper's number summarises (`row.seeds`:
    five for ResNet-110, whose best of 5 the paper reports), every other row one.

    `overrides` change the recipe of every run (e.g. {"lr": 0.05}); they are recorded apart
    from the row's own options (the paper's), and make the run a proxy (`resbench.paper.tiers`).
    `budget` (CIFAR) compresses the schedule (`CifarRecipe.with_budget`): a budget tier, a proxy too; a
    declaration with budgets of its own (a plan such as the ladder) runs every row at each of them.
    An ImageNet network has one name (`canonical_name`), so the tables that test it share its run.
    A declaration ordered "cheapest" gives its runs by cost, seed by seed among equal costs, so that a
    deadline cut keeps the most finished evidence.
    """
    if budget != 1 and exp.dataset != "cifar":
        raise ValueError(f"--budget compresses the CIFAR-10 schedule; {exp.name} is an ImageNet experiment")
    if budget != 1 and exp.budgets:
        raise ValueError(f"{exp.name} declares its budgets ({', '.join(exp.budgets)}); leave out --budget")
    if not exp.trains:
        raise ValueError(f"{exp.name} has nothing to train ({exp.kind}); "
                         + ("see `resbench flops`" if exp.kind == "complexity" else "see its declaration"))
    rows = exp.runnable_rows
    if models:
        unknown = set(models) - {r.model for r in rows}
        if unknown:
            raise ValueError(f"{exp.name} has no rows for {', '.join(sorted(unknown))}; "
                             f"its models: {', '.join(r.model for r in rows)}")
        rows = tuple(r for r in rows if r.model in models)
    planned = []
    for share in [parse_budget(b) for b in exp.budgets] or [budget]:
        for row in rows:
            skip = None
            if preset != "paper" and not models and parse_model_name(row.model).depth > SMOKE_MAX_DEPTH[exp.dataset]:
                skip = f"too big for a {preset} run; name it with --models {row.model} to include it"
            for seed in range(seeds or row.seeds):
                run = _run(exp, row.model, preset, row.options, overrides or {}, seed, share)
                planned.append(PlannedRun(row.id, run, skip, row.precision))
    if exp.order == "cheapest":
        planned.sort(key=lambda p: (p.cost, p.run.seed))
    return planned


def _run(exp: Experiment, model: str, preset: str, options: dict, overrides: dict, seed: int,
         budget: Fraction) -> Run:
    frozen, changed = tuple(sorted(options.items())), tuple(sorted(overrides.items()))
    if exp.dataset == "imagenet":
        recipe = imagenet_recipe(preset, **{**options, **overrides})
        return ImageNetRun(canonical_name(model), recipe, seed, preset, frozen, changed)
    recipe = cifar_recipe(preset, **{**options, **overrides}).with_budget(budget)
    return CifarRun(canonical_name(model), recipe, seed, preset, frozen, changed, budget)


def load_data(runs: list[Run], data_root: str | None = None, synthetic: Path | None = None,
              decode: str = "auto", device: str = "cpu") -> Data:
    """The data the runs train on: CIFAR-10, ImageNet, or (`synthetic`) a generated image folder.
    ImageNet's JPEGs are decoded where `decode` says, on `device` or in workers (`decode_place`)."""
    if not all(isinstance(r, CifarRun) for r in runs):
        if synthetic is not None:
            if data_root:
                raise ValueError("--synthetic generates its own images; leave out --data-root")
            if not (synthetic / "train").is_dir():
                make_synthetic(synthetic)
            data_root = str(synthetic)
        return replace(find_imagenet(data_root), decode=decode_place(decode, device))
    if synthetic is not None:
        raise ValueError("--synthetic is for the ImageNet experiments; CIFAR-10 runs use the real data")
    return cifar10_files(data_root, val_split=any(r.recipe.val_split for r in runs))  # decoded when a run trains


def resolve(run: Run, data: Data, engine: Engine, out: Path, precision: str | None = None) -> Job:
    """The job of `run`: its config (in the `precision` its declaration asks for, else the engine's) and directory."""
    job = Job(run, {}, Path(), precision)
    config = run.config(data, job_engine(job, engine))
    config["tier"] = tier(config)  # for whoever reads config.json; reports recompute it
    config["key"] = config_key(config)
    return replace(job, config=config, dir=run_dir_for(out, run.model, run.schedule, config["key"], run.seed))


def reset(job: Job) -> None:
    """Forget a run's progress and result (--fresh); refused while a process trains it."""
    if is_locked(job.dir):
        raise ValueError(f"{job.dir} is being trained by another process; not reset")
    remove_checkpoints(job.dir)
    forget_results(job.dir)


def prepare(sweep: Sweep, engine: Engine = Engine(), data: Data | None = None,
            say: Callable[[str], None] = print) -> tuple[list[Job], Data, Engine]:
    """Plan and resolve `sweep`: the jobs to train, the data and the resolved engine. `data`: data loaded
    already (tests), in place of finding it from `sweep.data_root`.

    `sweep.synthetic` (ImageNet experiments): train on a small generated folder, made once in
    `<out>/.synthetic-imagenet`; its runs are marked synthetic and never compared with the paper.
    `sweep.budget` ('1/32'): the preset's schedule compressed to that share (`CifarRecipe.with_budget`).
    `sweep.decode` (ImageNet): where the training JPEGs are decoded (`resbench.data.imagenet.decode_place`).
    """
    sweep.validate()
    name, out = sweep.experiment, Path(sweep.out)
    planned = plan(load_experiment(name), sweep.preset, sweep.models, sweep.seeds, sweep.overrides,
                   parse_budget(sweep.budget))
    if not engine.is_resolved and engine.precision != "auto" and (rows := {p.precision for p in planned} - {None, engine.precision}):
        raise ValueError(f"{name} declares its rows' precision ({', '.join(sorted(rows))}); leave out --precision "
                         "and --fp32")
    engine = engine if engine.is_resolved else engine.resolve()  # explicit: e.g. for Slurm's GPU nodes
    data = data or load_data([p.run for p in planned], sweep.data_root,
                             out / ".synthetic-imagenet" if sweep.synthetic else None, sweep.decode, engine.device)
    jobs = []
    for p in planned:
        if p.skip_reason:
            say(f"skip {p.run.model}: {p.skip_reason}")
            continue
        job = resolve(p.run, data, engine, out, p.precision)
        if sweep.fresh and job.dir.exists():
            reset(job)
        elif read_status(job.dir) == "failed":  # a new sweep retries a failed run, from its checkpoint
            forget_summary(job.dir)
        jobs.append(job)
    return jobs, data, engine


def run_experiment(sweep: Sweep, engine: Engine = Engine(), schedule: Schedule = Schedule(),
                   data: Data | None = None, say: Callable[[str], None] = print,
                   pace: Callable[[Job], Pace] | None = None) -> list[dict]:
    """Train, in this process, every planned run of `sweep` that has not finished; returns summaries.

    `schedule.deadline` (epoch seconds): start only the runs that fit before it, by `pace` (default: `Paces`,
    from the runs' logs or a short measurement), and pause what still trains at it (`resbench.sweep.timebox`)."""
    schedule.validate()
    jobs, data, engine = prepare(sweep, engine, data, say)
    # in this process, --pack auto is one run at a time: the machine profile is the command's (resbench.sweep.launch.start)
    schedule = replace(schedule, fuse=resolve_fuse(schedule.fuse, engine),
                       pack=1 if schedule.pack == "auto" else int(schedule.pack))
    box = time_box(schedule.deadline, engine, schedule.pack, pace) if schedule.deadline is not None else None
    return train_jobs(jobs, data, engine, schedule, say, box)


def time_box(end: float, engine: Engine, slots: int = 1, pace: Callable[[Job], Pace] | None = None) -> TimeBox:
    """The `TimeBox` of a deadline (epoch seconds) on this engine's device, `slots` runs at a time."""
    engine = engine.resolve()
    return TimeBox(end, pace or Paces(engine), slots, start_s=START_S["cuda" if engine.device.startswith("cuda")
                                                                    else "cpu"])
