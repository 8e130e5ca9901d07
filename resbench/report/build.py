"""Execute a report notebook with papermill and export it to HTML (the index: `report/index.py`)."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from traitlets.config import Config

from ..results import PACKAGE_DIR
from ..spec import load_experiment
from .index import build_index

ANALYSIS_DIR = PACKAGE_DIR.parent / "analysis"


def notebook_for(name: str) -> Path:
    """analysis/table.ipynb for tables, figure7.ipynb for Fig. 7, curves.ipynb for the others."""
    kind = "table" if name.startswith("table") else ("figure7" if name == "figure7" else "curves")
    path = ANALYSIS_DIR / f"{kind}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: reports are built from a resbench checkout")
    return path


def build_report(name: str, runs: str | Path = "runs", out: str | Path = "reports",
                 preset: str | None = None, data_variant: str | None = None) -> Path:
    """reports/<name>/: the executed notebook, its HTML (without the code), the figure, diff.csv,
    claims.csv and README.md; then the folder's index.

    The notebook runs in the report's folder and is given paths relative to it, and its papermill
    metadata names the notebook relative to the repository: nothing written holds an absolute
    path, so a committed report is the same on every machine.
    """
    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    from .runs import load_runs

    load_experiment(name)  # clear errors for an unknown name or an unreadable run, before starting a kernel
    load_runs(runs)
    logging.getLogger("papermill").setLevel(logging.WARNING)
    out_dir = Path(out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{name}.ipynb"
    source = notebook_for(name)
    with tempfile.TemporaryDirectory(prefix="resbench-kernel-") as sockets:
        # the kernel talks over local IPC sockets, not unencrypted loopback TCP
        config = Config()
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(sockets) / "kernel")
        papermill.execute_notebook(
            str(source), str(executed), kernel_name="python3", progress_bar=False, config=config, cwd=str(out_dir),
            parameters={"experiment": name, "runs": os.path.relpath(Path(runs).resolve(), out_dir.resolve()),
                        "out": ".", "preset": preset, "data_variant": data_variant})
    notebook = nbformat.read(executed, as_version=4)
    notebook.metadata.papermill.update(input_path=f"{ANALYSIS_DIR.name}/{source.name}", output_path=executed.name)
    nbformat.write(notebook, executed)
    # the page a reader reads: text, tables and figures, no code (the .ipynb beside it has the code)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": load_experiment(name).title}})
    (out_dir / f"{name}.html").write_text(html)
    build_index(out, runs)
    return out_dir
