"""tracking: TensorBoard event files and MLflow runs, read back with the libraries' own formats
and client. (W&B goes through the same hook; its package is not installed here, so only its
missing-package refusal is tested.)"""

import logging
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import tiny
from vat_study.platform import tracking
from vat_study.platform.executors import run_local
from vat_study.platform.spec import SpecError, parse_spec
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame


def read_events(path: Path):
    """The events of one TensorBoard event file (TFRecord framing: length, its CRC, the Event
    proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    data, i = path.read_bytes(), 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        yield event_pb2.Event.FromString(data[i + 12:i + 12 + n])
        i += 12 + n + 4


def scalars_and_hparams(run_dir: Path):
    from tensorboardX.proto import plugin_hparams_pb2

    scalars, hparams = {}, {}
    for f in run_dir.glob("events.out.tfevents.*"):
        for e in read_events(f):
            for v in e.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    for k, x in data.session_start_info.hparams.items():
                        hparams[k] = x.string_value or x.number_value or x.bool_value
                elif v.HasField("simple_value"):
                    scalars.setdefault(v.tag, {})[e.step] = v.simple_value
    return scalars, hparams


def _study(tmp_path, **track):
    spec = tiny("tracked", f"sqlite:///{tmp_path}/t.db", seeds=[0], tracking=track)
    spec["task"].update(steps=4, eval_every=2)
    return spec


def test_tensorboard_and_mlflow_get_each_trials_config_and_per_step_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # mlflow: true is a store under results/, where the run starts
    spec = parse_spec(_study(tmp_path, tensorboard="tb", mlflow=True))
    assert run_local(spec, progress=False).ran == 3
    store = Store(spec.storage)
    trials = trials_frame(store, "tracked").set_index("key")
    steps = metrics_frame(store, "tracked")
    val = {(r.trial_id, r.step): r.value for r in steps[steps["name"] == "val_error"].itertuples()}

    runs = sorted((tmp_path / "tb" / "tracked").iterdir())
    assert len(runs) == 3
    for run_dir in runs:
        key = next(k for k in trials.index if run_dir.name.endswith(k[:8]))
        scalars, hparams = scalars_and_hparams(run_dir)
        tid = trials.loc[key, "trial_id"]
        assert scalars["val_error"] == pytest.approx({2: val[(tid, 2)], 4: val[(tid, 4)]})
        assert {"loss", "nll", "reg", "rvadv"} <= set(scalars)
        assert scalars["final/test_error"][0] == pytest.approx(trials.loc[key, "test_error"])
        assert hparams["method.name"] == trials.loc[key, "method"] and hparams["task.steps"] == 4
        assert hparams["seed"] == 0 and hparams["task.dataset"] == "digits"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.mlflow_uri(True))
    assert (tmp_path / "results" / "mlflow.db").is_file()
    experiment = client.get_experiment_by_name("tracked")
    found = client.search_runs([experiment.experiment_id])
    assert len(found) == 3 and {r.info.status for r in found} == {"FINISHED"}
    for r in found:
        key = r.data.tags["vat_study.trial_key"]
        tid = trials.loc[key, "trial_id"]
        assert r.data.params["method.name"] == trials.loc[key, "method"] and r.data.params["task.steps"] == "4"
        history = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "val_error")}
        assert history == pytest.approx({2: val[(tid, 2)], 4: val[(tid, 4)]})
        assert r.data.metrics["final.test_error"] == pytest.approx(trials.loc[key, "test_error"])


def test_a_missing_tracker_package_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    import importlib.util

    from vat_study.platform.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(SpecError, match=r"tracking\.mlflow: needs the 'mlflow-skinny' package"):
        parse_spec(_study(tmp_path, mlflow=True))
    with pytest.raises(SpecError, match=r"tracking\.wandb: needs the 'wandb' package") if real("wandb") is None \
            else pytest.raises(SpecError, match="tracking.tensorboard: must name a folder"):
        parse_spec(_study(tmp_path, wandb="p", tensorboard=" "))
    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_study(tmp_path, mlflow=True)))
    r = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--executor", "local"])
    assert r.exit_code == 2 and "mlflow-skinny" in r.output
    assert not (tmp_path / "t.db").exists()


def test_a_failing_tracker_never_fails_the_trial(tmp_path, caplog):
    (tmp_path / "blocked").write_text("a file where the event folder would go")
    spec = _study(tmp_path, tensorboard=str(tmp_path / "blocked"))
    spec["search"] = {"grid": [{"method": ["baseline"]}]}
    with caplog.at_level(logging.WARNING, logger="vat_study.platform.tracking"):
        summary = run_local(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (1, 0)
    assert "tracking.tensorboard: not recording trial" in caplog.text


@pytest.mark.platform
def test_ray_workers_write_the_event_files_too(tmp_path, monkeypatch):
    from vat_study.platform.executors import run_ray

    monkeypatch.chdir(tmp_path)  # Ray's workers keep the driver's folder: a relative DIR lands here
    spec = _study(tmp_path, tensorboard="tb")
    spec["search"] = {"grid": [{"method": ["baseline"]}]}
    spec["executor"] = {"kind": "ray", "per_trial": {"cpu": 1}}
    assert run_ray(parse_spec(spec), progress=False).ran == 1
    (run_dir,) = (tmp_path / "tb" / "tracked").iterdir()
    scalars, hparams = scalars_and_hparams(run_dir)
    assert sorted(scalars["val_error"]) == [2, 4] and hparams["method.name"] == "baseline"


def test_every_place_a_result_goes_carries_the_trials_provenance(tmp_path, monkeypatch):
    """Finding 6 of issue 31: git commit, dirty flag, argv, versions and hardware stopped at the
    store. Now the same record is in the MLflow tags, a TensorBoard text summary, the Optuna
    trials' user attributes and `export`'s columns; a baseline's run name has no eps."""
    import json

    import optuna
    import pandas as pd

    from vat_study.platform import provenance
    from vat_study.platform.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(provenance.INVOCATION_ENV, json.dumps({"argv": ["run", "tracked.yaml"], "overrides": {}}))
    raw = _study(tmp_path, tensorboard="tb", mlflow=True)
    raw["search"] = {"grid": [{"method": ["baseline", "vat"], "eps": [0.5]}]}  # the baseline's point has eps too
    spec = parse_spec(raw)
    assert run_local(spec, progress=False).ran == 2
    store = Store(spec.storage)
    trials = trials_frame(store, "tracked").set_index("key")
    with store.session() as s:  # each trial's record, as the store keeps it
        from sqlalchemy import select

        from vat_study.platform.store import TrialRow

        versions = dict(s.execute(select(TrialRow.id, TrialRow.versions)).all())
    assert all(v.get("argv") == ["run", "tracked.yaml"] and "torch" in v and "cpu" in v for v in versions.values())

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.mlflow_uri(True))
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    for r in runs:
        tid = trials.loc[r.data.tags["vat_study.trial_key"], "trial_id"]
        want = tracking.provenance_text(versions[tid])
        got = {k.removeprefix("vat_study.provenance."): v for k, v in r.data.tags.items()
               if k.startswith("vat_study.provenance.")}
        assert got == want
        method = trials.loc[r.data.tags["vat_study.trial_key"], "method"]
        assert ("eps=" in r.info.run_name) == (method == "vat"), r.info.run_name
    names = sorted(p.name for p in (tmp_path / "tb" / "tracked").iterdir())
    assert [n.split("-")[0] for n in names] == ["eps=0.5,method=vat", "method=baseline"], names
    for run_dir in (tmp_path / "tb" / "tracked").iterdir():
        texts = [v.tensor.string_val[0].decode() for f in run_dir.glob("events.out.tfevents.*") for e in read_events(f)
                 for v in e.summary.value if v.metadata.plugin_data.plugin_name == "text"]
        shown = next(t for t in texts if "| key | value |" in t)
        assert all(f"| {k} | {v} |" in shown for k, v in tracking.provenance_text(next(iter(versions.values()))).items()
                   if k not in ("torch_threads",))
    for t in optuna.load_study(study_name="tracked", storage=spec.storage).trials:
        assert t.user_attrs["provenance"] == versions[t.user_attrs["vat_trial_ids"][0]]
    ex = CliRunner().invoke(app, ["export", "tracked", "--storage", spec.storage])
    assert ex.exit_code == 0, ex.output
    csv = pd.read_csv(tmp_path / "results" / "tracked" / "trials.csv").set_index("trial_id")
    for tid, v in versions.items():
        assert csv.loc[tid, "provenance.vat-study"] == v["vat-study"] and csv.loc[tid, "provenance.cpu"] == v["cpu"]
        assert json.loads(csv.loc[tid, "provenance.argv"]) == v["argv"]
        assert csv.loc[tid, "test_error_pct"] == pytest.approx(100 * trials.set_index("trial_id").loc[tid, "test_error"])
    assert "test_error" not in csv and "val_error" not in csv
