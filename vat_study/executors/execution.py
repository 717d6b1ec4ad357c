"""Executing one trial (or one batched group of seeds) through run_trial / run_seeds: store
writes through the lease, timeouts, failures recorded with their kind."""

from __future__ import annotations

import math
import statistics
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..failpoints import failpoint
from ..objective import resolve_config, run_seeds, run_trial
from ..spec import PlannedTrial, StudySpec, digest
from ..store import Store, mask_secrets
from .planning import seed_groups




class TrialTimeout(BaseException):
    """A trial ran past ``executor.trial_timeout``. A BaseException, like KeyboardInterrupt, so no
    ``except Exception`` inside the training code swallows it."""


class TrialTimer:
    """Stops the training thread once ``seconds`` have passed: a timer thread raises
    ``TrialTimeout`` in it (``PyThreadState_SetAsyncExc``), which lands at the next Python
    bytecode of the training loop, i.e. within one step. While the thread is inside the store
    (``store_call``), the exception is held back and raised when it leaves, so a timeout never
    interrupts a database transaction. ``seconds=None``: no limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._armed = self._expired = self._injected = self._in_store = False
        self._thread_id = threading.get_ident()
        self._timer: threading.Timer | None = None

    def _inject(self) -> None:
        import ctypes

        self._injected = True
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), ctypes.py_object(TrialTimeout))

    def _fire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            self._expired = True
            if not self._in_store:
                self._inject()

    def __enter__(self) -> TrialTimer:
        if self.seconds is not None:
            self._thread_id = threading.get_ident()
            self._armed = True
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is None:
            return
        self._timer.cancel()
        with self._lock:
            self._armed = False
            if self._injected:  # raised already, or still pending: clear a pending one
                import ctypes

                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)

    @contextmanager
    def store_call(self) -> Iterator[None]:
        with self._lock:
            self._in_store = True
        try:
            yield
        finally:
            with self._lock:
                self._in_store = False
                raise_now = self._armed and self._expired and not self._injected
                if raise_now:
                    self._injected = True
            if raise_now:
                raise TrialTimeout()


def failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TrialTimeout):
        return "timeout"
    if isinstance(exc, FloatingPointError):
        return "diverged"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return "error"


INTERRUPTED_BY_USER = "interrupted: stopped by the user (Ctrl-C) before this trial finished"


def _failure_text(exc: BaseException, timeout: float | None, url: str, seeds: int = 1) -> str:
    if isinstance(exc, TrialTimeout):
        batch = f" (x {seeds} seeds trained as one batch)" if seeds > 1 else ""
        return f"timeout: the trial ran past executor.trial_timeout = {timeout:g} s{batch} and was stopped"
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED_BY_USER
    return mask_secrets(traceback.format_exc(), url)


def execute_trial(store: Store, study_id: int, t: PlannedTrial, optuna_number: int | None = None,
                  report_hook: Callable[[int, Mapping[str, float]], None] | None = None,
                  threads: int = 1, timeout: float | None = None) -> dict[str, Any] | None:
    """Run one trial through run_trial, recording it; a failure is recorded as FAILED (with its
    traceback and kind: error, diverged, timeout), not raised. Ctrl-C marks the trial FAILED
    (interrupted) and re-raises; a kill leaves it RUNNING, which the next run marks FAILED and
    redoes.

    ``threads``: torch's intra-op threads for the trial (the study's per-trial cpu), the same in
    every executor, so one seed gives the same numbers in-process and on Ray."""
    return execute_group(store, study_id, [t], optuna_number, report_hook, threads, timeout)[0]


def execute_group(store: Store, study_id: int, trials: list[PlannedTrial], optuna_number: int | None = None,
                  report_hook: Callable[[int, Mapping[str, float]], None] | None = None,
                  threads: int = 1, timeout: float | None = None) -> list[dict[str, Any] | None]:
    """Run trials that differ only in their seed; two or more train as one batched model
    (run_trial with ``seeds``, see vat_study.batched) and are stored as ordinary trials sharing a
    ``batch_group``. Returns each trial's final metrics (None where it failed). The time limit
    of a group is ``timeout`` times the number of seeds."""
    import torch

    batched = len(trials) > 1
    group = digest([t.key for t in trials]) if batched else None
    leases = {t.seed: store.start_trial(study_id, key=t.key, config_key=t.config_key, params=t.params, seed=t.seed,
                                        config=resolve_config(t.config), optuna_number=optuna_number,
                                        batch_group=group)
              for t in trials}
    failpoint("trial.started")
    timer = TrialTimer(None if timeout is None else timeout * len(trials))

    def report(step: int, metrics: Mapping[str, float]) -> None:
        m = dict(metrics)
        seed = m.pop("seed") if batched else trials[0].seed
        with timer.store_call():
            store.report(leases[seed], step, m)
        if report_hook is not None:
            report_hook(step, m)

    config = trials[0].batched_config([t.seed for t in trials]) if batched else trials[0].config
    seeds = config.pop("seeds", None)
    previous = torch.get_num_threads()
    torch.set_num_threads(max(int(threads), 1))
    try:
        with timer:
            result = run_seeds(config, seeds, report) if batched else run_trial(config, report)
    except (Exception, TrialTimeout, KeyboardInterrupt) as e:  # noqa: BLE001  one failing trial never stops the study
        text, kind = _failure_text(e, timeout, store.url, len(trials)), failure_kind(e)
        for lease in leases.values():
            store.fail_trial(lease, text, kind=kind)
        if isinstance(e, KeyboardInterrupt):
            raise
        return [None] * len(trials)
    finally:
        torch.set_num_threads(previous)
    per_seed = result.metrics if batched else {trials[0].seed: result}
    out: list[dict[str, Any] | None] = []
    for t in trials:
        if t.seed in per_seed:
            metrics = per_seed[t.seed]
            out.append(metrics if store.finish_trial(leases[t.seed], metrics) else None)
        else:  # a seed of a batch whose loss turned NaN/inf (the others trained on)
            store.fail_trial(leases[t.seed], f"FloatingPointError: {result.failed[t.seed]}", kind="diverged")
            out.append(None)
        failpoint("trial.finished")
    return out


def threads_for(spec: StudySpec) -> int:
    return max(int(spec.executor.per_trial.cpu), 1)


def run_planned(spec: StudySpec, store: Store, study_id: int, trials: list[PlannedTrial],
                optuna_number: int | None = None) -> list[dict[str, Any] | None]:
    """Run ``trials`` in order, seeds of one configuration batched by ``executor.batch_seeds``;
    returns each trial's final metrics (None where it failed), in the order given."""
    results: dict[str, dict[str, Any] | None] = {}
    for group in seed_groups(trials, spec.executor.batch_seeds):
        outs = execute_group(store, study_id, group, optuna_number, threads=threads_for(spec),
                             timeout=spec.executor.trial_timeout)
        results.update({t.key: m for t, m in zip(group, outs)})
    return [results[t.key] for t in trials]


def run_configuration(spec: StudySpec, store: Store, study_id: int, params: Mapping[str, Any],
                      optuna_number: int | None = None) -> float:
    """All seeds of one configuration (an Optuna point); returns the mean metric over seeds.
    Seeds already COMPLETE in the store are reused, not re-run. Raises if any seed failed."""
    trials = [PlannedTrial.make(spec, params, seed) for seed in spec.seeds]
    values = {t.seed: store.final_metric(study_id, t.key, spec.metric.name) for t in trials}
    todo = [t for t in trials if values[t.seed] is None]
    for t, metrics in zip(todo, run_planned(spec, store, study_id, todo, optuna_number)):
        if metrics is None:
            raise RuntimeError(f"seed {t.seed} failed (see the store for its traceback)")
        values[t.seed] = metrics.get(spec.metric.name)
    for seed, value in values.items():
        if value is None or not math.isfinite(float(value)):
            raise RuntimeError(f"metric {spec.metric.name!r} is missing or not finite for seed {seed}")
    return statistics.fmean(float(v) for v in values.values())


# ------------------------------------------------------------------------------ optuna
