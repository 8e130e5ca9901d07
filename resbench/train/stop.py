"""When training must checkpoint and pause: its time limit has passed, or it was asked to stop.

SIGTERM (what `kill`, the end of a session or a scheduler sends) and a first Ctrl-C do not
kill a process that trains: they request a stop, with its reason. Every training loop checks
it after each step, checkpoints its runs and finishes them as "paused" with that reason, and
the sweep starts no further run; a rerun resumes them exactly. A second signal acts as it
would have (Ctrl-C interrupts, a second SIGTERM kills), so a stuck process can still be stopped.

The reason says who stopped the run: the user (or whoever sent SIGTERM outside Slurm), Slurm's
SIGTERM to a task (preempted, requeued or cancelled), or Slurm's warning that the task's
walltime is near (`resbench.sweep.launch` requeues the task after that one).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
USER = "stop requested (SIGTERM or Ctrl-C)"
PREEMPTED = "preempted: Slurm's SIGTERM (preemption, scontrol requeue or scancel)"
WALLTIME = "walltime: Slurm's signal that the task's time limit is near"
_requested = threading.Event()
# a SIGTERM came: the process is ending, so its request holds for the next pack or run (a Ctrl-C's, for its loop)
_terminated = threading.Event()
_reason = USER  # why, once _requested is set
_installed = 0  # nesting depth of stop_on_signals in the main thread


def requested() -> str | None:
    """Why a stop was requested (USER, PREEMPTED, WALLTIME), or None."""
    return _reason if _requested.is_set() else None


def request(reason: str = USER) -> None:
    """Ask every loop of this process to checkpoint and pause (what the signal handlers do);
    the first reason given stays."""
    global _reason
    if not _requested.is_set():
        _reason = reason
        _requested.set()


def term_reason() -> str:
    """What a SIGTERM means here: inside a Slurm job it is Slurm's (SLURM_JOB_ID is set)."""
    return PREEMPTED if "SLURM_JOB_ID" in os.environ else USER


def reset() -> None:
    """Forget every stop request, a SIGTERM's too (what a new process starts with: tests)."""
    _terminated.clear()
    _requested.clear()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT request a stop instead of ending the process.

    Nested uses share the outermost handlers; outside the main thread (where Python cannot
    install handlers) it does nothing.
    """
    global _installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    if _installed == 0:
        if not _terminated.is_set():  # a SIGTERM holds for the process: the next pack or run starts none
            _requested.clear()

        def on_signal(signum, frame):
            request(term_reason() if signum == signal.SIGTERM else USER)
            signal.signal(signum, previous[signum])  # the next one acts as before

        previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    _installed += 1
    try:
        yield
    finally:
        _installed -= 1
        if previous and signal.getsignal(signal.SIGTERM) is not on_signal:
            _terminated.set()  # a SIGTERM came (its handler is spent): it holds for the rest of the process
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Deadline:
    """A loop's reason to pause: a stop was requested, or `seconds` have passed since it was made."""

    def __init__(self, seconds: float | None = None):
        self.end = None if seconds is None else time.perf_counter() + seconds

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.perf_counter()

    def reason(self) -> str | None:
        """Why to pause now (a requested stop's reason, "time limit"), or None to go on."""
        if (reason := requested()) is not None:
            return reason
        if self.end is not None and time.perf_counter() >= self.end:
            return "time limit"
        return None
