import os
import tempfile
from pathlib import Path

import pytest

import resbench.host.vision  # noqa: F401  (before anything imports torchvision: see resbench/host/vision.py)

# decoded-data cache of this test session only (subprocesses inherit it), not the user's ~/.cache
os.environ["RESBENCH_CACHE"] = tempfile.mkdtemp(prefix="resbench-test-cache-")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def cli(*args: str, columns: int = 250):
    """`resbench ARGS` run in this process: the exit code, stdout and stderr a subprocess would give, without its
    seconds of imports (a test of what only a process shows, a signal or a second process, starts one)."""
    from typer.testing import CliRunner

    from resbench.cli.main import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})


def one_line_error(args: list[str]) -> str:
    """Runs `resbench ARGS` in this process; checks it is an error, exit 2, in one line; returns that line."""
    result = cli(*args, columns=300)
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:"), result.stderr
    return result.stderr


@pytest.fixture(autouse=True)
def no_stop_request():
    """Each test starts as a new process does: no SIGTERM of an earlier test holds (resbench.train.stop)."""
    from resbench.train import stop

    stop.reset()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (paper transcription, CIFAR-10 JPEG) is not beside this checkout")
    return SHARED


import torch

from resbench.data.cifar import CifarData


def make_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable tiny data: each class is a bright square at its own place, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 96, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c, 5)
        images[i, c % 3, 4 + 14 * r: 14 + 14 * r, 2 + 6 * q: 8 + 6 * q] = 250
    return images, labels


@pytest.fixture
def tiny_data() -> CifarData:
    train_x, train_y = make_images(320, seed=0)
    test_x, test_y = make_images(100, seed=1)
    return CifarData(train_x, train_y, test_x, test_y, "synthetic", "generated in tests")


def write_jpeg_root(root: Path, n_train: int, n_test: int = 20) -> Path:
    """A data root holding a tiny CIFAR-10 in the shared JPEG layout."""
    from resbench.data.cifar import write_jpeg_npz

    folder = root / "cifar10-jpeg"
    folder.mkdir(parents=True)
    write_jpeg_npz(folder / "train.npz", *make_images(n_train))
    write_jpeg_npz(folder / "test.npz", *make_images(n_test, seed=1))
    return root


def write_original_root(root: Path, n: int = 10) -> Path:
    """A data root holding a tiny CIFAR-10 in the original layout (cifar-10-batches-py/, pickled batches)."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images, labels = make_images(n)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images.reshape(n, -1).numpy(), b"labels": labels.tolist()}, f)
    return root


@pytest.fixture(scope="session")
def jpeg_root(tmp_path_factory) -> Path:
    """64 training images: for CLI and worker tests at the smoke preset's batch of 32."""
    return write_jpeg_root(tmp_path_factory.mktemp("data"), 64)


@pytest.fixture(scope="session")
def bench_root(tmp_path_factory) -> Path:
    """256 training images: enough for benchmarks at the paper's batch of 128."""
    return write_jpeg_root(tmp_path_factory.mktemp("bench-data"), 256, 10)


@pytest.fixture(scope="session")
def paper_counts() -> dict:
    """Every paper model's parameters and multiply-adds, counted afresh (never read from the cache) once a
    session; then kept in the session's cache, where reports (Report.build, the notebooks) read them."""
    from resbench.probes.complexity import complexity, paper_models
    from resbench.report.counts import remember

    counts = {name: complexity(name) for name in paper_models()}
    for c in counts.values():
        remember(c)
    return counts
