"""Both executors, Optuna persistence, failures recorded as FAILED (kills and other faults:
test_reliability.py)."""

import pytest

from helpers import tiny
from vat_study.platform.executors import run_local, run_ray
from vat_study.platform.spec import parse_spec
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame

def contents(storage, name):
    store = Store(storage)
    df = trials_frame(store, name).sort_values("key")
    metrics = metrics_frame(store, name).merge(df[["trial_id", "key"]], on="trial_id")
    return (
        [(r.key, r.seed, r.status, r.method, None if r.eps != r.eps else r.eps) for r in df.itertuples()],
        sorted((r.key, r.step, r.name, round(r.value, 6) if r.value == r.value else None)
               for r in metrics.itertuples() if r.name not in ("train_seconds",)),
    )


@pytest.mark.platform
def test_local_and_ray_executors_write_the_same_store_contents(tmp_path):
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    s1 = run_local(parse_spec(tiny("same", a)), progress=False)
    s2 = run_ray(parse_spec(tiny("same", b, executor={"kind": "ray", "per_trial": {"cpu": 1}})), progress=False)
    assert (s1.ran, s1.failed, s2.ran, s2.failed) == (6, 0, 6, 0)
    trials_a, metrics_a = contents(a, "same")
    trials_b, metrics_b = contents(b, "same")
    assert trials_a == trials_b and len(trials_a) == 6
    assert metrics_a == metrics_b and len(metrics_a) > 6 * 2  # the same numbers, step by step
    again = run_ray(parse_spec(tiny("same", b, executor={"kind": "ray"})), progress=False)
    assert again.ran == 0 and again.skipped == 6  # a rerun trains nothing new


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    """A trial that raises while it trains (a failpoint at its first report, once) is FAILED with
    its error; the other trial of the study still trains. (Missing data no longer reaches a trial:
    the preflight of ``run_study`` refuses it first, for the Python API as for the CLI.)"""
    url = f"sqlite:///{tmp_path}/f.db"
    spec = tiny("fails", url, search={"grid": [{"eps": [1.0, 2.0]}]}, seeds=[0])
    monkeypatch.setenv("VAT_STUDY_FAILPOINTS", "trial.report@1=raise")
    monkeypatch.setenv("VAT_STUDY_FAILPOINTS_ONCE", str(tmp_path))
    summary = run_local(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (2, 1)
    df = trials_frame(Store(url), "fails")
    assert sorted(df["status"]) == ["COMPLETE", "FAILED"]
    assert "FailpointError" in df[df.status == "FAILED"]["error"].iloc[0]


def test_optuna_tpe_study_persists_and_continues_across_runs(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    spec = tiny("tpe", url, seeds=[0], search={"optuna": {"sampler": "tpe", "n_trials": 3, "seed": 1, "space": {
        "eps": {"type": "log_uniform", "low": 0.1, "high": 3.0}, "alpha": {"type": "uniform", "low": 0.5, "high": 2.0}}}})
    first = run_local(parse_spec(spec), progress=False)
    assert (first.ran, first.failed) == (3, 0)
    import optuna

    study = optuna.load_study(study_name="tpe", storage=url)
    assert len(study.trials) == 3 and study.best_value == pytest.approx(
        trials_frame(Store(url), "tpe")["val_error"].min())
    spec["search"]["optuna"]["n_trials"] = 5
    second = run_local(parse_spec(spec), progress=False)
    assert (second.ran, second.skipped) == (2, 3)
    assert len(optuna.load_study(study_name="tpe", storage=url).trials) == 5
    assert len(trials_frame(Store(url), "tpe")) == 5
    third = run_local(parse_spec(spec), progress=False)
    assert third.ran == 0


@pytest.mark.platform
def test_optuna_through_ray(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    spec = tiny("tpe_ray", url, seeds=[0, 1], executor={"kind": "ray", "per_trial": {"cpu": 1}},
                search={"optuna": {"sampler": "random", "n_trials": 2, "seed": 0,
                                   "space": {"eps": {"type": "uniform", "low": 0.5, "high": 2.0}}}})
    summary = run_ray(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (2, 0)
    import optuna

    study = optuna.load_study(study_name="tpe_ray", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    df = trials_frame(Store(url), "tpe_ray")
    assert len(df) == 4 and set(df["status"]) == {"COMPLETE"}  # 2 configurations x 2 seeds
    for t in study.trials:  # Optuna's value is the mean over seeds of our stored metric
        rows = df[df["param.eps"] == t.params["eps"]]
        assert t.value == pytest.approx(rows["val_error"].mean())


def test_a_gpu_request_on_a_cluster_without_gpus_is_refused_not_left_waiting(tmp_path):
    from vat_study.platform.spec import SpecError

    url = f"sqlite:///{tmp_path}/g.db"
    spec = parse_spec(tiny("gpu", url, executor={"kind": "ray", "per_trial": {"cpu": 1, "gpu": 0.25}}))
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for clusters without one")
    with pytest.raises(SpecError, match="executor.per_trial.gpu"):
        run_ray(spec, progress=False)
    assert set(Store(url).trial_statuses(Store(url).study_id("gpu")).values()) <= set()


def test_a_sqlite_store_is_refused_on_a_cluster_of_several_nodes():
    from vat_study.platform.executors.ray_tune import check_shared_store
    from vat_study.platform.spec import SpecError

    check_shared_store("sqlite:////tmp/x.db", 1)  # one machine: fine
    check_shared_store("postgresql+psycopg://u@db:5432/vat", 3)  # shared: fine
    with pytest.raises(SpecError, match="SQLite file is not shared between the 2 nodes.*PostgreSQL"):
        check_shared_store("sqlite:////tmp/x.db", 2)
