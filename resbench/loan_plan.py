"""What a GPU loan trains, and when: the plan, the preflight's engine, admission to the deadline.

The plan, in order: first the data calibration (`resbench calibrate`: airbench's own recipe on
this data, in a process of its own, within `calibrate_s`); then the precision control (ResNet-20
at the full recipe in true fp32, `control_seeds` seeds packed side by side, against the ladder's
bf16+TF32 seeds: `report/arithmetic.py` compares them); then the stages asked for (by default
the budget ladder, the ten Table 6 / Fig. 6 networks at 1/32 then 1/16, 3 seeds each, then the
paper's full recipe, cheapest network first, carried between loans); where the stages leave out
a rung of the ladder, its runs fill the time that no run of those stages can use (they must
finish). ResNet-1202 only when named. After the preflight, a GPU's loan measures the deep nets'
compiled captured step (`resbench bench step`, `measure_steps`) and trains with it nowhere.

The preflight (`resbench.preflight`) chooses the step (eager or captured), and how runs share the
device: K runs packed side by side (`resbench.train.pack`), or a row's seeds fused; a check that
fails there is logged, never fatal. A run that will finish starts whatever time is left; one
that would pause needs `min_start_s` left and its checkpoint must travel back with the others'.
Every run that ends is packed for the way back at once (`loan.pack`).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

from .calibrate import CALIBRATION_FOLDER, DEFAULT_PLAN
from .loan import fits, pack, seed_runs, unfinished, unpack_data
from .results import write_json

MIN_START_S = 90  # no run that would pause starts with less time than this left
CALIBRATE_S = 180  # airbench94 x 10 and airbench96 x 3 on an H200, guessed from A100's 3.8 and 46 s a run
CONTROL = "resnet20"  # the precision control's network: its bf16+TF32 seeds are the ladder's
DEEP = ("resnet56", "resnet110")  # whose captured step `resbench bench step` measures compiled (a GPU only)
STEPS_S = 90  # the most that measurement may take of a loan: ResNet-56 first, ResNet-110 if time is left
GUESSED_IMG_PER_S = {"cuda": 5000.0, "cpu": 200.0}  # ResNet-20, eager, when the preflight could not measure
LADDER = ("1/32", "1/16")  # budgets, before the full recipe ("1")
MODELS = ("resnet20", "plain20", "resnet32", "plain32", "resnet44", "plain44", "resnet56", "plain56",
          "resnet110", "plain110")  # cheapest first; ResNet-1202 only when named


def checkpoint_bytes(model: str) -> int:
    """A run's checkpoint: fp32 weights and SGD momentum, BN buffers, and a little more."""
    from .models import build_model

    net = build_model(model)
    return int(1.1 * sum(p.numel() * 8 for p in net.parameters())) + 64 * 1024


def seconds_per_run(model: str, iterations: int, batch: int, img_per_s: float) -> float:
    """A CIFAR run's time from the preflight's ResNet-20 rate: cost grows with depth (3x3 layers)."""
    from .models import parse_model_name

    return iterations * batch / img_per_s * (parse_model_name(model).depth - 2) / 18 * 1.15  # + tests


def train(gpu_dir: Path, repo: Path, work: Path, out: Path, deadline: float, device: str, preset: str,
          stages: tuple[str, ...], models: tuple[str, ...], seeds: int, preflight_iterations: int,
          min_start_s: float = MIN_START_S, margin_s: float = 20.0, say: Callable[[str], None] = print,
          pack_sizes: tuple[int, ...] | None = None, calibration: tuple[str, ...] = DEFAULT_PLAN,
          calibrate_s: float = CALIBRATE_S, control_seeds: int = 3, steps_s: float = STEPS_S) -> dict:
    """There: everything but the last packing (see the module docstring); returns what was trained."""
    from .data.cifar import cifar10_files
    from .jobs import make_groups, train_group, train_pack
    from .runner import prepare
    from .store import FINISHED, read_status
    from .train.recipe import cifar_recipe

    data = cifar10_files(unpack_data(gpu_dir, work))
    say(f"data unpacked and checked: {data.folder}")
    say(f"results seeded: {seed_runs(repo / 'reports' / 'runs', gpu_dir / 'carry', work / 'runs')}")
    calibrate(gpu_dir, work, calibration, min(calibrate_s, deadline - time.time() - margin_s), say)
    engine, rate, fuse, slots = _preflight(data, device, preflight_iterations, out, cifar_recipe(preset).batch_size,
                                           say, pack_sizes)
    if device.startswith("cuda") and steps_s > 0:  # a CPU's captured step is its dry mode: nothing to measure
        measure_steps(work / "data", device, out / "preflight.json", min(steps_s, deadline - time.time() - margin_s),
                      say)
    trained, must_finish, plan = [], {}, []
    fill = [b for b in LADDER if b not in stages]
    for budget, finish_only in [(b, False) for b in stages] + [(b, True) for b in fill]:
        jobs, data, engine = prepare("figure6", preset, list(models), seeds, work / "runs", data=data,
                                     engine=engine, budget=budget, say=say)
        jobs = sorted(jobs, key=lambda j: models.index(j.run.model))
        must_finish.update({j.dir: finish_only or Fraction(budget) < 1 for j in jobs})
        plan += [(group, finish_only) for group in make_groups(jobs, fuse)]

    def ended(summary: dict) -> None:
        trained.append({k: summary.get(k) for k in ("dir", "status", "iteration", "img_per_s", "step")})
        say(f"{summary['status']}: {Path(summary['dir']).name} at {summary.get('iteration')} "
            f"({summary.get('img_per_s')} img/s, {summary.get('step')})")
        say(f"packed: {', '.join(pack(work / 'runs', out))}")

    def admit(group: list, finish_only: bool) -> bool:
        left = deadline - time.time()
        why = _not_now(group, work / "runs", rate, left, min_start_s, margin_s, must_finish[group[0].dir])
        if why and not finish_only:  # fillers that do not fit are not worth a line each
            say(f"not started: {', '.join(j.dir.name for j in group)} ({why}, {left:.0f} s left)")
        return why is None

    if control_seeds and engine.precision != "fp32":
        control, _, fp32 = prepare("figure6", preset, [CONTROL], control_seeds, work / "runs", data=data,
                                   engine=replace(engine, precision="fp32"), budget="1", say=say)
        must_finish.update({job.dir: False for job in control})  # the full recipe: it may pause and travel
        say(f"precision control: {CONTROL} x {control_seeds} in true fp32 (TF32 off), packed")
        for summary in train_pack(control, data, fp32, max(slots, control_seeds), False,
                                  deadline - time.time() - margin_s, lambda job, _: admit([job], False)):
            if not summary.get("already") and summary["status"] != "taken":
                ended(summary)
    elif control_seeds:
        say("precision control: skipped (the loan's engine computes in fp32 already: nothing to compare)")
    if fuse == 1:  # runs packed side by side (a pack of one: one run at a time)
        fillers = {group[0].dir for group, finish_only in plan if finish_only}
        jobs = [group[0] for group, _ in plan]
        for summary in train_pack(jobs, data, engine, slots, False, deadline - time.time() - margin_s,
                                  lambda job, _: admit([job], job.dir in fillers)):
            if not summary.get("already") and summary["status"] != "taken":
                ended(summary)
        return {"trained": trained, "engine": repr(engine), "pack": slots}
    for group, finish_only in plan:  # a row's seeds fused
        group = [job for job in group if read_status(job.dir) not in FINISHED]
        if group and admit(group, finish_only):
            for summary in train_group(group, data, engine, False, deadline - time.time() - margin_s):
                ended(summary)
    return {"trained": trained, "engine": repr(engine), "fuse": fuse}


def calibrate(gpu_dir: Path, work: Path, plan: tuple[str, ...], seconds: float, say: Callable[[str], None]) -> None:
    """`resbench calibrate` on the loan's data, in a process of its own: airbench sets cuDNN flags of its own
    when imported, and whatever it does to the CUDA context ends with that process. Never fatal."""
    if not plan or seconds < 30:
        say(f"calibration: skipped ({'none asked for' if not plan else f'{seconds:.0f} s left for it'})")
        return
    site = str(gpu_dir.resolve() / "site")  # airbench's source, bundled (`loan.bundle_airbench`)
    path = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": path}
    command = [sys.executable, "-m", "resbench", "calibrate", *plan, "--data-root", str(work / "data"),
               "--out", str(work / "runs" / CALIBRATION_FOLDER), "--time-limit", f"{seconds:.0f}"]
    try:
        ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 30)
        lines = (ran.stdout + ran.stderr).strip().splitlines() + [f"exit {ran.returncode}"]
    except subprocess.TimeoutExpired:
        lines = [f"cut after {seconds + 30:.0f} s; the seeds it finished are kept"]
    for line in lines:
        say(f"calibration: {line}")


def measure_steps(data_root: Path, device: str, preflight: Path, seconds: float, say: Callable[[str], None],
                  models: tuple[str, ...] = DEEP, backend: str = "inductor", iterations: int = 100) -> None:
    """`resbench bench step` for each deep net, in a process of its own (a compilation may take minutes, and
    whatever it does ends with it), within `seconds` in all; its rows go into preflight.json as "deep_steps".
    Measured only: no loan trains with a compiled step before a control over seeds."""
    rows, ends = [], time.time() + seconds
    for model in models:
        left = ends - time.time()
        if left < 20:
            say(f"step measurement: {model} not measured ({left:.0f} s left for it)")
            continue
        with tempfile.TemporaryDirectory(prefix="resbench-steps-") as tmp:
            command = [sys.executable, "-m", "resbench", "bench", "step", "--models", model, "--device", device,
                       "--data-root", str(data_root), "--compile-backend", backend, "--iterations", str(iterations),
                       "--out", f"{tmp}/steps.json"]
            try:
                ran = subprocess.run(command, capture_output=True, text=True, timeout=left,
                                     env={**os.environ, "COLUMNS": "160"})
                found = json.loads(Path(tmp, "steps.json").read_text())["results"] if ran.returncode == 0 else []
                say(f"step measurement: {model}: " + ("; ".join(
                    f"{r['way']} {r['img_per_s']:,.0f} img/s (set-up {r['setup_s']:.0f} s)" for r in found)
                    or f"exit {ran.returncode}: {(ran.stderr.strip().splitlines() or [''])[-1]}"))
                rows += found
            except subprocess.TimeoutExpired:
                say(f"step measurement: {model} cut after {left:.0f} s")
    report = json.loads(preflight.read_text()) if preflight.exists() else {}
    write_json(preflight, {**report, "deep_steps": rows})


def _not_now(group: list, runs: Path, rate: float, left: float, min_start_s: float, margin_s: float,
             must_finish: bool) -> str | None:
    """Why a group of runs is not started now, or None. A fused group's runs train side by side, so it
    takes as long as its longest run. A run that will finish may start whatever time is left; one that
    will pause must have `min_start_s` left to be worth its checkpoint, and that checkpoint must travel."""
    need = max(seconds_per_run(j.run.model, j.run.recipe.iterations - _done(j.dir), j.run.recipe.batch_size, rate)
               for j in group)
    if need <= left - margin_s:
        return None
    if must_finish:
        return f"cannot finish before the deadline: needs about {need:.0f} s"
    if left < min_start_s:
        return f"less than {min_start_s:.0f} s left: needs about {need:.0f} s"
    carry = {**unfinished(runs), **{f"{j.dir.name}/checkpoint.pt": checkpoint_bytes(j.run.model) for j in group}}
    return None if fits(carry) else "its checkpoints would not travel back"


def _preflight(data, device: str, iterations: int, out: Path, batch: int, say: Callable[[str], None],
               pack_sizes: tuple[int, ...] | None = None):
    """The preflight's engine, per-run img/s, fuse and pack size; where the preflight itself fails, the plain
    eager step, one run at a time and a guessed rate, said in the log: a failed measurement never ends the loan."""
    from .preflight import PACK_SIZES, preflight
    from .train.engine import Engine

    try:
        check = preflight(data, device, iterations, out / "preflight.json", batch, pack_sizes or PACK_SIZES)
        say(f"preflight: {json.dumps(check['chosen'])}" + (f"; failed: {check['failed']}" if check["failed"] else ""))
        chosen = check["chosen"]
        return check["engine"], chosen["run_img_per_s"], chosen["fuse"], chosen.get("pack", 1)
    except Exception as err:  # noqa: BLE001  (whatever broke, training goes on with the plain step)
        rate = GUESSED_IMG_PER_S["cuda" if device.startswith("cuda") else "cpu"]
        say(f"preflight failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            f"training with the plain eager step, times estimated at {rate} img/s")
        return Engine(device=device, compile=False).resolve(), rate, 1, 1


def _done(run_dir: Path) -> int:
    from .store import last_iteration

    return last_iteration(run_dir) if run_dir.exists() else 0
