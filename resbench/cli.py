"""The `resbench` command. Thin: it parses arguments and calls the library."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Reproduce He et al., Deep Residual Learning (2015): run, measure, report.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and a non-zero exit: how every user error ends."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command("list")
def list_experiments() -> None:
    """Show the declared experiments (experiments/*.toml) and their rows."""
    from .spec import all_experiments

    for exp in all_experiments():
        table = Table(title=f"[bold]{exp.name}[/]  {exp.title}", title_justify="left", expand=False)
        for col in ("row", "model", "options", *exp.metrics, "note"):
            table.add_column(col)
        for row in exp.rows:
            model = row.model or (", ".join(row.members) if row.members else "[dim]-[/]")
            opts = " ".join(f"{k}={v}" for k, v in row.options.items())
            values = [str(row.paper.get(m, "")) for m in exp.metrics]
            table.add_row(row.id, model, opts, *values, row.note)
        console.print(table)


@app.command()
def flops(
    models: Optional[List[str]] = typer.Argument(None, help="model names (default: every paper model)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a table"),
    write_golden: Optional[Path] = typer.Option(None, help="write the golden CSV the CI check compares with"),
) -> None:
    """Parameters and multiply-adds (fvcore, cross-checked by FlopCounterMode) vs the paper."""
    from .probes.complexity import complexity, paper_models, paper_reference, write_golden as write_csv

    names = models or paper_models()
    try:
        rows = [complexity(n) for n in names]
    except ValueError as err:
        fail(str(err))
    if write_golden:
        write_csv(str(write_golden), rows)
        console.print(f"wrote {len(rows)} models to {write_golden}")
        return
    if as_json:
        print(json.dumps([r.as_dict() for r in rows], indent=1))
        return
    table = Table(title="Complexity: 1 FLOP = 1 multiply-add of conv/FC layers (the paper's convention)")
    for col in ("model", "input", "params (M)", "GMACs", "paper", "ours / paper"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        ref = paper_reference(r.model)
        paper, ratio = "", ""
        if ref:
            metric, value, scale = ref
            ours = r.macs if metric == "flops" else r.params
            paper, ratio = f"{value} {'G' if metric == 'flops' else 'M params'}", f"{ours / scale / value:.3f}"
        table.add_row(r.model, f"{r.input_size}²", f"{r.params / 1e6:.3f}", f"{r.macs / 1e9:.3f}", paper, ratio)
    console.print(table)


def _split(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _overrides(settings: Optional[List[str]]) -> dict:
    """--set key=value (value as JSON where it parses, e.g. lr=0.05, milestones=[100,200])."""
    out = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


SPEED, SLURM = "Speed", "Slurm (--launcher slurm)"  # option groups in --help


@app.command()
def run(
    experiment: str = typer.Argument(..., help="table2-4, table6, figure1, figure4, figure6, figure7 "
                                     "(see `resbench list`)"),
    preset: str = typer.Option("paper", help="paper: the full recipe; demo: 200 iterations of it (CPU, ~1 min "
                                "per small net); smoke: the fastest real run (tests)"),
    models: Optional[str] = typer.Option(None, help="comma-separated subset of the rows, e.g. resnet20,plain56"),
    seeds: Optional[int] = typer.Option(None, min=1, help="runs per row, seeds 0..N-1 (default: as many as the "
                                        "paper's number summarises: 5 for ResNet-110, else 1)"),
    jobs: int = typer.Option(1, min=1, help="runs trained at once (worker processes, or Slurm tasks)"),
    launcher: Optional[str] = typer.Option(None, help="inline (jobs=1), local (submitit, jobs>1) or slurm"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    out: Path = typer.Option(Path("runs"), help="results folder: one run directory per run"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10 (else $RESBENCH_DATA, ...) "
                                             "or ImageNet (train/, val/; else $RESBENCH_IMAGENET)"),
    synthetic: bool = typer.Option(False, "--synthetic", help="ImageNet experiments: a small generated image "
                                   "folder for a dry run (results marked synthetic)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="recipe override key=value, e.g. lr=0.05 "
                                             "(recorded: such runs are not the paper's recipe)"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", rich_help_panel=SPEED,
                                           help="torch.compile (default: on GPU)"),
    compile_mode: str = typer.Option("reduce-overhead", help="torch.compile mode", rich_help_panel=SPEED),
    fp32: bool = typer.Option(False, "--fp32", rich_help_panel=SPEED,
                              help="no bf16 autocast (the plain path, for comparison)"),
    deterministic: bool = typer.Option(False, help="deterministic kernels (slower)", rich_help_panel=SPEED),
    decode: str = typer.Option("auto", rich_help_panel=SPEED,
                               help="ImageNet JPEGs: device (nvJPEG on the GPU), workers (PIL); auto: device on CUDA"),
    fuse: str = typer.Option("auto", rich_help_panel=SPEED,
                             help="train N seeds of a row together in one process (vmap over the runs); auto: "
                                  "the GPU measurement's choice, 1 on CPU"),
    time_limit: Optional[float] = typer.Option(None, help="minutes; checkpoint and stop (status paused) after"),
    fresh: bool = typer.Option(False, "--fresh", help="start unfinished or finished runs again from scratch"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    partition: Optional[str] = typer.Option(None, help="slurm: partition", rich_help_panel=SLURM),
    account: Optional[str] = typer.Option(None, help="slurm: account", rich_help_panel=SLURM),
    gpus_per_task: int = typer.Option(1, min=0, help="slurm: GPUs per run", rich_help_panel=SLURM),
    cpus_per_task: int = typer.Option(8, min=1, help="slurm: CPU cores per run", rich_help_panel=SLURM),
    slurm_time: int = typer.Option(240, min=1, rich_help_panel=SLURM,
                                   help="slurm: minutes per task; longer runs requeue and resume"),
    nodes: int = typer.Option(1, min=1, help="slurm, ImageNet: nodes per run (one process per GPU)",
                              rich_help_panel=SLURM),
) -> None:
    """Train the rows of an experiment; finished runs are skipped, unfinished ones resume."""
    from .data import DataError
    from .launch import LAUNCHERS, SlurmOptions, launch_local, submit_slurm
    from .runner import prepare, resolve_fuse, train_jobs
    from .train.distributed import init_from_env
    from .train.engine import Engine

    launcher = launcher or ("inline" if jobs == 1 else "local")
    if (rank_device := init_from_env()) is not None:  # started by torchrun: one data-parallel process
        device, launcher = rank_device, "inline"
    engine = Engine(device=device, precision="fp32" if fp32 else "auto", compile=compile,
                    compile_mode=compile_mode, deterministic=deterministic, decode=decode)
    if launcher == "slurm" and gpus_per_task and device == "auto":  # resolved for the GPU nodes, not this one
        engine = Engine("cuda", "fp32" if fp32 else "bf16", compile is not False, compile_mode,
                        deterministic=deterministic, decode="device" if decode == "auto" else decode)
    time_limit_s = time_limit * 60 if time_limit else None
    try:
        if launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {launcher!r}; choose one of {', '.join(LAUNCHERS)}")
        todo, data, engine = prepare(experiment, preset, _split(models), seeds, out,
                                     data_root=str(data_root) if data_root else None, engine=engine,
                                     overrides=_overrides(set_), fresh=fresh, synthetic=synthetic,
                                     say=console.print)
        root = data.source  # workers read the very folder the plan was made on
        fused = resolve_fuse(fuse, engine)
        if launcher == "slurm":
            options = SlurmOptions(partition, account, gpus_per_task, cpus_per_task, slurm_time, nodes=nodes)
            ids = submit_slurm(todo, jobs, root, engine, out, options, fused)
            console.print(f"submitted {len(ids)} Slurm tasks ({ids[0] if ids else '-'} ...); "
                          f"follow them with: resbench status {experiment} --out {out}")
            return
        if launcher == "local":
            results = launch_local(todo, jobs, root, engine, out, time_limit_s, not quiet, console.print, fused)
        else:
            results = train_jobs(todo, data, engine, not quiet, time_limit_s, console.print, fused)
    except (DataError, ValueError, KeyError) as err:
        fail(str(err).strip("'\""))
    except OSError as err:
        fail(f"cannot write results to {out}: {err.strerror or err}")
    console.print(outcome(results) + f"; results in {out}/ (progress: resbench status --out {out}; "
                  f"report: resbench report --{experiment.rstrip('0123456789')} "
                  f"{experiment.lstrip('tablefigure')} --runs {out})")
    if any(r["status"] == "failed" for r in results):
        raise typer.Exit(1)


def outcome(results: list[dict]) -> str:
    """'3/4 runs done, 1 running in another process'."""
    names = {"taken": "running in another process", "running": "running in another process"}
    counts: dict[str, int] = {}
    for r in results:
        if r["status"] != "done":
            name = names.get(r["status"], r["status"])
            counts[name] = counts.get(name, 0) + 1
    done = sum(r["status"] == "done" for r in results)
    return f"{done}/{len(results)} runs done" + "".join(f", {n} {s}" for s, n in counts.items())


STATE_STYLE = {"done": "green", "running": "cyan", "paused": "yellow", "stopped": "yellow",
               "diverged": "magenta", "failed": "red"}


@app.command()
def status(
    experiment: Optional[str] = typer.Argument(None, help="only the runs of this experiment's rows"),
    out: Path = typer.Option(Path("runs"), help="results folder (resbench run --out)"),
) -> None:
    """Every run in a results folder: done, running, paused, stopped, failed or diverged, with progress."""
    from .spec import load_experiment
    from .store import load_runs

    runs = load_runs(out)
    if experiment:
        try:
            models = {r.model for r in load_experiment(experiment).runnable_rows}
        except KeyError as err:
            fail(str(err).strip("'\""))
        runs = runs[runs["model"].isin(models)]
    if runs.empty:
        console.print(f"no runs in {out}/" + (f" for {experiment}" if experiment else ""))
        return
    table = Table(title=f"runs in {out}/")
    table.add_column("run", overflow="fold")
    for col in ("status", "progress", "test error %", "img/s", "fused with", "note"):
        table.add_column(col, justify="right" if col in ("progress", "test error %", "img/s") else "left")
    for r in runs.itertuples():
        style = STATE_STYLE.get(r.status, "")
        table.add_row(r.run, f"[{style}]{r.status}[/]", f"{r.iteration or 0}/{r.iterations}",
                      "" if r.test_error is None or r.test_error != r.test_error else f"{r.test_error:.2f}",
                      "" if not r.img_per_s or r.img_per_s != r.img_per_s else f"{r.img_per_s:,.0f}",
                      ", ".join(f"s{name.rsplit('-s', 1)[1]}" for name in r.fused_with or []), r.note or "")
    console.print(table)
    counts = runs["status"].value_counts()
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()))


bench_app = typer.Typer(help="Throughput benchmarks (img/s), measured side by side in one run.")
app.add_typer(bench_app, name="bench")


@bench_app.command("cifar")
def bench_cifar(
    models: str = typer.Option("resnet20,resnet56,resnet110", help="comma-separated models"),
    iterations: int = typer.Option(200, min=1, help="timed iterations per loop"),
    warmup: int = typer.Option(30, min=0, help="untimed iterations first (compilation, cudnn autotune)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    workers: int = typer.Option(8, min=0, help="DataLoader workers of the plain loop"),
    compile_mode: str = typer.Option("reduce-overhead", help="torch.compile mode of the fast loop"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="default: on GPU"),
    bn_splits: int = typer.Option(2, min=1, help="fast loop: BN groups per batch (2 = the paper's 2x64)"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10"),
    out: Optional[Path] = typer.Option(None, help="also write the results as JSON here"),
) -> None:
    """The plain loop (DataLoader + PIL + fp32 eager) vs resbench's fast loop: img/s and ratio."""
    from dataclasses import asdict

    from .bench import fast_loop, plain_loop
    from .data import DataError
    from .data.cifar import load_cifar10
    from .results import environment, write_json
    from .train.engine import Engine
    from .train.recipe import CifarRecipe

    try:
        engine = Engine(device=device, compile=compile, compile_mode=compile_mode).resolve()
        recipe = CifarRecipe(bn_splits=bn_splits).validate()
        data = load_cifar10(data_root)
    except (DataError, ValueError) as err:
        fail(str(err))
    table = Table(title=f"CIFAR-10 training throughput on {engine.device}, batch 128")
    for col in ("model", "plain img/s", "fast img/s", "fast / plain", "fast loop"):
        table.add_column(col, justify="left" if col in ("model", "fast loop") else "right")
    results = []
    for name in _split(models) or []:
        plain = plain_loop(name, data, engine.device, iterations, warmup, workers)
        fast = fast_loop(name, data, engine, iterations, warmup, recipe)
        results += [plain, fast]
        table.add_row(name, f"{plain.img_per_s:,.0f}", f"{fast.img_per_s:,.0f}",
                      f"{fast.img_per_s / plain.img_per_s:.2f}x", fast.detail)
    console.print(table)
    if out:
        import torch

        write_json(out, {"results": [asdict(r) for r in results],
                         "env": environment(torch.device(engine.device), data.provenance())})
        console.print(f"wrote {out}")


@bench_app.command("jobs")
def bench_jobs(
    models: str = typer.Option("resnet20,resnet56", help="comma-separated models"),
    jobs: str = typer.Option("1,2,4,8", help="comma-separated numbers of trainings at once"),
    iterations: int = typer.Option(2000, min=20, help="iterations per training"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    compile_mode: str = typer.Option("reduce-overhead", help="torch.compile mode"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="default: on GPU"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10"),
    out: Optional[Path] = typer.Option(None, help="also write the results as JSON here"),
) -> None:
    """Aggregate img/s of N trainings sharing one device (resbench run --jobs N), for each N."""
    import tempfile

    import torch

    from .bench import packed_throughput
    from .data import DataError
    from .data.cifar import load_cifar10
    from .results import environment, write_json
    from .train.engine import Engine

    try:
        engine = Engine(device=device, compile=compile, compile_mode=compile_mode).resolve()
        data = load_cifar10(data_root)
        counts = [int(n) for n in _split(jobs) or []]
    except (DataError, ValueError) as err:
        fail(str(err))
    table = Table(title=f"Trainings packed on {engine.device}: aggregate img/s ({iterations} iterations each)")
    for col in ("model", "jobs", "steady img/s", "per run", "vs 1 job", "wall img/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    results = []
    for name in _split(models) or []:
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
                try:
                    r = packed_throughput(name, n, iterations, data, str(data_root) if data_root else None,
                                          engine, Path(tmp))
                except RuntimeError as err:
                    fail(str(err))
            results.append(r)
            one = next((x for x in results if x["model"] == name and x["jobs"] == 1), None)
            ratio = f"{r['steady_img_per_s'] / one['steady_img_per_s']:.2f}x" if one else ""
            table.add_row(name, str(n), f"{r['steady_img_per_s']:,.0f}", f"{r['per_run_img_per_s']:,.0f}", ratio,
                          f"{r['wall_img_per_s']:,.0f}")
    console.print(table)
    if out:
        write_json(out, {"results": results, "env": environment(torch.device(engine.device), data.provenance())})
        console.print(f"wrote {out}")


@bench_app.command("fuse")
def bench_fuse(
    models: str = typer.Option("resnet20,resnet56,resnet110", help="comma-separated models"),
    fuse: str = typer.Option("1,2,4,8", help="comma-separated numbers of seeds trained together"),
    iterations: int = typer.Option(500, min=20, help="iterations per training"),
    jobs: bool = typer.Option(True, "--jobs/--no-jobs", help="also N runs as N --jobs processes"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    compile_mode: str = typer.Option("reduce-overhead", help="torch.compile mode"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="default: on GPU"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10"),
    out: Optional[Path] = typer.Option(None, help="also write the results as JSON here"),
) -> None:
    """Aggregate img/s of N seeds fused into one training, next to N runs one after another and as N
    --jobs processes, on one device (resbench run --fuse N)."""
    import tempfile

    import torch

    from .bench import fused_throughput, packed_throughput
    from .data import DataError
    from .data.cifar import load_cifar10
    from .results import environment, write_json
    from .train.engine import Engine

    try:
        engine = Engine(device=device, compile=compile, compile_mode=compile_mode).resolve()
        data = load_cifar10(data_root)
        counts = [int(n) for n in _split(fuse) or []]
    except (DataError, ValueError) as err:
        fail(str(err))
    table = Table(title=f"N seeds on {engine.device}: aggregate img/s ({iterations} iterations each)")
    for col in ("model", "N", "fused", "vs 1 run", "one after another", *(["N --jobs"] if jobs else [])):
        table.add_column(col, justify="left" if col == "model" else "right")
    results = []
    for name in _split(models) or []:
        one = None
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
                try:
                    r = fused_throughput(name, n, iterations, data, engine, Path(tmp))
                    if jobs and n > 1:
                        r["jobs"] = packed_throughput(name, n, iterations, data, str(data_root) if data_root else None,
                                                      engine, Path(tmp) / "jobs")
                except RuntimeError as err:
                    fail(str(err))
            one = r if n == 1 else one
            results.append(r)
            ratio = f"{r['steady_img_per_s'] / one['steady_img_per_s']:.2f}x" if one else ""
            table.add_row(name, str(n), f"{r['steady_img_per_s']:,.0f}", ratio,
                          f"{one['steady_img_per_s']:,.0f}" if one else "",
                          *([f"{r['jobs']['steady_img_per_s']:,.0f}" if "jobs" in r else ""] if jobs else []))
    console.print(table)
    console.print("one after another: N runs back to back have the aggregate rate of one run (the N = 1 line)")
    if out:
        write_json(out, {"results": results, "env": environment(torch.device(engine.device), data.provenance())})
        console.print(f"wrote {out}")


@bench_app.command("imagenet")
def bench_imagenet(
    models: str = typer.Option("resnet50,plain34,resnet34,resnet101,resnet152",
                               help="comma-separated; the first is also measured end to end"),
    iterations: int = typer.Option(30, min=1, help="timed iterations per measurement"),
    warmup: int = typer.Option(10, min=0, help="untimed iterations first"),
    batch_size: int = typer.Option(256, min=1, help="images per step (the paper's global batch)"),
    workers: Optional[int] = typer.Option(None, min=0, help="decoding processes (default: every core)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    decode: str = typer.Option("auto", help="end to end: device (nvJPEG on the GPU), workers (PIL); auto: device on CUDA"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="default: on GPU"),
    data_root: Optional[Path] = typer.Option(None, help="an ImageNet folder; default: generated JPEGs"),
    images: int = typer.Option(2000, min=16, help="generated images (sides 300-500 px, like ImageNet's)"),
    crop: int = typer.Option(224, min=16, help="training crop (smaller only for tests)"),
    out: Optional[Path] = typer.Option(None, help="also write the results as JSON here"),
) -> None:
    """ImageNet training img/s: decoding alone, each model alone, ResNet-50 end to end; projected
    wall time of the paper's 600k iterations on 1 and 8 GPUs."""
    import os
    import tempfile

    import torch

    from .bench import imagenet_throughput
    from .data import DataError
    from .data.imagenet import find_imagenet, make_synthetic
    from .results import environment, write_json
    from .train.engine import Engine
    from .train.recipe import ImageNetRecipe

    names = _split(models) or []
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    with tempfile.TemporaryDirectory(prefix="resbench-imagenet-") as tmp:
        try:
            engine = Engine(device=device, compile=compile, decode=decode).resolve()
            recipe = ImageNetRecipe(crop=crop, scale_min=max(crop, min(256, 2 * crop)),
                                    scale_max=max(crop, min(480, 4 * crop)), test_size=max(crop, 256 * crop // 224),
                                    bn_group=min(32, batch_size)).validate()
            if data_root is None:
                console.print(f"generating {images} JPEGs (sides 300-500 px) in {tmp} ...")
                make_synthetic(Path(tmp), classes=10, per_class=max(1, images // 10), val_per_class=1,
                               sides=(300, 500))
            data = find_imagenet(data_root or tmp)
            r = imagenet_throughput(names, data, engine, iterations, warmup, batch_size, workers, recipe)
        except (DataError, ValueError) as err:
            fail(str(err))
    table = Table(title=f"ImageNet training throughput on {engine.device}, batch {batch_size}, crop {crop}, "
                        f"{workers} decoding processes")
    for col in ("measured", "img/s", "600k iterations: 1 GPU (h)", "8 GPUs (h)"):
        table.add_column(col, justify="left" if col == "measured" else "right")
    decoder = "nvJPEG" if engine.device.startswith("cuda") else "torchvision"
    table.add_row(f"decoding: PIL, {workers} workers", f"{r['pipeline_img_per_s']['workers']:,.0f}",
                  "", "")
    device_rate = r["pipeline_img_per_s"]["device"]
    table.add_row(f"decoding: {decoder} on {engine.device}",
                  "unavailable" if device_rate is None else f"{device_rate:,.0f}", "", "")
    for name, rate in r["model_img_per_s"].items():
        hours = r["projected_hours"][name]
        table.add_row(f"{name}, model only", f"{rate:,.0f}", f"{hours['1 GPU']:,}", f"{hours['8 GPUs']:,}")
    e2e = r["end_to_end"]
    table.add_row(f"{e2e['model']}, end to end ({e2e['decode']})", f"{e2e['img_per_s']:,.0f}", "", "")
    console.print(table)
    console.print(f"projection: min(model only, decoding on {engine.decode}) per GPU, "
                  "linear scaling to 8 GPUs assumed")
    if out:
        write_json(out, {**r, "env": environment(torch.device(engine.device), data.provenance())})
        console.print(f"wrote {out}")


@app.command()
def ensemble(
    runs: List[Path] = typer.Argument(..., help="finished ImageNet run directories"),
    test: str = typer.Option("multiscale", help="center, 10crop or multiscale (Table 5: multiscale)"),
    data_root: Optional[Path] = typer.Option(None, help="the ImageNet folder the runs trained on"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    out: Optional[Path] = typer.Option(None, help="also write the results as JSON here"),
) -> None:
    """Table 5: test several ImageNet runs alone and as an ensemble (softmax averaged)."""
    from .data import DataError
    from .data.imagenet import find_imagenet
    from .evaluation import ensemble_of_runs
    from .results import write_json
    from .train.engine import Engine

    try:
        if test not in ("center", "10crop", "multiscale"):
            raise ValueError(f"unknown test {test!r}; choose center, 10crop or multiscale")
        engine = Engine(device=device).resolve()
        root = data_root or next((json.loads((r / "config.json").read_text())["data"]["source"]
                                  for r in runs if (r / "config.json").exists()), None)
        result = ensemble_of_runs(runs, find_imagenet(root), engine, test)
    except (DataError, ValueError, KeyError) as err:
        fail(str(err).strip("'\""))
    table = Table(title=f"{test} test on {result['data_variant']} val")
    for col in ("run", "model", "top-1 err %", "top-5 err %"):
        table.add_column(col, justify="right" if "err" in col else "left")
    for m in result["members"]:
        table.add_row(m["run"], m["model"], f"{m['top1_err']:.2f}", f"{m['top5_err']:.2f}")
    table.add_row("[bold]ensemble[/]", f"{len(result['members'])} models", f"{result['top1_err']:.2f}",
                  f"{result['top5_err']:.2f}")
    console.print(table)
    if out:
        write_json(out, result)
        console.print(f"wrote {out}")


@app.command()
def report(
    table: Optional[List[int]] = typer.Option(None, "--table", help="1-6 (repeat for several)"),
    figure: Optional[List[int]] = typer.Option(None, "--figure", help="1, 4, 6 or 7 (repeat for several)"),
    all_: bool = typer.Option(False, "--all", help="every table and figure"),
    index: bool = typer.Option(False, "--index", help="only the index (OUT/README.md): reports there, runs owed"),
    runs: Path = typer.Option(Path("runs"), help="folder of run directories (resbench run --out)"),
    out: Path = typer.Option(Path("reports"), help="reports folder"),
    preset: Optional[str] = typer.Option(None, help="paper, demo or smoke (default: paper runs if any, "
                                         "else demo, else smoke)"),
    data_variant: Optional[str] = typer.Option(None, help="only runs on this data, e.g. cifar10-jpeg-q75"),
) -> None:
    """Regenerate tables and figures from runs (papermill notebooks) and diff them against the paper."""
    from .report.build import build_report
    from .report.index import build_index
    from .spec import experiment_names
    from .store import run_dirs

    if index:
        console.print(f"index: {build_index(out, runs)}")
        return
    names = list(experiment_names()) if all_ else \
        [f"table{n}" for n in table or []] + [f"figure{n}" for n in figure or []]
    if not names:
        fail("say what to report: --table N, --figure N or --all")
    if not runs.is_dir() or not run_dirs(runs):
        console.print(f"[yellow]no runs in {runs}/[/]: the reports show computed values and 'not run'")
    for name in names:
        try:
            out_dir = build_report(name, runs, out, preset, data_variant)
        except KeyError as err:
            fail(str(err).strip("'\""))
        summary = json.loads((out_dir / "summary.json").read_text())
        verdicts = ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items() if v) or "no paper numbers"
        statuses = [c["status"] for c in summary["claims"]]
        claims = ", ".join(f"{statuses.count(s)} {s}" for s in ("pass", "fail", "inconclusive", "not run")
                           if statuses.count(s))
        console.print(f"{name}: {out_dir}/README.md  ({summary['runs']} runs, {summary['preset']}; {verdicts}"
                      + (f"; claims: {claims})" if claims else ")"))
    console.print(f"index: {out}/README.md")
