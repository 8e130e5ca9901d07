"""The budget curve (fit, bootstrap, turns, validation), the pooled one-seed spread, Fig. 7's primary reading."""
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from resbench.paper.declarations import load_experiment
from resbench.report import curve
from resbench.report import stats
from resbench.report.claims import check_claims, claims_line, count_claims
from resbench.report.diff import diff_table, error_verdict

TRUTH = curve.Fit(8.0, 2.0, 0.6)  # e(1) = 10.0
BUDGETS = [1 / 32, 1 / 16, 1 / 8, 1 / 4]
COMMITTED_RUNS = Path(__file__).resolve().parents[1] / "reports" / "runs"


def synthetic(truth: curve.Fit, noise: float, seed: int, budgets=BUDGETS, seeds: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    return {b: list(truth(b) + rng.normal(0, noise, seeds)) for b in budgets}


def test_the_fit_recovers_known_parameters_from_synthetic_points():
    fit = curve.fit(synthetic(TRUTH, 0.02, seed=1))
    assert (fit.e_inf, fit.c, fit.alpha) == (pytest.approx(8.0, abs=0.3), pytest.approx(2.0, abs=0.2),
                                             pytest.approx(0.6, abs=0.03))
    assert fit(1.0) == pytest.approx(10.0, abs=0.1)
    exact = curve.fit({b: [TRUTH(b)] * 2 for b in BUDGETS[:3]})  # 3 budgets, 3 parameters: through the points
    assert exact(1.0) == pytest.approx(10.0, abs=1e-3)


def test_the_bootstrap_interval_covers_the_truth_and_is_seeded():
    covered = 0
    for k in range(10):
        c = curve.budget_curve("resnet20", "f", synthetic(TRUTH, 0.3, seed=100 + k), draws=50, seed=k)
        predicted, low, high = c.predict(1.0)
        assert low <= predicted <= high and c.failed == 0
        covered += low <= TRUTH(1.0) <= high
    assert covered >= 8  # nominal 95%; a percentile bootstrap over 3 seeds a budget runs a little narrow
    again = curve.budget_curve("resnet20", "f", synthetic(TRUTH, 0.3, seed=100), draws=80, seed=0)
    assert again.predict(1.0) == curve.budget_curve("resnet20", "f", synthetic(TRUTH, 0.3, seed=100), draws=80,
                                                    seed=0).predict(1.0)


def test_fewer_than_three_budgets_with_two_seeds_is_refused_cleanly():
    two = {1 / 32: [25.0, 25.4], 1 / 16: [19.5, 19.6], 1 / 8: [15.9]}  # the third budget has one seed
    with pytest.raises(ValueError) as refused:
        curve.fit(two)
    message = str(refused.value)
    assert "\n" not in message and "needs 3 budgets with >= 2 seeds each" in message and "1/8 (1 seed)" in message
    runs = pd.DataFrame([{"model": "resnet20", "family": "f", "budget": b, "test_error": e, "status": "done",
                          "preset": "paper"} for b, es in (("1/32", [25.0, 25.4]), ("1/16", [19.5, 19.6]))
                         for e in es])
    fitted, missing = curve.curves(runs, draws=10)
    assert fitted == [] and missing == {("resnet20", "f"): "needs 3 budgets with >= 2 seeds each; has "
                                                          "1/32 (2 seeds), 1/16 (2 seeds)"}


def test_an_ordering_is_predicted_to_turn_where_the_curves_cross():
    deep, shallow = curve.Fit(5.0, 1.0, 1.0), curve.Fit(8.0, 0.25, 1.0)  # equal at b = 1/4
    budgets = [1 / 32, 1 / 16, 1 / 8]
    low = curve.budget_curve("resnet56", "f", synthetic(deep, 0.01, 3, budgets), draws=60)
    high = curve.budget_curve("resnet20", "f", synthetic(shallow, 0.01, 4, budgets), draws=60)
    turn = curve.turn(low, high)
    assert turn["turn"] == pytest.approx(0.25, rel=0.05) and turn["turn_low"] <= turn["turn"] <= turn["turn_high"]
    assert turn["never"] == 0
    never = curve.turn(high, low)  # the other way round it never holds by b = 1
    assert math.isinf(never["turn"]) and never["never"] == 1


def test_validation_compares_the_prediction_at_the_full_recipe_with_full_recipe_runs():
    c = curve.budget_curve("resnet20", "f", synthetic(TRUTH, 0.05, 7), draws=80)
    near = curve.validate(c, [9.9, 10.1, 10.0, 9.95, 10.05], tolerance=0.5)
    assert near["outcome"] == "pass" and near["miss_low"] > -0.5 and near["miss_high"] < 0.5
    assert curve.validate(c, [12.0, 12.1, 12.05], tolerance=0.5)["outcome"] == "fail"
    wide = curve.validate(c, [11.85, 12.33], tolerance=0.5)  # two seeds: t(0.975, 1) makes it wide
    half = scipy_stats.t.ppf(0.975, 1) * np.std([11.85, 12.33], ddof=1) / math.sqrt(2)
    assert wide["outcome"] == "inconclusive" and (wide["measured_low"], wide["measured_high"]) == \
        (pytest.approx(12.09 - half), pytest.approx(12.09 + half))


def test_one_seed_is_judged_at_the_spread_pooled_over_groups_of_seeds():
    groups = [[1.0, 2.0, 3.0], [10.0, 10.5], [7.0], []]  # one value or none: not a group
    noise = stats.pooled_noise(groups)
    assert (noise.dof, noise.groups) == (3, 2) and noise.std == pytest.approx(math.sqrt((2 + 0.125) / 3))
    assert noise.half_width() == pytest.approx(scipy_stats.t.ppf(0.975, 3) * noise.std)
    assert stats.half_width(math.nan, 1, noise=noise) == noise.half_width()
    assert math.isnan(stats.half_width(math.nan, 1))  # nothing pooled: no interval for one seed


def test_the_committed_runs_pool_their_spread_and_one_seed_gets_a_t_interval_on_its_degrees_of_freedom():
    from resbench.report.runs import load_runs

    noise = stats.seed_noise(load_runs(COMMITTED_RUNS))
    assert noise.dof >= 15 and 0.5 < noise.std < 1.5  # ResNet-20/56, plain-20/56 at 1/32, 1/16 (and more)
    exp = load_experiment("table6")
    row = exp.row("resnet20")
    line = error_verdict(exp, row, "error", stats.spread([8.75 + 3.0]), noise)
    half = scipy_stats.t.ppf(0.975, noise.dof) * noise.std
    assert (line["delta_low"], line["delta_high"]) == (pytest.approx(3.0 - half), pytest.approx(3.0 + half))
    assert line["verdict"] == "not reproduced" and f"{noise.dof} degrees of freedom" in line["check"]
    alone = error_verdict(exp, row, "error", stats.spread([8.75]))  # nothing to pool from
    assert alone["verdict"] == "inconclusive" and "no spread to judge it at" in alone["check"]


def test_a_diff_pools_the_spread_from_the_runs_it_is_given():
    from test_report import fake_runs

    runs = fake_runs([("resnet20", e, 1, "done") for e in (9.0, 9.4, 9.8)] + [("resnet32", 12.0, 1, "done")])
    diff = diff_table(load_experiment("table6"), runs).query("metric == 'error'").set_index("row")
    half = scipy_stats.t.ppf(0.975, 2) * 0.4  # ResNet-20's three seeds: std 0.4 on 2 degrees of freedom
    assert diff.loc["resnet32", "delta_high"] - diff.loc["resnet32", "delta"] == pytest.approx(half)


def fig7_runs():
    from test_report import R110, fake_runs

    models = ["plain20", "resnet20", "resnet56", "resnet110"]
    runs = fake_runs([(m, 8, 1, "done") for m in models for _ in range(3)], R110)
    rows = []
    for run, model, seed in zip(runs["run"], runs["model"], runs["seed"]):
        big = {"plain20": 2.0, "resnet20": 1.0, "resnet56": 0.5, "resnet110": 0.25}[model]
        for layer in (1, 2):
            values = {r: big + 0.01 * len(rows) for r in ("channel_std", "rms", "std_train", "channel_std_train",
                                                           "rms_train")}
            values["std"] = (1.0, 1.6, 0.4)[seed]  # the primary reading: the networks do not differ
            rows.append({"run": run, "model": model, "layer": layer, "block_output": layer == 2, **values})
    return runs, pd.DataFrame(rows)


def test_fig7_judges_one_primary_reading_and_labels_the_others_exploratory():
    runs, responses = fig7_runs()
    table = check_claims(load_experiment("figure7"), runs, responses)
    primary = table[table["status"] != "exploratory"]
    assert primary["definition"].tolist() == ["std, all 3x3 layers"] * 2  # one per claim
    assert primary["status"].tolist() == ["inconclusive", "inconclusive"]  # exploratory passes change nothing
    exploratory = table[table["status"] == "exploratory"]
    assert len(exploratory) == 16 and exploratory["outcome"].tolist().count("pass") == 15
    assert exploratory["evidence"].str.startswith("exploratory, uncorrected: ").all()
    counts = count_claims(table["status"])
    assert (counts["pass"], counts["inconclusive"], counts["exploratory"]) == (0, 2, 16)
    assert claims_line(table["status"]) == "2 inconclusive, 16 exploratory"


def budget_runs(errors: dict) -> pd.DataFrame:
    """(model, family, budget) -> test errors, as load_runs gives the columns the curve reads."""
    return pd.DataFrame([{"model": m, "family": f, "budget": b, "test_error": e, "status": "done", "preset": "paper"}
                         for (m, f, b), es in errors.items() for e in es])


def test_a_report_shows_curves_turns_and_the_validation_as_extrapolations_and_says_what_is_missing():
    from resbench.report.curve_section import CurveSection

    bf16, gpu = "proxy: JPEG q75 data (bf16)", "proxy: JPEG q75 data (bf16+TF32)"
    deep, shallow = curve.Fit(5.0, 1.0, 1.0), curve.Fit(8.0, 0.25, 1.0)  # cross at b = 1/4
    errors = {("resnet56", bf16, b): [deep(float(Fraction(b))) + d for d in (-0.01, 0.01)] for b in ("1/32", "1/16", "1/8")}
    errors.update({("resnet20", bf16, b): [shallow(float(Fraction(b))) + d for d in (-0.01, 0.01)]
                   for b in ("1/32", "1/16", "1/8")})
    errors.update({("resnet20", gpu, "1"): [8.2, 8.3], ("plain20", bf16, "1/32"): [30.0, 31.0]})
    section = CurveSection.build(load_experiment("table6"), budget_runs(errors), draws=40)
    assert [c.model for c in section.curves] == ["resnet20", "resnet56"]
    table = section.table()
    assert table.filter(like="extrapolation").shape[1] == 2 and "verdict" not in " ".join(table.columns)
    turn = section.turns.set_index("ordering").loc["resnet56 < resnet20"]
    assert turn["extrapolation: turns at budget"].startswith("0.25")
    check = section.validation.set_index("network").loc["resnet20"]
    assert check["validation"] == "inconclusive" and "differ from the curve's" in check["departure"]
    from resbench.report.sections import budget_curve, markdown

    shown = budget_curve(section, "table6-curve.png")
    assert [s.title for s in shown] == ["A budget curve that predicts", "Where each ordering turns",
                                        "Validation: the prediction at the full recipe against full-recipe runs"]
    text = markdown(shown)
    assert "No curve for plain20 in `proxy: JPEG q75 data (bf16)`: needs 3 budgets" in text
    assert "![A budget curve that predicts](table6-curve.png)" in text and "extrapolations" in text


def test_a_curve_figure_saved_twice_is_the_same_bytes(tmp_path):
    """The curve's SVG was saved with its date: a report rebuilt from unchanged runs changed a file."""
    from resbench.report.curve_section import CurveSection
    from resbench.report.figures import save_figure

    bf16 = "proxy: JPEG q75 data (bf16)"
    errors = {("resnet20", bf16, b): [10.0 / float(Fraction(b)) ** 0.3 + d for d in (-0.1, 0.1)]
              for b in ("1/32", "1/16", "1/8")}
    section = CurveSection.build(load_experiment("table6"), budget_runs(errors), draws=20)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        assert save_figure(section.figure(), tmp_path / folder, "table6-curve") == "table6-curve.png"
    for file in ("table6-curve.png", "table6-curve.svg"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file

