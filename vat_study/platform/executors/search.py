"""An Optuna search, shared by both executors: suggestions, several drivers of one study (each
asks, runs and tells, as Optuna's RDB workers do), pruning, taking over dead drivers' trials,
resuming a study. The Optuna study itself (storage, sampler, pruner) and what its trials record
are ``records``'. Only Optuna's public API."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..spec import StudySpec
from .planning import RunSummary
from .records import configuration_record, open_study, optuna_sampler


def _counts(t, retried: set[int]) -> bool:
    """Whether an Optuna trial takes a place of ``n_trials``: all but a FAIL another trial
    retries (its driver died) or one asked beyond the budget by a racing driver."""
    from optuna.trial import TrialState

    return not (t.state == TrialState.FAIL and (t.number in retried or t.user_attrs.get("vat_surplus")
                                                or t.system_attrs.get("vat_interrupted")))


def _retried(trials) -> set[int]:
    return {t.user_attrs["vat_retry_of"] for t in trials if "vat_retry_of" in t.user_attrs}


def _surplus(study, trial, n_trials: int) -> bool:
    """Drivers asking at once may ask past ``n_trials``; Optuna numbers trials in order, so a trial
    with ``n_trials`` counted trials before it is one too many."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    return sum(1 for t in trials if t.number < trial.number and _counts(t, retried)) >= n_trials


def ask_run_tell(spec: StudySpec, store, study_id: int, study, k: int, run_todo, summary: RunSummary,
                 driver) -> None:
    """One batch of an Optuna study: ask for ``k`` configurations (each tagged with this driver),
    train the seeds of theirs not yet COMPLETE with ``run_todo(trials)`` (which groups them into
    lanes and shares them with other drivers) while a reporter gives Optuna their intermediate
    values (and with a pruner, prunes), then record each configuration (``records``) and tell it
    its mean over seeds, PRUNED, or FAIL (with the reason in ``summary``)."""
    import optuna

    from .execution import configuration_value, pending_trials

    n_trials = spec.search.optuna.n_trials  # type: ignore[union-attr]
    asked, points = [], []
    for _ in range(k):
        trial = study.ask()
        trial.set_user_attr("vat_driver", driver.token)
        if _surplus(study, trial, n_trials):
            trial.set_user_attr("vat_surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.sampler = optuna_sampler(spec, offset=trial.number)  # drivers asking at once get distinct points
        asked.append(trial)
        points.append(suggest(trial, spec))
    todo = pending_trials(spec, store, study_id, points, [t.number for t in asked])
    reporter = _Reporter(spec, store, study_id, list(zip(asked, points)))
    if todo:
        with reporter:
            run_todo(todo)
    for trial, params in zip(asked, points):
        rec = configuration_record(spec, store, study_id, params)
        reporter.report(trial, rec)
        for name, value in rec["user_attrs"].items():
            trial.set_user_attr(name, value)
        if rec["status"] == "PRUNED":
            _tell(study, trial, summary, state=optuna.trial.TrialState.PRUNED)
            summary.ran += 1
            continue
        try:
            value = configuration_value(spec, store, study_id, params)
            if rec["status"] == "COMPLETE" and rec["value"] is not None:
                value = rec["value"]  # the mean over every COMPLETE seed of it, as the store shows it
        except RuntimeError as e:
            _tell(study, trial, summary, state=optuna.trial.TrialState.FAIL)
            summary.failed += 1
            summary.errors.append(f"optuna trial {trial.number}: {e}")
        else:
            _tell(study, trial, summary, value)
        summary.ran += 1


class _Reporter:
    """While the seeds of asked configurations train: polls the store every ``every`` seconds,
    reports each configuration's new intermediate values (mean over seeds, ``records``) to its
    Optuna trial, and with a pruner prunes a configuration the pruner stops: its seeds become
    PRUNED in the store (a running seed stops at its next evaluation, the rest never start)."""

    def __init__(self, spec: StudySpec, store, study_id: int, asked, every: float = 0.5) -> None:
        import threading

        self.spec, self.store, self.study_id, self.every = spec, store, study_id, every
        self.asked = asked  # [(trial, params)]
        self.reported: dict[int, set[int]] = {t.number: set() for t, _ in asked}
        self.pruned: set[int] = set()
        self.prune = spec.search.optuna.pruner is not None  # type: ignore[union-attr]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vat-study-optuna-reporter", daemon=True)

    def __enter__(self) -> _Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        import logging

        while not self._stop.wait(self.every):
            try:
                self.poll()
            except Exception as e:  # noqa: BLE001  a missed poll is retried; training goes on
                logging.getLogger(__name__).warning("reporting intermediate values failed (%s)", e)

    def report(self, trial, rec, prune: bool = False) -> bool:
        """Reports the evaluations of ``rec`` not yet reported, in step order; with ``prune``, asks
        the pruner after each one (as an objective calling ``trial.report`` and
        ``trial.should_prune`` at every evaluation would), so its decision does not depend on how
        many evaluations one poll found. True: the pruner stops the configuration."""
        done = self.reported[trial.number]
        for step in sorted(rec["intermediate"]):
            if step not in done:
                trial.report(rec["intermediate"][step], step)
                done.add(step)
                if prune and trial.should_prune():
                    return True
        return False

    def poll(self) -> None:
        from ..spec import PlannedTrial
        from ...surface import resolve_config

        for trial, params in self.asked:
            if trial.number in self.pruned:
                continue
            rec = configuration_record(self.spec, self.store, self.study_id, params)
            if self.report(trial, rec, prune=self.prune and rec["status"] != "COMPLETE"):
                planned = [PlannedTrial.make(self.spec, params, seed, trial.number) for seed in self.spec.seeds]
                if self.store.prune_trials(self.study_id, [{**dataclasses.asdict(t), "config": resolve_config(t.config)}
                                                           for t in planned
                                                           if rec["user_attrs"]["per_seed"].get(str(t.seed), {})
                                                           .get("status") != "COMPLETE"]):
                    self.pruned.add(trial.number)  # (none changed: its seeds finished meanwhile, it is COMPLETE)


def _tell(study, trial, summary: RunSummary, value=None, state=None) -> None:
    try:
        study.tell(trial, value, state=state)
    except (ValueError, RuntimeError) as e:  # another driver took it over (this one was presumed dead)
        summary.errors.append(f"optuna trial {trial.number}: not told ({e})")


def reap_stale(spec: StudySpec, store, study_id: int, study, driver) -> int:
    """RUNNING Optuna trials of dead drivers (``store.claims``; or, written before drivers were
    recorded, older than ``executor.stale_after``) become FAIL and their parameters are enqueued
    again (user attribute ``vat_retry_of``), by exactly one live driver. Returns how many."""
    import datetime as dt

    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return 0
    stale_after = spec.executor.stale_after
    dead = store.claims.dead_drivers(study_id, stale_after)
    known = set(store.claims.drivers_frame(study_id).token)
    old = dt.datetime.now() - dt.timedelta(seconds=stale_after)  # Optuna's times: naive, local
    by: dict[str | None, list] = {}
    for t in running:
        token = t.user_attrs.get("vat_driver")
        if token in dead or (token is not None and token not in known) or \
                (token is None and t.datetime_start is not None and t.datetime_start < old):
            by.setdefault(token if token in known else None, []).append(t)
    n = 0
    for token, trials in by.items():
        if token is not None and not store.claims.reap_driver(token, driver.token):
            continue  # another driver is taking these over
        for t in trials:
            try:
                study.tell(t.number, state=TrialState.FAIL)
            except (ValueError, RuntimeError):
                continue  # finished or failed by another driver meanwhile
            study.enqueue_trial(t.params, user_attrs={"vat_retry_of": t.number}, skip_if_exists=False)
            n += 1
    return n


def optuna_loop(spec: StudySpec, store, study_id: int, driver, run_todo, summary: RunSummary,
                batch: int | None = None) -> None:
    """Drive the study's Optuna study until it has ``n_trials`` configurations, together with any
    other drivers (as Optuna's own RDB workers do: each asks, runs and tells; the budget is
    shared): ask ``batch`` configurations at a time (default ``ask_batch``), take over the
    trials of dead drivers, and wait for those live drivers still run."""
    import time

    from optuna.trial import TrialState

    n_trials = spec.search.optuna.n_trials  # type: ignore[union-attr]
    study = open_study(spec)
    summary.planned = n_trials
    batch = batch or ask_batch(spec)
    poll = min(max(spec.executor.heartbeat_every / 2, 0.2), 2.0)
    first = True
    while True:
        summary.interrupted_marked += reap_stale(spec, store, study_id, study, driver)
        trials = study.get_trials(deepcopy=False)
        retried = _retried(trials)
        counted = [t for t in trials if t.state != TrialState.WAITING and _counts(t, retried)]
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if first:
            summary.skipped = min(sum(t.state.is_finished() for t in counted), n_trials)
            first = False
        k = min(batch, max(n_trials - len(counted), 0) + waiting)
        if k > 0:
            ask_run_tell(spec, store, study_id, study, k, run_todo, summary, driver)
        elif any(t.state == TrialState.RUNNING for t in trials):
            time.sleep(poll)  # another driver's configurations: wait, and take them over if it dies
        else:
            return


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
