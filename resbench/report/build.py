"""Execute a report notebook with papermill, export it to HTML, index all reports."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from traitlets.config import Config

from ..results import PACKAGE_DIR
from ..spec import load_experiment

ANALYSIS_DIR = PACKAGE_DIR.parent / "analysis"
VERDICT_ORDER = ("reproduced", "close", "not reproduced", "proxy", "not run")
CLAIM_ORDER = ("pass", "fail", "inconclusive", "not run")


def notebook_for(name: str) -> Path:
    """analysis/table.ipynb for tables, figure7.ipynb for Fig. 7, curves.ipynb for the others."""
    kind = "table" if name.startswith("table") else ("figure7" if name == "figure7" else "curves")
    path = ANALYSIS_DIR / f"{kind}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: reports are built from a resbench checkout")
    return path


def build_report(name: str, runs: str | Path = "runs", out: str | Path = "reports",
                 preset: str | None = None, data_variant: str | None = None) -> Path:
    """reports/<name>/: the executed notebook, its HTML, the figure, diff.csv and README.md."""
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    load_experiment(name)  # a clear error for an unknown name, before starting a kernel
    logging.getLogger("papermill").setLevel(logging.WARNING)
    out_dir = Path(out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{name}.ipynb"
    with tempfile.TemporaryDirectory(prefix="resbench-kernel-") as sockets:
        # the kernel talks over local IPC sockets, not unencrypted loopback TCP
        config = Config()
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(sockets) / "kernel")
        papermill.execute_notebook(
            str(notebook_for(name)), str(executed), kernel_name="python3", progress_bar=False, config=config,
            parameters={"experiment": name, "runs": str(Path(runs).resolve()), "out": str(out_dir.resolve()),
                        "preset": preset, "data_variant": data_variant})
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(executed, as_version=4))
    (out_dir / f"{name}.html").write_text(html)
    build_index(out, runs)
    return out_dir


def owed_runs(runs: str | Path) -> dict[str, list[str]]:
    """Per trainable experiment, its rows with fewer finished runs of the paper's recipe in `runs`
    than the paper's number summarises (one; five for ResNet-110)."""
    from ..spec import all_experiments
    from ..store import load_runs
    from .diff import row_runs

    table = load_runs(runs)
    owed = {}
    for exp in all_experiments():
        if exp.kind != "train":
            continue
        missing = []
        for row in exp.runnable_rows:
            done = int((row_runs(exp, row, table, "paper")["status"] == "done").sum())
            if done < row.seeds:
                missing.append(row.id if row.seeds == 1 else f"{row.id} ({done}/{row.seeds} seeds)")
        if missing:
            owed[exp.name] = missing
    return owed


def _owed_lines(runs: str | Path) -> list[str]:
    from ..spec import load_experiment

    owed = owed_runs(runs)
    lines = ["## Runs still owed", "",
             f"Rows with no finished run of the paper's recipe in `{Path(runs).as_posix()}/`:", ""]
    for name, rows in owed.items():
        where = "needs ImageNet, which this project's machines do not have" \
            if load_experiment(name).dataset == "imagenet" else "CIFAR-10, 64k iterations each: a GPU's work"
        lines.append(f"* {name}: {', '.join(rows)} ({where})")
    return lines + ([] if owed else ["* none"]) + [""]


def build_index(out: str | Path = "reports", runs: str | Path | None = None) -> Path:
    """reports/README.md: every report with its verdicts and claim outcomes; which reports read
    real runs of the paper's recipe; and (given `runs`) which rows no such run covers yet."""
    out = Path(out)
    lines = ["# resbench reports", "",
             "Each folder regenerates one table or figure of He et al. (2015) from run directories and "
             "diffs it against the paper (`diff.csv`, `README.md`, the executed notebook and its HTML). "
             "Rebuild with `resbench report --all --runs DIR`.", ""]
    summaries = sorted(out.glob("*/summary.json"), key=lambda p: (not p.parent.name.startswith("table"), p.parent.name))
    if summaries:
        lines += ["| report | runs | preset | tier | " + " | ".join(VERDICT_ORDER) + " | claims: "
                  + " / ".join(CLAIM_ORDER) + " |", "|---|---|---|---|" + "---|" * len(VERDICT_ORDER) + "---|"]
    else:
        lines += ["No report is built here yet."]
    for summary_path in summaries:
        s = json.loads(summary_path.read_text())
        statuses = [c["status"] for c in s["claims"]]
        claims = " / ".join(str(statuses.count(c)) for c in CLAIM_ORDER) if statuses else "—"
        counts = " | ".join(str(s["verdicts"].get(v, 0)) for v in VERDICT_ORDER)
        tiers = "; ".join(s.get("tiers", [])) or "—"
        lines.append(f"| [{s['name']}]({s['name']}/README.md) | {s['runs']} | {s['preset']} | {tiers} | {counts} "
                     f"| {claims} |")
    lines += ["", "Verdicts count (row, metric, tier) lines of each `diff.csv`; claims count the lines of each "
              "`claims.csv` (one per claim, and per reading of std for Fig. 7). Rules: in every report's README.", ""]
    real = [s["name"] for s in map(lambda p: json.loads(p.read_text()), out.glob("*/summary.json"))
            if s["preset"] == "paper" and s["runs"]]
    lines += ["## Real-run reports", "",
              (f"Read runs of the paper's full recipe: {', '.join(sorted(real))}." if real else
               "None yet: no run of the paper's full recipe has been made (no GPU run so far). Reports of "
               "demo or smoke runs say so at their top and give no verdict."), ""]
    if runs is not None:  # named relative to the index, so that it reads the same on every machine
        lines += _owed_lines(os.path.relpath(Path(runs).resolve(), out.resolve()))
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
