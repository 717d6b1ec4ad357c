"""Engines (SQLite: WAL, BEGIN IMMEDIATE for writes) and the Alembic schema upgrade under a lock."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import (
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from .schema import MIGRATIONS, SCHEMA_REVISION, VERSION_TABLE, StoreError

log = logging.getLogger(__name__)


def _wal(cur, seconds: float = 60.0) -> None:
    """``PRAGMA journal_mode=WAL``. Switching a rollback-journal file (a store from an older
    version) to WAL needs the file to itself, and SQLite answers "database is locked" at once
    rather than waiting while another process holds it: retry for up to ``seconds``, as the busy
    timeout would."""
    import sqlite3
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite: WAL, foreign keys on, a 60 s busy timeout, and explicit
    BEGIN (``BEGIN IMMEDIATE`` on connections with the ``vat_write`` execution option)."""
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"not a database URL ({e})") from None
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.query.get("uri"):  # a file: URI (read-only) makes nothing
            try:
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder of {u.database!r} ({e.strerror})") from None
        engine = create_engine(u, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # the driver never opens transactions itself: we do
            cur = dbapi_conn.cursor()
            _wal(cur)  # readers never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("vat_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if u.get_backend_name() != "postgresql":
        raise StoreError(f"unsupported database {u.get_backend_name()!r}: use sqlite or postgresql")
    return create_engine(u, pool_pre_ping=True)


def _alembic_config(conn: Connection):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def schema_revision(conn: Connection) -> str | None:
    """The store's schema revision; "0001" for a store made before versions were recorded
    (its tables exist but no version table); None for an empty database."""
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE in names:
        rev = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        if rev is not None:
            return rev
    return "0001" if "vat_trials" in names else None


def _known_revisions() -> list[str]:
    return sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def check_revision(revision: str | None) -> None:
    """A StoreError for a schema revision this vat-study does not know (a newer one wrote it)."""
    if revision is not None and revision != SCHEMA_REVISION and revision not in _known_revisions():
        raise StoreError(f"the store's schema is at revision {revision!r}, written by a newer vat-study (this one "
                         f"knows up to {SCHEMA_REVISION!r}); upgrade vat-study to use it")


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to ``SCHEMA_REVISION``; returns (revision before, after). Safe to call
    from many processes at once: the upgrade runs under the database's write/advisory lock and
    re-reads the revision inside it."""
    from alembic import command

    with engine.connect() as conn:
        before = schema_revision(conn)
        conn.rollback()
    if before == SCHEMA_REVISION:
        return before, before
    check_revision(before)
    write = engine.execution_options(vat_write=True)
    with write.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # must be set outside a transaction; a batch table rebuild would cascade deletes
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if not sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(7241851)"))  # one upgrader at a time
                current = schema_revision(conn)
                if current != SCHEMA_REVISION:
                    cfg = _alembic_config(conn)
                    if current == "0001" and VERSION_TABLE not in inspect(conn).get_table_names():
                        command.stamp(cfg, "0001")  # a store from before versions were recorded
                    command.upgrade(cfg, "head")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    if before is not None:
        log.warning("upgraded the store schema from revision %s to %s", before, SCHEMA_REVISION)
    return before, SCHEMA_REVISION
