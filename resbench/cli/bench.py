"""`resbench bench ...`: throughput benchmarks, each measuring its contenders side by side in one run."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from resbench.cli.common import DEVICE, comma_list, console, fail

bench_app = typer.Typer(help="Throughput benchmarks (img/s), measured side by side in one run.")
# options every benchmark takes
COMPILE = typer.Option(None, "--compile/--no-compile", help="default: on GPU")
COMPILE_MODE = typer.Option("reduce-overhead", help="torch.compile mode")
DATA_ROOT = typer.Option(None, help="folder holding CIFAR-10")
OUT = typer.Option(None, help="also write the results as JSON here")


def _counts(text: str, option: str) -> list[int]:
    try:
        counts = [int(n) for n in comma_list(text) or []]
    except ValueError:
        fail(f"expected comma-separated numbers, got {text!r}")
    if not counts or min(counts) < 1:
        fail(f"{option} takes comma-separated numbers of 1 or more, got {text!r}")
    return counts


def _networks(text: str, dataset: str = "cifar") -> list[str]:
    from resbench.bench.setup import networks

    try:
        return networks(comma_list(text) or [], dataset)
    except ValueError as err:
        fail(str(err))


def _setup(**options):
    """(resolved engine, CIFAR-10) for a CIFAR benchmark (resbench.bench.setup), or a one-line error."""
    from resbench.bench.setup import Setup, cifar_setup
    from resbench.data import DataError

    try:
        return cifar_setup(Setup(**options))
    except (DataError, ValueError) as err:
        fail(str(err))


def _write(out: Optional[Path], results: list | dict, engine, data, quiet: bool = False) -> None:
    if out:
        from resbench.bench.setup import write_results

        write_results(out, results, engine, data)
        if not quiet:
            console.print(f"wrote {out}")


@bench_app.command("cifar")
def bench_cifar(
    models: str = typer.Option("resnet20,resnet56,resnet110", help="comma-separated models"),
    iterations: int = typer.Option(200, min=1, help="timed iterations per loop"),
    warmup: int = typer.Option(30, min=0, help="untimed iterations first (compilation, cudnn autotune)"),
    device: str = DEVICE,
    precisions: str = typer.Option("fp32,bf16", help="fast loop: the arithmetics to measure side by side"),
    workers: int = typer.Option(8, min=0, help="DataLoader workers of the plain loop"),
    compile_mode: str = COMPILE_MODE,
    compile: Optional[bool] = COMPILE,
    bn_splits: int = typer.Option(2, min=1, help="fast loop: BN groups per batch (2 = the paper's 2x64)"),
    one_forward: bool = typer.Option(False, "--one-forward", help="fast loop: the BN groups in one vmapped "
                                     "forward, not one forward each (resbench.train.splits)"),
    data_root: Optional[Path] = DATA_ROOT,
    out: Optional[Path] = OUT,
) -> None:
    """The plain loop (DataLoader + PIL + fp32 eager) vs resbench's fast loop in each precision: img/s, ratios."""
    from dataclasses import asdict

    from resbench.bench.throughput import CifarBench, cifar_bench
    from resbench.host.machine import native_bf16

    try:
        options = CifarBench(models=tuple(_networks(models)), iterations=iterations, warmup=warmup,
                             precisions=tuple(comma_list(precisions) or []), workers=workers, bn_splits=bn_splits)
    except ValueError as err:
        fail(str(err))
    engine, data = _setup(device=device, compile=compile, compile_mode=compile_mode, data_root=data_root,
                          one_forward=one_forward, precision=options.precisions[0])
    cpu = "" if engine.device.startswith("cuda") else f" ({'native' if native_bf16() else 'no native'} bf16)"
    table = Table(title=f"CIFAR-10 training throughput on {engine.device}{cpu}, batch 128")
    for col in ("model", "loop", "img/s", "vs plain", f"vs fast {options.precisions[0]}", "detail"):
        table.add_column(col, justify="left" if col in ("model", "loop", "detail") else "right")
    results = list(cifar_bench(options, data, engine))
    for r in results:
        if r.loop == "plain":
            plain, reference = r, None
            table.add_row(r.model, "plain", f"{r.img_per_s:,.0f}", "1.00x", "", r.detail)
            continue
        reference = reference or r
        table.add_row("", r.loop, f"{r.img_per_s:,.0f}", f"{r.img_per_s / plain.img_per_s:.2f}x",
                      f"{r.img_per_s / reference.img_per_s:.2f}x", r.detail)
    console.print(table)
    _write(out, [asdict(r) for r in results], engine, data)


@bench_app.command("jobs")
def bench_jobs(
    models: str = typer.Option("resnet20,resnet56", help="comma-separated models"),
    jobs: str = typer.Option("1,2,4,8", help="comma-separated numbers of trainings at once"),
    iterations: int = typer.Option(2000, min=20, help="iterations per training"),
    device: str = DEVICE,
    compile_mode: str = COMPILE_MODE,
    compile: Optional[bool] = COMPILE,
    data_root: Optional[Path] = DATA_ROOT,
    out: Optional[Path] = OUT,
) -> None:
    """Aggregate img/s of N trainings sharing one device (resbench run --jobs N), for each N."""
    from resbench.bench.throughput import jobs_rows

    names, counts = _networks(models), _counts(jobs, "--jobs")
    engine, data = _setup(device=device, compile=compile, compile_mode=compile_mode, data_root=data_root)
    try:
        results = list(jobs_rows(names, counts, iterations, data, engine, data_root=data_root))
    except RuntimeError as err:
        fail(str(err))
    table = Table(title=f"N trainings as worker processes on {engine.device}: aggregate img/s ({iterations} iterations each)")
    for col in ("model", "jobs", "steady img/s", "per run", "vs 1 job", "wall img/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for i, r in enumerate(results):
        one = next((x for x in results[:i + 1] if x["model"] == r["model"] and x["jobs"] == 1), None)
        ratio = f"{r['steady_img_per_s'] / one['steady_img_per_s']:.2f}x" if one else ""
        table.add_row(r["model"], str(r["jobs"]), f"{r['steady_img_per_s']:,.0f}", f"{r['per_run_img_per_s']:,.0f}",
                      ratio, f"{r['wall_img_per_s']:,.0f}")
    console.print(table)
    _write(out, results, engine, data)


@bench_app.command("fuse")
def bench_fuse(
    models: str = typer.Option("resnet20,resnet56,resnet110", help="comma-separated models"),
    fuse: str = typer.Option("1,2,4,8", help="comma-separated numbers of seeds trained together"),
    iterations: int = typer.Option(500, min=20, help="iterations per training"),
    jobs: bool = typer.Option(True, "--jobs/--no-jobs", help="also N runs as N --jobs processes"),
    device: str = DEVICE,
    compile_mode: str = COMPILE_MODE,
    compile: Optional[bool] = COMPILE,
    data_root: Optional[Path] = DATA_ROOT,
    out: Optional[Path] = OUT,
) -> None:
    """Aggregate img/s of N seeds fused into one training, next to N runs one after another and as N
    --jobs processes, on one device (resbench run --fuse N)."""
    from resbench.bench.throughput import fuse_rows

    names, counts = _networks(models), _counts(fuse, "--fuse")
    engine, data = _setup(device=device, compile=compile, compile_mode=compile_mode, data_root=data_root)
    try:
        results = list(fuse_rows(names, counts, iterations, data, engine, data_root=data_root,
                                 jobs=jobs))
    except RuntimeError as err:
        fail(str(err))
    table = Table(title=f"N seeds on {engine.device}: aggregate img/s ({iterations} iterations each)")
    for col in ("model", "N", "fused", "vs 1 run", "one after another", *(["N --jobs"] if jobs else [])):
        table.add_column(col, justify="left" if col == "model" else "right")
    for i, r in enumerate(results):
        if i % len(counts) == 0:
            one = None  # the next model: its N = 1 line, once measured
        one = r if r["fuse"] == 1 else one
        ratio = f"{r['steady_img_per_s'] / one['steady_img_per_s']:.2f}x" if one else ""
        table.add_row(r["model"], str(r["fuse"]), f"{r['steady_img_per_s']:,.0f}", ratio,
                      f"{one['steady_img_per_s']:,.0f}" if one else "",
                      *([f"{r['jobs']['steady_img_per_s']:,.0f}" if "jobs" in r else ""] if jobs else []))
    console.print(table)
    console.print("one after another: N runs back to back have the aggregate rate of one run (the N = 1 line)")
    _write(out, results, engine, data)


@bench_app.command("pack")
def bench_pack(
    models: str = typer.Option("resnet20", help="comma-separated models, taken in turn over a pack's slots"),
    sizes: str = typer.Option("1,2,4,8,16,32", help="comma-separated pack sizes K"),
    grow: bool = typer.Option(True, "--grow/--no-grow", help="then double K while that adds 10% throughput"),
    iterations: int = typer.Option(200, min=4, help="iterations per run"),
    batch_size: int = typer.Option(128, min=2, help="the paper's 128 (BN per half of it)"),
    device: str = DEVICE,
    graph: Optional[bool] = typer.Option(None, "--graph/--no-graph", help="each run's step captured in a CUDA "
                                         "graph (default: on a GPU; on a CPU its dry mode)"),
    data_root: Optional[Path] = DATA_ROOT,
    out: Optional[Path] = OUT,
) -> None:
    """Aggregate img/s of K runs packed side by side in one process (resbench run --pack K), each K's
    ratio to the first and its share of the device's measured bf16 peak."""
    from resbench.bench.packs import pack_bench

    names, counts = _networks(models), _counts(sizes, "--sizes")
    engine, data = _setup(device=device, compile=False, data_root=data_root)
    try:
        rows = pack_bench(names, counts, iterations, data, engine, grow=grow, batch_size=batch_size, graph=graph)
    except (RuntimeError, ValueError) as err:
        fail(str(err))
    table = Table(title=f"packs on {engine.device} ({engine.precision}, step: {rows[0]['step']}): "
                        f"{iterations} iterations per run, batch {batch_size}")
    for col in ("K", "img/s, all runs", f"vs K={rows[0]['slots']}", "img/s per run", "TFLOP/s", "share of peak"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["slots"]), f"{r['steady_img_per_s']:,.0f}", f"{r['ratio']:.2f}x",
                      f"{r['per_run_img_per_s']:,.0f}", f"{r['tflop_per_s']:.2f}", f"{100 * r['share_of_peak']:.2f}%")
    console.print(table)
    console.print(f"peak: a bf16 matrix product on this device, {rows[0]['peak_tflop_per_s']} TFLOP/s; "
                  "training FLOPs: 6 x the forward multiply-adds per image")
    _write(out, rows, engine, data)


@bench_app.command("step")
def bench_step(
    models: str = typer.Option("resnet56,resnet110", help="comma-separated models"),
    iterations: int = typer.Option(100, min=2, help="timed iterations per way, after the set-up"),
    device: str = DEVICE,
    compile_backend: str = typer.Option("inductor", help="dynamo backend of the compiled way (eager: tests)"),
    data_root: Optional[Path] = DATA_ROOT,
    out: Optional[Path] = OUT,
) -> None:
    """A deep net's captured step, eager kernels vs torch.compile'd ones (on a CPU: the graph's dry mode):
    img/s, set-up seconds, the iterations before compiling pays, the largest loss difference."""
    from resbench.bench.step import step_rows

    names = _networks(models)
    engine, data = _setup(device=device, compile=False, compile_mode="default", compile_backend=compile_backend,
                          data_root=data_root)
    rows = []
    for row in step_rows(names, data, engine, iterations):
        rows.append(row)
        _write(out, rows, engine, data, quiet=True)  # each way as it is measured: a cut keeps what was
    table = Table(title=f"a captured step on {engine.device} ({engine.precision}), batch 128, "
                        f"{iterations} timed iterations")
    for col in ("model", "way", "img/s", "speed-up", "set-up s", "pays after", "loss diff"):
        table.add_column(col, justify="left" if col in ("model", "way") else "right")
    for r in rows:
        pays = "" if r["way"] == "captured" else "never" if r["pays_after_iterations"] is None \
            else f"{r['pays_after_iterations']:,.0f}"
        table.add_row(r["model"], r["way"], f"{r['img_per_s']:,.0f}", f"{r['speedup']:.2f}x", f"{r['setup_s']:.1f}",
                      pays, "" if r["max_loss_diff"] is None else f"{r['max_loss_diff']:.2e}")
    console.print(table)
    console.print("pays after: iterations before the set-up is paid back; loss diff: the largest difference between "
                  "the two ways' losses, step by step.")
    console.print(f"steps: {rows[0]['path']}; graphs compiled by dynamo: "
                  f"{', '.join(str(r['dynamo_graphs']) for r in rows if r['way'] != 'captured')}")
    console.print("The paper's recipe is 64,000 iterations; a compiled step rounds differently, so it becomes a "
                  "default only after a control over seeds (module docstring of resbench/bench/step.py).")
    if out:
        console.print(f"wrote {out}")


@bench_app.command("imagenet")
def bench_imagenet(
    models: str = typer.Option("resnet50,plain34,resnet34,resnet101,resnet152",
                               help="comma-separated; the first is also measured end to end"),
    iterations: int = typer.Option(30, min=1, help="timed iterations per measurement"),
    warmup: int = typer.Option(10, min=0, help="untimed iterations first"),
    batch_size: int = typer.Option(256, min=1, help="images per step (the paper's global batch)"),
    workers: Optional[int] = typer.Option(None, min=0, help="decoding processes (default: every core)"),
    device: str = DEVICE,
    decode: str = typer.Option("auto", help="end to end: device (nvJPEG on the GPU), workers (PIL); auto: device on CUDA"),
    compile: Optional[bool] = COMPILE,
    data_root: Optional[Path] = typer.Option(None, help="an ImageNet folder; default: generated JPEGs"),
    images: int = typer.Option(2000, min=16, help="generated images (sides 300-500 px, like ImageNet's)"),
    crop: int = typer.Option(224, min=16, help="training crop (smaller only for tests)"),
    out: Optional[Path] = OUT,
) -> None:
    """ImageNet training img/s: decoding alone, each model alone, ResNet-50 end to end; projected
    wall time of the paper's 600k iterations on 1 and 8 GPUs."""
    from resbench.bench.imagenet import ImageNetBench, imagenet_bench
    from resbench.bench.setup import Setup
    from resbench.data import DataError

    try:
        options = ImageNetBench(models=tuple(_networks(models, "imagenet")), iterations=iterations, warmup=warmup,
                                batch_size=batch_size, workers=workers, decode=decode, images=images, crop=crop)
        engine, data, r = imagenet_bench(options, Setup(device=device, compile=compile, data_root=data_root),
                                         say=console.print)
    except (DataError, ValueError) as err:
        fail(str(err))
    workers, decode = r["workers"], r["end_to_end"]["decode"]
    table = Table(title=f"ImageNet training throughput on {engine.device}, batch {batch_size}, crop {crop}, "
                        f"{workers} decoding processes")
    for col in ("measured", "img/s", "600k iterations: 1 GPU (h)", "8 GPUs (h)"):
        table.add_column(col, justify="left" if col == "measured" else "right")
    decoder = "nvJPEG" if engine.device.startswith("cuda") else "torchvision"
    table.add_row(f"decoding: PIL, {workers} workers", f"{r['pipeline_img_per_s']['workers']:,.0f}", "", "")
    device_rate = r["pipeline_img_per_s"]["device"]
    table.add_row(f"decoding: {decoder} on {engine.device}",
                  "unavailable" if device_rate is None else f"{device_rate:,.0f}", "", "")
    for name, rate in r["model_img_per_s"].items():
        hours = r["projected_hours"][name]
        table.add_row(f"{name}, model only", f"{rate:,.0f}", f"{hours['1 GPU']:,}", f"{hours['8 GPUs']:,}")
    e2e = r["end_to_end"]
    table.add_row(f"{e2e['model']}, end to end ({e2e['decode']})", f"{e2e['img_per_s']:,.0f}", "", "")
    console.print(table)
    console.print(f"projection: min(model only, decoding on {decode}) per GPU, "
                  "linear scaling to 8 GPUs assumed")
    _write(out, r, engine, data)
