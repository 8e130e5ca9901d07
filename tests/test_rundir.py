"""A run directory's files, read and written by the one module that owns them (resbench.runs.rundir)."""
import json
import warnings

import pytest

from resbench.runs.rundir import (METRICS, MetricsLog, RunDirError, config_key, read_config, read_env, read_metrics,
                                  read_status, read_summary, run_dirs, short_hash, write_config, write_summary)

RECORDS = [{"iter": 10, "record": "train", "loss": 2.0}, {"iter": 20, "record": "train", "loss": 1.5},
           {"iter": 20, "record": "test", "error": 60.0}]


def write_metrics(run_dir, lines: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).write_text("".join(f"{line}\n" for line in lines))


def test_a_torn_last_line_is_left_out_silently(tmp_path):
    write_metrics(tmp_path, [json.dumps(r) for r in RECORDS])
    with open(tmp_path / METRICS, "a") as f:
        f.write('{"iter": 30, "rec')  # killed while appending
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_metrics(tmp_path) == RECORDS


def test_a_bad_line_mid_file_is_named_and_the_rest_is_kept(tmp_path):
    lines = [json.dumps(RECORDS[0]), "garbage", json.dumps(RECORDS[1]), json.dumps(RECORDS[2])]
    write_metrics(tmp_path / "resnet20-run", lines)
    with pytest.warns(UserWarning, match=r"resnet20-run/metrics\.jsonl: line 2 is not a JSON record"):
        assert read_metrics(tmp_path / "resnet20-run") == RECORDS


def test_metrics_written_before_the_record_key_read_as_records(tmp_path):
    """Run directories of 2026-11 and earlier (the committed evidence among them) named a record's kind "split"."""
    old = [{"iter": 10, "split": "train", "loss": 2.0}, {"iter": 10, "split": "event", "event": "resumed"}]
    write_metrics(tmp_path, [json.dumps(r) for r in old])
    assert read_metrics(tmp_path) == [{"iter": 10, "record": "train", "loss": 2.0},
                                      {"iter": 10, "record": "event", "event": "resumed"}]
    assert read_metrics(tmp_path, "event") == [{"iter": 10, "record": "event", "event": "resumed"}]


def test_resuming_keeps_the_readable_records_up_to_the_checkpoint(tmp_path):
    write_metrics(tmp_path, [json.dumps(RECORDS[0]), "garbage", json.dumps(RECORDS[1]), '{"iter": 30, "record": "tr'])
    with pytest.warns(UserWarning):
        assert MetricsLog(tmp_path).truncate_after(20) == RECORDS[:2]
    assert read_metrics(tmp_path) == RECORDS[:2]  # rewritten whole: the garbage and the torn line are gone


def test_files_round_trip_and_absent_ones_read_empty(tmp_path):
    run = tmp_path / "r-s0"
    assert read_summary(run) == {} and read_env(run) == {} and read_metrics(run) == [] and read_status(run) is None
    write_config(run, {"model": "resnet20"})
    write_summary(run, {"status": "done", "test_error": 8.75})
    assert read_config(run) == {"model": "resnet20"} and read_status(run) == "done"
    (tmp_path / "not-a-run").mkdir()
    assert run_dirs(tmp_path) == [run] and run_dirs(tmp_path / "absent") == []


def test_an_unreadable_config_names_the_file_and_what_to_do(tmp_path):
    write_metrics(tmp_path / "r-s0", [])
    (tmp_path / "r-s0" / "config.json").write_text('{"model": ')
    with pytest.raises(RunDirError, match=r"r-s0/config\.json cannot be read .*move r-s0 out of"):
        read_config(tmp_path / "r-s0")


def test_keys_hash_what_determines_the_result_and_only_that():
    config = {"model": "resnet20", "seed": 0, "precision": "fp32", "data": {"variant": "v", "source": "/a"},
              "recipe": {"lr": 0.1, "log_every": 50}}
    moved = {**config, "data": {"variant": "v", "source": "/elsewhere"}, "recipe": {"lr": 0.1, "log_every": 10}}
    assert config_key(config) == config_key(moved) != config_key({**config, "seed": 1})
    assert len(short_hash({"peer": "airbench94"})) == 10


def test_a_run_resumed_on_another_machine_names_that_machine_in_its_log(tiny_data, tmp_path, monkeypatch):
    """env.json is written when a run starts; a run paused on one machine and resumed on another logs the
    second one in its `resumed` event (a CPU run's machine is its CPU: `gpu` alone said nothing)."""
    from resbench.data.pipeline import DeviceLoader
    from resbench.paper.recipes import CifarRecipe
    from resbench.train import loop
    from resbench.train.engine import Engine
    from resbench.train.loop import CifarRun, train_cifar

    run = CifarRun("resnet8", CifarRecipe(batch_size=32, iterations=8, milestones=(6, 7), log_every=2, eval_every=4,
                                          checkpoint_every=4).validate(), seed=0)
    cpu = Engine(device="cpu", precision="fp32", compile=False)
    real_batch = DeviceLoader.batch

    def cut_at_6(self, iteration):
        if iteration == 6:
            raise KeyboardInterrupt  # after the checkpoint at 4
        return real_batch(self, iteration)
    monkeypatch.setattr(DeviceLoader, "batch", cut_at_6)
    with pytest.raises(KeyboardInterrupt):
        train_cifar(run, tiny_data, tmp_path, cpu, progress=False)
    monkeypatch.setattr(DeviceLoader, "batch", real_batch)
    first = read_env(tmp_path)["cpu"]
    real_environment = loop.environment
    monkeypatch.setattr(loop, "environment", lambda *a: {**real_environment(*a), "cpu": "Another CPU", "host": "b"})
    train_cifar(run, tiny_data, tmp_path, cpu, progress=False)
    resumed, = [r for r in read_metrics(tmp_path) if r.get("event") == "resumed"]
    assert (resumed["iter"], resumed["cpu"], resumed["host"]) == (4, "Another CPU", "b")
    assert read_env(tmp_path)["cpu"] == first != "Another CPU"  # the start, as it was
