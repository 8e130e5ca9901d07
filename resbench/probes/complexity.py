"""Parameters and multiply-adds of a model, counted twice by independent tools.

Convention (the paper's): one FLOP = one multiply-add, and only the weighted layers
count, i.e. convolutions and the final FC. Both counters are restricted to that:

* fvcore (`FlopCountAnalysis`, traced with TorchScript): counts one per multiply-add for
  conv and linear. Its default handlers would also count BN (one per element) and adaptive
  average pooling; we remove those two handlers so the number matches the paper's
  convention. Additions of the shortcuts, ReLU, max-pooling and zero-padding are not
  counted by fvcore at all (they are the "unsupported operators" it would warn about,
  which is why those warnings are switched off here, on purpose).
* `torch.utils.flop_counter.FlopCounterMode`: counts 2 FLOPs per multiply-add for
  convolution and matmul-like ops only (no BN, pooling, additions). We halve it.

The two must agree; `complexity()` raises if they do not.
"""
from __future__ import annotations

import csv
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resbench.models import build_model, parse_model_name
from resbench.paper.declarations import all_experiments, load_experiment

# fvcore imports torch.jit.script and runs torch.jit.trace, both deprecated in current
# PyTorch; these are the only warnings we silence.
_JIT_DEPRECATION = r"`torch\.jit\.(script|trace)` is deprecated"


@contextmanager
def _quiet_jit() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION, category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*TracerWarning.*")
        yield


_NOT_WEIGHTED = ("aten::batch_norm", "aten::adaptive_avg_pool2d")


def _count_nothing(inputs: list, outputs: list) -> int:
    return 0


@dataclass(frozen=True)
class Complexity:
    model: str
    params: int  # all trainable parameters, BN affine included
    macs: int  # multiply-adds of conv + FC layers, fvcore
    macs_flop_counter: int  # the same, from FlopCounterMode (its FLOPs / 2)
    input_size: int  # side of the square input, batch of one

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def macs_fvcore(model: nn.Module, input_size: int) -> int:
    with _quiet_jit():  # imported here: fvcore is optional where only training runs (a GPU node needs FlopCounterMode only)
        from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, 3, input_size, input_size)
    with _quiet_jit(), torch.no_grad():
        analysis = FlopCountAnalysis(model.eval(), x)
        # set_op_handle(op, None) only marks an op ignored and keeps fvcore's default
        # handler, so BN and pooling are switched off with a handler that counts zero.
        analysis.set_op_handle(**{op: _count_nothing for op in _NOT_WEIGHTED})
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return int(analysis.total())


def macs_flop_counter(model: nn.Module, input_size: int) -> int:
    """FlopCounterMode on the meta device: shapes only, so even VGG-19 costs nothing."""
    model = model.to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size, device="meta"))
    return counter.get_total_flops() // 2


def complexity(name: str) -> Complexity:
    """Count `name`'s parameters and multiply-adds with both tools; they must agree."""
    size = parse_model_name(name).input_size
    model = build_model(name)
    params, macs = count_params(model), macs_fvcore(model, size)
    second = macs_flop_counter(model, size)
    if abs(second - macs) > 1e-6 * macs:
        raise RuntimeError(f"{name}: fvcore counts {macs} MACs but FlopCounterMode {second}")
    return Complexity(name, params, macs, second, size)


def paper_models() -> list[str]:
    """Every model the declared experiments name (Tables 1-6, Figures), in order."""
    names: dict[str, None] = {}
    for exp in all_experiments():
        for row in exp.runnable_rows:
            names.update(dict.fromkeys([row.model] if row.model else row.members))
    return list(names)


def paper_reference(name: str) -> tuple[str, float, float] | None:
    """(what, paper value, our value in the paper's unit) for Table 1 FLOPs or Table 6 params."""
    for table, metric, scale in (("table1", "flops", 1e9), ("table6", "params", 1e6)):
        for row in load_experiment(table).runnable_rows:
            if row.model == name and metric in row.paper:
                return metric, row.paper[metric], scale
    return None


GOLDEN_COLUMNS = ("model", "params", "macs")


def write_golden(path: str, rows: list[Complexity]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GOLDEN_COLUMNS)
        writer.writerows((c.model, c.params, c.macs) for c in rows)
