"""Every study is an Optuna study in the store's database (``optuna.load_study(name, storage)``
and ``optuna-dashboard`` open it), written through Optuna's public API only.

One Optuna trial per configuration (its parameters; every seed of it):

* value: the mean over seeds of ``metric.name``;
* intermediate values: at every evaluation step, the mean over the seeds of ``metric.name``
  (a step counts once every seed has reported it);
* user attributes: ``seeds``, ``vat_config_key``, ``vat_trial_ids`` (the vat-study trial ids,
  in seed order), ``lane_groups`` (the batched models the seeds trained in), ``provenance`` (the
  record of its newest seed's trial: git commit and dirty flag, argv, versions, hardware, as
  the store keeps it in ``versions``), the mean of every
  final metric (``test_error``, ``rvadv``, ``val_error``, ...), and ``per_seed`` (seed ->
  final metrics and vat-study trial id).

Grid studies: a configuration is recorded (``study.add_trial`` of a finished trial, parameters
as categorical choices over the grid's values) once all its seeds are COMPLETE, by whichever
driver sees it first (``Store.exclusive`` keeps two drivers from recording it twice). Optuna
searches: the asked trial gets the same attributes and intermediate values before it is told.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from typing import Any

from ..spec import PlannedTrial, StudySpec, digest

SCALAR = (str, int, float, bool, type(None))


def optuna_value(v: Any) -> Any:
    """A parameter value as Optuna can hold it (a categorical choice): scalars as they are, a
    list or mapping as its JSON text."""
    return v if isinstance(v, SCALAR) else json.dumps(v, sort_keys=True)


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def configuration_record(spec: StudySpec, store, study_id: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the Optuna trial of one configuration holds, read from the store: ``status`` (COMPLETE
    when every seed is, PRUNED when one was pruned, else RUNNING / FAILED / missing), ``value``,
    ``intermediate`` (step -> mean over seeds), ``user_attrs``."""
    planned = [PlannedTrial.make(spec, params, seed) for seed in spec.seeds]
    rows = store.trial_records(study_id, [t.key for t in planned], spec.metric.name)
    name = spec.metric.name
    per_seed: dict[str, dict[str, Any]] = {}
    curves: list[dict[int, float]] = []
    statuses = []
    for t in planned:
        r = rows.get(t.key)
        statuses.append(r["status"] if r else "missing")
        if r is None:
            continue
        per_seed[str(t.seed)] = {"vat_trial_id": r["trial_id"], "status": r["status"],
                                 **{k: _finite(v) for k, v in sorted(r["final"].items())}}
        curves.append({s: v for s, v in r["curve"].items() if _finite(v) is not None})
    if all(s == "COMPLETE" for s in statuses):
        status = "COMPLETE"
    elif "PRUNED" in statuses:
        status = "PRUNED"
    else:
        status = next(s for s in ("missing", "RUNNING", "FAILED") if s in statuses) if statuses else "missing"
    steps = sorted(set.intersection(*(set(c) for c in curves))) if len(curves) == len(planned) and curves else []
    intermediate = {int(s): statistics.fmean(c[s] for c in curves) for s in steps}
    finals = sorted({k for v in per_seed.values() for k in v} - {"vat_trial_id", "status"})
    means = {}
    for k in finals:
        vals = [v.get(k) for v in per_seed.values()]
        means[k] = statistics.fmean(vals) if vals and all(x is not None for x in vals) else None
    value = means.get(name) if status == "COMPLETE" else None
    newest = max((r for r in rows.values() if r.get("versions")), key=lambda r: r["trial_id"], default=None)
    attrs = {"seeds": list(spec.seeds), "vat_config_key": digest(dict(params)),
             "provenance": newest["versions"] if newest else {},
             "vat_trial_ids": [per_seed[str(t.seed)]["vat_trial_id"] for t in planned if str(t.seed) in per_seed],
             "lane_groups": sorted({r["batch_group"] for r in rows.values() if r.get("batch_group")}),
             "per_seed": per_seed, **{k: v for k, v in means.items() if k not in ("seeds", "per_seed")}}
    return {"status": status, "value": value, "intermediate": intermediate, "user_attrs": attrs}


def grid_choices(spec: StudySpec) -> dict[str, list[Any]]:
    """Every value each grid key takes (a categorical distribution must not change across trials)."""
    out: dict[str, list[Any]] = {}
    for params in spec.configurations():
        for k, v in params.items():
            v = optuna_value(v)
            if v not in out.setdefault(k, []):
                out[k].append(v)
    return out


def sync_grid(spec: StudySpec, store, study_id: int, only: list[Mapping[str, Any]] | None = None,
              study=None) -> int:
    """Record in the study's Optuna study (``study``, or the one ``search.open_study`` opens)
    every configuration of a grid study (or of ``only``) whose seeds are all COMPLETE and which is
    not recorded yet. Returns how many were added."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from .search import open_study, optuna_storage

    with store.exclusive(f"optuna-sync:{spec.name}"):
        study = study or open_study(spec)
        choices = grid_choices(spec)
        wanted = {k: CategoricalDistribution(v) for k, v in choices.items()}
        if any(t.distributions.get(k, d) != d for t in study.get_trials(deepcopy=False)
               for k, d in wanted.items()):
            # The grid grew (a study may gain grid points between runs) and Optuna keeps one value
            # space per parameter: rebuild the records from the store, their source, with the new one.
            optuna.delete_study(study_name=spec.name, storage=optuna_storage(spec.storage))
            study, only = open_study(spec), None
        recorded = {t.user_attrs.get("vat_config_key") for t in study.get_trials(deepcopy=False)}
        added = 0
        for params in spec.configurations() if only is None else only:
            if digest(dict(params)) in recorded:
                continue
            rec = configuration_record(spec, store, study_id, params)
            if rec["status"] != "COMPLETE" or rec["value"] is None:
                continue
            study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, value=rec["value"],
                params={k: optuna_value(v) for k, v in params.items()},
                distributions={k: CategoricalDistribution(choices[k]) for k in params},
                intermediate_values=rec["intermediate"], user_attrs=rec["user_attrs"]))
            added += 1
        return added
