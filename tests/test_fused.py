"""Fused multi-run training (resbench.train.fused) against the same runs trained one by one, in fp32 on CPU.

Bitwise equality is not to be had: a vmapped convolution runs as one grouped convolution over
the runs, whose kernels sum in another order than a run's own convolution. After one step the
fused and unfused weights agree to fp32 rounding (~1e-7); training at lr 0.1 on 16-image BN
groups then amplifies rounding, so longer runs are compared by their loss curves.
"""

import pytest
import torch

from resbench.data.cifar import CifarData
from resbench.train.engine import Engine
from resbench.train.fused import train_fused
from resbench.train.loop import CifarRun, train_cifar
from resbench.paper.recipes import CifarRecipe
from resbench.runs.rundir import read_metrics

from conftest import make_images

CPU = Engine(device="cpu", precision="fp32", compile=False, deterministic=True)
ROUNDING = dict(rtol=0, atol=1e-6)  # fp32 rounding of weights, momentum and BN statistics after a step


def recipe(**kw) -> CifarRecipe:
    base = dict(batch_size=32, iterations=24, milestones=(16, 20), log_every=4, eval_every=8, checkpoint_every=8)
    return CifarRecipe(**{**base, **kw}).validate()


def checkpoint(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)


def losses(run_dir, record="train"):
    return [r["loss"] if "loss" in r else r["error"] for r in read_metrics(run_dir, record)]


def assert_same_state(a, b, **tol):
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, **tol, msg=name)
    for i, state in a["optimizer"]["state"].items():
        torch.testing.assert_close(b["optimizer"]["state"][i]["momentum_buffer"], state["momentum_buffer"], **tol)


def unfused_and_fused(data, tmp_path, seeds, **kw):
    runs = [CifarRun("resnet8", recipe(**kw), seed) for seed in seeds]
    alone = [train_cifar(run, data, tmp_path / f"alone-{run.seed}", CPU, progress=False) for run in runs]
    fused = train_fused(runs, data, [tmp_path / f"fused-{run.seed}" for run in runs], CPU, progress=False)
    return runs, alone, fused


def test_one_step_of_three_fused_runs_is_three_runs_steps(tiny_data, tmp_path):
    """Loss, gradients (momentum after the first step is grad + wd * w), weights and BN running stats;
    for a group of three and a group of one, which is not bitwise either (see the module docstring)."""
    runs, alone, fused = unfused_and_fused(tiny_data, tmp_path, (0, 1, 2), iterations=1, milestones=(),
                                           log_every=1, eval_every=1, checkpoint_every=1)
    train_fused(runs[:1], tiny_data, [tmp_path / "one-0"], CPU, progress=False)
    for seed, fused_dir in ((0, "fused-0"), (1, "fused-1"), (2, "fused-2"), (0, "one-0")):
        a, b = checkpoint(tmp_path / f"alone-{seed}"), checkpoint(tmp_path / fused_dir)
        assert_same_state(a, b, **ROUNDING)
        assert losses(tmp_path / fused_dir) == pytest.approx(losses(tmp_path / f"alone-{seed}"), abs=1e-6)
    assert [s["iteration"] for s in fused] == [1, 1, 1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Seeds 0, 1, 2 of recipe() trained alone (alone-<seed>) and as one fused group (fused-<seed>), once for the
    tests that compare with them; (runs, summaries alone, summaries fused, folder)."""
    data = CifarData(*make_images(320, seed=0), *make_images(100, seed=1), "synthetic", "generated in tests")
    folder = tmp_path_factory.mktemp("reference")
    return (*unfused_and_fused(data, folder, (0, 1, 2)), folder)


def test_a_fused_group_of_one_and_of_three_follow_their_unfused_runs(tiny_data, reference, tmp_path):
    runs, alone, fused, folder = reference
    (one,) = train_fused(runs[:1], tiny_data, [tmp_path / "one"], CPU, progress=False)
    for seed, a, b in zip((0, 1, 2), alone, fused):
        assert losses(folder / f"fused-{seed}") == pytest.approx(losses(folder / f"alone-{seed}"), abs=5e-3)
        assert b["status"] == "done" and b["iteration"] == a["iteration"] == 24
        assert b["fused_with"] == [f"fused-{s}" for s in (0, 1, 2) if s != seed]
    assert losses(tmp_path / "one") == pytest.approx(losses(folder / "alone-0"), abs=5e-3)
    assert "fused_with" not in one  # a group of one is a run alone
    for name in ("env.json", "metrics.jsonl", "responses.json", "summary.json", "checkpoint.pt"):
        assert (folder / "fused-1" / name).exists(), name


def test_each_run_keeps_its_own_data_order(tiny_data, tmp_path, monkeypatch):
    from resbench.data.pipeline import DeviceLoader

    seen: dict[str, list] = {"alone": [], "fused": []}
    real = DeviceLoader.batch

    def spy(self, iteration):
        x, y = real(self, iteration)
        seen[mode].append((self.seed, iteration, y.tolist(), float(x.sum())))
        return x, y
    monkeypatch.setattr(DeviceLoader, "batch", spy)
    runs = [CifarRun("resnet8", recipe(iterations=6), seed) for seed in (3, 4)]
    mode = "alone"
    for run in runs:
        train_cifar(run, tiny_data, tmp_path / f"a{run.seed}", CPU, progress=False)
    mode = "fused"
    train_fused(runs, tiny_data, [tmp_path / f"f{r.seed}" for r in runs], CPU, progress=False)
    assert sorted(seen["fused"]) == sorted(seen["alone"]) and len(seen["fused"]) == 12


def test_warmup_ends_at_each_runs_own_iteration(tiny_data, tmp_path):
    kw = dict(iterations=40, milestones=(), warmup=True, warmup_until=75.0, warmup_window=2, log_every=2)
    _, alone, fused = unfused_and_fused(tiny_data, tmp_path, (0, 1, 2, 3), **kw)
    ended = [s["warmup_ended_at"] for s in alone]
    assert [s["warmup_ended_at"] for s in fused] == ended
    assert len(set(ended)) > 1, ended  # the runs left the warm-up at different iterations
    for seed, end in zip((0, 1, 2, 3), ended):
        lrs = [r["lr"] for r in read_metrics(tmp_path / f"fused-{seed}")
               if r["record"] == "train"]
        assert lrs == [0.01 if it <= end else 0.1 for it in range(2, 41, 2)]


@pytest.mark.parametrize("first, then", [("fused", "alone"), ("alone", "fused")])
def test_a_paused_run_resumes_the_other_way(tiny_data, reference, tmp_path, first, then):
    """A fused group's checkpoints resume unfused and the other way round, where the run left off."""
    runs = [CifarRun("resnet8", recipe(), seed) for seed in (0, 1)]
    dirs = [tmp_path / f"s{r.seed}" for r in runs]
    train = {"fused": lambda limit: train_fused(runs, tiny_data, dirs, CPU, progress=False, time_limit_s=limit),
             "alone": lambda limit: [train_cifar(r, tiny_data, d, CPU, progress=False, time_limit_s=limit)
                                     for r, d in zip(runs, dirs)]}
    paused = train[first](0.0)  # stops after the first step, between two training records
    assert [s["status"] for s in paused] == ["paused", "paused"] and paused[0]["iteration"] == 1
    done = train[then](None)
    assert [s["status"] for s in done] == ["done", "done"] and [s["iteration"] for s in done] == [24, 24]
    for run, d in zip(runs, dirs):
        straight = reference[3] / f"alone-{run.seed}"  # the same run, trained alone without a pause
        assert losses(d) == pytest.approx(losses(straight), abs=5e-3)
        assert [r["event"] for r in read_metrics(d) if "event" in r] == ["resumed"]


def test_a_run_that_diverges_leaves_the_group_and_the_others_go_on_unchanged(tiny_data, reference, tmp_path,
                                                                            monkeypatch):
    from resbench.train import fused as fusion

    runs, clean = reference[0], reference[3]  # clean: the group fused-<seed>, trained without the NaN
    sgd, calls = fusion.Stack.sgd, []

    def poison_seed1_at_step_6(self, grads, lr):
        sgd(self, grads, lr)
        calls.append(1)
        if len(calls) == 6:
            with torch.no_grad():
                next(iter(self.params.values()))[1].fill_(float("nan"))
    monkeypatch.setattr(fusion.Stack, "sgd", poison_seed1_at_step_6)
    summaries = train_fused(runs, tiny_data, [tmp_path / f"nan-{r.seed}" for r in runs], CPU, progress=False)
    assert [s["status"] for s in summaries] == ["done", "diverged", "done"]
    assert summaries[1]["iteration"] == 8 and "nan" in summaries[1]["reason"]
    for seed in (0, 2):  # bitwise while the NaN run is still in the group (iterations 4, 8): nothing leaks;
        # after it leaves, a group of two runs other kernels than a group of three: rounding only
        nan, ok = losses(tmp_path / f"nan-{seed}"), losses(clean / f"fused-{seed}")
        assert nan[:2] == ok[:2] and nan[2:] == pytest.approx(ok[2:], abs=5e-3)
        assert losses(tmp_path / f"nan-{seed}", "test") == pytest.approx(losses(clean / f"fused-{seed}", "test"),
                                                                         abs=2.0)  # % of 100 test images


def test_one_forward_over_the_bn_halves_computes_what_a_forward_per_half_does():
    """resbench.train.splits: the paper's two BN halves as one vmapped forward, running statistics folded
    as if the halves had run one after another: logits, gradients and BN buffers, to fp32 rounding."""
    import copy

    import torch.nn.functional as F

    from resbench.models import build_model
    from resbench.train.splits import bn_momenta, forward_parts

    torch.manual_seed(0)
    net, x, y = build_model("resnet8"), torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))

    def step(one: bool):
        m = copy.deepcopy(net)
        if one:
            logits = forward_parts(m, dict(m.named_parameters()), dict(m.named_buffers()), x, 2, bn_momenta(m))
        else:
            logits = torch.cat([m(part) for part in x.chunk(2)])
        F.cross_entropy(logits, y).backward()
        return logits, {n: p.grad for n, p in m.named_parameters()}, dict(m.named_buffers())

    (loop_logits, loop_grads, loop_buffers), (logits, grads, buffers) = step(False), step(True)
    torch.testing.assert_close(logits, loop_logits, rtol=0, atol=1e-6)
    for name in grads:
        torch.testing.assert_close(grads[name], loop_grads[name], rtol=0, atol=1e-6, msg=name)
    for name in buffers:  # running mean and var; num_batches_tracked 2: one update per half
        torch.testing.assert_close(buffers[name], loop_buffers[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_with_one_forward_matches_a_forward_per_half(tiny_data, tmp_path, fused):
    """Engine.one_forward in a training step, alone and fused. On the pipeline's images the CPU's conv
    kernels round the two shapes (a batch of 16, a vmapped pair of 16) up to 5e-5 apart in the stem's
    gradient, so weights and momentum are compared to 2e-4."""
    from dataclasses import replace

    runs = [CifarRun("resnet8", recipe(iterations=1, milestones=(), log_every=1, eval_every=1, checkpoint_every=1),
                     seed) for seed in (0, 1)]
    for name, engine in (("loop", CPU), ("one", replace(CPU, one_forward=True))):
        dirs = [tmp_path / f"{name}-{r.seed}" for r in runs]
        if fused:
            train_fused(runs, tiny_data, dirs, engine, progress=False)
        else:
            for run, d in zip(runs, dirs):
                train_cifar(run, tiny_data, d, engine, progress=False)
    for seed in (0, 1):
        loop, one = checkpoint(tmp_path / f"loop-{seed}"), checkpoint(tmp_path / f"one-{seed}")
        assert_same_state(loop, one, rtol=0, atol=2e-4)
        assert one["model"]["stem.1.num_batches_tracked"] == 2  # one update per half, as the loop counts
        assert losses(tmp_path / f"one-{seed}") == pytest.approx(losses(tmp_path / f"loop-{seed}"), abs=1e-5)


def test_fusing_in_fp32_on_cuda_is_refused_in_one_line_and_auto_does_not_fuse_there(monkeypatch):
    """The H200 crashed in vmap's batch norm in fp32 (channels_last); fusing there is refused before any work."""
    from resbench.sweep.jobs import resolve_fuse
    from resbench.train.fused import fusable

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda_fp32, cuda_bf16 = Engine(device="cuda", precision="fp32"), Engine(device="cuda", precision="bf16")
    assert "pack them" in fusable(cuda_fp32) and fusable(cuda_bf16) is None and fusable(CPU) is None
    assert resolve_fuse("auto", cuda_fp32) == 1
    with pytest.raises(ValueError, match="cannot train in fp32 on CUDA"):
        resolve_fuse(3, cuda_fp32)
