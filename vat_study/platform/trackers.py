"""The trackers of the registry in ``tracking``: TensorBoard (tensorboardX's event files), MLflow
(one run per trial in the study's experiment) and Weights & Biases, each through the library
itself, imported only when a trial is tracked. Each takes (its setting, the study, the trial, its
resolved config, its provenance record) and has ``step(step, metrics)`` and ``finish(final,
status)``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MLFLOW = "sqlite:///results/mlflow.db"
"""``tracking.mlflow: true``: a local MLflow store (one SQLite file, no server)."""

def mlflow_uri(value: str | bool) -> str:
    """The tracking URI of ``tracking.mlflow``: true -> ``DEFAULT_MLFLOW``; a URI (``scheme:``)
    as it is; a folder -> MLflow's file store there (absolute)."""
    if value is True:
        value = DEFAULT_MLFLOW
    value = str(value)
    if value.startswith("sqlite:///") and not value.startswith("sqlite:////"):
        path = Path(value.removeprefix("sqlite:///")).resolve()  # relative to where the run starts
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" in value or value.startswith("file:"):
        return value
    return Path(value).resolve().as_uri()


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == float(v)}


def _run_name(trial: Any, config: Mapping[str, Any]) -> str:
    """``method=vat,eps=1.252-s0-1a2b3c4d``: the search parameters the trial's method has (a grid
    point's eps is no setting of a baseline), floats at 4 significant digits, the seed and key."""
    from ..surface import get_path, param_path

    def shown(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    kept = {k: v for k, v in trial.params.items() if get_path(config, param_path(k) or k) is not None}
    text = ",".join(f"{k}={shown(v)}" for k, v in sorted(kept.items()))
    return f"{text or 'base'}-s{trial.seed}-{trial.key[:8]}"


def provenance_text(record: Mapping[str, Any]) -> dict[str, str]:
    """The trial's provenance record (``vat_study.platform.provenance.trial_provenance``, as the store keeps
    it in ``versions``) as flat text: a list or mapping (argv, overrides) as its JSON."""
    import json

    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in record.items()}


class TensorBoard:
    def __init__(self, root: str, study: str, trial: Any, config: Mapping[str, Any],
                 provenance: Mapping[str, Any]) -> None:
        from tensorboardX import SummaryWriter

        self.logdir = Path(root).resolve() / study / _run_name(trial, config)
        self.writer = SummaryWriter(logdir=str(self.logdir))
        self.params = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                       for k, v in _flat(config).items() if v is not None}
        if provenance:  # a text summary: TensorBoard's Text tab, one table row per entry
            rows = "\n".join(f"| {k} | {v} |" for k, v in provenance_text(provenance).items())
            self.writer.add_text("provenance", "| key | value |\n|---|---|\n" + rows)

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        for k, v in _numbers(metrics).items():
            self.writer.add_scalar(k, v, global_step=step)

    def finish(self, final: Mapping[str, Any] | None, status: str) -> None:
        from tensorboardX.summary import hparams

        values = {f"final/{k}": v for k, v in _numbers(final or {}).items()}
        for summary in hparams(self.params, values):  # the HParams plugin's records, in this run's own file
            self.writer.file_writer.add_summary(summary)
        for k, v in values.items():
            self.writer.add_scalar(k, v)
        self.writer.add_text("status", status)
        self.writer.close()


MLFLOW_TAG_LIMIT = 5000
"""The longest tag value every MLflow store accepts (longer ones are cut, marked with "...")."""


@contextmanager
def _creation_lock(uri: str) -> Iterator[None]:
    """One process at a time creates (or first opens) a SQLite tracking store: an exclusive lock on
    ``<file>.lock`` beside it (other URIs: no lock; their server serializes)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri.removeprefix("sqlite:///").split("?")[0] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_experiments: dict[tuple[str, str], tuple[Any, str]] = {}
"""(tracking URI, study) -> (MlflowClient, experiment id), once per process."""


def _mlflow_experiment(uri: str, study: str) -> tuple[Any, str]:
    """(an MlflowClient, the study's experiment id), the tracking store and the experiment created
    if need be: under ``_creation_lock``, tried up to 5 times (a server or file briefly busy)."""
    import time

    from mlflow.tracking import MlflowClient

    if (uri, study) in _experiments:
        return _experiments[(uri, study)]
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # asked for by name: MLflow 3 refuses it otherwise
    for attempt in range(5):
        try:
            with _creation_lock(uri):
                client = MlflowClient(tracking_uri=uri)
                experiment = client.get_experiment_by_name(study)
                found = experiment.experiment_id if experiment is not None else client.create_experiment(study)
            _experiments[(uri, study)] = (client, found)
            return client, found
        except Exception:  # noqa: BLE001  (MLflow raises several kinds)
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


class MLflow:
    def __init__(self, uri: str, study: str, trial: Any, config: Mapping[str, Any],
                 provenance: Mapping[str, Any]) -> None:
        self.client, experiment_id = _mlflow_experiment(uri, study)
        tags = {"vat_study.study": study, "vat_study.trial_key": trial.key,
                "vat_study.config_key": trial.config_key, "vat_study.seed": str(trial.seed)}
        for k, v in provenance_text(provenance).items():
            tags[f"vat_study.provenance.{k}"] = v if len(v) <= MLFLOW_TAG_LIMIT else v[:MLFLOW_TAG_LIMIT - 3] + "..."
        if provenance.get("git_commit"):
            tags["mlflow.source.git.commit"] = str(provenance["git_commit"])  # shown by MLflow's own UI
        run = self.client.create_run(experiment_id, run_name=_run_name(trial, config), tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in sorted(_flat(config).items())]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in _numbers(metrics).items()])

    def finish(self, final: Mapping[str, Any] | None, status: str) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = _numbers(final or {})
        if values:
            self.client.log_batch(self.run_id, metrics=[Metric(f"final.{k}", v, now, 0) for k, v in values.items()])
        self.client.set_terminated(self.run_id, status="FINISHED" if status == "COMPLETE" else "FAILED")


class WandB:
    def __init__(self, project: str, study: str, trial: Any, config: Mapping[str, Any],
                 provenance: Mapping[str, Any]) -> None:
        import wandb

        self.run = wandb.init(project=project, group=study, name=_run_name(trial, config),
                              config={**dict(config), "provenance": dict(provenance)}, tags=[study],
                              reinit="create_new")

    def step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(_numbers(metrics), step=step)

    def finish(self, final: Mapping[str, Any] | None, status: str) -> None:
        for k, v in _numbers(final or {}).items():
            self.run.summary[f"final/{k}"] = v
        self.run.finish(exit_code=0 if status == "COMPLETE" else 1)


def open_mlflow(value: str | bool, study: str, trial: Any, config: Mapping[str, Any],
                provenance: Mapping[str, Any]) -> MLflow:
    """The MLflow tracker of ``tracking.mlflow: value`` (``mlflow_uri``)."""
    return MLflow(mlflow_uri(value), study, trial, config, provenance)


def prepare_mlflow(value: str | bool, study: str) -> None:
    """MLflow's tracking store and the study's experiment, set up once before any trial."""
    _mlflow_experiment(mlflow_uri(value), study)
