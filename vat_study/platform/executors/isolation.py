"""Trials with ``executor.trial_timeout`` train in a child process, so the limit holds whatever the
trial is doing: a trial busy in Python code is stopped within one update by its own timer (as
before: ``execution.TrialTimer``), and one blocked inside a single call (a C extension, a sleep,
a hung network file system read) is killed with its process.

One child per driver process (on Ray: per worker process), started when the first trial with a
time limit runs and reused trial after trial (a fresh Python importing torch costs a couple of
seconds once; handing a trial over costs a pipe message). It runs ``execution.execute_group``
exactly as the driver would (claims, store writes through the lease, trackers, checkpoints,
the trial's log) and tells this process which trials it claimed.

When the trial's limit (times its lanes) has passed and, ``GRACE`` seconds later, it has not
stopped: this process has the child dump every thread's Python stack (``faulthandler``, which
needs no cooperation from a blocked thread), kills it, records the claimed trials FAILED
(``timeout``) with the last step they reported and where the training thread was, appends the
dump to the trial's log, and goes on with the next trial in a fresh child. A child that dies
on its own (out of memory, a crash in native code) fails its trials ``worker_died`` on the
local executor; on Ray the worker raises, so Tune retries the trial as for a dead worker. Ctrl-C,
SIGTERM and SIGHUP are forwarded: the child records the trial interrupted and keeps its
checkpoint, as the driver itself did. The child dies with the process that started it
(``PR_SET_PDEATHSIG``, and a watcher of its parent's pid).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..spec import PlannedTrial, digest
from ..store import Store

GRACE = 5.0
"""Seconds past the time limit a trial gets to stop by itself (within one update) before its
process is killed."""
STOP_WAIT = 10.0
"""Seconds a stopped run (Ctrl-C, SIGTERM) waits for the child to record its trial interrupted."""

# The child is started from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that
# started a process ends, and Ray Tune runs each trial in a thread of its own.
_launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vat-study-trial-launcher")
_lock = threading.Lock()
_child: _Child | None = None


class ChildDied(RuntimeError):
    """The process training a trial died on its own (not stopped by the time limit)."""


@dataclasses.dataclass
class _Child:
    proc: subprocess.Popen
    conn: Connection
    dump: Path  # where faulthandler writes the child's stacks on SIGUSR1
    thread: int = 0  # the child's training thread (its main thread), as faulthandler names it

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.conn.closed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()
        self.dump.unlink(missing_ok=True)


def _start() -> _Child:
    import vat_study

    ours, theirs = socket.socketpair()
    fd, dump = tempfile.mkstemp(prefix="vat-study-trial-", suffix=".stacks")
    os.close(fd)
    env = dict(os.environ)
    package_root = str(Path(vat_study.__file__).resolve().parent.parent)  # a checkout run without installing
    env["PYTHONPATH"] = os.pathsep.join([package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = ("from vat_study.platform.executors.trial_child import child_main; "
            f"child_main({theirs.fileno()}, {dump!r}, {os.getpid()})")
    proc = _launcher.submit(subprocess.Popen, [sys.executable, "-c", code], pass_fds=(theirs.fileno(),),
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True).result()
    theirs.close()
    conn = Connection(os.dup(ours.fileno()))
    ours.close()
    return _Child(proc, conn, Path(dump))


def _ready_child() -> _Child:
    global _child
    if _child is None or not _child.alive():
        if _child is not None:
            _child.kill()
        _child = _start()
    return _child


def prestart() -> None:
    """Start the child now (a run with a time limit, before its preflight: the child's imports
    overlap the driver's work)."""
    with _lock:
        _ready_child()


def run_isolated(store: Store, study_id: int, trials: list[PlannedTrial], claim: Any, *,
                 timeout: float, tracking: tuple[dict[str, Any], str] | None = None, on_ray: bool = False,
                 **kwargs: Any) -> dict[str, dict[str, Any] | None]:
    """``execution.execute_group`` in the child process, with the time limit enforced from here
    (see the module docstring). ``tracking``: the study's tracking block and name; ``on_ray``: a
    child that dies on its own raises ``ChildDied`` (Tune retries the trial). Returns what
    ``execute_group`` returns."""
    request = {"storage": store.url, "study_id": study_id, "trials": trials,
               "claim": claim, "timeout": timeout, "tracking": tracking, "kwargs": kwargs,
               "cwd": os.getcwd(), "env": dict(os.environ)}
    with _lock:  # one trial group at a time per process (a driver runs them one after another)
        for attempt in (1, 2):
            child = _ready_child()
            try:
                child.conn.send(request)
                break
            except OSError:  # it died while idle: once more, in a fresh one
                child.kill()
                if attempt == 2:
                    raise ChildDied(f"a process to train trial {trials[0].key} could not be started "
                                    f"({_exit_text(child.proc)})") from None
        return _await(child, _Watch(store, study_id, on_ray), trials, timeout, kwargs)


class _Watch:
    """What the parent knows of a running group: where it is recorded, the leases claimed."""

    def __init__(self, store: Store, study_id: int, on_ray: bool) -> None:
        self.store, self.study_id, self.on_ray = store, study_id, on_ray
        self.leases: list[Any] = []
        self.keys: list[str] = []
        self.started: float | None = None


def _await(child: _Child, watch: _Watch, trials: list[PlannedTrial], timeout: float,
           kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    while True:
        if watch.started is not None:
            left = watch.started + timeout * max(len(watch.leases), 1) + GRACE - time.monotonic()
            if left <= 0:
                return _kill_stuck(child, trials, watch, timeout, kwargs)
        else:
            left = 1.0
        try:
            ready = child.conn.poll(min(max(left, 0.0), 1.0))
        except KeyboardInterrupt as stop:
            _stop_child(child, watch, stop)
            raise
        if not ready:
            if child.proc.poll() is not None:
                return _died(child, watch)
            continue
        try:
            kind, value = child.conn.recv()
        except (EOFError, OSError):
            return _died(child, watch)
        except KeyboardInterrupt as stop:
            _stop_child(child, watch, stop)
            raise
        if kind == "hello":
            child.thread = value
        elif kind == "claimed":
            watch.leases, watch.keys, watch.started = value[0], value[1], time.monotonic()
        elif kind == "done":
            return value
        elif kind == "raised":  # execute_group itself failed (a store or disk fault): as in the driver
            raise value
        elif kind == "interrupted":  # a stop signal sent to the child alone: its trial FAILED, interrupted
            child.kill()
            return {k: None for k in watch.keys}


def _stacks(child: _Child) -> tuple[str, str]:
    """(every thread's stack, the training thread's) as faulthandler dumps them, asked for with
    SIGUSR1 (written by a signal handler: a thread blocked in C does not stop it)."""
    try:
        os.kill(child.proc.pid, signal.SIGUSR1)
    except ProcessLookupError:
        return "", ""
    text, deadline = "", time.monotonic() + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
        new = child.dump.read_text(errors="replace") if child.dump.exists() else ""
        if new and new == text:
            break
        text = new
    blocks = [b for b in text.split("\n\n") if b.strip()]
    mine = next((b for b in blocks if f"0x{child.thread:016x}" in b.splitlines()[0]), blocks[0] if blocks else "")
    return text, mine


def where(stack: str) -> str:
    """'in fn (file:line)' of the innermost frame of a faulthandler stack, and the frame of the
    training loop (vat_study/science/train.py) it was called from, if that is another one."""
    frames = []
    for line in stack.splitlines():
        line = line.strip()
        if line.startswith('File "'):
            path, _, rest = line[6:].partition('", line ')
            number, _, fn = rest.partition(" in ")
            frames.append((fn.strip(), path, number.strip()))
    if not frames:
        return "no Python frame could be read"
    fn, path, number = frames[0]
    out = f"in {fn} ({Path(path).name}:{number})"
    ours = next((f for f in frames if f[1].endswith(os.sep.join(("vat_study", "science", "train.py")))), None)  # the training loop
    if ours is not None and ours != frames[0]:
        out += f", called from {ours[0]} ({Path(ours[1]).name}:{ours[2]})"
    return out


def _kill_stuck(child: _Child, trials: list[PlannedTrial], watch: _Watch, timeout: float,
                kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any] | None]:
    everything, mine = _stacks(child)
    child.kill()
    lanes = len(watch.leases)
    batch = f" (x {lanes} lanes trained as one batched model)" if lanes > 1 else ""
    total = trials[0].resolved.task.steps
    step = _last_step(watch)
    at = (f"past step {step:,}" + (f" of {total:,}" if isinstance(total, int) else "") + " (its last report)"
          if step is not None else "before its first report")
    line = (f"timeout: the trial ran past executor.trial_timeout = {timeout:g} s{batch} and did not stop within "
            f"{GRACE:g} s more (stuck inside one call), so its process was killed; it was {at}, {where(mine)}")
    text = (f"the training thread when it was stopped:\n{mine.strip()}\n" if mine else "") + line
    _fail(watch, text, "timeout")
    log_dir = kwargs.get("log_dir")
    if log_dir and everything and watch.keys:
        path = Path(log_dir) / f"{watch.keys[0]}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"\n[vat-study: {line}]\n[every thread of the trial's process when it was killed:]\n{everything}\n")
    if kwargs.get("checkpoint_every") and kwargs.get("checkpoint_dir") and watch.keys:
        (Path(kwargs["checkpoint_dir"]) / f"{digest(watch.keys)}.pt").unlink(missing_ok=True)  # as any failure
    return {k: None for k in watch.keys}


def _last_step(watch: _Watch) -> int | None:
    """The last step the claimed trials reported to the store."""
    from sqlalchemy import func, select

    from ..store.schema import MetricRow

    if not watch.leases:
        return None
    with watch.store.session() as s:
        return s.scalar(select(func.max(MetricRow.step)).where(MetricRow.trial_id.in_([x.trial_id for x in watch.leases])))


def _fail(watch: _Watch, text: str, kind: str) -> None:
    """The claimed trials still RUNNING under their lease (the child may have recorded them
    itself meanwhile): FAILED, ``kind``."""
    states = watch.store.trial_states(watch.study_id) if watch.leases else {}
    for key, lease in zip(watch.keys, watch.leases):
        status, attempts, _ = states.get(key, (None, None, None))
        if status == "RUNNING" and attempts == lease.attempt:
            watch.store.fail_trial(lease, text, kind=kind)


def _exit_text(proc: subprocess.Popen) -> str:
    code = proc.poll()
    if code is None:
        return "still running"
    if code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (": out of memory?" if -code == signal.SIGKILL else "")
    return f"exit status {code}"


def _died(child: _Child, watch: _Watch) -> dict[str, dict[str, Any] | None]:
    child.proc.wait()
    why = _exit_text(child.proc)
    child.kill()
    if watch.on_ray or not watch.keys:  # Tune retries the trial as for a dead worker; or it never started one
        raise ChildDied(f"the process training trial(s) {', '.join(watch.keys) or '?'} died ({why})")
    _fail(watch, f"worker_died: the process training this trial died ({why}); the study went on", "worker_died")
    return {k: None for k in watch.keys}


def _stop_child(child: _Child, watch: _Watch, stop: KeyboardInterrupt) -> None:
    """A stop signal reached this process: forward it, give the child ``STOP_WAIT`` seconds to
    record its trial interrupted (keeping the checkpoint), then kill it."""
    from ..signals import interrupted_text, stop_of
    from ..store.claims import INTERRUPTED_BY_USER

    stopped = stop_of(stop)
    try:
        os.kill(child.proc.pid, stopped.signum if stopped is not None else signal.SIGINT)
        child.proc.wait(timeout=STOP_WAIT)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    child.kill()
    _fail(watch, interrupted_text(stop, INTERRUPTED_BY_USER), "interrupted")  # (if the child could not)
