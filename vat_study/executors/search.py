"""Optuna plumbing shared by both executors: sampler, suggestions, storage, resuming a study."""

from __future__ import annotations

from typing import Any

from ..spec import StudySpec



from .planning import RunSummary


def ask_run_tell(spec: StudySpec, store, study_id: int, study, k: int, run_todo, summary: RunSummary) -> None:
    """One batch of an Optuna study: ask for ``k`` configurations, train the seeds of theirs not
    yet COMPLETE with ``run_todo(trials)`` (which groups them into lanes), tell each configuration
    its mean over seeds (or FAIL, with the reason in ``summary``)."""
    import optuna

    from .execution import configuration_value, pending_trials

    asked = [study.ask() for _ in range(k)]
    points = [suggest(trial, spec) for trial in asked]
    todo = pending_trials(spec, store, study_id, points, [t.number for t in asked])
    if todo:
        run_todo(todo)
    for trial, params in zip(asked, points):
        try:
            study.tell(trial, configuration_value(spec, store, study_id, params))
        except RuntimeError as e:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            summary.failed += 1
            summary.errors.append(f"optuna trial {trial.number}: {e}")
        summary.ran += 1


def optuna_sampler(spec: StudySpec, offset: int = 0):
    """The study's sampler. ``offset`` (trials the study already has) shifts the seed, so a
    resumed seeded sampler does not replay the points it proposed in the first run."""
    import optuna

    o = spec.search.optuna  # type: ignore[union-attr]
    seed = None if o.seed is None else o.seed + offset
    if o.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if o.sampler == "grid":
        space = {k: (d.choices if d.type == "choice" else list(range(int(d.low), int(d.high) + 1, d.step or 1)))
                 for k, d in o.space.items()}
        return optuna.samplers.GridSampler(space, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def suggest(trial, spec: StudySpec) -> dict[str, Any]:
    """Define-by-run search space (Optuna's trial.suggest_*)."""
    params: dict[str, Any] = {}
    for k, d in spec.search.optuna.space.items():  # type: ignore[union-attr]
        if d.type == "choice":
            params[k] = trial.suggest_categorical(k, d.choices)
        elif d.type == "int":
            params[k] = trial.suggest_int(k, int(d.low), int(d.high), step=d.step or 1, log=d.log)
        else:
            params[k] = trial.suggest_float(k, d.low, d.high, log=d.type == "log_uniform" or d.log)
    return params


def ask_batch(spec: StudySpec) -> int:
    """How many Optuna configurations to ask for at once: with ``executor.lanes`` as many as fill
    one lane group with all their seeds (at least 1); otherwise 1 (ask, run, tell). Points asked
    together whose structural parameters agree train as lanes of one model; the others train in
    groups of their own. Each is told its own result, so the sampler sees every point."""
    if spec.executor.lanes <= 1:
        return 1
    return max(spec.executor.lanes // len(spec.seeds), 1)


def optuna_storage(url: str):
    import optuna

    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}
                                      if url.startswith("sqlite") else {"pool_pre_ping": True})


def begin_optuna(spec: StudySpec, summary: RunSummary) -> tuple[Any, int]:
    """prepare_optuna, with the counts recorded in ``summary``. Returns (study, remaining)."""
    study, remaining, interrupted = prepare_optuna(spec)
    summary.interrupted_marked += interrupted
    summary.planned = spec.search.optuna.n_trials  # type: ignore[union-attr]
    summary.skipped = summary.planned - remaining
    return study, remaining


def prepare_optuna(spec: StudySpec) -> tuple[Any, int, int]:
    """Load or create the Optuna study in the store's database; trials a killed run left RUNNING
    become FAIL and their parameters are enqueued again. Returns (study, remaining, interrupted);
    ``study.sampler`` is seeded for this run (see ``optuna_sampler``)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "minimize" if spec.metric.mode == "min" else "maximize"
    study = optuna.create_study(storage=optuna_storage(spec.storage), study_name=spec.name,
                                sampler=optuna_sampler(spec), direction=direction, load_if_exists=True)
    interrupted = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_system_attr(t._trial_id, "vat_interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
            interrupted += 1
    counted = [t for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and not t.system_attrs.get("vat_interrupted"))]
    remaining = max(spec.search.optuna.n_trials - len(counted), 0)  # type: ignore[union-attr]
    study.sampler = optuna_sampler(spec, offset=len(study.get_trials(deepcopy=False)))
    return study, remaining, interrupted
