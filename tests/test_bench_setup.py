"""`resbench bench`'s inputs, refused in one line before a device or data is looked for (resbench/bench/setup.py
sets every benchmark up; the CLI only parses, calls and prints)."""
import pytest
from typer.testing import CliRunner

from resbench.cli.main import app


@pytest.mark.parametrize("command, option, value", [
    ("jobs", "--jobs", "0"), ("fuse", "--fuse", "1,0"), ("pack", "--sizes", "0,2"), ("jobs", "--jobs", ","),
])
def test_a_count_under_one_is_a_one_line_error_before_the_data_is_looked_for(tmp_path, command, option, value):
    # `bench jobs --jobs 0` ended in a ZeroDivisionError traceback after loading the data; `--jobs ,` measured nothing
    result = CliRunner().invoke(app, ["bench", command, option, value, "--device", "cpu",
                                      "--data-root", str(tmp_path / "nowhere")])
    assert result.exit_code == 2, result.output
    assert f"{option} takes comma-separated numbers of 1 or more, got {value!r}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

