"""The Optuna study kept beside the store (the "twin": one Optuna trial per configuration,
``executors.records``) and the store must show the same numbers. ``trial_records`` reads what
the store holds of the trials of some configurations (what their Optuna trials are made of);
``agrees`` says whether an Optuna trial holds what the store's COMPLETE seeds of its configuration
give (``done_view``); ``twin_disagreements`` lists where they differ, for ``vat-study status``.
Optuna's public API only; nothing here writes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import or_, select

from .database import Database
from .faults import retry_transient
from .schema import FinalMetricRow, MetricRow, TrialRow


def finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@retry_transient  # a lost connection is retried, as every store call is (store.faults)
def trial_records(db: Database, study_id: int, keys: list[str], metric: str,
                  config_keys: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """key -> {trial_id, status, seed, config_key, batch_group, versions (its provenance record),
    final: {name: value}, curve: {step: value of ``metric``}} for the study's trials of ``keys``
    and of ``config_keys`` (every seed recorded of those configurations)."""
    with db.session() as s:
        rows = s.execute(select(TrialRow.id, TrialRow.key, TrialRow.status, TrialRow.seed, TrialRow.config_key,
                                TrialRow.batch_group, TrialRow.versions)
                         .where(TrialRow.study_id == study_id,
                                or_(TrialRow.key.in_(list(keys)), TrialRow.config_key.in_(list(config_keys))))).all()
        ids = {r.id: r.key for r in rows}
        finals = s.execute(select(FinalMetricRow.trial_id, FinalMetricRow.name, FinalMetricRow.value)
                           .where(FinalMetricRow.trial_id.in_(list(ids)))).all() if ids else []
        steps = s.execute(select(MetricRow.trial_id, MetricRow.step, MetricRow.value)
                          .where(MetricRow.trial_id.in_(list(ids)), MetricRow.name == metric)).all() if ids else []
    out = {r.key: {"trial_id": r.id, "status": r.status, "seed": r.seed, "config_key": r.config_key,
                   "batch_group": r.batch_group, "versions": dict(r.versions or {}), "final": {}, "curve": {}}
           for r in rows}
    for tid, name, value in finals:
        out[ids[tid]]["final"][name] = value
    for tid, step, value in steps:
        out[ids[tid]]["curve"][int(step)] = value
    return out


def done_view(done: Mapping[int, tuple[float | None, Mapping[int, float]]]) -> dict[str, Any]:
    """What the store holds of a configuration's COMPLETE seeds (seed -> (final metric, curve)):
    the numbers its Optuna trial must hold (``agrees``), whether or not every seed is done."""
    values = [v for v, _ in done.values()]
    curves = [c for _, c in done.values()]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return {"seeds": sorted(done), "value": statistics.fmean(values) if values and None not in values else None,
            "intermediate": {int(s): statistics.fmean(c[s] for c in curves) for s in steps}}


def agrees(trial, seeds: list[int], value: float | None, intermediate: Mapping[int, float]) -> bool:
    """Whether an Optuna trial holds these numbers: the seeds (in any order), the value and the
    intermediate values (to a relative 1e-9: the same means summed in another order)."""
    def close(a: Any, b: Any) -> bool:
        return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)

    if sorted(trial.user_attrs.get("seeds") or []) != sorted(seeds) or not close(trial.value, value):
        return False
    got = {int(k): v for k, v in trial.intermediate_values.items()}
    return set(got) == {int(k) for k in intermediate} and all(close(got[int(k)], v) for k, v in intermediate.items())


def twin_disagreements(store, name: str, spec_json: Mapping[str, Any], df) -> list[str]:
    """Where the study's Optuna study (what optuna-dashboard shows) disagrees with the store (what
    ``status`` and the report show): a COMPLETE Optuna trial whose seeds, value or intermediate
    values are not the store's COMPLETE seeds of its configuration (``agrees``), and for a grid
    study a configuration whose seeds are all COMPLETE but that has no Optuna trial. One line
    each (``df``: the study's trials frame). Reads only."""
    import optuna

    metric = (spec_json.get("metric") or {}).get("name", "val_error")
    ok = df[df["status"] == "COMPLETE"] if not df.empty else df
    if ok.empty:
        return []
    try:
        storage = optuna.storages.RDBStorage(store.url, skip_table_creation=True, skip_compatibility_check=True)
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001  (KeyError: no such study; an error: no Optuna tables in this database)
        return [f"the store has {len(ok)} COMPLETE trial(s) but no Optuna study {name!r} records them"]
    sid = store.study_id(name)
    rows = trial_records(store, sid, list(ok["key"]), metric)
    done: dict[str, dict[int, tuple[float | None, dict[int, float]]]] = {}
    for r in rows.values():
        if r["status"] == "COMPLETE":
            curve = {s: v for s, v in r["curve"].items() if finite(v) is not None}
            done.setdefault(r["config_key"], {})[int(r["seed"])] = (finite(r["final"].get(metric)), curve)
    shown = {ck: ", ".join(f"{c.removeprefix('param.')}={v}" for c, v in row.items()
                           if c.startswith("param.") and v == v and v is not None) or "(the configuration)"
             for ck, row in ok.drop_duplicates("config_key").set_index("config_key").iterrows()}
    out = []
    twins = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and "vat_config_key" in t.user_attrs]
    for t in twins:
        ck = t.user_attrs["vat_config_key"]
        view = done_view(done.get(ck, {}))
        if not agrees(t, **view):
            store_side = (f"{view['value']:.6g} over seeds {view['seeds']}" if view["value"] is not None
                          else "no COMPLETE seed")
            out.append(f"{shown.get(ck, ck)} (Optuna trial {t.number}): Optuna {t.value:.6g} over seeds "
                       f"{sorted(t.user_attrs.get('seeds') or [])}, the store {store_side}"
                       + ("" if view["intermediate"] == {int(k): v for k, v in t.intermediate_values.items()}
                          or view["value"] is None else " (or the intermediate values differ)"))
    if not (spec_json.get("search") or {}).get("optuna"):  # a grid: every finished configuration is recorded
        seeds = set(spec_json.get("seeds") or [])
        twinned = {t.user_attrs["vat_config_key"] for t in twins}
        for ck, by_seed in done.items():
            if ck not in twinned and seeds and seeds <= set(by_seed):
                out.append(f"{shown.get(ck, ck)}: every seed COMPLETE in the store, no Optuna trial records it")
    return out
