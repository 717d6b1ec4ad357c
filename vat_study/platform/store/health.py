"""A SQLite store file's state before it is used: damaged (``PRAGMA quick_check``), read-only,
or fine. ``run`` refuses a damaged or read-only store in one line naming the file; ``status``,
``report`` and ``export`` refuse a damaged one and open a read-only one read-only (an immutable
SQLite URI: no -wal or -shm files are made next to it, nothing is written)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from .schema import StoreError


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None: not SQLite, or in memory)."""
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001  not a URL: checked elsewhere
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.query.get("uri"):
        return None
    return Path(u.database)


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (opened for update, nothing written; also right for
    root and for immutable files, where ``os.access`` is not)."""
    try:
        with open(path, "r+b"):
            return True
    except OSError:
        return False


def _folder_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def read_only(path: Path) -> bool:
    """The store file, or its folder (where SQLite keeps the -wal and -shm files), cannot be written."""
    return not _writable(path) or not _folder_writable(path.parent if str(path.parent) else Path("."))


def readonly_url(path: Path) -> str:
    """A URL opening ``path`` read-only and immutable (no locks, no -wal / -shm files)."""
    return f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&immutable=1&uri=true"


def quick_check(path: Path) -> str | None:
    """What ``PRAGMA quick_check`` finds wrong with the file (its first line), or None when it is
    sound. A file that is not a database at all counts as damaged."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("&immutable=1" if read_only(path) else "")
    try:
        con = sqlite3.connect(uri, uri=True, timeout=60)
    except sqlite3.Error as e:
        return str(e)
    try:
        rows = con.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.DatabaseError as e:
        if "locked" in str(e):
            return None  # a writer holds it: the run's own busy timeout waits for it
        return " ".join(str(e).split())
    finally:
        con.close()
    found = [" ".join(str(r[0]).split()) for r in rows]  # one line
    return None if found == ["ok"] else "; ".join(found)[:300]


def check_store_file(url: str, *, write: bool) -> str:
    """The URL to open the store with, after checking a SQLite file that exists: a damaged one
    is a StoreError (restore it from a copy, or use another storage); a read-only one is a
    StoreError when ``write`` (``run``), else opened read-only. Other URLs are returned as given."""
    path = sqlite_file(url)
    if path is None or not path.exists():
        return url
    problem = quick_check(path)
    if problem is not None:
        raise StoreError(f"the SQLite file {str(path)!r} is damaged (quick_check: {problem}); restore it from a "
                         "copy, or give another storage")
    if read_only(path):
        if write:
            which = "file" if not _writable(path) else f"folder {str(path.parent)!r}"
            raise StoreError(f"the SQLite {which} of {str(path)!r} is read-only; a run writes its trials there: "
                             "make it writable, or give another storage (status, report and export can read it)")
        return readonly_url(path)
    return url
