"""Reading a study file: YAML text to a validated ``StudySpec`` (``load_spec``, ``parse_spec``), its
``--set`` overrides (``parse_set``), and errors that name the field and show the right shape."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ...common.errors import format_validation_error, model_keys
from ...common.yamlio import FileRefused, YAMLLimitError, canonical, read_text, safe_load, set_dotted
from ..store.urls import default_storage
from ..tracking import REGISTRY as TRACKERS
from .checks import validate_trials
from .errors import SpecError, capped
from .schema import StudySpec

SHAPES: dict[tuple[str, ...], str] = {
    ("search",): "search holds one of grid or optuna: search: {grid: [{eps: [1, 2]}]}",
    ("search", "grid"): "grid is a list of blocks, each mapping a key to its values: grid: [{eps: [1, 2]}]",
    ("search", "grid", "*"): "each grid block maps a key to its values: grid: [{eps: [1, 2], alpha: [1]}]",
    ("search", "grid", "*", "*"): "a grid key takes a list of values: grid: [{eps: [1, 2]}]",
    ("search", "optuna"): "optuna: {sampler: tpe, n_trials: 20, space: {eps: {type: log_uniform, low: 0.1, high: 10}}}",
    ("search", "optuna", "space"): "space maps a key to a distribution: "
                                   "space: {eps: {type: log_uniform, low: 0.1, high: 10}}",
    ("search", "optuna", "space", "*"): "a distribution, e.g. {type: log_uniform, low: 0.1, high: 10} or, for a "
                                        "list of values, {type: choice, choices: [1, 2]}",
    ("seeds",): "seeds is a list of integers: seeds: [0, 1, 2]",
    ("metric",): "metric: {name: val_error, mode: min}",
    ("task",): "task is a mapping of settings: task: {dataset: digits, steps: 500}",
    ("method",): "method is a mapping with the method's name: method: {name: vat, eps: 2.0}",
    ("probes",): "probes is a mapping: probes: {rvadv: {eps: 2.0}}",
    ("executor",): "executor: {kind: local} or executor: {kind: ray, per_trial: {cpu: 1}}",
    ("executor", "per_trial"): "per_trial: {cpu: 1, gpu: auto}",
    ("sequential",): "sequential: {compare: [[baseline, vat]], max_seeds: 12}",
    ("sequential", "compare"): "compare is a list of pairs: compare: [[baseline, vat], [rpt, vat]]",
    ("sequential", "compare", "*"): "compare is a list of pairs: compare: [[baseline, vat], [rpt, vat]]",
    ("paper", "values"): "values is a list: values: [{method: vat, value: 0.64, sd: 0.05}]",
    ("paper", "values", "*"): "a paper value: {method: vat, metric: test_error, value: 0.64, sd: 0.05}",
    ("paper", "orderings"): "orderings is a list: orderings: [{lower: vat, higher: rpt}]",
}
"""The right shape of a study-file field, shown with an error that the value is of the wrong kind."""


def _shape(loc: tuple[str, ...]) -> str | None:
    """The ``SHAPES`` entry of a field location (``*``: any list index or key)."""
    if loc[:1] == ("search",) and len(loc) == 2 and loc[1] not in ("grid", "optuna"):  # search: {eps: [...]}
        return SHAPES[("search",)]
    for pattern, text in SHAPES.items():
        if len(pattern) == len(loc) and all(p in ("*", x) for p, x in zip(pattern, loc)):
            return text
    return None



def parse_spec(data: Any, overrides: Mapping[str, Any] | None = None, source: str = "study") -> StudySpec:
    """A validated study from the YAML data of a study file and its ``--set`` overrides (dotted keys);
    every trial config checked (``checks.validate_trials``). Raises ``SpecError``."""
    if not isinstance(data, Mapping):
        raise SpecError([f"the study file must hold a mapping (name, task, method, search, ...), got {type(data).__name__}"], source)
    data = copy.deepcopy(dict(data))
    for k, v in (overrides or {}).items():
        set_dotted(data, k, v)
    if "storage" not in data:  # left out: the default store (VAT_STUDY_STORAGE, else results/vat_study.db)
        try:
            data["storage"] = default_storage()
        except ValueError as e:
            raise SpecError([str(e)], source) from None
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, shapes=_shape, known=model_keys(StudySpec, {("tracking",): lambda: TRACKERS})), source) from None
    validate_trials(spec)
    return spec


def load_spec(path: str | Path, overrides: Mapping[str, Any] | None = None) -> StudySpec:
    """``parse_spec`` of the study file at ``path`` (a regular UTF-8 file under the size bound)."""
    path = Path(path)
    try:
        text = read_text(path)  # a regular file under the size bound: /dev/zero or a FIFO is refused, not read
    except FileRefused as e:
        raise SpecError([f"study file {e}"], str(path)) from None
    except OSError as e:
        raise SpecError([f"cannot read study file {str(path)!r}: {e.strerror}"], str(path)) from None
    except UnicodeDecodeError as e:
        raise SpecError([f"the study file is not UTF-8 text (byte {e.start}): save it as UTF-8 YAML"], str(path)) from None
    try:
        data = safe_load(text)
    except YAMLLimitError as e:
        raise SpecError([str(e)], str(path)) from None
    except yaml.YAMLError as e:
        raise SpecError([f"not valid YAML: {capped(str(e))}"], str(path)) from None
    return parse_spec(data, overrides, str(path))


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set task.steps=3000`` -> {"task.steps": 3000}; values are YAML scalars or lists.

    Conflicting overrides are refused: the same key twice with different values, or a key and
    a key inside it (``--set task={...} --set task.steps=3``), whose outcome would depend on order."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise SpecError([f"--set {item!r}: expected key=value with a dotted key, e.g. --set task.steps=3000"],
                            "--set")
        try:
            value = safe_load(raw) if raw.strip() else None
        except YAMLLimitError as e:  # (an integer of 120,000 digits: said, never converted)
            raise SpecError([f"--set {key}: {str(e).replace(' (line 1)', '')}"], "--set") from None
        except yaml.YAMLError as e:
            why = getattr(e, "problem", None) if isinstance(e, yaml.constructor.ConstructorError) else None
            raise SpecError([f"--set {item!r}: the value is not valid YAML" + (f" ({why})" if why else "")],
                            "--set") from None
        for other in out:
            if other == key and canonical(out[other]) != canonical(value):
                problems.append(f"--set {key}: given twice with different values ({out[other]!r} and {value!r}); "
                                "give it once")
            elif other.startswith(key + ".") or key.startswith(other + "."):
                inner, outer = (other, key) if other.startswith(key + ".") else (key, other)
                problems.append(f"--set {inner} conflicts with --set {outer} (one sets a part of the other); "
                                f"give only one of them")
        out[key] = value
    if problems:
        raise SpecError(problems, "--set")
    return out
