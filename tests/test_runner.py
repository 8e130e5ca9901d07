import json
from dataclasses import replace

import pytest

from conftest import cli, one_line_error
from fractions import Fraction

from resbench.sweep.options import Schedule, Sweep
from resbench.sweep.plan import plan, prepare, run_experiment
from resbench.paper.declarations import load_experiment
from resbench.report.runs import load_curves, load_responses, load_runs
from resbench.train.engine import Engine

CPU = Engine(device="cpu", precision="fp32", compile=False)
QUIET = Schedule(progress=False)
# a third of the smoke preset: what these tests check (skips, reruns, fused groups) does not need more
SHORT = {"iterations": 20, "milestones": [10, 15], "log_every": 5, "eval_every": 10, "checkpoint_every": 20}


def test_plan_covers_rows_and_seeds_with_row_options():
    planned = plan(load_experiment("table6"), "paper", seeds=5)
    assert len(planned) == 6 * 5
    r110 = [p for p in planned if p.run.model == "resnet110"]
    assert [p.run.seed for p in r110] == [0, 1, 2, 3, 4] and all(p.run.recipe.warmup for p in r110)
    assert not any(p.run.recipe.warmup for p in planned if p.run.model == "resnet20")


def test_resnet110_is_five_runs_by_default_and_the_other_rows_one():
    planned = plan(load_experiment("table6"), "paper")
    seeds = {}
    for p in planned:
        seeds.setdefault(p.run.model, []).append(p.run.seed)
    assert seeds["resnet110"] == [0, 1, 2, 3, 4]
    assert all(s == [0] for m, s in seeds.items() if m != "resnet110")


def test_smoke_skips_resnet1202_unless_named():
    skipped = [p.run.model for p in plan(load_experiment("table6"), "smoke") if p.skip_reason]
    assert skipped == ["resnet1202"]
    assert not plan(load_experiment("table6"), "smoke", models=["resnet1202"])[0].skip_reason


def test_imagenet_plans_name_each_network_once_and_use_the_imagenet_recipe():
    table3 = plan(load_experiment("table3"), "paper")
    assert [p.run.model for p in table3] == ["plain34", "resnet34", "resnet34_B", "resnet34_C", "resnet50",
                                             "resnet101", "resnet152"]
    assert table3[0].run.recipe.batch_size == 256
    smoke = plan(load_experiment("table3"), "smoke")
    assert [p.run.model for p in smoke if p.skip_reason] == ["resnet101", "resnet152"]


@pytest.mark.parametrize("name, models, message", [
    ("table5", None, "nothing to train"), ("table1", None, "resbench flops"),
    ("table6", ["plain20"], "no rows for plain20")])
def test_plan_refuses_what_it_cannot_run(name, models, message):
    with pytest.raises(ValueError, match=message):
        plan(load_experiment(name), "smoke", models=models)


def test_run_experiment_skips_finished_runs_and_loads_as_dataframes(tiny_data, tmp_path):
    sweep = Sweep("figure1", "smoke", ["plain20"], seeds=2, overrides=SHORT, out=tmp_path)
    first = run_experiment(sweep, CPU, QUIET, tiny_data, say=lambda _: None)
    assert [r["status"] for r in first] == ["done", "done"]
    said = []
    again = run_experiment(sweep, CPU, QUIET, tiny_data, say=said.append)
    assert all(s.startswith("done already") for s in said)
    assert [{k: v for k, v in r.items() if k != "already"} for r in again] == first

    runs = load_runs(tmp_path)
    assert sorted(runs["seed"]) == [0, 1] and set(runs["status"]) == {"done"}
    assert runs["data_variant"].eq("synthetic").all() and runs["git_commit"].notna().all()
    assert runs.set_index("seed")["test_error"].to_dict() == {r["seed"]: r["test_error"] for r in (
        {"seed": int(d.rsplit("-s", 1)[1]), "test_error": s["test_error"]} for d, s in
        ((x["dir"], x) for x in first))}
    curves = load_curves(tmp_path)
    assert {"train", "test"} <= set(curves["record"]) and curves["iter"].max() == 20
    responses = load_responses(tmp_path)
    assert len(responses) == 2 * 19


def test_fresh_trains_a_finished_run_again(tiny_data, tmp_path):
    sweep = Sweep("table6", "smoke", ["resnet20"], overrides=SHORT, out=tmp_path)
    run_experiment(sweep, CPU, QUIET, tiny_data, say=lambda _: None)
    said = []
    again = run_experiment(replace(sweep, fresh=True), CPU, QUIET, tiny_data, say=said.append)
    assert said[0].startswith("done:") and again[0]["iteration"] == 20
    assert len(load_runs(tmp_path)) == 1


def test_a_row_shared_by_two_experiments_is_trained_once(tiny_data, tmp_path):
    sweep = Sweep("table6", "smoke", ["resnet20"], overrides=SHORT, out=tmp_path)
    said = []
    run_experiment(sweep, CPU, QUIET, tiny_data, say=said.append)
    run_experiment(replace(sweep, experiment="figure7"), CPU, QUIET, tiny_data, say=said.append)
    assert said[-1].startswith("done already") and len(load_runs(tmp_path)) == 1


def test_cli_runs_a_smoke_row_on_a_jpeg_folder(jpeg_root, tmp_path):
    proc = cli("run", "figure1", "--preset", "smoke", "--models", "plain20", "--device", "cpu", "-q",
                    "--data-root", str(jpeg_root), "--runs", str(tmp_path / "runs"))
    assert proc.exit_code == 0, proc.output
    runs = load_runs(tmp_path / "runs")
    assert runs["model"].tolist() == ["plain20"] and runs["data_variant"].tolist() == ["cifar10-jpeg-q75"]


@pytest.mark.parametrize("args, message", [
    (["run", "table6", "--data-root", "/nonexistent"], "no CIFAR-10 in /nonexistent"),
    (["run", "table6", "--preset", "huge"], "unknown preset"),
    (["run", "table6", "--models", "resnet21"], "no rows for resnet21"),
    (["run", "table7"], "unknown experiment"),
    (["run", "table6", "--device", "cuda"], "no CUDA GPU"),
])
def test_cli_bad_inputs_are_one_line_errors(args, message):
    assert message in one_line_error(args)


def test_bench_cifar_measures_the_plain_loop_and_the_fast_one_in_fp32_and_bf16(bench_root, tmp_path):
    proc = cli("bench", "cifar", "--models", "resnet8", "--iterations", "2", "--warmup", "1",
                    "--workers", "0", "--device", "cpu", "--data-root", str(bench_root),
                    "--out", str(tmp_path / "bench.json"))
    assert proc.exit_code == 0, proc.output
    results = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [r["loop"] for r in results] == ["plain", "fast fp32", "fast bf16"]
    assert all(r["img_per_s"] > 0 for r in results)
    assert [r["detail"].split(",")[0] for r in results[1:]] == ["fp32", "bf16"]
    assert "vs plain" in proc.stdout and "vs fast fp32" in proc.stdout and "bf16)" in proc.stdout


def test_bench_jobs_measures_packed_trainings(bench_root, tmp_path):
    proc = cli("bench", "jobs", "--models", "resnet8", "--jobs", "1,2", "--iterations", "20",
                    "--device", "cpu", "--data-root", str(bench_root), "--out", str(tmp_path / "jobs.json"))
    assert proc.exit_code == 0, proc.output
    results = json.loads((tmp_path / "jobs.json").read_text())["results"]
    assert [r["jobs"] for r in results] == [1, 2]
    assert all(r["steady_img_per_s"] > 0 and r["wall_img_per_s"] > 0 for r in results)
    assert "vs 1 job" in proc.stdout


def test_an_imagenet_network_is_one_run_whatever_table_tests_it(tmp_path):
    """The test protocol is no part of a run: Tables 3 and 4 share ResNet-50, Table 3's ResNet-34 A is
    Table 2's ResNet-34, and Fig. 4 reuses Table 2's runs."""
    from resbench.sweep.plan import prepare

    def job_dir(name, model):
        (job,), _, _ = prepare(Sweep(name, "smoke", [model], out=tmp_path, synthetic=True), CPU, say=lambda _: None)
        return job.dir

    assert job_dir("table3", "resnet50") == job_dir("table4", "resnet50")
    assert job_dir("table3", "resnet34_A") == job_dir("table2", "resnet34") == job_dir("figure4", "resnet34")
    assert job_dir("table3", "resnet34_B") != job_dir("table2", "resnet34")


def test_fp32_is_true_fp32_and_bf16_runs_record_tf32():
    import torch

    try:
        for engine, tf32 in ((Engine("cuda", "fp32", False), False), (Engine("cuda", "bf16", False), True),
                             (Engine("cpu", "fp32", False), False)):
            engine.apply_global_settings()
            assert torch.backends.cudnn.allow_tf32 is tf32 and torch.backends.cuda.matmul.allow_tf32 is tf32
            assert engine.arithmetic == {"precision": engine.precision, "tf32": tf32}
    finally:
        Engine("cpu", "fp32", False).apply_global_settings()


def test_fuse_trains_the_seeds_of_a_row_together_and_status_shows_the_groups(tiny_data, tmp_path):
    from typer.testing import CliRunner

    from resbench.cli.main import app

    results = run_experiment(Sweep("table6", "smoke", ["resnet20"], seeds=3, overrides=SHORT, out=tmp_path), CPU,
                             replace(QUIET, fuse=2), tiny_data, say=lambda _: None)
    assert [r["status"] for r in results] == ["done", "done", "done"]
    runs = load_runs(tmp_path).sort_values("seed")
    assert [[name.rsplit("-s", 1)[1] for name in f] for f in runs["fused_with"]] == [["1"], ["0"], []]
    status = CliRunner().invoke(app, ["status", "--runs", str(tmp_path)], env={"COLUMNS": "220"})
    lines = status.output.splitlines()
    header = [c.strip() for c in next(line for line in lines if "fused with" in line).split("┃")]
    s0 = next(r for r in ([c.strip() for c in line.split("│")] for line in lines) if len(r) > 2 and r[1].endswith("-s0"))
    assert s0[header.index("fused with")] == "s1"


def test_groups_are_the_same_whatever_order_the_jobs_come_in(tiny_data, tmp_path):
    from resbench.sweep.jobs import make_groups
    from resbench.sweep.plan import prepare

    jobs, _, _ = prepare(Sweep("table6", "smoke", ["resnet20", "resnet32"], seeds=3, out=tmp_path), CPU, tiny_data,
                         say=lambda _: None)
    groups = make_groups(jobs, 2)
    names = [[j.dir.name.split("-")[0] + j.dir.name[-3:] for j in g] for g in groups]
    assert names == [["resnet20-s0", "resnet20-s1"], ["resnet20-s2"], ["resnet32-s0", "resnet32-s1"], ["resnet32-s2"]]
    rotated = make_groups(jobs[3:] + jobs[:3], 2)
    assert sorted(map(tuple, ([j.dir for j in g] for g in rotated))) == \
        sorted(map(tuple, ([j.dir for j in g] for g in groups)))
    assert [len(g) for g in make_groups(jobs, 1)] == [1] * 6


@pytest.mark.parametrize("fuse, expected", [("auto", 1), ("3", 3), (2, 2)])
def test_fuse_auto_is_one_off_the_gpu(fuse, expected):
    from resbench.sweep.jobs import resolve_fuse

    assert resolve_fuse(fuse, CPU) == expected


def test_a_bad_fuse_is_a_one_line_error():
    assert "--fuse takes a number" in one_line_error(["run", "table6", "--fuse", "0", "--device", "cpu"])


def test_bench_fuse_measures_fused_groups_beside_one_run_and_jobs(bench_root, tmp_path):
    proc = cli("bench", "fuse", "--models", "resnet8", "--fuse", "1,2", "--iterations", "20", "--device", "cpu",
                    "--data-root", str(bench_root), "--out", str(tmp_path / "fuse.json"))
    assert proc.exit_code == 0, proc.output
    results = json.loads((tmp_path / "fuse.json").read_text())["results"]
    assert [r["fuse"] for r in results] == [1, 2] and all(r["steady_img_per_s"] > 0 for r in results)
    assert results[1]["jobs"]["jobs"] == 2 and results[1]["jobs"]["steady_img_per_s"] > 0
    assert "one after another" in proc.stdout


def test_the_ladder_is_the_ten_cifar_networks_at_five_budgets_three_seeds_cheapest_first():
    planned = plan(load_experiment("ladder"), "paper")
    assert len(planned) == 10 * 5 * 3
    networks = {f"{kind}{depth}" for kind in ("plain", "resnet") for depth in (20, 32, 44, 56, 110)}
    assert {p.run.model for p in planned} == networks
    assert {str(p.run.budget) for p in planned} == {"1/32", "1/16", "1/8", "1/4", "1"}
    costs = [p.cost for p in planned]
    assert costs == sorted(costs)  # a deadline cut keeps the most finished runs
    assert [(p.run.model, str(p.run.budget), p.run.seed) for p in planned[:3]] == [
        ("plain20", "1/32", 0), ("resnet20", "1/32", 0), ("plain20", "1/32", 1)]
    assert {(p.run.model, str(p.run.budget)) for p in planned[-6:]} == {("plain110", "1"), ("resnet110", "1")}
    assert all(p.run.recipe.warmup == (p.run.model == "resnet110") for p in planned)
    with pytest.raises(ValueError, match="declares its budgets"):
        plan(load_experiment("ladder"), "paper", budget=Fraction(1, 8))


def test_the_precision_control_pairs_bf16_and_fp32_seed_by_seed(tiny_data, tmp_path):
    jobs, _, _ = prepare(Sweep("precision", "smoke", out=tmp_path), CPU, tiny_data, say=lambda _: None)
    assert [(j.run.model, j.run.seed, j.config["precision"]) for j in jobs] == [
        ("resnet20", s, p) for s in (0, 1, 2) for p in ("bf16", "fp32")]
    assert len({j.dir for j in jobs}) == 6 and all(j.run.recipe.iterations == 60 for j in jobs)
    with pytest.raises(ValueError, match="declares its rows' precision"):
        prepare(Sweep("precision", "smoke", out=tmp_path), Engine(device="cpu", precision="fp32"), tiny_data)


@pytest.mark.parametrize("change, message", [
    (dict(budgets=("2",)), "budgets: --budget must be in"), (dict(budgets=("1/8", "2/16")), "a budget twice"),
    (dict(order="random"), "order must be"), (dict(reports=("table9",)), "no declared table"),
    (dict(dataset="imagenet"), "CIFAR-10 schedule"), (dict(rows=()), "networks to train"),
    ("precision", "precision must be one of"), ("paper", "no paper numbers"), ("seeds", "seeds must be")])
def test_a_declaration_that_cannot_run_is_refused(change, message):
    from resbench.paper.declarations import validate

    ladder = load_experiment("ladder")
    row = ladder.rows[0]
    rows = {"precision": replace(row, precision="fp16"), "paper": replace(row, paper={"error": 8.75}),
            "seeds": replace(row, seeds=0)}
    exp = replace(ladder, rows=(rows[change], *ladder.rows[1:])) if isinstance(change, str) else replace(ladder, **change)
    with pytest.raises(ValueError, match=message):
        validate(exp, "ladder.toml")


def test_list_shows_the_plans_and_the_reports_are_only_the_papers():
    from typer.testing import CliRunner

    from resbench.cli.main import app
    from resbench.paper.declarations import experiment_names, plan_names

    assert plan_names() == ("ladder", "precision") and not set(plan_names()) & set(experiment_names())
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    shown = " ".join(result.output.split())  # the table's lines as the terminal's width wraps them
    assert result.exit_code == 0 and "ladder The budget ladder" in shown and "precision Precision control" in shown
    assert "budgets 1/32, 1/16, 1/8, 1/4, 1, cheapest first" in shown
