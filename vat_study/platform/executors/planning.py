"""Planning a (re)run: refuse edited studies, register the study, mark what a killed run left
RUNNING, split the trials into those to run and those COMPLETE, group trials into lanes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..failpoints import failpoint
from ...surface import (BOOKKEEPING_SETTINGS, LEGACY_IMPLEMENTATION, WINDOWED_METRICS, comparable_config,
                       identity_config, lane_structure, param_path, settings_paths)
from ..results import trial_configs
from ..spec import PlannedTrial, StudySpec, canonical, digest, set_dotted
from ..store import Store


@dataclass
class RunSummary:
    study: str
    planned: int = 0  # trials this study has (grid) or configurations asked for (optuna)
    skipped: int = 0  # already COMPLETE in the store: not run again
    ran: int = 0
    failed: int = 0
    interrupted_marked: int = 0  # RUNNING rows of a killed run, marked FAILED and redone
    by_others: int = 0  # trials this run planned that other drivers of the study ran meanwhile
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class Plan:
    study_id: int
    todo: list[PlannedTrial]
    done: list[PlannedTrial]
    interrupted: int


def check_same_study(spec: StudySpec, store: Store) -> None:
    """Refuse to continue a stored study whose task, method or probes differ from this file's:
    its finished trials would silently mix with new ones. The search, seeds, metric and executor
    may change (that is how a study grows), and so may the bookkeeping settings
    (``BOOKKEEPING_SETTINGS``: data_root, download, device, eval_every unless the study selects on
    a training-loss mean). A refusal names every setting that differs, with both values."""
    from ..spec import SpecError, canonical

    from ..store import safe_url

    stored = store.study_spec(spec.name)
    if stored is None:
        return
    now, was = _sections(spec.model_dump(mode="json")), _sections(stored)
    for sections in (now, was):  # an implementation block left out reads as what vat-study 0.2 ran
        method, mode = sections["method"], (sections["task"] or {}).get("mode", "semi_supervised")
        if isinstance(method, dict) and (isinstance(now["method"].get("implementation"), dict)
                                         or isinstance(was["method"].get("implementation"), dict)):
            legacy = LEGACY_IMPLEMENTATION.get(mode, LEGACY_IMPLEMENTATION["semi_supervised"])
            method["implementation"] = {**legacy, **(method.get("implementation") or {})}
    keep = ("task.eval_every",) if spec.metric.name in WINDOWED_METRICS else ()
    now, was = identity_config(now, keep), identity_config(was, keep)
    flat_now, flat_was = _leaves(now), _leaves(was)
    changed = sorted(k for k in set(flat_now) | set(flat_was)
                     if canonical(flat_now.get(k, _ABSENT)) != canonical(flat_was.get(k, _ABSENT)))
    if changed:
        def shown(flat: dict, k: str) -> str:
            return "(not set)" if k not in flat else canonical(flat[k])

        raise SpecError([f"{k}: {shown(flat_was, k)} in the stored study {spec.name!r}, {shown(flat_now, k)} in this "
                         "file" for k in changed]
                        + [f"the study {spec.name!r} in {safe_url(spec.storage)} differs in the settings above, and its "
                           "finished trials would mix with new ones: give the edited study a new name, or use another "
                           "storage, or set the stored one aside (vat-study rename STUDY.yaml NEW, or vat-study delete "
                           "STUDY.yaml, with this study file) (these may change: " + ", ".join(BOOKKEEPING_SETTINGS)
                           + ")"])


_ABSENT = "<absent>"


def _leaves(sections: dict) -> dict:
    """{dotted path: value} down to every leaf of nested mappings (a list is one value)."""
    out: dict = {}

    def walk(prefix: str, v) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            out[prefix] = v
    walk("", sections)
    return out


def _sections(spec: dict) -> dict:
    """A stored study's task, method and probes in today's layout: a task key that is a method
    setting (``implementation``, which vat-study 0.1 kept under task) is read as the method's."""
    out = {"task": {}, "method": dict(spec.get("method") or {}), "probes": spec.get("probes")}
    for k, v in (spec.get("task") or {}).items():
        set_dotted(out, param_path(k) or f"task.{k}", v)
    return out


def check_same_configs(spec: StudySpec, store: Store, study_id: int) -> None:
    """Refuse to continue when a COMPLETE trial's stored, fully resolved config differs from what
    this run would resolve for the same parameters and seed: e.g. a default changed between
    vat-study versions, or the study was edited in a way check_same_study cannot see."""
    from ..spec import SpecError

    problems = []
    for key, (params, seed, stored) in trial_configs(store, study_id).items():
        try:
            now = spec.resolved(params, seed).model_dump(mode="json")
        except Exception as e:  # noqa: BLE001  a stored point this version rejects
            problems.append(f"trial {key} ({canonical(params)}, seed {seed}): this version rejects its config ({e})")
            continue
        now, stored = (settings_paths(comparable_config(c)) for c in (now, stored))  # older versions' upgraded
        diff = sorted(k for k in set(now) | set(stored) if k != "model_path" and now.get(k) != stored.get(k))
        if diff:
            shown = ", ".join(f"{k}: stored {stored.get(k)!r}, now {now.get(k)!r}" for k in diff[:4])
            problems.append(f"trial {key} ({canonical(params)}, seed {seed}) was run with a different config ({shown})")
        if len(problems) >= 5:
            break
    if problems:
        raise SpecError(problems + [f"finished trials of {spec.name!r} would mix with new ones: give the study a "
                                    "new name, or use another storage"])


def check_identity(spec: StudySpec, store: Store) -> int | None:
    """Refuse (``SpecError``) a stored study of this name that this file would not continue
    unchanged (``check_same_study``, ``check_same_configs``); its id, None where it is new."""
    check_same_study(spec, store)
    study_id = store.study_id(spec.name)
    if study_id is not None:
        check_same_configs(spec, store, study_id)
    return study_id


def plan(spec: StudySpec, store: Store, spec_path: str | None = None) -> Plan:
    """Register the study, mark trials a killed run left RUNNING as FAILED (those whose driver is
    dead: ``store.claims``), and split the grid into trials still to run and trials already
    COMPLETE (or PRUNED). The study's identity is checked before (``check_identity``), once."""
    from ..store import safe_url

    stored = spec.model_dump(mode="json")
    stored["storage"] = safe_url(spec.storage)  # never keep a database password in the results
    study_id = store.get_or_create_study(spec.name, stored, spec_path)
    interrupted = store.claims.fail_stale(study_id, spec.executor.stale_after)  # a live driver's trials are left alone
    statuses = store.trial_statuses(study_id)
    trials = spec.expand() if not spec.is_optuna else []
    done = [t for t in trials if statuses.get(t.key) in ("COMPLETE", "PRUNED")]
    todo = [t for t in trials if statuses.get(t.key) not in ("COMPLETE", "PRUNED")]
    failpoint("study.planned")
    return Plan(study_id, todo, done, interrupted)


def lane_groups(trials: list[PlannedTrial], spec: StudySpec) -> list[list[PlannedTrial]]:
    """The trials in groups that train as one batched model (order kept): with ``executor.lanes``
    trials whose resolved configs agree but for the lane settings (``config.lane_structure``; with
    zca also the seed, as zca is fitted on each seed's pool), up to ``lanes`` per group; with
    ``executor.batch_seeds`` the seeds of one configuration; otherwise one trial per group."""
    ex = spec.executor
    if ex.lanes > 1:
        def key(t: PlannedTrial) -> str:
            return digest([lane_structure(t.config), t.seed if t.resolved.task.zca else None])
        return _grouped(trials, key, ex.lanes)
    return _grouped(trials, lambda t: t.config_key, ex.batch_seeds)


def _grouped(trials: list[PlannedTrial], key, size: int) -> list[list[PlannedTrial]]:
    by: dict[str, list[PlannedTrial]] = {}
    for t in trials:
        by.setdefault(key(t), []).append(t)
    return [g[i:i + size] for g in by.values() for i in range(0, len(g), max(size, 1))]
