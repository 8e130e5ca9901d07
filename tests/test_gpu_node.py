"""scripts/gpu_node.sh, rehearsed on a CPU with a python that lacks what a GPU node's image often lacks
(fvcore, papermill, jupyter, submitit: tests/gpu_python): a plan trained before its deadline, a cut that
keeps every finished run, and the same command resuming."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resbench.runs.rundir import read_status, run_dirs

ROOT = Path(__file__).resolve().parents[1]


def node(runs: Path, data: Path, deadline: str = "10m", **env) -> subprocess.Popen:
    settings = {**os.environ, "RUNS": str(runs), "DEADLINE": deadline, "DEVICE": "cpu", "TUNE": "0",
                "CALIBRATE": "", "PLAN": "table6", "PYTHON": sys.executable,
                "RUN_ARGS": f"--preset smoke --set iterations=20 --models resnet20,resnet32 --seeds 2 --data-root {data}",
                "PYTHONPATH": str(ROOT / "tests" / "gpu_python"), "OMP_NUM_THREADS": "1", **env}
    return subprocess.Popen(["sh", str(ROOT / "scripts" / "gpu_node.sh")], env=settings, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_the_node_script_trains_its_plan_and_a_cut_loses_no_finished_run(jpeg_root, tmp_path):
    runs = tmp_path / "runs"
    first = node(runs, jpeg_root)
    deadline = time.monotonic() + 300
    while not any(read_status(d) == "done" for d in run_dirs(runs)):  # cut once the first run has finished
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "no run finished"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=120)
    finished = {d.name: (d / "summary.json").read_bytes() for d in run_dirs(runs) if read_status(d) == "done"}

    again = node(runs, jpeg_root)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert sorted(read_status(d) for d in run_dirs(runs)) == ["done"] * 4, out
    assert all((runs / name / "summary.json").read_bytes() == kept for name, kept in finished.items())
    log = (runs / "gpu-node.log").read_text()
    assert "run table6 until" in log and "the same command resumes" in log


def test_a_python_without_torch_is_told_what_to_install(tmp_path):
    if subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("this machine's system python has torch: no python here lacks it")
    proc = subprocess.run(["sh", str(ROOT / "scripts" / "gpu_node.sh")], capture_output=True, text=True,
                          env={**os.environ, "RUNS": str(tmp_path), "PYTHON": "/usr/bin/python3", "PYTHONPATH": ""})
    assert proc.returncode == 2 and "this python lacks torch" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
