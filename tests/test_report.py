import json
import math

import pandas as pd
import pytest

from resbench.report import Report
from resbench.report.build import build_report
from resbench.report.claims import check_claims
from resbench.report.diff import diff_table
from resbench.results import read_json
from resbench.store import run_dirs
from resbench.runner import run_experiment
from resbench.spec import experiment_names, load_experiment
from resbench.train.engine import Engine


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Tiny real CPU smoke runs: two seeds of ResNet-20, plus ResNet-32 and the plain twins."""
    from conftest import make_images
    from resbench.data.cifar import CifarData

    data = CifarData(*make_images(320, 0), *make_images(100, 1), "synthetic", "generated in tests")
    out = tmp_path_factory.mktemp("runs")
    common = dict(preset="smoke", out=out, data=data, progress=False, say=lambda _: None,
                  engine=Engine(device="cpu", precision="fp32", compile=False))
    run_experiment("table6", models=["resnet20"], seeds=2, **common)
    run_experiment("table6", models=["resnet32"], **common)
    run_experiment("figure1", models=["plain20", "plain56"], **common)
    return out


def summaries(root, model):
    out = []
    for d in run_dirs(root):
        if read_json(d / "config.json")["model"] == model:
            out.append(read_json(d / "summary.json"))
    return out


@pytest.mark.parametrize("name", experiment_names())
def test_every_notebook_executes_and_writes_its_outputs(name, smoke_runs, tmp_path):
    out = build_report(name, smoke_runs, tmp_path)
    for f in (f"{name}.ipynb", f"{name}.html", "diff.csv", "claims.csv", "README.md", "summary.json"):
        assert (out / f).exists(), f
    if name not in ("figure4", "table5"):  # nothing run or computed for them (ImageNet): no figure
        assert (out / f"{name}.png").stat().st_size > 10_000 and (out / f"{name}.svg").exists()
    executed = json.loads((out / f"{name}.ipynb").read_text())
    assert not any(o.get("output_type") == "error" for c in executed["cells"] for o in c.get("outputs", []))
    diff = pd.read_csv(out / "diff.csv")
    assert set(diff["verdict"]) <= {"reproduced", "close", "not reproduced", "not run"}
    assert name in (tmp_path / "README.md").read_text()


def test_diff_numbers_are_the_runs_numbers(smoke_runs, tmp_path):
    out = build_report("table6", smoke_runs, tmp_path)
    diff = pd.read_csv(out / "diff.csv").set_index(["row", "metric"])
    errors = [s["test_error"] for s in summaries(smoke_runs, "resnet20")]
    line = diff.loc[("resnet20", "error")]
    assert line["n"] == 2
    assert line["ours_best"] == pytest.approx(min(errors), abs=1e-9)
    assert line["ours_mean"] == pytest.approx(sum(errors) / 2, abs=1e-9)
    assert line["ours_std"] == pytest.approx(pd.Series(errors).std(ddof=1), abs=1e-9)
    assert line["delta"] == pytest.approx(sum(errors) / 2 - 8.75, abs=1e-9)
    assert line["verdict"] == "not run" and "smoke runs only" in line["note"]  # smoke never earns a verdict
    assert diff.loc[("resnet32", "error")]["ours_mean"] == pytest.approx(
        summaries(smoke_runs, "resnet32")[0]["test_error"], abs=1e-9)
    assert diff.loc[("resnet56", "error")]["verdict"] == "not run" and diff.loc[("resnet56", "error")]["n"] == 0
    assert diff.loc[("resnet110", "params")]["verdict"] == "reproduced"
    readme = (out / "README.md").read_text()
    assert "These are smoke runs" in readme and "JPEG" not in readme  # synthetic data, says so
    assert "synthetic test data" in readme


def test_imagenet_tables_show_complexity_and_say_not_run(smoke_runs):
    report = Report.build("table3", smoke_runs)
    assert set(report.diff["verdict"]) == {"not run"}
    assert report.diff["ours_mean"].isna().all()
    table = report.table().set_index("row")
    assert table.loc["resnet50", "GMACs"] == pytest.approx(3.858, abs=1e-9)
    assert "No ImageNet run was made" in report.markdown()


def test_table1_complexity_is_reproduced():
    report = Report.build("table1", "nonexistent")
    diff = report.diff.set_index("row")
    assert (diff.loc[["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain34", "vgg19"],
                     "verdict"] == "reproduced").all()
    assert diff.loc["vgg16", "verdict"] == "reproduced"  # 1.1% over the paper: within 2%, and noted
    assert "15.5G" in diff.loc["vgg16", "note"]


def fake_runs(rows: list[tuple[str, float, float, str]], options: dict | None = None) -> pd.DataFrame:
    """(model, test_error, train_error, status) per run, as load_runs would give them."""
    return pd.DataFrame([{
        "run": f"{m}-{i}", "dir": "", "model": m, "preset": "paper", "seed": i, "key": "k",
        "options": json.dumps((options or {}).get(m, {}), sort_keys=True), "data_variant": "cifar10-original",
        "precision": "bf16", "iterations": 64000, "git_commit": "abc", "git_dirty": False, "gpu": "H100",
        "torch": "2", "status": status, "test_error": test, "train_error": train, "iteration": 64000,
        "train_s": 1.0, "img_per_s": 1.0, "params": 1} for i, (m, test, train, status) in enumerate(rows)])


def test_verdict_rule_on_paper_runs():
    runs = fake_runs([("resnet20", 8.95, 1, "done"),  # +0.20 -> reproduced
                      ("resnet32", 8.51, 1, "done"),  # +1.00 -> close
                      ("resnet44", 9.17, 1, "done"),  # +2.00 -> not reproduced
                      ("resnet56", 6.00, 1, "done"), ("resnet56", math.nan, math.nan, "diverged"),
                      ("resnet110", 6.90, 1, "done"), ("resnet110", 7.00, 1, "done"),  # best 6.90: +0.47
                      ], options={"resnet110": {"warmup": True}})
    diff = diff_table(load_experiment("table6"), runs).set_index(["row", "metric"])["verdict"]
    assert diff[("resnet20", "error")] == "reproduced"
    assert diff[("resnet32", "error")] == "close"
    assert diff[("resnet44", "error")] == "not reproduced"
    assert diff[("resnet110", "error")] == "reproduced"
    assert diff[("resnet1202", "error")] == "not run"
    lines = diff_table(load_experiment("table6"), runs).set_index(["row", "metric"])
    assert "1 diverged run(s) excluded" in lines.loc[("resnet56", "error"), "note"]
    assert lines.loc[("resnet56", "error"), "n"] == 1


def test_runs_on_different_data_are_not_averaged_and_code_versions_are_named():
    runs = fake_runs([("resnet20", 8.0, 1, "done"), ("resnet20", 9.0, 1, "done"), ("resnet32", 7.5, 1, "done"),
                      ("resnet32", 7.6, 1, "done")])
    runs.loc[1, "data_variant"] = "cifar10-jpeg-q75"
    runs.loc[3, ["git_commit", "git_dirty"]] = ["def4567890", True]
    lines = diff_table(load_experiment("table6"), runs).set_index("row").query("metric == 'error'")
    assert lines.loc["resnet20", "verdict"] == "not run" and math.isnan(lines.loc["resnet20", "ours_mean"])
    assert "cifar10-jpeg-q75 x1" in lines.loc["resnet20", "note"] and "not averaged" in lines.loc["resnet20", "note"]
    assert lines.loc["resnet32", "n"] == 2
    assert "2 code versions: abc, def45678+dirty" in lines.loc["resnet32", "note"]


def test_mean_within_two_paper_stds_is_reproduced_and_lower_bounds_are_bounds():
    runs = fake_runs([("resnet110", 7.00, 1, "done"), ("resnet110", 6.80, 1, "done")],
                     options={"resnet110": {"warmup": True}})  # best +0.37
    runs_far = fake_runs([("resnet110", 7.40, 1, "done"), ("resnet110", 7.30, 1, "done")],
                         options={"resnet110": {"warmup": True}})  # best +0.87, mean 7.35 > 6.61 + 0.32
    exp = load_experiment("table6")
    assert diff_table(exp, runs).set_index(["row", "metric"]).loc[("resnet110", "error"), "verdict"] == "reproduced"
    assert diff_table(exp, runs_far).set_index(["row", "metric"]).loc[("resnet110", "error"), "verdict"] == "close"
    bound = diff_table(load_experiment("figure6"), fake_runs([("plain110", 75.0, 74, "done")]))
    assert bound.set_index("row").loc["plain110", "verdict"] == "reproduced"
    bound = diff_table(load_experiment("figure6"), fake_runs([("plain110", 12.0, 5, "done")]))
    assert bound.set_index("row").loc["plain110", "verdict"] == "not reproduced"


def test_claims_pass_and_fail_on_the_evidence():
    degraded = fake_runs([("plain20", 9, 4.0, "done"), ("plain56", 12, 7.0, "done")])
    healthy = fake_runs([("plain20", 9, 7.0, "done"), ("plain56", 8, 3.0, "done")])
    exp = load_experiment("figure1")
    assert check_claims(exp, degraded, pd.DataFrame())["status"].tolist() == ["pass"]
    assert check_claims(exp, healthy, pd.DataFrame())["status"].tolist() == ["fail"]
    assert check_claims(exp, fake_runs([("plain20", 9, 4, "done")]), pd.DataFrame())["status"].tolist() == ["not run"]

    runs = fake_runs([("plain20", 9, 4, "done"), ("resnet20", 8, 3, "done"), ("resnet56", 7, 2, "done")])
    responses = pd.DataFrame([{"run": "plain20-0", "model": "plain20", "layer": 1, "std": 2.0},
                              {"run": "resnet20-1", "model": "resnet20", "layer": 1, "std": 1.0},
                              {"run": "resnet56-2", "model": "resnet56", "layer": 1, "std": 0.5}])
    claims = check_claims(load_experiment("figure7"), runs, responses).set_index("claim")["status"]
    assert claims.to_dict() == {"resnet_responses_smaller": "pass", "deeper_resnet_responses_smaller": "pass"}
    responses.loc[2, "std"] = 1.5
    claims = check_claims(load_experiment("figure7"), runs, responses).set_index("claim")["status"]
    assert claims["deeper_resnet_responses_smaller"] == "fail"


def test_notebooks_are_committed_without_outputs():
    from resbench.report.build import ANALYSIS_DIR

    for path in ANALYSIS_DIR.glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        assert all(not c.get("outputs") and not c.get("execution_count") for c in cells if c["cell_type"] == "code")
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), path.name


@pytest.mark.skipif(not __import__("shutil").which("chromium"), reason="Debian's chromium is not installed")
def test_html_report_renders_in_a_headless_browser(smoke_runs, tmp_path):
    import subprocess

    import numpy as np
    from PIL import Image

    from resbench.results import PACKAGE_DIR

    out = build_report("figure1", smoke_runs, tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run([str(PACKAGE_DIR.parent / "scripts" / "screenshot_report.sh"), str(out / "figure1.html"),
                    str(shot)], check=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[0] > 1000 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # not a blank page


def test_cli_report_needs_a_target_and_a_known_name(tmp_path):
    import subprocess
    import sys

    for args, message in ((["report"], "--table N"), (["report", "--table", "9"], "unknown experiment")):
        proc = subprocess.run([sys.executable, "-m", "resbench", *args, "--out", str(tmp_path)],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_table5_ensemble_row_says_how_to_measure_it_and_that_it_was_not_run():
    diff = diff_table(load_experiment("table5"), pd.DataFrame()).set_index("row")
    ours = diff.loc["resnet_ilsvrc15"]
    assert ours.verdict == "not run" and math.isnan(ours.ours_mean)
    assert "resbench ensemble" in ours.note and "No ImageNet run was made" in ours.note
    assert "not a model resbench trains" in diff.loc["vgg_ilsvrc14"].note


def _table6_diff(ours: dict[str, list[float]]) -> pd.DataFrame:
    """Table 6's diff as if our runs of each model had these test errors."""
    exp = load_experiment("table6")
    runs = pd.DataFrame([{"run": f"{m}-{i}", "model": m, "options": json.dumps(exp.row(m).options, sort_keys=True),
                          "preset": "paper", "status": "done", "test_error": e, "data_variant": "cifar10-jpeg-q75",
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
