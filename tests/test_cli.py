import json
from pathlib import Path

from typer.testing import CliRunner

from conftest import one_line_error

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
    assert "6n+2" in one_line_error(["flops", "resnet21"])


def test_list_shows_every_experiment():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in ("table1", "table6", "figure7"):
        assert name in result.stdout


def test_status_at_80_columns_keeps_each_run_name_on_one_line_and_shows_no_empty_column():
    runs = Path(__file__).resolve().parents[1] / "reports" / "runs"
    result = runner.invoke(app, ["status", "--runs", str(runs)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert all(d.name in result.stdout for d in runs.iterdir() if d.is_dir())
    assert "ETA" not in result.stdout and "fused with" not in result.stdout  # every run is done, none fused
    assert max(map(len, result.stdout.splitlines())) <= 80


def run_args(jpeg_root: Path, tmp_path: Path, *args: str) -> list[str]:
    return ["run", "table6", "--preset", "smoke", "--data-root", str(jpeg_root), "--runs", str(tmp_path / "runs"),
            *args]


def test_a_recipe_value_of_the_wrong_type_is_a_one_line_error_naming_the_key_and_its_type(jpeg_root, tmp_path):
    for setting, said in (("lr=abc", "lr takes a number, got 'abc'"), ("iterations=1.5", "iterations takes a whole"),
                          ('milestones=[1,"x"]', "milestones takes a list of whole numbers"),
                          ("test_subset=abc", "test_subset takes a whole number or null")):
        assert said in one_line_error(run_args(jpeg_root, tmp_path, "--device", "cpu", "--set", setting))
    assert not (tmp_path / "runs").exists()


def test_an_unknown_device_is_refused_before_any_run_folder_is_made(jpeg_root, tmp_path):
    said = one_line_error(run_args(jpeg_root, tmp_path, "--models", "resnet20", "--device", "tpu"))
    assert "unknown device 'tpu'" in said and "cuda:N" in said
    assert not (tmp_path / "runs").exists()


def test_empty_model_names_are_refused_not_read_as_every_row(jpeg_root, tmp_path):
    for models in (",", "", "resnet20,,plain20", " , "):
        said = one_line_error(run_args(jpeg_root, tmp_path, "--models", models, "--device", "cpu"))
        assert "--models" in said and "empty" in said
    assert not (tmp_path / "runs").exists()


def test_status_of_a_missing_folder_or_of_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a results folder")
    assert "no results folder" in one_line_error(["status", "--runs", str(tmp_path / "missing")])
    assert "is a file, not a results folder" in one_line_error(["status", "--runs", str(tmp_path / "notes.txt")])
    result = runner.invoke(app, ["status", "--runs", str(tmp_path)])  # a folder with no run in it yet: said, exit 0
    assert result.exit_code == 0 and "no runs in" in result.output


def test_the_results_folder_is_runs_everywhere_and_the_old_out_still_works_with_a_note(tmp_path):
    for command in ("run", "status", "calibrate"):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
        assert "--runs" in shown and "--out" not in shown, command
    old = runner.invoke(app, ["status", "--out", str(tmp_path)])
    assert old.exit_code == 0 and "no runs in" in old.stdout
    assert old.stderr.strip() == "note: --out is now --runs (the results folder); --out will go in a later version"
    assert "the old name of --runs" in one_line_error(["status", "--runs", str(tmp_path), "--out", str(tmp_path)])


def test_options_that_cannot_go_together_are_one_line_errors_before_the_data_is_looked_for(tmp_path):
    for args, said in ((["--launcher", "cloud"], "unknown launcher 'cloud'"),
                       (["--launcher", "inline", "--jobs", "2"], "--launcher inline trains one run at a time"),
                       (["--pack", "0"], "--pack takes a number of runs"),
                       (["--pack", "2", "--jobs", "2"], "--pack trains its runs in this process"),
                       (["--fuse", "2", "--deadline", "1h"], "does not combine with --fuse"),
                       (["--decode", "gpu"], "--decode takes auto, device, workers")):
        assert said in one_line_error(["run", "table6", "--device", "cpu", "--data-root", str(tmp_path / "none"),
                                       "--runs", str(tmp_path / "runs"), *args])
    assert not (tmp_path / "runs").exists()
