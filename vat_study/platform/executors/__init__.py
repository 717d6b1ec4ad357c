"""How trials are run: ``ray`` (Ray Tune, the default: scales to GPUs and clusters) and ``local``
(in-process: debugging, notebooks, tests). Both write the same store contents. One orchestration
(``study.run_study``: planning, drivers, the grid, the Optuna loop) serves both; an executor
(``study.Executor``: ``local.LocalExecutor``, ``ray_tune.RayExecutor``) only says how a list of
planned trials is claimed and trained."""

from .planning import RunSummary, plan
from .local import run_local

__all__ = ["RunSummary", "plan", "run_local", "run_ray"]


def run_ray(*args, **kwargs):  # imported lazily: Ray is heavy and not needed for local runs
    from .ray_tune import run_ray as _run

    return _run(*args, **kwargs)
