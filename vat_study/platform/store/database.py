"""``Database``: one store's engine, read sessions, write transactions and a lock across processes.

What the store's parts (``repository.Store``: studies and trials; ``claims.Claims``: drivers and
their claims; ``frames``, ``twin``, ``manage``) share: the engine is made on first use in a process
and brings the schema up to date then (``engine.upgrade_schema``), so a ``Database`` pickles (Ray
callbacks, Ray workers) and each process opens its own connection pool.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ..failpoints import failpoint
from .engine import make_engine, upgrade_schema
from .faults import retry_store_methods
from .schema import utcnow


def dialect_insert(s: Session):
    """The session's dialect's INSERT (with ON CONFLICT)."""
    if s.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def database_now(s: Session) -> datetime:
    """The database's clock on PostgreSQL (drivers on several hosts compare heartbeats on one
    clock); this machine's for a SQLite file (which lives on it)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy import func

        return s.scalar(select(func.now()))
    return utcnow()


class Database:
    """The engine of the store at ``url``, made on first use in a process. Cheap to pickle."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        self.url = url
        self.upgrade = upgrade  # False: read the schema as it is (a dry run writes nothing)
        self._engine: Engine | None = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "upgrade": self.upgrade}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state.get("upgrade", True))  # type: ignore[misc]

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != os.getpid():
            engine = make_engine(self.url)
            try:
                if self.upgrade:
                    upgrade_schema(engine)  # one cheap read when the schema is current
            except BaseException:
                engine.dispose()
                raise
            self._engine, self._pid = engine, os.getpid()
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def session(self) -> Session:
        """A session for reading."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def write(self, bookkeeping: bool = False) -> Iterator[Session]:
        """One write transaction (BEGIN IMMEDIATE on SQLite), committed at the end of the block.
        ``bookkeeping``: a driver's registration and heartbeats, which do not pass the
        ``store.commit`` failpoint (heartbeats come at times of their own: the failpoint counts
        stay those of the study's writes, deterministic)."""
        with Session(self.engine.execution_options(vat_write=True), expire_on_commit=False) as s, s.begin():
            yield s
            if not bookkeeping:
                failpoint("store.commit")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """One holder at a time, across processes, of the lock ``name`` of this database: a
        PostgreSQL advisory lock; for a SQLite file, flock on the file (SQLite's own locks are
        fcntl locks, which flock does not touch)."""
        import zlib

        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                key = zlib.crc32(name.encode()) & 0x7FFFFFFF
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        import fcntl

        path = self.engine.url.database
        if not path or path == ":memory:":
            yield
            return
        # the store's folder, not the file: closing any descriptor of the database file would
        # drop SQLite's own (POSIX) locks on it held by this process
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


retry_store_methods(Database)  # a lost connection (PostgreSQL restarted, a network blip) is retried: store.faults
