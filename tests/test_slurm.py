"""`resbench run --launcher slurm` on a real one-node Slurm cluster (tests/slurm_cluster.py).

One sweep of the smoke preset goes through the cluster while the tests look on: a job array of
three runs, one of whose tasks is requeued mid-run (`scontrol requeue`, what preemption does) and
one of which fails; a second submission of two of those runs, whose tasks start together with the
array's (the store's lock decides who trains); a run longer than its one-minute walltime (Slurm's
warning signal, submitit's requeue; once that has happened the test gives the next try the time
to finish). The runs are compared with the same runs trained without Slurm.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import submitit
import torch

from resbench.sweep.plan import prepare
from resbench.train.engine import Engine
from slurm_cluster import Cluster, slurm_cluster  # noqa: F401  (the fixture)

RUN = ["run", "table6", "--models", "resnet20", "--preset", "smoke", "--device", "cpu", "-q", "--deterministic",
       "--set", "checkpoint_every=20"]
SLURM = ["--launcher", "slurm", "--gpus-per-task", "0", "--cpus-per-task", "1", "--mem-gb", "1"]
# A 1-minute walltime: Slurm warns the task 10 s before (SlurmOptions.signal_s), checking every 30 s, so between
# 20 and 50 s after it starts; the run is longer than 50 s even alone on a core (0.25 s an iteration).
WALLTIME_ITERATIONS = 250


def resbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resbench", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


def submit(*args: str) -> str:
    """`resbench run ... --launcher slurm`; the job id of its array (or of its one task)."""
    proc = resbench(*RUN, *SLURM, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return re.search(r"submitted \d+ Slurm tasks \((\d+)", proc.stdout)[1]  # one task: a plain job, N; else N_0


def queued(job_ids: list[str]) -> list[str]:
    """`jobid state` of the tasks of these jobs still pending or running."""
    out = subprocess.run(["squeue", "--noheader", "--format=%i %T", "--jobs", ",".join(job_ids)],
                         capture_output=True, text=True).stdout
    return out.split("\n")[:-1]


def wait_until(ready, timeout_s: float, what: str, job_ids: list[str], out: Path) -> None:
    end = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > end:
            subprocess.run(["scancel", *job_ids])
            logs = "\n".join(p.read_text()[-2000:] for p in sorted(out.glob(".submitit/*/*.err")))
            pytest.fail(f"{what} not within {timeout_s:.0f} s; queue: {queued(job_ids)}\n{logs}")
        time.sleep(0.5)


def lock_holder(run: Path) -> str:
    """The Slurm task whose process holds the run's lock (the lock file names the process)."""
    pid = (run / ".lock").read_text().split()[0]
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    env = dict(item.split("=", 1) for item in environ if "=" in item)
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


def run_dir(out: Path, seed: int, pattern: str = "resnet20-*") -> Path:
    (found,) = [d for d in out.glob(pattern) if d.name.endswith(f"-s{seed}")]
    return found


def records(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]


def trained(d: Path) -> list[dict]:
    """The training and test records: what an uninterrupted run logs too."""
    return [r for r in records(d) if r["split"] != "event"]


def assert_same_run(a: Path, b: Path) -> None:
    assert a.name == b.name  # same config, same key
    assert trained(a) and [{k: v for k, v in r.items() if k not in ("img_per_s", "wall_s")} for r in trained(a)] \
        == [{k: v for k, v in r.items() if k not in ("img_per_s", "wall_s")} for r in trained(b)]
    for x, y in zip(*(torch.load(d / "checkpoint.pt")["model"].values() for d in (a, b))):
        assert torch.equal(x, y)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (a, b)]
    assert summaries[0]["status"] == summaries[1]["status"] == "done"
    assert summaries[0]["test_error"] == summaries[1]["test_error"]


def task_results(out: Path, array: str) -> dict[str, list[dict]]:
    """Each finished task's summaries (submitit's result pickles), by task id."""
    results = {}
    for folder in sorted(out.glob(f".submitit/{array}_*")):
        job = submitit.SlurmJob(folder=out / ".submitit" / "%j", job_id=folder.name)
        results[folder.name] = job.result()
    return results


@dataclass
class Sweep:
    out: Path
    inline: Path
    array: str  # seeds 0-2, s2 fails
    rival: str  # seeds 0-1 again, its tasks started with the array's
    status_while_running: str


@pytest.fixture(scope="module")
def sweep(slurm_cluster: Cluster, jpeg_root: Path, tmp_path_factory) -> Sweep:  # noqa: F811
    base = tmp_path_factory.mktemp("slurm-sweep")
    out, data = base / "runs", ["--data-root", str(jpeg_root)]
    # s2 fails: its folder holds a checkpoint of another network, which cannot be loaded into ResNet-20
    jobs, _, _ = prepare("table6", "smoke", ["resnet20"], 3, out, data_root=str(jpeg_root),
                         engine=Engine(device="cpu", deterministic=True), overrides={"checkpoint_every": 20},
                         say=lambda _: None)
    jobs[2].dir.mkdir(parents=True)
    torch.save({"model": {"fc.weight": torch.zeros(1)}, "optimizer": {}, "state": {}}, jobs[2].dir / "checkpoint.pt")

    inline = base / "inline"  # the same runs trained without Slurm, meanwhile
    reference = subprocess.Popen([sys.executable, "-m", "resbench", *RUN, "--seeds", "2", "--jobs", "2", *data,
                                  "--out", str(inline)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # every task starts at once, when the partition is up again: the two sweeps race for s0 and s1
    partition = f"PartitionName={slurm_cluster.partition}"
    subprocess.run(["scontrol", "update", partition, "State=DOWN"], check=True)
    try:
        array = submit("--seeds", "3", "--jobs", "3", *data, "--out", str(out))
        rival = submit("--seeds", "2", "--jobs", "2", *data, "--out", str(out))  # a second sweep on the same store
        walltime = submit("--seeds", "1", "--set", f"iterations={WALLTIME_ITERATIONS}", "--slurm-time", "1", *data,
                          "--out", str(base / "walltime"))
    finally:
        subprocess.run(["scontrol", "update", partition, "State=UP"], check=True)
    ids = [array, rival, walltime]
    status, extended = None, False

    def step() -> bool:
        nonlocal status, extended
        if not extended and paused_at(base / "walltime", "walltime"):
            # warned and requeued once: the next try of the task gets the time to finish
            subprocess.run(["scontrol", "update", f"JobId={walltime}", "TimeLimit=10"], check=True)
            extended = True
        if status is None and (jobs[0].dir / "checkpoint.pt").exists():
            # preempt s0 mid-run: requeue whichever of its two tasks trains it
            subprocess.run(["scontrol", "requeue", lock_holder(jobs[0].dir)], check=True)
            status = subprocess.Popen([sys.executable, "-m", "resbench", "status", "--out", str(out)],
                                      stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
        return reference.poll() is not None and not queued(ids)

    wait_until(step, 900, "the sweep's end", ids, out)  # 5 minutes on this project's 2 cores, shared
    assert reference.returncode == 0, reference.stderr
    return Sweep(out, inline, array, rival, status.communicate()[0])  # as s0 was requeued, s1 in training


def paused_at(out: Path, reason: str) -> list[int]:
    """The iterations at which the tasks' logs say a run paused for `reason`."""
    logs = "".join(p.read_text() for p in out.glob(".submitit/*/*.out"))
    return [int(n.replace(",", "")) for n in re.findall(rf"paused at iteration ([\d,]+) \({reason}", logs)]


def test_an_array_of_runs_ends_as_the_runs_trained_inline(sweep):
    for seed in (0, 1):
        assert_same_run(run_dir(sweep.out, seed), run_dir(sweep.inline, seed))


def test_a_requeued_task_resumes_from_its_checkpoint_to_the_same_metrics(sweep):
    s0 = run_dir(sweep.out, 0)
    resumed = [r["iter"] for r in records(s0) if r.get("event") == "resumed"]
    # Slurm's SIGTERM paused it mid-run with a checkpoint there (not the last periodic one), and it resumed from it
    assert len(resumed) == 1 and 20 <= resumed[0] < 60 and paused_at(sweep.out, "preempted") == resumed
    assert_same_run(s0, run_dir(sweep.inline, 0))


def test_two_tasks_given_the_same_run_never_both_train_it(sweep):
    for seed in (0, 1):
        train_iters = [r["iter"] for r in records(run_dir(sweep.out, seed)) if r["split"] == "train"]
        assert train_iters == list(range(10, 61, 10))  # each iteration trained once, in order
    results = {**task_results(sweep.out, sweep.array), **task_results(sweep.out, sweep.rival)}
    for seed in (0, 1):  # each run: its array task and its rival; one of them found it taken
        statuses = sorted(summaries[0]["status"] for task, summaries in results.items()
                          if task.endswith(f"_{seed}") and summaries[0]["dir"].endswith(f"-s{seed}"))
        assert "taken" in statuses and len(statuses) == 2, statuses


def test_a_failing_task_leaves_its_error_and_the_rest_finish(sweep):
    s2 = run_dir(sweep.out, 2)
    summary = json.loads((s2 / "summary.json").read_text())
    assert summary["status"] == "failed" and "Error(s) in loading state_dict" in summary["error"]
    assert "Traceback" in (trace := (s2 / "error.txt").read_text()) and "fc.weight" in trace
    states = resbench("status", "--out", str(sweep.out)).stdout
    assert "2 done" in states and "1 failed" in states


def test_status_shows_the_runs_of_an_array_in_flight(sweep):
    print(sweep.status_while_running)  # shown with -s: what README's Slurm section quotes
    assert "running" in sweep.status_while_running and "resnet20-smoke-" in sweep.status_while_running


def test_a_task_at_its_walltime_checkpoints_is_requeued_and_finishes(sweep):
    out = sweep.out.parent / "walltime"
    d = run_dir(out, 0)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["status"] == "done" and summary["iteration"] == WALLTIME_ITERATIONS
    resumed = [r["iter"] for r in records(d) if r.get("event") == "resumed"]
    # each warning: a checkpoint at that step, then the requeued task resumed from it
    assert resumed and all(0 < i < WALLTIME_ITERATIONS for i in resumed) and paused_at(out, "walltime") == resumed
    train_iters = [r["iter"] for r in records(d) if r["split"] == "train"]
    assert train_iters == list(range(10, WALLTIME_ITERATIONS + 1, 10))  # nothing lost or trained twice
    log = "\n".join(p.read_text() for p in out.glob(".submitit/*/*_log.*"))
    assert "this job is timed-out" in log and "Requeued job" in log  # submitit's requeue


def test_a_stop_says_who_asked_for_it(monkeypatch):
    """SIGTERM inside a Slurm job is Slurm's (preemption, requeue, scancel); elsewhere the user's."""
    from resbench.train import stop

    for job_id, reason in ((None, stop.USER), ("4242", stop.PREEMPTED)):
        stop.reset()  # each case as a new process starts: a SIGTERM holds for the rest of its process
        if job_id:
            monkeypatch.setenv("SLURM_JOB_ID", job_id)
        else:
            monkeypatch.delenv("SLURM_JOB_ID", raising=False)
        with stop.stop_on_signals():
            assert stop.Deadline().reason() is None
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.Deadline().reason() == reason
            stop.request(stop.WALLTIME)  # the first reason stays
            assert stop.requested() == reason
