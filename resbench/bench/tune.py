"""`resbench tune`: this machine's profile. How fast its device trains a network, which way, packed how.

Measured within a time limit, each row written to the profile the moment it is measured, so a cut
(the limit, SIGTERM, Ctrl-C, a kill) keeps every row already finished; a measurement cut short is
no row. For each network asked for (ResNet-20 by default), at the paper's batch of 128:

* peak: a bf16 matrix product (`packs.peak_tflops`), the ceiling a pack's share of peak is read against;
* step: the plain eager step and the captured one (CUDA graphs; on a CPU its dry mode, which never
  captures and is never faster), from one initialisation on the same batches (`step.one_way`):
  their img/s after the set-up, and whether their losses agree;
* check: two runs packed against the same two alone, over an lr milestone (`packs.pack_agrees`):
  where they differ, no pack is chosen;
* pack: K runs side by side (`resbench.train.pack`) for K = 1, 2, 4, ... up to 32 (CUDA's pool of
  streams), stepped as `run --pack` steps them, until a size fails (out of memory) or is no faster
  than the best before it: the best size measured is kept.

The profile is one JSON file per device name and torch version, in `$RESBENCH_CACHE/profiles/`
(~/.cache/resbench/profiles/ by default; `--profile FILE` puts it elsewhere, e.g. next to a results
folder). Its rows are keyed by network, precision, graph and what they measure; a new measurement
replaces the old one. `run --pack auto` reads it (`chosen_pack`), measuring briefly what it lacks;
`measured_rate` gives a run's img/s for time estimates. Every figure in it is this machine's own:
a pack's speed on a GPU is for that GPU to measure.
"""
from __future__ import annotations

import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from resbench.bench.packs import chosen_size, pack_agrees, pack_throughput, peak_tflops
from resbench.bench.step import Cut, one_way
from resbench.data.cifar import CifarData, CifarFiles
from resbench.host.machine import cache_dir, cpu_model
from resbench.paper.recipes import CifarRecipe
from resbench.host.files import read_json, write_json
from resbench.train.engine import Engine
from resbench.train.graphs import first_line
from resbench.train.runspec import CifarRun
from resbench.train.stop import Deadline, stop_on_signals

PACK_SIZES = (1, 2, 4, 8, 16, 32)  # 32: CUDA's pool of streams per device; more slots would share them
AGREE = 0.05  # the captured step's mean loss over its last 10 steps within 5% (+0.02) of the plain step's
BRIEF_S, BRIEF_ITERATIONS = 60.0, 50  # `run --pack auto` where the profile lacks a network: measured this briefly
ROW_KEYS = ("what", "network", "precision", "graph", "way", "slots")  # a row replaces the row with the same key


def device_name(device: str) -> str:
    """The name a profile is filed under: the GPU's ('NVIDIA H200'), or the CPU's model."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def profile_path(device: str, folder: Path | None = None) -> Path:
    """This device's profile for this torch: <folder or $RESBENCH_CACHE/profiles>/<device>--torch-<version>.json."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", device_name(device)).strip("-").lower()
    return (folder or cache_dir("profiles")) / f"{slug}--torch-{torch.__version__.replace('+', '-')}.json"


def load_profile(path: Path, device: str | None = None) -> dict:
    """The profile at `path`, or an empty one (no file yet); with `device`, refused where it was measured on
    another device (its figures are that machine's)."""
    if not path.exists():
        return {"rows": []}
    try:
        profile = read_json(path)
    except ValueError as err:
        raise ValueError(f"{path} is not a profile (not JSON: {err}); delete it and run resbench tune") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("rows"), list):
        raise ValueError(f"{path} is not a profile (no rows); delete it and run resbench tune")
    if device is not None and profile.get("device") not in (None, device_name(device)):
        raise ValueError(f"{path} was measured on {profile['device']}, not on this {device_name(device)}: "
                         "give another --profile, or none (each device has its own)")
    return profile


def _key(row: dict) -> tuple:
    return tuple(row.get(k) for k in ROW_KEYS)


def add_row(path: Path, profile: dict, row: dict) -> dict:
    """`row` into the profile (replacing the one it measures again), written at once, atomically."""
    profile["rows"] = [r for r in profile["rows"] if _key(r) != _key(row)] + [row]
    write_json(path, profile)
    return row


def tune(data: CifarData, engine: Engine, path: Path, networks: tuple[str, ...] = ("resnet20",),
         time_limit_s: float | None = None, iterations: int = 200, batch_size: int = 128,
         sizes: tuple[int, ...] = PACK_SIZES, graph: bool | None = None,
         say: Callable[[str], None] = lambda line: None) -> dict:
    """Measure `networks` on `engine`'s device within `time_limit_s` (see the module docstring), each row
    written to `path` as it is measured; returns the profile, with "stopped": why it ended early, if it did.
    `graph`: packs step captured (default on CUDA, as `run --pack` steps them) or not."""
    engine = replace(engine.resolve(), compile=False, graph="off")
    captured = engine.device.startswith("cuda") if graph is None else graph
    packed = replace(engine, graph="cuda" if captured else "off").resolve()
    profile = load_profile(path, engine.device)
    profile.update(device=device_name(engine.device), torch=torch.__version__)
    recipe = CifarRecipe(batch_size=batch_size)
    with stop_on_signals(), tempfile.TemporaryDirectory(prefix="resbench-tune-") as tmp:
        deadline = Deadline(time_limit_s)

        def measured(row: dict) -> dict | None:
            """The row, written, unless the deadline cut its measurement short (then: no row)."""
            if deadline.reason():
                return None
            say(describe(row))
            return add_row(path, profile, {"precision": engine.precision, **row})

        try:
            measured({"what": "peak", "tflop_per_s": round(peak_tflops(engine.device), 1)})
            for network in networks:
                _steps(network, data, engine, iterations, recipe, deadline, measured)
                _packs(network, data, packed, iterations, batch_size, sizes, Path(tmp) / network, deadline,
                       measured)
        except Cut:
            pass
        if reason := deadline.reason():
            profile["stopped"] = reason
            say(f"stopped: {reason}; {len(profile['rows'])} rows in {path}")
    return profile


def _steps(network: str, data: CifarData, engine: Engine, iterations: int, recipe: CifarRecipe, deadline: Deadline,
           measured: Callable[[dict], dict | None]) -> None:
    captured = replace(engine, graph="cuda" if engine.device.startswith("cuda") else "dry")
    ways = {}
    for way, how in (("plain", replace(engine, graph="off")), ("captured", captured)):
        try:
            ways[way] = one_way(network, data, how, iterations, recipe, deadline)
        except Cut:
            raise
        except Exception as err:  # noqa: BLE001  (that way is not taken; the plain step's own failure is said)
            measured({"what": "step", "network": network, "graph": how.graph, "way": way, "failed": first_line(err)})
            continue
        row = {"what": "step", "network": network, "graph": how.graph, "way": way, "path": ways[way]["path"],
               "img_per_s": round(ways[way]["img_per_s"], 1), "setup_s": round(ways[way]["setup_s"], 2),
               "last10_loss": _last10(ways[way]["losses"])}
        if way == "captured" and "plain" in ways:
            a, b = row["last10_loss"], _last10(ways["plain"]["losses"])
            row["agrees"] = math.isfinite(a) and abs(a - b) <= AGREE * abs(b) + 0.02
        if measured(row) is None:
            raise Cut("the deadline")


def _packs(network: str, data: CifarData, engine: Engine, iterations: int, batch_size: int, sizes: tuple[int, ...],
           out: Path, deadline: Deadline, measured: Callable[[dict], dict | None]) -> None:
    base = {"what": "pack", "network": network, "graph": engine.graph}
    check = pack_agrees(data, engine, out / "check", batch_size=batch_size, model=network)
    if measured({**base, "what": "check", **check}) is None:
        raise Cut("the deadline")
    if not check["agree"]:
        return  # packed runs do not compute what they compute alone here: no pack is chosen
    best, last_wall = 0.0, None
    for k in sorted(sizes):
        if last_wall is not None and deadline.left() is not None and 2 * last_wall > deadline.left():
            measured({**base, "slots": k, "failed": "not measured: would not end within the time limit"})
            return
        try:
            result = pack_throughput([network], k, iterations, data, engine, out / f"k{k}", batch_size,
                                     time_limit_s=deadline.left())
        except Exception as err:  # noqa: BLE001  (out of memory, or a run failed: the best size so far is kept)
            if not deadline.reason():
                measured({**base, "slots": k, "failed": first_line(err)})
            return
        rate = result["steady_img_per_s"]
        if measured({**base, "slots": k, "img_per_s": rate, "per_run_img_per_s": result["per_run_img_per_s"],
                     "tflop_per_s": result["tflop_per_s"], "wall_s": result["wall_s"], "step": result["step"]}) is None:
            raise Cut("the deadline")
        if not rate > best:  # no faster than a smaller pack: larger ones will not be either
            return
        best, last_wall = rate, result["wall_s"]


def _last10(losses: list[float]) -> float:
    tail = losses[-10:]
    return sum(tail) / len(tail)


def describe(row: dict) -> str:
    """One line about a measured row, for the console."""
    what = row["what"]
    if what == "peak":
        return f"peak: a bf16 matrix product, {row['tflop_per_s']} TFLOP/s"
    if "failed" in row:
        return f"{row['network']} {what} {row.get('way') or row.get('slots')}: {row['failed']}"
    if what == "step":
        return f"{row['network']} {row['way']} step: {row['img_per_s']:,.0f} img/s ({row['path']})"
    if what == "check":
        return f"{row['network']}: two runs packed {'compute' if row['agree'] else 'do NOT compute'} what they " \
               f"compute alone (largest loss difference {row['max_loss_diff']:.2g})"
    return f"{row['network']} pack of {row['slots']}: {row['img_per_s']:,.0f} img/s, {row['per_run_img_per_s']:,.0f} per run"


def _rows(profile: dict, network: str, precision: str | None, graph: str | None, what: str) -> list[dict]:
    return [r for r in profile["rows"] if r["what"] == what and r.get("network") == network
            and precision in (None, r["precision"]) and graph in (None, r.get("graph"))]


def chosen_pack(profile: dict, network: str, precision: str | None = None, graph: str | None = None) -> int | None:
    """The pack size for `network`: the smallest K within 5% of the best measured rate; 1 where packed runs
    were found to differ from runs alone; None where the profile has measured neither."""
    checks = _rows(profile, network, precision, graph, "check")
    if any(not c["agree"] for c in checks):
        return 1
    sizes = [r for r in _rows(profile, network, precision, graph, "pack") if "failed" not in r]
    if not checks or not sizes:
        return None
    return chosen_size([{"slots": r["slots"], "steady_img_per_s": r["img_per_s"]} for r in sizes])


def measured_rate(profile: dict, network: str, pack: int, precision: str | None = None,
                  graph: str | None = None) -> float | None:
    """img/s of one run of `network` in a pack of `pack` (pack 1: alone, the faster of the steps measured),
    as measured on this machine; None where the profile has not measured it (never a guess)."""
    rows = [r for r in _rows(profile, network, precision, graph, "pack") if r["slots"] == pack and "failed" not in r]
    if rows:
        return rows[-1]["per_run_img_per_s"]
    if pack == 1:
        steps = [r["img_per_s"] for r in _rows(profile, network, precision, graph, "step") if "failed" not in r]
        return max(steps, default=None)
    return None


def auto_pack(engine: Engine, jobs: list, data: CifarData | CifarFiles, packable: bool, path: Path | None,
              graph: bool | None, say: Callable[[str], None] = lambda line: None) -> int:
    """`run --pack auto`: 1 off CUDA, for a single run, or where runs cannot be packed (`packable` False:
    --jobs, --launcher, --fuse; ImageNet runs); else `pack_for` the plan's networks."""
    runs = [job.run for job in jobs]
    if not packable or len(runs) < 2 or not engine.device.startswith("cuda") or \
            not all(isinstance(run, CifarRun) for run in runs):
        return 1
    return pack_for(sorted({run.model for run in runs}), len(runs), engine, data,
                    path or profile_path(engine.device), graph, say)


def pack_for(networks: list[str], runs: int, engine: Engine, data: CifarData | CifarFiles, path: Path,
             graph: bool | None = None, say: Callable[[str], None] = lambda line: None,
             brief_s: float = BRIEF_S) -> int:
    """How many of `runs` runs of `networks` to pack: the smallest size the profile chose over the networks
    (mixed depths share the device), at most `runs`. Networks it lacks are measured first, at most
    `brief_s` seconds (`resbench tune` measures at length); where that measures no pack, 1."""
    engine = engine.resolve()
    captured = "cuda" if (engine.device.startswith("cuda") if graph is None else graph) else "off"
    profile = load_profile(path, engine.device)
    missing = [n for n in networks if chosen_pack(profile, n, engine.precision, captured) is None]
    if missing:
        say(f"--pack auto: {path} has no pack size of {', '.join(missing)} ({engine.precision}); measuring "
            f"for at most {brief_s:.0f} s (resbench tune measures at length)")
        data = data.load() if isinstance(data, CifarFiles) else data
        profile = tune(data, engine, path, tuple(missing), brief_s, BRIEF_ITERATIONS, graph=graph, say=say)
    k = min(min(chosen_pack(profile, n, engine.precision, captured) or 1 for n in networks), runs)
    say(f"--pack auto: {k} run{'s' if k > 1 else ''} at a time, as measured on this device ({path})")
    return k
