"""A run directory written by the previous resbench resumes under this one: same name, same files, same result."""
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from resbench.runs.rundir import read_metrics

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "75308fc"  # the last commit before the three training loops shared one skeleton
TRAIN = """
import sys
from resbench.{planner} import run_experiment
from resbench.train.engine import Engine
{call}
print(summary["status"], summary["dir"])
"""
OLD_CALL = """summary, = run_experiment("table6", preset="smoke", models=["resnet20"], seeds=1, out=sys.argv[1],
                          data_root=sys.argv[2], engine=Engine("cpu", "fp32", False, deterministic=True),
                          progress=False, time_limit_s=float(sys.argv[3]), say=lambda _: None,
                          overrides={"iterations": 40, "log_every": 1})"""
CALL = """from resbench.sweep.options import Schedule, Sweep
summary, = run_experiment(Sweep("table6", "smoke", ["resnet20"], seeds=1, out=sys.argv[1], data_root=sys.argv[2],
                                overrides={"iterations": 40, "log_every": 1}),
                          Engine("cpu", "fp32", False, deterministic=True),
                          Schedule(progress=False, time_limit_s=float(sys.argv[3])), say=lambda _: None)"""


def train(code: Path, out: Path, data: Path, time_limit_s: float, planner: str = "sweep.plan") -> tuple[str, str]:
    script = TRAIN.format(planner=planner, call=OLD_CALL if planner == "runner" else CALL)  # the API of its time
    proc = subprocess.run([sys.executable, "-c", script, str(out), str(data), str(time_limit_s)],
                          env={"PYTHONPATH": str(code), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
                          cwd=code, capture_output=True, text=True, timeout=300)  # cwd: `-c` imports from it first
    assert proc.returncode == 0, proc.stderr
    status, run_dir = proc.stdout.split()
    return status, run_dir


def test_a_run_paused_by_the_previous_code_resumes_to_the_same_end(tmp_path, jpeg_root):
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", REFERENCE, "resbench"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"commit {REFERENCE} is not in this clone: {archive.stderr.decode().strip()}")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(tmp_path / "old", filter="data")
    status, old_dir = train(tmp_path / "old", tmp_path / "runs", jpeg_root, 1.0, planner="runner")  # pauses soon
    assert status == "paused" and read_metrics(Path(old_dir))  # with a record of each step (log_every 1)
    status, new_dir = train(ROOT, tmp_path / "runs", jpeg_root, 1e9)
    assert (status, new_dir) == ("done", old_dir)  # the same directory: its key did not change
    _, straight = train(ROOT, tmp_path / "straight", jpeg_root, 1e9)

    def curve(run_dir: str) -> list:
        return [(r["iter"], r["record"], r.get("loss"), r.get("error")) for r in
                read_metrics(Path(run_dir)) if r["record"] in ("train", "test")]
    assert curve(new_dir) == curve(straight)
    events = [r["event"] for r in read_metrics(Path(new_dir)) if "event" in r]
    assert events == ["resumed"]
