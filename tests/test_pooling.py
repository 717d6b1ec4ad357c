"""Analyses say what they pooled: no figure or table averages across a varied search parameter it
does not plot (here: implementation variants and the learning rate), n is configurations x
seeds, and a continuous (Optuna) search is drawn as a scatter of its configurations."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from helpers import SEEDS, fill
from vat_study.analysis import curves, eps_alpha, grad_variance, k_ablation, tables
from vat_study.analysis.data import load, n_text, varied_params
from vat_study.analysis.report import Report, write_report

LEVEL = {True: 0.10, False: 0.04}  # lds_stochastic on / off: far apart, so any pooling shows


def _value(p, s):
    e = LEVEL[p["implementation.lds_stochastic"]] + 0.01 * p.get("eps", 1.0) + 0.001 * s \
        + 0.02 * (p.get("task.optimizer.lr", 0.002) > 0.002) + 0.003 * p.get("power_iterations", 1)
    curves_ = {st: {"val_error": e + 0.01 * (300 - st) / 100, "rvadv": e * (1 + p.get("power_iterations", 1)),
                    "grad_sd_norm_k0": 3 * e, "grad_sd_norm_k1": e} for st in (100, 200, 300)}
    return {"val_error": e, "test_error": e, "rvadv": e * (1 + p.get("power_iterations", 1))}, curves_


@pytest.fixture
def grid_store(tmp_path):
    """A grid over eps x implementation.lds_stochastic (x lr), and K x implementation at eps 2."""
    url = f"sqlite:///{tmp_path}/pool.db"
    points = [{"method": "vat", "eps": e, "implementation.lds_stochastic": impl, "task.optimizer.lr": lr}
              for e in (0.5, 1.0, 2.0) for impl in (True, False) for lr in (0.002, 0.004)]
    points += [{"method": "vat", "eps": 2.0, "implementation.lds_stochastic": impl, "power_iterations": k}
               for impl in (True, False) for k in (2, 4)]
    points += [{"method": "rpt", "eps": 2.0, "implementation.lds_stochastic": impl} for impl in (True, False)]
    truth = fill(url, "pool", points, _value,
                 spec_extra={"task": {"dataset": "digits", "steps": 300, "noise_sigma": 0.5},
                             "probes": {"grad_variance": {"every": 100}}})
    return url, truth


def _one_configuration_per_group(t: pd.DataFrame) -> None:
    assert (t["configurations"] == 1).all(), t[t["configurations"] > 1]
    assert (t["seeds"] == len(SEEDS)).all()


def test_fig3_keeps_implementations_and_learning_rates_apart(grid_store):
    url, truth = grid_store
    data = load(url, "pool")
    assert {c.removeprefix("param.") for c in varied_params(data.complete, ("eps",))} == \
        {"task.optimizer.lr", "power_iterations"}
    t = eps_alpha.compute(data)
    _one_configuration_per_group(t)
    assert {"vat", "vat (lds_stochastic=false)", "rpt", "rpt (lds_stochastic=false)"} <= set(t["method"])
    # a block that leaves a key out has the study's value (lr 0.002, K = 1), not a wildcard; RPT has no K
    assert set(t["setting"]) == {"task.optimizer.lr=0.002, power_iterations=1", "task.optimizer.lr=0.004, power_iterations=1",
                                 "task.optimizer.lr=0.002, power_iterations=2", "task.optimizer.lr=0.002, power_iterations=4",
                                 "task.optimizer.lr=0.002"}
    assert set(t[t["method"].str.startswith("rpt")]["setting"]) == {"task.optimizer.lr=0.002"}
    row = t[(t["method"] == "vat (lds_stochastic=false)") & (t["eps"] == 1.0)
            & (t["setting"] == "task.optimizer.lr=0.002, power_iterations=1")]
    assert len(row) == 1
    ref = truth[(truth["implementation.lds_stochastic"] == False) & (truth["eps"] == 1.0)  # noqa: E712
                & (truth["task.optimizer.lr"] == 0.002)]["val_error"].mean()
    assert row["mean"].iloc[0] == pytest.approx(ref)


def test_k_ablation_and_grad_variance_keep_implementations_apart(grid_store):
    url, _ = grid_store
    data = load(url, "pool")
    t6 = k_ablation.compute_table(data)
    assert set(t6["implementation"]) == {"", "lds_stochastic=false"}
    assert (t6["test_error_n"] == len(SEEDS)).all() and (t6["configurations"] == 1).all()
    off = t6[(t6["implementation"] == "lds_stochastic=false") & (t6["eps"] == 2.0)
             & (t6["setting"] == "task.optimizer.lr=0.002")]
    assert sorted(off["K"]) == [0, 1, 2, 4]
    assert set(t6["setting"]) == {"task.optimizer.lr=0.002"}  # lr 0.004 was run at K = 1 only: nothing to compare
    c = k_ablation.compute_curves(data)
    _one_configuration_per_group(c)
    g = grad_variance.compute(data)
    _one_configuration_per_group(g)
    assert g.groupby(["trained_with", "setting", "K", "step"]).size().max() == 1


def test_no_report_table_averages_across_implementations(grid_store, tmp_path):
    """Every table the report writes: a row's n never exceeds the seeds of one configuration."""
    url, _ = grid_store
    out, _ = write_report(url, "pool", tmp_path / "out")
    checked = 0
    for csv in sorted((tmp_path / "out").glob("*.csv")):
        t = pd.read_csv(csv)
        for col in [c for c in t.columns if c == "n" or c.endswith("_n") or c == "configurations"]:
            limit = 1 if col == "configurations" else len(SEEDS)
            assert (t[col].dropna() <= limit).all(), (csv.name, col, t[col].max())
            checked += 1
    assert checked >= 4
    text = out.read_text()
    assert re.search(r"1 configuration x 4 seeds", text)


def test_n_is_configurations_x_seeds():
    t = pd.DataFrame({"configurations": [1, 1], "seeds": [3, 4]})
    assert n_text(t) == "1 configuration x 3-4 seeds"


def test_continuous_search_is_a_scatter(grid_store, tmp_path):
    """An Optuna search over a continuous eps: Fig. 3 draws each configuration as a point."""
    url, _ = grid_store
    data = load(url, "pool")
    data.spec = {**data.spec, "search": {"optuna": {"space": {"eps": {"type": "log_uniform", "low": 0.1, "high": 10}}}}}
    r = Report(data, tmp_path / "o")
    (tmp_path / "o").mkdir()
    drawn = []
    orig = eps_alpha.draw_scatter
    eps_alpha.draw_scatter = lambda *a, **k: drawn.append(a) or orig(*a, **k)
    try:
        eps_alpha.section(r)
    finally:
        eps_alpha.draw_scatter = orig
    assert drawn and drawn[0][3] == {"eps": True, "alpha": False}
    assert (tmp_path / "o" / "fig3_eps_alpha.png").exists()


def test_best_configuration_tables_name_their_n(grid_store):
    url, _ = grid_store
    data = load(url, "pool")
    t = tables.methods_table(data)
    assert set(t["method"]) >= {"vat", "vat (lds_stochastic=false)", "rpt", "rpt (lds_stochastic=false)"}
    assert (t["n"] == len(SEEDS)).all()
    c = curves.compute(data)
    _one_configuration_per_group(c)


def test_a_setting_the_method_lacks_is_a_reference_in_each_level(tmp_path):
    """RPT has no xi: in a grid of RPT and VAT at two xi, RPT (K = 0) is the reference in each xi
    group of Fig. 4 / Table 6; VAT's xi levels stay apart, and a grid block that leaves xi out has
    the default (0.01), not a wildcard."""
    url = f"sqlite:///{tmp_path}/xi.db"
    level = {("rpt", None): 0.15, ("vat", 1e-6): 0.03, ("vat", 0.01): 0.05}
    fill(url, "xi", [{"method": "rpt"}, {"method": "vat", "xi": 1e-6}, {"method": "vat"},
                     {"method": "vat", "xi": 1e-6, "power_iterations": 2}],
         lambda p, s: ({"val_error": level[(p["method"], p.get("xi", 0.01 if p["method"] == "vat" else None))]
                        + 0.001 * s, "test_error": level[(p["method"], p.get("xi", 0.01 if p["method"] == "vat" else None))]
                        + 0.001 * s, "rvadv": 1.0}, {}),
         spec_extra={"method": {"name": "vat", "eps": 5.0}})
    t6 = k_ablation.compute_table(load(url, "xi")).set_index(["setting", "K"])["test_error_mean"]
    assert set(t6.index) == {("xi=1e-06", 0), ("xi=1e-06", 1), ("xi=1e-06", 2), ("xi=0.01", 0), ("xi=0.01", 1)}
    assert t6[("xi=1e-06", 0)] == t6[("xi=0.01", 0)] == pytest.approx(0.1515)
    assert t6[("xi=1e-06", 1)] == pytest.approx(0.0315) and t6[("xi=0.01", 1)] == pytest.approx(0.0515)
