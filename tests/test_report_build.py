"""Reports never destroy evidence: no runs, another runs folder's report, stale files of a build before."""
from pathlib import Path

import pytest

from conftest import one_line_error
from resbench.report.build import ReportError, build_reports, reports_folder
from resbench.report.folder import read_report
from resbench.runs.rundir import MetricsLog, write_config, write_summary


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("runs", ["empty", "missing"])
def test_no_runs_is_one_line_a_nonzero_exit_and_nothing_written(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "reports"
    (out / "table6").mkdir(parents=True)
    (out / "table6" / "README.md").write_text("the committed evidence")
    before = files(out)
    said = one_line_error(["report", "--table", "6", "--runs", str(tmp_path / runs), "--out", str(out)])
    assert "no runs in" in said and "nothing written" in said and files(out) == before


def test_a_name_is_checked_before_the_runs_are_looked_for(tmp_path):
    said = one_line_error(["report", "--figure", "99", "--runs", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert "unknown experiment" in said and "no runs" not in said


def test_a_report_of_one_runs_folder_is_not_rebuilt_from_another_unless_replaced(tmp_path):
    """Table 1 is computed (no runs read), so this costs one kernel per build."""
    mine, theirs, out = tmp_path / "mine", tmp_path / "theirs", tmp_path / "reports"
    mine.mkdir(), theirs.mkdir()
    build_reports(["table1"], mine, out)
    assert read_report(out / "table1")["runs_folder"] == "../mine"
    (out / "table1" / "stale.csv").write_text("from a build before")
    with pytest.raises(ReportError, match="is the report of .*mine/, not of .*theirs/: write yours elsewhere"):
        build_reports(["table1"], theirs, out)
    assert (out / "table1" / "stale.csv").exists()  # refused: nothing touched
    build_reports(["table1"], theirs, out, replace=True)
    assert read_report(out / "table1")["runs_folder"] == "../theirs"
    assert not (out / "table1" / "stale.csv").exists()  # the new build replaced the folder whole
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no building folder left


def write_run(folder: Path, losses: list[float], test: list[tuple[float, float]], error: float) -> None:
    folder.mkdir(parents=True)
    records = [{"iter": 100 * (i + 1), "record": "train", "loss": v} for i, v in enumerate(losses)]
    records += [{"iter": 1000 * (i + 1), "record": "test", "loss": l, "error": e} for i, (l, e) in enumerate(test)]
    for record in records:
        MetricsLog(folder).append(record)
    write_summary(folder, {"status": "done", "test_error": error})


def test_a_repeat_of_a_run_is_compared_with_it_loss_by_loss(tmp_path):
    from resbench.report.index import repeated
    from resbench.report.runs import load_repeats

    write_run(tmp_path / "r-s0", [2.0, 1.5, 1.25], [(0.9, 30.0), (0.5, 12.0)], 12.0)
    write_run(tmp_path / "r-s0" / "repeats" / "again", [2.0, 1.5, 1.2500001], [(0.9, 30.0), (0.50004, 12.0)], 12.0)
    write_config(tmp_path / "r-s0", {})
    line = load_repeats(tmp_path).iloc[0]
    assert (line.train_points, line.train_identical, line.test_points, line.test_error_identical) == (3, 2, 2, 2)
    assert abs(line.max_test_loss_diff - 4e-5) < 1e-9
    assert "2 of 3 logged training losses identical" in repeated(tmp_path)[0]


def test_the_committed_repeat_of_resnet20_s0_on_a_second_h200_trained_bit_for_bit_alike():
    """What README and reports/README.md say of the two GPU machines, read from the committed files."""
    runs = Path(__file__).resolve().parents[1] / "reports" / "runs"
    from resbench.report.runs import load_repeats

    line = load_repeats(runs).set_index("run").loc["resnet20-paper-3310c7e758-s0"]
    assert line.train_points == line.train_identical == 640 and line.test_error == line.repeat_test_error == 11.85


def test_reports_of_other_runs_go_beside_those_runs_never_into_the_committed_reports(tmp_path, monkeypatch):
    """`report --index --runs EMPTY` and a report of your own runs, without --out: the folder here named
    reports/ (the committed evidence's, in a checkout) is left byte for byte; they land in <runs>/reports/."""
    from typer.testing import CliRunner

    from resbench.cli.main import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "README.md").write_text("the committed index")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["report", "--index", "--runs", "empty"])
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "reports") == {"README.md": b"the committed index"}
    assert "No report is built here yet" in (tmp_path / "empty" / "reports" / "README.md").read_text()
    assert "--runs folder" in CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"}).stdout
    assert reports_folder("my-runs", None) == Path("my-runs") / "reports"  # what build_reports(out=None) takes


def read_only(folder: Path, monkeypatch) -> None:
    """A folder this process may not write in. As root the OS would let it, so make its mkdir refuse as the OS
    refuses a user (the reports folder is made, or found, with mkdir before anything is written in it)."""
    import errno
    import os

    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        mkdir = Path.mkdir

        def refused(self, *args, **kwargs):
            if self.resolve().is_relative_to(folder.resolve()):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return mkdir(self, *args, **kwargs)
        monkeypatch.setattr(Path, "mkdir", refused)


def test_reports_into_a_read_only_folder_are_a_one_line_error(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from resbench.cli.main import app

    read_only(tmp_path / "locked", monkeypatch)
    (tmp_path / "runs").mkdir()
    for what in (["--index"], ["--table", "1"]):  # Table 1 is computed: refused before its kernel starts
        result = CliRunner().invoke(app, ["report", *what, "--runs", str(tmp_path / "runs"), "--out",
                                          str(tmp_path / "locked" / "reports")], env={"COLUMNS": "300"})
        assert result.exit_code == 2, (what, result.output, result.exception)
        assert result.stderr.startswith("error: cannot write reports to") and "Permission denied" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not any((tmp_path / "locked").iterdir())
