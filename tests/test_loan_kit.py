"""The loan kit's parts, each against a way an earlier loan lost time or results."""
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace


from resbench import loan, loan_plan
from resbench.loan import MIB

ROOT = Path(__file__).resolve().parents[1]
GPU_PYTHON = ROOT / "tests" / "gpu_python"


def job(model: str, iterations: int, name: str, tmp_path: Path):
    recipe = SimpleNamespace(iterations=iterations, batch_size=128)
    return SimpleNamespace(run=SimpleNamespace(model=model, recipe=recipe), dir=tmp_path / name)


def test_a_run_that_will_finish_starts_whatever_time_is_left_and_one_that_would_pause_needs_min_start(tmp_path):
    rate = 39_000.0  # the H200's captured ResNet-20 step
    short = [job("resnet20", 2000, "short", tmp_path)]  # 1/32 of the recipe: about 8 s
    full = [job("resnet20", 64000, "full", tmp_path)]  # about 240 s
    assert loan_plan._not_now(short, tmp_path, rate, 67, 90, 20, must_finish=True) is None  # the first loan idled here
    assert "less than 90 s left" in loan_plan._not_now(full, tmp_path, rate, 67, 90, 20, must_finish=False)
    assert "cannot finish" in loan_plan._not_now(full, tmp_path, rate, 200, 90, 20, must_finish=True)
    assert loan_plan._not_now(full, tmp_path, rate, 200, 90, 20, must_finish=False) is None  # it pauses and is carried


def test_a_fused_group_takes_as_long_as_its_longest_run_not_the_sum(tmp_path):
    one = loan_plan.seconds_per_run("resnet20", 2000, 128, 10_000)
    three = [job("resnet20", 2000, f"s{i}", tmp_path) for i in range(3)]
    left = 20 + 1.5 * one  # time for one run (the three side by side), not for three after another
    assert loan_plan._not_now(three, tmp_path, 10_000, left, 90, 20, must_finish=True) is None


def test_a_failing_preflight_check_is_recorded_and_the_loan_trains_on(bench_root, tmp_path, monkeypatch):
    from resbench import preflight as preflight_module
    from resbench.data.cifar import cifar10_files

    files = cifar10_files(bench_root)

    def crash(*args, **kwargs):
        raise RuntimeError("NYI: querying is_contiguous inside of vmap for memory_format other than ...")

    monkeypatch.setattr(preflight_module, "fused_throughput", crash)
    report = preflight_module.preflight(files, "cpu", 8, tmp_path / "preflight.json", batch=32, pack_sizes=(1,))
    assert report["failed"] == {"fused": "RuntimeError: NYI: querying is_contiguous inside of vmap for memory_format "
                                         "other than ..."}
    assert report["chosen"]["fuse"] == 1 and json.loads((tmp_path / "preflight.json").read_text())["failed"]

    monkeypatch.setattr(preflight_module, "preflight", crash)  # the whole preflight: the plain step, a guessed rate
    said = []
    engine, rate, fuse, slots = loan_plan._preflight(files, "cpu", 8, tmp_path, 32, said.append)
    assert (engine.graph, engine.compile) == ("off", False)
    assert (rate, fuse, slots) == (loan_plan.GUESSED_IMG_PER_S["cpu"], 1, 1) and "preflight failed (RuntimeError" in said[0]


def test_a_pack_that_does_not_compute_what_its_runs_alone_do_is_not_used(bench_root, tmp_path, monkeypatch):
    from resbench import bench_pack, preflight as preflight_module
    from resbench.data.cifar import cifar10_files

    files = cifar10_files(bench_root)
    report = preflight_module.preflight(files, "cpu", 8, tmp_path / "a.json", batch=32, pack_sizes=(2,))
    assert report["pack"]["check"]["bitwise"] and report["chosen"]["pack"] == 2  # the only size asked for
    assert report["chosen"]["run_img_per_s"] == report["pack"]["per_run_img_per_s"]
    monkeypatch.setattr(bench_pack, "pack_agrees", lambda *a, **k: {"agree": False, "max_loss_diff": 0.3})
    failed = {}
    pack = preflight_module._packs(files, report["engine"], 8, 32, (2,), failed)
    assert pack["chosen"] == 1 and "do not compute what they compute alone" in failed["pack"]


def test_pack_replaces_each_archive_whole_and_drops_bins_of_runs_since_finished(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for name, status in (("a-s0", "done"), ("b-s0", "paused")):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text("{}")
        (runs / name / "summary.json").write_text(json.dumps({"status": status}))
        (runs / name / "checkpoint.pt").write_bytes(b"\1" * 1000)
    assert loan.pack(runs, out) == ["runs.tgz", "carry-1.tar"]
    (runs / "b-s0" / "summary.json").write_text(json.dumps({"status": "done"}))
    assert loan.pack(runs, out) == ["runs.tgz"]
    assert sorted(p.name for p in out.iterdir()) == ["runs.tgz"]  # no stale bin, no partial file
    with tarfile.open(out / "runs.tgz") as tar:
        assert {m.name for m in tar.getmembers() if m.isfile()} == {
            "a-s0/config.json", "a-s0/summary.json", "b-s0/config.json", "b-s0/summary.json"}


def test_a_loan_killed_at_a_random_moment_brings_back_every_run_it_finished_before(bench_root, tmp_path):
    """The loan's command is killed outright (as the device tool's limit does): no final packing runs."""
    tree = ROOT
    gpu = tmp_path / "gpu"
    env = {**os.environ, "PYTHONPATH": str(GPU_PYTHON)}
    subprocess.run([sys.executable, "-m", "resbench", "loan", "bundle", "--data-root", str(bench_root),
                    "--gpu-dir", str(gpu)], cwd=tree, env=env, check=True, capture_output=True)
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    cmd = [sys.executable, "-m", "resbench", "loan", "train", "--out", str(out), "--deadline", str(time.time() + 120),
           "--work", str(work), "--device", "cpu", "--preset", "smoke", "--stages", "1", "--seeds", "4",
           "--models", "resnet20", "--preflight-iterations", "8", "--min-start", "1", "--margin", "1", "--pack-sizes", "1",
           "--gpu-dir", str(gpu)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**env, "PYTHONPATH": f"{tree}:{GPU_PYTHON}", "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = ""
    while "packed:" not in seen and proc.poll() is None:  # the first run finished and was packed
        seen += proc.stdout.readline()
    wait = random.uniform(0, 4)
    time.sleep(wait)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with tarfile.open(out / "runs.tgz") as tar:
        packed = {m.name.split("/")[0] for m in tar.getmembers() if m.name.endswith("summary.json")}
        packed = {name for name in packed
                  if json.load(tar.extractfile(f"{name}/summary.json"))["status"] == "done"}
    archived = (out / "runs.tgz").stat().st_mtime
    finished = {d.name for d in (work / "runs").iterdir() if (d / "summary.json").exists()
                and json.loads((d / "summary.json").read_text())["status"] == "done"
                and (d / "summary.json").stat().st_mtime < archived}
    assert finished and finished <= packed, f"killed {wait:.1f} s after the first packing: {seen}"


def test_status_reads_runs_on_the_gpu_machines_package_set():
    proc = subprocess.run([sys.executable, "-m", "resbench", "status", "--out", str(ROOT / "reports" / "runs")],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{GPU_PYTHON}"},
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
    guard = subprocess.run([sys.executable, "-c", "import fvcore"], env={**os.environ, "PYTHONPATH": str(GPU_PYTHON)},
                           capture_output=True, text=True)
    assert guard.returncode != 0 and "No module named 'fvcore'" in guard.stderr  # the guard does guard


def test_the_next_loans_size_counts_what_the_device_tool_sends(tmp_path):
    repo = tmp_path / "repo"
    (repo / "reports" / "runs" / "r-s0").mkdir(parents=True)
    (repo / "reports" / "runs" / "r-s0" / "metrics.jsonl").write_bytes(b"x" * MIB)  # sent: not ignored
    (repo / ".venv").mkdir()
    (repo / ".venv" / "torch.so").write_bytes(b"x" * 3 * MIB)  # not sent: ignored
    (repo / ".gitignore").write_text(".venv/\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert MIB <= loan.sent_size(repo) < 1.01 * MIB
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)  # no git: the walk skips the same
    assert MIB <= loan.sent_size(repo) < 1.01 * MIB


def test_collect_names_the_loans_files_by_the_loans_start(tmp_path):
    back = tmp_path / "back"
    (back / "r-s0").mkdir(parents=True)
    (back / "r-s0" / "config.json").write_text("{}")
    with tarfile.open(back / "runs.tgz", "w:gz") as tar:
        tar.add(back / "r-s0", arcname="r-s0")
    (back / "loan.log").write_text("loan of 2026-11-30T01:17:19Z: commit abc, device cuda, deadline in 526s\n")
    loan.collect(back, tmp_path / "repo")
    assert [p.name for p in (tmp_path / "repo" / "reports" / "gpu").iterdir()] == ["20261130-011719-loan.log"]


def test_the_commit_of_a_run_is_this_projects_or_the_one_the_loan_names(tmp_path, monkeypatch):
    from resbench import results

    other = tmp_path / "other"  # the package copied inside another project's checkout
    (other / "resbench").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    monkeypatch.setattr(results, "PACKAGE_DIR", other / "sub" / "resbench")
    (other / "sub" / "resbench").mkdir(parents=True)
    monkeypatch.delenv("RESBENCH_COMMIT", raising=False)
    assert results.git_info() == {"commit": "unknown", "dirty": False}
    monkeypatch.setenv("RESBENCH_COMMIT", "9f9a98fdc302bcbc0d3db71bbe4c0b49a62eb821")
    assert results.git_info() == {"commit": "9f9a98fdc302bcbc0d3db71bbe4c0b49a62eb821", "dirty": False}
    monkeypatch.setattr(results, "PACKAGE_DIR", other / "resbench")  # where it is that project's: it still wins
    assert results.git_info()["commit"] == "9f9a98fdc302bcbc0d3db71bbe4c0b49a62eb821"


def test_the_python_pyproject_asks_for_is_one_the_code_runs_on():
    needs = {"tomllib": (3, 11), "filter=\"data\"": (3, 11)}  # extractall(filter=...): 3.11.4 and 3.12
    asked = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = tuple(int(v) for v in asked.removeprefix(">=").split("."))
    source = "".join(p.read_text() for p in (ROOT / "resbench").rglob("*.py"))
    assert all(floor >= version for text, version in needs.items() if text in source), asked


def test_a_loan_calibrates_first_then_trains_the_precision_control_then_the_ladder(bench_root, tmp_path, monkeypatch):
    from resbench.train.engine import Engine

    gpu_dir, work, out = tmp_path / ".gpu", tmp_path / "work", tmp_path / "out"
    loan.bundle(str(bench_root), gpu_dir, "abc1234")
    bf16 = Engine(device="cpu", precision="bf16", compile=False).resolve()  # as a GPU's: bf16, so fp32 is a control
    monkeypatch.setattr(loan_plan, "_preflight", lambda *args, **kwargs: (bf16, 200.0, 1, 2))
    said = []
    loan_plan.train(gpu_dir, tmp_path, work, out, time.time() + 300, "cpu", "smoke", ("1/32",), ("resnet20",), 1, 8,
                    min_start_s=1, margin_s=1, say=said.append, calibration=("airbench94:2",), calibrate_s=60,
                    control_seeds=2)
    calibration = [i for i, line in enumerate(said) if line.startswith("calibration:")]
    assert calibration and "CUDA GPU" in said[calibration[0]]  # a CPU: airbench says in one line why not
    config = {p.parent.name: json.loads(p.read_text()) for p in (work / "runs").glob("*/config.json")}
    done = [(i, name) for i, line in enumerate(said) for name in config if line.startswith(f"done: {name} ")]
    precisions = [config[name]["precision"] for _, name in done]  # in the order the runs ended
    assert precisions[:2] == ["fp32", "fp32"] and set(precisions[2:]) == {"bf16"} and len(precisions) > 2
    assert not any(config[name]["tf32"] for _, name in done[:2])  # true fp32: TF32 off
    control = next(i for i, line in enumerate(said) if line.startswith("precision control"))
    assert calibration[0] < control < done[0][0]


def test_calibration_runs_travel_both_ways_beside_the_training_runs(tmp_path):
    runs, committed, out = tmp_path / "runs", tmp_path / "committed", tmp_path / "out"
    for root, name in ((runs, "airbench94-abc-s0"), (committed, "airbench94-abc-s1")):
        (root / "calibration" / name).mkdir(parents=True)
        for f in ("config.json", "summary.json"):
            (root / "calibration" / name / f).write_text("{}")
    loan.seed_runs(committed, tmp_path / "carry", runs)  # a seed done in an earlier loan is not trained again
    assert (runs / "calibration" / "airbench94-abc-s1" / "summary.json").exists()
    loan.pack(runs, out)
    with tarfile.open(out / "runs.tgz") as tar:
        assert {"calibration/airbench94-abc-s0/summary.json", "calibration/airbench94-abc-s1/config.json"} <= set(
            tar.getnames())
    repo = tmp_path / "repo"
    (repo / ".gpu").mkdir(parents=True)
    assert loan.collect(out, repo)["calibration runs"] == 2
    assert (repo / "reports" / "runs" / "calibration" / "airbench94-abc-s0" / "summary.json").exists()


def test_the_loan_measures_a_deep_nets_compiled_step_apart_and_keeps_it_in_the_preflight(bench_root, tmp_path):
    preflight = tmp_path / "preflight.json"
    preflight.write_text(json.dumps({"chosen": {"pack": 4}}))
    said = []
    loan_plan.measure_steps(bench_root, "cpu", preflight, 120, said.append, models=("resnet8",), backend="eager",
                            iterations=2)
    report = json.loads(preflight.read_text())
    assert report["chosen"] == {"pack": 4}  # what the preflight wrote stays
    assert [r["way"] for r in report["deep_steps"]] == ["captured", "compiled"], said
    assert said[0].startswith("step measurement: resnet8: captured ")
    loan_plan.measure_steps(bench_root, "cpu", preflight, 5, said.append, models=("resnet8",))
    assert "not measured (5 s left" in said[-1] and json.loads(preflight.read_text())["deep_steps"] == []
