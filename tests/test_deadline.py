"""--deadline and durations with units: runs start only when their estimate fits, the rest of the time goes
to shorter runs, a run still training at the deadline pauses and the same command resumes it."""
import re
import time
from datetime import datetime

import pytest
from typer.testing import CliRunner

from conftest import cli
from resbench.cli.main import app
from resbench.paper.recipes import CifarRecipe
from resbench.runs.rundir import (MetricsLog, read_metrics, read_status, read_summary, run_dirs, write_config,
                                  write_env, write_summary)
from resbench.sweep.durations import parse_deadline, parse_duration
from resbench.sweep.jobs import train_jobs
from resbench.sweep.options import Schedule
from resbench.sweep.plan import resolve
from resbench.sweep.timebox import Pace, Paces, TimeBox, Work, estimate_s
from resbench.train.engine import Engine
from resbench.train.runspec import CifarRun

CPU = Engine(device="cpu", precision="fp32", compile=False)
QUIET = Schedule(progress=False)
RECIPE = CifarRecipe(batch_size=32, lr=0.025, iterations=30, milestones=(15, 25), log_every=5, eval_every=10,
                     checkpoint_every=10, test_subset=50)


def jobs_of(models, data, out, seeds=(0,)):
    return [resolve(CifarRun(m, RECIPE, s), data, CPU, out) for m in models for s in seeds]


def seconds_per_layer(seconds: float):
    """A pace that makes a step take `seconds` per layer of depth: the estimates of a test, not measured."""
    return lambda job: Pace(32 / (seconds * int(job.run.model.removeprefix("resnet"))), "the test's pace")


def curve(run_dir):
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in read_metrics(run_dir)
            if r["record"] in ("train", "test")]


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("45m", 2700), ("2h", 7200), ("1h30m", 5400),
                                           ("1.5h", 5400)])
def test_durations_take_units(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "", "5x", "m", "0m", "1m30h"])
def test_a_duration_without_its_unit_is_refused(text):
    with pytest.raises(ValueError, match="--time-limit"):
        parse_duration(text)


def test_a_deadline_is_a_duration_or_an_end_time():
    now = datetime(2026, 12, 3, 14, 0)
    assert parse_deadline("45m", now) == datetime(2026, 12, 3, 14, 45)
    assert parse_deadline("14:30", now) == datetime(2026, 12, 3, 14, 30)
    assert parse_deadline("13:00", now) == datetime(2026, 12, 4, 13, 0)  # passed today: tomorrow's
    assert parse_deadline("2026-12-03T16:15", now) == datetime(2026, 12, 3, 16, 15)
    for text, message in [("30", "with its unit"), ("2026-12-03T13:00", "already passed"), ("24:10", "time of day")]:
        with pytest.raises(ValueError, match=message):
            parse_deadline(text, now)


@pytest.mark.parametrize("args", [["run", "table6", "--time-limit", "30"], ["run", "table6", "--deadline", "30"],
                                  ["calibrate", "--time-limit", "30"],
                                  ["run", "table6", "--deadline", "1h", "--time-limit", "1h"],
                                  ["run", "table6", "--pack", "2", "--jobs", "2"]])
def test_bare_numbers_and_clashes_are_one_line_errors_before_the_data_is_looked_for(args):
    result = CliRunner().invoke(app, [*args, "--data-root", "/nonexistent"])
    assert result.exit_code == 2 and "CIFAR-10" not in result.output
    assert ("unit" in result.output or "give one" in result.output or "--jobs" in result.output), result.output


def test_a_pack_moves_at_its_deepest_members_pace_and_shares_the_device():
    shallow = Work(iterations=100, batch=128, test_images=0, pace=Pace(1000.0, "x"))
    deep = Work(iterations=100, batch=128, test_images=0, pace=Pace(250.0, "x"))
    alone = estimate_s(shallow)
    assert alone == pytest.approx(100 * 128 / 1000)
    assert estimate_s(shallow, [shallow], slots=2) == pytest.approx(2 * alone)  # two share the device
    assert estimate_s(shallow, [deep], slots=2) == pytest.approx(2 * 4 * alone)  # lockstep: the deep one's pace
    assert estimate_s(shallow, [deep], slots=2, speedup=4.0) == pytest.approx(2 * alone)  # a measured gain
    assert estimate_s(shallow, slots=4) == pytest.approx(4 * alone)  # the empty slots fill up
    tested = Work(100, 128, 3000, Pace(1000.0, "x"))
    assert estimate_s(tested) == pytest.approx(alone + 1.0)  # a test image costs a third of a training one


def test_paces_come_from_the_runs_own_log_else_runs_of_its_network_else_a_measurement(tiny_data, tmp_path):
    measured = []
    paces = Paces(CPU, measure=lambda job, engine: measured.append(job.run.model) or 123.0)
    job, other = jobs_of(["resnet8"], tiny_data, tmp_path, seeds=(0, 1))
    assert paces(job) == Pace(123.0, "measured now, 5 steps") and measured == ["resnet8"]
    other.dir.mkdir(parents=True)  # a run of the same network on this CPU, trained in a pack of 2
    env = {"device": "cpu", "gpu": None, "cpu": paces.device}
    write_config(other.dir, other.config), write_env(other.dir, env), write_summary(other.dir, {"pack_slots": 2})
    for i, rate in [(5, 90.0), (10, 100.0), (15, 500.0)]:
        MetricsLog(other.dir).append({"iter": i, "record": "train", "img_per_s": rate})
    assert Paces(CPU, measure=None)(job) == Pace(200.0, f"1 resnet8 run(s) in {tmp_path}")  # median x 2 slots
    assert Paces(CPU, measure=None)(other) == Pace(200.0, "its own log")
    env["cpu"] = "another CPU"
    write_env(other.dir, env)
    assert Paces(CPU, measure=lambda job, engine: 7.0)(job).source == "measured now, 5 steps"


def test_a_deadline_too_short_for_any_run_starts_none_and_says_so(jpeg_root, tmp_path):
    proc = cli("run", "table6", "--preset", "smoke", "--models", "resnet20", "--device", "cpu", "-q", "--deadline", "2s",
               "--data-root", str(jpeg_root), "--runs", str(tmp_path))
    assert proc.exit_code == 0, proc.output
    assert "0 run(s) finished, 0 paused, 1 not started" in proc.stdout
    assert "not started: resnet20-smoke-" in proc.stdout
    assert not [d for d in run_dirs(tmp_path) if read_summary(d)]


def test_a_deadline_that_fits_one_of_two_runs_starts_the_shorter(tiny_data, tmp_path):
    long, short = jobs = jobs_of(["resnet20", "resnet8"], tiny_data, tmp_path)  # the longer one first
    said = []
    box = TimeBox(time.time() + 600, seconds_per_layer(1.0), start_s=0)  # 30 steps: 240 s and 600 s, and tests
    results = train_jobs(jobs, tiny_data, CPU, QUIET, say=said.append, box=box)
    assert [(r["dir"], r["status"]) for r in results] == [(str(short.dir), "done"), (str(long.dir), "not started")]
    assert results[1]["reason"].startswith("needs about 10m52s, ")
    assert not long.dir.exists()
    assert said[-3].endswith("1 run(s) finished, 0 paused, 1 not started")
    assert said[-2].startswith(f"  not started: {long.dir.name} (needs about 10m52s, ")
    assert "resnet20 (fp32) 2 img/s alone, from the test's pace" in said[-1]


def test_a_run_at_the_deadline_pauses_and_the_same_command_resumes_it_to_the_uninterrupted_result(
        tiny_data, tmp_path):
    (job,) = jobs_of(["resnet8"], tiny_data, tmp_path / "boxed")
    too_fast = lambda job: Pace(1e9, "an estimate far too low")  # noqa: E731
    said = []
    first = train_jobs([job], tiny_data, CPU, QUIET, say=said.append,
                       box=TimeBox(time.time() + 0.5, too_fast, start_s=0))
    assert first[0]["status"] == "paused" and 1 <= first[0]["iteration"] < RECIPE.iterations
    assert (job.dir / "checkpoint.pt").is_file()
    assert said[-3].endswith("0 run(s) finished, 1 paused, 0 not started")
    assert said[-2].startswith(f"  paused at iteration {first[0]['iteration']:,}: {job.dir.name}")

    again = train_jobs([job], tiny_data, CPU, QUIET, say=said.append,
                       box=TimeBox(time.time() + 600, Paces(CPU)))
    assert again[0]["status"] == "done" and again[0]["iteration"] == RECIPE.iterations
    (straight,) = jobs_of(["resnet8"], tiny_data, tmp_path / "straight")
    alone = train_jobs([straight], tiny_data, CPU, QUIET, say=lambda _: None)[0]
    assert (again[0]["test_error"], again[0]["train_error"]) == (alone["test_error"], alone["train_error"])
    assert curve(job.dir) == curve(straight.dir)
    assert read_status(job.dir) == "done"


def test_a_deeper_newcomer_that_would_slow_a_packed_run_past_the_deadline_is_refused(tiny_data, tmp_path):
    from dataclasses import replace

    from resbench.train.stop import Deadline

    member = jobs_of(["resnet8"], tiny_data, tmp_path)[0]  # 30 steps of 8 s in 2 slots: about 8m40s
    newcomer = resolve(CifarRun("resnet20", replace(RECIPE, iterations=10), 0), tiny_data, CPU, tmp_path)
    box = TimeBox(time.time() + 1000, seconds_per_layer(1.0), slots=2, start_s=0)
    assert box.admit(member, Deadline(1000), [])
    assert not box.admit(newcomer, Deadline(1000), [member])  # it fits, but steps of 20 s would hold the member
    assert box.refused[newcomer.dir] == f"would slow {member.dir.name} past the deadline"
    alone = TimeBox(time.time() + 1000, seconds_per_layer(1.0), slots=2, start_s=0)
    assert alone.admit(newcomer, Deadline(1000), [])


def test_a_packed_deadline_run_refuses_what_its_lockstep_cannot_finish(tiny_data, tmp_path):
    jobs = jobs_of(["resnet20", "resnet8"], tiny_data, tmp_path, seeds=(0, 1))
    said = []
    box = TimeBox(time.time() + 900, seconds_per_layer(1.0), slots=2, start_s=0)  # resnet8: 2 x 261 s each
    results = train_jobs(jobs, tiny_data, CPU, Schedule(pack=2, progress=False), say=said.append, box=box)
    trained = [r for r in results if r["status"] != "not started"]
    assert sorted(r["dir"] for r in trained) == sorted(str(j.dir) for j in jobs[2:])
    assert all(r["status"] == "done" and r["pack_slots"] == 2 for r in trained)
    assert "2 run(s) finished, 0 paused, 2 not started" in said[-4]
    assert "2 runs packed in lockstep" in said[-1]


def plant_pace(out, model: str, img_per_s: float) -> None:
    """A run of `model` in the results folder that logged `img_per_s` on this CPU: the pace a deadline's estimates
    take for the model's runs there (the test's pace, not measured)."""
    from resbench.host.machine import cpu_model

    run_dir = out / f"{model}-planted-s0"
    run_dir.mkdir(parents=True)
    write_config(run_dir, {"model": model, "precision": "fp32", "recipe": {"batch_size": 32}})
    write_env(run_dir, {"device": "cpu", "gpu": None, "cpu": cpu_model()})
    MetricsLog(run_dir).append({"iter": 10, "record": "train", "img_per_s": img_per_s})


def test_workers_under_a_deadline_start_only_what_fits_and_say_what_was_not_started(jpeg_root, tmp_path):
    runs = tmp_path / "runs"
    plant_pace(runs, "resnet20", 1e4)  # 15 steps of 32 images in well under a second: it fits
    plant_pace(runs, "resnet32", 1.0)  # about half an hour: it does not
    proc = cli("run", "table6", "--preset", "smoke", "--budget", "1/4", "--models", "resnet20,resnet32", "--device",
               "cpu", "-q", "--jobs", "2", "--deadline", "10m", "--data-root", str(jpeg_root), "--runs", str(runs))
    assert proc.exit_code == 0, proc.output
    assert "1 run(s) finished, 0 paused, 1 not started" in proc.stdout, proc.stdout
    assert re.search(r"not started: resnet32-smoke-1of4-\w+-s0 \(needs about [\dhms]+, [\dhms]+ left\)", proc.stdout)
    assert "1/2 runs done, 1 not started" in proc.stdout
    (trained,) = runs.glob("resnet20-smoke-1of4-*")
    assert read_status(trained) == "done" and not list(runs.glob("resnet32-smoke-*"))
