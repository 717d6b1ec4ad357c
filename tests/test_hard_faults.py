"""Faults that used to hang, go stale or go unseen, and what a user now sees: a trial stuck inside
one call (killed at its time limit, on both executors); the Optuna records after the study's
seeds grow or a sequential look adds seeds (recomputed; ``status`` flags a disagreement); MLflow
on several Ray workers at once (a run per trial) and a tracker failing there (said on the
driver's output and in the report); a Ray worker that keeps dying (one line, Ray's text in the
trial's log); study files and values that could hang or exhaust the CLI; float IDX files, a
label past the classes, write errors of export and report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import tiny
from vat_study.store import Store

CLI = [sys.executable, "-m", "vat_study.cli"]


def write(tmp_path: Path, spec: dict, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(args: list[str], cwd: Path, env_extra: dict | None = None, timeout: float = 300):
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout, cwd=str(cwd),
                          env={**os.environ, **(env_extra or {})}, start_new_session=True)


# ------------------------------------------------------------------ 1. a trial stuck inside one call


@pytest.mark.platform
@pytest.mark.parametrize("kind", ["local", "ray"])
def test_a_trial_stuck_inside_one_call_is_killed_at_its_time_limit_and_the_study_goes_on(tmp_path, kind):
    """At its second report one trial sleeps for an hour: no bytecode runs in its thread, so no
    timer inside the process can stop it. Its process is killed at trial_timeout + GRACE; it is
    FAILED (timeout) with the last step it reported and where it was; the other trial completes."""
    url = f"sqlite:///{tmp_path}/s.db"
    spec = tiny("stuck", url, seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]},
                executor={"kind": kind, "per_trial": {"cpu": 1}, "trial_timeout": 8})
    spec["task"].update(steps=30, eval_every=10)
    once = tmp_path / "once"
    once.mkdir()
    t0 = time.time()
    r = run_cli(["run", str(write(tmp_path, spec)), "--no-progress"], tmp_path,
                {"VAT_STUDY_FAILPOINTS": "trial.report@2=sleep:3600", "VAT_STUDY_FAILPOINTS_ONCE": str(once)},
                timeout=240)
    assert r.returncode == 1, r.stderr[-3000:]
    assert time.time() - t0 < 150
    assert "Traceback" not in r.stderr
    df = Store(url).trials_frame("stuck")
    assert sorted(df.status) == ["COMPLETE", "FAILED"]
    failed = df[df.status == "FAILED"].iloc[0]
    assert failed.failure_kind == "timeout"
    last = failed.error.strip().splitlines()[-1]
    assert "trial_timeout = 8 s" in last and "its process was killed" in last, last
    assert "past step 20 of 30" in last and "in failpoint (failpoints.py" in last, last
    assert "called from train_lanes (train.py" in last, last
    assert "did not complete" in r.stderr and "its process was killed" in r.stderr
    log = (tmp_path / "results" / "stuck" / "logs" / f"{failed.key}.log").read_text()
    assert "every thread of the trial's process" in log and "failpoints.py" in log


# ------------------------------------------------------------------ 2. the Optuna records follow the store


def test_the_optuna_records_follow_the_store_when_seeds_grow_or_a_result_changes(tmp_path):
    """A grid study's Optuna trials hold the store's numbers after its seeds grow from 2 to 3 (they
    kept the 2-seed means), and after a trial's result changes in the store (a redone seed):
    ``status`` flags the disagreement, naming the configuration, and the next run rebuilds them."""
    import optuna
    from sqlalchemy import text
    from typer.testing import CliRunner

    from vat_study.cli import app
    from vat_study.executors import run_local
    from vat_study.spec import parse_spec

    url = f"sqlite:///{tmp_path}/t.db"
    spec = tiny("twin", url, search={"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [1.0]}]})
    run_local(parse_spec(spec), progress=False)
    grown = parse_spec({**spec, "seeds": [0, 1, 2]})
    assert run_local(grown, progress=False).ran == 2

    def twins() -> dict[str, optuna.trial.FrozenTrial]:
        return {t.params["method"]: t for t in optuna.load_study(study_name="twin", storage=url).get_trials()}

    def status() -> str:
        r = CliRunner().invoke(app, ["status", "twin", "--storage", url])
        assert r.exit_code == 0, r.output
        return r.stderr

    df = Store(url).trials_frame("twin")
    for method, t in twins().items():
        mine = df[df["param.method"] == method]
        assert t.user_attrs["seeds"] == [0, 1, 2] and len(mine) == 3
        assert t.value == pytest.approx(mine.val_error.mean(), rel=1e-12)
        assert sorted(t.user_attrs["vat_trial_ids"]) == sorted(mine.trial_id)
    assert "disagrees" not in status()

    vat = df[(df["param.method"] == "vat") & (df.seed == 2)].trial_id.iloc[0]
    with Store(url).engine.begin() as c:  # seed 2 of vat redone, with another result
        c.execute(text("UPDATE vat_final_metrics SET value = value + 0.25 WHERE trial_id = :t AND name = 'val_error'"),
                  {"t": int(vat)})
    said = status()
    assert "warning: the Optuna study 'twin' disagrees with the store on 1 configuration(s)" in said, said
    assert "method=vat" in said and "over seeds [0, 1, 2]" in said and "rebuilds it" in said
    assert run_local(grown, progress=False).ran == 0
    assert "disagrees" not in status()
    new = Store(url).trials_frame("twin")
    assert twins()["vat"].value == pytest.approx(new[new["param.method"] == "vat"].val_error.mean(), rel=1e-12)


# ------------------------------------------------------------------ 3. trackers: every run, every failure said


def test_a_tracker_that_fails_is_said_on_the_drivers_output_and_in_the_report(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vat_study.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked").write_text("a file where the event folder would go")
    spec = tiny("tracked", f"sqlite:///{tmp_path}/t.db", seeds=[0], search={"grid": [{"method": ["baseline", "vat"]}]},
                tracking={"tensorboard": str(tmp_path / "blocked")})
    r = CliRunner().invoke(app, ["run", str(write(tmp_path, spec)), "--executor", "local", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "warning: tracking.tensorboard did not record 2 of 2 trial(s) in full (trial 1 (method=baseline, seed 0): " \
           "not recorded (" in r.stderr, r.stderr
    r = CliRunner().invoke(app, ["report", "tracked", "--storage", f"sqlite:///{tmp_path}/t.db"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "results" / "tracked" / "report.md").read_text()
    assert "Trackers:" in text and "tracking.tensorboard did not record 2 of 2 trial(s)" in text
    assert "trackers" not in text.split("- versions:")[1].splitlines()[0]  # not a package version


@pytest.mark.platform
def test_mlflow_on_several_ray_workers_gets_a_run_per_trial_and_worker_failures_reach_the_driver(tmp_path):
    """Four Ray workers start at once on a new MLflow store (two creating one SQLite tracking
    database at once collided, losing runs): one MLflow run per trial. A tracker failing inside
    the workers (TensorBoard into a file) is said on the driver's output, not only in Ray's logs."""
    from mlflow.tracking import MlflowClient

    (tmp_path / "blocked").write_text("a file where the event folder would go")
    spec = tiny("ml", f"sqlite:///{tmp_path}/t.db", seeds=[0, 1],
                search={"grid": [{"method": ["baseline", "rpt", "vat"]}]},
                executor={"kind": "ray", "per_trial": {"cpu": 0.5}, "max_concurrent": 4},
                tracking={"mlflow": True, "tensorboard": str(tmp_path / "blocked")})
    r = run_cli(["run", str(write(tmp_path, spec)), "--no-progress"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/results/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ml").experiment_id])
    keys = set(Store(f"sqlite:///{tmp_path}/t.db").trials_frame("ml").key)
    assert len(runs) == 6 and {x.data.tags["vat_study.trial_key"] for x in runs} == keys
    assert {x.info.status for x in runs} == {"FINISHED"}
    assert "warning: tracking.tensorboard did not record 6 of 6 trial(s) in full" in r.stderr, r.stderr[-3000:]
