"""Many trials writing at once, on SQLite and on PostgreSQL: no row lost, no "database is locked"."""

from __future__ import annotations

import multiprocessing as mp


from helpers import tiny
from vat_study.platform.executors import run_ray
from vat_study.platform.spec import parse_spec
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame

WRITERS, REPORTS, NAMES = 8, 60, 5


def _writer(url: str, study_id: int, i: int, barrier) -> str:
    store = Store(url)
    store.study_names()  # connect (and check the schema) before the race starts
    barrier.wait(timeout=60)
    lease = store.claims.claim_trial(study_id, key=f"k{i}", config_key="c", params={"i": i}, seed=i,
                                     config={"seed": i}, driver=f"writer{i}", seen=0)
    for step in range(1, REPORTS + 1):
        assert store.report(lease, step, {f"m{j}": i + step / 1000 + j for j in range(NAMES)})
    assert store.finish_trial(lease, {"val_error": i / 100})
    return "ok"


def test_eight_writers_at_once_lose_nothing(storage_url):
    store = Store(storage_url)
    sid = store.get_or_create_study("race", {})
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(storage_url, sid, i, barrier)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * WRITERS  # an exception (e.g. "database is locked") exits 1
    df = trials_frame(store, "race")
    assert len(df) == WRITERS and set(df.status) == {"COMPLETE"}
    m = metrics_frame(store, "race")
    assert len(m) == WRITERS * REPORTS * NAMES and not m.duplicated(["trial_id", "step", "name"]).any()
    by_trial = m.merge(df[["trial_id", "seed"]], on="trial_id")
    assert ((by_trial.value - by_trial.seed - by_trial.step / 1000).round(6).isin(range(NAMES))).all()


def test_eight_concurrent_ray_trials_record_every_step(storage_url):
    """The real path: 8 Ray workers at once (a quarter CPU each), every trial reporting at every step."""
    spec = tiny("ray8", storage_url, seeds=[0, 1, 2, 3],
                executor={"kind": "ray", "per_trial": {"cpu": 0.25}, "max_concurrent": 8},
                search={"grid": [{"method": ["vat"], "eps": [0.5, 2.0]}]})
    spec["task"].update(steps=25, eval_every=1)
    summary = run_ray(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (8, 0)
    store = Store(storage_url)
    df = trials_frame(store, "ray8")
    assert len(df) == 8 and set(df.status) == {"COMPLETE"}
    m = metrics_frame(store, "ray8")
    per_trial = m.groupby("trial_id")["step"].nunique()
    assert (per_trial == 25).all() and len(per_trial) == 8
    assert not m.duplicated(["trial_id", "step", "name"]).any()
    starts, ends = df.started_at, df.finished_at
    overlapping = max(((starts <= t) & (ends >= t)).sum() for t in starts)
    assert overlapping >= 4, "the trials did not actually run at the same time"
