import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from resbench.cli.main import app

runner = CliRunner()


def test_flops_json_has_model_params_macs():
    result = runner.invoke(app, ["flops", "resnet20", "resnet50", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["model"] for r in rows] == ["resnet20", "resnet50"]
    assert rows[0]["params"] == 269_722 and rows[1]["macs"] == 3_857_973_248


def test_flops_table_shows_paper_ratio():
    result = runner.invoke(app, ["flops", "resnet34"])
    assert result.exit_code == 0
    assert "3.6 G" in result.stdout and "1.012" in result.stdout


def test_unknown_model_is_one_line_and_nonzero():
    proc = subprocess.run([sys.executable, "-m", "resbench", "flops", "resnet21"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "6n+2" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_shows_every_experiment():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("table1", "table6", "figure7"):
        assert name in result.stdout


def test_status_at_80_columns_keeps_each_run_name_on_one_line_and_shows_no_empty_column():
    runs = Path(__file__).resolve().parents[1] / "reports" / "runs"
    proc = subprocess.run([sys.executable, "-m", "resbench", "status", "--out", str(runs)], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert all(d.name in proc.stdout for d in runs.iterdir() if d.is_dir())
    assert "ETA" not in proc.stdout and "fused with" not in proc.stdout  # every run is done, none fused
    assert max(map(len, proc.stdout.splitlines())) <= 80
