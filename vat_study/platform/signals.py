"""SIGTERM (a scheduler's preemption, ``kill``) and SIGHUP (a closed terminal) stop a run the way
Ctrl-C does: ``Stopped``, a ``KeyboardInterrupt``, is raised in the main thread, so every path
that handles Ctrl-C (the trial marked FAILED, kind interrupted; Ray shut down on exit) handles
these too; the CLI exits 128 + the signal's number (143, 129). While that cleanup runs, a
repeated SIGTERM / SIGHUP is ignored (a second Ctrl-C still stops at once)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


class Stopped(KeyboardInterrupt):
    """The run got SIGTERM or SIGHUP (``signum``)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


received: int | None = None
"""The stop signal this process got (Ray Tune re-raises a plain KeyboardInterrupt in its place)."""


def _handler(signum: int, _frame) -> None:
    global received
    received = signum
    for s in STOP_SIGNALS:  # once: the cleanup that follows is not interrupted again
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signum)


def install_stop_signals() -> None:
    """SIGTERM / SIGHUP raise ``Stopped`` in the main thread from now on (Ray's ``ray.init``
    sets its own SIGTERM handler, which exits without cleanup: call this again after it)."""
    if threading.current_thread() is threading.main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, _handler)


def stop_of(exc: KeyboardInterrupt) -> Stopped | None:
    """The ``Stopped`` behind ``exc``: itself, or the signal this process got (None: Ctrl-C)."""
    if isinstance(exc, Stopped):
        return exc
    return Stopped(received) if received is not None else None


def exit_code(exc: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + the signal for SIGTERM / SIGHUP."""
    stop = stop_of(exc)
    return stop.exit_code if stop is not None else 130


def interrupted_text(exc: BaseException | None, ctrl_c: str) -> str:
    """What a trial stopped by ``exc`` records: the signal named for SIGTERM / SIGHUP, ``ctrl_c``
    for Ctrl-C."""
    stop = stop_of(exc) if isinstance(exc, KeyboardInterrupt) else None
    return f"interrupted: the run got {stop.name} before this trial finished" if stop is not None else ctrl_c


@contextmanager
def stop_signals() -> Iterator[None]:
    """For a run (``study.run_study``): SIGINT raises KeyboardInterrupt (also in a run started in
    the background by a non-interactive shell, which would otherwise inherit SIGINT as ignored),
    SIGTERM / SIGHUP raise ``Stopped``; the handlers there were before are put back after. Outside
    the main thread (where no handler can be set) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, *STOP_SIGNALS)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install_stop_signals()
    try:
        yield
    finally:
        for s, handler in before.items():
            if handler is not None:  # (None: set from outside Python, cannot be put back)
                signal.signal(s, handler)
