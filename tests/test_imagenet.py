"""ImageNet track on a generated image folder: augmentation, test protocols, DDP, resume, errors."""
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import cli, one_line_error
from resbench.host.vision import has_image_ops
from resbench.data import DataError
from resbench.data.imagenet import find_imagenet, make_synthetic
from resbench.data.imagenet_views import (MEAN_RGB, FolderLoader, Views, center_view, normalize, read_jpeg_bytes,
                                          sample_generator, ten_views, train_view)
from resbench.evaluation.imagenet import crop_scores, dense_scores, ensemble_scores, multiscale_scores, topk_wrong
from resbench.models import build_model
from resbench.train.engine import Engine
from resbench.train.imagenet import ImageNetRun, train_imagenet
from resbench.paper.recipes import imagenet_recipe
from resbench.runs.rundir import read_metrics, read_summary

CPU = Engine(device="cpu", precision="fp32", compile=False, deterministic=True)
SMALL = Views(scale_min=64, scale_max=96, crop=56, test_size=64)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return find_imagenet(make_synthetic(tmp_path_factory.mktemp("imagenet"), classes=10, per_class=8))


def test_synthetic_folder_is_found_and_marked(folder):
    assert folder.variant == "synthetic" and len(folder.classes) == 10
    assert len(folder.train) == 80 and len(folder.val) == 20


def test_train_view_shape_range_and_determinism():
    img = torch.randint(0, 256, (3, 120, 90), dtype=torch.uint8)
    views = Views()  # the paper's: shorter side 256..480, crop 224
    x = train_view(img, views, sample_generator(0, 0, 5))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    low, high = -max(MEAN_RGB) - 0.2, 1 - min(MEAN_RGB) + 0.2  # mean subtracted, small PCA colour shift
    assert low < x.min() and x.max() < high
    assert torch.equal(x, train_view(img, views, sample_generator(0, 0, 5)))
    assert not torch.equal(x, train_view(img, views, sample_generator(0, 0, 6)))


def test_train_view_flip_is_a_mirror():
    """With the same draws, the flipped and unflipped crops mirror each other."""
    img = torch.randint(0, 256, (3, 70, 70), dtype=torch.uint8)
    views = Views(scale_min=70, scale_max=70, crop=70, test_size=70, pca_std=0.0)
    crops = [train_view(img, views, sample_generator(0, 0, p)) for p in range(8)]
    flipped = [c for c in crops if not torch.equal(c, crops[0])]
    assert flipped and all(torch.allclose(c, crops[0].flip(-1)) for c in flipped)


needs_image_ops = pytest.mark.skipif(not has_image_ops(), reason="torchvision.io cannot decode with this torch "
                                     "(a CPU-only build: see resbench/host/vision.py); the GPU machine runs it")


@needs_image_ops
def test_decoding_on_the_device_gives_the_batches_the_workers_give(folder):
    """decode "device" (bytes from the workers, decoded and augmented where the model is; here
    the CPU stands in for the GPU) applies the same draws as PIL in the workers."""
    views = Views(scale_min=64, scale_max=96, crop=48, test_size=56)
    by_workers = FolderLoader(folder, views, 16, seed=3, workers=0).batches(7)
    on_device = FolderLoader(folder, views, 16, seed=3, workers=2, decode_on="cpu").batches(7)
    for _ in range(3):  # into the second epoch (5 steps per epoch)
        (x, y), (x_dev, y_dev) = next(by_workers), next(on_device)
        assert torch.equal(y, y_dev) and x_dev.shape == x.shape == (16, 3, 48, 48)
        assert torch.allclose(x, x_dev, atol=2 / 255)  # decoders may round a level apart
        assert (x - x_dev).abs().mean() < 0.5 / 255


def test_files_nvjpeg_cannot_take_are_reencoded_and_broken_ones_fail_cleanly(tmp_path):
    from PIL import Image

    rgb = torch.randint(0, 256, (40, 30, 3), dtype=torch.uint8).numpy()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.JPEG", format="JPEG")
    Image.fromarray(rgb).save(tmp_path / "png.JPEG", format="PNG")  # ImageNet has one such file
    for name in ("cmyk.JPEG", "png.JPEG"):
        encoded, size = read_jpeg_bytes(str(tmp_path / name))
        assert size == (40, 30)
        with Image.open(__import__("io").BytesIO(encoded.numpy().tobytes())) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
    (tmp_path / "broken.JPEG").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(DataError, match="broken.JPEG cannot be decoded"):
        read_jpeg_bytes(str(tmp_path / "broken.JPEG"))


def test_ten_crop_gives_ten_views_and_equals_center_on_a_constant_image():
    model = build_model("resnet18").eval()
    views = ten_views(torch.full((3, 80, 100), 128, dtype=torch.uint8), SMALL)
    assert views.shape == (10, 3, 56, 56)
    center = center_view(torch.full((3, 80, 100), 128, dtype=torch.uint8), SMALL)
    assert torch.allclose(crop_scores(model, views[None]), crop_scores(model, center[None]), atol=1e-6)


def test_ten_crop_takes_the_corners_of_the_central_square_not_of_the_rectangle():
    """AlexNet's 10-crop: resize the shorter side to test_size, take the central test_size^2
    patch, then its 4 corners, its center, and their flips. Pixels here hold their coordinates."""
    h, w, size, crop = 8, 12, 8, 4  # already at the test size: the resize changes nothing
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = torch.stack([xs, ys, torch.zeros_like(xs)]).to(torch.uint8) * 10
    views = ten_views(img, Views(scale_min=size, scale_max=size, crop=crop, test_size=size))
    left = (w - size) // 2  # the central square starts at column 2
    corners = [(0, left), (0, left + size - crop), (size - crop, left), (size - crop, left + size - crop),
               ((size - crop) // 2, left + (size - crop) // 2)]
    expected = [img[:, y:y + crop, x:x + crop] for y, x in corners]
    tl, tr, bl, br, center = expected  # the flips are the five crops of the mirrored square (torchvision's order)
    expected += [v.flip(-1) for v in (tr, tl, br, bl, center)]
    assert torch.allclose(views, torch.stack([normalize(v) for v in expected]), atol=1e-6)


def test_fully_convolutional_scores_at_224_equal_the_forward_pass():
    model = build_model("resnet18").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(dense_scores(model, x), model(x), atol=1e-4)
    scores = multiscale_scores(model, torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8), scales=(64, 96))
    assert scores.shape == (1000,) and scores.sum().item() == pytest.approx(1.0, abs=1e-4)


def test_topk_and_ensemble():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    assert topk_wrong(scores, torch.tensor([2, 0]), ks=(1, 2)) == {1: 1, 2: 0}
    assert torch.allclose(ensemble_scores([scores, scores.flip(1)])[0], torch.tensor([0.15, 0.7, 0.15]))


def smoke_run(**options) -> ImageNetRun:
    return ImageNetRun("resnet18", imagenet_recipe("smoke", **options), seed=0, preset="smoke")


@pytest.fixture(scope="module")
def smoke_whole(folder, tmp_path_factory) -> tuple[dict, Path]:
    """One uninterrupted smoke run (its summary and directory), trained once for the tests that read it."""
    run_dir = tmp_path_factory.mktemp("smoke-whole")
    return train_imagenet(smoke_run(), folder, run_dir, CPU, progress=False, workers=0), run_dir


def test_smoke_run_trains_and_tests(smoke_whole):
    summary, run_dir = smoke_whole
    assert summary["status"] == "done" and summary["iteration"] == 8
    for mode in ("center", "10crop", "multiscale"):  # tested once with every protocol
        assert 0 <= summary["tests"][mode]["top5_err"] <= summary["tests"][mode]["top1_err"] <= 100
    records = read_metrics(run_dir)
    assert [r["iter"] for r in records if r["record"] == "test"] == [4, 8]
    assert [r["lr"] for r in records if r["record"] == "train"] == [0.1, 0.1, 0.1, pytest.approx(0.01)]


def test_resume_equals_uninterrupted(folder, smoke_whole, tmp_path, monkeypatch):
    import resbench.train.imagenet as loop

    save = loop.save_checkpoint

    def save_then_die(run_dir, state):
        save(run_dir, state)
        raise KeyboardInterrupt  # killed right after the checkpoint at iteration 4

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_imagenet(smoke_run(), folder, tmp_path / "cut", CPU, progress=False, workers=0)
    monkeypatch.setattr(loop, "save_checkpoint", save)
    resumed = train_imagenet(smoke_run(), folder, tmp_path / "cut", CPU, progress=False, workers=0)
    assert resumed["iteration"] == 8
    a, b = (torch.load(d / "checkpoint.pt")["model"] for d in (smoke_whole[1], tmp_path / "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    train_imagenet(smoke_run(eval_every=100, checkpoint_every=100, iterations=4), find_imagenet(root), Path(out),
                   CPU, progress=False, workers=0)
    dist.destroy_process_group()


def test_ddp_on_two_processes_matches_one_process(folder, tmp_path):
    """Global batch 16 as 2 x 8 with BN per 8 equals one process with BN over two groups of 8."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, folder.root, str(tmp_path / "ddp")), nprocs=2, join=True)
    train_imagenet(smoke_run(eval_every=100, checkpoint_every=100, iterations=4), folder, tmp_path / "one", CPU,
                   progress=False, workers=0)
    a, b = (torch.load(tmp_path / d / "checkpoint.pt")["model"] for d in ("ddp", "one"))
    params = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4) for k in params)
    assert read_summary(tmp_path / "ddp")["processes"] == 2


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _faulty_worker(rank: int, world: int, port: int, root: str, out: str, fault: str):
    """One of two gloo processes whose group times out after 10 s; `fault` happens on one of them."""
    import datetime
    import time

    import torch.distributed as dist

    from resbench.train import distributed, imagenet

    torch.set_num_threads(1)  # two processes on a 2-core machine: oversubscribed gloo crawls
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=10))
    if fault == "nan" and rank == 1:  # only this process sees its loss become NaN
        read = imagenet.Window.read
        imagenet.Window.read = lambda self: (float("nan"), read(self)[1])
    if fault == "slow tests" and rank == 0:  # the final tests outlast the training group's timeout
        evaluate = imagenet.evaluate
        # 12 s within the final tests (10-crop is one of them; the validation at the last iteration is not),
        # once: beyond the group's 10 s wherever the others wait
        imagenet.evaluate = lambda *a, **k: (time.sleep(12 if a[4] == "10crop" else 0), evaluate(*a, **k))[1]
        distributed.LEAD_WORK_TIMEOUT = datetime.timedelta(seconds=120)
    summary = train_imagenet(smoke_run(eval_every=100, checkpoint_every=100, iterations=4, log_every=2),
                             find_imagenet(root), Path(out), CPU, progress=False, workers=0)
    Path(out, f"rank{rank}.json").write_text(json.dumps(summary))
    dist.destroy_process_group()


@pytest.mark.parametrize("fault, status", [("nan", "diverged"), ("slow tests", "done")])
def test_two_processes_stop_together_and_wait_for_the_final_tests(folder, tmp_path, fault, status):
    """A NaN on one process stops every process at the same iteration; the final tests on process 0
    may outlast the training group's timeout while the others wait for them."""
    mp.spawn(_faulty_worker, args=(2, _free_port(), folder.root, str(tmp_path), fault), nprocs=2, join=True)
    summaries = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["status"] for s in summaries] == [status, status]
    assert summaries[0]["iteration"] == summaries[1]["iteration"] == (2 if fault == "nan" else 4)


def test_missing_or_malformed_folders_fail_cleanly(tmp_path):
    with pytest.raises(DataError, match="has no train/ folder"):
        find_imagenet(tmp_path)
    (tmp_path / "train" / "n01").mkdir(parents=True)
    (tmp_path / "val" / "n01").mkdir(parents=True)
    with pytest.raises(DataError, match="train"):
        find_imagenet(tmp_path)  # no images
    (tmp_path / "train" / "n01" / "a.JPEG").write_bytes(b"not a jpeg")
    (tmp_path / "val" / "n01" / "b.JPEG").write_bytes(b"not a jpeg")
    from resbench.data.imagenet import read_image

    with pytest.raises(DataError, match="cannot be decoded"):
        read_image(str(tmp_path / "train" / "n01" / "a.JPEG"))


def test_cli_smoke_on_synthetic_images_and_a_clean_error_without_imagenet(tmp_path):
    proc = cli("run", "table2", "--preset", "smoke", "--synthetic", "--models", "resnet18", "--device", "cpu", "-q",
               "--runs", str(tmp_path))
    assert proc.exit_code == 0, proc.output
    from resbench.report.runs import load_runs

    runs = load_runs(tmp_path)
    assert runs["data_variant"].tolist() == ["synthetic"] and runs["status"].tolist() == ["done"]
    assert runs["top1_err_10crop"].notna().all() and runs["top1_err_multiscale"].notna().all()
    assert "ImageNet is needed" in one_line_error(["run", "table3", "--device", "cpu", "--runs", str(tmp_path)])


def test_bench_imagenet_measures_pipeline_models_and_end_to_end(tmp_path):
    proc = cli("bench", "imagenet", "--models", "resnet18,plain18", "--iterations", "2", "--warmup", "1",
               "--batch-size", "8", "--workers", "0", "--device", "cpu", "--images", "20", "--crop", "32",
               "--out", str(tmp_path / "b.json"))
    assert proc.exit_code == 0, proc.output
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["pipeline_img_per_s"]["workers"] > 0
    if has_image_ops():
        assert r["pipeline_img_per_s"]["device"] > 0
    else:  # a CPU-only torch: torchvision cannot decode, and the benchmark says so instead of failing
        assert r["pipeline_img_per_s"]["device"] is None and "unavailable" in proc.stdout
    assert set(r["model_img_per_s"]) == {"resnet18", "plain18"}
    assert r["end_to_end"]["model"] == "resnet18" and r["end_to_end"]["img_per_s"] > 0
    assert r["projected_hours"]["resnet18"]["8 GPUs"] == pytest.approx(r["projected_hours"]["resnet18"]["1 GPU"] / 8,
                                                                      abs=0.1)
    assert r["env"]["data"]["variant"] == "synthetic"


def test_ensemble_tests_members_as_their_runs_did_and_averages_softmax(folder, smoke_whole, tmp_path):
    from resbench.evaluation.ensemble import ensemble_of_runs

    shutil.copytree(smoke_whole[1], tmp_path / "s0")  # seed 0: the module's smoke run
    summaries = [smoke_whole[0], train_imagenet(ImageNetRun("resnet18", imagenet_recipe("smoke"), 1, "smoke"),
                                                folder, tmp_path / "s1", CPU, progress=False, workers=0)]
    for seed in (0, 1):  # ensemble_of_runs reads the config the runner writes
        config = ImageNetRun("resnet18", imagenet_recipe("smoke"), seed, "smoke").config(folder, CPU)
        (tmp_path / f"s{seed}" / "config.json").write_text(json.dumps({**config, "key": "k"}))
    both = ensemble_of_runs([tmp_path / "s0", tmp_path / "s1"], folder, CPU, "10crop", workers=0)
    assert [(m["top1_err"], m["top5_err"]) for m in both["members"]] == \
        [(s["tests"]["10crop"]["top1_err"], s["tests"]["10crop"]["top5_err"]) for s in summaries]
    alone = ensemble_of_runs([tmp_path / "s0", tmp_path / "s0"], folder, CPU, "10crop", workers=0)
    assert (alone["top1_err"], alone["top5_err"]) == \
        (summaries[0]["tests"]["10crop"]["top1_err"], summaries[0]["tests"]["10crop"]["top5_err"])
    with pytest.raises(ValueError, match="not a run directory"):
        ensemble_of_runs([tmp_path], folder, CPU, "10crop")
