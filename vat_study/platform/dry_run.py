"""The dry run of the use case (``plan_study``): every check ``study.run_study`` makes (the data and
its splits, the store and the study stored there) and what the run would do (its trials, lane
groups, budget, device), training and writing nothing. ``vat-study run --dry-run`` prints the
``DryRun`` it returns; a refused input is status 2 with its message, as for the run."""

from __future__ import annotations

from dataclasses import dataclass, field

from .spec import PlannedTrial, SpecError, StudySpec
from .store_access import Refusal, open_store


@dataclass
class DryRun:
    """What a run of ``spec`` would do: ``stored`` (what the store holds), the datasets found
    (name -> training images) and those a real run downloads first, where trials train
    (``device``), the ``budget`` lines, the grid's ``trials`` (none for Optuna: ``optuna`` says
    its search), grid points left out as repeats (``collapsed``), the sizes of the batched models
    (``lane_groups``, with ``batching``: the executor setting and its value), the sequential
    comparisons' most trials (``sequential``). ``status`` 2 and ``message`` for refused input."""

    study: str
    status: int = 0
    message: str | None = None
    error: BaseException | None = field(default=None, repr=False)
    stored: str = ""
    datasets: dict[str, int] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)
    device: str = ""
    budget: list[str] = field(default_factory=list)
    trials: list[PlannedTrial] = field(default_factory=list)
    configurations: int = 0
    optuna: str | None = None
    collapsed: int = 0
    lane_groups: list[int] | None = None
    batching: tuple[str, int] | None = None
    sequential: str | None = None


def planned_device(spec: StudySpec) -> str:
    """Where this study's trials will train, as far as this machine can tell before any executor
    starts (an executor that shares GPUs out, ``gpu_shares``, says what it will ask for)."""
    import torch

    from .executors.registry import executor_named

    device = spec.resolved({}, spec.seeds[0]).task.device
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpu, shares = spec.executor.per_trial.gpu, executor_named(spec.executor.kind).gpu_shares
    if device == "cpu" or (device == "auto" and n == 0):
        why = "task.device cpu" if device == "cpu" else "no CUDA device here"
        asks = f"; executor.per_trial.gpu {gpu}" + (" -> 0 GPUs asked of Ray" if gpu == "auto" else "")
        return f"cpu ({why}{asks if shares else ''})"
    if shares:
        share = spec.executor.per_trial.auto_gpu if gpu == "auto" else gpu
        return f"cuda ({n} CUDA device(s) here; {share:g} GPU per trial on a cluster with GPUs)"
    return f"cuda ({n} CUDA device(s) here)"


def _plan(spec: StudySpec, report: DryRun) -> None:
    """The trials, lane groups and sequential looks of a grid study (or the Optuna search)."""
    if spec.is_optuna:
        o = spec.search.optuna  # type: ignore[union-attr]
        report.optuna = (f"Optuna {o.sampler} search, {o.n_trials} configurations x {len(spec.seeds)} seeds over "
                         f"{', '.join(o.space)}")
        return
    report.trials, report.configurations, report.collapsed = spec.expand(), len(spec.configurations()), spec.collapsed()
    ex = spec.executor
    if ex.lanes > 1 or ex.batch_seeds > 1:
        from .executors.planning import lane_groups

        report.lane_groups = [len(g) for g in lane_groups(report.trials, spec)]
        report.batching = ("lanes", ex.lanes) if ex.lanes > 1 else ("batch_seeds", ex.batch_seeds)
    sq = spec.sequential
    if sq is not None:
        more = sq.max_seeds - len(spec.seeds)
        most = len(report.trials) + len({m for pair in sq.compare for m in pair}) * more
        report.sequential = (f"then up to {more} more paired seeds, {sq.batch} per look, for each compared "
                             f"configuration of {', '.join(f'{a} vs {b}' for a, b in sq.compare)} (alpha {sq.alpha} "
                             f"over all looks, on {sq.metric}): at most {most} trials")


def plan_study(spec: StudySpec) -> DryRun:
    """The dry run of ``spec`` (see the module docstring): nothing is downloaded, created,
    upgraded or written."""
    from .budget import budget_lines
    from .preflight import run_preflight

    report = DryRun(spec.name)
    try:
        found = run_preflight(spec, download=False)
        report.stored = open_store(spec, write=False).line
    except (SpecError, Refusal) as e:
        report.status, report.message = 2, str(e)
        report.error = e.cause if isinstance(e, Refusal) and e.cause is not None else e
        return report
    report.datasets, report.downloads = found.datasets, found.downloads
    report.device = planned_device(spec)
    report.budget = budget_lines(spec, found.first, max(int(spec.executor.per_trial.cpu), 1))
    _plan(spec, report)
    return report


__all__ = ["DryRun", "plan_study", "planned_device"]
