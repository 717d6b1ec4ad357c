"""optuna-dashboard (the package researchers already use) reads a vat-study store: the Optuna
study lives in the same database as vat-study's tables."""

import pytest

from helpers import optuna_dashboard, tiny
from vat_study.platform.executors import run_local
from vat_study.platform.spec import parse_spec


@pytest.mark.platform
def test_optuna_dashboard_lists_the_study_and_its_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    spec = tiny("tpe_dash", url, seeds=[0], search={"optuna": {"sampler": "tpe", "n_trials": 3, "seed": 1, "space": {
        "eps": {"type": "log_uniform", "low": 0.1, "high": 3.0}}}})
    assert run_local(parse_spec(spec), progress=False).ran == 3
    with optuna_dashboard(url) as get:
        names = {s["study_name"]: s["study_id"] for s in get("/api/studies")["study_summaries"]}
        assert "tpe_dash" in names, names
        trials = get(f"/api/studies/{names['tpe_dash']}")["trials"]
        assert len(trials) == 3 and all(t["state"] == "Complete" for t in trials), trials
        assert {p["name"] for t in trials for p in t["params"]} == {"eps"}
