"""A throwaway PostgreSQL server for tests: initdb into a temp dir, a free loopback port, run as
the ``postgres`` user when we are root (the server refuses to run as root), stopped afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager


def pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server():
    """Yields an SQLAlchemy URL of a fresh, empty database."""
    with running_postgres() as server:
        yield server.url


class PostgresServer:
    """A running test server: ``url``; ``stop()`` / ``start()`` it (the data kept), e.g. for an outage."""

    def __init__(self, run, bindir: str, data: str, log: str, port: int, sock: str) -> None:
        self._run, self._bindir, self._data, self._log, self._port, self._sock = run, bindir, data, log, port, sock
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/vat"

    def start(self) -> None:
        self._run(f"{self._bindir}/pg_ctl", "-D", self._data, "-w", "-t", "60", "-l", self._log,
                  "-o", f"-p {self._port} -k {self._sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run(f"{self._bindir}/pg_ctl", "-D", self._data, "-m", "immediate", "-w", "stop")


@contextmanager
def running_postgres():
    """Yields a ``PostgresServer`` holding a fresh, empty database ``vat``."""
    bindir = pg_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql (.ci/run does)")
    as_root = os.geteuid() == 0
    tmp = tempfile.mkdtemp(prefix="vat-study-pg-")
    data, sock = os.path.join(tmp, "data"), os.path.join(tmp, "sock")
    os.makedirs(sock)
    if as_root:
        shutil.chown(tmp, "postgres")
        shutil.chown(sock, "postgres")

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if as_root else list(cmd)
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    port = _free_port()
    run(f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
    server = PostgresServer(run, bindir, data, os.path.join(tmp, "log"), port, sock)
    server.start()
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "vat")
        yield server
    finally:
        try:
            server.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already
        finally:
            time.sleep(0.2)
            shutil.rmtree(tmp, ignore_errors=True)
