"""Parameters and multiply-adds for reports, kept on disk between them.

Every report of a table counts the same models again (fvcore and FlopCounterMode, which must
agree: 14 s for Table 6's six networks on 2 cores), and `resbench report --all` builds ten.
A count is kept in the cache, keyed by the model's name and by what produces the count: the
source of `resbench/models/` and `probes/complexity.py` and the torch and fvcore versions. Any
edit of those counts again; CI's golden check (tests/test_complexity.py) never reads the cache.
"""
from __future__ import annotations

import hashlib
import json
from functools import cache
from importlib.metadata import version
from pathlib import Path

from resbench.host.machine import cache_dir
from resbench.probes import complexity as complexity_module
from resbench.probes.complexity import Complexity, complexity
from resbench.host.files import atomic_write_text
from resbench.paper.declarations import Experiment

PACKAGE = Path(complexity_module.__file__).resolve().parents[1]


@cache
def code_hash() -> str:
    """What a count depends on: the networks' and the counter's source, the tools' versions."""
    digest = hashlib.sha256(f"torch {version('torch')} fvcore {version('fvcore')}".encode())
    for path in sorted((PACKAGE / "models").glob("*.py")) + [Path(complexity_module.__file__)]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def counted_models(exp: Experiment) -> list[str]:
    """The models whose counts a report of `exp` shows: every row's, where the experiment is about
    complexity or ImageNet, or the paper gives a row's params or FLOPs."""
    shows = exp.kind == "complexity" or exp.dataset == "imagenet" or \
        any(m in ("params", "flops") for r in exp.rows for m in r.paper)
    return [r.model for r in exp.runnable_rows if r.model] if shows else []


def cached(name: str) -> Path:
    return cache_dir("complexity") / code_hash() / f"{name}.json"


def counted(name: str) -> Complexity:
    """`complexity(name)`, from the cache where this code counted it before."""
    path = cached(name)
    try:
        return Complexity(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    result = complexity(name)
    remember(result)
    return result


def remember(count: Complexity) -> None:
    """Keep a count in the cache (a read-only cache only costs time)."""
    try:
        atomic_write_text(cached(count.model), json.dumps(count.as_dict()))
    except OSError:
        pass
