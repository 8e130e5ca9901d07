"""The captured step (CUDA graphs) in its dry mode on CPU, and the compiled steps' graphs."""

import json

import pytest
import torch

from resbench.train.engine import Engine, train_forward
from resbench.train.loop import CifarRun, train_cifar
from resbench.paper.recipes import CifarRecipe
from resbench.runs.rundir import read_metrics

PLAIN = Engine("cpu", "fp32", False, deterministic=True)
DRY = Engine("cpu", "fp32", False, deterministic=True, graph="dry")


def records(run_dir, record):
    return read_metrics(run_dir, record)


def weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def test_the_dry_captured_step_follows_the_plain_step_across_the_warmup_and_a_milestone(tiny_data, tmp_path):
    recipe = CifarRecipe(batch_size=32, iterations=40, milestones=(28,), warmup=True, warmup_until=88.0,
                         warmup_window=4, log_every=4, eval_every=20, checkpoint_every=20).validate()
    run = CifarRun("resnet8", recipe, seed=3)
    plain = train_cifar(run, tiny_data, tmp_path / "plain", PLAIN, progress=False)
    dry = train_cifar(run, tiny_data, tmp_path / "dry", DRY, progress=False)
    assert 4 < plain["warmup_ended_at"] < 28 and dry["warmup_ended_at"] == plain["warmup_ended_at"]
    lrs = [r["lr"] for r in records(tmp_path / "dry", "train")]
    assert lrs == [r["lr"] for r in records(tmp_path / "plain", "train")] and {0.01, 0.1} <= set(lrs)
    assert lrs[-1] == pytest.approx(0.01)  # after the milestone
    losses = [(a["loss"], b["loss"]) for a, b in zip(records(tmp_path / "plain", "train"),
                                                     records(tmp_path / "dry", "train"))]
    assert all(a == pytest.approx(b, abs=5e-3) for a, b in losses)
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "dry")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3) for k in a)
    assert dry["step"] == "eager (graph dry run: never captured)" and plain["step"] == "eager"


def test_one_dry_step_is_torch_sgds_step(tiny_data):
    """One step from the same state: the foreach SGD of the captured step against torch.optim.SGD."""
    from resbench.models import build_model
    from resbench.train.engine import make_optimizer
    from resbench.train.steps import make_train_step

    x, y = tiny_data.train_x[:32].float().div(255), tiny_data.train_y[:32]
    after = []
    for engine in (PLAIN, DRY):
        torch.manual_seed(0)
        model = build_model("resnet8")
        optimizer = make_optimizer(model, 0.1, 0.9, 1e-4, "cpu")
        step = make_train_step(model, optimizer, 2, engine)
        for lr in (0.1, 0.01):
            step(x, y, lr)
        after.append((model.state_dict(), optimizer.state_dict()["state"]))
    (wa, sa), (wb, sb) = after
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=1e-6) for k in wa)
    assert all(torch.allclose(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"], atol=1e-6) for i in sa)


def test_a_dry_run_and_a_plain_run_resume_each_other(tiny_data, tmp_path):
    recipe = CifarRecipe(batch_size=32, iterations=24, milestones=(16,), log_every=4, eval_every=8,
                         checkpoint_every=8).validate()
    run = CifarRun("resnet8", recipe, seed=1)
    assert train_cifar(run, tiny_data, tmp_path / "r", DRY, progress=False, time_limit_s=0.0)["status"] == "paused"
    assert train_cifar(run, tiny_data, tmp_path / "r", PLAIN, progress=False)["status"] == "done"
    train_cifar(run, tiny_data, tmp_path / "straight", PLAIN, progress=False)
    a, b = weights(tmp_path / "r"), weights(tmp_path / "straight")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


def test_graph_capture_needs_a_cuda_device():
    with pytest.raises(ValueError, match="graph must be off, dry, or cuda on a CUDA device"):
        Engine("cpu", "fp32", False, graph="cuda").resolve()


@pytest.mark.parametrize("one_forward", [False, True])
def test_the_train_forward_compiles_as_one_graph(one_forward):
    """aot_eager with fullgraph: a graph break here would cost every compiled GPU run its speed."""
    import torch._dynamo

    from resbench.models import build_model

    torch._dynamo.reset()
    model = build_model("resnet8")
    engine = Engine("cpu", "bf16", False, one_forward=one_forward)
    forward = torch.compile(train_forward(model, 2, engine), backend="aot_eager", fullgraph=True)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    loss, wrong = forward(x, y)
    assert torch.isfinite(loss) and 0 <= int(wrong) <= 16


def test_the_fused_forward_compiles_as_one_graph(tiny_data, tmp_path):
    import torch._dynamo

    from resbench.train.fused import Stack, make_fused_step
    from resbench.train.loop import Member

    torch._dynamo.reset()
    recipe = CifarRecipe(batch_size=32, iterations=4, milestones=(), log_every=2, eval_every=4,
                         checkpoint_every=4).validate()
    members = [Member(CifarRun("resnet8", recipe, s), tiny_data, tmp_path / f"s{s}", PLAIN) for s in (0, 1)]
    stack = Stack(members)
    engine = Engine("cpu", "fp32", True, compile_backend="aot_eager", compile_fullgraph=True)
    step = make_fused_step(stack, 2, engine)
    x, y = (torch.stack(t) for t in zip(*(m.loader.batch(0) for m in members)))
    loss, wrong = step(x, y, torch.tensor([0.1, 0.1]))
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_a_captured_step_is_compiled_only_when_asked_by_name():
    assert Engine("cuda").resolve(cuda_available=True).compile  # the plain step: compiled by default on a GPU
    assert not Engine("cuda", graph="cuda").resolve(cuda_available=True).compile  # captured: eager kernels
    assert Engine("cuda", compile=True, graph="cuda").resolve(cuda_available=True).compile


def test_the_compiled_captured_step_computes_what_the_captured_one_does(tiny_data):
    """`resbench bench step`'s two ways from one initialisation on the same batches (aot_eager: the traced
    graph's own kernels, as inductor would fuse them, without a compiler on the test machine)."""
    from resbench.bench.step import step_table

    engine = Engine("cpu", "fp32", False, deterministic=True, compile_backend="aot_eager", compile_fullgraph=True)
    rows = step_table(["resnet8"], tiny_data, engine, 3, CifarRecipe(batch_size=32))
    captured, compiled = rows
    assert (captured["way"], compiled["way"]) == ("captured", "compiled")
    assert captured["dynamo_graphs"] == 0 and compiled["dynamo_graphs"] >= 1  # it did compile: no silent fallback
    assert compiled["max_loss_diff"] < 1e-4 and compiled["img_per_s"] > 0 and captured["speedup"] == 1.0
    assert compiled["pays_after_iterations"] is None or compiled["pays_after_iterations"] > 0


def test_a_capture_that_fails_with_an_empty_message_goes_on_eager_and_says_so(tiny_data, monkeypatch):
    """The fallback meant to save a run must not itself raise (an AssertionError() has no message).
    CPU: streams are stand-ins, and the graph's capture fails as some ops make it fail on a GPU."""
    import contextlib

    from resbench.models import build_model
    from resbench.train.engine import make_optimizer
    from resbench.train.graphs import CapturedStep

    class Stream:
        def wait_stream(self, other):
            pass

        def synchronize(self):
            pass

    class Graph:
        def capture_begin(self, *args, **kwargs):
            raise AssertionError()

    def no_capture(*args, **kwargs):
        raise AssertionError()
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", no_capture)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *args: Stream())
    torch.manual_seed(0)
    model = build_model("resnet8")
    step = CapturedStep(model, make_optimizer(model, 0.1, 0.9, 1e-4, "cpu"), 2, DRY)
    step.capture, step.stream = True, Stream()  # as on a GPU: the step after the warm-up records
    x, y = tiny_data.train_x[:32].float().div(255), tiny_data.train_y[:32]
    for _ in range(5):
        loss, _ = step(x, y, 0.1)
    assert step.path == "eager: capture failed: AssertionError" and step.graph is None and torch.isfinite(loss)


def test_bench_step_writes_each_way_as_it_is_measured(bench_root, tmp_path, monkeypatch):
    """A cut while the second way compiles (a walltime, a kill) keeps the first way's row in --out."""
    from typer.testing import CliRunner

    from resbench.bench import step
    from resbench.cli import app

    real = step.one_way

    def killed_while_compiling(name, data, engine, *args, **kwargs):
        if engine.compile:
            raise RuntimeError("killed during compilation")
        return real(name, data, engine, *args, **kwargs)
    monkeypatch.setattr(step, "one_way", killed_while_compiling)
    out = tmp_path / "step.json"
    result = CliRunner().invoke(app, ["bench", "step", "--models", "resnet8", "--iterations", "2", "--device", "cpu",
                                      "--data-root", str(bench_root), "--out", str(out)])
    assert isinstance(result.exception, RuntimeError)
    rows = json.loads(out.read_text())["results"]
    assert [(r["model"], r["way"]) for r in rows] == [("resnet8", "captured")] and rows[0]["img_per_s"] > 0


def test_a_capture_waits_for_its_own_stream_only_never_the_whole_device(tiny_data, monkeypatch):
    """A run joining a running pack captures its step: torch.cuda.graph would synchronise the device and
    empty the allocator's cache under the pack's other runs. CPU: the stream and graph are stand-ins."""
    import contextlib

    from resbench.models import build_model
    from resbench.train.engine import make_optimizer
    from resbench.train.graphs import CapturedStep

    calls = []

    class Stream:
        def wait_stream(self, other):
            pass

        def synchronize(self):
            calls.append("stream.synchronize")

    class Graph:
        def capture_begin(self, *args, **kwargs):
            calls.append("capture_begin")

        def capture_end(self):
            calls.append("capture_end")

        def replay(self):
            calls.append("replay")

    def whole_device(*args, **kwargs):
        raise AssertionError("the whole device waited")
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    for name in ("synchronize", "empty_cache", "graph"):
        monkeypatch.setattr(torch.cuda, name, whole_device)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *args: Stream())
    torch.manual_seed(0)
    model = build_model("resnet8")
    step = CapturedStep(model, make_optimizer(model, 0.1, 0.9, 1e-4, "cpu"), 2, DRY)
    step.capture, step.stream = True, Stream()
    x, y = tiny_data.train_x[:32].float().div(255), tiny_data.train_y[:32]
    for _ in range(5):
        step(x, y, 0.1)
    assert step.path == "cuda graph"
    assert calls == ["stream.synchronize", "capture_begin", "capture_end", "replay", "replay"]
