"""The GPU loan rehearsed on a CPU: scripts/gpu_loan.sh on a bare copy of the tree, twice, limits checked."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from resbench.loan import BIN_BYTES, MIB, TRAVEL_BYTES, first_fit, fits

ROOT = Path(__file__).resolve().parents[1]
GPU_PYTHON = ROOT / "tests" / "gpu_python"  # the GPU machine's package set: no fvcore, papermill, submitit, ...
MODELS = "resnet110,resnet20"  # ResNet-110 first: a 30 s loan cannot finish one (about 50 s here), so it is carried


def bare_copy(dest: Path) -> Path:
    """The tracked files only, as the device tool sends them (no .git, no .venv)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True)
    names = listed.stdout.splitlines() if listed.returncode == 0 else \
        [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    for name in names:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def loan(tree: Path, out: Path, work: Path, home: Path, deadline_s: int) -> str:
    env = {**os.environ, "DEVICE": "cpu", "PRESET": "smoke", "STAGES": "1", "SEEDS": "2", "MODELS": MODELS,
           "DEADLINE_S": str(deadline_s), "PREFLIGHT": "8", "PACK_SIZES": "1", "MIN_START": "3", "MARGIN": "2", "OUT": str(out),
           "WORK": str(work), "HOME": str(home), "PYTHON": sys.executable, "PYTHONPATH": str(GPU_PYTHON),
           "OMP_NUM_THREADS": "1",  # one thread: steady timings beside the test process on 2 cores
           "CALIBRATE": ""}  # the calibration's refusal on a CPU is tested apart (test_loan_kit): time for the runs
    out.mkdir(parents=True)
    proc = subprocess.run(["sh", "scripts/gpu_loan.sh"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=deadline_s + 120)
    log = (out / "loan.log").read_text()
    assert proc.returncode == 0, proc.stderr + log
    assert "Traceback" not in log and "runs in" in log, log  # `resbench status` ran on the GPU's package set
    assert "calibration: skipped (none asked for)" in log and "precision control: skipped" in log
    return log


def check_limits(out: Path) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= 8, files
    for f in files:
        assert f.stat().st_size <= 16 * MIB and len(f.relative_to(out).parts) <= 3, f
        assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in f.relative_to(out).parts), f


def states(runs: Path) -> dict[str, str]:
    return {d.name: json.loads((d / "summary.json").read_text())["status"] for d in runs.iterdir()
            if (d / "summary.json").exists()}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, bench_root):
    """Two loans in a row, collected between them, as a session would do them."""
    base = tmp_path_factory.mktemp("loan")
    tree = bare_copy(base / "tree")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "resbench", "loan", "bundle", "--data-root", str(bench_root),
                    "--gpu-dir", str(tree / ".gpu")], cwd=ROOT, env=env, check=True, capture_output=True)
    first = loan(tree, base / "out1", base / "work1", base / "home1", 30)
    check_limits(base / "out1")
    collected = subprocess.run([sys.executable, "-m", "resbench", "loan", "collect", str(base / "out1")],
                               cwd=tree, env=env, capture_output=True, text=True)
    assert collected.returncode == 0, collected.stderr
    after_first = {d.name: {f.name: f.read_bytes() for f in d.iterdir() if f.is_file()}
                   for d in (tree / "reports/runs").iterdir()}
    second = loan(tree, base / "out2", base / "work2", base / "home2", 60)
    check_limits(base / "out2")
    return {"tree": tree, "base": base, "first": first, "second": second, "after_first": after_first}


def test_a_loan_pauses_what_it_cannot_finish_and_carries_it_within_the_limits(rehearsal):
    base, tree = rehearsal["base"], rehearsal["tree"]
    first = states(base / "work1" / "runs")
    assert "paused" in first.values() and "done" in first.values(), rehearsal["first"]
    bins = sorted(p.name for p in (tree / ".gpu" / "carry").iterdir())
    assert bins == ["carry-1.tar"] and (base / "out1" / "runs.tgz").exists()
    sent = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert sent <= TRAVEL_BYTES
    preflight = json.loads((base / "out1" / "preflight.json").read_text())
    assert preflight["finite"] and preflight["chosen"]["step"] == "plain"  # a CPU never captures


def test_the_next_loan_resumes_paused_runs_leaves_finished_ones_and_ends_as_one_uninterrupted_run(
        rehearsal, bench_root, tmp_path):
    from resbench.data.cifar import cifar10_files
    from resbench.train.engine import Engine
    from resbench.train.loop import CifarRun, train_cifar
    from resbench.train.recipe import CifarRecipe

    base = rehearsal["base"]
    first, second = states(base / "work1" / "runs"), states(base / "work2" / "runs")
    paused = [name for name, s in first.items() if s == "paused"]
    assert all(second[name] == "done" for name in paused), rehearsal["second"]
    for name in paused:
        events = [json.loads(line) for line in (base / "work2/runs" / name / "metrics.jsonl").open()
                  if '"event"' in line]
        summary = json.loads((base / "work1/runs" / name / "summary.json").read_text())
        assert [(e["event"], e["iter"]) for e in events] == [("resumed", summary["iteration"])]
    for name, files in rehearsal["after_first"].items():  # finished in the first loan: untouched
        if first.get(name) == "done":
            assert {f: (base / "work2/runs" / name / f).read_bytes() for f in files} == files, name
    name = paused[0]
    config = json.loads((base / "work2/runs" / name / "config.json").read_text())
    recipe = CifarRecipe(**{**config["recipe"], "milestones": tuple(config["recipe"]["milestones"])})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the loans trained: another thread count sums in another order
    try:
        straight = train_cifar(CifarRun(config["model"], recipe, config["seed"], config["preset"]),
                               cifar10_files(bench_root).load(), tmp_path / "straight", Engine("cpu", "fp32", False),
                               progress=False)
    finally:
        torch.set_num_threads(threads)
    resumed = json.loads((base / "work2/runs" / name / "summary.json").read_text())
    assert resumed["test_error"] == straight["test_error"] and resumed["train_error"] == straight["train_error"]
    curves = [[(r["iter"], r.get("loss")) for r in map(json.loads, (d / "metrics.jsonl").open())
               if r["split"] in ("train", "test")] for d in (base / "work2/runs" / name, tmp_path / "straight")]
    assert curves[0] == curves[1]


def test_collect_refuses_a_carry_that_would_not_travel(tmp_path):
    from resbench.loan import collect

    (tmp_path / "back").mkdir()
    (tmp_path / "back" / "carry-1.tar").write_bytes(b"\0" * (TRAVEL_BYTES + 1))
    with pytest.raises(ValueError, match="over 64 MiB"):
        collect(tmp_path / "back", tmp_path)
    assert not (tmp_path / ".gpu" / "carry").exists()


def test_checkpoints_are_binned_first_fit_and_admitted_only_while_they_fit():
    sizes = {"a": 9 * MIB, "b": 8 * MIB, "c": 6 * MIB, "d": 5 * MIB}
    bins = first_fit(sizes)
    assert bins == [["a", "c"], ["b", "d"]] and all(sum(sizes[n] for n in b) <= BIN_BYTES for b in bins)
    assert fits(sizes) and not fits({**sizes, "e": 15 * MIB}) and not fits({"huge": 17 * MIB})


def test_a_loan_in_two_commands_trains_on_between_them_and_the_second_brings_back_the_rest(bench_root, tmp_path):
    """PHASE=start returns after COMMAND_S (here 2 s: before any run ends) while the training goes on detached;
    PHASE=finish, the next command on the still-warm machine, waits for it and brings back everything."""
    tree = bare_copy(tmp_path / "tree")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "resbench", "loan", "bundle", "--data-root", str(bench_root),
                    "--gpu-dir", str(tree / ".gpu")], cwd=ROOT, env=env, check=True, capture_output=True)
    env = {**os.environ, "DEVICE": "cpu", "PRESET": "smoke", "STAGES": "1/32,1", "SEEDS": "1", "MODELS": "resnet20",
           "DEADLINE_S": "50", "COMMAND_S": "2", "PREFLIGHT": "8", "PACK_SIZES": "2", "MIN_START": "3",  # a pack of 2
           "MARGIN": "2", "WORK": str(tmp_path / "work"), "HOME": str(tmp_path / "home"), "PYTHON": sys.executable,
           "PYTHONPATH": str(GPU_PYTHON), "OMP_NUM_THREADS": "1", "CALIBRATE": ""}
    outs = []
    for phase in ("start", "finish"):
        out = tmp_path / phase
        out.mkdir()
        proc = subprocess.run(["sh", "scripts/gpu_loan.sh"], cwd=tree, env={**env, "PHASE": phase, "OUT": str(out)},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        check_limits(out)
        outs.append(out)
    first = (outs[0] / "loan.log").read_text()
    assert "command 1 returns after" in first and "loan ended" not in first
    last = (outs[1] / "loan.log").read_text()
    assert "Traceback" not in last and "loan ended" in last, last
    done = finished_in(outs[1] / "runs.tgz")
    assert len([name for name in done if "-1of" not in name]) == 1 and len(done) >= 2, last  # the full run and 1/32
    returned = last.index("command 1 returns after")
    assert all(last.index(f"done: {name}") > returned for name in done), last  # all trained after it returned
    assert "packs of 2" in last, last


def finished_in(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name.split("/")[0] for m in tar.getmembers() if m.name.endswith("summary.json")
                and json.load(tar.extractfile(m))["status"] == "done" and "-smoke-" in m.name}
