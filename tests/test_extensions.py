"""Every extension point, proven by adding one in a single new file (``tests/extensions/``) that
builds an entry and registers it, and running a study with it: a dataset from CSV files, a probe
with its own metric, a tracker, an executor and a method with state (an EMA teacher). Nothing
else in vat_study is touched for any of them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny
from vat_study.platform.executors import run_local
from vat_study.platform.executors import registry as executors
from vat_study.platform import tracking
from vat_study.platform.results import trials_frame
from vat_study.platform.spec import parse_spec
from vat_study.platform.store import Store
from vat_study.platform.store.frames import metrics_frame
from vat_study.platform.study import run_study
from vat_study.science import datasets, methods, probes

EXTENSIONS = Path(__file__).parent / "extensions"


@pytest.fixture
def extension():
    """Import an extension's file afresh (it registers its entry) and take the entry out afterwards."""
    added = []

    def load(file: str, registry: dict):
        before = set(registry)
        spec = importlib.util.spec_from_file_location(f"extension_{file}", EXTENSIONS / f"{file}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        added.extend((registry, name) for name in set(registry) - before)
        assert len(set(registry) - before) == 1, "an extension file adds exactly one entry"
        return module

    yield load
    for registry, name in added:
        registry.pop(name, None)


def _tiny(tmp_path, name, **extra):
    return tiny(name, f"sqlite:///{tmp_path}/{name}.db", **extra)


def test_a_dataset_from_files_in_one_new_file(tmp_path, extension):
    from sklearn.datasets import load_digits

    extension("csv_dataset", datasets.REGISTRY)
    digits = load_digits()
    folder = tmp_path / "data" / "csv_digits"
    folder.mkdir(parents=True)
    rows = np.column_stack([digits.target, digits.data / 16.0])
    np.savetxt(folder / "train.csv", rows[:1400], delimiter=",", fmt="%.6g")
    np.savetxt(folder / "test.csv", rows[1400:], delimiter=",", fmt="%.6g")
    spec = _tiny(tmp_path, "csv")
    spec["task"] = {**spec["task"], "dataset": "csv_digits", "data_root": str(tmp_path / "data"), "steps": 30,
                    "eval_every": 15, "n_labeled": 100, "validation": 100}
    summary = run_local(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (6, 0)
    df = trials_frame(Store(spec["storage"]), "csv")
    assert (df.dataset == "csv_digits").all()
    assert (df.test_error < 0.7).all()  # it learned from the files: chance is 0.9
    (folder / "test.csv").unlink()  # a missing file: refused before anything trains, naming the file
    outcome = run_study(parse_spec({**spec, "name": "csv2"}), executor="local", progress=False)
    assert outcome.status != 0 and "test.csv" in outcome.message
    assert trials_frame(Store(spec["storage"]), "csv2").empty


def test_a_probe_with_its_own_metric_in_one_new_file(tmp_path, extension):
    extension("weight_norm_probe", probes.REGISTRY)
    spec = _tiny(tmp_path, "probe", probes={"weight_norm": {"every": 2}})
    assert (run_local(parse_spec(spec), progress=False).failed) == 0
    m = metrics_frame(Store(spec["storage"]), "probe")
    norms = m[m.name == "weight_norm"]
    assert sorted(norms.step.unique()) == [2, 4, 6]  # every 2 updates of 6
    assert norms.trial_id.nunique() == 6 and (norms.value > 0).all()
    # the weights move: each trial's norm differs between its first and last measurement
    ends = norms.sort_values("step").groupby("trial_id").value.agg(["first", "last"])
    assert (ends["first"] != ends["last"]).all()
    with pytest.raises(Exception, match="every"):
        parse_spec(_tiny(tmp_path, "bad", probes={"weight_norm": {"every": 0}}))


def test_a_tracker_in_one_new_file(tmp_path, extension):
    extension("jsonl_tracker", tracking.REGISTRY)
    spec = _tiny(tmp_path, "tracked", tracking={"jsonl": str(tmp_path / "runs")})
    assert run_local(parse_spec(spec), progress=False).failed == 0
    store = Store(spec["storage"])
    df, m = trials_frame(store, "tracked"), metrics_frame(store, "tracked")
    files = sorted((tmp_path / "runs" / "tracked").glob("*.jsonl"))
    assert sorted(f.stem for f in files) == sorted(df.key)
    for f in files:
        lines = [json.loads(line) for line in f.read_text().splitlines()]
        trial_id = int(df.trial_id[df.key == f.stem].iloc[0])
        steps = [r for r in lines if "step" in r]
        stored = m[(m.trial_id == trial_id) & (m.name == "val_error")].set_index("step").value
        assert {r["step"]: r["val_error"] for r in steps if "val_error" in r} == pytest.approx(stored.to_dict())
        assert lines[-1]["status"] == "COMPLETE" and "test_error" in lines[-1]["final"]


def test_an_executor_in_one_new_file(tmp_path, extension):
    module = extension("inline_executor", executors.REGISTRY)
    module.InlineExecutor.ran.clear()
    spec = _tiny(tmp_path, "inline", executor={"kind": "inline"})
    outcome = run_study(parse_spec(spec), progress=False)
    assert outcome.status == 0 and (outcome.ran, outcome.failed) == (6, 0)
    df = trials_frame(Store(spec["storage"]), "inline")
    assert sorted(module.InlineExecutor.ran) == sorted(df.key) and (df.status == "COMPLETE").all()
    assert df.batch_group.isna().all()  # one trial at a time: no lane groups


def test_a_method_with_state_in_one_new_file(tmp_path, extension):
    module = extension("ema_teacher", methods.REGISTRY)
    module.UPDATES.clear()
    spec = _tiny(tmp_path, "ema", search={"grid": [{"method": ["baseline", "ema_kl"], "alpha": [0.5]}]},
                 executor={"kind": "local", "lanes": 1, "checkpoint_every": 3})
    assert run_local(parse_spec(spec), progress=False).failed == 0
    df = trials_frame(Store(spec["storage"]), "ema")
    ema = df[df.method == "ema_kl"]
    assert len(ema) == 2 and (ema.reg > 0).all() and (df[df.method == "baseline"].reg == 0).all()
    assert module.UPDATES == [1, 2, 3, 4, 5, 6] * 2  # after_update after every update of each trial
    assert (ema.ema_decay == 0.9).all()  # its own setting, a trials-frame column
