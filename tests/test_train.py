import json

import pytest
import torch

from resbench.probes.responses import response_layers, response_stds
from resbench.models import build_model
from resbench.train.loop import CifarRun, train_cifar
from resbench.paper.recipes import CifarRecipe, cifar_recipe
from resbench.runs.rundir import read_env, read_metrics, read_responses

CPU = dict(device="cpu", precision="fp32", compile=False, deterministic=True)


def tiny_recipe(**kw) -> CifarRecipe:
    base = dict(batch_size=32, iterations=24, milestones=(16, 20), log_every=4, eval_every=8,
                checkpoint_every=8)
    return CifarRecipe(**{**base, **kw}).validate()


def records(run_dir, record):
    return read_metrics(run_dir, record)


def engine():
    from resbench.train.engine import Engine
    return Engine(**CPU)


def test_paper_schedule_divides_at_32k_and_48k_and_stops_at_64k():
    r = cifar_recipe("paper")
    assert (r.batch_size, r.momentum, r.weight_decay, r.iterations) == (128, 0.9, 1e-4, 64_000)
    assert [r.lr_at(i) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == \
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert r.lr_at(5, warming_up=True) == 0.01


@pytest.mark.parametrize("bad", [dict(lr=-0.1), dict(bn_splits=3), dict(milestones=(48_000, 32_000)),
                                 dict(momentum=1.5), dict(iterations=0), dict(test_subset=3)])
def test_recipe_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="invalid recipe"):
        CifarRecipe(**bad).validate()


def test_unknown_option_and_preset_fail_clearly():
    with pytest.raises(ValueError, match="unknown recipe options.*wamrup"):
        cifar_recipe("paper", wamrup=True)
    with pytest.raises(ValueError, match="unknown preset"):
        cifar_recipe("huge")


def test_tiny_model_learns_tiny_data(tiny_data, tmp_path):
    recipe = tiny_recipe(iterations=120, milestones=(80, 100), log_every=20, eval_every=40, checkpoint_every=120)
    summary = train_cifar(CifarRun("resnet8", recipe, seed=0), tiny_data, tmp_path, engine(), progress=False)
    train = records(tmp_path, "train")
    assert summary["status"] == "done"
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    assert summary["test_error"] < 30  # chance is 90%


def test_warmup_ends_when_training_error_drops_below_the_threshold(tiny_data, tmp_path):
    # threshold 100%: any window ends the warm-up, at the first check
    quick = train_cifar(CifarRun("resnet8", tiny_recipe(warmup=True, warmup_until=100.0, warmup_window=4), 0),
                        tiny_data, tmp_path / "quick", engine(), progress=False)
    assert quick["warmup_ended_at"] == 4
    assert [r["lr"] for r in records(tmp_path / "quick", "train")][:2] == [0.01, 0.1]
    # threshold 0%: the error never gets there, so the lr stays 0.01 and then decays from it
    never = train_cifar(CifarRun("resnet8", tiny_recipe(warmup=True, warmup_until=1e-9, warmup_window=4), 0),
                        tiny_data, tmp_path / "never", engine(), progress=False)
    assert never["warmup_ended_at"] is None
    assert {r["lr"] for r in records(tmp_path / "never", "train")} == {0.01}


def test_warmup_switches_at_the_first_window_below_the_threshold(tiny_data, tmp_path):
    recipe = tiny_recipe(iterations=60, milestones=(), warmup=True, warmup_until=80.0, warmup_window=4)
    summary = train_cifar(CifarRun("resnet8", recipe, 0), tiny_data, tmp_path, engine(), progress=False)
    checks = records(tmp_path, "warmup")
    assert summary["warmup_ended_at"] is not None and summary["warmup_ended_at"] > 4  # not at once
    assert checks[-1]["iter"] == summary["warmup_ended_at"] and checks[-1]["error"] < 80.0
    assert all(c["error"] >= 80.0 for c in checks[:-1])
    lrs = {r["iter"]: r["lr"] for r in records(tmp_path, "train")}
    assert all(lr == (0.01 if it <= summary["warmup_ended_at"] else 0.1) for it, lr in lrs.items())


def test_resume_reproduces_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    recipe = tiny_recipe()
    run = CifarRun("resnet8", recipe, seed=1)
    train_cifar(run, tiny_data, tmp_path / "straight", engine(), progress=False)

    from resbench.data.pipeline import DeviceLoader
    real_batch = DeviceLoader.batch

    def crash_at_13(self, iteration):
        if iteration == 13:
            raise KeyboardInterrupt  # killed mid-run, after the checkpoint at 8
        return real_batch(self, iteration)
    monkeypatch.setattr(DeviceLoader, "batch", crash_at_13)
    with pytest.raises(KeyboardInterrupt):
        train_cifar(run, tiny_data, tmp_path / "resumed", engine(), progress=False)
    monkeypatch.setattr(DeviceLoader, "batch", real_batch)
    torch.manual_seed(12345)  # a process resuming has drawn other numbers: no RNG state is checkpointed
    torch.rand(1000)
    train_cifar(run, tiny_data, tmp_path / "resumed", engine(), progress=False)

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert records(tmp_path / "straight", "test") == records(tmp_path / "resumed", "test")
    assert [r["iter"] for r in records(tmp_path / "resumed", "train")] == list(range(4, 25, 4))


def final_weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


def test_time_limit_pauses_after_the_step_it_passes_and_resume_finishes(tiny_data, tmp_path):
    run = CifarRun("resnet8", tiny_recipe(), seed=0)
    paused = train_cifar(run, tiny_data, tmp_path / "paused", engine(), progress=False, time_limit_s=0.0)
    assert paused["status"] == "paused" and paused["iteration"] == 1 and paused["reason"] == "time limit"
    done = train_cifar(run, tiny_data, tmp_path / "paused", engine(), progress=False)
    assert done["status"] == "done" and done["iteration"] == 24
    train_cifar(run, tiny_data, tmp_path / "straight", engine(), progress=False)
    assert_same_weights(final_weights(tmp_path / "paused"), final_weights(tmp_path / "straight"))


def test_sigterm_checkpoints_pauses_and_resume_equals_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    import os
    import signal

    from resbench.data.pipeline import DeviceLoader
    from resbench.train import stop

    run = CifarRun("resnet8", tiny_recipe(), seed=2)
    real_batch = DeviceLoader.batch

    def sigterm_at_11(self, iteration):
        if iteration == 11:  # between checkpoints (8, 16): only the signal's own checkpoint saves it
            os.kill(os.getpid(), signal.SIGTERM)
        return real_batch(self, iteration)
    monkeypatch.setattr(DeviceLoader, "batch", sigterm_at_11)
    paused = train_cifar(run, tiny_data, tmp_path / "resumed", engine(), progress=False)
    assert paused["status"] == "paused" and paused["iteration"] == 12 and "SIGTERM" in paused["reason"]
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 12
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the loop
    monkeypatch.setattr(DeviceLoader, "batch", real_batch)
    stop.reset()  # the rerun is a new process: the SIGTERM was for this one
    resumed = train_cifar(run, tiny_data, tmp_path / "resumed", engine(), progress=False)
    assert resumed["status"] == "done"
    assert [r["event"] for r in records(tmp_path / "resumed", "event")] == ["resumed"]
    train_cifar(run, tiny_data, tmp_path / "straight", engine(), progress=False)
    assert_same_weights(final_weights(tmp_path / "resumed"), final_weights(tmp_path / "straight"))
    assert records(tmp_path / "straight", "test") == records(tmp_path / "resumed", "test")


def test_diverged_run_stops_and_says_so(tiny_data, tmp_path):
    summary = train_cifar(CifarRun("resnet8", tiny_recipe(lr=1e6, milestones=(), iterations=40), 0),
                          tiny_data, tmp_path, engine(), progress=False)
    assert summary["status"] == "diverged" and "loss" in summary["reason"]
    assert summary["test_error"] is None


@pytest.mark.parametrize("name, layers", [("resnet20", 19), ("plain20", 19), ("resnet56", 55),
                                          ("plain110", 109), ("resnet20_B", 19)])
def test_fig7_hooks_find_depth_minus_one_3x3_layers(name, layers):
    model = build_model(name)
    assert len(response_layers(model)) == layers
    stds = response_stds(model, [(torch.randn(4, 3, 32, 32), None)])
    assert [s["layer"] for s in stds] == list(range(1, layers + 1))
    assert stds[0]["name"] == "stem" and all(s["std"] > 0 for s in stds)


def test_fig7_std_is_the_std_of_the_bn_output():
    model = build_model("resnet8").eval()
    captured = []
    model.stem.register_forward_hook(lambda m, i, o: captured.append(o))
    x = torch.randn(16, 3, 32, 32)
    stds = response_stds(model, [(x[:8], None), (x[8:], None)])
    eval_pass = torch.cat(captured[:2])  # then the train-mode pass (the hook is copied with the model)
    assert stds[0]["std"] == pytest.approx(eval_pass.double().std(unbiased=False).item(), rel=1e-6)


def test_fig7_readings_of_std_on_a_hand_computed_tensor():
    """Channel 0 holds 1 and 3, channel 1 holds 10 and 10 (two images, one position each)."""
    from resbench.probes.responses import moments, readings

    out = torch.tensor([[[[1.0]], [[10.0]]], [[[3.0]], [[10.0]]]])  # (B=2, C=2, 1, 1)
    r = readings(moments(out))
    assert r["std"] == pytest.approx(16.5 ** 0.5)  # pooled: values 1, 3, 10, 10 around their mean 6
    assert r["channel_std"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert r["rms"] == pytest.approx(52.5 ** 0.5)  # (1 + 9 + 100 + 100) / 4


def test_fig7_train_mode_uses_batch_statistics_and_leaves_the_model_alone():
    model = build_model("resnet8").eval()
    for m in model.modules():  # running statistics far from any batch's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stds = response_stds(model, [(torch.randn(16, 3, 32, 32), None)], bn_images=8)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()) and not model.training
    stem = stds[0]
    assert set(stem) >= {"std", "channel_std", "rms", "std_train", "channel_std_train", "rms_train", "block_output"}
    assert stem["channel_std_train"] == pytest.approx(1.0, abs=0.02)  # BN in train mode: each channel ~unit std
    assert stem["rms"] > 2.5  # eval mode: normalised by running means of 3, far off
    assert [s["block_output"] for s in stds] == [False, False, True, False, True, False, True]


def test_a_finished_run_writes_everything_a_report_needs(tiny_data, tmp_path):
    train_cifar(CifarRun("resnet8", tiny_recipe(), seed=0), tiny_data, tmp_path, engine(), progress=False)
    for name in ("env.json", "metrics.jsonl", "responses.json", "summary.json", "checkpoint.pt"):
        assert (tmp_path / name).exists(), name
    env = read_env(tmp_path)
    assert {"git", "torch", "device", "gpu", "data"} <= set(env) and env["data"]["variant"] == "synthetic"
    assert len(read_responses(tmp_path)) == 7


@pytest.mark.slow
def test_the_demo_preset_visibly_learns_on_the_real_cifar10(shared_dir, tmp_path):
    """`make demo`'s runs: ResNet-20, 200 iterations of the paper's batch and lr (chance: 90%)."""
    from resbench.data.cifar import load_cifar10

    data = load_cifar10(shared_dir / "data")
    run = CifarRun("resnet20", cifar_recipe("demo"), seed=0, preset="demo")
    summary = train_cifar(run, data, tmp_path, engine(), progress=False)
    assert summary["status"] == "done" and summary["test_error"] < 65, summary


@pytest.mark.slow
def test_the_smoke_preset_does_not_diverge_on_a_deep_net(shared_dir, tmp_path):
    """At the paper's lr 0.1 and the smoke batch of 32, ResNet-56's loss went to 10 and stayed."""
    from resbench.data.cifar import load_cifar10

    data = load_cifar10(shared_dir / "data")
    # the smoke preset's training, step for step; tested on 10 images, not 1,000: tests change no weight
    recipe = cifar_recipe("smoke", test_subset=10)
    summary = train_cifar(CifarRun("resnet56", recipe, seed=0, preset="smoke"), data, tmp_path, engine(),
                          progress=False)
    losses = [r["loss"] for r in records(tmp_path, "train")]
    assert summary["status"] == "done" and max(losses) < 5.0 and losses[-1] < losses[0], losses


def test_a_torn_last_metrics_line_is_dropped_on_resume(tiny_data, tmp_path):
    """A process killed (or a disk filled) while it appended a record leaves half a line; resume drops it."""
    run = CifarRun("resnet8", tiny_recipe(), seed=0)
    paused = train_cifar(run, tiny_data, tmp_path, engine(), progress=False, time_limit_s=0.0)
    assert paused["status"] == "paused"
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"iter": 2, "record": "tra')
    done = train_cifar(run, tiny_data, tmp_path, engine(), progress=False)
    assert done["status"] == "done"
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and json.loads(lines[-1])["iter"] == 24


def test_a_run_killed_between_its_last_checkpoint_and_its_summary_reports_the_same_errors(tiny_data, tmp_path):
    """Killed after the last iteration's checkpoint and records, before summary.json: the resumed run
    trains nothing and reports the final training error that its log holds."""
    run = CifarRun("resnet8", tiny_recipe(), seed=0)
    straight = train_cifar(run, tiny_data, tmp_path, engine(), progress=False)
    (tmp_path / "summary.json").unlink()
    resumed = train_cifar(run, tiny_data, tmp_path, engine(), progress=False)
    assert resumed["status"] == "done" and resumed["iteration"] == 24
    assert resumed["train_error"] == straight["train_error"] is not None
    assert resumed["test_error"] == straight["test_error"]


def test_every_run_of_a_process_runs_compiled_and_records_it(tiny_data, tmp_path):
    """Runs of one process compile the same step function: past dynamo's recompile limit, later runs
    would silently run eager. Each run starts from cleared caches, and its summary says how it ran."""
    import torch._dynamo

    from resbench.train.engine import Engine

    compiled = Engine("cpu", "fp32", True, compile_backend="eager", deterministic=True)
    with torch._dynamo.config.patch(recompile_limit=1):  # the limit (8) reached at once
        steps = [train_cifar(CifarRun(model, tiny_recipe(iterations=4, milestones=()), 0), tiny_data,
                             tmp_path / model, compiled, progress=False)["step"] for model in ("resnet8", "plain8")]
    assert steps == ["compiled", "compiled"]
    assert train_cifar(CifarRun("resnet8", tiny_recipe(iterations=4, milestones=()), 0), tiny_data,
                       tmp_path / "eager", engine(), progress=False)["step"] == "eager"
