"""Portable runs (`resbench runs export / import`): what travels, what an import may replace, what it refuses."""
import contextlib
import copy
import hashlib
import io
import json
import shutil
import tarfile

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_images
from resbench.cli.main import app
from resbench.data.cifar import CifarData
from resbench.runs import archive as archive_module
from resbench.runs.archive import MANIFEST, ArchiveError, choose_runs, export_runs
from resbench.runs.checkpoint import LATEST, PREVIOUS, load_checkpoint, save_checkpoint
from resbench.runs.rundir import (MetricsLog, config_key, read_config, read_status, read_summary, run_dir_for,
                                  write_config, write_summary)
from resbench.runs.store import LOCK, claim
from resbench.runs.unarchive import import_runs
from resbench.sweep.options import Schedule, Sweep
from resbench.sweep.plan import prepare, run_experiment
from resbench.train.engine import Engine

WIDE = {"COLUMNS": "200"}
CPU = Engine(device="cpu", precision="fp32", compile=False)


def tiny_cifar():
    train_x, train_y = make_images(320)
    test_x, test_y = make_images(100, seed=1)
    return CifarData(train_x, train_y, test_x, test_y, "synthetic", "generated in tests")


@pytest.fixture(scope="module")
def paused(tmp_path_factory):
    """A real run paused by its time limit after one iteration: its config, summary and checkpoint."""
    out = tmp_path_factory.mktemp("paused")
    run_experiment(Sweep("table6", "smoke", ["resnet20"], seeds=1, out=out), CPU,
                   Schedule(progress=False, time_limit_s=0.01), tiny_cifar(), say=lambda _: None)
    (run,) = out.glob("resnet20-*")
    assert read_status(run) == "paused" and (run / LATEST).exists()
    return run


def write_run(root, paused, seed, status="done", at=None, test_error=10.0):
    """A run directory of `paused`'s recipe with another seed: `status` (None: stopped), a checkpoint at `at`."""
    config = copy.deepcopy(read_config(paused))
    config["seed"] = seed
    config["key"] = config_key(config)
    run = run_dir_for(root, config["model"], config["preset"], config["key"], seed)
    write_config(run, config)
    MetricsLog(run).append({"iter": at or 60, "record": "test", "error": test_error})
    if status:
        write_summary(run, {"status": status, "iteration": 60 if status == "done" else at,
                            "test_error": test_error if status == "done" else None})
    if at is not None:
        save_checkpoint(run, {"model": {"w": torch.full((2,), float(at))}, "state": {"iteration": at}})
    return run


def files(run):
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != LOCK}


def members(archive):
    with tarfile.open(archive) as tar:
        return [m.name for m in tar.getmembers()]


def rewrite(archive, out, change):
    """A copy of `archive` with `change(entries)` applied to its [(TarInfo, bytes)] (the manifest first)."""
    with tarfile.open(archive) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()]
    change(entries)
    with tarfile.open(out, "w:gz") as tar:
        for info, data in entries:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out


def set_manifest(entries, edit):
    manifest = json.loads(entries[0][1])
    edit(manifest)
    entries[0] = (entries[0][0], json.dumps(manifest).encode())


def test_a_round_trip_brings_every_file_back_and_the_paused_run_is_the_one_resbench_run_resumes(paused, tmp_path):
    paused = shutil.copytree(paused, tmp_path / "there" / paused.name)
    done = write_run(tmp_path / "there", paused, seed=1, status="done")
    (done / "repeats" / "r1").mkdir(parents=True)
    (done / "repeats" / "r1" / "summary.json").write_text("{}\n")
    moved = export_runs([done, paused], tmp_path / "a.tar.gz", with_checkpoints=True)
    assert [(m.name, m.state, m.action) for m in moved] == [(done.name, "done", "exported"),
                                                            (paused.name, "paused", "exported")]
    result = import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert [(m.name, m.action) for m in result] == [(done.name, "added"), (paused.name, "added")]
    assert files(tmp_path / "runs" / paused.name) == files(paused)
    assert files(tmp_path / "runs" / done.name) == {k: v for k, v in files(done).items() if "checkpoint" not in k}
    again = import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert [m.action for m in again] == ["same", "same"]
    assert not (done / LOCK).exists() and not (tmp_path / "runs" / done.name / LOCK).exists()  # no litter
    here, there = load_checkpoint(paused), load_checkpoint(tmp_path / "runs" / paused.name)
    assert there["state"] == here["state"] and all(torch.equal(there["model"][k], v) for k, v in here["model"].items())
    (job,), _, _ = prepare(Sweep("table6", "smoke", ["resnet20"], seeds=1, out=tmp_path / "runs"), CPU, tiny_cifar(),
                           say=lambda _: None)
    assert job.dir == tmp_path / "runs" / paused.name  # the run `resbench run` resumes there
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([done.name, paused.name])  # no staging


def test_finished_runs_travel_small_and_unfinished_ones_take_their_checkpoint_only_when_asked(paused, tmp_path):
    done = write_run(tmp_path / "here", paused, seed=1, status="done", at=60)
    save_checkpoint(done, {"state": {"iteration": 60}})  # so that it has a previous one too
    stopped = write_run(tmp_path / "here", paused, seed=2, status=None, at=30)
    export_runs([done, stopped], tmp_path / "small.tar.gz")
    assert not [n for n in members(tmp_path / "small.tar.gz") if "checkpoint" in n]
    moved = export_runs([done, stopped], tmp_path / "big.tar.gz", with_checkpoints=True)
    assert [n for n in members(tmp_path / "big.tar.gz") if "checkpoint" in n] == [f"{stopped.name}/{LATEST}"]
    assert moved[1].state == "stopped" and moved[1].checkpoint_iteration == 30


def test_the_newest_readable_checkpoint_travels_when_the_latest_is_torn(paused, tmp_path):
    run = write_run(tmp_path / "here", paused, seed=1, status="paused", at=30)
    save_checkpoint(run, {"state": {"iteration": 40}})
    (run / LATEST).write_bytes(b"torn")
    (moved,) = export_runs([run], tmp_path / "a.tar.gz", with_checkpoints=True)
    assert moved.checkpoint_iteration == 30 and f"{run.name}/{PREVIOUS}" in members(tmp_path / "a.tar.gz")


def test_a_finished_run_is_never_replaced_by_a_paused_one(paused, tmp_path):
    here = write_run(tmp_path / "runs", paused, seed=0, status="done")
    before = files(here)
    export_runs([paused], tmp_path / "a.tar.gz", with_checkpoints=True)
    (moved,) = import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert moved.action == "kept" and "never replaced" in moved.detail
    assert files(here) == before


def test_a_finished_run_replaces_a_paused_one_and_leaves_nothing_of_it(paused, tmp_path):
    there = write_run(tmp_path / "there", paused, seed=0, status="done", test_error=7.5)
    here = write_run(tmp_path / "runs", paused, seed=0, status="paused", at=30)
    export_runs([there], tmp_path / "a.tar.gz")
    (moved,) = import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert (moved.action, moved.detail) == ("replaced", "was paused, checkpoint at iteration 30")
    assert read_summary(here)["test_error"] == 7.5 and not (here / LATEST).exists()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [here.name]


@pytest.mark.parametrize("here_at, there_at, action", [(40, 30, "kept"), (30, 30, "kept"), (30, 40, "replaced"),
                                                       (30, None, "kept"), (None, 30, "replaced")])
def test_a_newer_checkpoint_is_never_lost_to_an_older_one(paused, tmp_path, here_at, there_at, action):
    there = write_run(tmp_path / "there", paused, seed=0, status="paused", at=there_at, test_error=1.0)
    here = write_run(tmp_path / "runs", paused, seed=0, status="paused", at=here_at, test_error=2.0)
    export_runs([there], tmp_path / "a.tar.gz", with_checkpoints=True)
    (moved,) = import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert moved.action == action
    kept = here_at if action == "kept" else there_at
    assert load_checkpoint(here)["state"]["iteration"] == kept


def test_two_finished_copies_that_differ_keep_the_one_here_and_equal_ones_are_the_same(paused, tmp_path):
    there = write_run(tmp_path / "there", paused, seed=0, status="done", test_error=12.0)
    here = write_run(tmp_path / "runs", paused, seed=0, status="done", test_error=10.0)
    export_runs([there], tmp_path / "a.tar.gz")
    assert import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")[0].action == "kept"
    assert read_summary(here)["test_error"] == 10.0
    export_runs([here], tmp_path / "b.tar.gz")
    assert import_runs(tmp_path / "b.tar.gz", tmp_path / "runs")[0].action == "same"


def test_a_run_being_trained_is_neither_exported_nor_replaced(paused, tmp_path):
    there = write_run(tmp_path / "there", paused, seed=0, status="done")
    other = write_run(tmp_path / "there", paused, seed=1, status="done")
    here = write_run(tmp_path / "runs", paused, seed=0, status=None, at=10)
    with claim(other) as mine:  # flock: another open of the lock conflicts, as another process's would
        assert mine
        moved = export_runs([there, other], tmp_path / "a.tar.gz")
    assert [m.action for m in moved] == ["exported", "left out"]
    assert not [n for n in members(tmp_path / "a.tar.gz") if other.name in n]
    with claim(here):
        (result,) = import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert (result.action, result.detail) == ("kept", "being trained here now") and read_status(here) is None


@pytest.fixture
def archive(paused, tmp_path):
    done = write_run(tmp_path / "there", paused, seed=1, status="done")
    export_runs([done], tmp_path / "a.tar.gz")
    return tmp_path / "a.tar.gz"


def refused(archive, tmp_path, expected, paused):
    """The import of `archive` fails with a one-line message containing `expected`, and changes nothing."""
    runs = tmp_path / "runs"
    write_run(runs, paused, seed=5, status="paused", at=3)
    before = contents(runs)
    result = CliRunner().invoke(app, ["runs", "import", str(archive), "--runs", str(runs)], env=WIDE)
    assert result.exit_code == 2 and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert contents(runs) == before  # nothing added, changed or left over


def contents(folder):
    return {p: p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def test_a_tampered_file_is_refused(paused, archive, tmp_path):
    def tamper(entries):
        i = next(i for i, (m, _) in enumerate(entries) if m.name.endswith("summary.json"))
        entries[i] = (entries[i][0], entries[i][1].replace(b"10.0", b"01.0"))
    refused(rewrite(archive, tmp_path / "t.tar.gz", tamper), tmp_path, "does not match its sha256", paused)


def test_a_truncated_or_foreign_archive_is_refused(paused, archive, tmp_path):
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "cut.tar.gz", tmp_path, "is damaged or not a resbench archive", paused)
    with tarfile.open(tmp_path / "plain.tar.gz", "w:gz") as tar:
        tar.add(next((tmp_path / "there").glob("*-s1")), arcname="run")
    refused(tmp_path / "plain.tar.gz", tmp_path, f"does not start with {MANIFEST}", paused)


def test_an_archive_missing_a_listed_file_is_refused(paused, archive, tmp_path):
    refused(rewrite(archive, tmp_path / "t.tar.gz", lambda entries: entries.pop()), tmp_path, "is incomplete", paused)


@pytest.mark.parametrize("escape", ["../../outside.txt", "/tmp/outside.txt", "repeats/../../x", ".lock"])
def test_paths_outside_a_run_are_refused(paused, archive, tmp_path, escape):
    def listed(entries):  # the manifest lists the path, and the archive holds it
        name = json.loads(entries[0][1])["runs"][0]["name"]
        data = b"evil\n"
        set_manifest(entries, lambda m: m["runs"][0]["files"].update({escape: hashlib.sha256(data).hexdigest()}))
        entries.append((tarfile.TarInfo(f"{name}/{escape}"), data))
    refused(rewrite(archive, tmp_path / "t.tar.gz", listed), tmp_path, "a path outside its directory", paused)

    def unlisted(entries):  # the archive holds an entry its manifest does not list, or a link
        link = tarfile.TarInfo(f"{json.loads(entries[0][1])['runs'][0]['name']}/metrics.jsonl")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        entries[1:] = [e for e in entries[1:] if not e[0].name.endswith("metrics.jsonl")] + [(link, b"")]
    refused(rewrite(archive, tmp_path / "u.tar.gz", unlisted), tmp_path, "which its manifest does not list", paused)
    assert not list(tmp_path.rglob("outside.txt"))


def test_a_run_not_named_by_its_configs_key_is_refused(paused, archive, tmp_path):
    def edit_recipe(entries):  # a config edited, its hash and manifest made consistent: the name no longer fits
        i = next(i for i, (m, _) in enumerate(entries) if m.name.endswith("config.json"))
        config = json.loads(entries[i][1])
        config["recipe"]["lr"] = 0.5
        data = json.dumps(config).encode()
        entries[i] = (entries[i][0], data)
        set_manifest(entries, lambda m: m["runs"][0]["files"].update(
            {"config.json": hashlib.sha256(data).hexdigest()}))
    refused(rewrite(archive, tmp_path / "t.tar.gz", edit_recipe), tmp_path, "is not named by its config's key", paused)


def test_a_failed_export_leaves_the_old_archive_and_no_partial_file(paused, tmp_path, monkeypatch):
    runs = [write_run(tmp_path / "there", paused, seed=s, status="done") for s in (1, 2)]
    export_runs(runs[:1], tmp_path / "a.tar.gz")
    before = (tmp_path / "a.tar.gz").read_bytes()
    calls = []

    def full_disk(*args):
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(args)
        return add_file(*args)
    add_file = archive_module._add_file
    monkeypatch.setattr(archive_module, "_add_file", full_disk)
    with pytest.raises(OSError):
        export_runs(runs, tmp_path / "a.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "there"]


def test_the_command_chooses_runs_by_name_experiment_and_model(paused, tmp_path):
    runs = tmp_path / "runs"
    for seed in (1, 2):
        write_run(runs, paused, seed=seed, status="done")

    def export(*args):
        return CliRunner().invoke(app, ["runs", "export", str(tmp_path / "a.tar.gz"), *args, "--runs", str(runs)],
                                  env=WIDE)
    result = export("resnet20-*-s2")
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "(1 run," in result.output
    assert {n.split("/")[0] for n in members(tmp_path / "a.tar.gz")[1:]} == {next(runs.glob("*-s2")).name}
    assert export("--experiment", "table6", "--models", "resnet20").exit_code == 0
    assert len({n.split("/")[0] for n in members(tmp_path / "a.tar.gz")[1:]}) == 2
    for args, message in [(["nothing-*"], "no run named 'nothing-*'"), (["--models", ","], "names no model"),
                          (["--experiment", "table6", "--models", "resnet9"], "table6 has no rows for resnet9"),
                          (["--models", "resnet32"], "no runs to export")]:
        result = export(*args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1


def test_the_command_says_what_it_did_with_each_run(paused, tmp_path):
    there = write_run(tmp_path / "there", paused, seed=1, status="done")
    write_run(tmp_path / "there", paused, seed=2, status="paused", at=30)
    write_run(tmp_path / "runs", paused, seed=2, status="paused", at=40)
    assert CliRunner().invoke(app, ["runs", "export", str(tmp_path / "a.tar.gz"), "--runs", str(there.parent),
                                    "--with-checkpoints"]).exit_code == 0
    result = CliRunner().invoke(app, ["runs", "import", str(tmp_path / "a.tar.gz"), "--runs",
                                      str(tmp_path / "runs")], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "1 added, 1 kept" in result.output and "checkpoint at iteration 40" in result.output
    assert there.name in [run.name for run in choose_runs(tmp_path / "runs")]


def test_an_unknown_archive_or_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(ArchiveError, match="no archive"):
        import_runs(tmp_path / "missing.tar.gz", tmp_path / "runs")
    result = CliRunner().invoke(app, ["runs", "export", str(tmp_path / "a.tar.gz"), "--runs", str(tmp_path / "no")])
    assert result.exit_code == 2 and "is not a folder of runs" in result.output


def test_a_folder_that_cannot_be_written_is_a_one_line_error(paused, tmp_path, monkeypatch):
    there = write_run(tmp_path / "there", paused, seed=0, status="done")
    write_run(tmp_path / "runs", paused, seed=0, status="paused", at=30)
    export_runs([there], tmp_path / "a.tar.gz")

    def refuse(*args):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("os.replace", refuse)  # wherever the import writes from
    result = CliRunner().invoke(app, ["runs", "import", str(tmp_path / "a.tar.gz"), "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "cannot write to" in result.output and "Permission denied" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_run_not_named_by_its_key_is_not_exported(paused, tmp_path):
    run = write_run(tmp_path / "there", paused, seed=0, status="done")
    renamed = run.rename(run.with_name(run.name.replace("-s0", "-s7")))
    with pytest.raises(ArchiveError, match="not named by its config's key"):
        export_runs([renamed], tmp_path / "a.tar.gz")
    assert not (tmp_path / "a.tar.gz").exists()


def test_calibration_runs_travel_to_the_calibration_folder_and_only_there(paused, tmp_path):
    from resbench.report.calibration import load_calibration

    write_run(tmp_path / "there", paused, seed=0, status="done")
    run = tmp_path / "there" / "calibration" / "airbench94-0123456789-s0"
    write_config(run, {"kind": "calibration", "peer": "airbench94", "seed": 0, "key": "0123456789",
                       "published": {"error": 6.0, "runs": 10}, "data": {"variant": "cifar10-jpeg"}})
    write_summary(run, {"status": "done", "test_error": 6.5})
    moved = export_runs(choose_runs(tmp_path / "there"), tmp_path / "a.tar.gz")
    assert sorted(m.name for m in moved)[0] == f"calibration/{run.name}"
    import_runs(tmp_path / "a.tar.gz", tmp_path / "runs")
    assert load_calibration(tmp_path / "runs")["test_error"].tolist() == [6.5]
    assert choose_runs(tmp_path / "there", models={"resnet20"}) == [next((tmp_path / "there").glob("resnet20-*"))]

    def out_of_its_folder(entries):  # a calibration run moved beside the training runs
        for info, _ in entries[1:]:
            info.name = info.name.removeprefix("calibration/")
        set_manifest(entries, lambda m: [r.update(name=r["name"].removeprefix("calibration/")) for r in m["runs"]])
    refused(rewrite(tmp_path / "a.tar.gz", tmp_path / "t.tar.gz", out_of_its_folder), tmp_path, "cannot lie at", paused)


@pytest.mark.parametrize("meanwhile, message", [("appends", "changed while it was exported"),
                                                ("trains", "began training during the export")])
def test_a_run_that_changes_while_it_is_exported_fails_the_export(paused, tmp_path, monkeypatch, meanwhile,
                                                                  message):
    run = write_run(tmp_path / "there", paused, seed=0, status=None, at=10)
    inventory = archive_module._inventory
    with contextlib.ExitStack() as trainer:
        def then_it_changes(run_dir, with_checkpoints):
            entry = inventory(run_dir, with_checkpoints)
            if meanwhile == "appends":
                with open(run_dir / "metrics.jsonl", "a") as f:
                    f.write("{}\n")
            else:
                trainer.enter_context(claim(run_dir))
            return entry
        monkeypatch.setattr(archive_module, "_inventory", then_it_changes)
        with pytest.raises(ArchiveError, match=message):
            export_runs([run], tmp_path / "a.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]
