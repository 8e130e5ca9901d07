"""The `resbench` command. Thin: it parses arguments and calls the library."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from resbench.cli.bench import bench_app
from resbench.cli.calibrate import calibrate_cmd
from resbench.cli.common import (OLD_OUT_HELP, RUNS_HELP, check_device, console, duration, fail, is_missing, message,
                                 name_list, one, outcome, overrides, runs_folder)
from resbench.cli.data import data_app
from resbench.cli.ensemble import ensemble_cmd
from resbench.cli.flops import flops_cmd
from resbench.cli.runs import runs_app
from resbench.cli.tune import tune_cmd
from resbench.data import DataError
from resbench.runs.rundir import RunDirError
from resbench.sweep.durations import parse_deadline, parse_duration

# Each command imports the parts of the library that load torch, torchvision or pandas (seconds each) when it
# runs, so that `resbench --help` and a mistyped option answer at once: with them all here, `--help` took 10-14 s
# instead of 0.5 s on a busy 2-core machine.

app = typer.Typer(help="Reproduce He et al., Deep Residual Learning (2015): run, measure, report.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(bench_app, name="bench")
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")


@app.command("list")
def list_experiments() -> None:
    """Show the declared experiments (experiments/*.toml) and their rows: the paper's tables and figures, then
    the plans (runs that feed their reports)."""
    from resbench.paper.declarations import declared_names, load_experiment

    for exp in map(load_experiment, declared_names()):
        budgets = f"  (budgets {', '.join(exp.budgets)}, {exp.order} first)" if exp.budgets else ""
        table = Table(title=f"[bold]{exp.name}[/]  {exp.title}{budgets}", title_justify="left", expand=False)
        for col in ("row", "model", "options", *exp.metrics, "note"):
            table.add_column(col)
        for row in exp.rows:
            model = row.model or (", ".join(row.members) if row.members else "[dim]-[/]")
            declared = {**row.options, **({"precision": row.precision} if row.precision else {}),
                        **({"seeds": row.seeds} if row.seeds > 1 else {})}
            opts = " ".join(f"{k}={v}" for k, v in declared.items())
            values = [str(row.paper.get(m, "")) for m in exp.metrics]
            table.add_row(row.id, model, opts, *values, row.note)
        console.print(table)


app.command("flops")(flops_cmd)


SPEED, SLURM = "Speed", "Slurm (--launcher slurm)"  # option groups in --help


@app.command()
def run(
    experiment: str = typer.Argument(..., help="table2-4, table6, figure1, figure4, figure6, figure7, or a plan: "
                                     "ladder, precision (see `resbench list`)"),
    preset: str = typer.Option("paper", help="paper: the full recipe; demo: 200 iterations of it (CPU, ~1 min "
                                "per small net); smoke: the fastest real run (tests)"),
    models: Optional[str] = typer.Option(None, help="comma-separated subset of the rows, e.g. resnet20,plain56"),
    seeds: Optional[int] = typer.Option(None, min=1, help="runs per row, seeds 0..N-1 (default: as many as the "
                                        "paper's number summarises: 5 for ResNet-110, else 1)"),
    jobs: int = typer.Option(1, min=1, help="runs trained at once (worker processes, or Slurm tasks)"),
    launcher: Optional[str] = typer.Option(None, help="inline (jobs=1), local (submitit, jobs>1) or slurm"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    runs_: Optional[List[Path]] = typer.Option(None, "--runs", show_default="runs", help=RUNS_HELP),
    old_out: Optional[List[Path]] = typer.Option(None, "--out", hidden=True, help=OLD_OUT_HELP),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10 (else $RESBENCH_DATA, ...) "
                                             "or ImageNet (train/, val/; else $RESBENCH_IMAGENET)"),
    synthetic: bool = typer.Option(False, "--synthetic", help="ImageNet experiments: a small generated image "
                                   "folder for a dry run (results marked synthetic)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="recipe override key=value, e.g. lr=0.05 "
                                             "(recorded: such runs are not the paper's recipe)"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", rich_help_panel=SPEED,
                                           help="torch.compile (default: on GPU)"),
    compile_mode: str = typer.Option("reduce-overhead", help="torch.compile mode", rich_help_panel=SPEED),
    precision: str = typer.Option("auto", rich_help_panel=SPEED,
                                  help="auto, bf16 (autocast) or fp32 (true fp32, TF32 off); auto: bf16 on a GPU, "
                                       "fp32 on a CPU (bf16 there only where it is native and asked for)"),
    fp32: bool = typer.Option(False, "--fp32", rich_help_panel=SPEED, help="the same as --precision fp32"),
    budget: str = typer.Option("1", help="train this share of the schedule, e.g. 1/32: iterations and lr "
                               "milestones scaled (a budget tier: a proxy, never the paper's number)"),
    deterministic: bool = typer.Option(False, help="deterministic kernels (slower)", rich_help_panel=SPEED),
    one_forward: bool = typer.Option(False, "--one-forward", rich_help_panel=SPEED,
                                     help="the BN halves in one vmapped forward (same arithmetic; off until the GPU "
                                          "shows it faster)"),
    decode: str = typer.Option("auto", rich_help_panel=SPEED,
                               help="ImageNet JPEGs: device (nvJPEG on the GPU), workers (PIL); auto: device on CUDA"),
    fuse: str = typer.Option("auto", rich_help_panel=SPEED,
                             help="train N seeds of a row together in one process (vmap over the runs); auto: "
                                  "the GPU measurement's choice, 1 on CPU"),
    pack: str = typer.Option("auto", rich_help_panel=SPEED,
                             help="train N CIFAR runs side by side in this process, each computing what it does "
                                  "alone, on its slot's CUDA stream; a finished run's slot takes the next. auto: the "
                                  "size `resbench tune` measured best on this GPU (measured briefly first where the "
                                  "profile lacks it), 1 on a CPU"),
    graph: Optional[bool] = typer.Option(None, "--graph/--no-graph", rich_help_panel=SPEED,
                                         help="CIFAR: each step captured in a CUDA graph (default: in packs on CUDA)"),
    profile: Optional[Path] = typer.Option(None, rich_help_panel=SPEED,
                                           help="the machine profile --pack auto reads (default: resbench tune's)"),
    time_limit: Optional[str] = typer.Option(None, help="a duration (90s, 45m, 2h, 1h30m): checkpoint and stop "
                                             "(status paused) after it"),
    deadline: Optional[str] = typer.Option(None, help="a duration (45m, 2h) or an end time (14:30, "
                                           "2026-12-03T14:30): start only runs estimated to finish before it, "
                                           "fill the time left with shorter ones, pause what still trains at it; "
                                           "the same command again resumes"),
    fresh: bool = typer.Option(False, "--fresh", help="start unfinished or finished runs again from scratch"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    partition: Optional[str] = typer.Option(None, help="slurm: partition", rich_help_panel=SLURM),
    account: Optional[str] = typer.Option(None, help="slurm: account", rich_help_panel=SLURM),
    gpus_per_task: int = typer.Option(1, min=0, help="slurm: GPUs per run", rich_help_panel=SLURM),
    cpus_per_task: int = typer.Option(8, min=1, help="slurm: CPU cores per run", rich_help_panel=SLURM),
    slurm_time: int = typer.Option(240, min=1, rich_help_panel=SLURM,
                                   help="slurm: minutes per task; longer runs requeue and resume"),
    mem_gb: int = typer.Option(32, min=1, help="slurm: memory per task, GB", rich_help_panel=SLURM),
    nodes: int = typer.Option(1, min=1, help="slurm, ImageNet: nodes per run (one process per GPU)",
                              rich_help_panel=SLURM),
) -> None:
    """Train the rows of an experiment; finished runs are skipped, unfinished ones resume."""
    from resbench.bench.tune import auto_pack
    from resbench.sweep.options import Schedule, SlurmOptions, Sweep
    from resbench.sweep.launch import start
    from resbench.train.engine import Engine

    out = runs_folder(runs_, old_out)
    engine = Engine(device=check_device(device), precision="fp32" if fp32 else precision, compile=compile,
                    compile_mode=compile_mode, deterministic=deterministic, one_forward=one_forward,
                    graph="cuda" if graph else "off")
    try:
        sweep = Sweep(experiment, preset, models=name_list(models, "--models"), seeds=seeds, budget=budget,
                      overrides=overrides(set_), out=out, data_root=str(data_root) if data_root else None,
                      fresh=fresh, synthetic=synthetic, decode=decode)
        slurm = SlurmOptions(partition, account, gpus=gpus_per_task, cpus=cpus_per_task, time_min=slurm_time,
                             mem_gb=mem_gb, nodes=nodes)
        schedule = Schedule(launcher, jobs, fuse=_count(fuse), pack=_count(pack), graph=graph, profile=profile,
                            time_limit_s=parse_duration(time_limit) if time_limit is not None else None,
                            deadline=parse_deadline(deadline).timestamp() if deadline is not None else None,
                            progress=not quiet, slurm=slurm)
        started = start(sweep, schedule, engine, console.print, pack_size=auto_pack)
    except (DataError, ValueError, KeyError) as err:
        fail(message(err))
    except OSError as err:
        fail(f"cannot write results to {out}: {err.strerror or err}")
    if started.submitted:
        console.print(f"submitted {len(started.submitted)} Slurm tasks ({started.submitted[0]} ...); "
                      f"follow them with: resbench status {experiment} --runs {out}"
                      + ("; under the deadline each task starts its runs only if they fit (its log says which it "
                         "did not start)" if deadline else ""))
        return
    console.print(outcome(started.results) + f"; results in {out}/ (progress: resbench status --runs {out}; "
                  f"report: resbench report {started.report} --runs {out})")
    if any(r["status"] == "failed" for r in started.results):
        raise typer.Exit(1)


def _count(value: str) -> int | str:
    """--fuse, --pack: a number of runs as an int, else as given (auto; nonsense is refused by Schedule)."""
    return int(value) if value.isdigit() else value


STATE_STYLE = {"done": "green", "running": "cyan", "paused": "yellow", "stopped": "yellow",
               "diverged": "magenta", "failed": "red"}


@app.command()
def status(
    experiment: Optional[str] = typer.Argument(None, help="only the runs of this experiment's rows"),
    runs_: Optional[List[Path]] = typer.Option(None, "--runs", show_default="runs", help=RUNS_HELP),
    old_out: Optional[List[Path]] = typer.Option(None, "--out", hidden=True, help=OLD_OUT_HELP),
) -> None:
    """Every run in a results folder: done, running, paused, stopped, failed or diverged, with progress."""
    from resbench.paper.declarations import load_experiment
    from resbench.report.runs import load_runs

    out = runs_folder(runs_, old_out)
    if not out.exists():
        fail(f"no results folder {out}/: train some runs first (resbench run ... --runs {out})")
    if not out.is_dir():
        fail(f"{out} is a file, not a results folder: give --runs the folder that `resbench run` wrote")
    try:
        runs = load_runs(out)
    except RunDirError as err:
        fail(str(err))
    if experiment:
        try:
            models = {r.model for r in load_experiment(experiment).runnable_rows}
        except KeyError as err:
            fail(message(err))
        runs = runs[runs["model"].isin(models)]
    if runs.empty:
        console.print(f"no runs in {out}/" + (f" for {experiment}" if experiment else ""))
        return
    rows = [[r.run, f"[{STATE_STYLE.get(r.status, '')}]{r.status}[/]", f"{r.iteration or 0}/{r.iterations}",
             "" if is_missing(r.test_error) else f"{r.test_error:.2f}",
             "" if is_missing(r.img_per_s) or not r.img_per_s else f"{r.img_per_s:,.0f}",
             "" if is_missing(r.eta_s) else duration(r.eta_s),
             ", ".join(f"s{name.rsplit('-s', 1)[1]}" for name in _listed(r.fused_with)),
             "" if is_missing(r.note) else str(r.note)]
            for r in runs.itertuples()]
    columns = ("run", "status", "progress", "test error %", "img/s", "ETA", "fused with", "note")
    shown = [i for i, _ in enumerate(columns) if i < 2 or any(row[i] for row in rows)]  # no empty columns
    table = Table(title=f"runs in {out}/")
    for i in shown:  # a run's name on one line: it is what a reader copies
        table.add_column(columns[i], no_wrap=i == 0, justify="right" if 2 <= i <= 5 else "left")
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    counts = runs["status"].value_counts()
    left = runs["eta_s"].dropna()
    console.print(", ".join(f"{n} {s}" for s, n in counts.items())
                  + (f"; {duration(left.sum())} of training left at the measured img/s, one run at a time"
                     if len(left) else ""))


def _listed(value) -> list:
    return value if isinstance(value, list) else []


app.command("ensemble")(ensemble_cmd)


@app.command()
def report(
    table: Optional[List[int]] = typer.Option(None, "--table", help="1-6 (repeat for several)"),
    figure: Optional[List[int]] = typer.Option(None, "--figure", help="1, 4, 6 or 7 (repeat for several)"),
    all_: bool = typer.Option(False, "--all", help="every table and figure"),
    index: bool = typer.Option(False, "--index", help="only the index (OUT/README.md): reports there, runs owed"),
    runs_: List[Path] = typer.Option([Path("runs")], "--runs", help="results folder: the run directories of "
                                     "resbench run --runs"),
    out_: Optional[List[Path]] = typer.Option(None, "--out", help="reports folder (default: reports/ inside the "
                                              "--runs folder; the committed reports: --runs reports/runs --out "
                                              "reports)"),
    preset: Optional[str] = typer.Option(None, help="paper, demo or smoke (default: paper runs if any, "
                                         "else demo, else smoke)"),
    data_variant: Optional[str] = typer.Option(None, help="only runs on this data, e.g. cifar10-jpeg-q75"),
    replace: bool = typer.Option(False, "--replace", help="rebuild a report folder that was built from another "
                                 "runs folder (else refused: the committed reports/ come from reports/runs/)"),
    jobs: Optional[int] = typer.Option(None, min=1, help="reports built at once (default: one per core)"),
) -> None:
    """Regenerate tables and figures from runs (papermill notebooks) and diff them against the paper."""
    from resbench.paper.declarations import experiment_names, load_experiment

    names = list(experiment_names()) if all_ else \
        [f"table{n}" for n in table or []] + [f"figure{n}" for n in figure or []]
    if not names and not index:
        fail("say what to report: --table N, --figure N or --all")
    try:
        for name in names:  # a wrong number is refused before the reports' libraries load (seconds)
            load_experiment(name)
    except KeyError as err:
        fail(message(err))
    from resbench.report.build import ReportError, build_reports, reports_folder, writable
    from resbench.report.claims import claims_line
    from resbench.report.core import counts_line
    from resbench.report.folder import read_report
    from resbench.report.index import build_index

    runs = one(runs_, "--runs")
    out = reports_folder(runs, one(out_, "--out") if out_ else None)
    try:
        if index:
            if not runs.is_dir():
                fail(f"no results folder {runs}/: give --runs the folder that `resbench run` wrote")
            writable(out)
            console.print(f"index: {build_index(out, runs)}")
            return
        built = build_reports(names, runs, out, preset, data_variant, replace, jobs)
    except (KeyError, RunDirError, ReportError) as err:
        fail(message(err))
    except OSError as err:  # e.g. the disk filled up during a build
        fail(f"cannot write reports to {out}/: {err.strerror or err}")
    for out_dir in built:
        summary = read_report(out_dir)
        verdicts = counts_line(summary["trained"], summary["computed"])
        claims = claims_line(c["status"] for c in summary["claims"])  # exploratory lines counted apart
        console.print(f"{out_dir.name}: {out_dir}/README.md  ({summary['runs']} runs, {summary['preset']}; {verdicts}"
                      + (f"; claims: {claims})" if claims else ")"))
    console.print(f"index: {out}/README.md")


app.command("calibrate")(calibrate_cmd)  # after the others: `resbench --help` lists commands in this order
app.command("tune")(tune_cmd)
