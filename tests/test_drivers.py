"""Several drivers (``vat-study run`` processes) of one study on one store, at once: every trial
claimed and trained exactly once, every driver exits 0, and a RUNNING trial is only taken over
once its driver is dead (``vat_study.platform.store.claims``), on SQLite and PostgreSQL, local and Ray."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from helpers import tiny
from vat_study.platform.store import Store
from vat_study.platform.store.claims import Driver, machine
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame

pytestmark = pytest.mark.platform
CLI = [sys.executable, "-m", "vat_study.platform.cli"]


def _claim(store: Store, sid: int, driver: str, seen: int = 0, key: str = "k", stale_after: float = 60.0):
    return store.claims.claim_trial(sid, key=key, config_key="c", params={"eps": 1.0}, seed=0, config={"seed": 0},
                                    driver=driver, seen=seen, stale_after=stale_after)


def _racer(url: str, sid: int, i: int, seen: int, barrier, wins) -> None:
    store = Store(url)
    store.study_names()  # connect before the race
    store.claims.register_driver(sid, f"racer{i}-{seen}", "h", machine(), os.getpid())
    barrier.wait(timeout=60)
    if _claim(store, sid, f"racer{i}-{seen}", seen) is not None:
        wins.put(i)


def _race(url: str, sid: int, seen: int, n: int = 8) -> list[int]:
    ctx = mp.get_context("fork")
    barrier, wins = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(url, sid, i, seen, barrier, wins)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n
    out = []
    while not wins.empty():
        out.append(wins.get())
    return out


def test_exactly_one_of_eight_racing_drivers_claims_a_trial(storage_url):
    """A new trial (conditional INSERT) and a FAILED one (conditional UPDATE): one winner each."""
    store = Store(storage_url)
    sid = store.get_or_create_study("race", {})
    assert len(_race(storage_url, sid, seen=0)) == 1
    df = trials_frame(store, "race")
    assert len(df) == 1 and df.attempts.iloc[0] == 1 and df.driver.iloc[0].startswith("racer")
    store.claims.fail_running(sid, "boom", "error")
    assert len(_race(storage_url, sid, seen=1)) == 1
    df = trials_frame(store, "race")
    assert len(df) == 1 and df.attempts.iloc[0] == 2 and df.status.iloc[0] == "RUNNING"


def _study_racer(url: str, barrier, ids) -> None:
    store = Store(url)
    store.study_names()  # connect before the race
    barrier.wait(timeout=60)
    ids.put(store.get_or_create_study("new", {"n": 1}))


def test_racing_drivers_of_a_new_study_all_get_its_one_row(storage_url):
    """Drivers started at once on a study the store has not seen: one creates it, the others find
    it (on PostgreSQL the losers' INSERT used to raise an IntegrityError and exit 1)."""
    Store(storage_url).study_names()  # the schema exists before the race
    ctx = mp.get_context("fork")
    barrier, ids = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_study_racer, args=(storage_url, barrier, ids)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 8
    got = [ids.get(timeout=5) for _ in range(8)]
    assert len(set(got)) == 1 and Store(storage_url).study_names() == ["new"]


def test_a_live_drivers_trial_is_left_alone_until_its_heartbeat_is_stale(storage_url):
    """Driver A on another machine (its pid means nothing here) claims a trial and stops beating;
    B cannot claim or fail it until A's heartbeat is ``stale_after`` old, then takes it over once;
    A's lease is fenced off from then on."""
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    store.claims.register_driver(sid, "A", "far-away", "far-away/pid:[1]", 12345)
    store.claims.register_driver(sid, "B", "here", machine(), os.getpid())
    a = _claim(store, sid, "A")
    assert a is not None
    for _ in range(3):  # A beats: alive however long it runs
        time.sleep(0.4)
        assert store.claims.heartbeat("A")
        assert _claim(store, sid, "B", seen=1, stale_after=1.0) is None
        assert store.claims.fail_stale(sid, 1.0) == 0 and "A" not in store.claims.dead_drivers(sid, 1.0)
    assert store.report(a, 1, {"val_error": 0.5})
    time.sleep(1.3)  # A falls silent past stale_after
    assert "A" in store.claims.dead_drivers(sid, 1.0)
    assert _claim(store, sid, "B", seen=0, stale_after=1.0) is None  # seen is stale: B must look again
    b = _claim(store, sid, "B", seen=1, stale_after=1.0)
    assert b is not None and b.attempt == 2
    assert _claim(store, sid, "C", seen=1, stale_after=1.0) is None  # taken over once
    assert not store.report(a, 2, {"val_error": 0.9}) and not store.finish_trial(a, {"val_error": 0.9})
    assert metrics_frame(store, "s").empty  # the old attempt's metrics were dropped with the takeover
    assert store.finish_trial(b, {"val_error": 0.1})
    df = trials_frame(store, "s")
    assert (df.status.iloc[0], df.attempts.iloc[0], df.driver.iloc[0]) == ("COMPLETE", 2, "B")


def test_a_finished_driver_wins_no_claim(storage_url):
    """A run that ended (Ctrl-C) while a Ray worker of it still claims: the worker's claim is
    refused, so no trial is left RUNNING under a driver that has already marked its trials
    interrupted (seen in CI: the Ray Ctrl-C test left one trial RUNNING)."""
    store = Store(storage_url)
    sid = store.get_or_create_study("s", {})
    store.claims.register_driver(sid, "A", "here", machine(), os.getpid())
    assert _claim(store, sid, "A", key="before") is not None
    store.claims.finish_driver("A")
    assert _claim(store, sid, "A", key="after") is None
    store.claims.fail_running(sid, "interrupted", "interrupted", drivers=["A"])
    df = trials_frame(store, "s")
    assert list(df.key) == ["before"] and list(df.status) == ["FAILED"]


def test_a_driver_of_this_machine_whose_process_is_gone_is_dead_at_once(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    sid = store.get_or_create_study("s", {})
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    store.claims.register_driver(sid, "A", "here", machine(), gone.pid)
    assert _claim(store, sid, "A") is not None
    assert store.claims.dead_drivers(sid, 3600) == {"A"}
    assert store.claims.fail_stale(sid, 3600) == 1
    df = trials_frame(store, "s")
    assert df.failure_kind.iloc[0] == "interrupted" and f"pid {gone.pid}" in df.error.iloc[0]


def test_the_driver_thread_beats_and_an_exception_marks_its_own_trials_interrupted(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    sid = store.get_or_create_study("s", {})
    store.claims.register_driver(sid, "other", "far-away", "far-away/pid:[1]", 1)
    assert _claim(store, sid, "other", key="theirs") is not None
    with pytest.raises(KeyboardInterrupt):
        with Driver(store.claims, sid, heartbeat_every=0.1, stale_after=0.3) as d:
            assert _claim(store, sid, d.token, key="mine") is not None
            first = store.claims.drivers_frame(sid).set_index("token").loc[d.token, "heartbeat_at"]
            time.sleep(0.8)
            assert d.beats >= 3
            assert store.claims.drivers_frame(sid).set_index("token").loc[d.token, "heartbeat_at"] > first
            raise KeyboardInterrupt
    df = trials_frame(store, "s").set_index("key")
    assert df.loc["mine", "status"] == "FAILED" and "Ctrl-C" in df.loc["mine", "error"]
    assert df.loc["theirs", "status"] == "RUNNING"  # another driver's trial is never touched
    drivers = store.claims.drivers_frame(sid).set_index("token")
    assert drivers.loc[d.token, "finished_at"] is not None and d.token in store.claims.dead_drivers(sid, 3600)


# ----------------------------------------------------------------------------- drivers through the CLI


def grid_study(storage: str, kind: str, **executor) -> dict:
    """4 configurations x 2 seeds, 2 evaluations per trial."""
    spec = tiny("shared", storage, seeds=[0, 1],
                executor={"kind": kind, "per_trial": {"cpu": 1}, "heartbeat_every": 0.5, "stale_after": 10,
                          **executor},
                search={"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [0.5, 1.0, 2.0]}]})
    spec["task"].update(steps=30, eval_every=15)
    return spec


def start_drivers(tmp_path, spec: dict, n: int, env_extra=None) -> list[subprocess.Popen]:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, **(env_extra or {})}
    return [subprocess.Popen(CLI + ["run", str(path), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True, cwd=str(path.parent)) for _ in range(n)]


def finish(procs, timeout=600) -> list[tuple[int, str, str]]:
    out = []
    try:
        for p in procs:
            o, e = p.communicate(timeout=timeout)
            out.append((p.returncode, o, e))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    return out


def ran(stdout: str) -> int:
    m = re.search(r"Ran (\d+) \(0 failed\)", stdout)
    return int(m.group(1)) if m else 0


def assert_each_trial_once(url: str, results, trials: int, evaluations: int = 2) -> None:
    for rc, o, e in results:
        assert rc == 0, (o[-2000:], e[-3000:])
        assert "Traceback" not in e, e[-3000:]
    store = Store(url)
    df = trials_frame(store, "shared")
    assert len(df) == trials and df["key"].is_unique and set(df.status) == {"COMPLETE"}
    assert (df.attempts == 1).all(), df[["key", "attempts", "driver"]]  # trained once: no claim was ever taken twice
    assert sum(ran(o) for _, o, _ in results) == trials  # each driver's own count adds up to the study
    m = metrics_frame(store, "shared")
    assert not m.duplicated(["trial_id", "step", "name"]).any()
    assert (m[m.name == "val_error"].groupby("trial_id").size() == evaluations).all()
    drivers = store.claims.drivers_frame(int(store.study_id("shared")))
    assert len(drivers) == len(results) and drivers.finished_at.notna().all()
    assert set(df.driver) <= set(drivers.token)
    import optuna  # each configuration recorded once in the study's Optuna study, whichever driver saw it

    records = optuna.load_study(study_name="shared", storage=url).get_trials()
    assert len(records) == 4 and {t.user_attrs["vat_config_key"] for t in records} == set(df.config_key)


@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("n", [2, 4])
def test_local_drivers_at_once_train_every_trial_once(storage_url, tmp_path, n):
    results = finish(start_drivers(tmp_path, grid_study(storage_url, "local"), n))
    assert_each_trial_once(storage_url, results, trials=8)


@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"], indirect=True)
def test_two_ray_drivers_at_once_train_every_trial_once(storage_url, tmp_path):
    spec = grid_study(storage_url, "ray", max_concurrent=1)
    results = finish(start_drivers(tmp_path, spec, 2))
    assert_each_trial_once(storage_url, results, trials=8)


@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"], indirect=True)
def test_two_optuna_drivers_share_the_budget_and_every_trial_trains_once(storage_url, tmp_path):
    import optuna

    spec = grid_study(storage_url, "local")
    spec["search"] = {"optuna": {"sampler": "random", "n_trials": 4, "seed": 3,
                                 "space": {"eps": {"type": "log_uniform", "low": 0.1, "high": 3.0}}}}
    results = finish(start_drivers(tmp_path, spec, 2))
    for rc, o, e in results:
        assert rc == 0 and "Traceback" not in e, (o[-2000:], e[-3000:])
    df = trials_frame(Store(storage_url), "shared")
    assert len(df) == 8 and set(df.status) == {"COMPLETE"} and (df.attempts == 1).all()
    study = optuna.load_study(study_name="shared", storage=storage_url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 4 and len({t.params["eps"] for t in done}) == 4  # distinct points, the budget shared
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "FAIL"}
    assert all(t.user_attrs.get("vat_surplus") for t in study.trials if t.state.name == "FAIL")
    for t in done:
        assert t.value == pytest.approx(df[df["param.eps"] == t.params["eps"]]["val_error"].mean())


def _other_machine(cmd: list[str]) -> list[str]:
    """``cmd`` in a process namespace of its own: to this machine's drivers it is a driver on
    another machine (its pid means nothing here), like a SLURM job on another node."""
    return ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", '"$@"; true', "sh", *cmd]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs unshare (root) to put a driver in another process namespace")
def test_a_killed_drivers_trial_is_taken_over_only_once_its_heartbeat_is_stale(tmp_path):
    """Drivers A (as if on another machine) and B run together; A is killed with SIGKILL in its
    second trial. B trains the rest, leaves A's RUNNING trial alone while A's heartbeat is younger
    than stale_after, then takes it over once: the study completes, B exits 0. B starts once A has
    claimed a trial: started at the same moment on a loaded machine, B could train all 8 trials
    (a fraction of a second each) before A reached its second."""
    url = f"sqlite:///{tmp_path}/k.db"
    stale = 12.0
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(grid_study(url, "local", stale_after=stale)))
    run = CLI + ["run", str(path), "--no-progress"]
    a = subprocess.Popen(_other_machine(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "VAT_STUDY_FAILPOINTS": "trial.report@3=kill"}, start_new_session=True, cwd=str(path.parent))
    _wait_for_a_claim(tmp_path / "k.db", a)
    b = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=str(path.parent))
    (_, _, a_err), (b_rc, b_out, b_err) = finish([a, b])
    assert b_rc == 0 and "Traceback" not in b_err, (b_out[-2000:], b_err[-3000:])
    store = Store(url)
    drivers = store.claims.drivers_frame(int(store.study_id("shared"))).set_index("token")
    dead = drivers[drivers.finished_at.isna()]
    assert len(dead) == 1 and dead.machine.iloc[0] != machine(), a_err[-2000:]  # A: killed, never finished
    df = trials_frame(store, "shared").set_index("key")
    assert len(df) == 8 and set(df.status) == {"COMPLETE"}
    taken = df[df.attempts == 2]
    assert len(taken) == 1 and (df.drop(index=taken.index).attempts == 1).all()
    assert taken.driver.iloc[0] != dead.index[0]
    waited = taken.started_at.iloc[0] - dead.heartbeat_at.iloc[0]
    assert waited >= pd_seconds(stale - 0.5), waited  # not before A's heartbeat was stale
    assert ran(b_out) == (df.driver != dead.index[0]).sum()


def _wait_for_a_claim(db: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until the store at ``db`` has a trial (the first driver has claimed one) or ``proc`` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        exited = proc.poll() is not None  # looked at before the store: a claim made before it exited is seen
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as con:
                if con.execute("SELECT count(*) FROM vat_trials").fetchone()[0]:
                    return
        except sqlite3.Error:  # not created yet, or being migrated
            pass
        if exited:
            break
        time.sleep(0.1)
    raise AssertionError(f"the first driver claimed no trial (exit {proc.poll()})")


def pd_seconds(s: float):
    import pandas as pd

    return pd.Timedelta(seconds=s)
