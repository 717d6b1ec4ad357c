"""Store evolution: the schema has a version, older stores upgrade in place with their data, a
newer store is refused, and the migrated schema is exactly what the ORM models describe.

tests/data/store_v0_legacy.sql is a real store written by vat-study 0.1.0 (commit 7bc4299, before
schema versions existed): a grid study (3 complete trials, 1 failed, 1 left RUNNING by a kill) and
an Optuna study, with Optuna's own tables, dumped with sqlite3's iterdump (the file paths in its
traceback since rewritten to a neutral /opt/vat-study).
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from vat_study.platform.spec import SpecError
from vat_study.science.objective import resolve_config
from vat_study.platform.store import SCHEMA_REVISION, VERSION_TABLE, Base, Store, StoreError, make_engine, schema_revision
from vat_study.platform.results import trial_config, trials_frame
from vat_study.platform.store.frames import metrics_frame

LEGACY = Path(__file__).parent / "data" / "store_v0_legacy.sql"
TABLES = ("vat_studies", "vat_trials", "vat_metrics", "vat_final_metrics", "trials", "trial_values", "studies")


def legacy_store(tmp_path) -> tuple[str, Path]:
    path = tmp_path / "legacy.db"
    con = sqlite3.connect(path)
    con.executescript(LEGACY.read_text())
    con.close()
    return f"sqlite:///{path}", path


def counts(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        con.close()


def test_a_legacy_sqlite_store_is_upgraded_in_place_with_every_row_kept(tmp_path):
    url, path = legacy_store(tmp_path)
    before = counts(path)
    with sqlite3.connect(path) as con:
        old_metrics = con.execute("SELECT trial_id, step, name, value FROM vat_metrics ORDER BY id").fetchall()
    store = Store(url)
    df = trials_frame(store, "legacy_grid")  # the first use upgrades
    assert counts(path) == before  # no row lost: a table rebuild with foreign keys on would cascade-delete
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT trial_id, step, name, value FROM vat_metrics ORDER BY id").fetchall() == old_metrics
        assert con.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(SCHEMA_REVISION,)]
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0].startswith("v3")  # Optuna's own
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    assert sorted(df.status) == ["COMPLETE", "COMPLETE", "COMPLETE", "FAILED", "RUNNING"]
    failed = df[df.status == "FAILED"].iloc[0]
    assert failed.failure_kind == "error" and "not found" in failed.error  # filled in from the error text
    assert df.batch_group.isna().all()


def test_an_upgraded_legacy_study_continues_where_it_stopped(tmp_path):
    """The 0.1.0 study, rerun by this version: finished trials are kept, the one a kill left
    RUNNING is marked FAILED (interrupted) and trained again. (Its failed MNIST trial stays out:
    its data folder is empty, which the preflight now refuses before anything runs, so the rerun
    leaves that search point out.)"""
    from helpers import tiny
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import parse_spec

    url, _ = legacy_store(tmp_path)
    grid = [{"method": ["baseline"]}, {"method": ["vat"], "eps": [0.5, 1.0]}]
    spec = tiny("legacy_grid", url, seeds=[0], search={"grid": [*grid, {"dataset": ["mnist"]}]})
    spec["task"]["data_root"] = "/tmp/legacy/empty"  # as stored by the old run
    before = trials_frame(Store(url), "legacy_grid").set_index("key")
    with pytest.raises(SpecError, match="train-images-idx3-ubyte"):  # the old grid: refused, nothing written
        run_local(parse_spec(spec), progress=False)
    assert trials_frame(Store(url), "legacy_grid").set_index("key").status.equals(before.status)
    spec["search"] = {"grid": grid}
    summary = run_local(parse_spec(spec), progress=False)
    assert (summary.skipped, summary.ran, summary.failed, summary.interrupted_marked) == (3, 0, 0, 1)
    after = trials_frame(Store(url), "legacy_grid").set_index("key")
    done = before[before.status == "COMPLETE"].index
    assert (after.loc[done, "finished_at"] == before.loc[done, "finished_at"]).all()
    assert after.loc["deadbeefdeadbeef", "failure_kind"] == "interrupted"


def test_a_store_from_a_newer_version_is_refused_cleanly(tmp_path):
    url, path = legacy_store(tmp_path)
    Store(url).study_names()
    with sqlite3.connect(path) as con:
        con.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    with pytest.raises(StoreError, match="newer vat-study"):
        Store(url).study_names()
    r = subprocess.run([sys.executable, "-m", "vat_study.platform.cli", "status", "--storage", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "newer vat-study" in r.stderr and "Traceback" not in r.stderr


def _open_store(url: str) -> list[str]:
    return Store(url).study_names()


def test_concurrent_first_use_upgrades_once(tmp_path):
    url, path = legacy_store(tmp_path)
    before = counts(path)
    with mp.get_context("fork").Pool(4) as pool:
        names = pool.map(_open_store, [url] * 4)
    assert names == [["legacy_grid", "legacy_tpe"]] * 4
    assert counts(path) == before


def _schema_diff(url: str) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "include_object": lambda obj, name, type_, *a: type_ != "table" or name.startswith("vat_")
            and name != VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    return diff


def test_the_migrated_schema_is_what_the_models_describe(storage_url, tmp_path):
    """Upgrading from nothing (every migration in turn) and from the legacy store both end at
    exactly the ORM's tables, columns, indexes and constraints, on every backend."""
    Store(storage_url).study_names()
    assert _schema_diff(storage_url) == []
    url, _ = legacy_store(tmp_path)
    Store(url).study_names()
    assert _schema_diff(url) == []


def test_postgresql_upgrade_from_0001_keeps_data(pg_url):
    """On PostgreSQL: a store at revision 0001 with data in it, upgraded to the newest."""
    from alembic import command

    from vat_study.platform.store import _alembic_config

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(text("INSERT INTO vat_studies (id, name, spec, created_at, updated_at) "
                          "VALUES (1, 's', '{}', now(), now())"))
        conn.execute(text("INSERT INTO vat_trials (id, study_id, key, config_key, params, seed, config, status, "
                          "error, attempts, started_at, host, versions) VALUES "
                          "(1, 1, 'k', 'c', '{}', 0, '{}', 'FAILED', 'interrupted: killed', 1, now(), 'h', '{}'), "
                          "(2, 1, 'k2', 'c', '{}', 1, '{}', 'COMPLETE', NULL, 1, now(), 'h', '{}')"))
        conn.execute(text("INSERT INTO vat_metrics (trial_id, step, name, value) VALUES (2, 10, 'val_error', 0.25)"))
        assert schema_revision(conn) == "0001"
    engine.dispose()
    store = Store(pg_url)
    df = trials_frame(store, "s").set_index("key")
    assert df.loc["k", "failure_kind"] == "interrupted" and df.loc["k2", "status"] == "COMPLETE"
    assert metrics_frame(store, "s")["value"].tolist() == [0.25]
    with store.engine.connect() as conn:
        assert schema_revision(conn) == SCHEMA_REVISION
        assert "batch_group" in {c["name"] for c in inspect(conn).get_columns("vat_trials")}
    assert _schema_diff(pg_url) == []


# --------------------------------------------------------- stores written with flat trial configs

FLAT = Path(__file__).parent / "data" / "store_flat_configs.sql"
FLAT_SPEC = Path(__file__).parent / "data" / "store_flat_configs_spec.json"
"""A store written at commit 03754db, the last with flat trial configs ({"method": "vat", "eps":
1.0, "steps": 6, ...}): 14 trials of a grid over baseline / rpt / vat / at_l2, eps, steps and
implementation.lds_stochastic, trained as lanes; its study file kept ``implementation`` under task."""


def _flat_store(tmp_path) -> tuple[str, dict]:
    import json

    path = tmp_path / "flat.db"
    con = sqlite3.connect(path)
    con.executescript(FLAT.read_text())
    con.close()
    url = f"sqlite:///{path}"
    return url, {**json.loads(FLAT_SPEC.read_text()), "storage": url}


def test_a_store_with_flat_configs_reads_in_todays_vocabulary(tmp_path):
    url, _ = _flat_store(tmp_path)
    store = Store(url)
    df = trials_frame(store, "flat_grid")
    assert len(df) == 14 and (df.status == "COMPLETE").all()
    assert sorted(df.method.unique()) == ["at_l2", "baseline", "rpt", "vat"]
    assert df[df.method == "baseline"].eps.isna().all()  # eps is no setting of baseline
    assert sorted(df[df.method == "rpt"].eps.unique()) == [0.5, 2.0]
    assert df[df.method == "rpt"].power_iterations.isna().all()  # RPT has no K
    assert set(df[df.method == "vat"]["implementation.lds_stochastic"]) == {True, False}
    assert set(df[df.method == "at_l2"].steps) == {4}
    config = trial_config(store, int(df.trial_id.iloc[0]))
    assert set(config) == {"task", "method", "probes", "seed", "seeds", "model_path"}
    resolve_config(config)  # a valid config of today


def test_a_study_stored_with_flat_configs_resumes_without_retraining(tmp_path):
    """The old study, resumed by this version: nothing is refused as edited and nothing retrains,
    once its file moves ``implementation`` from task to method (the old file is refused with a
    message saying where it goes). Grown by one grid point, only the new trials train."""
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import SpecError, parse_spec

    url, spec = _flat_store(tmp_path)
    with pytest.raises(SpecError, match=r"task\.implementation: a setting of the method.*method\.implementation"):
        parse_spec(spec)
    spec["method"]["implementation"] = spec["task"].pop("implementation")
    # vat-study 0.3 changed the pass modes' defaults: the old trials ran with 0.2's, so the file
    # must say so to resume (refused otherwise, naming the setting that changed)
    with pytest.raises(SpecError, match=r"method\.implementation: stored \{'clean_stochastic': False"):
        run_local(parse_spec(spec), progress=False)
    spec["method"]["implementation"].update(clean_stochastic=False, power_iteration_stochastic=False)
    before = trials_frame(Store(url), "flat_grid").set_index("key")
    summary = run_local(parse_spec(spec), progress=False)
    assert (summary.skipped, summary.ran, summary.failed) == (14, 0, 0)
    spec["search"]["grid"].append({"method": ["vat"], "eps": [3.0]})
    summary = run_local(parse_spec(spec), progress=False)
    assert (summary.skipped, summary.ran, summary.failed) == (14, 2, 0)
    after = trials_frame(Store(url), "flat_grid").set_index("key")
    assert (after.loc[before.index, "finished_at"] == before["finished_at"]).all()
    new = after.drop(before.index)
    assert (new.eps == 3.0).all() and (new.method == "vat").all()
    # an edit that changes what a finished trial ran with is still refused
    spec["method"]["alpha"] = 0.5
    with pytest.raises(SpecError, match=r"method\.alpha: 1\.0 in the stored study 'flat_grid', 0\.5 in this file"):
        run_local(parse_spec(spec), progress=False)
