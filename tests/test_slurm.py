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
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import submitit
import torch
from typer.testing import CliRunner, Result

from resbench.cli.main import app
from resbench.runs.rundir import read_status
from resbench.sweep import options
from resbench.sweep.plan import prepare
from resbench.train.engine import Engine
from slurm_cluster import Cluster, slurm_cluster  # noqa: F401  (the fixture)
from test_deadline import plant_pace

RUN = ["run", "table6", "--models", "resnet20", "--preset", "smoke", "--device", "cpu", "-q", "--deterministic",
       "--set", "checkpoint_every=20"]
SLURM = ["--launcher", "slurm", "--gpus-per-task", "0", "--cpus-per-task", "1", "--mem-gb", "1"]
# A 1-minute walltime: Slurm warns the task 10 s before (SlurmOptions.signal_s), checking every 30 s, so between
# 20 and 50 s after it starts; the run is longer than 50 s even alone on a core (0.25 s an iteration).
WALLTIME_ITERATIONS = 250
# the deadline of test_a_deadline_...: time for its tasks to start on the busy machine (its run is suspended
# past it, so that it is still training there)
DEADLINE_S = 60


def resbench(*args: str) -> Result:
    """`resbench ARGS` in this process: a command started anew would spend seconds importing torch first."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def submit(*args: str) -> str:
    """`resbench run ... --launcher slurm`; the job id of its array (or of its one task)."""
    result = resbench(*RUN, *SLURM, *args)
    assert result.exit_code == 0, result.output
    return re.search(r"submitted \d+ Slurm tasks \((\d+)", result.stdout)[1]  # one task: a plain job, N; else N_0


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


def records_or_none(d: Path) -> list[dict]:
    """A run's records so far: none before its log exists (or while its first line is being written)."""
    try:
        return records(d)
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def trained(d: Path) -> list[dict]:
    """The training and test records: what an uninterrupted run logs too."""
    return [r for r in records(d) if r["record"] != "event"]


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
    deadline: Deadlined


@dataclass
class Deadlined:
    """A sweep of ResNet-20 and ResNet-32 (s0 each) under a deadline, then the same command with a later one."""

    out: Path
    first: str  # the array of the first command
    first_results: dict[str, list[dict]]  # its tasks' results, by task id
    paused: dict  # ResNet-20's summary after the first command


@pytest.fixture(scope="module")
def sweep(slurm_cluster: Cluster, jpeg_root: Path, tmp_path_factory) -> Sweep:  # noqa: F811
    base = tmp_path_factory.mktemp("slurm-sweep")
    out, data = base / "runs", ["--data-root", str(jpeg_root)]
    # s2 fails: its folder holds a checkpoint of another network, which cannot be loaded into ResNet-20
    jobs, _, _ = prepare(options.Sweep("table6", "smoke", ["resnet20"], 3, overrides={"checkpoint_every": 20},
                                       out=out, data_root=str(jpeg_root)), Engine(device="cpu", deterministic=True),
                         say=lambda _: None)
    jobs[2].dir.mkdir(parents=True)
    torch.save({"model": {"fc.weight": torch.zeros(1)}, "optimizer": {}, "state": {}}, jobs[2].dir / "checkpoint.pt")

    inline = base / "inline"  # the same runs trained without Slurm, meanwhile
    # two workers of one thread each, as the Slurm tasks (--cpus-per-task 1): the same arithmetic (one process
    # would use every core, and sum in another order)
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
    # meanwhile, a sweep under a deadline (test_a_deadline_...): ResNet-32 cannot fit, ResNet-20 starts
    deadlined = base / "deadline"
    plant_pace(deadlined, "resnet20", 1e6)  # a run of it logged this pace here: far too fast, so it starts
    plant_pace(deadlined, "resnet32", 1.0)  # and this one: about half an hour, so it does not
    end = datetime.now().replace(microsecond=0) + timedelta(seconds=DEADLINE_S)
    deadline_args = ["--models", "resnet20,resnet32", "--jobs", "2", *data, "--out", str(deadlined)]
    ids.append(first := submit(*deadline_args, "--deadline", end.isoformat()))
    s20, suspended, first_results, paused = None, None, None, None

    def deadline_step() -> None:
        """ResNet-20 is suspended (scontrol suspend: its clock stops, the deadline's does not) once it has
        trained 10 iterations, until past the deadline, so that it is still training there whatever the
        machine's speed; once the first command's tasks have ended, the same command with a later deadline."""
        nonlocal s20, suspended, first_results, paused
        s20 = s20 or next(iter(deadlined.glob("resnet20-smoke-*")), None)
        if suspended is None and s20 is not None and any(r["record"] == "train" for r in records_or_none(s20)):
            suspended = lock_holder(s20)
            subprocess.run(["scontrol", "suspend", suspended], check=True)
        if suspended and datetime.now() > end + timedelta(seconds=1):
            subprocess.run(["scontrol", "resume", suspended], check=True)
            suspended = ""
        if first_results is None and not queued([first]):
            first_results, paused = task_results(deadlined, first), json.loads((s20 / "summary.json").read_text())
            ids.append(submit(*deadline_args, "--deadline", "10m"))

    def step() -> bool:
        nonlocal status, extended
        deadline_step()
        if not extended and paused_at(base / "walltime", "walltime"):
            # warned and requeued once: the next try of the task gets the time to finish
            subprocess.run(["scontrol", "update", f"JobId={walltime}", "TimeLimit=10"], check=True)
            extended = True
        if status is None and any(r["record"] == "train" for r in records_or_none(jobs[0].dir)):
            # preempt s0 mid-run, past its first log record: requeue whichever of its two tasks trains it
            if read_status(jobs[0].dir) == "done":
                pytest.fail("s0 finished before the test could requeue it")
            subprocess.run(["scontrol", "requeue", lock_holder(jobs[0].dir)], check=True)
            status = resbench("status", "--out", str(out)).stdout
        return reference.poll() is not None and first_results is not None and not queued(ids)

    wait_until(step, 900, "the sweep's end", ids, out)  # 5 minutes on this project's 2 cores, shared
    assert reference.returncode == 0, reference.stderr
    return Sweep(out, inline, array, rival, status,  # as s0 was requeued, s1 in training
                 Deadlined(deadlined, first, first_results, paused))


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
    assert len(resumed) == 1 and 10 <= resumed[0] < 60 and paused_at(sweep.out, "preempted") == resumed
    assert_same_run(s0, run_dir(sweep.inline, 0))


def test_two_tasks_given_the_same_run_never_both_train_it(sweep):
    for seed in (0, 1):
        train_iters = [r["iter"] for r in records(run_dir(sweep.out, seed)) if r["record"] == "train"]
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
    train_iters = [r["iter"] for r in records(d) if r["record"] == "train"]
    assert train_iters == list(range(10, WALLTIME_ITERATIONS + 1, 10))  # nothing lost or trained twice
    log = "\n".join(p.read_text() for p in out.glob(".submitit/*/*_log.*"))
    assert "this job is timed-out" in log and "Requeued job" in log  # submitit's requeue


def test_a_deadline_starts_only_what_fits_pauses_its_run_at_the_end_unrequeued_and_the_same_command_resumes(
        sweep):
    """Each task admits its run only if its estimate fits before the deadline: ResNet-32's does not, ResNet-20's
    does, and ResNet-20, still training at the deadline, pauses there; its task is not requeued (the deadline
    is the user's end of the sweep for now). The same command with a later deadline resumes it to the end of the
    run trained inline."""
    deadlined = sweep.deadline
    by_model = {summaries[0]["dir"].split("/")[-1].split("-")[0]: summaries[0]
                for summaries in deadlined.first_results.values()}
    assert by_model["resnet32"]["status"] == "not started" and by_model["resnet32"]["reason"].startswith("needs about")
    assert by_model["resnet20"]["status"] == "paused" == deadlined.paused["status"]
    paused = deadlined.paused["iteration"]
    assert 10 <= paused < 60 and paused_at(deadlined.out, "time limit") == [paused]
    logs = "".join(p.read_text() for p in deadlined.out.glob(f".submitit/{deadlined.first}_*/*_log.*"))
    assert "Requeued" not in logs and "this job is" not in logs  # ended, not requeued
    assert re.search(r"not started: resnet32-smoke-\w+-s0 \(needs about", logs)

    s0 = run_dir(deadlined.out, 0, "resnet20-smoke-*")
    assert [r["iter"] for r in records(s0) if r.get("event") == "resumed"] == [paused]
    assert_same_run(s0, run_dir(sweep.inline, 0))
    assert not list(deadlined.out.glob("resnet32-smoke-*"))  # still longer than the time left: never started


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


def test_a_task_stopped_at_its_walltime_before_the_deadline_is_requeued_and_one_at_the_deadline_is_not(
        tiny_data, tmp_path, monkeypatch):
    from resbench.sweep.launch import Worker
    from resbench.train import stop

    (job,), _, engine = prepare(options.Sweep("table6", "smoke", ["resnet20"], out=tmp_path), Engine(device="cpu"),
                                tiny_data, say=lambda _: None)
    paused = [{"dir": str(job.dir), "status": "paused", "iteration": 20}]
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # a task of one minute's walltime: its time box ends in 50 s

    def task(deadline_in_s: float | None) -> Worker:
        end = None if deadline_in_s is None else time.time() + deadline_in_s
        return Worker([job], None, engine, options.Schedule("slurm", deadline=end, slurm=options.SlurmOptions(
            time_min=1)))

    try:
        stop.reset()  # each case as a new process starts
        for deadline_in_s, requeued in ((30, False), (600, True), (None, False)):
            worker = task(deadline_in_s)
            box = worker.time_box()
            # paused where its time box ended: at the deadline (over for now), at the walltime (requeued), or
            # without a deadline, where only Slurm's warning requeues (a time limit does not)
            assert worker.requeue_due(paused, box) is requeued, deadline_in_s
        stop.request(stop.WALLTIME)  # Slurm's warning, before the deadline or without one: requeued
        assert task(600).requeue_due(paused, task(600).time_box()) and task(None).requeue_due(paused)
        assert not task(-1).requeue_due(paused)  # after the deadline: over
        stop.reset()
        stop.request(stop.PREEMPTED)  # Slurm requeues a preempted task itself
        assert not task(600).requeue_due(paused, task(600).time_box())
    finally:
        stop.reset()
