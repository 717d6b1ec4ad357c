"""Executing one trial (or one group of lanes) through run_trial / run_lanes: store
writes through the lease, timeouts, failures recorded with their kind."""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..failpoints import failpoint
from .. import provenance
from ... import surface
from ..spec import PlannedTrial, StudySpec, digest
from ..store import Store, mask_secrets
from ..store.claims import STALE_AFTER, Driver
from .planning import lane_groups


class LeaseLost(RuntimeError):
    """Every trial of a group lost its lease (pruned, or taken over by another driver): training
    stops, as nothing it writes would be kept."""


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


from ..store.claims import INTERRUPTED_BY_USER  # noqa: E402,F401  (re-exported: the CLI's Ctrl-C path)


def stopped_text(exc: KeyboardInterrupt) -> str:
    """What a trial stopped by Ctrl-C, SIGTERM or SIGHUP records."""
    from ..signals import interrupted_text

    return interrupted_text(exc, INTERRUPTED_BY_USER)


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


@dataclass(frozen=True)
class Claim:
    """What a driver claims trials with (picklable: Ray workers claim for their driver): its
    token, the attempts it saw of each trial (0: none recorded), and when another driver is dead."""

    driver: str
    seen: Mapping[str, int]
    stale_after: float = STALE_AFTER


def _claim(store: Store, study_id: int, trials: list[PlannedTrial], claim: Claim, threads: int, node: str | None,
           tracked: bool) -> tuple[list[tuple[PlannedTrial, Any]], dict[str, Any]]:
    """(the trials this driver won, each with its lease; the provenance record the claims stored,
    for the trackers: empty without them)."""
    threads_noted = provenance.planned_threads.set(threads)  # recorded with the claimed trials
    precision_noted = provenance.planned_precision.set(surface.resolved_precision(trials[0].config))
    claimed = []
    for t in trials:
        lease = store.claims.claim_trial(study_id, key=t.key, config_key=t.config_key, params=t.params, seed=t.seed,
                                         config=t.config, optuna_number=t.optuna_number, node=node,
                                         driver=claim.driver, seen=int(claim.seen.get(t.key, 0)),
                                         stale_after=claim.stale_after)
        if lease is not None:
            claimed.append((t, lease))
    record = provenance.trial_provenance() if tracked else {}  # as the claims recorded it
    provenance.planned_threads.reset(threads_noted)
    provenance.planned_precision.reset(precision_noted)
    return claimed, record


def _reporter(store: Store, trials: list[PlannedTrial], leases: list, timer: TrialTimer, trackers: Any):
    """The lane-aware ``report(lane, step, metrics)`` the trainer calls at each evaluation of each
    lane: the metrics stored under the lane's lease (and sent to the trackers); once every lane
    has lost its lease, training stops (``LeaseLost``)."""
    lost: set[int] = set()

    def report(lane: int, step: int, metrics: Mapping[str, float]) -> None:
        m = dict(metrics)
        with timer.store_call():
            if not store.report(leases[lane], step, m):  # pruned, or taken over by another driver
                lost.add(lane)
                if len(lost) == len(leases):
                    raise LeaseLost(f"trial {trials[lane].key} is no longer this run's (pruned, or taken over "
                                    "by another driver): training stopped")
            if trackers is not None:
                trackers.step(lane, step, m)
    return report


def execute_group(store: Store, study_id: int, trials: list[PlannedTrial], claim: Claim,
                  threads: int = 1, timeout: float | None = None, node: str | None = None,
                  log_dir: str | None = None, checkpoint_every: int | None = None,
                  checkpoint_dir: str | None = None, track: Callable[[list[PlannedTrial], dict], Any] | None = None,
                  on_claimed: Callable[[list[Any], list[str]], None] | None = None
                  ) -> dict[str, dict[str, Any] | None]:
    """Claim and run trials that differ only in lane settings (``planning.lane_groups``) with
    ``run_lanes``: one trial, or two or more trained as lanes of one batched model (see
    vat_study.science.batched), stored as ordinary trials sharing a ``batch_group``. Each trains
    from its resolved config as planned (``PlannedTrial.resolved``). Trials another driver holds
    or has finished are left out. Returns key -> final metrics (None where it failed) of the
    trials this call claimed. The time limit of a group is ``timeout`` times the number of lanes.
    ``node``: the Ray node running it, recorded with each trial. ``log_dir``: the trials' own
    output goes to a capped log file there (``trial_output``), not to the driver's terminal.
    ``checkpoint_every`` / ``checkpoint_dir``: mid-trial checkpoints (``checkpoint.checkpoints``), kept
    when the run is killed or stopped (the next run resumes from them), deleted otherwise.
    ``on_claimed(leases, keys)``: told the trials claimed before any trains (``isolation``)."""
    from ...surface import checkpoints
    from ..trial_output import captured_output

    threads = max(int(threads), 1)
    claimed, record = _claim(store, study_id, trials, claim, threads, node, track is not None)
    if not claimed:
        return {}
    trials, leases = [t for t, _ in claimed], [lease for _, lease in claimed]
    if on_claimed is not None:
        on_claimed(leases, [t.key for t in trials])
    if len(trials) > 1:
        store.set_batch_group(leases, digest([t.key for t in trials]))
    failpoint("trial.started")
    timer = TrialTimer(None if timeout is None else timeout * len(trials))
    trackers = track(trials, record) if track is not None else None  # the study's tracking (vat_study.platform.tracking)
    report = _reporter(store, trials, leases, timer, trackers)
    ck_path = Path(checkpoint_dir) / f"{digest([t.key for t in trials])}.pt" \
        if checkpoint_every and checkpoint_dir else None
    try:
        with timer, captured_output(Path(log_dir) / f"{trials[0].key}.log" if log_dir else None), \
                (checkpoints(str(ck_path), checkpoint_every) if ck_path else contextlib.nullcontext()):
            result = surface.run_lanes([t.resolved for t in trials], report, threads=threads)
    except (Exception, TrialTimeout, KeyboardInterrupt) as e:  # noqa: BLE001  one failing trial never stops the study
        text, kind = _failure_text(e, timeout, store.url, len(trials)), failure_kind(e)
        for lease in leases:
            store.fail_trial(lease, text, kind=kind)
        if trackers is not None:
            trackers.close("FAILED")
            _note_trackers(store, leases, trackers)
        if isinstance(e, KeyboardInterrupt):
            raise  # its checkpoint is kept: the next run goes on from it
        if ck_path is not None:
            ck_path.unlink(missing_ok=True)
        return {t.key: None for t in trials}
    out = _record(store, claimed, result, trackers)
    if ck_path is not None:
        ck_path.unlink(missing_ok=True)
    return out


def _record(store: Store, claimed: list[tuple[PlannedTrial, Any]], result: Any,
            trackers: Any) -> dict[str, dict[str, Any] | None]:
    """Each trained trial's final metrics stored (COMPLETE), or its divergence (FAILED, a lane whose
    loss turned NaN/inf while the others trained on); what the trackers missed noted."""
    out: dict[str, dict[str, Any] | None] = {}
    for i, (t, lease) in enumerate(claimed):
        metrics = result.metrics[i]
        if metrics is not None:
            out[t.key] = metrics if store.finish_trial(lease, metrics) else None
        else:
            store.fail_trial(lease, f"FloatingPointError: {result.failed[i]}", kind="diverged")
            out[t.key] = None
        if trackers is not None:
            trackers.finish(i, metrics, "COMPLETE" if out[t.key] is not None else "FAILED")
        failpoint("trial.finished")
    if trackers is not None:
        _note_trackers(store, [lease for _, lease in claimed], trackers)
    return out


def _note_trackers(store: Store, leases: list, trackers: Any) -> None:
    """What the trackers did not record, with each trial in the store (where the driver's output
    and the report find it, whichever process ran the trial)."""
    for lease, problems in zip(leases, trackers.problems):
        if problems:
            store.note_trackers(lease, problems)


def checkpoint_interval(spec: StudySpec, group: list[PlannedTrial]) -> int | None:
    """``executor.checkpoint_every`` for this group: 'auto' is every 1,000 updates for trials of
    10,000 updates or more, none below."""
    every = spec.executor.checkpoint_every
    if every == "auto":
        return AUTO_CHECKPOINT_EVERY if group[0].resolved.task.steps >= AUTO_CHECKPOINT_FROM else None
    return every


AUTO_CHECKPOINT_EVERY, AUTO_CHECKPOINT_FROM = 1000, 10_000


def threads_for(spec: StudySpec) -> int:
    return max(int(spec.executor.per_trial.cpu), 1)


def run_group(spec: StudySpec, store: Store, study_id: int, group: list[PlannedTrial], claim: Claim,
              node: str | None = None, on_ray: bool = False) -> dict[str, dict[str, Any] | None]:
    """``execute_group`` with the study's threads and time limit, for one group of
    ``planning.lane_groups``. With ``executor.trial_timeout`` the group trains in a child
    process that is killed if it cannot be stopped otherwise (``isolation``; ``on_ray``: a child
    that dies on its own raises, so Tune retries the trial as for a dead worker)."""
    from ..trial_output import trial_log_dir

    kwargs = dict(threads=threads_for(spec), node=node, log_dir=str(trial_log_dir(spec)),
                  checkpoint_every=checkpoint_interval(spec, group),
                  checkpoint_dir=str(trial_log_dir(spec).parent / "checkpoints"))
    if spec.executor.trial_timeout is not None:
        from .isolation import run_isolated

        return run_isolated(store, study_id, group, claim, timeout=spec.executor.trial_timeout,
                            tracking=(spec.tracking, spec.name) if spec.tracking else None, on_ray=on_ray, **kwargs)
    return execute_group(store, study_id, group, claim, timeout=None, track=tracking_for(spec), **kwargs)


def tracking_for(spec: StudySpec) -> Callable[[list[PlannedTrial], dict], Any] | None:
    """The study's trackers (``tracking:``, ``vat_study.platform.tracking.Trackers``) for a group of its
    trials and their provenance record; None without a tracking block."""
    if not spec.tracking:
        return None
    return trackers_for(spec.tracking, spec.name)


def trackers_for(blocks: Mapping[str, Any], study: str) -> Callable[[list[PlannedTrial], dict], Any]:
    """``tracking_for`` from the tracking block itself (what a child process is handed)."""
    from ..tracking import Trackers

    return lambda trials, record: Trackers(blocks, study, trials, [t.config for t in trials], record)


def run_planned(spec: StudySpec, store: Store, study_id: int, trials: list[PlannedTrial], claim: Claim,
                node: str | None = None, after_group: Callable[[list[PlannedTrial]], object] | None = None
                ) -> dict[str, dict[str, Any] | None]:
    """Claim and run ``trials`` in order, grouped into lanes by ``planning.lane_groups``; returns
    key -> final metrics (None where it failed) of those this driver claimed. ``after_group``:
    called with each group once it is done."""
    results: dict[str, dict[str, Any] | None] = {}
    for group in lane_groups(trials, spec):
        results.update(run_group(spec, store, study_id, group, claim, node))
        if after_group is not None:
            after_group(group)
    return results


def run_shared(store: Store, study_id: int, todo: list[PlannedTrial], driver: Driver,
               run: Callable[[list[PlannedTrial], Claim], Mapping[str, dict[str, Any] | None] | None]
               ) -> tuple[dict[str, dict[str, Any] | None], int]:
    """Run ``todo`` together with any other drivers of the study: ``run(trials, claim)`` claims
    and trains what it can (``run_planned``, or a Ray Tune run) and returns what it ran (None:
    read it from the store). Trials another driver holds are waited for, and taken over once
    that driver is dead (``store.claims``). Returns (key -> final metrics of the trials this
    driver ran, how many trials of ``todo`` other drivers finished)."""
    mine: dict[str, dict[str, Any] | None] = {}
    pending, missed = list(todo), set()
    poll = min(max(driver.heartbeat_every / 2, 0.2), 2.0)
    while True:
        if pending:
            seen = {k: a for k, (_, a, _) in store.trial_states(study_id).items()}
            claim = Claim(driver.token, {t.key: seen.get(t.key, 0) for t in pending}, driver.stale_after)
            ran = run(pending, claim)
            if ran is None:  # the runner returns nothing: what this driver ran, read back (COMPLETE or not)
                states = store.trial_states(study_id)
                ran = {t.key: {} if states[t.key][0] == "COMPLETE" else None for t in pending
                       if t.key in states and states[t.key][2] == driver.token and states[t.key][1] > claim.seen[t.key]}
            mine.update(ran)
        states = store.trial_states(study_id)
        # held by another driver, or never recorded (a runner that stopped short: tried once more)
        rest = [t for t in todo if t.key not in mine and (states[t.key][0] == "RUNNING" if t.key in states
                                                          else t.key not in missed)]
        missed |= {t.key for t in rest if t.key not in states}
        if not rest:
            return mine, sum(1 for t in todo if t.key not in mine and t.key in states)
        dead = store.claims.dead_drivers(study_id, driver.stale_after)
        pending = [t for t in rest if t.key not in states or states[t.key][2] is None or states[t.key][2] in dead]
        if not pending:
            time.sleep(poll)


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
