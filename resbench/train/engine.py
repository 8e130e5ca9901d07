"""How a step runs on the hardware: device, precision, memory layout, compilation; and what its losses add up to
on the device (`Window`, `loss_and_error`), read by the host only at due points.

Layout, compilation and the fused optimizer change only how fast a step runs. Precision
changes what is computed: bf16 autocast rounds every convolution's inputs and outputs, the
residual stream included, to 8 bits of mantissa, and TF32 rounds fp32 convolutions and
matmuls to 10. Whether that moves a test error is measured (a precision control: the same
runs in fp32 and in bf16, over seeds), not assumed: a run records its precision and TF32,
reports name them in the row's tier and never average runs of different arithmetic.

The defaults pick the fast path on a GPU (bf16 autocast with TF32, channels_last,
torch.compile, fused SGD); on a CPU, eager channels_last in `CPU_PRECISION`, with bf16
autocast on request, fast only where the CPU computes bf16 natively (AVX-512 BF16 or AMX).
`precision="fp32"` is true fp32, TF32 off, as the paper's 2015 GPUs computed.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from resbench.host.machine import native_bf16
from resbench.train.splits import bn_momenta, split_loss

PRECISIONS = ("bf16", "fp32")
# --precision auto on a CPU. bf16 autocast trains ResNet-20 1.6x faster on a CPU with native
# bf16; it becomes this default only when a precision control puts the 95% CI of its shift of
# the test error within +-0.5 pp. Measured (docs/budgets.md, "Precision control"): +0.31 pp, CI
# [-0.68, +1.31] at 3 seeds a side: not shown, so fp32.
CPU_PRECISION = "fp32"


@dataclass(frozen=True)
class Engine:
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on cuda, CPU_PRECISION on a CPU
    compile: bool | None = None  # None: on for cuda, unless the step is captured (graph below)
    # reduce-overhead = inductor kernels + CUDA graphs: at batch 128 the small CIFAR
    # nets are launch-bound, which CUDA graphs remove. `resbench bench cifar --compile-mode`
    # compares the modes on the GPU.
    compile_mode: str = "reduce-overhead"
    compile_backend: str = "inductor"  # another dynamo backend (e.g. "eager", in tests) ignores compile_mode
    compile_fullgraph: bool = False  # a graph break is an error, not a silent split (tests: catch them on CPU)
    channels_last: bool = True
    deterministic: bool = False  # deterministic kernels (for exact resume checks)
    # BN per part of the batch (bn_splits): one vmapped forward over the parts instead of one
    # forward per part; the same arithmetic up to rounding (resbench.train.splits). Off until
    # `resbench bench cifar --one-forward` shows it faster on the GPU.
    one_forward: bool = False
    # CIFAR: the whole step (forward, backward, SGD) captured in a CUDA graph after a few eager steps
    # (resbench.train.graphs): "cuda", "dry" (the same code, never captured: for CPU tests) or "off".
    graph: str = "off"

    @property
    def is_resolved(self) -> bool:
        return "auto" not in (self.device, self.precision) and self.compile is not None

    def resolve(self, cuda_available: bool | None = None) -> "Engine":
        """The engine with every "auto" decided: the one place these rules live. `cuda_available`: of the
        machine the runs will train on, where that is not this one (a Slurm job's GPU nodes)."""
        cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
        device = self.device
        if device == "auto":
            device = "cuda" if cuda_available else "cpu"
        if device.startswith("cuda") and not cuda_available:
            raise ValueError("--device cuda was asked for, but this machine has no CUDA GPU; use --device cpu")
        cuda = device.startswith("cuda")
        precision = self.precision if self.precision != "auto" else ("bf16" if cuda else CPU_PRECISION)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, {' or '.join(PRECISIONS)}, got {precision!r}")
        if precision == "bf16" and not cuda and not native_bf16():
            warnings.warn("bf16 on a CPU without native bf16 (AVX-512 BF16 or AMX) is emulated and slower "
                          "than fp32; --precision fp32 is faster here", stacklevel=2)
        # torch.compile by default on a GPU, except under a captured step (graph), where it is asked for by name
        compile_ = (cuda and self.graph == "off") if self.compile is None else self.compile
        if self.graph not in ("off", "cuda", "dry") or (self.graph == "cuda" and not cuda):
            raise ValueError(f"graph must be off, dry, or cuda on a CUDA device; got {self.graph!r} on {device}")
        return replace(self, device=device, precision=precision, compile=compile_)

    @property
    def tf32(self) -> bool:
        """TF32 for fp32 convolutions and matmuls: only beside bf16 autocast, only on CUDA."""
        return self.precision == "bf16" and self.device.startswith("cuda")

    @property
    def arithmetic(self) -> dict:
        """What a run records about its arithmetic (part of its config)."""
        return {"precision": self.precision, "tf32": self.tf32}

    def autocast(self, cache_enabled: bool = True):
        """bf16 autocast where the run computes in bf16, a context that changes nothing in fp32.
        (A captured CUDA graph needs cache_enabled=False: the cast weights must not outlive a replay.)"""
        return torch.autocast("cuda" if self.device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                              enabled=self.precision == "bf16", cache_enabled=cache_enabled)

    def apply_global_settings(self) -> None:
        if self.deterministic and self.device.startswith("cuda"):
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
        torch.backends.cudnn.benchmark = not self.deterministic
        torch.use_deterministic_algorithms(self.deterministic, warn_only=False)
        torch.backends.cuda.matmul.allow_tf32 = self.tf32
        torch.backends.cudnn.allow_tf32 = self.tf32


def compile_for_run(fn, engine: Engine, inside_graph: bool = False):
    """torch.compile(fn), with dynamo's caches cleared first. Every run of a process compiles the same
    code object (a step function made per run), so without the reset a sweep's later runs exceed
    dynamo's recompile limit and silently run eager; `step_path` tells which way a step ran.
    `inside_graph`: the caller captures the compiled kernels in a CUDA graph of its own
    (`graphs.CapturedStep`), so inductor's own graphs ("reduce-overhead") are not used."""
    torch._dynamo.reset()
    if engine.compile_backend == "inductor":
        mode = "default" if inside_graph else engine.compile_mode
        return torch.compile(fn, mode=mode, fullgraph=engine.compile_fullgraph)
    return torch.compile(fn, backend=engine.compile_backend, fullgraph=engine.compile_fullgraph)


def graphs_compiled() -> int:
    """How many graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def step_path(engine: Engine, graphs_before: int, step=None) -> str:
    """How a run's steps ran, after its first: "compiled", "eager", "eager: compilation fell back" (nothing
    compiled), or a captured step's own account ("cuda graph", "eager: capture failed ...")."""
    if getattr(step, "path", None):
        return step.path
    if not engine.compile:
        return "eager"
    return "compiled" if graphs_compiled() > graphs_before else "eager: compilation fell back"


def sync(device: str) -> None:
    """Wait for the device, so that wall-clock timings cover the work queued on it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                   device: str) -> torch.optim.SGD:
    one_kernel = {"fused": True} if device.startswith("cuda") else {}  # torch's fused SGD kernel on a GPU
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, **one_kernel)


def train_forward(model: nn.Module, bn_splits: int, engine: Engine, cache_enabled: bool = True):
    """forward(x, y) -> (loss, number wrong): the training forward, BN statistics per split of the batch."""
    momenta = bn_momenta(model)

    def forward(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with engine.autocast(cache_enabled):
            return split_loss(model, x, y, bn_splits, engine.one_forward, momenta)

    return forward


@torch.no_grad()
def sgd_update(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor],
               lrs: list[torch.Tensor], momentum: float, weight_decay: float) -> None:
    """torch.optim.SGD's step (d_p = g + wd p; buf = m buf + d_p; p -= lr buf) in a few foreach kernels,
    with learning rates as device tensors (one per parameter, broadcast against it): nothing goes
    through the host, so the step can run inside a CUDA graph or on runs stacked for fusing."""
    grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)
    torch._foreach_addcmul_(params, bufs, lrs, value=-1.0)


@torch.no_grad()
def loss_and_error(model: nn.Module, batches, engine: Engine) -> tuple[float, float]:
    """(mean loss, error %) over `batches` in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, wrong, n = 0.0, 0, 0
    for x, y in batches:
        with engine.autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        wrong += (logits.argmax(1) != y).sum().item()
        n += len(y)
    model.train(was_training)
    return loss_sum / n, 100.0 * wrong / n


class Window:
    """Sums of loss and wrong predictions since the last read, on the device; images on the host."""

    def __init__(self, device: str):
        self.sums = torch.zeros(2, device=device, dtype=torch.float64)
        self.images = 0

    def add(self, loss: torch.Tensor, wrong: torch.Tensor, n: int) -> None:
        self.sums += torch.stack([loss.double() * n, wrong.double()])
        self.images += n

    def state_dict(self) -> dict:
        """What a checkpoint keeps of a window cut short by a pause, so the next record is whole."""
        return {"sums": self.sums.tolist(), "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.sums.copy_(torch.tensor(state["sums"], dtype=torch.float64))
        self.images = state["images"]

    def read(self) -> tuple[float, float]:
        """(mean loss, error %) since the last read; synchronises with the device once."""
        loss_sum, wrong = self.sums.tolist()
        n, self.images = self.images, 0
        self.sums.zero_()
        return loss_sum / n, 100.0 * wrong / n
