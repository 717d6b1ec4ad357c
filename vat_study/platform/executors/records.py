"""Every study is an Optuna study in the store's database (``optuna.load_study(name, storage)``
and ``optuna-dashboard`` open it), written through Optuna's public API only.

One Optuna trial per configuration (its parameters; every seed of it: the study's seeds and any
other seed of it COMPLETE in the store, such as those a sequential look added):

* value: the mean over seeds of ``metric.name``;
* intermediate values: at every evaluation step, the mean over the seeds of ``metric.name``
  (a step counts once every seed has reported it);
* user attributes: ``seeds``, ``vat_config_key``, ``vat_trial_ids`` (the vat-study trial ids,
  in seed order), ``lane_groups`` (the batched models the seeds trained in), ``provenance`` (the
  record of its newest seed's trial: git commit and dirty flag, argv, versions, hardware, as
  the store keeps it in ``versions``), the mean of every
  final metric (``test_error``, ``rvadv``, ``val_error``, ...), and ``per_seed`` (seed ->
  final metrics and vat-study trial id).

The study's Optuna study is opened (created by whichever driver comes first) with its sampler
and pruner by ``open_study``, on Optuna's RDB storage with the store's retries
(``optuna_storage``).

Grid studies: a configuration is recorded (``study.add_trial`` of a finished trial, parameters
as categorical choices over the grid's values) once all its seeds are COMPLETE, by whichever
driver sees it first (``Store.exclusive`` keeps two drivers from recording it twice); when a
recorded configuration's numbers change in the store (its seeds grew, a sequential look added
seeds, a seed was redone), the Optuna study is rebuilt from the store (``sync_grid``;
``store.twin`` says when they agree, and ``vat-study status`` flags where they do not). Optuna
searches: the asked trial gets the same attributes and intermediate values before it is told.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from typing import Any

from ..spec import PlannedTrial, StudySpec, digest
from ..store.twin import agrees, done_view, finite as _finite, trial_records

SCALAR = (str, int, float, bool, type(None))


def optuna_value(v: Any) -> Any:
    """A parameter value as Optuna can hold it (a categorical choice): scalars as they are, a
    list or mapping as its JSON text."""
    return v if isinstance(v, SCALAR) else json.dumps(v, sort_keys=True)


def optuna_storage(url: str):
    from ..store.faults import retrying_optuna_storage  # a lost connection is retried, as the Store's are

    return retrying_optuna_storage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                   if url.startswith("sqlite") else {"pool_pre_ping": True})


def optuna_sampler(spec: StudySpec, offset: int = 0):
    """The study's sampler. ``offset`` (trials the study already has) shifts the seed, so a
    resumed seeded sampler does not replay the points it proposed in the first run."""
    import optuna

    if not spec.is_optuna:  # a grid study's Optuna records are added whole, never sampled
        return optuna.samplers.RandomSampler(seed=0)
    o = spec.search.optuna  # type: ignore[union-attr]
    seed = None if o.seed is None else o.seed + offset
    if o.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if o.sampler == "grid":
        space = {k: (d.choices if d.type == "choice" else list(range(int(d.low), int(d.high) + 1, d.step or 1)))
                 for k, d in o.space.items()}
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def optuna_pruner(spec: StudySpec):
    """The study's pruner (``search.optuna.pruner``); Optuna's NopPruner without one (and for
    grid studies, whose configurations are recorded once finished)."""
    import optuna

    name = spec.search.optuna.pruner if spec.is_optuna else None  # type: ignore[union-attr]
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(spec: StudySpec):
    """Load or create the study's Optuna study in the store's database (several drivers may
    create it at once: the loser of the race loads it). Every study has one: grid studies'
    configurations are recorded in it too (``records``)."""
    import time

    import optuna
    from sqlalchemy.exc import DBAPIError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if spec.metric.mode == "min" else "maximize"
    for attempt in range(6):
        try:
            return optuna.create_study(storage=optuna_storage(spec.storage), study_name=spec.name,
                                       sampler=optuna_sampler(spec), pruner=optuna_pruner(spec),
                                       direction=direction, load_if_exists=True)
        except DBAPIError:  # two drivers creating Optuna's tables at the same moment
            if attempt == 5:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def configuration_records(spec: StudySpec, store, study_id: int,
                          points: list[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``configuration_record`` of every point (keyed by its ``vat_config_key``), from one read of
    the store."""
    planned = {digest(dict(p)): [PlannedTrial.make(spec, p, seed) for seed in spec.seeds] for p in points}
    rows = trial_records(store, study_id, [t.key for ts in planned.values() for t in ts], spec.metric.name,
                         config_keys=list(planned))
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in rows.values():
        by_config.setdefault(r["config_key"], []).append(r)
    return {ck: _record(spec, ts, {t.key: rows[t.key] for t in ts if t.key in rows}, by_config.get(ck, []))
            for ck, ts in planned.items()}


def configuration_record(spec: StudySpec, store, study_id: int, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the Optuna trial of one configuration holds, read from the store: ``status`` (COMPLETE
    when every seed of ``seeds`` is, PRUNED when one was pruned, else RUNNING / FAILED / missing),
    ``value``, ``intermediate`` (step -> mean over seeds), ``user_attrs``. Its seeds are the
    study's and every other seed of the configuration COMPLETE in the store (those a sequential
    look added, or a study's earlier seeds): the numbers ``vat-study status`` and the report show."""
    return configuration_records(spec, store, study_id, [params])[digest(dict(params))]


def _record(spec: StudySpec, planned: list[PlannedTrial], rows: Mapping[str, dict[str, Any]],
            same_config: list[dict[str, Any]]) -> dict[str, Any]:
    name = spec.metric.name
    own = {t.seed for t in planned}
    extra = sorted((r for r in same_config if r["seed"] not in own and r["status"] == "COMPLETE"),
                   key=lambda r: r["seed"])
    per_seed: dict[str, dict[str, Any]] = {}
    curves: list[dict[int, float]] = []
    statuses = []
    done: dict[int, tuple[float | None, dict[int, float]]] = {}  # COMPLETE seed -> (metric, curve)
    for seed, r in [(t.seed, rows.get(t.key)) for t in planned] + [(r["seed"], r) for r in extra]:
        if seed in own:
            statuses.append(r["status"] if r else "missing")
        if r is None:
            continue
        per_seed[str(seed)] = {"vat_trial_id": r["trial_id"], "status": r["status"],
                               **{k: _finite(v) for k, v in sorted(r["final"].items())}}
        curves.append({s: v for s, v in r["curve"].items() if _finite(v) is not None})
        if r["status"] == "COMPLETE":
            done[seed] = (_finite(r["final"].get(name)), curves[-1])
    if all(s == "COMPLETE" for s in statuses):
        status = "COMPLETE"
    elif "PRUNED" in statuses:
        status = "PRUNED"
    else:
        status = next(s for s in ("missing", "RUNNING", "FAILED") if s in statuses) if statuses else "missing"
    every = curves and len(curves) == len(planned) + len(extra)  # a step counts once every seed has reported it
    steps = sorted(set.intersection(*(set(c) for c in curves))) if every else []
    intermediate = {int(s): statistics.fmean(c[s] for c in curves) for s in steps}
    finals = sorted({k for v in per_seed.values() for k in v} - {"vat_trial_id", "status"})
    means = {}
    for k in finals:
        vals = [v.get(k) for v in per_seed.values()]
        means[k] = statistics.fmean(vals) if vals and all(x is not None for x in vals) else None
    value = means.get(name) if status == "COMPLETE" else None
    newest = max((r for r in list(rows.values()) + extra if r.get("versions")), key=lambda r: r["trial_id"],
                 default=None)
    attrs = {"seeds": [t.seed for t in planned] + [r["seed"] for r in extra],
             "vat_config_key": digest(dict(planned[0].params)),
             "provenance": newest["versions"] if newest else {},
             "vat_trial_ids": [v["vat_trial_id"] for v in per_seed.values()],
             "lane_groups": sorted({r["batch_group"] for r in list(rows.values()) + extra if r.get("batch_group")}),
             "per_seed": per_seed, **{k: v for k, v in means.items() if k not in ("seeds", "per_seed")}}
    return {"status": status, "value": value, "intermediate": intermediate, "user_attrs": attrs,
            "done": done_view(done)}


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
    """Record in the study's Optuna study (``study``, or the one ``open_study`` opens)
    every configuration of a grid study (or of ``only``) whose seeds are all COMPLETE and which is
    not recorded yet. A recorded configuration whose numbers the store no longer backs (its seeds
    grew, a sequential look added seeds, a seed was redone: ``agrees``) makes it rebuild the whole
    Optuna study from the store, as a grown grid does (Optuna trials cannot be edited). Returns
    how many were added."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    with store.exclusive(f"optuna-sync:{spec.name}"):
        study = study or open_study(spec)
        choices = grid_choices(spec)
        wanted = {k: CategoricalDistribution(v) for k, v in choices.items()}
        trials = study.get_trials(deepcopy=False)
        recorded = {t.user_attrs.get("vat_config_key"): t for t in trials}
        points = spec.configurations() if only is None else only
        records = configuration_records(spec, store, study_id, points)
        # The grid grew (a study may gain grid points between runs) and Optuna keeps one value
        # space per parameter; or a configuration's numbers changed: rebuild from the store, their source.
        if any(t.distributions.get(k, d) != d for t in trials for k, d in wanted.items()) or \
                any(k in recorded and not agrees(recorded[k], **rec["done"]) for k, rec in records.items()):
            optuna.delete_study(study_name=spec.name, storage=optuna_storage(spec.storage))
            study, recorded, points = open_study(spec), {}, spec.configurations()
            if only is not None:
                records = configuration_records(spec, store, study_id, points)
        added = 0
        for params in points:
            rec = records[digest(dict(params))]
            if digest(dict(params)) in recorded or rec["status"] != "COMPLETE" or rec["value"] is None:
                continue
            study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, value=rec["value"],
                params={k: optuna_value(v) for k, v in params.items()},
                distributions={k: CategoricalDistribution(choices[k]) for k in params},
                intermediate_values=rec["intermediate"], user_attrs=rec["user_attrs"]))
            added += 1
        return added

