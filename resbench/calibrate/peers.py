"""How much of a gap is the data? A trainer with published numbers, run unchanged on this data.

The CIFAR-10 here is a JPEG q75 re-encoding, not the paper's lossless images. airbench (Jordan,
2024; `pip install -e '.[calibrate]'`) trains CIFAR-10 to published mean accuracies on the
original images, over hundreds of runs. Its `CifarLoader` reads `cifar10/train.pt` and `test.pt`
(uint8 NHWC images, labels, class names) where they exist; written once from resbench's decoded
data, airbench's own recipe (network, schedule, test-time augmentation) trains on them with not
one setting changed, so its error here minus its published error is what this data costs a
trainer that nobody here tuned. Reports show that penalty beside their verdicts; they never
adjust a result with it (`resbench.report.calibration`).

A calibration run is a run directory of its own kind (config.json with "kind": "calibration",
env.json, summary.json) under `<runs>/calibration/`, named by what determines its result: the
peer, airbench's version, the data's sha256 and the seed. airbench computes in fp16 on CUDA and
cannot run on a CPU.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from resbench.data.cifar import CLASSES, CifarData, CifarFiles, sha256_file
from resbench.host.files import atomic_file
from resbench.host.machine import cache_dir
from resbench.runs.provenance import environment
from resbench.runs.rundir import read_status, short_hash, write_config, write_env, write_summary

AIRBENCH_VERSION = "0.1.8"  # the published means below are this code's


@dataclass(frozen=True)
class Peer:
    name: str
    train: str  # airbench's function that trains this recipe from its own defaults
    published_accuracy: float  # %, mean test accuracy with its test-time augmentation, original CIFAR-10
    published_runs: int  # runs behind that mean
    guessed_s: float  # one run on an H200 before one was timed (A100: 3.8, 10.4, 46.3 s), cuDNN tuning included


# The means and run counts of airbench 0.1.8's README and its lib_airbench9x.py headers.
PEERS = {
    "airbench94": Peer("airbench94", "train94", 94.01, 1000, 12.0),
    "airbench95": Peer("airbench95", "train95", 95.01, 200, 25.0),
    "airbench96": Peer("airbench96", "train96", 96.05, 200, 80.0),
}
DEFAULT_PLAN = ("airbench94:10", "airbench96:3")  # >= 10 of the fast one; 3 of the best where time allows


class CalibrationUnavailable(RuntimeError):
    """The calibration cannot run here (no CUDA GPU, or airbench not installed): one line says what to do."""


def parse_plan(items: list[str] | tuple[str, ...]) -> list[tuple[Peer, int]]:
    """'airbench94:10' -> (PEERS['airbench94'], 10); a peer without a count gets 3 seeds."""
    plan = []
    for item in items:
        name, _, count = item.partition(":")
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
        if count and (not count.isdigit() or int(count) < 1):
            raise ValueError(f"seeds for {name} must be a positive whole number, got {count!r}")
        plan.append((PEERS[name], int(count or 3)))
    return plan


def write_tensors(data: CifarData, folder: Path) -> dict[str, str]:
    """airbench's files from resbench's decoded images (once; kept): {file: sha256}."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, x, y in (("train.pt", data.train_x, data.train_y), ("test.pt", data.test_x, data.test_y)):
        path = folder / name
        if not path.exists():
            with atomic_file(path) as f:
                torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y.long(),
                            "classes": list(CLASSES)}, f)
        sums[name] = sha256_file(path)
    return sums


def run_key(peer: Peer, data_sha256: dict[str, str]) -> str:
    """What determines a calibration run's result besides its seed: the peer, airbench's code, the data."""
    return short_hash({"peer": peer.name, "airbench": AIRBENCH_VERSION, "data": data_sha256})


def calibrate(files: CifarFiles, plan: list[tuple[Peer, int]], out: Path, deadline: float | None = None,
              say: Callable[[str], None] = print, train_one: Callable | None = None) -> list[dict]:
    """Train each peer's seeds 0..n-1 that are not done yet in `out`, while the next fits before `deadline`
    (epoch seconds); returns the summaries written. `train_one(peer, seed, folder)` -> figures: airbench's
    own (the default) needs CUDA; tests pass another."""
    if train_one is None:
        train_one = _airbench_trainer()
    data = files.load()
    folder = cache_dir("airbench") / short_hash(files.sha256) / "cifar10"  # once per data set
    tensors = write_tensors(data, folder)
    say(f"airbench's files: {folder} ({', '.join(f'{n} {s[:12]}' for n, s in tensors.items())})")
    written = []
    for peer, seeds in plan:
        took = peer.guessed_s
        for seed in range(seeds):
            run = out / f"{peer.name}-{run_key(peer, files.sha256)}-s{seed}"
            if read_status(run) == "done":
                continue
            if deadline is not None and time.time() + 1.2 * took > deadline:
                say(f"not started: {run.name} (needs about {took:.0f} s, {deadline - time.time():.0f} s left)")
                break
            _write_config(run, peer, seed, files, tensors)
            try:
                figures = train_one(peer, seed, folder)
                summary = {"status": "done", **figures}
                took = figures["train_s"]  # the next seed's estimate (the first seed's time includes cuDNN's tuning)
            except Exception as err:  # noqa: BLE001  (one failed seed is logged; the others still train)
                summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            write_summary(run, summary)
            say(f"{summary['status']}: {run.name} " + (f"test error {summary['test_error']:.2f}% "
                f"({summary['train_s']:.1f} s)" if summary["status"] == "done" else summary["error"]))
            written.append({"dir": str(run), **summary})
    return written


def _write_config(run: Path, peer: Peer, seed: int, files: CifarFiles, tensors: dict[str, str]) -> None:
    config = {"kind": "calibration", "peer": peer.name, "seed": seed, "key": run_key(peer, files.sha256),
              "trainer": f"airbench {AIRBENCH_VERSION} {peer.train}(): its own recipe, unchanged",
              "published": {"accuracy": peer.published_accuracy, "error": round(100 - peer.published_accuracy, 2),
                            "runs": peer.published_runs, "data": "cifar10-original"},
              "data": {**files.provenance(), "airbench_files_sha256": tensors}}
    write_config(run, config)
    write_env(run, environment(torch.device("cuda" if torch.cuda.is_available() else "cpu"),
                                             files.provenance()))


def _airbench_trainer() -> Callable[[Peer, int, Path], dict]:
    """airbench's training and test, as its README runs them; a one-line error where it cannot run."""
    if not torch.cuda.is_available():
        raise CalibrationUnavailable("airbench trains in fp16 on a CUDA GPU and this machine has none: run "
                                     "`resbench calibrate` on a machine with a CUDA GPU")
    from resbench.host import vision as _vision  # noqa: F401  (before torchvision, which airbench imports)
    try:
        import airbench
    except ImportError:
        raise CalibrationUnavailable("airbench is not installed: pip install -e '.[calibrate]'") from None

    def train_one(peer: Peer, seed: int, folder: Path) -> dict:
        torch.manual_seed(seed)
        tta = getattr(airbench, f"lib_{peer.name}").hyp["net"]["tta_level"]
        # airbench's train() opens its test set at ./cifar10 whatever loader it is given
        with contextlib.chdir(folder.parent):
            started = time.perf_counter()
            model = getattr(airbench, peer.train)(verbose=False)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            with_tta, plain = airbench.evaluate(model, test, tta_level=tta), airbench.evaluate(model, test, 0)
        return {"test_error": round(100 * (1 - with_tta), 4), "test_error_no_tta": round(100 * (1 - plain), 4),
                "tta_level": tta, "train_s": round(seconds, 2), "gpu": torch.cuda.get_device_name(0)}

    return train_one
