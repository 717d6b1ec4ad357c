"""Where a result came from: the code (version, git commit, uncommitted changes), the command
(argv and ``--set`` overrides), the machine (CPU, GPU, CUDA / cuDNN, torch threads) and the
version of every library that shapes a number. Recorded with each trial (the trial row's
``versions``) and with each run of a study (the stored spec's ``provenance``), shown at the top
of the report.

Nothing here imports torch: the torch entries are read from an already imported torch (the
process that trains has one), so the command line stays light.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

LIBRARIES: tuple[str, ...] = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pydantic", "pandas",
                              "ray", "optuna", "sqlalchemy")
"""The installed packages whose versions are recorded: the ones that shape a trial's numbers (the
first six) and the ones that schedule and store it."""

INVOCATION_ENV = "VAT_STUDY_INVOCATION"
"""Environment variable the command line puts its argv and overrides in (JSON), so the worker
processes that record trials (Ray's, started after it is set) know the command that ran them."""

planned_threads: contextvars.ContextVar[int | None] = contextvars.ContextVar("planned_threads", default=None)
"""The torch threads the trial about to be recorded will train with (the executor sets it before
it records the trial; otherwise torch's current count is recorded)."""

planned_precision: contextvars.ContextVar[str | None] = contextvars.ContextVar("planned_precision", default=None)
"""The arithmetic the trial about to be recorded runs: its ``task.precision`` as this machine
resolves it (``science.precision.resolve``: auto becomes mixed_delta or float32); the executor sets it."""

_SOURCE = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(_SOURCE), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """{"commit": sha, "dirty": bool} of the source tree vat_study runs from, when it is a git
    checkout of this project (an installed wheel has none: {})."""
    if not (_SOURCE / "pyproject.toml").is_file() or _git("rev-parse", "--show-toplevel") != str(_SOURCE):
        return {}
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vat-study")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """The version as PEP 440 would say it of this tree: the installed release, plus the commit
    and ``.dirty`` for uncommitted changes where the code runs from a git checkout
    (``0.3.0+g1a2b3c4d5e6f.dirty``); the installed version alone otherwise."""
    base, git = installed_version(), git_state()
    if not git:
        return base
    return f"{base}+g{git['commit'][:12]}" + (".dirty" if git.get("dirty") else "")


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in LIBRARIES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_environment() -> dict[str, Any]:
    """torch's threads, the CUDA and cuDNN it was built with and the GPU it sees, where torch is
    already imported in this process (nothing otherwise: importing it here would cost seconds)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    threads = planned_threads.get()
    out: dict[str, Any] = {"torch_threads": threads if threads is not None else torch.get_num_threads(),
                           "cuda": torch.version.cuda, "cudnn": None, "gpu": None}
    try:
        out["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(torch.cuda.current_device())
    except Exception:  # noqa: BLE001  a broken driver: recorded as no GPU, never a failed trial
        pass
    return out


def set_invocation(argv: list[str], overrides: dict[str, Any]) -> None:
    """Record the command line (argv without the program name, secrets masked by the caller) and
    its ``--set`` overrides for the trials this process and its workers record."""
    os.environ[INVOCATION_ENV] = json.dumps({"argv": list(argv), "overrides": overrides}, default=str)


def invocation() -> dict[str, Any]:
    """{"argv": [...], "overrides": {...}} as the command line recorded it; {} where none did
    (``run_trial`` called from Python)."""
    raw = os.environ.get(INVOCATION_ENV)
    if not raw:
        return {}
    try:
        got = json.loads(raw)
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


def trial_provenance() -> dict[str, Any]:
    """What a trial row records in ``versions``: every library's version (``vat-study`` as
    ``package_version`` gives it), the git commit and dirty flag, the command, the host's CPU
    model and, from torch, threads, GPU, CUDA and cuDNN; the trial's resolved ``task.precision``
    where the executor noted it (``planned_precision``)."""
    out: dict[str, Any] = {"vat-study": package_version(), **library_versions()}
    git = git_state()
    if git:
        out["git_commit"], out["git_dirty"] = git["commit"], git["dirty"]
    out.update(invocation())
    out["cpu"] = cpu_model()
    out["platform"] = platform.platform()
    out.update(torch_environment())
    if planned_precision.get() is not None:
        out["precision"] = planned_precision.get()
    return out


def run_provenance() -> dict[str, Any]:
    """What a run of a study records with the stored study: as ``trial_provenance``, taken in the
    driver process."""
    return trial_provenance()
