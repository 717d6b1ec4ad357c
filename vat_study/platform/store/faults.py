"""Store faults: transient connection errors retried with backoff, the others said in one line.

* ``retry_transient``: a store call that fails because the connection went away (PostgreSQL
  restarted, a network blip: an ``OperationalError`` on connect or commit, or a connection
  SQLAlchemy invalidated) is run again, whole, after 0.2, 0.4, ... 5 s, for up to
  ``RETRY_SECONDS`` (each call is one short transaction, rolled back when it fails, so running
  it again is safe). Only the outermost store call retries. SQLite's "database is locked" is not
  retried: it comes after the 60 s busy timeout already waited.
* ``retrying_optuna_storage``: Optuna's RDBStorage with the same retries.
* ``describe``: the one line a user sees for a store or disk fault (disk full, locked, read-only,
  damaged, unreachable), naming the file or database; None for anything else.
* ``clean_text``: an error text as the store can keep it: NUL bytes and lone surrogates replaced
  (PostgreSQL refuses the first, every UTF-8 encoder the second), capped at ``MAX_ERROR_CHARS``.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

RETRY_SECONDS = 90.0
"""How long a store call keeps retrying a lost connection before the error is raised."""
MAX_ERROR_CHARS = 20_000
"""The longest error text a trial records (the end of a traceback is kept: it says what failed)."""

_TRANSIENT = ("server closed the connection", "connection refused", "could not connect", "terminating connection",
              "connection is closed", "connection not open", "the database system is starting up",
              "the database system is shutting down", "ssl connection has been closed", "connection timed out",
              "consuming input failed", "no connection to the server", "connection reset", "broken pipe",
              "connection failed", "lost connection")

_state = threading.local()
F = TypeVar("F", bound=Callable[..., Any])


def _lost_connection(e: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    if isinstance(e, (OperationalError, InterfaceError)):
        text = str(getattr(e, "orig", None) or e).lower()
        return any(w in text for w in _TRANSIENT)
    return False


def transient(e: BaseException) -> bool:
    """Whether ``e`` is a lost or refused database connection, which a retry can outlive (also
    as the cause of another error: Optuna raises its StorageInternalError from SQLAlchemy's)."""
    return _lost_connection(e) or any(c is not None and _lost_connection(c) for c in (e.__cause__, e.__context__))


def retry_transient(fn: F) -> F:
    """``fn`` (a Store method: one transaction) run again on a transient connection error, with
    backoff, for up to ``RETRY_SECONDS``; nested store calls leave the retrying to the outermost."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_state, "depth", 0):
            return fn(*args, **kwargs)
        deadline, delay = time.monotonic() + RETRY_SECONDS, 0.2
        while True:
            _state.depth = 1
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                if not transient(e) or time.monotonic() + delay > deadline:
                    raise
                reason = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0][:200]
                log.warning("store: %s; retrying %s in %.1f s", reason, fn.__name__, delay)
                owner = vars(args[0]) if args and hasattr(args[0], "__dict__") else {}
                engine = owner.get("_engine") or owner.get("engine")  # Store's, or Optuna's RDBStorage's
                if engine is not None and hasattr(engine, "dispose"):
                    engine.dispose()  # every pooled connection is suspect now
            finally:
                _state.depth = 0
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    return wrapper  # type: ignore[return-value]


def retry_store_methods(cls: type) -> type:
    """Every public method of ``cls`` (the Store) wrapped by ``retry_transient``."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and callable(value) and not isinstance(value, (staticmethod, classmethod, type)):
            setattr(cls, name, retry_transient(value))
    return cls


def retrying_optuna_storage(url: str, **kwargs: Any):
    """Optuna's RDBStorage for ``url`` whose every call (and its creation) outlives a lost
    connection as the Store's do (``retry_transient``)."""
    import optuna

    base = optuna.storages.RDBStorage
    methods = {name: retry_transient(getattr(base, name)) for name in dir(base)
               if not name.startswith("_") and callable(getattr(base, name))
               and not isinstance(vars(base).get(name), (staticmethod, classmethod))}
    cls = type("RetryingRDBStorage", (base,), methods)
    return retry_transient(cls)(url, **kwargs)


def clean_text(text: str, most: int = MAX_ERROR_CHARS) -> str:
    """``text`` without NUL bytes or lone surrogates, at most ``most`` characters (head and tail)."""
    text = str(text).replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > most:
        cut = len(text) - most + 60
        head = most // 4
        text = text[:head] + f"\n... ({cut:,} characters cut) ...\n" + text[head + cut:]
    return text


def _where(url: str | None) -> str:
    from .health import sqlite_file
    from .urls import safe_url

    if url is None:
        return "the store"
    path = sqlite_file(url)
    return f"the SQLite file {str(path)!r}" if path is not None else f"the database {safe_url(url)!r}"


def describe(e: BaseException, url: str | None = None) -> str | None:
    """One line for a store or disk fault (what happened, where, what to do); None otherwise."""
    from sqlalchemy.exc import SQLAlchemyError

    from .schema import StoreError
    from .urls import mask_secrets

    if isinstance(e, StoreError):
        return f"{_where(url)}: {e}"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"the disk is full writing {e.filename or _where(url)!r}: free some space and run the same command "
                "again (finished trials are kept)")
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and e.filename:
        return f"cannot write {e.filename!r} ({e.strerror})"
    if not isinstance(e, SQLAlchemyError):
        return None
    first = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
    first = mask_secrets(first, url) if url else first
    low = first.lower()
    where = _where(url)
    if "disk is full" in low or "no space left" in low:
        return f"the disk holding {where} is full ({first}): free some space and run the same command again"
    if "database is locked" in low or "database table is locked" in low:
        return (f"{where} is locked by another process (waited 60 s for it): let that process finish, or give "
                "another storage")
    if "readonly database" in low or "read-only" in low:
        return f"{where} is read-only ({first}): make it writable, or give another storage"
    if "malformed" in low or "not a database" in low or "disk i/o error" in low:
        return f"{where} is damaged or unreadable ({first}): restore it from a copy, or give another storage"
    if transient(e):
        return f"{where} is unreachable ({first}; retried for up to {RETRY_SECONDS:g} s); run the same command again when it is back"
    return None
