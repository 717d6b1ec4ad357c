"""The store against every backend (SQLite and a real PostgreSQL server started by the test)."""

import pickle

import pytest

from vat_study.store import Store, load_study_frame


def _trial(store, sid, key="k1", seed=0, params=None):
    return store.start_trial(sid, key=key, config_key="c1", params=params or {"eps": 1.0}, seed=seed,
                             config={"eps": 1.0, "method": "vat", "seed": seed})


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
    assert df.loc[0, "test_error"] == pytest.approx(0.35) and df.loc[0, "param.eps"] == 1.0
    assert "boom" in df.loc[1, "error"] and df.loc[0, "host"]
    m = store.metrics_frame("s")
    rows = {(r.step, r.name): r.value for r in m.itertuples()}
    assert rows[(10, "val_error")] == pytest.approx(0.4) and len(m[(m.step == 10) & (m.name == "val_error")]) == 1
    assert (20, "note") not in rows and rows[(20, "nan_metric")] is None or rows[(20, "nan_metric")] != rows[(20, "nan_metric")]
    assert store.final_metric(sid, "k1", "test_error") == pytest.approx(0.35)
    assert store.final_metric(sid, "k2", "test_error") is None


def test_interrupted_trials_are_failed_then_retried_and_complete_ones_never_rerun(storage_url):
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    tid = _trial(store, sid)
    store.report(tid, 5, {"val_error": 0.9})
    assert store.fail_interrupted(sid) == 1
    assert store.trial_statuses(sid) == {"k1": "FAILED"}
    again = _trial(store, sid)  # the retry reuses the row and drops the stale metrics
    assert again == tid and store.metrics_frame("s").empty
    store.finish_trial(tid, {"val_error": 0.1})
    with pytest.raises(RuntimeError, match="COMPLETE"):
        _trial(store, sid)
    assert store.trials_frame("s").loc[0, "attempts"] == 2


def test_store_pickles_without_a_live_engine(storage_url):
    store = Store(storage_url)
    store.get_or_create_study("s", {})
    clone = pickle.loads(pickle.dumps(store))
    assert clone._engine is None and clone.study_names() == ["s"]
