"""Database URLs: printing and storing them without their passwords."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import make_url


def safe_url(url: str) -> str:
    """The URL with any password replaced by ***, for printing and for storing in results."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  not a URL: nothing to hide
        return url


def mask_secrets(message: str, url: str) -> str:
    """``message`` with the password of ``url`` (if any) replaced by ***."""
    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001
        return message
    return message.replace(str(password), "***") if password else message


STORAGE_HELP = "sqlite:///path.db or postgresql+psycopg://user@host:5432/db"

DEFAULT_STORAGE = "sqlite:///results/vat_study.db"

STORAGE_ENV = "VAT_STUDY_STORAGE"
"""Environment variable holding the default store of every command: a study file's ``storage`` and
``--storage`` win over it; without any of them, ``DEFAULT_STORAGE``."""


def default_storage() -> str:
    """The store a command uses when neither ``--storage`` nor a study file names one; ValueError
    naming ``STORAGE_ENV`` when it holds no usable URL."""
    import os

    value = os.environ.get(STORAGE_ENV, "").strip()
    if not value:
        return DEFAULT_STORAGE
    try:
        return check_storage_url(value)
    except ValueError as e:
        raise ValueError(f"{STORAGE_ENV} {safe_url(value)!r}: {e}") from None


def check_storage_url(url: str) -> str:
    """``url`` if it is a usable SQLAlchemy URL of SQLite or PostgreSQL, else ValueError saying why."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", url):
        raise ValueError(f"must be an SQLAlchemy URL: {STORAGE_HELP}")
    try:
        u = make_url(url)
        u.port  # noqa: B018  a non-numeric port raises here
    except (ArgumentError, ValueError) as e:
        raise ValueError(f"is not a valid database URL ({e}); expected {STORAGE_HELP}") from None
    if u.get_backend_name() == "sqlite":
        raw = re.sub(r"^sqlite(\+\w+)?:///", "", url)
        odd = sorted({c for c in raw if c in "?#%"})
        if odd:  # a URL reads '?' as options, '%41' as 'A': the store would land at another path
            raise ValueError(f"the sqlite path {raw!r} holds {' and '.join(repr(c) for c in odd)}, which a URL "
                             f"reads as options or escapes (the store would land at another path); rename the file "
                             f"or folder (letters, digits, '_', '-', '.', '/')")
        if url.startswith("sqlite://") and not url.startswith("sqlite:///") or not u.database:
            raise ValueError(f"sqlite needs a file path after three slashes: {STORAGE_HELP}")
        if u.database != ":memory:" and (u.database.endswith("/") or Path(u.database).is_dir()):
            raise ValueError(f"{u.database!r} is a folder; name the database file, e.g. sqlite:///results/vat_study.db")
    elif not u.host or not u.database:
        raise ValueError(f"postgresql needs a host and a database name: {STORAGE_HELP}")
    return url


def absolute_sqlite(url: str) -> str:
    """sqlite:///relative/path.db -> sqlite:////abs/cwd/relative/path.db, so every process (Ray
    workers run elsewhere) opens the same file. Other URLs are returned unchanged."""
    m = re.match(r"^(sqlite(?:\+\w+)?):///(.+)$", url)
    if not m or m.group(2).startswith("/") or m.group(2).startswith(":memory:"):
        return url
    return f"{m.group(1)}:///{Path(m.group(2)).resolve()}"
