"""Run directories: everything about one training run, as plain files pandas reads. This module owns
their layout: every file name, and every read and write of a run's config, env, summary and metrics.

    <runs>/<model>-<schedule>-<key>-s<seed>/
        config.json      resolved config (model, recipe, seed, data, precision) and its key
        env.json         git commit (+ dirty), versions, device/GPU, data variant and sha256
        metrics.jsonl    one JSON object per line, its "record" saying which: train (loss, error, lr,
                         img/s), test (error), warmup (the warm-up window's error), event (resumed)
        responses.json   Fig. 7 probe: std of every 3x3 layer's response, in layer order
        summary.json     status (done | diverged | paused | failed), final test error, wall time, img/s
        error.txt        traceback of a failed run
        checkpoint.pt    latest checkpoint (the one before kept as checkpoint.prev.pt); never committed
        .lock            held by the process training the run (`resbench.runs.store`)
        repeats/<name>/  the run trained again elsewhere (its metrics.jsonl, summary.json, and repeat.json
                         saying where), to compare the two

    <runs>/calibration/<peer>-<key>-s<seed>/   a calibration run (`resbench.calibrate`): config.json with
        "kind": "calibration", env.json, summary.json

A folder of run directories is a results folder; `resbench.runs.store` shares it safely between processes.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from resbench.host.files import atomic_write_text, read_json, write_json

CONFIG, ENV, METRICS, RESPONSES, SUMMARY, ERROR = (
    "config.json", "env.json", "metrics.jsonl", "responses.json", "summary.json", "error.txt")
REPEATS, REPEAT = "repeats", "repeat.json"
CALIBRATION_FOLDER = "calibration"  # of a results folder: `resbench calibrate`'s runs, which reports read there
RESULTS = (SUMMARY, METRICS, ERROR)  # what training writes: forgotten when a run starts again from scratch
SMALL_FILES = (CONFIG, ENV, METRICS, RESPONSES, SUMMARY, ERROR)  # everything but checkpoints and the lock


class RunDirError(ValueError):
    """A run directory whose files cannot be read: the message names the file and what to do."""


def run_dir_for(runs: Path, model: str, schedule: str, key: str, seed: int) -> Path:
    return Path(runs) / f"{model}-{schedule}-{key}-s{seed}"


def run_dirs(runs: Path) -> list[Path]:
    """The run directories of a results folder (those with a config), by name."""
    return sorted(p.parent for p in Path(runs).glob(f"*/{CONFIG}"))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).exists()


def repeat_dirs(runs: Path) -> list[tuple[Path, Path]]:
    """(run, repeat) for every run of a results folder trained again (`<run>/repeats/<name>/`)."""
    return [(m.parents[2], m.parent) for m in sorted(Path(runs).glob(f"*/{REPEATS}/*/{METRICS}"))]


def read_repeat(repeat_dir: Path) -> dict:
    """Where a repeat was trained ({} where it does not say)."""
    return _read_optional(repeat_dir / REPEAT)


# --- the run's identity ------------------------------------------------------------------------

# Recipe fields that say when a run logs, tests and checkpoints: they change what is written
# down, never what is trained. (ImageNet's eval_every stays: the plateau schedule reads it.)
CADENCE = {"cifar": ("log_every", "eval_every", "checkpoint_every"), "imagenet": ("log_every", "checkpoint_every")}


def identity(config: dict) -> dict:
    """What determines a run's result: model, training recipe, seed, data, arithmetic, budget.

    Not in it: labels (preset name, tier wording, which options were the row's and which
    were --set), the cadence of logs, tests and checkpoints, where the data lies, and how
    fast the step ran (layout, compile, fusing). A run keeps its name through edits of those.
    """
    recipe = dict(config["recipe"])
    for name in CADENCE["imagenet" if "bn_group" in recipe else "cifar"]:
        recipe.pop(name, None)
    data = {k: v for k, v in config["data"].items() if k != "source"}
    return {"model": config["model"], "seed": config["seed"], "recipe": recipe, "data": data,
            "precision": config["precision"], "tf32": config.get("tf32", False),
            "budget": config.get("budget", "1")}


def short_hash(obj: dict) -> str:
    """Ten hex digits of the sha256 of `obj` as sorted JSON: a run directory's key."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def config_key(config: dict) -> str:
    """A training run's key: the hash of its identity (`identity`): same result, same run directory."""
    return short_hash(identity(config))


# --- config, env, summary, responses, error -------------------------------------------------------

def read_config(run_dir: Path) -> dict:
    try:
        return read_json(run_dir / CONFIG)
    except (ValueError, OSError) as err:
        raise RunDirError(f"{run_dir / CONFIG} cannot be read ({type(err).__name__}: {err}); restore it "
                          f"from a copy, or move {run_dir.name} out of {run_dir.parent} to leave it out") from None


def write_config(run_dir: Path, config: dict) -> None:
    write_json(run_dir / CONFIG, config)


def read_env(run_dir: Path) -> dict:
    """The run's provenance, or {} before it has started."""
    return _read_optional(run_dir / ENV)


def write_env(run_dir: Path, env: dict) -> None:
    write_json(run_dir / ENV, env)


def read_summary(run_dir: Path) -> dict:
    """The run's summary, or {} while it has none (never started, or training)."""
    return _read_optional(run_dir / SUMMARY)


def write_summary(run_dir: Path, summary: dict) -> None:
    write_json(run_dir / SUMMARY, summary)


def read_status(run_dir: Path) -> str | None:
    """The status in the summary, or None while the run has no summary."""
    return read_summary(run_dir).get("status")


def forget_summary(run_dir: Path) -> None:
    """Drop a failed run's summary so that a new sweep trains it again (from its checkpoint)."""
    (run_dir / SUMMARY).unlink(missing_ok=True)


def forget_results(run_dir: Path) -> None:
    """Forget what training wrote (summary, metrics, traceback): the run starts again from scratch."""
    for name in RESULTS:
        (run_dir / name).unlink(missing_ok=True)


def read_responses(run_dir: Path) -> list[dict] | None:
    path = run_dir / RESPONSES
    return read_json(path) if path.exists() else None


def write_responses(run_dir: Path, responses: list[dict]) -> None:
    write_json(run_dir / RESPONSES, responses)


def write_error(run_dir: Path, trace: str) -> None:
    atomic_write_text(run_dir / ERROR, trace)


def _read_optional(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


# --- metrics ----------------------------------------------------------------------------------

def read_metrics(run_dir: Path, record: str | None = None) -> list[dict]:
    """Every readable record of the run's metrics.jsonl (only those of kind `record`: train, test, warmup,
    event), oldest first ([] before the first).

    A torn last line (a process killed, or a disk full, while it appended) is left out silently; an
    unreadable line before it is left out with a warning naming the run and the line, and the lines
    after it are kept.
    """
    path = run_dir / METRICS
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_parse(line))
        except ValueError:
            if number < len(lines):
                warnings.warn(f"{path}: line {number} is not a JSON record; left out", stacklevel=2)
    return _of_kind(records, record)


def tail_metrics(run_dir: Path, record: str | None = None, tail_bytes: int = 4096) -> list[dict]:
    """The last few metrics records (of kind `record`), oldest first: cheap to read while a run is writing."""
    path = run_dir / METRICS
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - tail_bytes))
        lines = f.read().splitlines()
    records = []
    for line in lines:
        try:
            records.append(_parse(line))
        except ValueError:  # the first line of the tail may be cut, the last torn
            continue
    return _of_kind(records, record)


def _parse(line: str | bytes) -> dict:
    record = json.loads(line)
    if not (isinstance(record, dict) and "iter" in record):
        raise ValueError("not a metrics record")
    if "split" in record:  # its name until 2026-12-03: every committed run directory has it
        record["record"] = record.pop("split")
    return record


def _of_kind(records: list[dict], record: str | None) -> list[dict]:
    return records if record is None else [r for r in records if r.get("record") == record]


def last_iteration(run_dir: Path) -> int:
    """The iteration of the last metrics record."""
    return reached(tail_metrics(run_dir))


def reached(records: list[dict]) -> int:
    """The iteration of the last of a run's metrics `records` (0 for none): where the run has got to."""
    return int(records[-1]["iter"]) if records else 0


def recent_train_rates(run_dir: Path) -> list[float]:
    """The img/s of the last few logged training records, oldest first."""
    return [r["img_per_s"] for r in tail_metrics(run_dir, "train") if r.get("img_per_s")]


def last_error(records: list[dict], record: str = "train") -> float | None:
    """The error of the last record of kind `record`: what a run resumed at its end reports as its final one."""
    return next((r["error"] for r in reversed(records) if r["record"] == record), None)


class MetricsLog:
    """A run's metrics.jsonl, append-only; on resume, records past the checkpoint are dropped first."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / METRICS

    def truncate_after(self, iteration: int) -> list[dict]:
        """Keep the readable records up to `iteration` (a checkpoint's) and return them."""
        keep = [r for r in read_metrics(self.path.parent) if r["iter"] <= iteration]
        if self.path.exists():
            atomic_write_text(self.path, "".join(f"{json.dumps(r)}\n" for r in keep))
        return keep

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
