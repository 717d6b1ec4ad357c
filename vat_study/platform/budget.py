"""A study's budget, for the dry run: how many updates its trials make, and about how long they
take on this device, from a few timed updates of the study's own model on its own data (a second
or two at most: an update slower than 0.3 s is timed once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .spec import StudySpec


@dataclass
class Timing:
    seconds_per_update: float
    updates_timed: int
    batch: int  # the labeled batch (the study's)
    device: str
    threads: int

    def describe(self) -> str:
        return (f"{_duration(self.seconds_per_update)} per update on {self.device} ({self.updates_timed} update(s) "
                f"of batch {self.batch} timed, {self.threads} thread(s))")


def _duration(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.3g} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.3g} h"
    if s < 365 * 86400:
        return f"{s / 86400:.3g} days"
    return f"{s / (365 * 86400):,.3g} years"


def trial_updates(spec: StudySpec) -> tuple[int, int]:
    """(trials, updates) the study asks for: every grid trial's task.steps summed; for Optuna
    n_trials x seeds trials at the most steps any point of the space gives."""
    def steps(params: Mapping[str, Any]) -> int:
        return int(spec.resolved(params, spec.seeds[0]).task.steps)

    if spec.is_optuna:
        o = spec.search.optuna  # type: ignore[union-attr]
        most = max([steps({})] + [steps({k: v}) for k, d in o.space.items() for v in d.endpoints()])
        n = o.n_trials * len(spec.seeds)
        return n, n * most
    per = [steps(p) for p in spec.configurations()]
    return len(per) * len(spec.seeds), sum(per) * len(spec.seeds)


def time_updates(config: Mapping[str, Any], ds: Any, threads: int = 1) -> Timing:
    """Seconds per update of ``config``'s model on its device (``surface.time_updates``)."""
    from .. import surface

    seconds, timed, batch, device = surface.time_updates(config, ds, max(int(threads), 1))
    return Timing(seconds, timed, batch, device, max(int(threads), 1))


def budget_lines(spec: StudySpec, ds: Any | None, threads: int) -> list[str]:
    """What the dry run prints about the study's size and time."""
    trials, updates = trial_updates(spec)
    head = "at most " if spec.is_optuna else ""
    lines = [f"budget: {head}{trials:,} trials, {head}{updates:,} updates in all"
             + (f" ({updates // max(trials, 1):,} per trial)" if trials else "")]
    if ds is None:
        lines.append("time: not estimated (the data is not here yet)")
        return lines
    try:
        t = time_updates(spec.resolved(spec.configurations()[0] if not spec.is_optuna else {}, spec.seeds[0]), ds,
                         threads)
    except Exception as e:  # noqa: BLE001  the budget is printed whatever the timing does (out of memory, ...)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        lines.append(f"time: not estimated (timing one update failed: {type(e).__name__}: {first})")
        return lines
    from .executors.registry import executor_named

    total = t.seconds_per_update * updates
    lines.append(f"time: about {t.describe()} -> about {_duration(total)} of training one trial at a time "
                 f"(evaluations and probes extra" + (f", the {spec.executor.kind} executor runs several at once "
                                                      "where it has the CPUs / GPUs"
                                                      if executor_named(spec.executor.kind).parallel else "") + ")")
    return lines
