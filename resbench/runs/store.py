"""The result store: a folder of run directories that many processes share safely.

A run directory is named by its model, schedule, key and seed (`resbench.runs.rundir`), so a
sweep that is started again finds its finished runs and skips them, and its unfinished
ones and resumes them. A process trains a run only while it holds the run's lock (an
advisory `flock` on `<run>/.lock`): two workers, two `resbench run` commands or two Slurm
tasks never train the same run at once, and the kernel drops the lock of a process that
dies, even by SIGKILL, so the run can be picked up again. Files are written atomically
(temp file + rename, `resbench.host.files`), so no reader sees half a file.

Run states, as `resbench status` shows them:
    done       summary.json says done
    diverged   the loss became NaN/inf; excluded from means, flagged in reports
    failed     an exception stopped it (error.txt has the traceback); a rerun retries it
    paused     stopped by --time-limit at a checkpoint; a rerun resumes it
    running    a live process holds its lock
    stopped    no summary and no lock: the process died (killed, preempted); a rerun resumes it
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from resbench.runs.rundir import read_status, recent_train_rates

LOCK = ".lock"
FINISHED = ("done", "diverged")  # a result: never trained again (unless --fresh)
ENDED = (*FINISHED, "failed")  # not trained again in this sweep; a new sweep retries "failed"


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[bool]:
    """Hold the run's lock while the block runs; yields False if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(run_dir: Path) -> bool:
    lock = run_dir / LOCK
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def run_state(run_dir: Path) -> str:
    """One of the states in this module's docstring."""
    status = read_status(run_dir)
    if status in ENDED:
        return status
    if is_locked(run_dir):
        return "running"
    return "paused" if status == "paused" else "stopped"


def eta_s(run_dir: Path, iterations_left: int, batch_size: int, fallback_img_per_s: float | None = None) -> float | None:
    """Seconds of training a run has left, at its last measured img/s (None while unmeasured)."""
    rates = recent_train_rates(run_dir)
    rate = rates[-1] if rates else fallback_img_per_s
    return max(0, iterations_left) * batch_size / rate if rate else None
