"""A loan's first minute: does the captured step (CUDA graphs) train as the eager one does, and faster?
Do a row's seeds train faster fused (`resbench.train.fused`)? How many runs should a pack hold?

ResNet-20 from one initialisation on the same batches, `iterations` steps with each engine:
the plain eager step and the captured one (on a CPU: its dry mode, never captured, which is
never faster and so never chosen). Their losses must be finite and agree; the captured step
is chosen where it does and is at least 5% faster. Then three seeds fused: the loan trains
seeds fused where their aggregate rate beats the chosen step's by 20%. Then packs
(`resbench.train.pack`, `bench_pack`): two runs packed must compute what they compute alone
(losses and weights over an lr milestone), and the pack size K is the smallest within 5% of the
best aggregate rate over the sizes asked for (doubling beyond while it pays); a pack beats fusing
where its rate is higher. A check that raises is recorded under "failed" and its way is not
taken; only the plain step must work. The figures go to a JSON file that comes back with the
loan (reports/gpu/).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from resbench.bench.throughput import fused_throughput
from resbench.bench.step import one_way
from resbench.data.cifar import CifarFiles
from resbench.host.files import write_json
from resbench.train.engine import Engine
from resbench.train.fused import fusable
from resbench.train.graphs import WARMUP_STEPS
from resbench.paper.recipes import CifarRecipe

FASTER = 1.05  # the captured step must beat the eager one by this much to be chosen
FUSE, FUSE_FASTER = 3, 1.2  # a row's seeds, fused where that beats one run after another by this much
PACK_SIZES = (1, 2, 4, 8, 16, 32)  # runs side by side, measured (and doubled beyond while it pays)


def _train(engine: Engine, files: CifarFiles, iterations: int, batch: int) -> dict:
    """Losses and the steady img/s (after the warm-up and capture) of ResNet-20 under `engine`."""
    row = one_way("resnet20", files.load(), engine, iterations - WARMUP_STEPS - 1, CifarRecipe(batch_size=batch))
    return {"losses": row["losses"], "img_per_s": row["img_per_s"], "step": row["path"]}


def preflight(files: CifarFiles, device: str, iterations: int, out: Path, batch: int = 128,
              pack_sizes: tuple[int, ...] = PACK_SIZES) -> dict:
    """Both steps at the loan's batch (the paper's 128, BN per half), compared; returns {"engine": the chosen
    Engine, "chosen": its figures, ...} and writes `out`."""
    if iterations < WARMUP_STEPS + 4:
        raise ValueError(f"a preflight needs at least {WARMUP_STEPS + 4} iterations")
    plain = Engine(device=device, compile=False).resolve()
    captured = replace(plain, graph="cuda" if plain.device.startswith("cuda") else "dry")
    results = {"plain": _train(plain, files, iterations, batch)}
    failed = {}  # optional checks that raised: said in the report, and that way not taken
    try:
        results["captured"] = _train(captured, files, iterations, batch)
    except Exception as err:  # noqa: BLE001
        failed["captured"] = _error(err)
    last10 = {name: sum(r["losses"][-10:]) / len(r["losses"][-10:]) for name, r in results.items()}
    finite = all(math.isfinite(v) for r in results.values() for v in r["losses"])
    a, b = last10["plain"], last10.get("captured", math.nan)
    agree = finite and abs(a - b) <= 0.05 * abs(a) + 0.02
    faster = "captured" in results and results["captured"]["img_per_s"] >= FASTER * results["plain"]["img_per_s"]
    use = "captured" if agree and faster and captured.graph == "cuda" and results["captured"]["step"] == "cuda graph" \
        else "plain"
    engine = captured if use == "captured" else plain
    fused = None
    try:
        if why := fusable(plain):
            raise ValueError(why)
        with tempfile.TemporaryDirectory(prefix="resbench-preflight-") as tmp:
            fused = fused_throughput("resnet20", FUSE, iterations, files.load(), plain, Path(tmp), batch)
    except Exception as err:  # noqa: BLE001
        failed["fused"] = _error(err)
    fuse = FUSE if fused and fused["steady_img_per_s"] >= FUSE_FASTER * results[use]["img_per_s"] else 1
    pack = _packs(files, engine, iterations, batch, pack_sizes, failed)
    if pack["chosen"] > 1 and (fuse == 1 or pack["img_per_s"] >= fused["steady_img_per_s"]):
        fuse = 1  # the pack fills the device better
    else:
        pack["chosen"] = 1
    report = {"device": torch.cuda.get_device_name(0) if plain.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "iterations": iterations, "batch": batch, "precision": plain.precision,
              "finite": finite, "agree": agree, "last10_loss": last10, "failed": failed,
              **{name: {k: v for k, v in r.items() if k != "losses"} for name, r in results.items()},
              "losses": {name: r["losses"] for name, r in results.items()},
              "fused": fused, "pack": pack,
              "chosen": {"step": use, "graph": engine.graph, "img_per_s": results[use]["img_per_s"], "fuse": fuse,
                         "pack": pack["chosen"],
                         "run_img_per_s": fused["per_run_img_per_s"] if fuse > 1 else
                         pack["per_run_img_per_s"] if pack["chosen"] > 1 else results[use]["img_per_s"]}}
    write_json(out, report)
    return {**report, "engine": engine}


def _packs(files: CifarFiles, engine: Engine, iterations: int, batch: int, sizes: tuple[int, ...],
           failed: dict) -> dict:
    """Is a pack safe (`pack_agrees`), and which K fills the device: {"chosen": K, "check", "sizes", ...}."""
    from resbench.bench.packs import chosen_size, pack_agrees, pack_table

    pack = {"chosen": 1, "check": None, "sizes": []}
    if max(sizes, default=1) < 2:
        return pack
    try:
        data = files.load()
        with tempfile.TemporaryDirectory(prefix="resbench-preflight-") as tmp:
            pack["check"] = pack_agrees(data, engine, Path(tmp) / "check", batch_size=batch)
            if not pack["check"]["agree"]:
                raise RuntimeError(f"packed runs do not compute what they compute alone: {pack['check']}")
            pack["sizes"] = pack_table(["resnet20"], list(sizes), iterations, data, engine, Path(tmp) / "sizes",
                                       batch_size=batch)
        k = chosen_size(pack["sizes"])
        row = next(r for r in pack["sizes"] if r["slots"] == k)
        pack.update(chosen=k, img_per_s=row["steady_img_per_s"], per_run_img_per_s=row["per_run_img_per_s"])
    except Exception as err:  # noqa: BLE001  (no pack: runs one at a time, as before)
        failed["pack"], pack["chosen"] = _error(err), 1
    return pack


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
