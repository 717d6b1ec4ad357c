"""Drivers and their heartbeats: several ``vat-study run`` processes of one study share its trials.

A *driver* is one ``vat-study run`` process of a study. It registers a row in ``vat_drivers``
(host, pid, the machine and process namespace its pid belongs to) and a background thread
renews the row's ``heartbeat_at`` every ``executor.heartbeat_every`` seconds (default 5). Each
trial it runs is *claimed* first (``Store.claim_trial``): one conditional ``INSERT ... ON
CONFLICT DO NOTHING`` (a trial nobody has recorded) or one conditional ``UPDATE ... WHERE
attempts = <seen> AND <claimable>`` (a FAILED trial, or a RUNNING one whose driver is dead):
whichever drivers race for a trial, on SQLite or on PostgreSQL, exactly one wins it. A RUNNING
trial belongs to its driver for as long as that driver is alive, which is:

* its row has not been marked finished, and
* its heartbeat is younger than ``executor.stale_after`` seconds (default 60), and
* where the driver ran on this machine (same host and process namespace), its process exists.

Only a trial whose driver is dead is ever failed or taken over by another driver (``reclaimed``:
a new attempt, so the dead driver's late writes are dropped by the lease; see ``Store``'s
fencing). A driver killed on this machine is known dead at once (its pid is gone); a driver on
another machine, or one that hangs, is dead once its heartbeat is ``stale_after`` old.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .repository import Store

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0
"""Seconds between two heartbeats of a driver (``executor.heartbeat_every``)."""
STALE_AFTER = 60.0
"""A driver whose heartbeat is older than this (seconds) is dead (``executor.stale_after``)."""

INTERRUPTED_BY_USER = "interrupted: stopped by the user (Ctrl-C) before this trial finished"

_this_process: set[str] = set()


def machine() -> str:
    """This host and its process namespace: where a pid names the same process as here."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{ns}"[:255]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_drivers() -> set[str]:
    """Tokens of the drivers started in this process (to mark their trials interrupted)."""
    return set(_this_process)


class Driver:
    """This process as a driver of one study: its row in ``vat_drivers`` and its heartbeat thread.
    Use as a context manager; on leaving, the thread stops and the row is marked finished (an
    exception leaving the block first marks this driver's RUNNING trials FAILED, interrupted)."""

    def __init__(self, store: Store, study_id: int, heartbeat_every: float = HEARTBEAT_EVERY,
                 stale_after: float = STALE_AFTER) -> None:
        self.store, self.study_id = store, study_id
        self.heartbeat_every, self.stale_after = float(heartbeat_every), float(stale_after)
        self.token = uuid.uuid4().hex
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Driver:
        self.store.register_driver(self.study_id, self.token, socket.gethostname(), machine(), os.getpid())
        _this_process.add(self.token)
        self._thread = threading.Thread(target=self._beat, name=f"vat-study-heartbeat-{self.token[:8]}", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            try:
                if not self.store.heartbeat(self.token):
                    log.warning("driver %s: another driver took this driver's trials over (its heartbeat was "
                                "older than %g s); their results from here on are dropped", self.token[:8],
                                self.stale_after)
                self.beats += 1
            except Exception as e:  # noqa: BLE001  a missed beat is retried; the trial goes on
                log.warning("driver heartbeat failed (%s); retrying in %g s", str(e).splitlines()[0][:200],
                            self.heartbeat_every)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_every + 60)
        try:
            self.store.finish_driver(self.token)  # first: from now on no claim of this driver wins
        finally:
            if exc_type is not None:  # so these are all its RUNNING trials, even with Ray workers still claiming
                from ..signals import interrupted_text  # Ctrl-C, or the SIGTERM / SIGHUP named

                text = interrupted_text(exc, INTERRUPTED_BY_USER) if issubclass(exc_type, KeyboardInterrupt) else \
                    f"interrupted: the run stopped ({exc_type.__name__}) before this trial finished"
                self.store.fail_running(self.study_id, text, "interrupted", drivers=[self.token])
