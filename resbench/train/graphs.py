"""The whole CIFAR training step (forward, backward, SGD) captured in one CUDA graph.

At batch 128 the small CIFAR nets are launch-bound: a GPU waits on the host's kernel
launches. torch.compile's CUDA graphs remove that, but compiling costs minutes per model
(paid again in every fresh process or container: a short job cannot afford it). This captures the
eager step instead, in seconds: after `WARMUP_STEPS` eager steps (on a side stream, as
capture requires) the next step is recorded once and every later one replays it.

What a replay needs to compute the same step as the eager loop:
* static inputs: each batch is copied into the tensors the graph reads;
* the learning rate as a device tensor, filled before each replay, so the warm-up of
  ResNet-110/1202 and the milestones still take effect;
* autocast with cache_enabled=False (cast weights cached across a replay would be stale);
* SGD in foreach kernels on device tensors (`engine.sgd_update`), torch.optim.SGD's
  arithmetic, with the optimizer's own momentum buffers, so a checkpoint is the one the eager
  loop writes and either resumes the other.
The eager steps use the same code, and a step that cannot be captured runs eager from then
on; `path` says which ("cuda graph", "eager: capture failed: ..."). With `graph="dry"` (tests,
CPU) the code never captures: the same arithmetic, run eagerly each step.

In a pack (`resbench.train.pack`) the eager steps and the capture run on the pack slot's stream,
created once per slot (CUDA hands out streams from a pool of 32: a stream per run would make
packed runs share them), and the capture waits for that stream only, not the whole device:
`torch.cuda.graph` synchronises the device and empties the allocator's cache, which would stall
every other run of the pack whenever one joins it.

With `engine.compile` the forward is torch.compile'd first (inductor's default mode: its kernels,
not its CUDA graphs) and its kernels are what the graph records: fewer, fused kernels for deep
nets, whose captured step is bound by the kernels themselves. It rounds differently, and costs a
compilation: `resbench bench step` measures both; it is not a default.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from resbench.train.engine import Engine, compile_for_run, sgd_update, train_forward

WARMUP_STEPS = 3  # eager steps before capture (cuDNN autotuning, cuBLAS handles, lazy inits)


class CapturedStep:
    """step(x, y, lr) -> (loss, number wrong), as `steps.make_train_step`'s plain step."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.SGD, bn_splits: int, engine: Engine):
        self.forward = train_forward(model, bn_splits, engine, cache_enabled=False)
        self.compiled = engine.compile
        if self.compiled:  # inductor's fused kernels (BN, ReLU, the shortcut's add), captured with the rest
            self.forward = compile_for_run(self.forward, engine, inside_graph=True)
        self.params = [p for p in model.parameters() if p.requires_grad]
        state, group = optimizer.state, optimizer.param_groups[0]
        # the optimizer's buffers, created as zeros where it has taken no step yet (zero momentum
        # and torch.optim.SGD's first step, buf = d_p, give the same numbers)
        self.bufs = [state[p].setdefault("momentum_buffer", torch.zeros_like(p)) for p in self.params]
        self.momentum, self.weight_decay = group["momentum"], group["weight_decay"]
        self.optimizer = optimizer
        device = self.params[0].device
        self.lr = torch.zeros((), device=device, dtype=torch.float32)
        self.capture = engine.graph == "cuda"
        self.stream = side_stream(device) if self.capture else None
        self.graph, self.static, self.steps = None, None, 0
        self.path = "cuda graph (not captured yet)" if self.capture else "eager (graph dry run: never captured)"

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, wrong = self.forward(x, y)
        grads = torch.autograd.grad(loss, self.params)
        sgd_update(self.params, list(grads), self.bufs, [self.lr] * len(self.params), self.momentum,
                   self.weight_decay)
        return loss.detach(), wrong.detach()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.lr.fill_(lr)
        for group in self.optimizer.param_groups:  # what a checkpoint records
            group["lr"] = lr
        if self.capture and self.graph is None and self.steps >= WARMUP_STEPS:
            self._record(x, y)
        if self.graph is not None:
            self.static[0].copy_(x)
            self.static[1].copy_(y)
            self.graph.replay()
            return self.static[2].clone(), self.static[3].clone()
        self.steps += 1
        if self.stream is None:
            loss, wrong = self._step(x, y)
        else:  # eager steps before capture run on a side stream, as capture requires
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                loss, wrong = self._step(x, y)
            torch.cuda.current_stream().wait_stream(self.stream)
        return loss.clone(), wrong.clone()

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        static_x, static_y = x.clone(), y.clone()
        try:
            graph = torch.cuda.CUDAGraph()
            loss, wrong = self._capture(graph, static_x, static_y)
        except Exception as err:  # an op that cannot be captured: go on eager, and say so
            self.capture, self.stream = False, None
            self.path = f"eager: capture failed: {first_line(err)}"
            return
        self.graph, self.static = graph, (static_x, static_y, loss, wrong)
        self.path = "cuda graph of compiled kernels" if self.compiled else "cuda graph"

    def _capture(self, graph: torch.cuda.CUDAGraph, x: torch.Tensor, y: torch.Tensor):
        """One step recorded on this step's stream, waiting for that stream only (not `torch.cuda.graph`)."""
        self.stream.wait_stream(torch.cuda.current_stream())
        self.stream.synchronize()  # this run's warm-up is done; a pack's other runs go on
        with torch.cuda.stream(self.stream):
            graph.capture_begin(capture_error_mode="thread_local")  # other threads (a progress bar) may run
            try:
                out = self._step(x, y)
            except BaseException:
                with contextlib.suppress(Exception):  # the capture is broken: end it, say the first error
                    graph.capture_end()
                raise
            graph.capture_end()
        torch.cuda.current_stream().wait_stream(self.stream)
        return out


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """The stream of the eager steps and the capture, which needs one other than the default: the current
    stream where it is not the default (a pack slot's, made once per slot), else a new one."""
    current = torch.cuda.current_stream(device)
    return current if current != torch.cuda.default_stream(device) else torch.cuda.Stream(device)


def first_line(err: BaseException) -> str:
    """'TypeName: first line of its message', or the type's name alone where the message is empty."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__
