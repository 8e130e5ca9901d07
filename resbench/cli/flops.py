"""`resbench flops`: parameters and multiply-adds of the paper's networks beside its numbers."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from resbench.cli.common import console, fail


def flops_cmd(
    models: Optional[List[str]] = typer.Argument(None, help="model names (default: every paper model)"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a table"),
    write_golden: Optional[Path] = typer.Option(None, help="write the golden CSV the CI check compares with"),
) -> None:
    """Parameters and multiply-adds (fvcore, cross-checked by FlopCounterMode) vs the paper."""
    # imported when the command runs, as in cli/main.py: `resbench --help` need not load torch
    from resbench.probes.complexity import complexity, paper_models, paper_reference, write_golden as write_csv

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
