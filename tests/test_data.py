import pytest
import torch
import torch.nn.functional as F

from resbench.data import DataError
from resbench.data.cifar import find_cifar10, load_cifar10, stratified_split, write_jpeg_npz
from resbench.data.pipeline import DeviceLoader, augment, epoch_plan

from conftest import make_images, write_jpeg_root, write_original_root


def reference_augment(img, mean, dx, dy, flip):
    """The paper's augmentation for one image, written the obvious way."""
    x = F.pad(img.float() / 255 - mean, (4, 4, 4, 4))
    x = x[:, dy:dy + 32, dx:dx + 32]
    return x.flip(2) if flip else x


def test_batched_augmentation_equals_per_image_reference():
    images, _ = make_images(64)
    mean = images.float().div(255).mean(0)
    plan = epoch_plan(64, seed=3, epoch=0)
    out = augment(images, mean, plan.dx, plan.dy, plan.flip)
    assert out.shape == (64, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)
    for i in range(64):
        ref = reference_augment(images[i], mean, plan.dx[i].item(), plan.dy[i].item(), plan.flip[i].item())
        torch.testing.assert_close(out[i], ref)


def test_crop_offsets_pad_with_zeros_and_flip_mirrors():
    images = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    images[:, :, :, 0] = 0  # a dark left column, to see the flip
    mean = torch.zeros(3, 32, 32)
    out = augment(images, mean, torch.tensor([0, 8]), torch.tensor([0, 8]), torch.tensor([False, True]))
    # offset (0, 0): the top-left 4x4 is padding (zeros); offset (8, 8) + flip: the bottom-left is
    assert not out[0, :, :4, :4].any() and not out[1, :, -4:, :4].any()
    assert out[0, 0, 10, 4] == 0 and out[1, 0, 10, 4 + 23 - 8 - 4] != 0  # dark column moved
    assert torch.equal(out[1, :, :24, 4:], out[1, :, :24, 4:])


def test_mean_is_subtracted_per_pixel():
    images, labels = make_images(40)
    loader = DeviceLoader(images, labels, batch_size=8, seed=0)
    assert loader.mean.shape == (3, 32, 32)
    torch.testing.assert_close(loader.mean, images.float().div(255).mean(0))
    x, _ = next(loader.eval_batches(images, labels, batch_size=40))
    torch.testing.assert_close(x.mean(0), torch.zeros(3, 32, 32), atol=1e-5, rtol=0)


def test_epochs_are_seeded_permutations():
    a, b, c = epoch_plan(100, 0, 0), epoch_plan(100, 0, 0), epoch_plan(100, 0, 1)
    assert torch.equal(a.order, b.order) and not torch.equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(100))
    assert a.dx.min() >= 0 and a.dx.max() <= 8


def test_batches_cover_an_epoch_then_reshuffle():
    images, labels = make_images(40)
    loader = DeviceLoader(images, labels, batch_size=8, seed=0)
    assert loader.steps_per_epoch == 5
    seen = torch.cat([loader.batch(i)[1] for i in range(5)])
    assert sorted(seen.tolist()) == sorted(labels.tolist())


def test_stratified_split_is_balanced_and_disjoint():
    labels = torch.arange(1000) // 100  # sorted by class, like the JPEG archive
    train, val = stratified_split(labels, 100, seed=0)
    assert labels[val].bincount().tolist() == [10] * 10
    assert len(set(train.tolist()) & set(val.tolist())) == 0 and len(train) + len(val) == 1000


def test_reads_the_jpeg_archive_format(tmp_path):
    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    for name, n in (("train.npz", 30), ("test.npz", 20)):
        images, labels = make_images(n)
        write_jpeg_npz(folder / name, images, labels)
    data = load_cifar10(tmp_path)
    assert data.train_x.shape == (30, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.variant == "cifar10-jpeg-q75" and len(data.sha256["train.npz"]) == 64
    # lossy, but each image keeps its average brightness
    per_image = lambda x: x.float().mean((1, 2, 3))  # noqa: E731
    assert (per_image(data.train_x) - per_image(make_images(30)[0])).abs().max() < 2


def test_reads_the_original_python_batches(tmp_path):
    data = load_cifar10(write_original_root(tmp_path, 10))
    assert data.variant == "cifar10-original" and len(data.train_y) == 50
    assert torch.equal(data.test_x, make_images(10)[0])


@pytest.fixture
def no_default_data(tmp_path, monkeypatch):
    """A working directory and cache without CIFAR-10 (as in a fresh clone), RESBENCH_DATA unset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESBENCH_DATA", raising=False)
    monkeypatch.setenv("RESBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_the_original_wins_over_the_jpeg_wherever_both_are_found(no_default_data, monkeypatch):
    jpeg = write_jpeg_root(no_default_data / "jpeg", 10)
    monkeypatch.setenv("RESBENCH_DATA", str(jpeg))  # found first, but re-encoded
    assert find_cifar10() == ("cifar10-jpeg", jpeg / "cifar10-jpeg")
    original = write_original_root(no_default_data / "cache" / "data")  # where `resbench data fetch` puts it
    assert find_cifar10() == ("cifar-10-batches-py", original / "cifar-10-batches-py")
    assert find_cifar10(jpeg) == ("cifar10-jpeg", jpeg / "cifar10-jpeg")  # a root named with --data-root is kept


def test_a_partial_batches_folder_is_no_data_and_a_one_line_error(no_default_data):
    folder = write_original_root(no_default_data / "data") / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    write_jpeg_root(no_default_data / "cache" / "data", 10)  # not silently used instead
    with pytest.raises(DataError, match="data_batch_3 missing.*resbench data fetch") as err:
        find_cifar10()
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="data_batch_3 missing"):
        find_cifar10(folder)


def test_missing_data_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESBENCH_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("resbench.data.cifar.candidate_roots",
                        lambda root=None: [tmp_path / "nowhere", tmp_path / "data"])
    with pytest.raises(DataError, match="not found.*--data-root"):
        find_cifar10()


def test_corrupt_archive_is_a_one_line_error(tmp_path):
    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    images, labels = make_images(10)
    write_jpeg_npz(folder / "train.npz", images, labels)
    (folder / "test.npz").write_bytes((folder / "train.npz").read_bytes()[:500])  # truncated
    with pytest.raises(DataError, match="test.npz is corrupt or truncated") as err:
        load_cifar10(tmp_path)
    assert "\n" not in str(err.value)


def test_real_shared_cifar10_is_found_and_intact(shared_dir):
    data = load_cifar10(shared_dir / "data")
    assert data.train_x.shape == (50_000, 3, 32, 32) and data.test_x.shape == (10_000, 3, 32, 32)
    assert data.train_y.bincount().tolist() == [5000] * 10
    assert data.sha256["test.npz"].startswith("95e2e82d")
    channel_means = data.test_x.float().div(255).mean((0, 2, 3))
    torch.testing.assert_close(channel_means, torch.tensor([0.4942, 0.4851, 0.4504]), atol=2e-3, rtol=0)


def test_finding_the_data_decodes_nothing_and_training_decodes_once_per_cache(tmp_path, monkeypatch):
    """A run's name needs only the files' hashes; the decoded pixels are kept by sha256."""
    import resbench.data.cifar as cifar

    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    for name, n in (("train.npz", 30), ("test.npz", 20)):
        write_jpeg_npz(folder / name, *make_images(n))
    monkeypatch.setenv("RESBENCH_CACHE", str(tmp_path / "cache"))
    decoded = []
    real_decode = cifar._decode_npz
    monkeypatch.setattr(cifar, "_decode_npz", lambda path: decoded.append(path.name) or real_decode(path))

    files = cifar.cifar10_files(tmp_path)
    assert files.variant == "cifar10-jpeg-q75" and files.split == "train/test" and decoded == []
    first = files.load()
    assert decoded == ["train.npz", "test.npz"] and files.load() is first  # once per process
    cached = sorted(p.name for p in (tmp_path / "cache" / "decoded").iterdir())
    assert cached == sorted(f"{files.sha256[n]}.npz" for n in ("train.npz", "test.npz"))

    again = cifar.cifar10_files(tmp_path).load()  # another process: reads the cache
    assert decoded == ["train.npz", "test.npz"]
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.test_y, first.test_y)


def test_an_unwritable_cache_only_costs_the_decoding(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    for name, n in (("train.npz", 10), ("test.npz", 10)):
        write_jpeg_npz(folder / name, *make_images(n))
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("RESBENCH_CACHE", str(tmp_path / "file"))
    assert load_cifar10(tmp_path).train_x.shape == (10, 3, 32, 32)


@pytest.mark.parametrize("args, message", [
    (["run", "table6", "--fuse", "0", "--device", "cpu"], "--fuse takes a number"),
    (["run", "table6", "--models", "nonsense"], "table6 has no rows for nonsense"),
    (["run", "table6", "--precision", "fp8", "--device", "cpu"], "precision must be"),
    (["calibrate", "nonsense:3"], "nonsense"),
])
def test_options_are_checked_before_the_data_is_looked_for(no_default_data, args, message):
    """In a fresh clone without CIFAR-10, a wrong option is named, not 'CIFAR-10 not found'."""
    from typer.testing import CliRunner

    from resbench.cli.main import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "not found" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
