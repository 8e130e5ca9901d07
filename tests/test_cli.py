import json
import subprocess
import sys

from typer.testing import CliRunner

from resbench.cli import app

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
