"""Execute a report notebook with papermill, export it to HTML, index all reports."""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from traitlets.config import Config

from ..results import PACKAGE_DIR
from ..spec import load_experiment

ANALYSIS_DIR = PACKAGE_DIR.parent / "analysis"
VERDICT_ORDER = ("reproduced", "close", "not reproduced", "not run")


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
    build_index(out)
    return out_dir


def build_index(out: str | Path = "reports") -> Path:
    """reports/README.md: every report with its verdicts and claim outcomes."""
    out = Path(out)
    lines = ["# resbench reports", "",
             "Each folder regenerates one table or figure of He et al. (2015) from run directories and "
             "diffs it against the paper (`diff.csv`, `README.md`, the executed notebook and its HTML). "
             "Rebuild with `resbench report --all --runs DIR`.", "",
             "| report | runs | preset | " + " | ".join(VERDICT_ORDER) + " | claims |",
             "|---|---|---|" + "---|" * len(VERDICT_ORDER) + "---|"]
    for summary_path in sorted(out.glob("*/summary.json"), key=lambda p: (not p.parent.name.startswith("table"),
                                                                          p.parent.name)):
        s = json.loads(summary_path.read_text())
        claims = ", ".join(f"{c['claim']}: {c['status']}" for c in s["claims"]) or "—"
        counts = " | ".join(str(s["verdicts"].get(v, 0)) for v in VERDICT_ORDER)
        lines.append(f"| [{s['name']}]({s['name']}/README.md) | {s['runs']} | {s['preset']} | {counts} | {claims} |")
    lines += ["", "Verdicts count (row, metric) lines of each `diff.csv`; the rule is in every report's README."]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
