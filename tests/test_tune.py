"""`resbench tune` and the machine profile `run --pack auto` reads (resbench/bench/tune.py), on CPU.

The measurements' logic (each row written as measured, the best pack kept when a larger one fails or
is slower, a cut keeping what was finished) runs against a stand-in device of known rates; one
tune and one SIGTERM run the real measurements on tiny data."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from resbench.bench import tune as tune_mod
from resbench.bench.tune import chosen_pack, load_profile, measured_rate, pack_for, tune
from resbench.cli.main import app
from resbench.train.engine import Engine

CPU = Engine(device="cpu", precision="fp32", compile=False)


@pytest.fixture
def device(monkeypatch):
    """A stand-in device: pack K's aggregate img/s from `rates` (a K missing from it: out of memory), and a
    record of the rows in the profile file at each measurement (what a kill at that moment would keep)."""
    state = {"rates": {1: 100.0, 2: 180.0, 4: 300.0, 8: 290.0}, "seen": [], "path": None}

    def pack_throughput(models, k, iterations, data, engine, out, batch_size, time_limit_s=None):
        state["seen"].append(len(load_profile(state["path"])["rows"]))
        if k not in state["rates"]:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        rate = state["rates"][k]
        return {"steady_img_per_s": rate, "per_run_img_per_s": rate / k, "tflop_per_s": 1.0, "wall_s": 0.1,
                "step": "cuda graph"}

    def one_way(network, data, engine, iterations, recipe, deadline=None):
        return {"img_per_s": 50.0 if engine.graph == "off" else 60.0, "setup_s": 0.1, "path": engine.graph,
                "losses": [2.0] * 12}

    monkeypatch.setattr(tune_mod, "pack_throughput", pack_throughput)
    monkeypatch.setattr(tune_mod, "one_way", one_way)
    monkeypatch.setattr(tune_mod, "pack_agrees", lambda *a, **k: {"agree": True, "bitwise": True, "max_loss_diff": 0.0,
                                                                   "max_weight_diff": 0.0, "steps": 12})
    monkeypatch.setattr(tune_mod, "peak_tflops", lambda device: 10.0)
    return state


def test_each_row_is_written_as_measured_and_a_slower_size_ends_the_search(device, tmp_path):
    device["path"] = path = tmp_path / "profile.json"
    profile = tune(None, CPU, path, ("resnet20",))
    assert device["seen"] == [4, 5, 6, 7]  # peak, two steps, the check: then each pack size, one at a time
    packs = [r for r in load_profile(path)["rows"] if r["what"] == "pack"]
    assert [(r["slots"], r["img_per_s"]) for r in packs] == [(1, 100), (2, 180), (4, 300), (8, 290)]  # no 16
    assert chosen_pack(profile, "resnet20") == 4 and chosen_pack(profile, "resnet56") is None
    assert measured_rate(profile, "resnet20", 4) == 75.0 and measured_rate(profile, "resnet20", 16) is None
    assert measured_rate(profile, "resnet20", 1) == 100.0  # alone in a pack of one
    assert measured_rate(profile, "resnet56", 1) is None  # never a guess


def test_a_size_out_of_memory_keeps_the_best_measured_and_a_new_tune_replaces_rows(device, tmp_path):
    device["path"] = path = tmp_path / "profile.json"
    device["rates"] = {1: 100.0, 2: 180.0}  # 4 runs out of memory
    tune(None, CPU, path, ("resnet20",))
    rows = load_profile(path)["rows"]
    assert [r.get("failed", "")[:18] for r in rows if r["what"] == "pack"] == ["", "", "RuntimeError: CUDA"]
    assert chosen_pack(load_profile(path), "resnet20") == 2
    device["rates"] = {1: 100.0, 2: 90.0}
    profile = tune(None, CPU, path, ("resnet20",))
    assert len(profile["rows"]) == len(rows)  # measured again: replaced, not added
    assert chosen_pack(profile, "resnet20") == 1


def test_a_pack_whose_runs_differ_from_runs_alone_is_never_chosen(device, tmp_path, monkeypatch):
    device["path"] = path = tmp_path / "profile.json"
    monkeypatch.setattr(tune_mod, "pack_agrees", lambda *a, **k: {"agree": False, "bitwise": False,
                                                                   "max_loss_diff": 0.5, "max_weight_diff": 0.1})
    profile = tune(None, CPU, path, ("resnet20",))
    assert chosen_pack(profile, "resnet20") == 1 and not any(r["what"] == "pack" for r in profile["rows"])


def test_pack_auto_measures_briefly_what_the_profile_lacks_then_reads_it(device, tmp_path, monkeypatch):
    device["path"] = path = tmp_path / "profile.json"
    lines = []
    assert pack_for(["resnet20"], 10, CPU, None, path, say=lines.append) == 4
    assert "measuring for at most 60 s" in lines[0] and load_profile(path)["rows"]
    monkeypatch.setattr(tune_mod, "tune", lambda *a, **k: pytest.fail("measured again"))
    assert pack_for(["resnet20"], 3, CPU, None, path) == 3  # never more than the runs to train
    assert chosen_pack(load_profile(path), "resnet20", "bf16") is None  # another arithmetic: not measured
    path.write_text(path.read_text().replace(load_profile(path)["device"], "NVIDIA H200"))
    with pytest.raises(ValueError, match="was measured on NVIDIA H200, not on this"):
        pack_for(["resnet20"], 3, CPU, None, path)  # another machine's figures are never read as this one's


def test_a_time_limit_ends_tune_with_the_rows_measured_by_then(device, tmp_path, monkeypatch):
    device["path"] = path = tmp_path / "profile.json"
    monkeypatch.setattr(tune_mod.Deadline, "reason", lambda self: "time limit" if len(device["seen"]) >= 2 else None)
    profile = tune(None, CPU, path, ("resnet20", "resnet56"), time_limit_s=60)
    assert profile["stopped"] == "time limit"
    written = load_profile(path)["rows"]
    assert [r.get("slots") for r in written if r["what"] == "pack"] == [1]  # the cut pack of 2 is no row
    assert not any(r.get("network") == "resnet56" for r in written)


def test_tune_measures_the_real_steps_and_packs_on_tiny_data(tiny_data, tmp_path):
    path = tmp_path / "profile.json"
    profile = tune(tiny_data, CPU, path, ("resnet8",), iterations=6, batch_size=32, sizes=(2,))
    rows = {(r["what"], r.get("way") or r.get("slots")): r for r in load_profile(path)["rows"]}
    assert rows[("check", None)]["bitwise"]  # two runs packed compute what they compute alone
    assert rows[("step", "captured")]["path"] == "eager (graph dry run: never captured)"
    assert rows[("step", "captured")]["agrees"] and rows[("step", "plain")]["img_per_s"] > 0
    assert rows[("pack", 2)]["img_per_s"] > 0 and chosen_pack(profile, "resnet8") == 2
    assert profile["device"] and profile["torch"]


def test_sigterm_stops_tune_at_once_with_the_rows_so_far_written(bench_root, tmp_path):
    path = tmp_path / "profile.json"
    proc = subprocess.Popen([sys.executable, "-m", "resbench", "tune", "--device", "cpu", "--networks", "resnet8",
                             "--iterations", "100000", "--batch-size", "32", "--data-root", str(bench_root),
                             "--profile", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.time()
    while not path.exists() and time.time() - started < 300 and proc.poll() is None:
        time.sleep(0.2)  # the peak is measured and written: the steps are being measured now
    assert path.exists(), proc.communicate()
    time.sleep(1)
    sent = time.time()
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert time.time() - sent < 30 and "stopped: stop requested" in out
    rows = json.loads(path.read_text())["rows"]
    assert [r["what"] for r in rows] == ["peak"]


def test_tune_refuses_bad_options_in_one_line_before_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(tune_mod, "tune", lambda *a, **k: pytest.fail("measured despite a bad option"))
    for args, said in ((["--time-limit", "soon"], "--time-limit takes a duration"),
                       (["--networks", "resnet9"], "resnet9"), (["--networks", "vgg16"], "ImageNet"), (["--sizes", "0"], "one size of 1 or more")):
        result = CliRunner().invoke(app, ["tune", "--device", "cpu", "--profile", str(tmp_path / "p.json"), *args])
        assert result.exit_code == 2 and said in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
        assert not (tmp_path / "p.json").exists()


def test_a_bad_duration_or_size_is_refused_before_torch_is_imported():
    """Refusals come at once: not after the seconds torch and torchvision take to import."""
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom resbench.cli.main import app\n"
            "for bad in (['--time-limit', 'soon'], ['--sizes', '0']):\n"
            "    result = CliRunner().invoke(app, ['tune', '--device', 'cpu', *bad])\n"
            "    print(result.exit_code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.split() == ["2", "False", "2", "False"], proc.stdout + proc.stderr


def test_run_refuses_a_pack_that_is_neither_a_number_nor_auto_before_looking_for_data(tmp_path):
    for pack in ("0", "many"):
        result = CliRunner().invoke(app, ["run", "table6", "--pack", pack, "--device", "cpu", "--data-root",
                                          str(tmp_path / "nowhere"), "--out", str(tmp_path / "runs")])
        assert result.exit_code == 2 and "--pack takes a number of runs (1 or more) or auto" in result.stderr, \
            result.output


def test_every_bench_command_and_tune_refuse_an_unknown_device_before_doing_anything(tmp_path):
    # `bench ... --device tpu` was a torch traceback (and `bench imagenet` first generated 2,000 JPEGs)
    for command in (["bench", "cifar"], ["bench", "jobs"], ["bench", "fuse"], ["bench", "pack"], ["bench", "step"],
                    ["bench", "imagenet"], ["tune"]):
        result = CliRunner().invoke(app, [*command, "--device", "tpu"])
        assert result.exit_code == 2 and "unknown device 'tpu'" in result.output, (command, result.output)
