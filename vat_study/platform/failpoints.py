"""Named failpoints: deterministic fault injection for the reliability tests.

The platform calls ``failpoint(name)`` at the places where a crash would hurt most. Normally it
does nothing (one dictionary lookup). With the environment variable

    VAT_STUDY_FAILPOINTS="trial.report@3=kill,store.commit@2=raise"

the n-th time (default: the first) this process passes ``name``, the action runs (``name@*``:
every time, as ``trial.report@*=sleep:0.2`` to slow every evaluation of a fast trial):

    kill        SIGKILL this process (no cleanup, no atexit: what a power cut or OOM kill does)
    raise       raise ``FailpointError`` (an ordinary exception)
    sleep:S     sleep S seconds (to widen a race window)
    disconnect  raise the error a lost database connection gives (SQLAlchemy's OperationalError,
                connection invalidated), as a PostgreSQL restart mid-transaction does
    enospc      raise OSError ENOSPC (a full disk)
    print:MB    write MB megabytes of text to sys.stdout (a trial that floods its output)

With ``VAT_STUDY_FAILPOINTS_ONCE=DIR`` each failpoint fires at most once across all processes
(a marker file in DIR, created atomically), so a Ray trial that is retried in a fresh worker is
not killed again. The points (see where they are called):

    study.planned    driver: the study is registered, before any trial starts
    trial.started    a trial's row is RUNNING, before training
    trial.report     a per-step metrics write has committed
    trial.finished   a trial is COMPLETE, before the next one starts
    store.commit     inside a store write transaction, before COMMIT
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

ENV = "VAT_STUDY_FAILPOINTS"
ONCE_ENV = "VAT_STUDY_FAILPOINTS_ONCE"


class FailpointError(RuntimeError):
    """Raised by a failpoint whose action is ``raise``."""


_hits: Counter[str] = Counter()
_parsed: tuple[str, dict[str, tuple[int, str]]] = ("", {})


def _table(raw: str) -> dict[str, tuple[int, str]]:
    """The parsed setting; a new setting starts counting hits afresh."""
    global _parsed
    if _parsed[0] != raw:
        _hits.clear()
        table: dict[str, tuple[int, str]] = {}  # nth 0: every hit
        for item in filter(None, (s.strip() for s in raw.split(","))):
            point, _, action = item.partition("=")
            name, _, nth = point.partition("@")
            table[name.strip()] = (0 if nth.strip() == "*" else int(nth) if nth else 1, action.strip() or "raise")
        _parsed = (raw, table)
    return _parsed[1]


def failpoint(name: str) -> None:
    raw = os.environ.get(ENV)
    if not raw:
        if _parsed[0]:
            _table("")
        return
    entry = _table(raw).get(name)
    if entry is None:
        return
    _hits[name] += 1
    nth, action = entry
    if nth and _hits[name] != nth:
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(os.path.join(once, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # SIGKILL is asynchronous only in theory; never run past the point
    elif action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
    elif action == "disconnect":
        from sqlalchemy.exc import OperationalError

        raise OperationalError(f"failpoint {name!r}", None, ConnectionError("server closed the connection "
                                                                             "unexpectedly"), connection_invalidated=True)
    elif action.startswith("print:"):
        import sys

        line = "x" * 1023 + "\n"
        for _ in range(int(float(action.split(":", 1)[1]) * 1024)):
            sys.stdout.write(line)
    elif action == "enospc":
        import errno

        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"failpoint {name!r}")
    else:
        raise FailpointError(f"failpoint {name!r} (hit {_hits[name]})")
