"""The use case: ``run_study(spec)`` does everything a run of a study does, for the command line
(``vat-study run``), the Python API (``executors.run_local`` / ``run_ray``) and the tests alike,
and says how it ended (``RunOutcome``, with the exit status of the docs' table). Its dry run,
the same checks without training, is ``dry_run.plan_study``.

In order: stop signals armed (Ctrl-C, SIGTERM, SIGHUP: the trials this run had started are
recorded FAILED, interrupted, and a rerun redoes them); the executor prepared (``executors
.registry``); the preflight (every dataset located, downloaded once where ``download: true``,
every split checked); the executor connected (a Ray cluster joined); the store checked and opened
and the study's identity checked, once (``store_access``); the command line's provenance
recorded; the trials run (``executors.orchestration.orchestrate``); the run's provenance kept
with the study; and the outcome read back from the store: 0 when every trial this study file
plans is COMPLETE or PRUNED, 1 when one is not (FAILED, or left unfinished) or the store failed
mid-run, 2 for refused input (nothing written), 130 / 143 / 129 when stopped by Ctrl-C /
SIGTERM / SIGHUP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .executors.planning import RunSummary
from .spec import SpecError, StudySpec
from .store_access import FINISHED, Refusal, open_store

MOST_SHOWN = 20
"""The most unfinished trials an outcome names (the rest are counted)."""


@dataclass
class RunOutcome(RunSummary):
    """How a run ended: what it did (``RunSummary``), its exit status (``status``), the one line
    said for a refusal, a store fault or a stop (``message``) and the exception behind it
    (``error``), and the study as the store holds it after the run: how many trials (``trials``),
    pruned (``pruned``), not finished among those this study file plans (``unfinished``: one line
    each, at most ``MOST_SHOWN``, of ``n_unfinished``) or outside its search (``outside``), the
    trials frame (``frame``) and one line per tracker that did not record every trial."""

    status: int = 0
    message: str | None = None
    error: BaseException | None = field(default=None, repr=False)
    trials: int = 0
    pruned: int = 0
    unfinished: list[str] = field(default_factory=list)
    n_unfinished: int = 0
    outside: int = 0
    tracker_warnings: list[str] = field(default_factory=list)
    frame: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def raise_error(self) -> RunOutcome:
        """The outcome, or (the Python API's way) the exception behind a refusal (``SpecError``,
        a store's error), a store fault mid-run, or a stop (``KeyboardInterrupt``) raised."""
        if self.error is not None:
            raise self.error
        return self


def _executor(spec: StudySpec, executor: Any) -> Any:
    from .executors.registry import executor_named

    if executor is None or isinstance(executor, str):
        return executor_named(executor or spec.executor.kind).make(spec)
    return executor


def _record_invocation(spec: StudySpec, invocation: tuple[list[str], Mapping[str, Any]] | None) -> None:
    """The command line (argv, a database password masked) and its ``--set`` overrides, for the
    provenance every trial of this run records (``provenance``)."""
    if invocation is not None:
        from .provenance import set_invocation
        from .store.urls import mask_secrets

        argv, overrides = invocation
        set_invocation([mask_secrets(a, spec.storage) for a in argv], dict(overrides))


def _keep_provenance(store: Any, name: str) -> None:
    """The provenance of this run kept with the stored study, as ``provenance`` beside its spec
    (the latest run's; each trial keeps its own in ``versions``)."""
    from .provenance import run_provenance

    stored = store.study_spec(name)
    if stored is not None:
        store.get_or_create_study(name, {**stored, "provenance": run_provenance()})


def read_outcome(spec: StudySpec, store: Any, outcome: RunOutcome | None = None) -> RunOutcome:
    """``outcome`` (a new one by default) completed from the store: the study's trials, the pruned
    ones, those this study file plans that did not finish (status 1) and those outside its
    search (left as they are), what the trackers missed."""
    from .display import trial_text
    from .results import trials_frame
    from .store import failure_line
    from .tracking import tracker_lines

    out = outcome or RunOutcome(spec.name)
    df = trials_frame(store, spec.name) if store.study_id(spec.name) is not None else None
    if df is None or df.empty:
        return out
    out.frame, out.trials = df, len(df)
    out.pruned = int((df["status"] == "PRUNED").sum())
    bad = df[~df["status"].isin(FINISHED)]
    planned = spec.planned_config_keys()  # a grid: trials it no longer holds are not this run's
    if planned is not None:
        out.outside = int((~bad["config_key"].isin(planned)).sum())
        bad = bad[bad["config_key"].isin(planned)]
    out.n_unfinished = len(bad)
    out.unfinished = [f"{trial_text(t, df)}: {t['status']}, " + failure_line(t.get("failure_kind"), t["error"])
                      for _, t in bad.head(MOST_SHOWN).iterrows()]
    out.tracker_warnings = tracker_lines(store.tracker_problems(spec.name), len(df))
    if len(bad) and out.status == 0:
        out.status = 1
    return out


def _stopped(spec: StudySpec, store: Any, stop: KeyboardInterrupt, outcome: RunOutcome) -> RunOutcome:
    """Ctrl-C, SIGTERM or SIGHUP: the trials this process's drivers had started are FAILED
    (interrupted; never those of other drivers of the study), redone by the next run."""
    from .executors.execution import stopped_text
    from .signals import exit_code, stop_of
    from .store.claims import process_drivers
    from .store.urls import safe_url

    study_id = store.study_id(spec.name) if store is not None else None
    if study_id is not None:
        store.claims.fail_running(study_id, stopped_text(stop), "interrupted", drivers=process_drivers())
    why = f"stopped by {stop_of(stop).name}" if stop_of(stop) else "interrupted"
    outcome.status, outcome.error = exit_code(stop), stop
    outcome.message = (f"{why}: every finished trial is in {safe_url(spec.storage)}; run the same command again to "
                       "continue the study")
    return outcome


def _fault(spec: StudySpec, e: Exception, outcome: RunOutcome) -> RunOutcome:
    """A store or disk fault mid-run (disk full, locked, gone): one line, status 1; anything else
    is raised (a fault of the code, with its traceback)."""
    from .store.faults import describe

    line = describe(e, spec.storage) or (describe(e.__context__, spec.storage) if e.__context__ else None)
    if line is None:
        raise e
    outcome.status, outcome.error, outcome.message = 1, e, f"{line}; every finished trial is kept"
    return outcome


def _run(spec: StudySpec, executor: Any, opened: list, *, spec_path: str | None, progress: bool,
         invocation: tuple[list[str], Mapping[str, Any]] | None) -> RunOutcome:
    from .executors.orchestration import orchestrate
    from .preflight import run_preflight

    executor.prepare()
    run_preflight(spec, download=True)  # data located (downloaded once, here) and splits checked: nothing written yet
    executor.connect()
    stored = open_store(spec, write=True)
    opened.append(stored.store)
    _record_invocation(spec, invocation)
    summary = orchestrate(spec, executor, stored.store, spec_path=spec_path, progress=progress)
    _keep_provenance(stored.store, spec.name)
    return read_outcome(spec, stored.store, RunOutcome(**vars(summary)))


def run_study(spec: StudySpec, *, executor: Any = None, spec_path: str | None = None, progress: bool = True,
              invocation: tuple[list[str], Mapping[str, Any]] | None = None) -> RunOutcome:
    """Run (or continue) ``spec``: every trial lands in its store, finished trials are not rerun.
    ``executor``: a name of ``executors.registry`` or an executor object (default: the study's
    ``executor.kind``); ``spec_path``: the study file, kept with the study; ``progress``: the live
    display; ``invocation``: (argv, ``--set`` overrides) of the command line, for the provenance.
    Returns the ``RunOutcome``; ``outcome.raise_error()`` raises what a refusal, a store fault or
    a stop raised."""
    from .signals import stop_signals

    outcome = RunOutcome(spec.name)
    opened: list = []  # the store, once open (where a stop marks this run's trials)
    with stop_signals():
        try:
            runner = _executor(spec, executor)
        except ValueError as e:
            outcome.status, outcome.error, outcome.message = 2, e, f"executor.kind: {e}"
            return outcome
        try:
            return _run(spec, runner, opened, spec_path=spec_path, progress=progress, invocation=invocation)
        except (SpecError, Refusal) as e:
            outcome.status, outcome.message = 2, str(e)
            outcome.error = e.cause if isinstance(e, Refusal) and e.cause is not None else e
            return outcome
        except KeyboardInterrupt as stop:
            return _stopped(spec, opened[0] if opened else None, stop, outcome)
        except Exception as e:  # noqa: BLE001  a store or disk fault: one line; anything else raised
            return _fault(spec, e, outcome)
        finally:
            runner.close()


__all__ = ["RunOutcome", "read_outcome", "run_study"]
