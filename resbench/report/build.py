"""Execute the report notebook (analysis/report.ipynb) with papermill into <reports>/<name>/, export each
report to HTML, write the index.

The reports folder defaults to <runs>/reports, beside the runs it reads: a report of your own runs never
lands in a checkout's committed reports/ unless asked to (`out`).

A report is built in a folder beside its own and then put in its place whole: no file of an earlier
build stays beside a new one, and a build that fails leaves the old report as it was. A report
folder remembers the runs folder it was built from (report.json, `runs_folder`): another runs
folder does not silently rebuild it (the committed reports/ are built from reports/runs/). Reports
build in parallel, a kernel per core, each kernel building several.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from resbench.runs.provenance import PACKAGE_DIR
from resbench.runs.rundir import run_dirs
from resbench.paper.declarations import load_experiment
from resbench.report.counts import cached, counted, counted_models
from resbench.report.folder import read_report, write_report
from resbench.report.index import build_index
from resbench.report.runs import load_runs

NOTEBOOK = "report.ipynb"  # analysis/report.ipynb: one notebook shows every report's sections
TIMINGS = ("start_time", "end_time", "duration")  # papermill's clock readings, per notebook and per cell
STYLER_TABLE = re.compile(r'<table id="T_([0-9a-f]{5})"')  # pandas' Styler: T_ and 5 random hex digits
ADDRESS = re.compile(r" at 0x[0-9a-f]+>")  # an object's default repr: where it happened to be in memory


class ReportError(ValueError):
    """A report that must not be built as asked: no runs, or another runs folder's report in the way."""


def notebook_for(name: str) -> Path:
    """The report notebook, the same for every report (`name` is its parameter): resbench/analysis/ as a wheel
    installs it, else analysis/ beside the package in a checkout."""
    load_experiment(name)  # an unknown name fails here, not inside a kernel
    for folder in (PACKAGE_DIR / "analysis", PACKAGE_DIR.parent / "analysis"):
        if (folder / NOTEBOOK).exists():
            return folder / NOTEBOOK
    raise FileNotFoundError(f"{NOTEBOOK} is in neither {PACKAGE_DIR / 'analysis'} nor "
                            f"{PACKAGE_DIR.parent / 'analysis'}: reinstall resbench")


def runs_folder(runs: str | Path, out: str | Path) -> str:
    """The runs folder as a report folder records it: relative to the reports folder."""
    return os.path.relpath(Path(runs).resolve(), Path(out).resolve())


def reports_folder(runs: str | Path, out: str | Path | None) -> Path:
    """`out`, or by default the folder reports/ inside the runs folder."""
    return Path(out) if out is not None else Path(runs) / "reports"


def writable(out: Path) -> None:
    """Refuse a reports folder this process cannot write in, before a kernel starts: one line, not a traceback
    from deep inside a build."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ReportError(f"cannot write reports to {out}/: {err.strerror or err}; nothing written") from err


def check(names: list[str], runs: str | Path, out: str | Path, replace: bool = False) -> None:
    """Everything that can refuse a build, before anything is written: unknown names, unreadable runs,
    no runs where a report reads them, a report folder built from another runs folder, one not writable."""
    experiments = [load_experiment(name) for name in names]  # clear errors for an unknown name first
    if any(exp.kind != "complexity" for exp in experiments):
        if not Path(runs).is_dir() or not run_dirs(runs):
            raise ReportError(f"no runs in {runs}/: train some (resbench run ...) or point --runs at a folder of "
                              f"run directories (the committed evidence: --runs reports/runs); nothing written")
        load_runs(runs)
    here = runs_folder(runs, out)
    for name in names if not replace else []:
        built_from = read_report(Path(out) / name).get("runs_folder")
        if built_from is not None and built_from != here:
            raise ReportError(f"{Path(out) / name}/ is the report of {Path(out) / built_from}/, not of {runs}/: write "
                              f"yours elsewhere (--out DIR), or --replace it; nothing written")
    writable(Path(out))


def build_reports(names: list[str], runs: str | Path = "runs", out: str | Path | None = None,
                  preset: str | None = None, data_variant: str | None = None, replace: bool = False,
                  jobs: int | None = None) -> list[Path]:
    """Each named report built (see `_build`) into `out` (default: <runs>/reports), then the index. `jobs`
    kernels at once (default: one per core), each building its share of the reports one after another: a
    kernel imports resbench's report code once (3 s of the 6 s a report took in a kernel of its own)."""
    out = reports_folder(runs, out)
    check(names, runs, out, replace)
    jobs = max(1, min(len(names), jobs or os.cpu_count() or 1))
    shares = [names[i::jobs] for i in range(jobs)]
    args = (runs, out, preset, data_variant)
    if jobs == 1:
        built = _build_share(names, *args)
    else:  # spawned workers hold no state of this process
        uncounted = sorted({m for name in names for m in counted_models(load_experiment(name))
                            if not cached(m).exists()})
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            list(pool.map(counted, uncounted))  # each model once, before the kernels that show it
            done = dict(zip(map(tuple, shares), pool.map(_build_share, shares, *([a] * jobs for a in args))))
        built = [done[tuple(share)][share.index(name)] for name in names for share in shares if name in share]
    build_index(out, runs)
    return built


def build_report(name: str, runs: str | Path = "runs", out: str | Path | None = None,
                 preset: str | None = None, data_variant: str | None = None, replace: bool = False) -> Path:
    """<out>/<name>/: the executed notebook, its HTML (without the code), the figure, diff.csv,
    claims.csv, report.json and README.md; then the folder's index."""
    return build_reports([name], runs, out, preset, data_variant, replace, jobs=1)[0]


def _build_share(names: list[str], runs: str | Path, out: str | Path, preset: str | None,
                 data_variant: str | None) -> list[Path]:
    logging.getLogger("papermill").setLevel(logging.WARNING)
    with Kernel() as kernel:
        return [_build(kernel, name, runs, out, preset, data_variant) for name in names]


def _build(kernel: "Kernel", name: str, runs: str | Path, out: str | Path, preset: str | None,
           data_variant: str | None) -> Path:
    """Build in out/.<name>.building/, then swap it in for out/<name>/.

    The notebook runs in the report's folder and is given paths relative to it (the same from its
    building folder beside it), and its papermill metadata names the notebook relative to the
    repository: nothing written holds an absolute path, so a committed report is the same on every
    machine."""
    final, building = Path(out) / name, Path(out) / f".{name}.building"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        _execute(kernel, name, runs, building, preset, data_variant)
        write_report(building, {**read_report(building), "runs_folder": runs_folder(runs, out)})
        old = Path(out) / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        building.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return final


class Kernel:
    """One Python kernel that executes several notebooks, each in its own folder. It talks over local
    IPC sockets, not unencrypted loopback TCP. Jupyter (jupyter_client, nbclient, papermill, nbconvert) is
    imported where a notebook is executed, not at the top: it is optional (a GPU node's python lacks it),
    and the checks before a build and `resbench report --index` need none of it."""

    def __enter__(self) -> "Kernel":
        from jupyter_client.manager import AsyncKernelManager  # optional: see the class docstring
        from nbclient.util import run_sync

        self._sockets = tempfile.TemporaryDirectory(prefix="resbench-kernel-")
        self.manager = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                          ip=str(Path(self._sockets.name) / "kernel"))
        run_sync(self.manager.start_kernel)()
        return self

    def __exit__(self, *exc) -> None:
        from nbclient.util import run_sync  # optional: see the class docstring

        run_sync(self.manager.shutdown_kernel)(now=True)
        self._sockets.cleanup()

    def execute(self, source: Path, executed: Path, cwd: Path, parameters: dict) -> None:
        import papermill  # optional: see the class docstring
        from nbclient.util import run_sync

        client = self.manager.client()
        client.start_channels()
        try:  # the shell channel's reply, not iopub's output: a reply cannot be missed by a late subscriber
            run_sync(client.wait_for_ready)(timeout=60)
            sent = client.execute(f"import os; os.chdir({str(cwd.resolve())!r})", silent=True, store_history=False)
            reply = run_sync(client.get_shell_msg)(timeout=60)
            while reply["parent_header"].get("msg_id") != sent:
                reply = run_sync(client.get_shell_msg)(timeout=60)
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the report kernel could not enter {cwd}")
        papermill.execute_notebook(str(source), str(executed), parameters=parameters, km=self.manager,
                                   progress_bar=False)


def _execute(kernel: Kernel, name: str, runs: str | Path, out_dir: Path, preset: str | None,
             data_variant: str | None) -> None:
    import nbformat  # optional, as Kernel's imports
    from nbconvert import HTMLExporter

    executed = out_dir / f"{name}.ipynb"
    source = notebook_for(name)
    kernel.execute(source, executed, out_dir, {"experiment": name, "runs": os.path.relpath(Path(runs).resolve(),
                   out_dir.resolve()), "out": ".", "preset": preset, "data_variant": data_variant})
    notebook = nbformat.read(executed, as_version=4)
    notebook.metadata.papermill.update(input_path=f"analysis/{source.name}", output_path=executed.name)
    _number_from_one(notebook)
    _same_every_build(notebook)
    nbformat.write(notebook, executed)
    # the page a reader reads: text, tables and figures, no code (the .ipynb beside it has the code)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": load_experiment(name).title}})
    (out_dir / f"{name}.html").write_text(html)


def _number_from_one(notebook) -> None:
    """Execution counts 1, 2, ... as in a kernel of its own (a shared kernel counts on across notebooks)."""
    count = 0
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for output in cell.outputs:
                if "execution_count" in output:
                    output.execution_count = count


def _same_every_build(notebook) -> None:
    """Nothing read off the clock and no random id: a rebuild from unchanged runs writes the same bytes, so a
    committed report changes only where its runs did. Dropped: papermill's start, end and duration, Jupyter's
    execution timestamps, the memory address in an object's repr ('<...Styler at 0x7f...>'); renamed: the
    injected cell's random id, each pandas table's random id (its CSS names it too, all within the output)."""
    for key in TIMINGS:
        notebook.metadata.get("papermill", {}).pop(key, None)
    for i, cell in enumerate(notebook.cells):
        cell.metadata.pop("execution", None)
        for key in TIMINGS:
            cell.metadata.get("papermill", {}).pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
        for j, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = ADDRESS.sub(">", data["text/plain"])
            for k, uuid in enumerate(dict.fromkeys(STYLER_TABLE.findall(data.get("text/html", "")))):
                data["text/html"] = data["text/html"].replace(f"T_{uuid}", f"T_cell{i}_{j}_{k}")
