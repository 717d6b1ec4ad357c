"""The Ray Tune executor (the default): trials as Tune trials.

* Grid studies: the trials still to run are one ``tune.grid_search`` over lane groups of planned
  trials; what is COMPLETE in the store is never handed to Tune (resume is driven by our store,
  not by Tune's experiment state). Each worker claims its trials for this driver
  (``store.claims``), so several drivers of one study share its trials; those another driver
  holds are waited for, and taken over once that driver is dead.
* Optuna studies: rounds of ask, run, tell on the study's Optuna study in the same database (so
  it continues across runs and is shared by several drivers, as Optuna's RDB workers do): each
  round asks as many configurations as fill every worker slot and trains all their seeds as one
  Tune run.
* Resources: ``tune.with_resources`` (cpu, fractional gpu per trial); ``max_concurrent_trials``
  is always set (with a searcher Tune otherwise runs one trial at a time).
* Lean: ``reuse_actors=True``, no TensorBoard/CSV/JSON loggers, Ray's own output off; progress
  comes from our display polling the store. ``executor.address`` joins an existing cluster.
* Faults: a trial whose worker process dies (killed, out of memory) is retried by Tune in a
  fresh worker up to ``executor.max_failures`` times (``FailureConfig``); the store's lease makes
  the dead attempt's late writes harmless. A trial still RUNNING after the run is marked FAILED
  (``worker_died``) with Ray's error. The storage URL reaches the workers through the object
  store (``tune.with_parameters``), never through Tune's experiment files, whose temporary
  folder is removed after the run.
* ``executor.lanes`` / ``batch_seeds``: each Tune trial trains one lane group (trials differing
  only in seed, eps, alpha, xi, noise_sigma; or the seeds of one configuration) as one batched
  model (see vat_study.science.batched); with Optuna a round then asks for as many configurations as
  fill every worker slot with a lane group.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..spec import PlannedTrial, StudySpec
from ..store import Store
from .execution import Claim, run_group
from .orchestration import ExecutorBase
from .planning import lane_groups

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # workers keep the driver's cwd: relative data paths work
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # a failed Tune trial is said in one line (_failure_callback)


def _invocation_env() -> dict[str, str]:
    """The command line's argv and overrides (``provenance.INVOCATION_ENV``) for the workers of a
    cluster this run joins (a local Ray inherits the environment anyway)."""
    from ..provenance import INVOCATION_ENV

    return {INVOCATION_ENV: os.environ[INVOCATION_ENV]} if INVOCATION_ENV in os.environ else {}
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _node_id() -> str | None:
    """The Ray node this worker runs on (recorded with each trial it runs)."""
    import ray

    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001  not inside Ray
        return None


def _grid_trainable(config: dict[str, Any], storage: str, claim: Claim) -> None:
    """A Tune function trainable: one group of planned trials (one seed, or several trained as
    lanes of one batched model), claimed for the driver and recorded in the store by the worker;
    trials another driver holds are left out."""
    from ray import tune

    # The driver's folder, where relative paths (results/, tracking:, data) mean what they mean on
    # the local executor: a worker Ray started earlier from elsewhere (a reused runtime) has its own.
    if config.get("cwd") and os.path.isdir(config["cwd"]):
        os.chdir(config["cwd"])
    spec = StudySpec.model_validate({**config["spec"], "storage": storage})
    trials = [PlannedTrial(**t) for t in config["trials"]]
    store = Store(storage)  # engine made here, in the worker (a live engine cannot be pickled)
    results = run_group(spec, store, config["study_id"], trials, claim, _node_id(), on_ray=True)
    ok = [m for m in results.values() if m is not None]
    tune.report({"ok": int(len(ok) == len(results)), "failed": len(results) - len(ok), "claimed": len(results)})


def _init_ray(spec: StudySpec) -> None:
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                                  configure_logging=True,
                                  runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0",
                                                            "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                                                            **_invocation_env()}})
    if spec.executor.address:
        import re
        import socket

        from ..spec import SpecError

        m = re.fullmatch(r"(?:ray://)?\[?([^\]]+?)\]?:(\d+)", spec.executor.address)
        if m:  # fail fast: ray.init would retry an unreachable address for minutes
            try:
                socket.create_connection((m.group(1), int(m.group(2))), timeout=5).close()
            except OSError as e:
                raise SpecError([f"executor.address: nothing answers at {spec.executor.address!r} ({e}); start a "
                                 "cluster with `ray start --head` and give the address it prints"]) from None
        # Ray 2.60 clusters started with `ray start --head` use token auth by default; the token
        # lives in ~/.ray/auth_token, which a client only reads in token mode.
        if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
            from ray._private.authentication.authentication_token_setup import (
                maybe_enable_token_auth_if_token_available,
            )

            maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
        try:
            ray.init(address=spec.executor.address, **kwargs)
        except ConnectionError as e:
            raise SpecError([f"executor.address: cannot join a Ray cluster at {spec.executor.address!r} ({e}); "
                             "start one with `ray start --head` and give the address it prints"]) from None
    else:
        ray.init(address="local", **kwargs)  # a fresh local instance: never a stale or foreign `ray start` cluster
    from ..signals import install_stop_signals

    install_stop_signals()  # ray.init's own SIGTERM handler exits without marking the running trials


def gpu_per_trial(spec: StudySpec) -> float:
    """The GPUs each trial asks Ray for: the number given, or for ``gpu: auto`` the configured
    fraction (``auto_gpu``) when the cluster has GPUs and 0 when it has none (``task.device:
    auto`` then trains on the CPU). Needs a running Ray."""
    import ray

    per = spec.executor.per_trial
    if per.gpu == "auto":
        return per.auto_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return float(per.gpu)


def _check_gpus(spec: StudySpec) -> None:
    """A trial asking for a GPU on a cluster without one would wait forever: refuse up front.
    ``gpu: auto`` never does."""
    import ray

    from ..spec import SpecError

    gpu = gpu_per_trial(spec)
    if gpu > 0 and ray.cluster_resources().get("GPU", 0) < gpu:
        raise SpecError([f"executor.per_trial.gpu: {gpu} GPU per trial asked for, but the Ray cluster has "
                         f"{ray.cluster_resources().get('GPU', 0):g}; use --set executor.per_trial.gpu=auto "
                         "(or 0) here"])


def check_shared_store(storage: str, alive_nodes: int) -> None:
    """A SQLite file lives on one machine: with a Ray cluster of several nodes, trials on the other
    nodes would write to their own copy (or none). Refuse; PostgreSQL is the shared store."""
    from ..spec import SpecError

    if alive_nodes > 1 and storage.startswith("sqlite"):
        raise SpecError([f"storage: a SQLite file is not shared between the {alive_nodes} nodes of this Ray cluster; "
                         "use a PostgreSQL store every node reaches (postgresql+psycopg://user@host:5432/db), "
                         "or run on one machine"])


def join_cluster(spec: StudySpec) -> None:
    """With ``executor.address``: join the cluster and refuse a store its nodes cannot share,
    before anything (a SQLite file included) is written."""
    if spec.executor.address:
        _init_ray(spec)
        check_shared_store(spec.storage, _alive_nodes())


def _alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def _max_concurrent(spec: StudySpec) -> int:
    import ray

    if spec.executor.max_concurrent:
        return spec.executor.max_concurrent
    res = ray.cluster_resources()
    per, gpu = spec.executor.per_trial, gpu_per_trial(spec)
    n = int(res.get("CPU", 1) // per.cpu)
    if gpu > 0:
        n = min(n, int(res.get("GPU", 0) // gpu))
    return max(n, 1)


def _public_spec(spec: StudySpec) -> dict[str, Any]:
    """The spec as workers get it through Tune's config: the storage URL (and its password) is
    passed separately, through the object store."""
    from ..store import safe_url

    return {**spec.model_dump(mode="json"), "storage": safe_url(spec.storage)}


def _mark_dead_workers(store: Store, study_id: int, results, driver: str) -> None:
    """Trials of this driver a dead worker left RUNNING (after Tune's retries) become FAILED,
    with Ray's error."""
    errors = [str(r.error) for r in results if r.error is not None]
    if errors:  # (the last line is what status and the run's exit lines show)
        text = ("Ray said:\n" + "\n".join(errors)[-5000:] + "\nworker_died: the Ray worker running this trial "
                "died, as often as Tune retries a trial (executor.max_failures); a rerun redoes it")
        store.claims.fail_running(study_id, text, "worker_died", drivers=[driver])


def _failure_callback(spec: StudySpec):
    """A Tune callback saying each failed Tune trial (a dead worker, or a trainable that raised) in
    one line on the driver's stderr, in place of Tune's ERROR line and traceback; Ray's own text
    goes to the trial's log (``results/<study>/logs/<key>.log``)."""
    import sys

    from ray.tune import Callback

    from ..trial_output import trial_log_dir

    log_dir, retries = trial_log_dir(spec), spec.executor.max_failures

    class TrialFailures(Callback):
        def _say(self, trial, retried: bool) -> None:
            planned = trial.config.get("trials") or [{}]
            key = planned[0].get("key", trial.trial_id)
            text = _ray_error_text(trial)
            path = log_dir / f"{key}.log"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
                    f.write(f"\n[vat-study: Ray's report of failure {trial.num_failures} of this trial's Tune trial "
                            f"{trial.trial_id}:]\n{text}\n")
            except OSError:
                path = None
            params = ", ".join(f"{k}={v}" for k, v in (planned[0].get("params") or {}).items())
            who = f"trial {key} ({params + ', ' if params else ''}seed {planned[0].get('seed', '?')}" + \
                (f", and {len(planned) - 1} more trained with it)" if len(planned) > 1 else ")")
            then = (f"Tune retries it (retry {trial.num_failures} of {retries})" if retried else
                    "Tune gives up on it: FAILED (worker_died), a rerun redoes it")
            where = f"; Ray's text: {_shown(path)}" if path is not None else ""
            print(f"{who}: {_ray_error_line(text)}; {then}{where}", file=sys.stderr, flush=True)

        def on_trial_recover(self, iteration, trials, trial, **info) -> None:
            self._say(trial, retried=True)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._say(trial, retried=False)

    return TrialFailures()


def _shown(path: Path) -> str:
    """``path`` relative to this folder when it lies under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _ray_error_text(trial) -> str:
    """The latest failure Tune wrote for ``trial`` (its error.txt holds every one, numbered)."""
    try:
        text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
    except OSError:
        text = ""
    return ("Failure # " + text.split("Failure # ")[-1]).strip() if "Failure # " in text else text.strip()


def _ray_error_line(text: str) -> str:
    """What happened, in a few words: a dead worker process, or the exception the trial raised."""
    if "ActorDiedError" in text or "worker process has died" in text or "actor died" in text:
        return "its Ray worker process died (killed, out of memory, or a crash in native code)"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
    last = lines[-1] if lines else "no error text"
    return f"it raised {last[:300]}"


class _QuietTune(logging.Filter):
    """Drops Tune's closing ``Trials did not complete: [...]`` (each failure was said already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


def _resources(spec: StudySpec) -> dict[str, float]:
    """What each Tune trial asks for; needs a running Ray (gpu: auto asks the cluster)."""
    return {"cpu": spec.executor.per_trial.cpu, "gpu": gpu_per_trial(spec)}


def _fit_groups(spec: StudySpec, store: Store, study_id: int, groups: list[list[PlannedTrial]], run_config,
                claim: Claim) -> None:
    """One Tune run over lane groups (one Tune trial each); the workers claim and record the trials."""
    from ray import tune

    trainable = tune.with_resources(tune.with_parameters(_grid_trainable, storage=spec.storage, claim=claim),
                                    _resources(spec))
    space = {"trials": tune.grid_search([[dataclasses.asdict(t) for t in g] for g in groups]),
             "spec": _public_spec(spec), "study_id": study_id, "cwd": os.getcwd()}
    tuner = tune.Tuner(trainable, param_space=space, run_config=run_config,
                       tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=_max_concurrent(spec)))
    _mark_dead_workers(store, study_id, tuner.fit(), claim.driver)


def _round_size(spec: StudySpec) -> int:
    """Optuna configurations asked for per Tune run: one lane group (or, without lanes, one
    configuration's seeds) per worker slot."""
    from .search import ask_batch

    return ask_batch(spec) * _max_concurrent(spec)


class RayExecutor(ExecutorBase):
    """Lane groups as Tune trials (``_fit_groups``): one Tune run, under its own name, for each
    list of trials ``orchestrate`` hands over; Ray is started only once there is a trial to run."""

    def __init__(self, spec: StudySpec) -> None:
        super().__init__(spec)
        self.experiment_dir: str | None = None
        self._fits = itertools.count()

    def prepare(self) -> None:
        # Ctrl-C: Tune's own handler would end fit() quietly and leave the running trials RUNNING
        # with exit 0; without it KeyboardInterrupt reaches the use case (trials marked interrupted, exit 130).
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"

    def connect(self) -> None:
        join_cluster(self.spec)  # a cluster: find out its size before anything (a SQLite file) is written

    def open(self, store: Store, study_id: int) -> None:
        from ray import tune

        self.store, self.study_id = store, study_id
        self.experiment_dir = tempfile.mkdtemp(prefix="vat-study-ray-")
        self.run_config = tune.RunConfig(name=self.spec.name, storage_path=self.experiment_dir, verbose=0,
                                         log_to_file=False,
                                         failure_config=tune.FailureConfig(max_failures=self.spec.executor.max_failures))

    def start(self) -> None:
        _init_ray(self.spec)
        _check_gpus(self.spec)

    def run(self, trials: list[PlannedTrial], claim: Claim) -> None:
        quiet = logging.getLogger("ray.tune.tune")
        if not any(isinstance(f, _QuietTune) for f in quiet.filters):
            quiet.addFilter(_QuietTune())
        config = dataclasses.replace(self.run_config, name=f"{self.spec.name}-{next(self._fits)}",
                                     callbacks=[_failure_callback(self.spec)])
        _fit_groups(self.spec, self.store, self.study_id, lane_groups(trials, self.spec), config, claim)

    def round_size(self) -> int | None:  # Optuna: rounds of as many configurations as fill every worker slot
        return _round_size(self.spec)

    def close(self) -> None:
        if self.experiment_dir is not None:
            shutil.rmtree(self.experiment_dir, ignore_errors=True)
