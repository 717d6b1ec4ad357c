"""How trials are run: the executors of ``registry`` (``ray``: Ray Tune, the default, scales to
GPUs and clusters; ``local``: in-process, for debugging, notebooks, tests). Every executor writes
the same store contents. One orchestration (``orchestration.orchestrate``: planning, drivers, the
grid, the Optuna loop) serves all; an executor (``orchestration.Executor``) only says how a list
of planned trials is claimed and trained. The use case that runs a study is
``vat_study.platform.study.run_study``; ``run_local`` / ``run_ray`` are it with one executor.

Nothing is imported here until it is used, so the registry (``registry``) loads with the study
file's schema alone."""

from __future__ import annotations

from typing import Any

__all__ = ["RunSummary", "plan", "run_local", "run_ray"]


def run_local(spec, **kwargs):
    """``study.run_study`` with the local executor; a refusal or a stop raised (the Python API)."""
    from ..study import run_study

    return run_study(spec, executor="local", **kwargs).raise_error()


def run_ray(spec, **kwargs):
    """``study.run_study`` with the Ray executor; a refusal or a stop raised (the Python API)."""
    from ..study import run_study

    return run_study(spec, executor="ray", **kwargs).raise_error()


def __getattr__(name: str) -> Any:
    if name in ("RunSummary", "plan"):
        from . import planning

        return getattr(planning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
