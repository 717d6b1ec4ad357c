"""The child process of ``isolation``: it trains one group of trials at a time, as the driver
would (``execution.execute_group``), for the process that started it, and dies with it."""

from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from ..spec import PlannedTrial
from ..store import Store


def _die_with_parent(ppid: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != ppid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == ppid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="vat-study-parent-watch", daemon=True).start()


def child_main(fd: int, dump: str, ppid: int) -> None:
    """The child's loop: one request (a group of trials) at a time, until its parent closes the pipe."""
    import faulthandler

    from ..signals import install_stop_signals

    _die_with_parent(ppid)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install_stop_signals()
    stacks = open(dump, "w")  # noqa: SIM115  kept open for faulthandler
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
    conn = Connection(fd)
    conn.send(("hello", threading.get_ident()))
    stores: dict[str, Store] = {}
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        try:
            _serve(conn, request, stores)
        except KeyboardInterrupt as stop:
            from ..signals import stop_of

            stopped = stop_of(stop)
            _send(conn, ("interrupted", f"stopped by {stopped.name}" if stopped else "interrupted"))
            return


def _send(conn: Connection, message: tuple[str, Any]) -> None:
    try:
        conn.send(message)
    except (OSError, ValueError):
        os._exit(1)  # the parent is gone


def _serve(conn: Connection, request: dict[str, Any], stores: dict[str, Store]) -> None:
    from .execution import execute_group, trackers_for

    os.environ.clear()
    os.environ.update(request["env"])  # the parent's, now (failpoints, the command line's provenance)
    if os.getcwd() != request["cwd"]:
        os.chdir(request["cwd"])
    store = stores.get(request["storage"]) or stores.setdefault(request["storage"], Store(request["storage"]))
    trials: list[PlannedTrial] = request["trials"]  # (pickled with their resolved configs)
    track = trackers_for(*request["tracking"]) if request["tracking"] else None
    try:
        result = execute_group(store, request["study_id"], trials, request["claim"], timeout=request["timeout"],
                               track=track, on_claimed=lambda leases, keys: _send(conn, ("claimed", (leases, keys))),
                               **request["kwargs"])
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001  a store or disk fault: the parent raises it, as the driver would
        import pickle

        try:
            pickle.dumps(e)
        except Exception:  # noqa: BLE001
            e = RuntimeError(f"{type(e).__name__}: {e}")
        _send(conn, ("raised", e))
        return
    _send(conn, ("done", result))
