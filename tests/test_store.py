"""The result store and sweeps: locks, status, workers, and runs that die, fail or share a folder."""
import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from resbench.cli.main import app
from resbench.sweep.launch import SlurmOptions, Worker, submit_slurm
from resbench.sweep.jobs import train_job
from resbench.sweep.options import Schedule, Sweep
from resbench.sweep.plan import prepare, run_experiment
from resbench.report.runs import load_runs
from resbench.runs.rundir import last_iteration, read_metrics, read_summary
from resbench.runs.store import claim, is_locked, run_state
from resbench.train.engine import Engine

from conftest import make_images, one_line_error

CPU = Engine(device="cpu", precision="fp32", compile=False)
SMOKE = ["--preset", "smoke", "--device", "cpu", "-q", "--deterministic"]


WIDE = {**os.environ, "COLUMNS": "200"}  # rich wraps long lines at the terminal width


def resbench(*args):
    return subprocess.run([sys.executable, "-m", "resbench", *args], capture_output=True, text=True, env=WIDE)


def hold_lock(run_dir):
    """Another process that holds a run's lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from resbench.runs.store import claim
        with claim(Path({str(run_dir)!r})) as mine:
            print(mine, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_a_lock_is_exclusive_and_dies_with_its_process(tmp_path):
    holder = hold_lock(tmp_path / "run")
    with claim(tmp_path / "run") as mine:
        assert not mine and is_locked(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not is_locked(tmp_path / "run")
    with claim(tmp_path / "run") as mine:
        assert mine


def test_last_iteration_reads_a_torn_tail(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"iter": 10, "record": "train"}\n{"iter": 20, "record": "train"}\n{"it')
    assert last_iteration(tmp_path) == 20 and last_iteration(tmp_path / "absent") == 0


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_sigkill_then_rerun_ends_as_an_uninterrupted_run(jpeg_root, tmp_path):
    # killed after the checkpoint at 10, at least 15 steps before the end; tests at 15 and 30
    args = ["run", "table6", "--models", "resnet20", *SMOKE, "--data-root", str(jpeg_root),
            "--set", "iterations=30", "--set", "checkpoint_every=10", "--set", "eval_every=15"]
    assert resbench(*args, "--runs", str(tmp_path / "whole")).returncode == 0

    killed = subprocess.Popen([sys.executable, "-m", "resbench", *args, "--runs", str(tmp_path / "killed")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(next_run_dir(tmp_path / "killed", killed) / "checkpoint.pt", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (run_dir,) = (tmp_path / "killed").glob("resnet20-*")
    assert run_state(run_dir) == "stopped" and not (run_dir / "summary.json").exists()

    rerun = resbench(*args, "--runs", str(tmp_path / "killed"))
    assert rerun.returncode == 0, rerun.stderr
    (whole_dir,) = (tmp_path / "whole").glob("resnet20-*")
    assert whole_dir.name == run_dir.name  # same config, same key
    for a, b in zip(*(torch.load(d / "checkpoint.pt")["model"].values() for d in (whole_dir, run_dir))):
        assert torch.equal(a, b)
    tests = [[r for r in read_metrics(d) if r["record"] == "test"]
             for d in (whole_dir, run_dir)]
    assert tests[0] == tests[1] and len(tests[0]) == 2
    summaries = [read_summary(d) for d in (whole_dir, run_dir)]
    assert summaries[0]["test_error"] == summaries[1]["test_error"]


def next_run_dir(out, process):
    wait_for(out, process)
    while not list(out.glob("resnet20-*")):
        time.sleep(0.01)
    return next(out.glob("resnet20-*"))


def test_four_workers_and_a_second_command_share_one_store(jpeg_root, tmp_path):
    """Five processes on four runs: each run trained once, nothing lost or interleaved."""
    args = ["run", "table6", "--models", "resnet20", "--seeds", "4", *SMOKE, "--data-root", str(jpeg_root),
            "--runs", str(tmp_path), "--set", "iterations=20"]  # a short run is claimed as a long one
    rival = subprocess.Popen([sys.executable, "-m", "resbench", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=WIDE)
    sweep = resbench(*args, "--jobs", "4")
    rival_out, rival_err = rival.communicate(timeout=300)
    assert sweep.returncode == 0 and rival.returncode == 0, sweep.stderr + rival_err
    runs = load_runs(tmp_path)
    assert sorted(runs["seed"]) == [0, 1, 2, 3] and set(runs["status"]) == {"done"}
    for d in runs["dir"]:
        records = read_metrics(Path(d))
        train_iters = [r["iter"] for r in records if r["record"] == "train"]
        assert train_iters == [10, 20], d  # one trainer, in order, no resumes
    assert "/4 runs done" in sweep.stdout and "/4 runs done" in rival_out


def test_a_failing_run_is_recorded_the_sweep_goes_on_and_a_rerun_retries(tiny_data, tmp_path, monkeypatch):
    import resbench.sweep.jobs as jobs

    train = jobs.train_cifar

    def broken_for_seed0(run, *args, **kwargs):
        if run.seed == 0:
            raise RuntimeError("CUDA out of memory (simulated)")
        return train(run, *args, **kwargs)

    monkeypatch.setattr(jobs, "train_cifar", broken_for_seed0)
    kwargs = dict(data=tiny_data, say=lambda _: None)
    sweep = Sweep("table6", "smoke", ["resnet20"], seeds=2, out=tmp_path, overrides={"iterations": 4})
    assert [r["status"] for r in run_experiment(sweep, CPU, Schedule(progress=False), **kwargs)] == ["failed", "done"]
    runs = load_runs(tmp_path).set_index("seed")
    assert runs.loc[0, "status"] == "failed" and "out of memory" in runs.loc[0, "note"]
    assert "RuntimeError" in (tmp_path / runs.loc[0, "run"] / "error.txt").read_text()

    monkeypatch.setattr(jobs, "train_cifar", train)
    assert [r["status"] for r in run_experiment(sweep, CPU, Schedule(progress=False), **kwargs)] == ["done", "done"]


def test_a_worker_refuses_data_other_than_the_plans(tiny_data, tmp_path):
    (job,), _, engine = prepare(Sweep("table6", "smoke", ["resnet20"], out=tmp_path), CPU, tiny_data,
                                say=lambda _: None)
    other = tiny_data.__class__(*make_images(320, seed=5), tiny_data.test_x, tiny_data.test_y,
                                "cifar10-original", "elsewhere")
    with pytest.raises(ValueError, match="not the data the run was planned on"):
        train_job(job, other, engine, progress=False)


def test_status_shows_every_state(tiny_data, tmp_path):
    run_experiment(Sweep("table6", "smoke", ["resnet20"], seeds=3, out=tmp_path, overrides={"iterations": 2}), CPU,
                   Schedule(progress=False), tiny_data, say=lambda _: None)  # states, not results
    dirs = sorted(tmp_path.glob("resnet20-*"))
    (dirs[1] / "summary.json").unlink()  # as if killed: no summary, no lock
    (dirs[2] / "summary.json").unlink()
    holder = hold_lock(dirs[2])
    try:
        result = CliRunner().invoke(app, ["status", "table6", "--runs", str(tmp_path)], env={"COLUMNS": "200"})
    finally:
        holder.kill()
    assert result.exit_code == 0, result.output
    states = {line.split("│")[2].strip() for line in result.output.splitlines() if "resnet20-smoke" in line}
    assert states == {"done", "stopped", "running"}
    assert "1 done" in result.output and "1 running" in result.output


def test_worker_requeues_itself_on_preemption():
    worker = Worker([], None, CPU, Schedule())
    assert worker.checkpoint().function is worker


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch and srun on PATH: sbatch keeps the script it is given (returned) and answers job 4242."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\necho "Submitted batch job 4242"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "submitted.sh"


def test_slurm_launcher_submits_an_array_with_the_options(fake_slurm, tiny_data, tmp_path):
    """The sbatch options a real cluster needs and the one-node test cluster (tests/test_slurm.py, which runs
    arrays, requeues and walltimes for real) cannot show: GPUs, partition and account."""
    jobs, _, engine = prepare(Sweep("table6", "smoke", ["resnet20", "resnet32"], seeds=2, out=tmp_path / "runs"),
                              CPU, tiny_data, say=lambda _: None)
    slurm = SlurmOptions("gpu", "lab", time_min=90, mem_gb=64)
    ids = submit_slurm(jobs, engine, tmp_path / "runs", Schedule("slurm", 3, slurm=slurm))
    assert ids == [f"4242_{i}" for i in range(4)]
    script = fake_slurm.read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --array=0-3%3",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --time=90", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=64GB", "#SBATCH --signal=USR2@90"):
        assert line in script
    assert SlurmOptions(time_min=1).signal_s == 10  # a short walltime is not warned at its start


@pytest.mark.parametrize("fuse, tasks", [("auto", 2), ("2", 1)])
def test_slurm_submits_from_a_login_node_without_a_gpu(fake_slurm, jpeg_root, tmp_path, monkeypatch, fuse, tasks):
    """The submitting machine does not decide for the GPU nodes: runs are planned for them, and
    whether CUDA is there is found out on the node, where the run trains."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(app, ["run", "table6", "--preset", "smoke", "--models", "resnet20", "--seeds", "2",
                                      "--launcher", "slurm", "--fuse", fuse, "--data-root", str(jpeg_root),
                                      "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert f"submitted {tasks} Slurm tasks" in result.stdout and "#SBATCH --gpus-per-node=1" in fake_slurm.read_text()
    workers = [pickle.loads(p.read_bytes()).function for p in (tmp_path / "runs").glob(".submitit/*/*_submitted.pkl")]
    assert [w.engine.device for w in workers] == ["cuda"] * tasks  # planned for the GPU, not for this machine
    assert [j.config["precision"] for w in workers for j in w.jobs] == ["bf16", "bf16"]


@pytest.mark.parametrize("args, message", [
    (["run", "table6", "--set", "lr=-0.1"], "learning rates must be positive"),
    (["run", "table6", "--set", "milestones=[48000,32000]"], "milestones must be increasing"),
    (["run", "table6", "--set", "learning_rate=0.1"], "unknown recipe options"),
    (["run", "table6", "--set", "lr"], "--set takes key=value"),
    (["run", "table6", "--launcher", "pbs"], "unknown launcher"),
    (["run", "table6", "--budget", "abc"], "got 'abc'"),  # the value's closing quote kept
    (["run", "table7"], "unknown experiment 'table7'; known:"),
    (["flops", "resnet21"], "6n+2"),
])
def test_bad_values_are_one_line_errors(args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unwritable_results_folder_is_a_one_line_error(jpeg_root, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    assert "cannot write results to" in one_line_error(["run", "table6", "--models", "resnet20", *SMOKE, "--data-root",
                                                         str(jpeg_root), "--runs", str(tmp_path / "file" / "runs")])


def test_a_full_disk_mid_run_is_a_one_line_error_and_nothing_looks_finished(jpeg_root, tmp_path, monkeypatch):
    from resbench.runs.rundir import MetricsLog

    append, calls = MetricsLog.append, []

    def fills_up(self, record):
        calls.append(record)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        append(self, record)

    monkeypatch.setattr(MetricsLog, "append", fills_up)
    result = CliRunner().invoke(app, ["run", "table6", "--models", "resnet20", *SMOKE, "--data-root",
                                      str(jpeg_root), "--runs", str(tmp_path)])
    assert result.exit_code == 2 and "No space left on device" in result.stderr
    (run_dir,) = tmp_path.glob("resnet20-*")
    assert not (run_dir / "summary.json").exists() and run_state(run_dir) == "stopped"


def test_slurm_runs_an_imagenet_run_as_one_task_per_gpu(fake_slurm, tmp_path):
    gpu = Engine().resolve(cuda_available=True)  # as the CLI resolves it for GPU nodes, on a machine without one
    jobs, data, engine = prepare(Sweep("table2", "smoke", ["resnet18"], out=tmp_path / "runs", synthetic=True), gpu,
                                 say=lambda _: None)
    assert jobs[0].config["precision"] == "bf16" and data.variant == "synthetic" and data.decode == "device"
    assert (engine.device, engine.compile) == ("cuda", True)
    submit_slurm(jobs, engine, tmp_path / "runs", Schedule("slurm", slurm=SlurmOptions(gpus=4, nodes=2)), data.source)
    script = fake_slurm.read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4"):
        assert line in script


def test_a_finished_sweep_decodes_nothing_and_starts_no_worker(jpeg_root, tmp_path, monkeypatch):
    """What makes a rerun with nothing to train return at once, inline and with --jobs."""
    import submitit

    import resbench.data.cifar as cifar

    args = ["run", "table6", "--models", "resnet20", *SMOKE, "--data-root", str(jpeg_root), "--runs", str(tmp_path),
            "--set", "iterations=4"]
    assert CliRunner().invoke(app, args).exit_code == 0

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("a finished sweep decoded data or started a worker")
    for name in ("_decode_npz", "_cached"):
        monkeypatch.setattr(cifar, name, must_not_be_called)
    monkeypatch.setattr(submitit, "LocalExecutor", must_not_be_called)
    for extra in ([], ["--jobs", "2"]):
        result = CliRunner().invoke(app, [*args, *extra], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "1/1 runs done" in result.output


def test_unreadable_files_and_doubled_folders_are_one_line_errors(tmp_path):
    """A run directory whose config.json is not JSON, and two folders where one is expected."""
    from typer.testing import CliRunner

    from resbench.cli.main import app

    bad = tmp_path / "runs" / "resnet20-paper-k-s0"
    bad.mkdir(parents=True)
    (bad / "config.json").write_text('{"model": "resnet20", ')
    for args in (["status", "--runs", str(tmp_path / "runs")],
                 ["report", "--table", "6", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "r")],
                 ["report", "--table", "6", "--runs", "a", "--runs", "b"],
                 ["status", "--runs", "a", "--runs", "b"],
                 ["run", "figure6", "--budget", "0"], ["run", "figure6", "--budget", "3/2"]):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args, result.output)
        assert "Traceback" not in result.output
    assert (bad / "config.json").read_text() == '{"model": "resnet20", '  # nothing lost


def test_bf16_on_a_cpu_without_native_bf16_warns_that_it_is_slow(monkeypatch):
    from resbench.train import engine

    monkeypatch.setattr(engine, "native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without native bf16"):
        resolved = engine.Engine("cpu", "bf16", False).resolve()
    assert resolved.precision == "bf16"  # it works, and says what it costs
