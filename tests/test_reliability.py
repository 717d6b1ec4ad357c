"""Faults injected into real runs: nothing a user ran is lost, nothing is duplicated or corrupted.

Every killed run below is followed by a plain rerun of the same command, and the store is then
compared, trial by trial and step by step, with an uninterrupted run of the same study: the
training is deterministic for a seed, so "nothing lost" is checked as "identical".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from helpers import tiny
from vat_study.platform.executors import run_local
from vat_study.platform.spec import parse_spec
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame

CLI = [sys.executable, "-m", "vat_study.platform.cli"]
NAME = "ten"


def ten_trials(storage: str, kind: str = "local", **extra) -> dict:
    """5 configurations x 2 seeds, 3 evaluations per trial (~0.2 s each here)."""
    spec = tiny(NAME, storage, seeds=[0, 1], executor={"kind": kind, "per_trial": {"cpu": 1}},
                search={"grid": [{"method": ["baseline"]}, {"method": ["rpt", "vat"], "eps": [0.5, 2.0]}]})
    spec["task"].update(steps=30, eval_every=10)
    spec.update(extra)
    return spec


def snapshot(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, per-step metrics) keyed by trial key; timings dropped (they differ run to run)."""
    store = Store(url)
    trials = trials_frame(store, NAME)
    if trials.empty:
        return trials, pd.DataFrame()
    metrics = metrics_frame(store, NAME).merge(trials[["trial_id", "key"]], on="trial_id")
    metrics = metrics[metrics.name != "train_seconds"].drop(columns="trial_id")
    return trials, metrics.sort_values(["key", "step", "name"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same study, uninterrupted."""
    folder = tmp_path_factory.mktemp("ref")
    url = f"sqlite:///{folder}/ref.db"
    here = os.getcwd()
    os.chdir(folder)  # the trials' logs (results/<study>/logs) stay out of the repository
    try:
        summary = run_local(parse_spec(ten_trials(url)), progress=False)
    finally:
        os.chdir(here)
    assert (summary.ran, summary.failed) == (10, 0)
    return snapshot(url)


def assert_same_as_reference(url: str, reference) -> pd.DataFrame:
    ref_trials, ref_metrics = reference
    trials, metrics = snapshot(url)
    assert len(trials) == 10 and trials["key"].is_unique and set(trials.status) == {"COMPLETE"}
    cols = ["val_error", "test_error", "rvadv", "loss"]
    got = trials.set_index("key")[cols].sort_index()
    want = ref_trials.set_index("key")[cols].sort_index()
    pd.testing.assert_frame_equal(got, want, rtol=1e-6)
    assert not metrics.duplicated(["key", "step", "name"]).any()
    pd.testing.assert_frame_equal(metrics, ref_metrics, rtol=1e-6)  # every step of every trial, once
    return trials


def write_study(tmp_path, spec: dict):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(path, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(CLI + ["run", str(path), "--no-progress"], capture_output=True, text=True,
                          timeout=timeout, env=env, start_new_session=True, cwd=str(path.parent))


def signal_when(proc, url: str, ready, sig: int, timeout: float) -> pd.DataFrame | None:
    """Send ``sig`` to the driver alone once ``ready(trials)`` holds for the study's trials in the
    store; returns the trials seen then (None if the run ended or the time ran out first)."""
    store, deadline = Store(url), time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            df = trials_frame(store, NAME)
        except Exception:  # noqa: BLE001  the database may not exist yet
            continue
        if not df.empty and ready(df):
            os.kill(proc.pid, sig)
            return df
    return None


@pytest.mark.parametrize("point,where", [
    ("study.planned", "before the first result"),
    ("trial.report@7", "mid-trial (the third trial's first evaluation)"),
    ("trial.finished@4", "between trials (the fourth just finished)"),
    # writes: study, stale-trial check, then per trial: start, 3 reports, finish (one transaction each)
    ("store.commit@12", "during a store write: finishing the second trial, before COMMIT"),
    ("store.commit@14", "during a store write: the third trial's first metrics, before COMMIT"),
])
def test_driver_killed_then_rerun_loses_and_duplicates_nothing(tmp_path, reference, point, where):
    kill_then_rerun(f"sqlite:///{tmp_path}/k.db", tmp_path, reference, point, where)


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("point,where", [
    ("trial.report@7", "mid-trial"),
    ("store.commit@12", "during a store write: finishing the second trial, before COMMIT"),
])
def test_driver_killed_on_postgresql_then_rerun(storage_url, tmp_path, reference, point, where):
    """The same on a real PostgreSQL server: the killed connection's open transaction is rolled
    back by the server, the rerun marks the orphaned RUNNING trial and redoes it."""
    kill_then_rerun(storage_url, tmp_path, reference, point, where)


def kill_then_rerun(url, tmp_path, reference, point, where):
    path = write_study(tmp_path, ten_trials(url))
    killed = run_cli(path, {"VAT_STUDY_FAILPOINTS": f"{point}=kill"})
    assert killed.returncode == -signal.SIGKILL, (where, killed.stderr[-2000:])
    before, _ = snapshot(url)
    finished = before[before.status == "COMPLETE"] if not before.empty else before
    interrupted = before[before.status == "RUNNING"] if not before.empty else before
    assert len(finished) < 10 and len(interrupted) <= 1
    if point.startswith("store.commit@12"):  # the kill rolled the finishing transaction back
        assert len(finished) == 1 and len(interrupted) == 1 and interrupted["test_error"].isna().all()

    rerun = run_cli(path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = assert_same_as_reference(url, reference)
    for r in finished.itertuples():  # finished trials were kept as they were, never run again
        row = trials[trials.key == r.key].iloc[0]
        assert row.finished_at == r.finished_at and row.attempts == 1
    for r in interrupted.itertuples():  # the trial the kill interrupted was redone from scratch
        assert trials[trials.key == r.key].iloc[0].attempts == 2
    assert (trials.attempts == 2).sum() == len(interrupted)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_ctrl_c_marks_the_running_trial_interrupted_and_a_rerun_continues(tmp_path, reference, executor):
    """Ctrl-C: exit 130, running trials FAILED (interrupted), a rerun completes the study. On Ray,
    Tune's own SIGINT handler (which would return quietly) is off."""
    url = f"sqlite:///{tmp_path}/c.db"
    path = write_study(tmp_path, ten_trials(url, executor))
    # the third trial sleeps at its first report, so the Ctrl-C surely lands mid-study, however loaded the machine
    env = {**os.environ, "VAT_STUDY_FAILPOINTS": "trial.report@7=sleep:60"}
    proc = subprocess.Popen(CLI + ["run", str(path), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=str(path.parent), env=env)
    try:
        signal_when(proc, url, lambda df: (df.status == "COMPLETE").sum() >= 2, signal.SIGINT, timeout=120)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    store = Store(url)
    assert "interrupted: every finished trial is in" in err and "Traceback" not in err
    df = trials_frame(store, NAME)
    assert "RUNNING" not in set(df.status)
    assert set(df[df.status == "FAILED"].failure_kind) <= {"interrupted"}
    rerun = run_cli(path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_as_reference(url, reference)


def test_ray_driver_killed_mid_study_then_rerun(tmp_path, reference):
    """SIGKILL of the driver alone (not its process group): Ray's processes go with it, and a
    worker that still writes afterwards cannot touch the rerun's trials (leases)."""
    url = f"sqlite:///{tmp_path}/r.db"
    path = write_study(tmp_path, ten_trials(url, "ray"))
    proc = subprocess.Popen(CLI + ["run", str(path), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, cwd=str(path.parent))
    try:
        killed_with = signal_when(proc, url, lambda df: 2 <= (df.status == "COMPLETE").sum() < 8, signal.SIGKILL,
                                  timeout=180)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed_with is not None, "the study finished before it could be killed"
    time.sleep(1.0)
    rerun = run_cli(path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_as_reference(url, reference)


@pytest.mark.parametrize("point", ["trial.report@2", "store.commit@3"])
def test_ray_worker_killed_the_trial_is_retried_in_the_same_run(tmp_path, reference, point):
    url = f"sqlite:///{tmp_path}/w.db"
    path = write_study(tmp_path, ten_trials(url, "ray"))
    once = tmp_path / "once"
    once.mkdir()
    run = run_cli(path, {"VAT_STUDY_FAILPOINTS": f"{point}=kill", "VAT_STUDY_FAILPOINTS_ONCE": str(once)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(once.iterdir()), "the failpoint never fired"
    trials = assert_same_as_reference(url, reference)
    assert (trials.attempts == 2).sum() == 1  # the one trial whose worker died, redone by Tune


def test_ray_worker_that_keeps_dying_is_recorded_failed_and_redone_by_a_rerun(tmp_path, reference):
    url = f"sqlite:///{tmp_path}/d.db"
    spec = ten_trials(url, "ray")
    spec["executor"]["max_failures"] = 0
    path = write_study(tmp_path, spec)
    once = tmp_path / "once"
    once.mkdir()
    run = run_cli(path, {"VAT_STUDY_FAILPOINTS": "trial.started@2=kill", "VAT_STUDY_FAILPOINTS_ONCE": str(once)})
    assert run.returncode == 1, run.stderr[-3000:]  # a trial FAILED: exit 1
    assert "(1 failed)" in run.stdout, run.stdout
    df = trials_frame(Store(url), NAME)
    dead = df[df.status == "FAILED"]
    assert len(dead) == 1 and dead.failure_kind.iloc[0] == "worker_died" and "Ray" in dead.error.iloc[0]
    # Ray's noise (an ERROR line and a traceback per failure, then "Trials did not complete") is
    # one line of ours, naming the trial; Ray's text is in the trial's log
    assert "Traceback" not in run.stderr and "ERROR" not in run.stderr, run.stderr[-3000:]
    key = dead.key.iloc[0]
    said = [ln for ln in run.stderr.splitlines() if ln.startswith(f"trial {key} (")]
    assert len(said) == 1 and "its Ray worker process died" in said[0] and "Tune gives up on it" in said[0], said
    log = tmp_path / "results" / NAME / "logs" / f"{key}.log"
    assert f"Ray's text: results/{NAME}/logs/{key}.log" in said[0] and "The actor died" in log.read_text()
    rerun = run_cli(path)
    assert rerun.returncode == 0 and "Ran 1 (0 failed), skipped 9" in rerun.stdout, rerun.stdout
    assert_same_as_reference(url, reference)


def test_optuna_study_killed_then_rerun_completes_exactly(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path}/o.db"
    spec = ten_trials(url, search={"optuna": {"sampler": "random", "n_trials": 4, "seed": 3, "space": {
        "eps": {"type": "log_uniform", "low": 0.1, "high": 3.0}}}})
    path = write_study(tmp_path, spec)
    killed = run_cli(path, {"VAT_STUDY_FAILPOINTS": "trial.report@10=kill"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    rerun = run_cli(path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    df = trials_frame(Store(url), NAME)
    assert len(df) == 8 and df["key"].is_unique and set(df.status) == {"COMPLETE"}  # 4 points x 2 seeds
    study = optuna.load_study(study_name=NAME, storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and sorted(t.params["eps"] for t in done) == sorted(df["param.eps"].unique())
    for t in done:  # Optuna's value is the mean over seeds of our stored metric
        assert t.value == pytest.approx(df[df["param.eps"] == t.params["eps"]]["val_error"].mean())


def test_optuna_lane_group_killed_then_rerun_finishes_its_points_without_replaying(tmp_path):
    """Lanes: two Optuna points (x 2 seeds) are asked at once and train as one 4-lane model; the
    driver is killed inside that group. The rerun finishes exactly those two points (re-enqueued),
    then asks two new ones: 4 distinct points, 8 trials COMPLETE once, each told its own mean."""
    import optuna

    url = f"sqlite:///{tmp_path}/o.db"
    spec = ten_trials(url, search={"optuna": {"sampler": "random", "n_trials": 4, "seed": 3, "space": {
        "eps": {"type": "log_uniform", "low": 0.1, "high": 3.0}}}})
    spec["executor"]["lanes"] = 4
    path = write_study(tmp_path, spec)
    killed = run_cli(path, {"VAT_STUDY_FAILPOINTS": "trial.report@6=kill"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    first = optuna.load_study(study_name=NAME, storage=url).trials
    assert len(first) == 2 and {t.state.name for t in first} == {"RUNNING"}  # asked together, killed together
    killed_points = sorted(t.params["eps"] for t in first)
    rerun = run_cli(path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    df = trials_frame(Store(url), NAME)
    assert len(df) == 8 and df["key"].is_unique and set(df.status) == {"COMPLETE"}
    assert df.groupby("batch_group").size().tolist() == [4, 4]
    study = optuna.load_study(study_name=NAME, storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    points = sorted(t.params["eps"] for t in done)
    assert len(done) == 4 and len(set(points)) == 4 and set(killed_points) <= set(points)
    assert sorted(df["param.eps"].unique()) == points
    for t in done:
        assert t.value == pytest.approx(df[df["param.eps"] == t.params["eps"]]["val_error"].mean())


# ----------------------------------------------------------------------------- failing trials


def failing_study(storage: str, kind: str, tmp_path) -> dict:
    """A good trial, one that raises, one whose loss becomes NaN, one past the time limit."""
    # trial_timeout: room for the good trial on a loaded machine (at 6 s it timed out in a fresh-clone
    # run beside two MNIST studies), while the 10,000,000-update trial still runs far past it
    spec = tiny("failing", storage, seeds=[0], executor={"kind": kind, "per_trial": {"cpu": 1}, "trial_timeout": 20},
                search={"grid": [{"method": ["vat"], "eps": [1.0]},
                                 {"model_path": [str(tmp_path / "a-file" / "m.pt")]},  # raises when it saves
                                 {"optimizer.lr": [1.0e30], "alpha": [1.0e30]},  # the loss turns inf/NaN
                                 {"steps": [10_000_000]}]})  # ~hours: stopped by trial_timeout
    spec["task"].update(eval_every=3)
    (tmp_path / "a-file").write_text("a file where a folder should be")
    return spec


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_failing_trials_are_recorded_with_their_error_and_the_study_goes_on(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/f.db"
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(failing_study(url, kind, tmp_path)))
    t0 = time.time()
    run = run_cli(path)
    assert run.returncode == 1, run.stderr[-3000:]  # the study has FAILED trials: exit 1, each named
    assert "3 of 4 trial(s) of 'failing' did not complete" in run.stderr, run.stderr[-3000:]
    assert time.time() - t0 < 120
    assert "Ran 4 (3 failed)" in run.stdout, run.stdout
    df = trials_frame(Store(url), "failing")
    by_kind = {r.failure_kind if isinstance(r.failure_kind, str) else "-": (r.status, r.error or "") for r in df.itertuples()}
    assert len(df) == 4 and set(by_kind) == {"-", "error", "diverged", "timeout"}
    assert by_kind["-"][0] == "COMPLETE"
    assert "FileExistsError" in by_kind["error"][1] and "Traceback" in by_kind["error"][1]
    assert "diverged" in by_kind["diverged"][1]
    assert "trial_timeout = 20 s" in by_kind["timeout"][1]
    timed_out = metrics_frame(Store(url), "failing")
    assert timed_out["step"].max() < 10_000_000  # it was stopped, its partial curve kept

    status = subprocess.run(CLI + ["status", "failing", "--storage", url], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "1 COMPLETE" in status.stdout and "3 FAILED" in status.stdout
    for k in ("(error)", "(diverged)", "(timeout)"):
        assert k in status.stderr, status.stderr
    rep = subprocess.run(CLI + ["report", "failing", "--storage", url, "--out", str(tmp_path / "rep")],
                         capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "diverged 1, error 1, timeout 1" in text and "trial_timeout" in text


def test_a_diverging_seed_in_a_batch_fails_alone():
    """Seeds trained as one batched model share no weights: a seed whose loss turns NaN is
    dropped (reported as diverged) and the other seed trains on exactly as it would alone."""
    import torch

    from vat_study import run_trial
    from vat_study.science.batched import LaneBatch
    from vat_study.science.config import TrialConfig
    from vat_study.science.objective import _build, prepare_data, seed_splits
    from vat_study.science.train import train_lanes

    raw = {"dataset": "digits", "hidden": [16], "steps": 12, "eval_every": 4, "dtype": "float64",
           "probes": {"rvadv": {"size": 20}}, "batch": {"labeled": 16, "unlabeled": 32}}
    alone = run_trial({**raw, "seed": 0})
    cfg = TrialConfig.from_mapping(raw)
    data = prepare_data(cfg)
    models = []
    for s in (0, 1):
        torch.manual_seed(s)
        models.append(_build(cfg, data.dataset).double())
    with torch.no_grad():
        models[1].net[1].weight.fill_(float("nan"))  # seed 1 is broken from the start
    batch = LaneBatch(models)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        out = train_lanes([cfg, cfg.model_copy(update={"seed": 1})], data.x_train, data.y_train,
                          [data.splits, seed_splits(cfg, data.dataset, 1)], batch, None)
    assert "diverged" in out[1].diverged and out[0].diverged is None
    assert "diverged" not in out[0].metrics and "diverged" not in out[1].metrics  # no message among the metrics
    for k in ("val_error", "rvadv", "loss", "nll"):
        assert out[0].metrics[k] == pytest.approx(alone[k], rel=1e-9, abs=1e-12), k
