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


def _setup(device: str, compile: Optional[bool], compile_mode: str, data_root: Optional[Path], **engine):
    """(resolved engine, CIFAR-10) for a CIFAR benchmark, or a one-line error."""
    from resbench.data import DataError
    from resbench.data.cifar import load_cifar10
    from resbench.train.engine import Engine

    try:
        engine = Engine(device=device, compile=compile, compile_mode=compile_mode, **engine).resolve()
        return engine, load_cifar10(data_root)
    except (DataError, ValueError) as err:
        fail(str(err))


def _counts(text: str) -> list[int]:
    try:
        return [int(n) for n in comma_list(text) or []]
    except ValueError:
        fail(f"expected comma-separated numbers, got {text!r}")


def _write(out: Optional[Path], results: list, engine, data, quiet: bool = False) -> None:
    """The results and the machine they were measured on (GPU name, versions, data) as JSON."""
    if out:
        import torch

        from resbench.host.files import write_json
        from resbench.runs.provenance import environment

        write_json(out, {"results": results, "env": environment(torch.device(engine.device), data.provenance())})
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
    from dataclasses import asdict, replace

    from resbench.bench.throughput import fast_loop, plain_loop
    from resbench.host.machine import native_bf16
    from resbench.train.engine import PRECISIONS
    from resbench.paper.recipes import CifarRecipe

    try:
        recipe = CifarRecipe(bn_splits=bn_splits).validate()
        arithmetics = comma_list(precisions) or []
        if not arithmetics or set(arithmetics) - set(PRECISIONS):
            raise ValueError(f"--precisions takes a comma-separated subset of {', '.join(PRECISIONS)}")
    except ValueError as err:
        fail(str(err))
    engine, data = _setup(device, compile, compile_mode, data_root, one_forward=one_forward,
                          precision=arithmetics[0])
    cpu = "" if engine.device.startswith("cuda") else f" ({'native' if native_bf16() else 'no native'} bf16)"
    table = Table(title=f"CIFAR-10 training throughput on {engine.device}{cpu}, batch 128")
    for col in ("model", "loop", "img/s", "vs plain", f"vs fast {arithmetics[0]}", "detail"):
        table.add_column(col, justify="left" if col in ("model", "loop", "detail") else "right")
    results = []
    for name in comma_list(models) or []:
        plain = plain_loop(name, data, engine.device, iterations, warmup, workers)
        table.add_row(name, "plain", f"{plain.img_per_s:,.0f}", "1.00x", "", plain.detail)
        results.append(plain)
        reference = None
        for arithmetic in arithmetics:
            fast = fast_loop(name, data, replace(engine, precision=arithmetic), iterations, warmup, recipe)
            reference = reference or fast
            table.add_row("", f"fast {arithmetic}", f"{fast.img_per_s:,.0f}", f"{fast.img_per_s / plain.img_per_s:.2f}x",
                          f"{fast.img_per_s / reference.img_per_s:.2f}x", fast.detail)
            results.append(fast)
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
    import tempfile

    from resbench.bench.throughput import jobs_throughput

    counts = _counts(jobs)
    engine, data = _setup(device, compile, compile_mode, data_root)
    table = Table(title=f"N trainings as worker processes on {engine.device}: aggregate img/s ({iterations} iterations each)")
    for col in ("model", "jobs", "steady img/s", "per run", "vs 1 job", "wall img/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    results = []
    for name in comma_list(models) or []:
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
                try:
                    r = jobs_throughput(name, n, iterations, data, str(data_root) if data_root else None,
                                          engine, Path(tmp))
                except RuntimeError as err:
                    fail(str(err))
            results.append(r)
            one = next((x for x in results if x["model"] == name and x["jobs"] == 1), None)
            ratio = f"{r['steady_img_per_s'] / one['steady_img_per_s']:.2f}x" if one else ""
            table.add_row(name, str(n), f"{r['steady_img_per_s']:,.0f}", f"{r['per_run_img_per_s']:,.0f}", ratio,
                          f"{r['wall_img_per_s']:,.0f}")
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
    import tempfile

    from resbench.bench.throughput import fused_throughput, jobs_throughput

    counts = _counts(fuse)
    engine, data = _setup(device, compile, compile_mode, data_root)
    table = Table(title=f"N seeds on {engine.device}: aggregate img/s ({iterations} iterations each)")
    for col in ("model", "N", "fused", "vs 1 run", "one after another", *(["N --jobs"] if jobs else [])):
        table.add_column(col, justify="left" if col == "model" else "right")
    results = []
    for name in comma_list(models) or []:
        one = None
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
                try:
                    r = fused_throughput(name, n, iterations, data, engine, Path(tmp))
                    if jobs and n > 1:
                        r["jobs"] = jobs_throughput(name, n, iterations, data, str(data_root) if data_root else None,
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
    import tempfile
    from dataclasses import replace

    from resbench.bench.packs import pack_table

    engine, data = _setup(device, False, "reduce-overhead", data_root)
    cuda = engine.device.startswith("cuda")
    engine = replace(engine, graph="cuda" if (graph is None and cuda) or (graph and cuda) else "dry")
    with tempfile.TemporaryDirectory(prefix="resbench-bench-") as tmp:
        try:
            rows = pack_table(comma_list(models) or ["resnet20"], _counts(sizes), iterations, data, engine, Path(tmp),
                              grow, batch_size)
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

    engine, data = _setup(device, False, "default", data_root, compile_backend=compile_backend)
    rows = []
    for row in step_rows(comma_list(models) or [], data, engine, iterations):
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
    import os
    import tempfile

    import torch

    from resbench.bench.throughput import imagenet_throughput
    from resbench.data import DataError
    from resbench.data.imagenet import decode_place, find_imagenet, make_synthetic
    from resbench.host.files import write_json
    from resbench.runs.provenance import environment
    from resbench.train.engine import Engine
    from resbench.paper.recipes import ImageNetRecipe

    names = comma_list(models) or []
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    with tempfile.TemporaryDirectory(prefix="resbench-imagenet-") as tmp:
        try:
            engine = Engine(device=device, compile=compile).resolve()
            decode = decode_place(decode, engine.device)
            recipe = ImageNetRecipe(crop=crop, scale_min=max(crop, min(256, 2 * crop)),
                                    scale_max=max(crop, min(480, 4 * crop)), test_size=max(crop, 256 * crop // 224),
                                    bn_group=min(32, batch_size)).validate()
            if data_root is None:
                console.print(f"generating {images} JPEGs (sides 300-500 px) in {tmp} ...")
                make_synthetic(Path(tmp), classes=10, per_class=max(1, images // 10), val_per_class=1,
                               sides=(300, 500))
            data = find_imagenet(data_root or tmp)
            r = imagenet_throughput(names, data, engine, iterations, warmup, batch_size, workers, recipe, decode)
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
    console.print(f"projection: min(model only, decoding on {decode}) per GPU, "
                  "linear scaling to 8 GPUs assumed")
    if out:
        write_json(out, {**r, "env": environment(torch.device(engine.device), data.provenance())})
        console.print(f"wrote {out}")
