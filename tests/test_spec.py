import csv

import pytest

from resbench.models import build_model
from resbench.paper.declarations import all_experiments, experiment_names, load_experiment

EXPECTED = {"table1", "table2", "table3", "table4", "table5", "table6",
            "figure1", "figure4", "figure6", "figure7"}


def test_one_declaration_per_table_and_figure():
    assert set(experiment_names()) == EXPECTED


def test_declarations_transcribe_reported_csv(shared_dir):
    """Every number of reported.csv is in a declaration, and no declaration invents one."""
    reported = {(r["table"], r["row"], r["metric"]): float(r["value"])
                for r in csv.DictReader((shared_dir / "paper" / "reported.csv").open())}
    declared = {}
    for exp in all_experiments():
        for row in exp.rows:
            for metric, value in row.paper.items():
                if metric not in ("error_mean", "error_std"):  # in reported.csv's note column
                    declared[(exp.name, row.id, metric)] = value
    assert declared == reported


def test_resnet110_declares_warmup_and_five_seeds():
    row = load_experiment("table6").row("resnet110")
    assert row.options == {"warmup": True} and row.seeds == 5
    assert row.paper["error_mean"] == 6.61 and row.paper["error_std"] == 0.16


@pytest.mark.parametrize("name", ["table6", "figure1", "figure6", "figure7"])
def test_cifar_rows_build(name):
    for row in load_experiment(name).runnable_rows:
        build_model(row.model)


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(KeyError, match="table7"):
        load_experiment("table7")
