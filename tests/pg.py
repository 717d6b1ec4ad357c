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
    run(f"{bindir}/pg_ctl", "-D", data, "-w", "-t", "60", "-l", os.path.join(tmp, "log"),
        "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "vat")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/vat"
    finally:
        try:
            run(f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        finally:
            time.sleep(0.2)
            shutil.rmtree(tmp, ignore_errors=True)
