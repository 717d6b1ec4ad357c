"""Every study is an Optuna study in the store's database, through Optuna's public API:
``optuna.load_study`` and optuna-dashboard read grid studies and searches alike, with every
evaluation as an intermediate value and the vat-study trials as user attributes; pruners act on
those values, pruned trials are PRUNED in both records and a rerun does not train them again."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import optuna_dashboard, tiny
from vat_study.platform.executors import run_local
from vat_study.platform.spec import SpecError, parse_spec
from vat_study.platform.store import Store
from vat_study.platform.results import trials_frame
from vat_study.platform.store.frames import metrics_frame

CLI = [sys.executable, "-m", "vat_study.platform.cli"]


def quick(storage: str, kind: str = "local") -> dict:
    """The quickstart's shape, tiny: baseline + rpt/vat over eps, 2 seeds, 3 evaluations."""
    spec = tiny("quick", storage, seeds=[0, 1], executor={"kind": kind, "per_trial": {"cpu": 1}},
                search={"grid": [{"method": ["baseline"]}, {"method": ["rpt", "vat"], "eps": [0.5, 2.0]}]})
    spec["task"].update(steps=30, eval_every=10)
    return spec


def check_grid_records(url: str, name: str = "quick") -> list:
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    df = trials_frame(Store(url), name)
    trials = study.get_trials()
    assert len(trials) == 5 and {t.state.name for t in trials} == {"COMPLETE"}  # one per configuration
    assert len({t.user_attrs["vat_config_key"] for t in trials}) == 5
    m = metrics_frame(Store(url), name)
    for t in trials:
        mine = df[df.trial_id.isin(t.user_attrs["vat_trial_ids"])]
        assert len(mine) == 2 and sorted(mine.seed) == t.user_attrs["seeds"] == [0, 1]
        assert set(mine.config_key) == {t.user_attrs["vat_config_key"]}
        assert t.value == pytest.approx(mine.val_error.mean())
        assert t.user_attrs["test_error"] == pytest.approx(mine.test_error.mean())
        assert t.user_attrs["rvadv"] == pytest.approx(mine.rvadv.mean())
        for seed, row in t.user_attrs["per_seed"].items():
            r = mine[mine.seed == int(seed)].iloc[0]
            assert row["vat_trial_id"] == r.trial_id and row["test_error"] == pytest.approx(r.test_error)
        curve = m[m.trial_id.isin(mine.trial_id) & (m.name == "val_error")].groupby("step").value.mean()
        assert sorted(t.intermediate_values) == [10, 20, 30]  # every evaluation
        for step, v in t.intermediate_values.items():
            assert v == pytest.approx(curve[step])
        assert t.params["method"] in ("baseline", "rpt", "vat")
    return trials


@pytest.mark.platform
def test_a_grid_study_run_through_the_cli_is_an_optuna_study(tmp_path):
    url = f"sqlite:///{tmp_path}/q.db"
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(quick(url)))
    run = subprocess.run(CLI + ["run", str(path), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    first = check_grid_records(url)
    again = subprocess.run(CLI + ["run", str(path), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Nothing new to train" in again.stdout, again.stdout
    assert [t.number for t in check_grid_records(url)] == [t.number for t in first]  # recorded once


def test_a_store_written_before_optuna_records_gets_them_on_the_next_run(tmp_path):
    """A grid study whose store has no Optuna study yet (written by an older vat-study): the next
    run trains nothing and records every configuration."""
    import optuna

    url = f"sqlite:///{tmp_path}/q.db"
    spec = parse_spec(quick(url))
    run_local(spec, progress=False)
    optuna.delete_study(study_name="quick", storage=url)
    summary = run_local(spec, progress=False)
    assert summary.ran == 0
    check_grid_records(url)


@pytest.mark.platform
def test_optuna_dashboard_serves_a_grid_study_with_its_curves(tmp_path):
    url = f"sqlite:///{tmp_path}/q.db"
    spec = quick(url)
    spec["search"]["grid"] = [{"method": ["vat"], "eps": [0.5, 2.0]}]
    run_local(parse_spec(spec), progress=False)
    with optuna_dashboard(url) as get:
        sid = {s["study_name"]: s["study_id"] for s in get("/api/studies")["study_summaries"]}["quick"]
        detail = get(f"/api/studies/{sid}")
        assert len(detail["trials"]) == 2
        for t in detail["trials"]:
            assert [v["step"] for v in t["intermediate_values"]] == [10, 20, 30]
            attrs = {a["key"] for a in t["user_attrs"]}
            assert {"test_error", "rvadv", "seeds", "vat_trial_ids", "per_seed", "lane_groups"} <= attrs


def pruned_search(url: str, pruner: str) -> dict:
    """8 configurations of one seed over a learning rate from hopeless to good: the median
    pruner (5 startup trials) stops the hopeless ones at an early evaluation."""
    spec = tiny("pruned", url, seeds=[0], search={"optuna": {
        "sampler": "random", "n_trials": 8, "seed": 0, "pruner": pruner,
        "space": {"optimizer.lr": {"type": "log_uniform", "low": 1e-6, "high": 3e-2}}}})
    spec["task"].update(steps=300, eval_every=20)
    return spec


@pytest.mark.platform  # about a minute each
@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruned_trials_are_pruned_in_both_records_and_a_rerun_does_not_train_them(tmp_path, monkeypatch, pruner):
    """A tiny trial trains its 300 updates in about the time of two of the reporter's half-second
    polls, so whether the pruner acts on it is a matter of timing: every evaluation is slowed (a
    failpoint) so that each trial outlasts several polls."""
    import optuna

    monkeypatch.setenv("VAT_STUDY_FAILPOINTS", "trial.report@*=sleep:0.25")
    url = f"sqlite:///{tmp_path}/p.db"
    spec = parse_spec(pruned_search(url, pruner))
    summary = run_local(spec, progress=False)
    assert summary.failed == 0
    study = optuna.load_study(study_name="pruned", storage=url)
    assert isinstance(study.pruner, optuna.pruners.BasePruner)
    states = [t.state.name for t in study.trials]
    assert len(states) == 8 and "PRUNED" in states and set(states) <= {"COMPLETE", "PRUNED"}, states
    df = trials_frame(Store(url), "pruned").set_index("optuna_number")
    for t in study.trials:
        row = df.loc[t.number]
        assert row.status == t.state.name  # the same in both records
        assert t.user_attrs["vat_trial_ids"] == [row.trial_id]
        if t.state.name == "PRUNED":  # stopped at its last reported evaluation, before the end
            assert max(t.intermediate_values) < 300 and row.finished_at is not None
    assert states[5] == states[7] == "PRUNED", states  # lr 1e-5 and 2e-6: at chance at every evaluation
    before = trials_frame(Store(url), "pruned")
    monkeypatch.delenv("VAT_STUDY_FAILPOINTS")
    again = run_local(spec, progress=False)
    assert again.ran == 0 and len(optuna.load_study(study_name="pruned", storage=url).trials) == 8
    after = trials_frame(Store(url), "pruned")
    assert (after.attempts.values == before.attempts.values).all()  # nothing trained again


def test_the_pruner_is_asked_at_every_evaluation_however_many_one_poll_finds(tmp_path):
    """A poll that finds evaluations 20 and 40 at once asks the pruner after each: at 20 this
    configuration is worse than the median of those finished (pruned), at 40 better (it would not
    be, asked only at its last one)."""
    import optuna

    from vat_study.platform.executors.search import _Reporter

    spec = parse_spec(pruned_search(f"sqlite:///{tmp_path}/p.db", "median"))
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner())
    for _ in range(5):
        done = study.ask()
        done.report(0.5, 20)
        done.report(0.9, 40)
        study.tell(done, 0.9)
    trial = study.ask()
    reporter = _Reporter(spec, None, 0, [(trial, {})])
    assert reporter.report(trial, {"intermediate": {40: 0.5, 20: 0.9}}, prune=True)
    assert not reporter.report(trial, {"intermediate": {40: 0.5, 20: 0.9}}, prune=True)  # 40: better
    assert study.trials[-1].intermediate_values == {20: 0.9, 40: 0.5}


def test_a_bad_pruner_is_refused_naming_the_field(tmp_path):
    spec = pruned_search(f"sqlite:///{tmp_path}/p.db", "asha")
    with pytest.raises(SpecError, match=r"search\.optuna\.pruner.*median.*hyperband"):
        parse_spec(spec)


def test_no_private_optuna_api_is_used():
    src = Path(__file__).parent.parent / "vat_study"
    for path in src.rglob("*.py"):
        text = path.read_text()
        if "optuna" not in text:
            continue
        for pattern in (r"\._storage\b", r"\._trial_id\b", r"\._study_id\b", r"optuna\.[a-z_.]*\._[a-z]"):
            assert not re.search(pattern, text), (path, pattern)
