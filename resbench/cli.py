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


@app.command()
def run(
    experiment: str = typer.Argument(..., help="table6, figure1, figure6 or figure7 (see `resbench list`)"),
    preset: str = typer.Option("paper", help="paper: the full recipe; smoke: a tiny real run (CPU, minutes)"),
    models: Optional[str] = typer.Option(None, help="comma-separated subset of the rows, e.g. resnet20,plain56"),
    seeds: int = typer.Option(1, min=1, help="runs per row, seeds 0..N-1 (the paper: 5 for ResNet-110)"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    out: Path = typer.Option(Path("runs"), help="results folder: one run directory per run"),
    data_root: Optional[Path] = typer.Option(None, help="folder holding CIFAR-10 (else $RESBENCH_DATA, ...)"),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on GPU)"),
    compile_mode: str = typer.Option("reduce-overhead", help="torch.compile mode"),
    fp32: bool = typer.Option(False, "--fp32", help="no bf16 autocast (the plain path, for comparison)"),
    deterministic: bool = typer.Option(False, help="deterministic kernels (slower)"),
    time_limit: Optional[float] = typer.Option(None, help="minutes; checkpoint and stop (status paused) after"),
    fresh: bool = typer.Option(False, "--fresh", help="start unfinished or finished runs again from scratch"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
) -> None:
    """Train the rows of an experiment; finished runs are skipped, unfinished ones resume."""
    from .data import DataError
    from .runner import run_experiment
    from .train.engine import Engine

    engine = Engine(device=device, precision="fp32" if fp32 else "auto", compile=compile,
                    compile_mode=compile_mode, deterministic=deterministic)
    try:
        results = run_experiment(experiment, preset, _split(models), seeds, out, data_root=data_root,
                                 engine=engine, progress=not quiet,
                                 time_limit_s=time_limit * 60 if time_limit else None, fresh=fresh,
                                 say=console.print)
    except (DataError, ValueError, KeyError) as err:
        fail(str(err).strip("'\""))
    except OSError as err:
        fail(f"cannot write results to {out}: {err.strerror or err}")
    done = sum(r["status"] == "done" for r in results)
    console.print(f"{done}/{len(results)} runs done; results in {out}/ "
                  f"(report: resbench report --table 6 --runs {out})")


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


@app.command()
def report(
    table: Optional[int] = typer.Option(None, "--table", help="1-6"),
    figure: Optional[int] = typer.Option(None, "--figure", help="1, 4, 6 or 7"),
    all_: bool = typer.Option(False, "--all", help="every table and figure"),
    runs: Path = typer.Option(Path("runs"), help="folder of run directories (resbench run --out)"),
    out: Path = typer.Option(Path("reports"), help="reports folder"),
    preset: Optional[str] = typer.Option(None, help="paper or smoke (default: paper runs if any, else smoke)"),
) -> None:
    """Regenerate tables and figures from runs (papermill notebooks) and diff them against the paper."""
    from .report.build import build_report
    from .spec import experiment_names

    names = list(experiment_names()) if all_ else \
        [n for n in (table and f"table{table}", figure and f"figure{figure}") if n]
    if not names:
        fail("say what to report: --table N, --figure N or --all")
    if not runs.is_dir():
        console.print(f"[yellow]no runs in {runs}/[/]: tables will show computed values and 'not run'")
    for name in names:
        try:
            out_dir = build_report(name, runs, out, preset)
        except KeyError as err:
            fail(str(err).strip("'\""))
        summary = json.loads((out_dir / "summary.json").read_text())
        verdicts = ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items() if v) or "no paper numbers"
        claims = ", ".join(f"{c['claim']} {c['status']}" for c in summary["claims"])
        console.print(f"{name}: {out_dir}/README.md  ({summary['runs']} runs, {summary['preset']}; {verdicts}"
                      + (f"; claims: {claims})" if claims else ")"))
    console.print(f"index: {out}/README.md")
