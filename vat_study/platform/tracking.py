"""Experiment trackers: a study's ``tracking:`` block sends each trial's config and its per-step
metrics to TensorBoard, MLflow or Weights & Biases, through the libraries themselves, beside the
store (which stays the record the reports read).

    tracking:
      tensorboard: runs/tb          # event files: DIR/<study>/<trial>/ (tensorboardX's SummaryWriter)
      mlflow: true                  # MLflow, one run per trial, experiment = the study: true is the
                                    # local store sqlite:///results/mlflow.db; or a tracking URI, or a
                                    # folder (MLflow's file store)
      wandb: my-project             # W&B project (needs the wandb package and a login, or WANDB_MODE=offline)

Each tracker is one entry of ``REGISTRY`` (its name, what it records, the type of its setting, the
package it needs, and a lazy factory: ``trackers`` holds the shipped three); the study file's
``tracking:`` keys, their checks and the docs derive from it, and ``register`` adds one at run
time (in-process).

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

import functools
import importlib.util
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator

from ..common.validation import Strict
from . import trackers
from .trackers import DEFAULT_MLFLOW, mlflow_uri, provenance_text  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerEntry:
    name: str  # the tracking: key
    summary: str  # what its setting is and where the runs go (the study file's reference)
    setting: Any  # the type of its setting (a pydantic annotation): a folder, a URI, a project ...
    open: Callable[..., Any]  # (setting, study, trial, resolved config, provenance) -> the trial's tracker
    package: tuple[str, str] | None = None  # (module imported, package to install), checked when a study is read
    prepare: Callable[[Any, str], None] | None = None  # (setting, study): once in the driver, before any trial
    target: Callable[[Any], Any] = str  # the setting as the tracker reads it (said when setting it up fails)


REGISTRY: dict[str, TrackerEntry] = {e.name: e for e in (
    TrackerEntry("tensorboard", "a folder: TensorBoard event files in DIR/<study>/<trial>/ (tensorboardX)",
                 str, trackers.TensorBoard, ("tensorboardX", "tensorboardX")),
    TrackerEntry("mlflow", "true: the local MLflow store sqlite:///results/mlflow.db; or a tracking URI, or a folder "
                 "(MLflow's file store); one run per trial in the experiment named after the study",
                 str | bool, trackers.open_mlflow, ("mlflow", "mlflow-skinny"), prepare=trackers.prepare_mlflow,
                 target=mlflow_uri),
    TrackerEntry("wandb", "a Weights & Biases project (needs the wandb package)", str, trackers.WandB,
                 ("wandb", "wandb")),
)}


def register(entry: TrackerEntry) -> TrackerEntry:
    """Add a tracker at run time (for studies run in this process). A name taken raises ValueError."""
    if entry.name in REGISTRY:
        raise ValueError(f"tracker {entry.name!r} is registered already")
    REGISTRY[entry.name] = entry
    return entry


class _TrackingBase(Strict):
    """Experiment trackers each trial's config and per-step metrics go to (``vat_study.platform.tracking``),
    beside the store."""

    @field_validator("*")
    @classmethod
    def _installed(cls, v: Any, info: ValidationInfo) -> Any:
        if v is False or (isinstance(v, str) and not v.strip()):
            if v is False:
                return None
            raise ValueError("must name a folder, URI or project (or be left out)")
        missing = missing_packages({info.field_name: v})
        if missing:
            raise ValueError(missing[0].split(": ", 1)[1])
        return v


@functools.lru_cache(maxsize=8)
def _model(entries: tuple[TrackerEntry, ...]) -> type[BaseModel]:
    fields = {e.name: (e.setting | None, Field(None, description=e.summary)) for e in entries}
    return create_model("Tracking", __base__=_TrackingBase, __doc__=_TrackingBase.__doc__, **fields)


def tracking_model() -> type[BaseModel]:
    """The ``tracking:`` block's model: one optional key per registered tracker."""
    return _model(tuple(REGISTRY.values()))


def validate_tracking(block: Any) -> dict[str, Any] | None:
    """A ``tracking:`` block checked against the registry (a ``ValidationError`` names the key):
    the trackers asked for and their settings (left out, false: none)."""
    return None if block is None else tracking_model().model_validate(block).model_dump(exclude_none=True)


def missing_packages(tracking: Mapping[str, Any]) -> list[str]:
    """One line per tracker asked for whose package is not installed (naming it)."""
    out = []
    for name, entry in REGISTRY.items():
        if entry.package is None:
            continue
        module, package = entry.package
        if tracking.get(name) not in (None, False) and importlib.util.find_spec(module) is None:
            out.append(f"tracking.{name}: needs the {package!r} package, which is not installed here "
                       f"(pip install 'vat-study[trackers]' or pip install {package})")  # printed as is: cli escapes markup
    return out


def _why(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def prepare(tracking: Mapping[str, Any] | None, study: str) -> list[str]:
    """Set the trackers up once, in the driver, before any trial (MLflow's tracking store and the
    study's experiment); returns one line per tracker that could not be (its trials will say so too)."""
    problems = []
    for name, value in (tracking or {}).items():
        entry = REGISTRY.get(name)
        if entry is not None and entry.prepare is not None and value not in (None, False):
            try:
                entry.prepare(value, study)
            except Exception as e:  # noqa: BLE001  a tracker never stops a study
                problems.append(f"tracking.{name}: cannot set up {entry.target(value)!r} ({_why(e)})")
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
            if value in (None, False) or name not in REGISTRY:
                continue
            for i, (t, c) in enumerate(zip(trials, configs)):
                try:
                    self.lanes[i][name] = REGISTRY[name].open(value, study, t, c, provenance or {})
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
