"""`vat-study delete` and `vat-study rename` (vat_study.platform.store.manage), on SQLite and PostgreSQL:
each changes one study, both of its records (vat-study's and its Optuna twin), in one
transaction, and nothing else."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from helpers import fill
from vat_study.platform.cli import app
from vat_study.platform.store import DriverRow, FinalMetricRow, MetricRow, Store, TrialRow

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _two_studies(url):
    """Studies "a" and "b" (8 trials each with per-step and final metrics), each with an Optuna
    twin of two trials, and a finished driver's claim on "a"."""
    for name in ("a", "b"):
        fill(url, name, [{"eps": 1.0}, {"eps": 2.0}],
             lambda p, s: ({"val_error": 0.1 * p["eps"], "test_error": 0.2}, {10: {"val_error": 0.3}}))
        twin = optuna.create_study(study_name=name, storage=url)
        for v in (0.1, 0.2):
            twin.add_trial(optuna.trial.create_trial(value=v, params={"eps": v},
                                                     distributions={"eps": optuna.distributions.FloatDistribution(0, 1)},
                                                     intermediate_values={10: v}, user_attrs={"seeds": [0]}))
    store = Store(url)
    store.claims.register_driver(store.study_id("a"), "tok-a", "host", "machine", 1)
    store.claims.finish_driver("tok-a")
    return store


def _counts(store, name):
    """(trials, metric rows, final metric rows, drivers) of the study ``name`` (0s: gone)."""
    sid = store.study_id(name)
    with store.session() as s:
        ids = select(TrialRow.id).where(TrialRow.study_id == sid)
        return (s.scalar(select(func.count()).select_from(TrialRow).where(TrialRow.study_id == sid)),
                s.scalar(select(func.count()).select_from(MetricRow).where(MetricRow.trial_id.in_(ids))),
                s.scalar(select(func.count()).select_from(FinalMetricRow).where(FinalMetricRow.trial_id.in_(ids))),
                s.scalar(select(func.count()).select_from(DriverRow).where(DriverRow.study_id == sid)))


def _optuna_studies(url):
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage=url)}


def test_delete_removes_one_study_and_its_optuna_twin_and_nothing_else(storage_url):
    """Finding 3 of issue 31 (second half): a smoke run took a study's name in its store for
    good. Now `delete` removes it (asking first), and only it."""
    store = _two_studies(storage_url)
    b_before = _counts(store, "b")
    declined = CliRunner().invoke(app, ["delete", "a", "--storage", storage_url], input="n\n")
    assert declined.exit_code == 1 and "nothing deleted" in declined.output and store.study_id("a") is not None
    ok = CliRunner().invoke(app, ["delete", "a", "--storage", storage_url], input="y\n")
    assert ok.exit_code == 0, ok.output
    assert "8 trial(s) (8 COMPLETE)" in ok.output and "2 Optuna trial(s)" in ok.output
    assert store.study_names() == ["b"] and _counts(store, "b") == b_before
    with store.session() as s:  # nothing of "a" is left anywhere
        assert s.scalar(select(func.count()).select_from(TrialRow)) == b_before[0]
        assert s.scalar(select(func.count()).select_from(DriverRow)) == 0
    assert _optuna_studies(storage_url) == {"b": 2}
    assert len(optuna.load_study(study_name="b", storage=storage_url).trials[0].intermediate_values) == 1
    gone = CliRunner().invoke(app, ["delete", "a", "--storage", storage_url, "--yes"])
    assert gone.exit_code == 2 and "study 'a' is not in" in gone.output


def test_rename_moves_the_name_in_both_records(storage_url):
    store = _two_studies(storage_url)
    a_before = _counts(store, "a")
    taken = CliRunner().invoke(app, ["rename", "a", "b", "--storage", storage_url])
    assert taken.exit_code == 2 and "already has a study 'b'" in taken.output
    bad = CliRunner().invoke(app, ["rename", "a", "../x", "--storage", storage_url])
    assert bad.exit_code == 2 and "NEW '../x'" in bad.output
    ok = CliRunner().invoke(app, ["rename", "a", "smoke_50", "--storage", storage_url])
    assert ok.exit_code == 0, ok.output
    assert store.study_names() == ["smoke_50", "b"] and _counts(store, "smoke_50") == a_before
    assert store.study_spec("smoke_50")["name"] == "smoke_50"
    assert _optuna_studies(storage_url) == {"smoke_50": 2, "b": 2}


def test_one_transaction_and_no_change_under_a_live_driver(storage_url, monkeypatch):
    """A failure half-way (here: in the Optuna part) leaves both records as they were; a study a
    live driver is running is refused."""
    from vat_study.platform.store import manage

    store = _two_studies(storage_url)
    before = _counts(store, "a")

    def broken(conn, name):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(manage, "_delete_optuna", broken)
    with pytest.raises(RuntimeError):
        manage.delete_study(store, "a")
    assert _counts(store, "a") == before and _optuna_studies(storage_url) == {"a": 2, "b": 2}
    monkeypatch.undo()
    store.claims.register_driver(store.study_id("b"), "tok-b", "elsewhere", "m2", 4242)  # heartbeat: now
    for args in (["delete", "b", "--yes"], ["rename", "b", "c"]):
        r = CliRunner().invoke(app, [*args, "--storage", storage_url])
        assert r.exit_code == 2 and "being run now by 1 driver(s) (elsewhere pid 4242)" in r.output, r.output
    assert store.study_names() == ["a", "b"]
