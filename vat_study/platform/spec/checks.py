"""Checks of a parsed study against the science: every planned trial's config resolves (grid
points, Optuna endpoints and choices), unknown trial keys, a ``metric.name`` the trials report,
not on the test set (unless ``metric.allow_test_selection``) and not on an empty validation set.
Errors name the study-file field. (Data and splits: ``preflight``.) Each config is resolved
through the study (``StudySpec.resolved``): once, and kept for the run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...common.yamlio import canonical
from ...surface import ConfigError, param_path, reported_metrics
from .errors import SpecError
from .schema import StudySpec


def _from_params(field: str, params: Mapping[str, Any]) -> bool:
    """Whether the config field ``field`` (a dotted path) was set by one of the search params."""
    paths = [param_path(k) or k for k in params]
    return any(field == p or field.startswith(p + ".") or p.startswith(field + ".") for p in paths)


def search_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every grid point, or for Optuna the file's own values and each endpoint / choice of every
    dimension: the points whose configs, data and splits can differ."""
    if spec.is_optuna:
        points: list[dict[str, Any]] = [{}]
        for k, dist in spec.search.optuna.space.items():  # type: ignore[union-attr]
            points += [{k: v} for v in dist.endpoints()]
        return points
    return spec.configurations()


def _selection_problems(spec: StudySpec) -> list[str]:
    """What would make the study's choice of hyperparameters unsound: a test-set metric choosing
    them (unless the study says so), a validation metric without validation images."""
    m, out = spec.metric, []
    if m.name.startswith("test_") and not m.allow_test_selection:
        out.append(f"metric.name: {m.name!r} is measured on the test set: choosing hyperparameters (or Optuna's "
                   "search) by it makes the reported test error optimistic. Select on val_error (task.validation "
                   "> 0 holds out validation images), or set metric.allow_test_selection: true to do it knowingly")
    if m.name.startswith("val_"):
        for p in search_points(spec):
            if spec.resolved(p, spec.seeds[0]).task.validation == 0:
                where = next((f"search point {canonical(p)} ({k})" for k in p if param_path(k) == "task.validation"),
                             "task.validation")
                out.append(f"metric.name: {m.name!r} is measured on the validation set, but {where} is 0 (no "
                           f"validation images), so no trial would report it; set task.validation > 0, or choose "
                           "another metric.name")
                break
    return out


def _config_problems(spec: StudySpec) -> list[str]:
    """Each trial config the study plans that does not resolve, named by the study-file field
    (the file's own values, every grid point, every Optuna endpoint and choice); unknown search
    keys; files that are not there."""
    problems: list[str] = []

    def check(params: Mapping[str, Any], where: str) -> None:
        try:
            spec.resolved(params, spec.seeds[0])
        except ConfigError as e:
            for line in e.problems:  # the config's fields are the study file's (task / method / probes)
                field, _, msg = line.partition(": ")
                problems.append(f"{where} ({field}): {msg}" if _from_params(field, params) else line)

    check({}, "task")  # the file's own values, even where every search point overrides them
    idx = spec.task.get("idx_paths")
    for k, path in idx.items() if isinstance(idx, Mapping) else ():
        if isinstance(path, str) and not Path(path).expanduser().is_file():
            problems.append(f"task.idx_paths.{k}: no file at {path!r}")
    if spec.executor.batch_seeds > 1 and not problems and _zca(spec):
        problems.append("executor.batch_seeds: zca is fitted on each seed's own unlabeled pool, so these "
                        "seeds cannot share one batch; use batch_seeds: 1 (or task.zca: false)")
    if spec.search is not None and spec.search.grid is not None:
        problems += [f"search.grid[{i}].{k}: unknown trial key" for i, g in enumerate(spec.search.grid) for k in g
                     if param_path(k) is None]
        if not problems:
            for p in spec.configurations():
                check(p, f"search.grid point {canonical(p)}")
    if spec.is_optuna:
        space = spec.search.optuna.space  # type: ignore[union-attr]
        problems += [f"search.optuna.space.{k}: unknown trial key" for k in space if param_path(k) is None]
        if not problems:
            for k, dist in space.items():
                for v in dist.endpoints():
                    check({k: v}, f"search.optuna.space.{k} value {v!r}")
    return problems


def _zca(spec: StudySpec) -> bool:
    try:
        return bool(spec.resolved({}, spec.seeds[0]).task.zca)
    except ConfigError:
        return False  # reported by the other checks


def _metric_problems(spec: StudySpec) -> list[str]:
    """``metric.name`` must be a metric the trials report; the sequential block's method names and
    metric must be this study's."""
    problems: list[str] = []
    for p in (spec.configurations() if not spec.is_optuna else [{}]):
        reported = reported_metrics(spec.resolved(p, spec.seeds[0]))
        if spec.metric.name not in reported:
            problems.append(f"metric.name: {spec.metric.name!r} is not a metric these trials report"
                            + (f" (search point {canonical(p)})" if p else "")
                            + f"; allowed: {', '.join(sorted(reported))}")
            break
    if not problems:
        problems += _selection_problems(spec)
    sq = spec.sequential
    if sq is not None and not problems:
        points = spec.configurations()
        named = {str(spec.resolved(p, spec.seeds[0]).method.name) for p in points}
        for i, pair in enumerate(sq.compare):
            problems += [f"sequential.compare[{i}]: {m!r} is not a method this study runs; it runs "
                         f"{', '.join(sorted(named))}" for m in pair if m not in named]
        reported = reported_metrics(spec.resolved(points[0], spec.seeds[0]))
        if sq.metric not in reported:
            problems.append(f"sequential.metric: {sq.metric!r} is not a metric these trials report; "
                            f"allowed: {', '.join(sorted(reported))}")
    return problems


def validate_trials(spec: StudySpec) -> None:
    """Validate the trial config of every planned trial (grid) or of every endpoint/choice of the
    Optuna space, so a bad value stops the study before anything runs."""
    problems = _config_problems(spec)
    if not problems:
        problems = _metric_problems(spec)
    seen: set[str] = set()
    uniq = [p for p in problems if not (p in seen or seen.add(p))]  # de-duplicated, in order
    if uniq:
        raise SpecError(uniq)
