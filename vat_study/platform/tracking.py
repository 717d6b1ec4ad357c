"""Experiment trackers: a study's ``tracking:`` block sends each trial's config and its per-step
metrics to TensorBoard, MLflow or Weights & Biases, through the libraries themselves, beside the
store (which stays the record the reports read).

    tracking:
      tensorboard: runs/tb          # event files: DIR/<study>/<trial>/ (tensorboardX's SummaryWriter)
      mlflow: true                  # MLflow, one run per trial, experiment = the study: true is the
                                    # local store sqlite:///results/mlflow.db; or a tracking URI, or a
                                    # folder (MLflow's file store)
      wandb: my-project             # W&B project (needs the wandb package and a login, or WANDB_MODE=offline)

The hook sits where the executors report per-step metrics to the store (``Trackers``: one per
group of trials trained together); the science knows nothing of it. A tracker's package that is
missing is an error when the study file is read; a tracker failing while a study runs (a full
disk, a server gone) is logged and that tracker stops for the trial, never the trial itself; what
it did not record is kept with the trial in the store (``versions["trackers"]``), so the driver's
output and the report say it, whichever process (a Ray worker) it happened in. The driver sets
the trackers up once before any trial (``prepare``: MLflow's tracking store and the study's
experiment), and a worker creating them anyway does so under a file lock beside a SQLite
tracking store (two workers creating one MLflow database at once collided, losing runs).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MLFLOW = "sqlite:///results/mlflow.db"
"""``tracking.mlflow: true``: a local MLflow store (one SQLite file, no server)."""

PACKAGES = {"tensorboard": ("tensorboardX", "tensorboardX"), "mlflow": ("mlflow", "mlflow-skinny"),
            "wandb": ("wandb", "wandb")}
"""tracker -> (module imported, package to install)."""


def missing_packages(tracking: Mapping[str, Any]) -> list[str]:
    """One line per tracker asked for whose package is not installed (naming it)."""
    out = []
    for name, (module, package) in PACKAGES.items():
        if tracking.get(name) not in (None, False) and importlib.util.find_spec(module) is None:
            out.append(f"tracking.{name}: needs the {package!r} package, which is not installed here "
                       f"(pip install 'vat-study[trackers]' or pip install {package})")  # printed as is: cli escapes markup
    return out


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


class _TensorBoard:
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


class _MLflow:
    @staticmethod
    def prepare(uri: str, study: str) -> None:
        _mlflow_experiment(uri, study)

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


class _WandB:
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


_KINDS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _WandB}


def _why(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def prepare(tracking: Mapping[str, Any] | None, study: str) -> list[str]:
    """Set the trackers up once, in the driver, before any trial (MLflow's tracking store and the
    study's experiment); returns one line per tracker that could not be (its trials will say so too)."""
    problems = []
    for name, value in (tracking or {}).items():
        if name == "mlflow" and value not in (None, False):
            try:
                _MLflow.prepare(mlflow_uri(value), study)
            except Exception as e:  # noqa: BLE001  a tracker never stops a study
                problems.append(f"tracking.mlflow: cannot set up {mlflow_uri(value)!r} ({_why(e)})")
    return problems


class Trackers:
    """The trackers of one group of trials (lane i is ``trials[i]``): ``step`` at every report,
    ``finish`` once per trial. A tracker that raises is logged and dropped for that trial, and
    what it did not record kept in ``problems[lane]`` (tracker -> one line)."""

    def __init__(self, tracking: Mapping[str, Any] | None, study: str, trials: Sequence[Any],
                 configs: Sequence[Mapping[str, Any]], provenance: Mapping[str, Any] | None = None) -> None:
        """``provenance``: the trials' record (``provenance.trial_provenance``, what the store keeps
        in ``versions``): MLflow tags, a TensorBoard text summary, W&B config."""
        self.lanes: list[dict[str, Any]] = [{} for _ in trials]
        self.problems: list[dict[str, str]] = [{} for _ in trials]
        for name, value in (tracking or {}).items():
            if value in (None, False) or name not in _KINDS:
                continue
            target = mlflow_uri(value) if name == "mlflow" else value
            for i, (t, c) in enumerate(zip(trials, configs)):
                try:
                    self.lanes[i][name] = _KINDS[name](target, study, t, c, provenance or {})
                except Exception as e:  # noqa: BLE001  a tracker never fails a trial
                    log.warning("tracking.%s: not recording trial %s (%s)", name, t.key, _why(e))
                    self.problems[i][name] = f"not recorded ({_why(e)})"

    def _each(self, lane: int, call: str, *args: Any) -> None:
        for name, tracker in list(self.lanes[lane].items()):
            try:
                getattr(tracker, call)(*args)
            except Exception as e:  # noqa: BLE001
                log.warning("tracking.%s: stopped recording this trial (%s)", name, _why(e))
                self.problems[lane][name] = f"stopped recording {'at step ' + str(args[0]) if call == 'step' else 'at the end'} ({_why(e)})"
                del self.lanes[lane][name]

    def step(self, lane: int, step: int, metrics: Mapping[str, Any]) -> None:
        self._each(lane, "step", step, metrics)

    def finish(self, lane: int, final: Mapping[str, Any] | None, status: str) -> None:
        self._each(lane, "finish", final, status)
        self.lanes[lane] = {}

    def close(self, status: str = "FAILED") -> None:
        """Finish every trial not finished yet (a group that stopped with an exception)."""
        for lane in range(len(self.lanes)):
            if self.lanes[lane]:
                self.finish(lane, None, status)


def tracker_lines(problems: Sequence[Mapping[str, Any]], trials: int, most: int = 3) -> list[str]:
    """One line per tracker that did not record every trial (``Store.tracker_problems``): how many
    of the study's ``trials``, and the first ``most`` of them with what happened."""
    by: dict[str, list[Mapping[str, Any]]] = {}
    for p in problems:
        by.setdefault(p["tracker"], []).append(p)
    lines = []
    for name, ps in by.items():
        shown = "; ".join(f"trial {p['trial_id']} ({_shown_params(p['params'])}seed {p['seed']}): {p['problem']}"
                          for p in ps[:most])
        more = f"; and {len(ps) - most} more" if len(ps) > most else ""
        lines.append(f"tracking.{name} did not record {len(ps)} of {trials} trial(s) in full ({shown}{more}); "
                     "the store has every trial")
    return lines


def _shown_params(params: Mapping[str, Any]) -> str:
    return "".join(f"{k}={v}, " for k, v in params.items())
