import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from resbench.report import Report
from resbench.report.build import build_reports
from resbench.report.claims import check_claims
from resbench.report.diff import diff_table
from resbench.host.files import read_json
from resbench.runs.rundir import read_config, read_metrics, read_summary, run_dirs, write_summary
from resbench.sweep.options import Schedule, Sweep
from resbench.sweep.plan import run_experiment
from resbench.paper.declarations import experiment_names, load_experiment
from resbench.train.engine import Engine


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Tiny real CPU smoke runs: two seeds of ResNet-20, plus ResNet-32 and the plain twins; a third of the smoke
    preset's iterations (the reports read curves, responses and summaries, not how far a run trained)."""
    from conftest import make_images
    from resbench.data.cifar import CifarData

    data = CifarData(*make_images(320, 0), *make_images(100, 1), "synthetic", "generated in tests")
    out = tmp_path_factory.mktemp("runs")
    common = dict(engine=Engine(device="cpu", precision="fp32", compile=False), schedule=Schedule(progress=False),
                  data=data, say=lambda _: None)
    short = {"iterations": 20, "milestones": [10, 15], "log_every": 5, "eval_every": 10, "checkpoint_every": 20}
    run_experiment(Sweep("table6", "smoke", ["resnet20"], seeds=2, overrides=short, out=out), **common)
    run_experiment(Sweep("table6", "smoke", ["resnet32"], overrides=short, out=out), **common)
    run_experiment(Sweep("figure1", "smoke", ["plain20", "plain56"], overrides=short, out=out), **common)
    return out


def summaries(root, model):
    out = []
    for d in run_dirs(root):
        if read_config(d)["model"] == model:
            out.append(read_summary(d))
    return out


ONE_OF_EACH_KIND = ("table6", "figure1", "figure7")  # the one notebook, run for a table, error curves and Fig. 7


@pytest.fixture(scope="module")
def built(smoke_runs, tmp_path_factory):
    """A report of each kind built from the smoke runs, and their index, as `resbench report` writes them."""
    out = tmp_path_factory.mktemp("reports")
    build_reports(list(ONE_OF_EACH_KIND), smoke_runs, out, jobs=2)
    return out


@pytest.mark.parametrize("name", ONE_OF_EACH_KIND)
def test_the_notebook_executes_for_every_kind_and_writes_its_outputs(name, built):
    out, tmp_path = built / name, built
    for f in (f"{name}.ipynb", f"{name}.html", "diff.csv", "claims.csv", "README.md", "report.json"):
        assert (out / f).exists(), f
    assert (out / f"{name}.png").stat().st_size > 10_000 and (out / f"{name}.svg").exists()
    executed = json.loads((out / f"{name}.ipynb").read_text())
    assert not any(o.get("output_type") == "error" for c in executed["cells"] for o in c.get("outputs", []))
    diff = pd.read_csv(out / "diff.csv")
    assert set(diff["verdict"]) <= {"reproduced", "close", "not reproduced", "inconclusive", "smoke", "not run"}
    assert name in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(set(experiment_names()) - set(ONE_OF_EACH_KIND)))
def test_every_other_report_saves_its_outputs(name, smoke_runs, tmp_path):
    """The same sections as the reports the notebook builds above, without a kernel each."""
    out = Report.build(name, smoke_runs).save(tmp_path)
    for f in ("diff.csv", "claims.csv", "runs.csv", "README.md", "report.json"):
        assert (out / f).exists(), f
    readme = (out / "README.md").read_text()
    assert readme.startswith(f"# {load_experiment(name).title}\n") and "## How verdicts are decided" in readme
    if name not in ("figure4", "table5"):  # nothing run or computed for them (ImageNet): no figure
        assert (out / f"{name}.png").stat().st_size > 10_000 and f"({name}.png)" in readme
    else:
        assert "No figure: nothing was run or computed for it" in readme


def headings(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("#")]


@pytest.mark.parametrize("name", ONE_OF_EACH_KIND)
def test_readme_and_notebook_show_the_same_sections_in_the_same_order(name, built):
    """Both render `Report.sections()`: the notebook's page is README.md with live tables."""
    executed = json.loads((built / name / f"{name}.ipynb").read_text())
    shown = ["".join(o["data"]["text/markdown"]) for c in executed["cells"] for o in c.get("outputs", [])
             if "text/markdown" in o.get("data", {})]  # a string, or its lines as nbformat writes them
    readme = (built / name / "README.md").read_text()
    assert headings("\n".join(shown)) == headings(readme)
    assert {"## Diff against the paper", "## How verdicts are decided", "## Runs read"} <= set(headings(readme))
    images = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == readme.count("](") and len(images) >= 1  # each figure README.md links, shown once


def test_report_text_is_written_for_its_reader_not_copied_from_docstrings(built):
    import importlib
    import pkgutil

    import resbench.report

    docs = [importlib.import_module(f"resbench.report.{m.name}").__doc__ or ""
            for m in pkgutil.iter_modules(resbench.report.__path__)]
    paragraphs = [" ".join(p.split()) for doc in docs for p in doc.split("\n\n") if len(p) > 80]
    for name in ONE_OF_EACH_KIND:
        readme = " ".join((built / name / "README.md").read_text().split())
        assert not [p for p in paragraphs if p in readme], name


def test_the_wheel_ships_the_report_notebook_and_an_installed_resbench_finds_it(tmp_path):
    """`resbench report` from a wheel: the notebook is inside it, where notebook_for() looks (no checkout)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy: the build's own folders stay out of the checkout
    for folder in ("resbench", "experiments", "analysis"):
        shutil.copytree(root / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(root / file, source / file)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("resbench-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "resbench/analysis/report.ipynb" in archive.namelist()
        archive.extractall(tmp_path / "installed")
    found = subprocess.run([sys.executable, "-c", "from resbench.report.build import notebook_for; "
                            "print(notebook_for('table6'))"], capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "installed")}, check=True).stdout
    assert Path(found.strip()) == tmp_path / "installed" / "resbench" / "analysis" / "report.ipynb"


def test_diff_numbers_are_the_runs_numbers(smoke_runs, built):
    out = built / "table6"
    diff = pd.read_csv(out / "diff.csv").set_index(["row", "metric"])
    errors = [s["test_error"] for s in summaries(smoke_runs, "resnet20")]
    line = diff.loc[("resnet20", "error")]
    assert line["n"] == 2
    assert line["ours_best"] == pytest.approx(min(errors), abs=1e-9)
    assert line["ours_mean"] == pytest.approx(sum(errors) / 2, abs=1e-9)
    assert line["ours_std"] == pytest.approx(pd.Series(errors).std(ddof=1), abs=1e-9)
    assert line["delta"] == pytest.approx(sum(errors) / 2 - 8.75, abs=1e-9)
    assert line["verdict"] == "smoke" and "smoke runs only" in line["note"]  # smoke never earns a verdict
    assert diff.loc[("resnet32", "error")]["ours_mean"] == pytest.approx(
        summaries(smoke_runs, "resnet32")[0]["test_error"], abs=1e-9)
    assert diff.loc[("resnet56", "error")]["verdict"] == "not run" and diff.loc[("resnet56", "error")]["n"] == 0
    assert diff.loc[("resnet110", "params")]["verdict"] == "reproduced"
    readme = (out / "README.md").read_text()
    assert "These are smoke runs" in readme and "re-encoded as JPEG" not in readme  # synthetic data, says so
    assert "synthetic test data" in readme


def test_imagenet_tables_show_complexity_and_say_not_run(smoke_runs):
    report = Report.build("table3", smoke_runs)
    assert set(report.diff["verdict"]) == {"not run"}
    assert report.diff["ours_mean"].isna().all()
    table = report.table().set_index("row")
    assert table.loc["resnet50", "GMACs"] == pytest.approx(3.858, abs=1e-9)
    assert "No finished ImageNet run among the runs read" in report.markdown()


def test_table1_complexity_is_reproduced():
    report = Report.build("table1", "nonexistent")
    diff = report.diff.set_index("row")
    assert (diff.loc[["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain34", "vgg19"],
                     "verdict"] == "reproduced").all()
    assert diff.loc["vgg16", "verdict"] == "reproduced"  # 1.1% over the paper: within 2%, and noted
    assert "15.5G" in diff.loc["vgg16", "note"]


def fake_runs(rows: list[tuple[str, float, float, str]], options: dict | None = None, variant="cifar10-original",
              precision="fp32", **config) -> pd.DataFrame:
    """(model, test_error, train_error, status) per run, as load_runs would give them; seeds count up
    per model. `config` changes the recipe (bn_splits=1) or sets overrides={...}, as a run would record."""
    from resbench.paper.tiers import tier
    from resbench.paper.recipes import CifarRecipe

    recipe = {**CifarRecipe().__dict__, **{k: v for k, v in config.items() if k != "overrides"}}
    seeds: dict[str, int] = {}
    lines = []
    for m, test, train, status in rows:
        seed = seeds[m] = seeds.get(m, -1) + 1
        cfg = {"data": {"variant": variant, "split": "train/test"}, "recipe": recipe, "preset": "paper",
               "precision": precision, "tf32": precision == "bf16", "overrides": config.get("overrides", {})}
        lines.append({"run": f"{m}-{precision}-{seed}", "dir": "", "model": m, "preset": "paper", "seed": seed,
                      "key": "k", "options": json.dumps((options or {}).get(m, {}), sort_keys=True),
                      "overrides": json.dumps(cfg["overrides"]), "tier": tier(cfg), "data_variant": variant,
                      "precision": precision, "tf32": cfg["tf32"], "iterations": 64000, "git_commit": "abc",
                      "git_dirty": False, "gpu": "H100", "devices": "H100", "torch": "2", "status": status, "test_error": test,
                      "train_error": train, "iteration": 64000, "train_s": 1.0, "img_per_s": 1.0, "params": 1})
    return pd.DataFrame(lines)


R110 = {"resnet110": {"warmup": True}}


def verdicts(exp_name: str, runs: pd.DataFrame) -> pd.Series:
    return diff_table(load_experiment(exp_name), runs).query("metric == 'error'").set_index("row")["verdict"]


def test_one_seed_is_judged_at_the_pooled_seed_spread_and_is_never_reproduced():
    spread = [("resnet110", e, 1, "done") for e in (6.0, 7.0, 8.0)]  # a group to pool from: std 1.0, 2 dof
    runs = fake_runs([("resnet20", 8.75, 1, "done"),  # exactly the paper's: still not "reproduced"
                      ("resnet32", 9.51, 1, "done"),  # +2.00 +- 4.30: inconclusive
                      ("resnet44", 12.67, 1, "done"),  # +5.50 +- 4.30: wholly outside -> not reproduced
                      ("resnet56", 6.97, 1, "done"), ("resnet56", math.nan, math.nan, "diverged")] + spread, R110)
    lines = diff_table(load_experiment("table6"), runs).query("metric == 'error'").set_index("row")
    assert lines["verdict"][["resnet20", "resnet32", "resnet44", "resnet1202"]].tolist() == \
        ["inconclusive", "inconclusive", "not reproduced", "not run"]
    half = 4.30265273 * 1.0  # t(0.975, 2) * the pooled std
    assert (lines.loc["resnet20", "delta_low"], lines.loc["resnet20", "delta_high"]) == \
        (pytest.approx(-half), pytest.approx(half))
    check = lines.loc["resnet20", "check"]
    assert "one seed, 95% t interval at the seed-to-seed std pooled over 1 groups" in check and "n = 1" in check
    assert "1.00 pp on 2 degrees of freedom" in check
    assert lines.loc["resnet56", "n"] == 1 and "1 diverged run(s) excluded" in lines.loc["resnet56", "note"]
    assert (lines.loc["resnet20", "tier"], lines.loc["resnet20", "note"].count("original CIFAR-10")) == ("exact (fp32)", 1)


def test_seeds_give_a_confidence_interval_of_the_difference_and_an_equivalence_test():
    near = fake_runs([("resnet20", e, 1, "done") for e in (8.65, 8.75, 8.85)])
    line = diff_table(load_experiment("table6"), near).set_index(["row", "metric"]).loc[("resnet20", "error")]
    half = 4.302653 * 0.1 / 3 ** 0.5  # t(0.975, 2) * std / sqrt(n)
    assert (line.delta_low, line.delta_high) == (pytest.approx(-half), pytest.approx(half))
    assert line.verdict == "reproduced" and line.ours_se == pytest.approx(0.1 / 3 ** 0.5)
    far = verdicts("table6", fake_runs([("resnet20", e, 1, "done") for e in (9.6, 9.8, 10.0)]))
    assert far["resnet20"] == "not reproduced"  # +1.05 +- 0.50: wholly outside +-0.5


def test_two_seeds_with_a_wide_spread_are_inconclusive_and_say_how_many_seeds_would_decide():
    """The old rule called this 'reproduced': the paper's number lay in a prediction interval of +-15 std."""
    two = fake_runs([("resnet20", e, 1, "done") for e in (10.45, 10.75)])  # 2 pp off, std 0.21
    line = diff_table(load_experiment("table6"), two).set_index(["row", "metric"]).loc[("resnet20", "error")]
    assert line.verdict == "inconclusive" and "n = 2, need about 3 seeds" in line.check
    wide = fake_runs([("resnet20", e, 1, "done") for e in (8.0, 9.5)])
    line = diff_table(load_experiment("table6"), wide).set_index(["row", "metric"]).loc[("resnet20", "error")]
    assert line.verdict == "inconclusive" and "need about" in line.check


@pytest.mark.parametrize("delta", [-4.0, -2.0, -0.6, -0.5, -0.3, 0.0, 0.2, 0.3045, 0.4, 0.45, 0.5, 0.55, 0.9, 1.5, 3.0])
@pytest.mark.parametrize("std", [0.05, 0.2, 0.5, 1.5])
def test_more_seeds_never_move_a_verdict_to_the_other_side(delta, std):
    """Every declared error row of every experiment, at a fixed mean and std, n = 1 to 40: a decided verdict
    stays decided and never crosses; seeds_needed's answer decides, and None means no n decides."""
    from resbench.report.diff import error_verdict
    from resbench.report.stats import Noise, spread, t_quantile
    from resbench.paper.declarations import all_experiments

    noise = Noise(1.05, 15, 8)  # the committed runs' pooled spread
    # one seed is judged at the pooled spread; from one seed on where two seeds at this std give no wider an
    # interval (a second seed replaces the borrowed spread by its own, on 1 degree of freedom), else from two
    first_n = 1 if t_quantile(0.95, 1) * std / 2 ** 0.5 <= noise.half_width() else 2

    rows = [(exp, row, metric) for exp in all_experiments() if exp.kind == "train" for row in exp.runnable_rows
            for metric in row.paper if metric in ("error", "top1_err", "top5_err")]
    assert len(rows) > 20
    for exp, row, metric in rows:
        reference = row.paper.get(f"{metric}_mean", row.paper[metric])
        verdicts_by_n = {}
        for n in range(first_n, 41):
            s = {**spread([reference + delta] * n), "ours_std": std if n > 1 else math.nan}
            verdicts_by_n[n] = error_verdict(exp, row, metric, s, noise)
        seq = [v["verdict"] for v in verdicts_by_n.values()]
        decided = [v for v in seq if v != "inconclusive"]
        assert len(set(decided)) <= 1 and seq == sorted(seq, key=lambda v: v != "inconclusive"), (row.id, seq)
        first = verdicts_by_n[min(verdicts_by_n)]["check"]
        if "need about" in first:
            needed = int(first.split("need about ")[1].split()[0])
            assert needed > 40 or verdicts_by_n[needed]["verdict"] != "inconclusive", (row.id, first, seq)
        if "no number of seeds can decide" in first:
            assert set(seq) == {"inconclusive"}, (row.id, seq)


def test_resnet110s_verdict_narrows_with_seeds_and_says_when_no_number_of_seeds_can_decide():
    """The paper's 6.61 +- 0.16 over 5 runs puts a floor of 0.20 pp under the interval."""
    from resbench.report.diff import error_verdict
    from resbench.report.stats import spread

    exp = load_experiment("table6")
    row = exp.row("resnet110")
    def verdicts(delta):
        return [error_verdict(exp, row, "error", {**spread([6.61 + delta] * n), "ours_std": 0.05})
                for n in range(2, 40)]
    near = [v["verdict"] for v in verdicts(0.25)]
    assert near[0] == "inconclusive" and set(near[1:]) == {"reproduced"}  # from n = 3 on, for good
    for delta in (0.3045, 0.40):  # Welch said reproduced at n = 5 and inconclusive at 6-39 for +0.3045
        stuck = verdicts(delta)
        assert {v["verdict"] for v in stuck} == {"inconclusive"}
        assert "no number of seeds can decide" in stuck[0]["check"], stuck[0]["check"]
    assert stuck[0]["reference"] == 6.61 and "against 6.61" in stuck[0]["check"]


def test_resnet110_compares_our_mean_with_the_papers_mean_and_std():
    five = [6.5, 6.7, 6.6, 6.8, 6.55, 5.0]  # a sixth seed (5.0) is no part of the best of 5
    line = diff_table(load_experiment("table6"), fake_runs([("resnet110", e, 1, "done") for e in five], R110))
    line = line.set_index(["row", "metric"]).loc[("resnet110", "error")]
    assert line.ours_best == 6.5 and "best of seeds 0-4: 6.50 vs the paper's best 6.43" in line.note
    assert line.n == 6 and line.delta == pytest.approx(sum(five) / 6 - 6.61) and "6.61+-0.16 over 5" in line.check
    two = diff_table(load_experiment("table6"), fake_runs([("resnet110", e, 1, "done") for e in (6.9, 7.0)], R110))
    two = two.set_index(["row", "metric"]).loc[("resnet110", "error")]
    assert math.isnan(two.ours_best) and "best of 5 needs seeds 0-4" in two.note
    assert two.verdict == "inconclusive"  # +0.34, but two seeds: the CI reaches past +-0.5
    same = verdicts("table6", fake_runs([("resnet110", 6.61 + d, 1, "done") for d in (-0.1, 0, 0.1, -0.05, 0.05)],
                                        R110))
    assert same["resnet110"] == "reproduced"
    off = verdicts("table6", fake_runs([("resnet110", 7.8 + d, 1, "done") for d in (-0.1, 0, 0.1, -0.05, 0.05)],
                                       R110))
    assert off["resnet110"] == "not reproduced"


def test_proxy_runs_show_numbers_but_no_reproduction_verdict_and_tiers_are_never_averaged():
    jpeg = fake_runs([("resnet20", 8.75, 1, "done")], variant="cifar10-jpeg-q75", precision="bf16")
    line = diff_table(load_experiment("table6"), jpeg).query("metric == 'error'").set_index("row").loc["resnet20"]
    assert line.tier == "proxy: JPEG q75 data (bf16+TF32)" and line.verdict == "proxy" and line.delta == 0
    assert "says nothing about whether the paper's number was reproduced" in line.note
    bn = fake_runs([("resnet20", 8.75, 1, "done")], bn_splits=1)
    assert verdicts("table6", bn)["resnet20"] == "proxy"
    assert "proxy: BN statistics over 128 images (paper: 64) (fp32)" in set(diff_table(load_experiment("table6"), bn)["tier"])
    lr = fake_runs([("resnet20", 8.75, 1, "done")], overrides={"lr": 0.05}, lr=0.05)
    assert "proxy: --set lr=0.05 (fp32)" in set(diff_table(load_experiment("table6"), lr)["tier"])
    mixed = pd.concat([fake_runs([("resnet20", 8.0, 1, "done")]),
                       fake_runs([("resnet20", 9.0, 1, "done")], precision="bf16")])
    lines = diff_table(load_experiment("table6"), mixed).query("row == 'resnet20' and metric == 'error'")
    assert lines["tier"].tolist() == ["exact (bf16+TF32)", "exact (fp32)"] and lines["n"].tolist() == [1, 1]
    assert lines["ours_mean"].tolist() == [9.0, 8.0]  # never averaged together


def test_a_runs_devices_name_every_machine_it_trained_on(tmp_path):
    """A run paused on one machine and resumed on others is shown with each of them, not only the first
    (env.json); a resume logged before machines were recorded says so rather than guess."""
    from resbench.report.runs import devices
    from resbench.runs.rundir import MetricsLog, read_metrics

    log = MetricsLog(tmp_path)
    log.append({"iter": 100, "record": "event", "event": "resumed", "gpu": None, "cpu": "AMD EPYC"})
    log.append({"iter": 200, "record": "event", "event": "resumed", "gpu": None})
    log.append({"iter": 300, "record": "event", "event": "resumed", "gpu": None, "cpu": "AMD EPYC"})
    assert devices({"gpu": None, "cpu": "Intel Xeon"}, read_metrics(tmp_path)) == [
        "Intel Xeon", "AMD EPYC", "an unrecorded machine"]
    assert devices({"gpu": "NVIDIA H200", "cpu": "AMD EPYC"}, read_metrics(tmp_path / "fresh")) == ["NVIDIA H200"]


def test_the_header_counts_computed_verdicts_apart_from_trained_ones(smoke_runs):
    report = Report.build("table6", smoke_runs)  # smoke runs earn no verdict: their error rows say "smoke"
    assert report.verdicts(computed=True)["reproduced"] == 6 and report.verdicts(computed=False)["reproduced"] == 0
    counts = report.header().splitlines()[0]
    assert counts.endswith("Trained rows: smoke 2, not run 10; computed (params, FLOPs): reproduced 6.")


def test_a_finished_run_whose_summary_lacks_its_training_error_is_read_from_its_log(smoke_runs, tmp_path):
    """Older code left train_error out of the summary of a run resumed at its last iteration."""
    import shutil

    from resbench.report.runs import load_runs

    run = shutil.copytree(run_dirs(smoke_runs)[0], tmp_path / "run")
    summary = read_summary(run)
    write_summary(run, {**summary, "train_error": None})
    last_train = [r for r in read_metrics(run) if r["record"] == "train"][-1]
    assert load_runs(tmp_path).loc[0, "train_error"] == last_train["error"] == summary["train_error"]


def test_runs_of_several_code_versions_are_averaged_and_named():
    runs = fake_runs([("resnet32", 7.5, 1, "done"), ("resnet32", 7.6, 1, "done")])
    runs.loc[1, ["git_commit", "git_dirty"]] = ["def4567890", True]
    line = diff_table(load_experiment("table6"), runs).query("row == 'resnet32' and metric == 'error'").iloc[0]
    assert line.n == 2 and "2 code versions: abc, def45678+dirty" in line.note


def test_lower_bounds_are_bounds():
    spread = [("plain20", e, 1, "done") for e in (8.0, 9.0, 10.0)]  # one seed's spread, pooled: 1.0 pp on 2 dof
    assert verdicts("figure6", fake_runs([("plain110", 75.0, 74, "done")] + spread))["plain110"] == "reproduced"
    assert verdicts("figure6", fake_runs([("plain110", 12.0, 5, "done")] + spread))["plain110"] == "not reproduced"
    assert verdicts("figure6", fake_runs([("plain110", 75.0, 74, "done")]))["plain110"] == "inconclusive"  # no spread


def claim_status(exp_name: str, runs: pd.DataFrame, responses: pd.DataFrame | None = None) -> dict:
    table = check_claims(load_experiment(exp_name), runs, pd.DataFrame() if responses is None else responses)
    return dict(zip(table["claim"] + table["definition"].map(lambda d: f" [{d}]" if d else ""), table["status"]))


def test_a_strict_ordering_on_one_seed_is_inconclusive_and_seeds_decide():
    one = fake_runs([("plain20", 9, 4.0, "done"), ("plain56", 12, 7.0, "done")])
    table = check_claims(load_experiment("figure1"), one, pd.DataFrame())
    assert table["status"].tolist() == ["inconclusive"] and "n = 1, 1: untested below 3 seeds a side" in table["evidence"][0]
    degraded = fake_runs([("plain20", 9 + d, 4 + d, "done") for d in (0, .2, .4)]
                         + [("plain56", 12 + d, 7 + d, "done") for d in (0, .2, .4)])
    assert claim_status("figure1", degraded) == {"degradation": "pass"}
    healthy = fake_runs([("plain20", 9 + d, 7 + d, "done") for d in (0, .2, .4)]
                        + [("plain56", 8 + d, 3 + d, "done") for d in (0, .2, .4)])
    assert claim_status("figure1", healthy) == {"degradation": "fail"}
    noisy = fake_runs([("plain20", 9 + d, 4 + d, "done") for d in (0, 2, 4)]
                      + [("plain56", 10 + d, 5 + d, "done") for d in (0, 2, 4)])
    assert claim_status("figure1", noisy) == {"degradation": "inconclusive"}
    assert claim_status("figure1", fake_runs([("plain20", 9, 4, "done")])) == {"degradation": "not run"}


def test_table6_and_figure6_claims():
    falling = fake_runs([(f"resnet{d}", e + s, 1, "done") for d, e in ((20, 8.8), (32, 7.5), (44, 7.2), (56, 6.9))
                         for s in (0, .1, .2)] + [("resnet110", 6.4 + s, 1, "done") for s in (0, .1, .2)]
                        + [("resnet1202", 7.9 + s, 1, "done") for s in (0, .1, .2)], R110 | {"resnet1202": {"warmup": True}})
    assert claim_status("table6", falling) == {"deeper_resnets_better": "pass", "resnet1202_worse": "pass"}
    plain = fake_runs([(f"plain{d}", 10, e + s, "done") for d, e in ((20, 5), (32, 6), (44, 7), (56, 8))
                       for s in (0, .1, .2)] + [("plain110", 80 + s, 80, "done") for s in (0, 1, 2)])
    status = claim_status("figure6", plain)
    assert status["plain_training_error_rises"] == "pass" and status["plain110_fails"] == "pass"


def test_shortcuts_help_depth_on_imagenet_runs():
    runs = fake_runs([(m, 1, 1, "done") for m in ("plain18", "plain34", "resnet18", "resnet34") for _ in range(3)])
    runs["top1_err_10crop"] = [27.9, 28.0, 28.1, 28.5, 28.6, 28.7, 27.8, 27.9, 28.0, 25.0, 25.1, 25.2]
    assert claim_status("table2", runs) == {"shortcuts_help_depth": "pass"}
    runs["top1_err_10crop"] = [28.5, 28.6, 28.7, 27.9, 28.0, 28.1, 27.8, 27.9, 28.0, 25.0, 25.1, 25.2]
    assert claim_status("table2", runs) == {"shortcuts_help_depth": "fail"}  # plain-34 better than plain-18


def test_fig7_claims_under_every_reading_of_std():
    models = ["plain20", "resnet20", "resnet56", "resnet110"]
    runs = fake_runs([(m, 8, 1, "done") for m in models for _ in range(3)], R110)
    rows = []
    for run, model, seed in zip(runs["run"], runs["model"], runs["seed"]):
        big = {"plain20": 2.0, "resnet20": 1.0, "resnet56": 0.5, "resnet110": 0.25}[model]
        for layer in (1, 2):
            values = {r: big + 0.01 * len(rows) for r in ("std", "channel_std", "rms", "std_train",
                                                          "channel_std_train", "rms_train")}
            values["rms_train"] = (1.0, 1.6, 0.4)[seed]  # one reading where the networks do not differ
            rows.append({"run": run, "model": model, "layer": layer, "block_output": layer == 2, **values})
    table = check_claims(load_experiment("figure7"), runs, pd.DataFrame(rows))
    status = dict(zip(table["claim"] + " [" + table["definition"] + "]", table["status"]))
    outcome = dict(zip(table["claim"] + " [" + table["definition"] + "]", table["outcome"]))
    assert status["resnet_responses_smaller [std, all 3x3 layers]"] == "pass"  # the primary reading: judged
    assert status["deeper_resnet_responses_smaller [std, all 3x3 layers]"] == "pass"
    assert status["resnet_responses_smaller [channel_std_train, block outputs]"] == "exploratory"
    assert outcome["resnet_responses_smaller [channel_std_train, block outputs]"] == "pass"  # its own test, shown
    assert outcome["resnet_responses_smaller [rms_train, all 3x3 layers]"] == "inconclusive"
    assert len(status) == 6 * 2 + 6  # 6 readings x 2 views, and 6 readings of the depth claim
    assert list(status.values()).count("exploratory") == len(status) - 2


def test_the_notebook_is_committed_without_outputs():
    from resbench.report.build import notebook_for

    cells = json.loads(notebook_for("table6").read_text())["cells"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in cells if c["cell_type"] == "code")
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


def test_reports_hold_no_absolute_path_no_code_and_the_index_links_resolve(built, smoke_runs):
    from html.parser import HTMLParser

    from resbench.runs.provenance import PACKAGE_DIR

    machine = {str(built.resolve()), str(smoke_runs.resolve()), str(PACKAGE_DIR.parent), str(Path.home())}
    for path in (p for p in built.rglob("*") if p.is_file() and p.suffix != ".png"):
        text = path.read_text()
        assert not [m for m in machine if m in text], path
    html = (built / "table6" / "table6.html").read_text()
    assert 'class="jp-CodeMirrorEditor' not in html and "Report.build(" not in html  # no code, no parameters cell
    assert "Table 6: classification error" in html and "How verdicts are decided" in html

    class Links(HTMLParser):
        found: list = []

        def handle_starttag(self, tag, attrs):
            self.found += [v for k, v in attrs if (tag, k) in (("a", "href"), ("img", "src"))]
    parser = Links()
    parser.feed((built / "index.html").read_text())
    assert {"table6/table6.html", "table6/table6.png", "figure1/figure1.png"} <= set(parser.found)
    assert all((built / link).exists() for link in parser.found)


def test_index_and_report_pages_load_in_chromium_and_a_missing_image_is_caught(built, tmp_path):
    """Chromium's own DOM says whether each image loaded and where each link points. CI installs
    chromium (.ci/run), so there the test runs; elsewhere it is skipped without one."""
    import os
    import shutil

    import numpy as np
    from PIL import Image

    from resbench.report.browser import check_page, chromium, screenshot

    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it")
        pytest.skip("Debian's chromium is not installed")
    pages = tmp_path / "reports"
    shutil.copytree(built, pages)
    result = check_page(pages / "table6" / "table6.html")
    assert result["images"] and result["broken_images"] == [] and result["links"] and result["broken_links"] == []
    shot = screenshot(pages / "index.html", tmp_path / "index.png")
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # not a blank page
    (pages / "table6" / "table6.png").unlink()
    (pages / "figure1" / "README.md").unlink()
    result = check_page(pages / "index.html")  # every other image and link of the index is whole
    assert len(result["images"]) >= 2 and result["broken_images"] == ["table6/table6.png"], result
    assert "figure1/README.md" in result["broken_links"], result
    assert set(result["broken_links"]) <= {"figure1/README.md", "table6/table6.png"}, result


def test_cli_report_needs_a_target_and_a_known_name(tmp_path):
    from conftest import one_line_error

    for args, message in ((["report"], "--table N"), (["report", "--table", "9"], "unknown experiment")):
        assert message in one_line_error([*args, "--out", str(tmp_path)])


def test_table5_ensemble_row_says_how_to_measure_it_and_that_it_was_not_run():
    diff = diff_table(load_experiment("table5"), pd.DataFrame()).set_index("row")
    ours = diff.loc["resnet_ilsvrc15"]
    assert ours.verdict == "not run" and math.isnan(ours.ours_mean)
    assert "resbench ensemble" in ours.note and "no finished ImageNet run among the runs read" in ours.note
    assert "not a model resbench trains" in diff.loc["vgg_ilsvrc14"].note


def _table6_diff(ours: dict[str, list[float]]) -> pd.DataFrame:
    """Table 6's diff as if our runs of each model had these test errors."""
    exp = load_experiment("table6")
    runs = pd.DataFrame([{"run": f"{m}-{i}", "model": m, "options": json.dumps(exp.row(m).options, sort_keys=True),
                          "preset": "paper", "status": "done", "test_error": e, "data_variant": "cifar10-jpeg-q75",
                          "seed": i, "tier": "proxy: JPEG q75 data (bf16+TF32)",
                          "git_commit": "abc", "git_dirty": False, "iterations": 64000}
                         for m, errors in ours.items() for i, e in enumerate(errors)])
    return diff_table(exp, runs)


def test_gap_analysis_tells_one_offset_from_a_depth_specific_miss():
    from resbench.report.gap import gap_by_depth

    exp = load_experiment("table6")
    paper = {m: exp.row(m).paper.get("error_mean", exp.row(m).paper["error"]) for m in ("resnet20", "resnet56", "resnet110")}
    seeds = (-0.2, 0.0, 0.2)  # seed std 0.2
    offset = {m: [p + 1.0 + s for s in seeds] for m, p in paper.items()}
    table, verdict = gap_by_depth(exp, _table6_diff(offset))
    assert verdict.startswith("one offset") and table["gap"].round(6).tolist() == [1.0, 1.0, 1.0]
    assert not table["off"].any()

    one_miss = {**offset, "resnet110": [paper["resnet110"] + 3.0 + s for s in seeds]}
    table, verdict = gap_by_depth(exp, _table6_diff(one_miss))
    assert verdict.startswith("depth-specific") and "depth 110" in verdict
    assert table.set_index("depth")["off"].to_dict() == {20: False, 56: False, 110: True}

    single = {m: [p + 1.0] for m, p in paper.items()}
    assert "seed noise unknown" in gap_by_depth(exp, _table6_diff(single))[1]
    assert "two depths" in gap_by_depth(exp, _table6_diff({"resnet20": [9.0]}))[1]


def test_claims_are_judged_in_every_tier_with_runs_on_both_sides_and_never_pooled():
    bf16 = fake_runs([("plain20", 9 + d, 4 + d, "done") for d in (0, .2, .4)]
                     + [("plain56", 12 + d, 7 + d, "done") for d in (0, .2, .4)], precision="bf16")
    fp32 = fake_runs([("plain20", 9 + d, 7 + d, "done") for d in (0, .2, .4)]
                     + [("plain56", 8 + d, 3 + d, "done") for d in (0, .2, .4)])
    one_side = fake_runs([("plain20", 9, 4, "done")], variant="cifar10-jpeg-q75")
    table = check_claims(load_experiment("figure1"), pd.concat([bf16, fp32, one_side]), pd.DataFrame())
    assert table[["tier", "status"]].values.tolist() == [["exact (bf16+TF32)", "pass"], ["exact (fp32)", "fail"]]
    nothing = check_claims(load_experiment("figure1"), one_side, pd.DataFrame())
    assert nothing[["tier", "status"]].values.tolist() == [["", "not run"]]


def test_claims_across_budgets_give_each_orderings_effect_and_ci_per_budget():
    from resbench.report.budgets import across_budgets, budgets_figure
    from resbench.report.stats import welch_ci

    def at(budget: str, shift: float) -> pd.DataFrame:
        runs = fake_runs([("resnet20", 9 + d, 1, "done") for d in (0, .2, .4)]
                         + [("resnet56", 9 + shift + d, 1, "done") for d in (0, .3, .6)], precision="bf16")
        return runs.assign(tier=f"proxy: schedule {budget} (bf16)", budget=budget, family="proxy (bf16)",
                           run=runs["run"] + budget)
    runs = pd.concat([at("1/32", 3.0), at("1/8", -1.0)])
    table = across_budgets(load_experiment("table6"), runs, pd.DataFrame())
    lines = table[table["ordering"] == "resnet56 < resnet20"].set_index("budget")
    assert lines.index.tolist() == ["1/32", "1/8"]  # sorted by budget, not by name
    assert lines.loc["1/32", "effect"] == pytest.approx(9.2 - 12.3) and lines.loc["1/32", "verdict"] == "fail"
    assert lines.loc["1/8", "effect"] == pytest.approx(9.2 - 8.3) and lines.loc["1/8", "verdict"] == "pass"
    low, high = welch_ci(9.2, 0.2, 3, 8.3, 0.3, 3, level=0.90)  # the one-sided 5% test's own interval
    assert (lines.loc["1/8", "ci_low"], lines.loc["1/8", "ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert lines["paper_effect"].tolist() == [pytest.approx(8.75 - 6.97)] * 2
    assert budgets_figure(table) is not None


def test_two_directories_of_one_network_seed_and_tier_are_read_once_and_said():
    from resbench.report.core import one_run_each

    runs = fake_runs([("resnet20", 9.0, 1, "done"), ("resnet20", 9.5, 1, "done")])
    twin = runs.iloc[[0]].assign(run="resnet20-old-key", status="paused", iteration=500)
    kept, left_out = one_run_each(pd.concat([runs, twin], ignore_index=True))
    assert kept["run"].tolist() == runs["run"].tolist() and left_out == ["resnet20-old-key"]


def test_a_chain_is_judged_on_the_networks_present_and_cannot_pass_without_the_rest():
    runs = fake_runs([("resnet20", 9 + d, 1, "done") for d in (0, .1, .2)]
                     + [("resnet56", 7 + d, 1, "done") for d in (0, .1, .2)])
    table = check_claims(load_experiment("table6"), runs, pd.DataFrame()).set_index("claim")
    line = table.loc["deeper_resnets_better"]
    assert line.status == "inconclusive" and "resnet56" in line.evidence and ": pass (one-sided Welch p" in line.evidence
    assert "no runs of resnet32, resnet44, resnet110" in line.evidence


def test_the_arithmetic_control_compares_bf16_with_fp32_and_needs_an_interval_inside_the_margin():
    from resbench.report.arithmetic import arithmetic_control

    fp32 = fake_runs([("resnet20", e, 1, "done") for e in (24.39, 24.82, 25.29)])
    bf16 = fake_runs([("resnet20", e, 1, "done") for e in (25.32, 24.66, 25.46)], precision="bf16")
    line = arithmetic_control(pd.concat([fp32, bf16]), 0.5).iloc[0]
    assert (line.other, line.n_reference, line.n_other) == ("bf16+TF32", 3, 3)
    assert line.difference == pytest.approx(25.146667 - 24.833333, abs=1e-5)
    assert line.ci_low < -0.5 < 0.5 < line.ci_high and line.verdict == "inconclusive" and line.p > 0.05
    tight = fake_runs([("resnet20", 24.8 + d, 1, "done") for d in (0, .01, .02, .03, .04)], precision="bf16")
    close = fake_runs([("resnet20", 24.8 + d, 1, "done") for d in (0, .01, .02, .03, .04)])
    assert arithmetic_control(pd.concat([close, tight]), 0.5).iloc[0].verdict == "no shift beyond the margin"


def test_resnets_beat_their_plain_twins_where_both_have_runs():
    runs = fake_runs([("plain56", 40 + d, 45 + d, "done") for d in (0, .5, 1)]
                     + [("resnet56", 30 + d, 32 + d, "done") for d in (0, .5, 1)])
    table = check_claims(load_experiment("figure6"), runs, pd.DataFrame()).set_index("claim")
    line = table.loc["resnets_beat_plain_twins"]
    assert line.status == "pass" and "train error: resnet56" in line.evidence and "test error: resnet56" in line.evidence
    assert "plain32" not in line.evidence  # twins without runs are left out, not failed


def test_a_report_built_alone_is_byte_for_byte_the_one_built_beside_others(built, smoke_runs, tmp_path_factory):
    """A kernel builds several reports in turn: nothing of one report may leak into the next. And nothing read off
    the clock (papermill's and Jupyter's timings, SVG dates) or drawn at random (pandas tables' ids, SVG clip paths,
    the injected cell's id) is in what a report writes: a rebuild of unchanged runs changes no file."""
    for name in ("figure1", "table6"):  # each in a kernel of its own
        alone = tmp_path_factory.mktemp(f"alone-{name}")  # beside `built`: the same path to the runs from both
        build_reports([name], smoke_runs, alone, jobs=1)
        mine, theirs = ({str(p.relative_to(folder / name)): p.read_bytes() for p in (folder / name).rglob("*")
                         if p.is_file()} for folder in (built, alone))
        assert {f"{name}.svg", f"{name}.ipynb", f"{name}.html", "README.md", "claims.csv"} <= set(mine)
        assert b"<table id=" in mine[f"{name}.html"]  # pandas tables, whose ids are random unless made not
        assert sorted(mine) == sorted(theirs) and [f for f in mine if mine[f] != theirs[f]] == [], name


def test_claims_evidence_reads_as_a_sentence_that_is_true():
    from resbench.report.claims import ordering_sentence

    worse = ordering_sentence("test_error", "resnet56", [24.9, 23.0, 25.1], "resnet20", [19.6, 19.5, 19.5], "fail", 0.991)
    assert worse == ("test error: resnet56 (24.33±1.16, n=3) is above resnet20 (19.53±0.06, n=3), the claim says below: "
                     "fail (one-sided Welch p = 0.991)")
    assert " is below " in ordering_sentence("e", "a", [1, 2, 3], "b", [7, 8, 9], "pass", 0.001)
    assert " is not shown below " in ordering_sentence("e", "a", [1, 5, 9], "b", [2, 6, 10], "inconclusive", 0.4)


def test_the_budgets_bars_are_the_intervals_of_the_tests_their_markers_show():
    """A pass (one-sided Welch at 5%) is exactly a 90% bar wholly above 0, for any spread."""
    import numpy as np

    from resbench.report.stats import effect, ordering

    rng = np.random.default_rng(0)
    for _ in range(200):
        low = list(rng.normal(0, rng.uniform(0.1, 2), 3 + rng.integers(3)))
        high = list(rng.normal(rng.uniform(-1, 3), rng.uniform(0.1, 2), 3 + rng.integers(3)))
        verdict, bar = ordering(low, high)[0], effect(low, high)
        assert (verdict == "pass") == (bar["ci_low"] > 0) and (verdict == "fail") == (bar["ci_high"] < 0)


def test_the_table_figures_bars_are_the_intervals_the_verdicts_read():
    from resbench.report.figures import table_figure

    exp = load_experiment("table6")
    runs = fake_runs([("resnet20", e, 1, "done") for e in (8.65, 8.75, 8.95)] + [("resnet32", 9.0, 1, "done")])
    diff = diff_table(exp, runs)
    fig = table_figure(exp, diff, {}, runs, "paper")
    bars = [c.lines[2][0].get_segments()[0] for c in fig.axes[0].containers]
    lines = diff[diff["metric"] == "error"].dropna(subset=["ours_mean"])
    assert len(bars) == len(lines) == 2
    for (bottom, top), line in zip(bars, lines.itertuples()):
        assert (bottom[1], top[1]) == (pytest.approx(line.reference + line.delta_low),
                                       pytest.approx(line.reference + line.delta_high))


def test_a_tier_as_a_tick_label_is_a_few_short_lines_whatever_its_departures():
    """Smoke runs with five --set overrides made a one-line label wider than the figure: matplotlib could not lay
    it out and its warning, with a path of this machine, ended up in the report."""
    from resbench.report.figures import short_tier

    assert short_tier("proxy: JPEG q75 data, schedule 1/32 (2,000 iterations) (bf16)") == "proxy: JPEG, 1/32\nbf16"
    assert short_tier("exact (fp32)") == "exact\nfp32" and short_tier("proxy: --set lr=0.2 (bf16)") == \
        "proxy: full, --set lr\nbf16"
    long = ("proxy: synthetic data, BN statistics over 16 images (paper: 64), smoke preset (20 iterations), "
            "--set checkpoint_every=20, --set eval_every=10, --set iterations=20, --set milestones=[10, 15] (fp32)")
    label = short_tier(long)
    assert "BN over 16" in label.replace("\n", " ") and "4 options" in label and label.endswith("\nfp32")
    assert max(map(len, label.splitlines())) <= 24
