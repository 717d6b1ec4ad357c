"""What both executors share: the plan of a (re)run, one trial's execution, Optuna plumbing."""

from __future__ import annotations

import math
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..failpoints import failpoint
from ..config import comparable_config
from ..objective import resolve_config, run_seeds, run_trial
from ..spec import PlannedTrial, StudySpec, canonical, digest
from ..store import Store, mask_secrets


@dataclass
class RunSummary:
    study: str
    planned: int = 0  # trials this study has (grid) or configurations asked for (optuna)
    skipped: int = 0  # already COMPLETE in the store: not run again
    ran: int = 0
    failed: int = 0
    interrupted_marked: int = 0  # RUNNING rows of a killed run, marked FAILED and redone
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
    may change (that is how a study grows)."""
    from ..spec import SpecError, canonical

    from ..store import safe_url

    stored = store.study_spec(spec.name)
    if stored is None:
        return
    now = spec.model_dump(mode="json")
    changed = [k for k in ("task", "method", "probes") if canonical(stored.get(k)) != canonical(now.get(k))]
    if changed:
        raise SpecError([f"{k}: differs from the study {spec.name!r} already in {safe_url(spec.storage)}; finished "
                         f"trials would mix with new ones. Give the edited study a new name, or use another storage"
                         for k in changed])


def check_same_configs(spec: StudySpec, store: Store, study_id: int) -> None:
    """Refuse to continue when a COMPLETE trial's stored, fully resolved config differs from what
    this run would resolve for the same parameters and seed: e.g. a default changed between
    vat-study versions, or the study was edited in a way check_same_study cannot see."""
    from ..spec import SpecError

    problems = []
    for key, (params, seed, stored) in store.trial_configs(study_id).items():
        try:
            now = resolve_config(spec.trial_config(params, seed))
        except Exception as e:  # noqa: BLE001  a stored point this version rejects
            problems.append(f"trial {key} ({canonical(params)}, seed {seed}): this version rejects its config ({e})")
            continue
        now, stored = comparable_config(now), comparable_config(stored)  # older versions' configs upgraded
        diff = sorted(k for k in set(now) | set(stored) if k != "model_path" and now.get(k) != stored.get(k))
        if diff:
            shown = ", ".join(f"{k}: stored {stored.get(k)!r}, now {now.get(k)!r}" for k in diff[:4])
            problems.append(f"trial {key} ({canonical(params)}, seed {seed}) was run with a different config ({shown})")
        if len(problems) >= 5:
            break
    if problems:
        raise SpecError(problems + [f"finished trials of {spec.name!r} would mix with new ones: give the study a "
                                    "new name, or use another storage"])


def plan(spec: StudySpec, store: Store, spec_path: str | None = None) -> Plan:
    """Register the study, mark trials a killed run left RUNNING as FAILED, and split the grid
    into trials still to run and trials already COMPLETE."""
    check_same_study(spec, store)
    from ..store import safe_url

    existing = store.study_id(spec.name)
    if existing is not None:
        check_same_configs(spec, store, existing)
    stored = spec.model_dump(mode="json")
    stored["storage"] = safe_url(spec.storage)  # never keep a database password in the results
    study_id = store.get_or_create_study(spec.name, stored, spec_path)
    interrupted = store.fail_interrupted(study_id)
    statuses = store.trial_statuses(study_id)
    trials = spec.expand() if not spec.is_optuna else []
    done = [t for t in trials if statuses.get(t.key) == "COMPLETE"]
    todo = [t for t in trials if statuses.get(t.key) != "COMPLETE"]
    failpoint("study.planned")
    return Plan(study_id, todo, done, interrupted)


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


def seed_groups(trials: list[PlannedTrial], size: int) -> list[list[PlannedTrial]]:
    """Trials of the same configuration in groups of up to ``size`` seeds (order kept)."""
    by_config: dict[str, list[PlannedTrial]] = {}
    for t in trials:
        by_config.setdefault(t.config_key, []).append(t)
    return [g[i:i + size] for g in by_config.values() for i in range(0, len(g), max(size, 1))]


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


# ------------------------------------------------------------------------------ progress


class Progress:
    """A live display (done / running / failed, best so far, elapsed and ETA) fed by polling the
    store, so it works the same for in-process trials and Ray workers."""

    def __init__(self, spec: StudySpec, store: Store, study_id: int, total: int, baseline_done: int,
                 enabled: bool = True) -> None:
        self.spec, self.store, self.study_id = spec, store, study_id
        self.total, self.baseline_done, self.enabled = total, baseline_done, enabled
        self.t0 = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None

    def line(self) -> str:
        df = self.store.trials_frame(self.spec.name)
        if df.empty:
            counts, best = {}, None
        else:
            counts = df["status"].value_counts().to_dict()
            m = self.spec.metric.name
            ok = df[df["status"] == "COMPLETE"]
            best = None
            if m in ok and ok[m].notna().any():
                best = ok[m].min() if self.spec.metric.mode == "min" else ok[m].max()
        done = counts.get("COMPLETE", 0)
        new_done = max(done - self.baseline_done, 0)
        elapsed = time.time() - self.t0
        left = max(self.total - done, 0)
        eta = f"{elapsed / new_done * left:.0f}s" if new_done and self.total else "?"
        best_s = f"{best:.4f}" if best is not None else "-"
        total_s = f"/{self.total}" if self.total else ""
        return (f"[bold]{self.spec.name}[/]  done {done}{total_s}  running {counts.get('RUNNING', 0)}  "
                f"failed {counts.get('FAILED', 0)}  best {self.spec.metric.name} {best_s}  "
                f"elapsed {elapsed:.0f}s  eta {eta}")

    def __enter__(self) -> Progress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.live import Live

        self._live = Live(self.line(), console=Console(stderr=True), refresh_per_second=2, transient=False)
        self._live.__enter__()

        def loop() -> None:
            while not self._stop.wait(1.0):
                try:
                    self._live.update(self.line())
                except Exception:  # noqa: BLE001  a display hiccup never stops a study
                    pass

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self._live.update(self.line())
        finally:
            self._live.__exit__(*exc)
            self._live.console.print()
