"""The budget tier: the paper's schedule compressed, a run's identity, and how runs say where they stand."""
import json
from fractions import Fraction

import pytest

from resbench.paper.tiers import tier
from resbench.runs.rundir import config_key, identity
from resbench.sweep.plan import plan
from resbench.paper.declarations import load_experiment
from resbench.paper.recipes import CifarRecipe, budget_label, cifar_recipe, parse_budget


def test_a_budget_scales_iterations_and_milestones_and_keeps_the_warmup_rule():
    full = cifar_recipe("paper", warmup=True)
    b32 = full.with_budget(Fraction(1, 32))
    assert (b32.iterations, b32.milestones) == (2_000, (1_000, 1_500))
    assert [b32.lr_at(i) for i in (0, 999, 1_000, 1_499, 1_500, 1_999)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert (b32.warmup, b32.warmup_lr, b32.warmup_until, b32.warmup_window) == (True, 0.01, 80.0, 10)
    assert b32.lr_at(5, warming_up=True) == 0.01
    unchanged = ("batch_size", "bn_splits", "lr", "momentum", "weight_decay", "lr_decay", "test_subset")
    assert all(getattr(b32, f) == getattr(full, f) for f in unchanged)
    assert full.with_budget(Fraction(1)) is full


@pytest.mark.parametrize("budget, evals", [(Fraction(1, 32), 16), (Fraction(1, 8), 16), (Fraction(1, 2), 32),
                                           (Fraction(1, 64), 17)])
def test_a_budget_keeps_at_least_16_test_evaluations_and_logs_between_them(budget, evals):
    r = CifarRecipe().with_budget(budget)
    assert -(-r.iterations // r.eval_every) == evals  # every eval_every iterations, and at the last
    assert r.eval_every // r.log_every >= 10 and r.checkpoint_every <= r.eval_every
    assert r.eval_every <= CifarRecipe().eval_every and r.log_every <= CifarRecipe().log_every


@pytest.mark.parametrize("text, message", [("0", "in \\(0, 1\\]"), ("3/2", "in \\(0, 1\\]"), ("-1/4", "in \\(0, 1\\]"),
                                           ("half", "such as 1/32"), ("1/0", "such as 1/32")])
def test_a_budget_outside_the_schedule_is_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_budget(text)


def test_budget_labels_and_the_tier_name_the_schedule():
    assert (parse_budget("1/32"), budget_label(Fraction(1, 32)), budget_label(Fraction(1))) == \
        (Fraction(1, 32), "1of32", "")
    runs = plan(load_experiment("figure6"), "paper", ["resnet110"], seeds=1, budget=Fraction(1, 32))
    assert runs[0].run.recipe.iterations == 2_000 and runs[0].run.recipe.warmup
    config = {"data": {"variant": "cifar10-jpeg-q75"}, "recipe": CifarRecipe().with_budget(Fraction(1, 32)).__dict__,
              "preset": "paper", "budget": "1/32", "precision": "bf16", "tf32": False}
    assert tier(config) == "proxy: JPEG q75 data, schedule 1/32 (2,000 iterations) (bf16)"
    assert tier({**config, "preset": "demo", "budget": "1"}).startswith("proxy: JPEG q75 data, demo preset (2,000")


def test_imagenet_experiments_refuse_a_budget():
    with pytest.raises(ValueError, match="CIFAR-10 schedule"):
        plan(load_experiment("table3"), "paper", budget=Fraction(1, 2))


GOLDEN_CONFIG = {  # ResNet-20, seed 0, at 1/32 in bf16 on the shared JPEG data, as config.json holds it
    "model": "resnet20", "preset": "paper", "seed": 0, "budget": "1/32", "options": {}, "overrides": {},
    "recipe": {**CifarRecipe().with_budget(Fraction(1, 32)).__dict__, "milestones": [1000, 1500]},
    "data": {"variant": "cifar10-jpeg-q75", "split": "train/test", "sha256": {
        "test.npz": "95e2e82dd7fb09f8a7cd79a85f21c3f16d9c4dafaeb6e26e85193169d9e5b5c7",
        "train.npz": "3f8743ce242504238dd3e283dd3906c479b37ba595f0952dc8f33c9467dc6cd4"}},
    "precision": "bf16", "tf32": False}


def test_the_golden_run_key_is_pinned():
    """Committed evidence keeps its directory names: this key is resnet20-paper-1of32-886deb6f82-s0's."""
    assert config_key(GOLDEN_CONFIG) == "886deb6f82"


def test_the_key_ignores_labels_cadence_and_paths_but_not_what_is_trained():
    key = config_key(GOLDEN_CONFIG)
    relabelled = {**GOLDEN_CONFIG, "preset": "renamed", "tier": "any wording", "options": {"lr": 0.1},
                  "overrides": {"lr": 0.1}, "data": {**GOLDEN_CONFIG["data"], "source": "/elsewhere"},
                  "recipe": {**GOLDEN_CONFIG["recipe"], "log_every": 1, "eval_every": 7, "checkpoint_every": 3}}
    assert config_key(relabelled) == key
    for change in ({"seed": 1}, {"precision": "fp32"}, {"budget": "1/16"}, {"model": "resnet32"},
                   {"recipe": {**GOLDEN_CONFIG["recipe"], "lr": 0.05}},
                   {"recipe": {**GOLDEN_CONFIG["recipe"], "test_subset": 1000}},
                   {"data": {**GOLDEN_CONFIG["data"], "sha256": {"train.npz": "other"}}}):
        assert config_key({**GOLDEN_CONFIG, **change}) != key, change
    assert "log_every" not in identity(GOLDEN_CONFIG)["recipe"]
    imagenet = {"model": "resnet50", "seed": 0, "precision": "bf16", "tf32": True,
                "recipe": {"bn_group": 32, "eval_every": 5_000, "log_every": 100}, "data": {"variant": "imagenet"}}
    assert "eval_every" in identity(imagenet)["recipe"]  # the plateau schedule reads the evaluations


def test_run_directories_are_named_by_budget_and_key(tiny_data, tmp_path):
    from resbench.sweep.options import Sweep
    from resbench.sweep.plan import prepare
    from resbench.train.engine import Engine

    jobs, _, _ = prepare(Sweep("figure6", models=["resnet20"], seeds=1, out=tmp_path, budget="1/32"),
                         Engine("cpu", "bf16", False), tiny_data, say=lambda _: None)
    config = jobs[0].config
    assert jobs[0].dir.name == f"resnet20-paper-1of32-{config['key']}-s0"
    assert config["budget"] == "1/32" and config["recipe"]["iterations"] == 2_000
    assert config["tier"] == "proxy: synthetic data, schedule 1/32 (2,000 iterations) (bf16)"


def test_status_shows_an_eta_from_the_measured_rate(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from resbench.cli.main import app
    from resbench.runs.store import eta_s
    from resbench.train.engine import Engine
    from resbench.train.loop import CifarRun, train_cifar

    recipe = CifarRecipe(batch_size=32, iterations=40, milestones=(30,), log_every=4, eval_every=20,
                         checkpoint_every=20, test_subset=None)
    run_dir = tmp_path / "resnet8-paper-k-s0"
    summary = train_cifar(CifarRun("resnet8", recipe, 0), tiny_data, run_dir, Engine("cpu", "fp32", False),
                          progress=False, time_limit_s=0.0)
    (run_dir / "config.json").write_text(json.dumps({
        "model": "resnet8", "preset": "paper", "seed": 0, "key": "k", "options": {}, "overrides": {},
        "recipe": recipe.__dict__, "data": {"variant": "synthetic", "split": "train/test"},
        "precision": "fp32", "tf32": False}))
    assert eta_s(run_dir, 39, 32, summary["img_per_s"]) == pytest.approx(39 * 32 / summary["img_per_s"])
    with open(run_dir / "metrics.jsonl", "a") as f:  # a training record's rate is the newer measurement
        f.write(json.dumps({"iter": 1, "record": "train", "img_per_s": 64.0}) + "\n")
    assert eta_s(run_dir, 39, 32, summary["img_per_s"]) == pytest.approx(39 * 32 / 64.0)
    result = CliRunner().invoke(app, ["status", "--runs", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "paused" in result.output and "ETA" in result.output
    assert "of training left at the measured img/s" in result.output
