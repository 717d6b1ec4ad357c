"""Throwaway Ray nodes for the tests that join a `ray start` cluster (test_cli, test_cluster).

Each node is one `ray start --block` process in a session of its own; `kill_node` kills every
process of that session (Ray's workers have process groups of their own but stay in it), as a
machine failure would, and nothing else: `ray stop` would stop every Ray instance on the machine."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`ray start --block ARGS` (give a short --temp-dir: Ray's socket paths must fit 107 bytes)."""
    return subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def head_address(head: subprocess.Popen, timeout: float = 120) -> str:
    """The address a starting head prints for other nodes and drivers."""
    printed, deadline = "", time.time() + timeout
    while time.time() < deadline and head.poll() is None:
        printed += head.stdout.readline()
        m = re.search(r"--address='([^']+)'", printed)
        if m:
            return m.group(1)
    raise AssertionError(f"the Ray head printed no address:\n{printed}")


def kill_node(node: subprocess.Popen) -> None:
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        try:
            if os.getsid(pid) == node.pid:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    node.wait(timeout=60)


def forget_cluster(port: int) -> None:
    """`ray start --head` records itself in /tmp/ray/ray_current_cluster: forget a stopped one."""
    current = Path("/tmp/ray/ray_current_cluster")
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()
