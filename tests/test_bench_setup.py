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


@pytest.mark.parametrize("command, models, message", [
    ("cifar", "resnet9x", "unknown model 'resnet9x'"),
    ("step", ",", "--models names no network"),
    ("pack", "resnet50", "this benchmark measures CIFAR networks (e.g. resnet20, plain56); resnet50 is not one"),
    ("imagenet", "resnet56", "this benchmark measures ImageNet networks (e.g. resnet50); resnet56 is not one"),
])
def test_a_network_the_benchmark_cannot_measure_is_a_one_line_error_before_anything_is_set_up(tmp_path, command,
                                                                                                 models, message):
    # an unknown name or none was a traceback once the data was loaded; the other dataset's, not refused up front
    args = ["--images", "16", "--crop", "32"] if command == "imagenet" else ["--data-root", str(tmp_path / "nowhere")]
    result = CliRunner().invoke(app, ["bench", command, "--models", models, "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
