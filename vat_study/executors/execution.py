"""Executing one trial (or one group of lanes) through run_trial / run_lanes: store
writes through the lease, timeouts, failures recorded with their kind."""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..failpoints import failpoint
from .. import provenance, surface
from ..surface import resolve_config
from ..spec import PlannedTrial, StudySpec, digest
from ..store import Store, mask_secrets
from .planning import lane_groups


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


def stopped_text(exc: KeyboardInterrupt) -> str:
    """What a trial stopped by Ctrl-C, SIGTERM or SIGHUP records."""
    from ..signals import Stopped

    if isinstance(exc, Stopped):
        return f"interrupted: the run got {exc.name} before this trial finished"
    return INTERRUPTED_BY_USER


def _failure_text(exc: BaseException, timeout: float | None, url: str, lanes: int = 1) -> str:
    if isinstance(exc, TrialTimeout):
        batch = f" (x {lanes} lanes trained as one batched model)" if lanes > 1 else ""
        return f"timeout: the trial ran past executor.trial_timeout = {timeout:g} s{batch} and was stopped"
    if isinstance(exc, KeyboardInterrupt):
        return stopped_text(exc)
    from ..store.faults import clean_text, describe

    text = mask_secrets(traceback.format_exc(), url)
    line = describe(exc, url)  # a store or disk fault: said in one line, last (what status shows)
    return clean_text(text + (f"\nstore or disk fault: {line}" if line else ""))


def execute_group(store: Store, study_id: int, trials: list[PlannedTrial],
                  report_hook: Callable[[int, Mapping[str, float]], None] | None = None,
                  threads: int = 1, timeout: float | None = None, node: str | None = None,
                  log_dir: str | None = None, checkpoint_every: int | None = None,
                  checkpoint_dir: str | None = None, track: Callable[[list[PlannedTrial]], Any] | None = None
                  ) -> list[dict[str, Any] | None]:
    """Run trials that differ only in lane settings (``planning.lane_groups``); two or more train
    as lanes of one batched model (``run_lanes``, see vat_study.batched) and are stored as
    ordinary trials sharing a ``batch_group``. Returns each trial's final metrics (None where it
    failed). The time limit of a group is ``timeout`` times the number of lanes. ``node``: the Ray
    node running it, recorded with each trial. ``log_dir``: the trials' own output goes to a
    capped log file there (``trial_output``), not to the driver's terminal.
    ``checkpoint_every`` / ``checkpoint_dir``: mid-trial checkpoints (``train.checkpoints``), kept
    when the run is killed or stopped (the next run resumes from them), deleted otherwise."""
    import torch

    from ..surface import checkpoints
    from ..trial_output import captured_output

    batched = len(trials) > 1
    group = digest([t.key for t in trials]) if batched else None
    threads_noted = provenance.planned_threads.set(max(int(threads), 1))  # recorded with the trials started
    leases = [store.start_trial(study_id, key=t.key, config_key=t.config_key, params=t.params, seed=t.seed,
                                config=resolve_config(t.config), optuna_number=t.optuna_number, batch_group=group,
                                node=node)
              for t in trials]
    provenance.planned_threads.reset(threads_noted)
    failpoint("trial.started")
    timer = TrialTimer(None if timeout is None else timeout * len(trials))
    trackers = track(trials) if track is not None else None  # the study's tracking: (vat_study.tracking)

    def report(step: int, metrics: Mapping[str, float]) -> None:
        m = dict(metrics)
        lane = int(m.pop("lane")) if batched else 0
        with timer.store_call():
            store.report(leases[lane], step, m)
            if trackers is not None:
                trackers.step(lane, step, m)
        if report_hook is not None:
            report_hook(step, m)

    ck_path = Path(checkpoint_dir) / f"{digest([t.key for t in trials])}.pt" \
        if checkpoint_every and checkpoint_dir else None
    previous = torch.get_num_threads()
    torch.set_num_threads(max(int(threads), 1))
    try:
        with timer, captured_output(Path(log_dir) / f"{trials[0].key}.log" if log_dir else None), \
                (checkpoints(str(ck_path), checkpoint_every) if ck_path else contextlib.nullcontext()):
            if batched:
                result = surface.run_lanes([t.config for t in trials], report)
                metrics, failed = result.metrics, result.failed
            else:
                metrics, failed = [surface.run_trial(trials[0].config, report)], {}
    except (Exception, TrialTimeout, KeyboardInterrupt) as e:  # noqa: BLE001  one failing trial never stops the study
        text, kind = _failure_text(e, timeout, store.url, len(trials)), failure_kind(e)
        for lease in leases:
            store.fail_trial(lease, text, kind=kind)
        if trackers is not None:
            trackers.close("FAILED")
        if isinstance(e, KeyboardInterrupt):
            raise  # its checkpoint is kept: the next run goes on from it
        if ck_path is not None:
            ck_path.unlink(missing_ok=True)
        return [None] * len(trials)
    finally:
        torch.set_num_threads(previous)
    out: list[dict[str, Any] | None] = []
    for i, lease in enumerate(leases):
        if metrics[i] is not None:
            out.append(metrics[i] if store.finish_trial(lease, metrics[i]) else None)
        else:  # a lane whose loss turned NaN/inf (the others trained on)
            store.fail_trial(lease, f"FloatingPointError: {failed[i]}", kind="diverged")
            out.append(None)
        if trackers is not None:
            trackers.finish(i, metrics[i], "COMPLETE" if out[-1] is not None else "FAILED")
        failpoint("trial.finished")
    if ck_path is not None:
        ck_path.unlink(missing_ok=True)
    return out


def checkpoint_interval(spec: StudySpec, group: list[PlannedTrial]) -> int | None:
    """``executor.checkpoint_every`` for this group: 'auto' is every 1,000 updates for trials of
    10,000 updates or more, none below."""
    every = spec.executor.checkpoint_every
    if every == "auto":
        return AUTO_CHECKPOINT_EVERY if resolve_config(group[0].config)["task"]["steps"] >= AUTO_CHECKPOINT_FROM else None
    return every


AUTO_CHECKPOINT_EVERY, AUTO_CHECKPOINT_FROM = 1000, 10_000


def threads_for(spec: StudySpec) -> int:
    return max(int(spec.executor.per_trial.cpu), 1)


def run_group(spec: StudySpec, store: Store, study_id: int, group: list[PlannedTrial],
              node: str | None = None) -> list[dict[str, Any] | None]:
    """``execute_group`` with the study's threads and time limit, for one group of
    ``planning.lane_groups``."""
    from ..trial_output import trial_log_dir

    return execute_group(store, study_id, group, threads=threads_for(spec), timeout=spec.executor.trial_timeout,
                         node=node, log_dir=str(trial_log_dir(spec)), checkpoint_every=checkpoint_interval(spec, group),
                         checkpoint_dir=str(trial_log_dir(spec).parent / "checkpoints"), track=tracking_for(spec))


def tracking_for(spec: StudySpec) -> Callable[[list[PlannedTrial]], Any] | None:
    """The study's trackers (``tracking:``, ``vat_study.tracking.Trackers``) for a group of its
    trials; None without a tracking block."""
    if spec.tracking is None:
        return None
    from ..tracking import Trackers

    blocks = spec.tracking.model_dump(exclude_none=True)
    return lambda trials: Trackers(blocks, spec.name, trials, [resolve_config(t.config) for t in trials])


def run_planned(spec: StudySpec, store: Store, study_id: int, trials: list[PlannedTrial],
                node: str | None = None) -> list[dict[str, Any] | None]:
    """Run ``trials`` in order, grouped into lanes by ``planning.lane_groups``; returns each
    trial's final metrics (None where it failed), in the order given."""
    results: dict[str, dict[str, Any] | None] = {}
    for group in lane_groups(trials, spec):
        results.update({t.key: m for t, m in zip(group, run_group(spec, store, study_id, group, node))})
    return [results[t.key] for t in trials]


def pending_trials(spec: StudySpec, store: Store, study_id: int, points: list[Mapping[str, Any]],
                   optuna_numbers: list[int | None]) -> list[PlannedTrial]:
    """The trials (one per seed) of these configurations (Optuna points) that have no final metric
    in the store yet: seeds already COMPLETE are reused, not re-run."""
    return [t for params, n in zip(points, optuna_numbers)
            for t in (PlannedTrial.make(spec, params, seed, n) for seed in spec.seeds)
            if store.final_metric(study_id, t.key, spec.metric.name) is None]


def configuration_value(spec: StudySpec, store: Store, study_id: int, params: Mapping[str, Any]) -> float:
    """The mean metric over the seeds of one configuration, from the store; raises RuntimeError
    naming the seed that failed or has no finite metric."""
    values = {}
    for seed in spec.seeds:
        t = PlannedTrial.make(spec, params, seed)
        value = store.final_metric(study_id, t.key, spec.metric.name)
        if value is None or not math.isfinite(float(value)):
            status = store.trial_statuses(study_id).get(t.key)
            why = "failed (see the store for its traceback)" if status != "COMPLETE" else \
                f"has no finite metric {spec.metric.name!r}"
            raise RuntimeError(f"seed {t.seed} {why}")
        values[t.seed] = float(value)
    return statistics.fmean(values.values())


def run_configuration(spec: StudySpec, store: Store, study_id: int, params: Mapping[str, Any],
                      optuna_number: int | None = None, node: str | None = None) -> float:
    """All seeds of one configuration (an Optuna point); returns the mean metric over seeds.
    Seeds already COMPLETE in the store are reused, not re-run. Raises if any seed failed."""
    run_planned(spec, store, study_id, pending_trials(spec, store, study_id, [params], [optuna_number]), node)
    return configuration_value(spec, store, study_id, params)
