"""The store against every backend (SQLite and a real PostgreSQL server started by the test)."""

import pickle

import pytest
from sqlalchemy.exc import IntegrityError

from vat_study.platform.failpoints import FailpointError
from vat_study.platform.results import load_study_frame, trials_frame
from vat_study.platform.store import Store, TrialRow
from vat_study.platform.store.frames import metrics_frame


def _trial(store, sid, key="k1", seed=0, params=None, seen=0):
    """Claim a trial, as a run does, for a driver that never registered (so it counts as dead,
    as a driver of a killed run does once its heartbeat is stale)."""
    return store.claims.claim_trial(sid, key=key, config_key="c1", params=params or {"eps": 1.0}, seed=seed,
                                    config={"eps": 1.0, "method": "vat", "seed": seed}, driver="gone", seen=seen)


def test_trial_lifecycle_and_frames(storage_url):
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {"name": "s"})
    assert store.get_or_create_study("s", {"name": "s", "x": 1}) == sid
    tid = _trial(store, sid)
    store.report(tid, 10, {"val_error": 0.5, "rvadv": 0.1})
    store.report(tid, 10, {"val_error": 0.4})  # a re-report overwrites, never duplicates
    store.report(tid, 20, {"val_error": 0.3, "note": "text is skipped", "nan_metric": float("nan")})
    store.finish_trial(tid, {"val_error": 0.3, "test_error": 0.35, "steps": 20, "device": "cpu"})
    t2 = _trial(store, sid, key="k2", seed=1)
    store.fail_trial(t2, "Traceback ...\nValueError: boom")

    df = load_study_frame(storage_url, "s")
    assert list(df["status"]) == ["COMPLETE", "FAILED"]
    assert list(df["failure_kind"].fillna("-")) == ["-", "error"]
    assert df.loc[0, "test_error"] == pytest.approx(0.35) and df.loc[0, "param.eps"] == 1.0
    assert "boom" in df.loc[1, "error"] and df.loc[0, "host"]
    m = metrics_frame(store, "s")
    rows = {(r.step, r.name): r.value for r in m.itertuples()}
    assert rows[(10, "val_error")] == pytest.approx(0.4) and len(m[(m.step == 10) & (m.name == "val_error")]) == 1
    assert (20, "note") not in rows and rows[(20, "nan_metric")] is None or rows[(20, "nan_metric")] != rows[(20, "nan_metric")]
    assert store.final_metric(sid, "k1", "test_error") == pytest.approx(0.35)
    assert store.final_metric(sid, "k2", "test_error") is None


def test_interrupted_trials_are_failed_then_retried_and_complete_ones_never_rerun(storage_url):
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    first = _trial(store, sid)
    store.report(first, 5, {"val_error": 0.9})
    assert store.claims.fail_stale(sid, 60) == 1  # as the next run's planning does: its driver is dead
    assert store.trial_statuses(sid) == {"k1": "FAILED"}
    assert trials_frame(store, "s").loc[0, "failure_kind"] == "interrupted"
    again = _trial(store, sid, seen=1)  # the retry reuses the row and drops the stale metrics
    assert again.trial_id == first.trial_id and again.attempt == 2 and metrics_frame(store, "s").empty
    store.finish_trial(again, {"val_error": 0.1})
    assert _trial(store, sid, seen=2) is None and _trial(store, sid, seen=0) is None  # COMPLETE: never rerun
    assert trials_frame(store, "s").loc[0, "attempts"] == 2


def test_a_stale_attempt_can_never_overwrite_the_current_one(storage_url):
    """Fencing: a zombie worker of a killed run still holds attempt 1 while the rerun runs attempt 2."""
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    zombie = _trial(store, sid)
    store.claims.fail_stale(sid, 60)
    current = _trial(store, sid, seen=1)
    assert not store.report(zombie, 3, {"val_error": 0.99})
    assert store.report(current, 3, {"val_error": 0.5})
    assert not store.finish_trial(zombie, {"val_error": 0.99})
    assert not store.fail_trial(zombie, "late failure")
    df = trials_frame(store, "s")
    assert df.loc[0, "status"] == "RUNNING" and df.loc[0, "attempts"] == 2
    assert metrics_frame(store, "s")["value"].tolist() == [0.5]
    assert store.finish_trial(current, {"val_error": 0.5})
    assert not store.fail_trial(current, "after the finish")  # a COMPLETE trial stays COMPLETE
    assert trials_frame(store, "s").loc[0, "status"] == "COMPLETE"


def test_finishing_is_one_transaction(storage_url, monkeypatch):
    """A crash inside finish_trial's transaction leaves a RUNNING trial without final metrics,
    never a COMPLETE one without them (or metrics of a trial that is not COMPLETE)."""
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    lease = _trial(store, sid)
    monkeypatch.setenv("VAT_STUDY_FAILPOINTS", "store.commit=raise")
    with pytest.raises(FailpointError):
        store.finish_trial(lease, {"val_error": 0.1, "test_error": 0.2})
    monkeypatch.delenv("VAT_STUDY_FAILPOINTS")
    df = trials_frame(store, "s")
    assert df.loc[0, "status"] == "RUNNING" and "test_error" not in df.columns
    assert store.finish_trial(lease, {"val_error": 0.1, "test_error": 0.2})
    assert trials_frame(store, "s").loc[0, "test_error"] == pytest.approx(0.2)


def test_a_failpoint_fires_at_its_nth_hit_or_at_every_hit(monkeypatch):
    from vat_study.platform.failpoints import failpoint

    monkeypatch.setenv("VAT_STUDY_FAILPOINTS", "x@2=raise")
    failpoint("x")
    with pytest.raises(FailpointError, match="hit 2"):
        failpoint("x")
    failpoint("x")  # the 2nd hit only
    monkeypatch.setenv("VAT_STUDY_FAILPOINTS", "x@*=raise")
    for n in (1, 2, 3):
        with pytest.raises(FailpointError, match=f"hit {n}"):
            failpoint("x")
    failpoint("y")


def test_the_database_refuses_an_unknown_status(storage_url):
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    lease = _trial(store, sid)
    with pytest.raises(IntegrityError), store.session() as s, s.begin():
        s.get(TrialRow, lease.trial_id).status = "DONE"


def test_store_pickles_without_a_live_engine(storage_url):
    store = Store(storage_url)
    store.get_or_create_study("s", {})
    clone = pickle.loads(pickle.dumps(store))
    assert clone._engine is None and clone.study_names() == ["s"]
