"""The data calibration (resbench/calibrate.py): airbench's files, its run directories, its one-line refusals.
Training airbench itself needs CUDA; everything around it runs here."""
import time
from pathlib import Path

import pandas.testing as pd_testing
import pytest
import torch
from typer.testing import CliRunner

from resbench.calibrate.peers import PEERS, calibrate, parse_plan, write_tensors
from resbench.cli.main import app
from resbench.data.cifar import CLASSES, cifar10_files
from resbench.runs.rundir import read_config, read_env, read_summary

from conftest import ROOT


def test_airbench_reads_the_written_files_as_resbench_decoded_them(tiny_data, tmp_path):
    airbench = pytest.importorskip("airbench")
    sums = write_tensors(tiny_data, tmp_path / "cifar10")
    assert set(sums) == {"train.pt", "test.pt"} and all(len(s) == 64 for s in sums.values())
    for train, x, y in ((True, tiny_data.train_x, tiny_data.train_y), (False, tiny_data.test_x, tiny_data.test_y)):
        loader = airbench.CifarLoader(str(tmp_path / "cifar10"), train=train, batch_size=50, gpu="cpu")
        # airbench keeps images as fp16 in [0, 1], NCHW: exactly our uint8 pixels / 255
        assert torch.equal((loader.images.float() * 255).round().to(torch.uint8), x)
        assert torch.equal(loader.labels, y.long()) and loader.classes == list(CLASSES)
    assert write_tensors(tiny_data, tmp_path / "cifar10") == sums  # kept, not written again


def fake_trainer(calls, fail_seed=None):
    def train_one(peer, seed, folder):
        assert (folder / "train.pt").exists() and folder.name == "cifar10"  # where airbench's train() looks
        calls.append((peer.name, seed))
        if seed == fail_seed:
            raise RuntimeError("CUDA error: out of memory")
        return {"test_error": 6.0 + seed / 10, "train_s": 1.0, "gpu": "test"}
    return train_one


def test_calibration_runs_are_run_directories_and_resume_by_seed(jpeg_root, tmp_path):
    files, out, calls = cifar10_files(jpeg_root), tmp_path / "calibration", []
    written = calibrate(files, parse_plan(["airbench94:3"]), out, say=lambda _: None,
                        train_one=fake_trainer(calls, fail_seed=1))
    assert [w["status"] for w in written] == ["done", "failed", "done"]
    run = out / f"{written[0]['dir'].split('/')[-1]}"
    config = read_config(run)
    assert config["kind"] == "calibration" and config["peer"] == "airbench94" and config["seed"] == 0
    assert config["data"]["sha256"] == files.sha256 and config["published"]["error"] == 5.99
    assert set(config["data"]["airbench_files_sha256"]) == {"train.pt", "test.pt"}
    assert read_env(run)["data"]["sha256"] == files.sha256
    assert "CUDA error" in read_summary(out / written[1]["dir"].split("/")[-1])["error"]
    # again: only the failed seed trains, and two more seeds asked for are added
    written = calibrate(files, parse_plan(["airbench94:5"]), out, say=lambda _: None, train_one=fake_trainer(calls))
    assert calls[3:] == [("airbench94", 1), ("airbench94", 3), ("airbench94", 4)]
    assert all(w["status"] == "done" for w in written)


def test_no_seed_starts_that_would_end_after_the_deadline(jpeg_root, tmp_path):
    calls, said = [], []
    deadline = time.time() + PEERS["airbench94"].guessed_s  # the guess (x1.2) does not fit
    calibrate(cifar10_files(jpeg_root), parse_plan(["airbench94:2"]), tmp_path, deadline, said.append,
              fake_trainer(calls))
    assert calls == [] and "not started" in said[-1]


def test_plan_and_refusals_are_one_line(jpeg_root, tmp_path):
    assert [(p.name, n) for p, n in parse_plan(["airbench94:10", "airbench96"])] == [("airbench94", 10),
                                                                                      ("airbench96", 3)]
    for bad, said in (["airbench97:2"], "unknown peer"), (["airbench94:0"], "positive whole number"):
        with pytest.raises(ValueError, match=said):
            parse_plan(bad)
    result = CliRunner().invoke(app, ["calibrate", "--data-root", str(jpeg_root), "--runs", str(tmp_path)])
    if not torch.cuda.is_available():
        assert result.exit_code == 2 and "CUDA GPU" in result.output and len(result.output.strip().splitlines()) == 1
        assert not any(tmp_path.iterdir())


def test_reports_show_the_penalty_beside_the_gap_and_never_apply_it(jpeg_root, tmp_path, paper_counts):
    # paper_counts: the reports read the models' counts the session has made once
    import shutil

    from resbench.report.core import Report

    runs = tmp_path / "runs"
    shutil.copytree(ROOT / "reports" / "runs", runs, ignore=shutil.ignore_patterns("calibration"))
    before = Report.build("table6", runs)
    assert "Data calibration (cifar10-jpeg-q75): not measured yet" in before.markdown()
    assert "How much of the gap is the data?" not in before.markdown()

    files = cifar10_files(jpeg_root)
    errors = iter([6.4, 6.6, 6.5])
    calibrate(files, parse_plan(["airbench94:3"]), runs / "calibration", say=lambda _: None,
              train_one=lambda peer, seed, folder: {"test_error": next(errors), "train_s": 3.0, "gpu": "H200"})
    after = Report.build("table6", runs)
    line = after.calibration.iloc[0]
    assert (line["peer"], line["n"]) == ("airbench94", 3) and line["penalty"] == pytest.approx(6.5 - 5.99)
    assert line["ci_low"] < line["penalty"] < line["ci_high"]  # t interval over 3 seeds, published taken as exact
    text = after.markdown()
    assert ("on this data airbench94 ends at 6.50% test error (published 5.99% on the original CIFAR-10, over "
            "1,000 runs): +0.51 ± 0.25 pp (95% CI, 3 seeds)") in text
    section = text.split("## How much of the gap is the data?")[1].split("\n## ")[0]
    assert "| resnet20 | error |" not in section and "resnet20 | proxy: JPEG q75 data (bf16+TF32) | 2 | +3.34" in section
    assert "schedule 1/32" not in section  # a budget run's gap is not the full recipe's: no penalty beside it
    pd_testing.assert_frame_equal(after.diff, before.diff)  # verdicts stay against the paper's own number
    out = after.save(tmp_path / "report")
    assert (out / "calibration.csv").exists()
    from resbench.report.index import calibrated

    (said,) = calibrated(runs)
    assert said.startswith("cifar10-jpeg-q75: on this data airbench94 ends at 6.50% test error (published 5.99% on "
                           "the original CIFAR-10, over 1,000 runs): +0.51 ± 0.25 pp (95% CI, 3 seeds) (H200; code ")
    assert calibrated(tmp_path / "no runs")[0].startswith("not measured yet")


def test_airbenchs_own_training_is_called_unchanged_from_the_folder_it_reads(tiny_data, tmp_path, monkeypatch):
    """The glue around airbench (which needs CUDA): its train94() called with nothing but verbose=False, from the
    folder holding cifar10/, seeded; its TTA level read from its own hyperparameters; errors in percent."""
    import sys
    import types

    from resbench.calibrate import peers as calibration

    calls = {}
    net = torch.nn.Linear(1, 1)

    def train94(**kwargs):
        calls.update(kwargs=kwargs, cwd=Path.cwd(), draw=torch.rand(1).item())
        return net

    def evaluate(model, loader, tta_level=0):
        assert model is net and loader == "test loader of cifar10"
        return {2: 0.9375, 0: 0.93}[tta_level]

    fake = types.SimpleNamespace(train94=train94, evaluate=evaluate, lib_airbench94=types.SimpleNamespace(
        hyp={"net": {"tta_level": 2}}), CifarLoader=lambda path, train, batch_size: f"test loader of {path}")
    monkeypatch.setitem(sys.modules, "airbench", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    folder = tmp_path / "cache" / "cifar10"
    write_tensors(tiny_data, folder)
    figures = calibration._airbench_trainer()(PEERS["airbench94"], 7, folder)
    assert calls["kwargs"] == {"verbose": False} and calls["cwd"] == folder.parent
    assert calls["draw"] == torch.rand(1, generator=torch.Generator().manual_seed(7)).item()  # seeded with the run's
    assert figures["test_error"] == 6.25 and figures["test_error_no_tta"] == 7.0 and figures["tta_level"] == 2
    assert figures["gpu"] == "NVIDIA H200" and Path.cwd() != folder.parent  # back where it was


def test_calibrate_ends_by_saying_what_the_data_costs(jpeg_root, tmp_path, monkeypatch):
    from resbench.calibrate import peers as calibration

    errors = iter([6.3, 6.5])
    monkeypatch.setattr(calibration, "_airbench_trainer", lambda: lambda peer, seed, folder: {
        "test_error": next(errors), "train_s": 3.0, "gpu": "NVIDIA H200"})
    result = CliRunner().invoke(app, ["calibrate", "airbench94:2", "--data-root", str(jpeg_root), "--runs",
                                      str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "2 calibration run(s) trained" in result.output
    assert "cifar10-jpeg-q75: on this data airbench94 ends at 6.40% test error (published 5.99%" in result.output


def test_the_published_means_are_the_ones_airbenchs_code_states():
    """Each peer's published mean and run count, as the header of its lib_airbench9x.py says ('# 94.01 in n=1000')."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("airbench")
    if spec is None:
        pytest.skip("airbench is not installed (pip install -e '.[calibrate]')")
    for peer in PEERS.values():
        header = (Path(spec.origin).parent / f"lib_{peer.name}.py").read_text().splitlines()[0]
        mean, runs = re.match(r"# ([\d.]+) in n=(\d+)", header).groups()
        assert (float(mean), int(runs)) == (peer.published_accuracy, peer.published_runs), header
