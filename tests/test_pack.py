"""Packed training (resbench.train.pack) against the same runs trained alone, on CPU: bit for bit.

A pack steps each run with the very step it takes alone (on a GPU, on its own stream), so unlike
a fused group (one grouped convolution over the runs) nothing is summed in another order: every
logged loss, every weight and the summaries' errors must be equal, not close."""
import json
from dataclasses import replace

import pytest
import torch

from conftest import cli, one_line_error
from resbench.train.engine import Engine
from resbench.train.loop import CifarRun, train_cifar
from resbench.train.pack import train_packed
from resbench.paper.recipes import CifarRecipe
from resbench.runs.rundir import read_metrics

CPU = Engine(device="cpu", precision="fp32", compile=False)


def recipe(**kw) -> CifarRecipe:
    base = dict(batch_size=32, iterations=16, milestones=(6, 12), log_every=4, eval_every=8, checkpoint_every=8)
    return CifarRecipe(**{**base, **kw}).validate()


def records(run_dir):
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run_dir)]


def same_weights(a, b):
    a, b = (torch.load(d / "checkpoint.pt", weights_only=False)["model"] for d in (a, b))
    return all(torch.equal(a[k], b[k]) for k in a)


RUNS = [CifarRun("resnet8", recipe(), 0), CifarRun("plain8", recipe(), 1), CifarRun("resnet14", recipe(), 2),
        CifarRun("resnet8", recipe(iterations=12, milestones=(6,), warmup=True, warmup_window=2), 3)]


@pytest.mark.parametrize("graph", ["off", "dry"])
def test_packed_runs_of_mixed_depths_equal_their_runs_alone_bit_for_bit(tiny_data, tmp_path, graph):
    engine = replace(CPU, graph=graph)
    alone = {run.seed: train_cifar(run, tiny_data, tmp_path / f"alone-{run.seed}", engine, progress=False)
             for run in RUNS}
    packed = dict(train_packed([(run, tmp_path / f"pack-{run.seed}") for run in RUNS], tiny_data, engine, slots=2,
                               progress=False))
    assert sorted(packed) == sorted(tmp_path / f"pack-{run.seed}" for run in RUNS)  # 4 runs through 2 slots
    for run in RUNS:
        a, p = alone[run.seed], packed[tmp_path / f"pack-{run.seed}"]
        assert p["status"] == "done" and p["pack_slots"] == 2 and "pack_slots" not in a
        assert (p["test_error"], p["train_error"], p["iteration"]) == (a["test_error"], a["train_error"], a["iteration"])
        assert records(tmp_path / f"pack-{run.seed}") == records(tmp_path / f"alone-{run.seed}")
        assert same_weights(tmp_path / f"pack-{run.seed}", tmp_path / f"alone-{run.seed}")


def test_a_run_that_ends_frees_its_slot_for_the_next_admitted_and_refused_runs_are_skipped(tiny_data, tmp_path):
    order, refused = [], RUNS[1]
    runs = [(run, tmp_path / f"s{run.seed}") for run in RUNS]
    admit = lambda run, run_dir, deadline: run is not refused and not order.append(run.seed)  # noqa: E731
    ended = [run_dir.name for run_dir, _ in train_packed(iter(runs), tiny_data, CPU, 2, False, admit=admit)]
    assert order == [0, 2, 3] and ended[0] in ("s0", "s3") and sorted(ended) == ["s0", "s2", "s3"]
    assert not (tmp_path / "s1").exists()


def test_a_deadline_pauses_every_run_in_flight_and_they_resume_to_the_same_end(tiny_data, tmp_path, monkeypatch):
    from resbench.train import stop

    calls = {"n": 0}

    def reason(self):  # the deadline comes after 20 steps of the pack: 10 of each run's 16
        calls["n"] += 1
        return "time limit" if calls["n"] > 20 else None
    runs = [(run, tmp_path / f"p{run.seed}") for run in RUNS[:2]]
    with monkeypatch.context() as m:
        m.setattr(stop.Deadline, "reason", reason)
        first = dict(train_packed(runs, tiny_data, CPU, 2, False))
    assert {s["status"] for s in first.values()} == {"paused"}
    resumed = dict(train_packed(runs, tiny_data, CPU, 2, False))
    for run, run_dir in runs:
        alone = train_cifar(run, tiny_data, tmp_path / f"a{run.seed}", CPU, progress=False)
        assert resumed[run_dir]["test_error"] == alone["test_error"]
        assert [r for r in records(run_dir) if r["record"] != "event"] == records(tmp_path / f"a{run.seed}")


def test_a_sigterm_during_one_pack_holds_for_the_next_pack_of_the_process(tiny_data, tmp_path, monkeypatch):
    import os
    import signal

    from resbench.data.pipeline import DeviceLoader

    real_batch = DeviceLoader.batch

    def sigterm_at_5(self, iteration):
        if iteration == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_batch(self, iteration)
    monkeypatch.setattr(DeviceLoader, "batch", sigterm_at_5)
    first = dict(train_packed([(RUNS[0], tmp_path / "first")], tiny_data, CPU, 2, False))
    assert first[tmp_path / "first"]["status"] == "paused" and "SIGTERM" in first[tmp_path / "first"]["reason"]
    monkeypatch.setattr(DeviceLoader, "batch", real_batch)
    assert dict(train_packed([(RUNS[1], tmp_path / "next")], tiny_data, CPU, 2, False)) == {}  # the process is ending
    assert not (tmp_path / "next").exists() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_pack_makes_one_stream_per_slot_and_hands_it_to_the_next_run(tiny_data, tmp_path, monkeypatch):
    """CUDA hands streams out from a pool of 32: a stream per run (two, with the capture's) made a pack of 32
    at most 16-way. CPU: the streams are stand-ins, counted as they are made and entered."""
    import contextlib

    from resbench.train import pack

    made, entered = [], []

    class Stream:
        def synchronize(self):
            pass

    def on(stream):
        entered.append(stream)
        return contextlib.nullcontext()
    monkeypatch.setattr(pack, "new_stream", lambda device: made.append(Stream()) or made[-1])
    monkeypatch.setattr(torch.cuda, "stream", on)
    short = recipe(iterations=4, milestones=(2,), log_every=2, eval_every=4, checkpoint_every=4)
    runs = [(CifarRun("resnet8", short, seed), tmp_path / f"r{seed}") for seed in range(3)]
    ended = dict(train_packed(runs, tiny_data, CPU, 2, False))
    assert [s["status"] for s in ended.values()] == ["done"] * 3
    assert len(made) == 2 and set(map(id, entered)) == set(map(id, made))  # the third run took a freed slot's


def test_a_run_that_fails_leaves_the_pack_and_the_others_go_on(tiny_data, tmp_path):
    broken = CifarRun("resnet9", recipe(), 0)  # 6n+2 layers only: fails as its Member is built
    runs = [(broken, tmp_path / "broken"), (RUNS[0], tmp_path / "fine")]
    ended = dict(train_packed(runs, tiny_data, CPU, 2, False))
    assert ended[tmp_path / "broken"]["status"] == "failed" and "Traceback" in ended[tmp_path / "broken"]["traceback"]
    assert ended[tmp_path / "fine"]["status"] == "done"


def test_resbench_run_pack_trains_a_row_side_by_side_and_a_rerun_skips_it(jpeg_root, tmp_path):
    from resbench.report.runs import load_runs

    args = ["run", "table6", "--preset", "smoke", "--set", "iterations=20", "--models", "resnet20",
            "--seeds", "2", "--pack", "2", "--device", "cpu", "-q", "--data-root", str(jpeg_root),
            "--runs", str(tmp_path / "runs")]
    first = cli(*args)
    assert first.exit_code == 0 and "2/2 runs done" in first.stdout, first.output
    runs = load_runs(tmp_path / "runs")
    assert sorted(runs["seed"]) == [0, 1] and set(runs["status"]) == {"done"}
    again = cli(*args)  # nothing left to train
    assert again.exit_code == 0 and again.stdout.count("done already") == 2, again.output
    assert "does not combine with --fuse" in one_line_error(args + ["--fuse", "2"])


def test_bench_pack_measures_each_size_against_the_first_and_the_peak_in_one_run(bench_root, tmp_path):
    proc = cli("bench", "pack", "--device", "cpu", "--models", "resnet8,plain8", "--sizes", "1,2", "--no-grow",
               "--iterations", "8", "--batch-size", "32", "--data-root", str(bench_root),
               "--out", str(tmp_path / "pack.json"))
    assert proc.exit_code == 0, proc.output
    rows = json.loads((tmp_path / "pack.json").read_text())["results"]
    assert [r["slots"] for r in rows] == [1, 2] and rows[0]["ratio"] == 1.0
    assert rows[1]["ratio"] == round(rows[1]["steady_img_per_s"] / rows[0]["steady_img_per_s"], 2)
    assert all(0 < r["share_of_peak"] < 1 and r["tflop_per_s"] > 0 for r in rows)
    assert "share of peak" in proc.stdout


def test_the_pack_check_finds_a_pack_computing_what_its_runs_alone_do(tiny_data, tmp_path):
    from resbench.bench.packs import chosen_size, pack_agrees

    check = pack_agrees(tiny_data, CPU, tmp_path, steps=6, batch_size=32, model="resnet8")
    assert check["bitwise"] and check["agree"] and check["max_loss_diff"] == 0
    rows = [{"slots": k, "steady_img_per_s": v} for k, v in ((1, 100), (2, 180), (4, 300), (8, 310))]
    assert chosen_size(rows) == 4  # within 5% of the best: as fast, each run done sooner
