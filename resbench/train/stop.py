"""When training must checkpoint and pause: its time limit has passed, or it was asked to stop.

SIGTERM (what `kill`, the end of a session or a scheduler sends) and a first Ctrl-C do not
kill a process that trains: they set a flag. Every training loop checks it after each step,
checkpoints its runs and finishes them as "paused", and the sweep starts no further run; a
rerun resumes them exactly. A second signal acts as it would have (Ctrl-C interrupts, a
second SIGTERM kills), so a stuck process can still be stopped.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested = threading.Event()
# a SIGTERM came: the process is ending, so its request holds for the next pack or run (a Ctrl-C's, for its loop)
_terminated = threading.Event()
_installed = 0  # nesting depth of stop_on_signals in the main thread


def requested() -> bool:
    return _requested.is_set()


def request() -> None:
    """Ask every loop of this process to checkpoint and pause (what the signal handler does)."""
    _requested.set()


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
            request()
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
        """Why to pause now ("stop requested", "time limit"), or None to go on."""
        if _requested.is_set():
            return "stop requested (SIGTERM or Ctrl-C)"
        if self.end is not None and time.perf_counter() >= self.end:
            return "time limit"
        return None
