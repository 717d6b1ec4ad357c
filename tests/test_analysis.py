"""Analyses on a store filled with known numbers: every statistic is checked against
pandas/scipy computed directly on the same rows; the report never crashes."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import SEEDS, a_trial_the_grid_no_longer_holds, fill
from vat_study.analysis import compare, eps_alpha, grad_variance, k_ablation, tables
from vat_study.analysis.data import holm, load
from vat_study.analysis.report import write_report
from vat_study.platform.provenance import run_provenance
from vat_study.platform.spec import parse_spec
from vat_study.platform.store import Store

rng = np.random.default_rng(0)


def test_fig3_means_and_sds_match_pandas(tmp_path):
    url = f"sqlite:///{tmp_path}/a.db"
    pts = [{"eps": e, "alpha": 1.0} for e in (0.1, 1.0, 3.0)] + [{"eps": 1.0, "alpha": a} for a in (0.3, 3.0)]
    truth = fill(url, "fig3", pts, lambda p, s: ({"val_error": 0.1 * p["eps"] + 0.01 * s + 0.02 * p["alpha"],
                                                    "test_error": 0.2}, {}))
    got = eps_alpha.compute(load(url, "fig3"))
    ref = truth.groupby(["alpha", "eps"])["val_error"].agg(["mean", "std", "count"]).reset_index()
    merged = got.merge(ref, on=["alpha", "eps"])
    assert len(merged) == 5
    np.testing.assert_allclose(merged["mean_x"], merged["mean_y"])
    np.testing.assert_allclose(merged["sd"], merged["std"])
    assert (merged["n"] == 4).all()


def test_paired_comparison_matches_scipy_and_holm(tmp_path):
    url = f"sqlite:///{tmp_path}/b.db"
    noise = {s: rng.normal(0, 0.01) for s in SEEDS}
    pts = [{"method": "rpt", "eps": 1.0}, {"method": "rpt", "eps": 3.0},
           {"method": "vat", "eps": 0.5}, {"method": "vat", "eps": 1.0}, {"method": "vat", "eps": 2.0}]

    def value(p, s):
        shift = {"rpt": 0.05, "vat": 0.02}[p["method"]] + 0.01 * abs(p["eps"] - 1.0)
        err = 0.10 + shift + noise[s] + 0.003 * s * (p["method"] == "vat")
        return {"val_error": err, "test_error": err + 0.001}, {}

    truth = fill(url, "cmp", pts, value)
    data = load(url, "cmp")
    per_seed, s = compare.compute_pair(data, "rpt", "vat")
    a = truth[(truth.method == "rpt") & (truth.eps == 1.0)].sort_values("seed")["test_error"].values
    b = truth[(truth.method == "vat") & (truth.eps == 1.0)].sort_values("seed")["test_error"].values
    np.testing.assert_allclose(per_seed["rpt"], a)
    np.testing.assert_allclose(per_seed["diff"], b - a)
    t = stats.ttest_rel(b, a)
    assert s["p"] == pytest.approx(t.pvalue) and s["t"] == pytest.approx(t.statistic)
    d = b - a
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    grid = compare.compute_grid(data, "rpt", "vat")
    assert list(grid["eps"]) == [0.5, 1.0, 2.0]
    ps = [stats.ttest_rel(truth[(truth.method == "vat") & (truth.eps == e)].sort_values("seed")["test_error"].values, a).pvalue
          for e in (0.5, 1.0, 2.0)]
    np.testing.assert_allclose(grid["p"], ps)
    np.testing.assert_allclose(grid["p_holm"], holm(ps))


def test_holm_against_a_hand_computed_case():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_k_ablation_table_and_curves(tmp_path):
    url = f"sqlite:///{tmp_path}/k.db"
    pts = [{"power_iterations": k} for k in (0, 1, 2)]

    def value(p, s):
        k = p["power_iterations"]
        curves = {step: {"rvadv": 0.1 * k + 0.001 * step + 0.01 * s} for step in (10, 20, 30)}
        return {"test_error": 0.05 - 0.01 * min(k, 1) + 0.001 * s, "rvadv": 0.1 * k + 0.03 + 0.01 * s}, curves

    truth = fill(url, "kab", pts, value, {"method": {"name": "vat", "eps": 2.0}})
    data = load(url, "kab")
    t6 = k_ablation.compute_table(data)
    ref = truth.groupby("power_iterations")["test_error"].agg(["mean", "std"])
    np.testing.assert_allclose(t6["test_error_mean"], ref["mean"].values)
    np.testing.assert_allclose(t6["test_error_sd"], ref["std"].values)
    c = k_ablation.compute_curves(data)
    got = c[(c.K == 2) & (c.step == 20)].iloc[0]
    assert got["mean"] == pytest.approx(0.2 + 0.02 + 0.015) and got["n"] == 4


def test_grad_variance_curves(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    fill(url, "gv", [{"eps": 1.0}], lambda p, s: ({"test_error": 0.1}, {
        st: {"grad_sd_norm_k0": 3.0 + s, "grad_sd_norm_k1": 1.0 + 0.5 * s} for st in (50, 100)}))
    t = grad_variance.compute(load(url, "gv"))
    k0 = t[(t.K == 0) & (t.step == 50)].iloc[0]
    assert k0["mean"] == pytest.approx(np.mean([3, 4, 5, 6])) and k0["sd"] == pytest.approx(np.std([3, 4, 5, 6], ddof=1))
    # Fig. 7a's verdict, computed: K = 1 - K = 0 paired by seed is -2 - 0.5 s, so below at both steps
    gap = grad_variance.k_gap(load(url, "gv"))
    d = np.array([-2 - 0.5 * s for s in SEEDS])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    row = gap[gap.step == 50].iloc[0]
    np.testing.assert_allclose([row.k1_minus_k0, row.ci_high], [d.mean(), d.mean() + half])
    line, = grad_variance.verdict(gap)
    assert line.startswith("- Fig. 7a: agrees") and "at 2 of 2 measured steps" in line, line
    fill(url, "gv_up", [{"eps": 1.0}], lambda p, s: ({"test_error": 0.1}, {
        st: {"grad_sd_norm_k0": 1.0 + s, "grad_sd_norm_k1": 3.0 + 1.1 * s} for st in (50, 100)}))
    line, = grad_variance.verdict(grad_variance.k_gap(load(url, "gv_up")))
    assert line.startswith("- Fig. 7a: does not agree") and "above at 2" in line, line


def test_methods_table_picks_each_methods_best_config_by_validation(tmp_path):
    url = f"sqlite:///{tmp_path}/m.db"
    pts = [{"method": "baseline"}, {"method": "vat", "eps": 0.5}, {"method": "vat", "eps": 2.0}]

    def value(p, s):
        val = {"baseline": 0.3, "vat": 0.2 if p.get("eps") == 2.0 else 0.25}[p["method"]]
        return {"val_error": val, "test_error": val + 0.01 * s}, {}

    fill(url, "tab", pts, value)
    t = tables.methods_table(load(url, "tab"))
    vat = t[t.method == "vat"].iloc[0]
    assert "eps=2.0" in vat["best_config"] and vat["test_error_mean"] == pytest.approx(0.2 + 0.015)


def test_report_never_crashes_and_skips_with_reasons(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    fill(url, "one", [{"eps": 1.0}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
    path, skipped = write_report(url, "one", tmp_path / "out")
    text = path.read_text()
    assert all(reason for _, reason in skipped)
    assert not any("could not be computed" in r for _, r in skipped), skipped
    assert text.rstrip().splitlines()[-1].startswith("- Not drawn, as the study does not vary or measure what they show")
    assert "## Not in this report" in text and (tmp_path / "out" / "best_per_method.csv").exists()
    # an empty study (no trials yet) still gives a report
    Store(url).get_or_create_study("empty", {"name": "empty"})
    path, skipped = write_report(url, "empty", tmp_path / "empty")
    assert path.exists() and skipped and all(r == "no complete trials yet" for _, r in skipped[:7])


def test_a_rerun_removes_what_an_earlier_report_wrote_and_this_one_does_not(tmp_path):
    """The report owns only the files it writes (``MANIFEST``): a comparison the second report no
    longer makes is gone, the hand-written notes and any other file in the folder stay."""
    from vat_study.analysis.report import MANIFEST

    url, out = f"sqlite:///{tmp_path}/r.db", tmp_path / "out"
    fill(url, "two", [{"method": "rpt"}, {"method": "vat"}],
         lambda p, s: ({"val_error": 0.1 + s / 100, "test_error": 0.1 + s / 100 + (p["method"] == "rpt") / 50}, {}))
    fill(url, "one", [{"method": "vat"}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1 + s / 100}, {}))
    write_report(url, "two", out)
    first = set((out / MANIFEST).read_text().split())
    compared = {n for n in first if n.startswith("comparisons")}
    assert compared and all((out / n).exists() for n in first)
    (out / "PAPER.md").write_text("## Notes\n\nmine\n")
    (out / "COMMAND.txt").write_text("vat-study run ...\n")
    write_report(url, "one", out)
    second = set((out / MANIFEST).read_text().split())
    assert not compared & second
    assert not any((out / n).exists() for n in first - second)  # stale artifacts removed
    assert all((out / n).exists() for n in second)
    assert (out / "PAPER.md").read_text() == "## Notes\n\nmine\n" and (out / "COMMAND.txt").exists()
    assert "mine" in (out / "report.md").read_text()


def test_a_failed_trial_the_grid_no_longer_holds_is_not_promised_a_rerun(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    store, wide, narrow, lease = a_trial_the_grid_no_longer_holds(url)
    text = write_report(url, "g", tmp_path / "wide")[0].read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"- trial {lease.trial_id} "))
    assert "no longer in the study's search" not in line  # the grid still holds it: run redoes it
    # the study file narrowed, stored as vat-study run stores it (with its provenance beside it),
    # read where the run's files and trackers are not (what the run checked is not the report's business)
    stored = narrow.model_dump(mode="json")
    stored["task"]["idx_paths"] = {"train_images": str(tmp_path / "gone.idx")}
    stored["tracking"] = {"wandb": "a-project-on-another-machine"}
    store.get_or_create_study("g", {**stored, "provenance": run_provenance()})
    text = write_report(url, "g", tmp_path / "narrow")[0].read_text()
    line = next(x for x in text.splitlines() if x.startswith(f"- trial {lease.trial_id} "))
    assert line.endswith("no longer in the study's search, so not redone")
    assert "interrupted: interrupted" not in line and ": FAILED, interrupted: stopped by the user" in line


def test_saved_model_figures_fig1_fig5_fig6(tmp_path, monkeypatch):
    """A tiny study with save_models: the model-based figures use the weights training saved."""
    import torch

    from vat_study.analysis import examples
    from vat_study.platform.executors import run_local

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/s.db"
    task = {"dataset": "digits", "hidden": [32], "steps": 60, "eval_every": 30, "batch": {"labeled": 32, "unlabeled": 64}}
    spec = parse_spec({"name": "saved", "task": task, "seeds": [0, 1], "storage": url, "save_models": True,
                       "probes": {"rvadv": {"size": 50}}, "executor": {"kind": "local"},
                       "search": {"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [0.5, 2.0]}]}})
    assert run_local(spec, progress=False).failed == 0
    data = load(url, "saved")
    assert all(Path(p).is_file() for p in data.trials["model_path"])
    state = torch.load(data.trials["model_path"].iloc[0], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())

    t = examples.compute_fig6(data, eps_grid=np.array([1e-4, 0.5, 3.0]))
    assert set(t["generated_by"]) == {"w/ VAT", "wo/ VAT"} and t["rate"].between(0, 1).all()
    assert (t[t.eps == 1e-4]["rate"] == 0).all()  # images both models get right stay right
    f5 = examples.compute_fig5(data, n_images=3)
    assert [e for e, _ in f5.rows] == [0.5, 2.0] and f5.clean.shape == (3, 8, 8)
    with pytest.raises(examples.Skip, match="moons"):
        examples.compute_fig1(data)

    moons = parse_spec({"name": "m", "task": {"dataset": "moons", "n_labeled": 8, "validation": 100, "steps": 50,
                                             "batch": {"labeled": 8, "unlabeled": 64}, "eval_every": 50},
                        "seeds": [0], "storage": url, "save_models": True, "executor": {"kind": "local"},
                        "probes": {"rvadv": {"eps": 0.2, "size": 50}},
                        "search": {"grid": [{"method": ["baseline", "vat"], "eps": [0.2]}]}})
    assert run_local(moons, progress=False).failed == 0
    f1 = examples.compute_fig1(load(url, "m"))
    assert len(f1.panels) == 2 and f1.x.shape == (900, 2) and len(f1.labeled) == 8
    assert all(((p >= 0) & (p <= 1)).all() and (l >= -1e-6).all() for _, p, l in f1.panels)
    path, skipped = write_report(url, "m", tmp_path / "rep")
    assert (tmp_path / "rep" / "fig1_moons.png").exists(), skipped


def test_implementation_choices_pair_each_choice_with_its_centre_and_vat_with_rpt(tmp_path):
    from vat_study.analysis import choices

    url = f"sqlite:///{tmp_path}/choices.db"
    noise = {s: rng.normal(0, 0.01) for s in SEEDS}
    effect = {"rpt": 0.03, "vat": 0.0}  # lds_stochastic=False: RPT 3 points worse, VAT unchanged
    pts = [{"method": "rpt"}, {"method": "vat"},
           {"method": "rpt", "implementation.lds_stochastic": False},
           {"method": "vat", "implementation.lds_stochastic": False},
           {"method": "vat", "xi": 1e-6},
           {"method": "vat", "xi": 1e-6, "eps": 2.0},  # eps is not a choice: a second point of xi=1e-06
           {"method": "vat", "xi": 1e-6, "implementation.bn": "running"},  # two changes: left out
           {"method": "baseline", "task.eval_bn": "recompute"}, {"method": "baseline"}]

    def value(p, s):
        base = {"rpt": 0.04, "vat": 0.06, "baseline": 0.20}[p["method"]] + (0.05 if "task.eval_bn" in p else 0)
        base = base + noise[s] + (0.002 * s if p["method"] == "vat" else 0)
        if "implementation.lds_stochastic" in p:  # (not the same in every seed: a paired test needs spread)
            base += effect[p["method"]] + 0.001 * (s % 2)
        if "xi" in p:
            base += 0.01 + 0.001 * s + (0.005 if "eps" in p else 0)
        return {"val_error": base, "test_error": base, "rvadv": 1.0, "rvadv_train": 2.0}, {}

    truth = fill(url, "choices", pts, value)
    effects, gaps = choices.compute(load(url, "choices"))
    assert sorted(effects["choice"].unique()) == ["centre", "lds_stochastic=False", "task.eval_bn=recompute", "xi=1e-06"]
    # the figure's reference line: the baseline centre, not its variant stored first
    np.testing.assert_allclose(choices.baseline_reference(effects), 0.20 + np.mean([noise[s] for s in SEEDS]))
    row = effects[(effects.method == "rpt") & (effects.choice == "lds_stochastic=False")].iloc[0]
    a = truth[(truth.method == "rpt") & truth["implementation.lds_stochastic"].isna()].sort_values("seed")
    b = truth[(truth.method == "rpt") & (truth["implementation.lds_stochastic"] == False)].sort_values("seed")  # noqa: E712
    diff = b["test_error"].to_numpy() - a["test_error"].to_numpy()
    t = stats.ttest_rel(b["test_error"], a["test_error"])
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    np.testing.assert_allclose([row.vs_centre_mean_diff, row.vs_centre_ci_high, row.vs_centre_p],
                               [diff.mean(), diff.mean() + half, t.pvalue])
    assert row.rvadv_train_final == 2.0
    # panel (a)'s bars: the 95 % t half-width over seeds, not the SD
    vals = b["test_error"].to_numpy()
    np.testing.assert_allclose(row.test_error_ci, stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals)))
    g = gaps.set_index("choice")
    np.testing.assert_allclose(g.loc["centre", "vat_minus_rpt_mean_diff"], 0.02 + 0.002 * np.mean(SEEDS))
    np.testing.assert_allclose(g.loc["lds_stochastic=False", "vat_minus_rpt_mean_diff"], -0.01 + 0.002 * np.mean(SEEDS))
    # xi only shapes the power iteration: RPT's centre stands in; VAT at its better eps (the default one)
    np.testing.assert_allclose(g.loc["xi=1e-06", "vat_minus_rpt_mean_diff"], 0.02 + 0.01 + 0.003 * np.mean(SEEDS))
    assert g.loc["xi=1e-06", "vat_eps"] == 1.0 and len(effects[effects.choice == "xi=1e-06"]) == 2
    report, skipped = write_report(url, "choices", tmp_path / "rep")
    assert "Implementation choices, one at a time" not in dict(skipped)
    assert (tmp_path / "rep" / "implementation_choices.png").is_file()


def test_table3_picks_eps_on_validation_and_sets_the_papers_values_beside(tmp_path):
    from vat_study.analysis import tables

    url = f"sqlite:///{tmp_path}/t3.db"
    pts = [{"method": "baseline"}, {"method": "rpt", "eps": 2.0}, {"method": "rpt", "eps": 5.0},
           {"method": "vat", "eps": 1.0}, {"method": "vat", "eps": 2.0}]
    val = {("baseline", None): 0.20, ("rpt", 2.0): 0.08, ("rpt", 5.0): 0.06, ("vat", 1.0): 0.03, ("vat", 2.0): 0.05}
    test = {("baseline", None): 0.21, ("rpt", 2.0): 0.07, ("rpt", 5.0): 0.065, ("vat", 1.0): 0.04, ("vat", 2.0): 0.01}
    truth = fill(url, "t3", pts, lambda p, s: ({"val_error": val[(p["method"], p.get("eps"))] + 0.001 * s,
                                                "test_error": test[(p["method"], p.get("eps"))] + 0.002 * s}, {}),
                 spec_extra={"task": {"dataset": "mnist", "mode": "semi_supervised", "n_labeled": 100, "steps": 100}})
    t = tables.table3(load(url, "t3")).set_index("method")
    assert t.loc["vat", "eps"] == 1.0 and t.loc["rpt", "eps"] == 5.0  # by validation, not by test error
    np.testing.assert_allclose(t.loc["vat", "test_error_mean"], 100 * (0.04 + 0.002 * np.mean(SEEDS)))
    np.testing.assert_allclose(t.loc["rpt", "test_error_sd"], 100 * np.std([0.002 * s for s in SEEDS], ddof=1))
    assert (t.loc["vat", "paper_test_error"], t.loc["rpt", "paper_test_error"]) == (1.36, 6.81)
    assert np.isnan(t.loc["baseline", "paper_test_error"]) and t.loc["vat", "n_seeds"] == len(SEEDS)
    assert set(truth["method"]) == {"baseline", "rpt", "vat"}
    with pytest.raises(Exception, match="Table 3"):
        fill(f"sqlite:///{tmp_path}/d.db", "d", [{"method": "vat"}], lambda p, s: ({"val_error": 0.1, "test_error": 0.1}, {}))
        tables.table3(load(f"sqlite:///{tmp_path}/d.db", "d"))


@pytest.mark.parametrize("pair, mode", [(["rpt", "vat"], "min"), (["vat", "rpt"], "min"), (["rpt", "vat"], "max")])
def test_table3_of_a_sequential_study_chooses_on_the_first_look_and_carries_its_decision(tmp_path, pair, mode):
    """With a ``sequential:`` block, seeds 3 and 4 are added to the chosen configurations only:
    adding them must not change which eps was chosen (VAT eps 1 stays chosen although its mean
    validation error over all 5 seeds is worse than eps 2's over 3; eps 0.5, better on the two
    seeds it finished, is not a candidate without its third), and table3.csv and "Against the
    paper" carry the sequential decision and its repeated CI, never a fixed-n t-test, whichever
    way round the pair is written and whichever way its metric is better."""
    from helpers import claim
    from vat_study.analysis import paper
    from vat_study.platform import group_sequential as gs
    from vat_study.platform.spec import PlannedTrial

    url = f"sqlite:///{tmp_path}/seq.db"
    spec = parse_spec({"name": "seq", "seeds": [0, 1, 2],
                       "task": {"dataset": "mnist", "mode": "semi_supervised", "n_labeled": 100, "steps": 100},
                       "search": {"grid": [{"method": ["vat"], "eps": [0.5, 1.0, 2.0]},
                                           {"method": ["rpt"], "eps": [2.0, 5.0]}]},
                       "sequential": {"compare": [pair], "max_seeds": 5, "batch": 2, "metric": "test_error",
                                      "mode": mode}})
    val = {("vat", 0.5): [0.01, 0.01], ("vat", 1.0): [0.03, 0.03, 0.03, 0.20, 0.20], ("vat", 2.0): [0.05] * 3,
           ("rpt", 2.0): [0.09] * 3, ("rpt", 5.0): [0.07] * 5}
    test = {("vat", 0.5): [0.5, 0.5], ("vat", 1.0): [0.020, 0.060, 0.025, 0.021, 0.024], ("vat", 2.0): [0.05] * 3,
            ("rpt", 2.0): [0.09] * 3, ("rpt", 5.0): [0.060, 0.070, 0.065, 0.063, 0.066]}
    store = Store(url)
    sid = store.get_or_create_study("seq", spec.model_dump(mode="json"))
    for p in spec.configurations():
        for seed, (v, t) in enumerate(zip(val[(p["method"], p["eps"])], test[(p["method"], p["eps"])])):
            store.finish_trial(claim(store, sid, PlannedTrial.make(spec, p, seed)), {"val_error": v, "test_error": t})
    data = load(url, "seq")
    t = tables.table3(data).set_index("method")
    assert t.loc["vat", "eps"] == 1.0 and t.loc["rpt", "eps"] == 5.0  # chosen on seeds 0-2, as the rule chose
    assert t.loc["vat", "n_seeds"] == 5 and t.loc["vat", "eps_grid"] == "0.5 1 2" and not t.loc["vat", "eps_at_grid_edge"]
    assert t.loc["rpt", "eps_grid"] == "2 5" and t.loc["rpt", "eps_at_grid_edge"]
    a, b = pair
    diffs = [x - y for x, y in zip(test[(b, 1.0 if b == "vat" else 5.0)], test[(a, 1.0 if a == "vat" else 5.0)])]
    out = gs.decide(diffs, gs.Design(3, 5, 2, 0.05), mode)
    assert len(out.looks) == 2 and t.loc[b, "sequential_n_seeds"] == 5 and t.loc[b, "sequential_vs"] == a
    np.testing.assert_allclose(t.loc[b, ["sequential_diff", "sequential_rci_low", "sequential_rci_high"]].astype(float),
                               [100 * out.looks[-1].mean_diff, 100 * out.looks[-1].ci_low, 100 * out.looks[-1].ci_high])
    assert t.loc[b, "sequential_decision"] == gs.describe(out, a, b)
    assert pd.isna(t.loc[a, "sequential_vs"])
    block = {"source": "Table 3", "orderings": [{"lower": "vat", "higher": "rpt"}]}
    (line,) = paper.compute(data, block)[1]
    assert "n = 5 after 2 look(s) of the study's sequential test" in line and "repeated" in line, line
    d = 100 * out.looks[-1].mean_diff * (1 if b == "vat" else -1)  # the line shows vat - rpt
    assert f"{d:+.2f} points" in line and d < 0
    decided = out.state in (gs.DECIDED_A, gs.DECIDED_B)
    assert line.endswith("reproduced (the sequential test decided; its repeated CI excludes 0).") == decided, line


def test_k_ablation_reads_rpt_as_k0(tmp_path):
    """RPT's config has no power_iterations (R^(0), Eq. 16): the registry gives it K = 0, beside
    the K the search varies. RPT beside VAT at one K is no K ablation: no Fig. 4 / Table 6."""
    from vat_study.analysis.data import NotApplicable

    url = f"sqlite:///{tmp_path}/kr.db"
    fill(url, "kr", [{"method": "rpt"}, {"method": "vat", "power_iterations": 1}, {"method": "vat", "power_iterations": 2}],
         lambda p, s: ({"test_error": 0.1 + 0.01 * s, "rvadv": 0.2}, {}), {"method": {"name": "vat", "eps": 2.0}})
    df = load(url, "kr").trials
    assert df[df.method == "rpt"].power_iterations.isna().all()
    t6 = k_ablation.compute_table(load(url, "kr"))
    assert sorted(t6["K"]) == [0, 1, 2]
    fill(url, "rpt_vat", [{"method": "rpt"}, {"method": "vat", "power_iterations": 1}],
         lambda p, s: ({"test_error": 0.1 + 0.01 * s, "rvadv": 0.2}, {}), {"method": {"name": "vat", "eps": 2.0}})
    with pytest.raises(NotApplicable):
        k_ablation.compute_table(load(url, "rpt_vat"))


def test_implementation_variants_are_never_pooled_in_tables_comparisons_or_curves(tmp_path):
    """A grid over method x implementation: RPT with the clean pass noisy (the default) and with it
    off are two rows of Table 1/3, two comparison pairs, two curves; each keeps its own numbers."""
    from vat_study.analysis import learning_curves

    url = f"sqlite:///{tmp_path}/v.db"
    pts = [{"method": "rpt", "implementation.clean_stochastic": True},
           {"method": "rpt", "implementation.clean_stochastic": False}, {"method": "vat"}]
    level = {("rpt", True): 0.10, ("rpt", False): 0.04, ("vat", None): 0.07}

    def values(p, s):
        e = level[(p["method"], p.get("implementation.clean_stochastic"))] + 0.001 * s
        return {"val_error": e, "test_error": e}, {100: {"test_error_curve": 2 * e}, 200: {"test_error_curve": e}}

    fill(url, "variants", pts, values, spec_extra={"task": {"dataset": "digits", "steps": 100, "noise_sigma": 0.5}})
    data = load(url, "variants")
    assert sorted(set(data.trials["variant"])) == ["rpt", "rpt (clean_stochastic=false)", "vat"]
    t = tables.methods_table(data).set_index("method")["test_error_mean"]
    assert t["rpt"] == pytest.approx(0.1015) and t["rpt (clean_stochastic=false)"] == pytest.approx(0.0415)
    assert t["vat"] == pytest.approx(0.0715)
    assert ("rpt (clean_stochastic=false)", "vat") in compare.pairs(data) and ("rpt", "vat") in compare.pairs(data)
    _, s = compare.compute_pair(data, "rpt", "vat")
    assert s["mean_diff"] == pytest.approx(-0.03)
    curves = learning_curves.compute(data)
    assert curves.groupby("config")["n"].max().to_dict() == {"rpt": 4, "rpt (clean_stochastic=false)": 4, "vat": 4}
    last = curves[curves["step"] == 200].set_index("variant")["mean"]
    assert last["rpt (clean_stochastic=false)"] == pytest.approx(0.0415) and last["rpt"] == pytest.approx(0.1015)
    assert learning_curves.crossing(curves, "rpt", "vat").startswith("vat is below rpt")
    assert set(curves["schedule"]) == {"100 updates, lr x 0.9 per 600"}  # the task's default decay (Appendix A)
    out, _ = write_report(url, "variants", tmp_path / "out")
    assert (tmp_path / "out" / "learning_curves.png").exists()
    assert (tmp_path / "out" / "comparisons.png").exists()
    compared = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert {"vat - rpt", "vat - rpt (clean_stochastic=false)"} <= set(compared["comparison"])


def test_each_learning_curve_names_its_schedule():
    """The figure states each curve's budget and schedule (issue: curves at different budgets sit
    at different places of their schedules): from the trial's steps, the study's decay, or the
    search's value where it varies the decay."""
    from vat_study.analysis.learning_curves import schedule

    linear = {"task": {"optimizer": {"decay": {"kind": "linear"}}}}
    assert schedule({"steps": 30000}, linear) == "30,000 updates, lr decays linearly from 15,000"
    assert schedule({"steps": 30000, "param.task.optimizer.decay.start": 20000.0}, linear) == \
        "30,000 updates, lr decays linearly from 20,000"
    assert schedule({"steps": 600, "param.task.optimizer.decay.start": float("nan")}, linear).endswith("from 300")
    assert schedule({"steps": 1200}, {"task": {"optimizer": {"decay": {"kind": "none"}}}}) == "1,200 updates, constant lr"


def test_more_than_ten_learning_curves_never_share_a_color(tmp_path, monkeypatch):
    """Table 3's study draws 12 configurations: matplotlib's default cycle repeats after 10, so
    two curves (the baseline and the chosen VAT) came out in one color."""
    from vat_study.analysis import learning_curves

    drawn = {}
    monkeypatch.setattr(learning_curves, "save", lambda fig, stem, note=None: drawn.setdefault("fig", fig) and [])
    rows = [{"variant": "vat", "config": f"vat, eps={i}", "config_key": str(i), "schedule": "100 updates, constant lr",
             "step": step, "mean": 0.1, "ci95": 0.01, "n": 3, "running": False} for i in range(12) for step in (50, 100)]
    learning_curves.draw(pd.DataFrame(rows), tmp_path / "lc", reference=False)
    from matplotlib.colors import to_rgba

    colors = [to_rgba(line.get_color()) for line in drawn["fig"].axes[0].get_lines()]  # "C10" is "C0"
    assert len(colors) == 12 and len(set(colors)) == 12, colors


def test_against_the_paper_is_computed_from_the_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/p.db"
    level = {"baseline": 0.20, "rpt": 0.068, "vat": 0.05}
    fill(url, "t3", [{"method": m, "eps": 5.0} for m in level],
         lambda p, s: ({"val_error": level[p["method"]] + 0.001 * s,
                        "test_error": level[p["method"]] + 0.001 * s + 0.0004 * (s % 2) * (p["method"] == "vat")}, {}),
         spec_extra={"task": {"dataset": "mnist", "n_labeled": 100, "steps": 100}})
    data = load(url, "t3")
    t = tables.table3(data)
    lines = tables.against_paper(data, t)
    rpt = next(x for x in lines if x.startswith("- rpt, test_error:"))
    assert "ours 6.95 % [6.74, 7.16]" in rpt and "n = 1 configuration x 4 seeds" in rpt
    assert rpt.endswith("agrees (the paper's value is inside our 95 % CI).")
    vat = next(x for x in lines if x.startswith("- vat, test_error:"))
    assert "does not agree: ours is higher" in vat  # 5.15 % against the paper's 1.36
    order = next(x for x in lines if x.startswith("- vat < rpt"))
    assert "-1.78 points" in order and "reproduced" in order



def _same_step_every_seed(p, s):
    """digits-like errors (multiples of 1/500): VAT exactly 3 test images below RPT in every seed,
    so the paired differences are one value up to float rounding (SD ~1e-17); the second VAT
    configuration differs by seed."""
    if p["method"] == "rpt":
        err = (50 + 3 * s) / 500
    elif p["eps"] == 1.0:
        err = (47 + 3 * s) / 500
    else:
        err = (53 + 3 * s + (s % 2) * 2 - s // 2) / 500
    return {"val_error": err, "test_error": err}, {}


def test_a_degenerate_paired_comparison_is_never_called_significant(tmp_path):
    """Finding 2 of issue 31: differences all equal at the metric's resolution gave t = -8.6e14,
    p = 7.4e-16, Holm "significant True", a CI of width 0 and a p in the figure title, with a
    scipy warning. Now: no t, p, Holm verdict or CI for them, the note says why, Holm runs over
    the tests that exist, and no numerical warning is raised."""
    import warnings

    from vat_study.analysis import paper
    from vat_study.analysis.report import write_report

    url = f"sqlite:///{tmp_path}/d.db"
    paper_block = {"source": "a test", "orderings": [{"lower": "vat", "higher": "rpt"}]}
    fill(url, "deg", [{"method": "rpt", "eps": 1.0}, {"method": "vat", "eps": 1.0}, {"method": "vat", "eps": 2.0}],
         _same_step_every_seed, {"paper": paper_block})
    data = load(url, "deg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numerical warning here is a test failure
        _, s = compare.compute_pair(data, "rpt", "vat")
        grid = compare.compute_grid(data, "rpt", "vat")
        _, lines = paper.compute(data, paper_block)
        titles = []  # every text of the comparisons' figure
        real_save = compare.save
        compare.save = lambda fig, stem, **kw: titles.extend(
            t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))) or real_save(fig, stem, **kw)
        try:
            path, _ = write_report(url, "deg", tmp_path / "out")
        finally:
            compare.save = real_save
    assert s["note"] == "all 4 differences equal" and np.isnan([s["t"], s["p"], s["ci_low"], s["ci_high"]]).all()
    assert s["mean_diff"] == pytest.approx(-0.006) and s["sd_diff"] == 0.0
    degenerate, tested = grid.set_index("eps").loc[1.0], grid.set_index("eps").loc[2.0]
    assert np.isnan(degenerate["p"]) and np.isnan(degenerate["p_holm"]) and degenerate["significant"] is None
    assert degenerate["note"] == "all 4 differences equal" and tested["note"] == ""
    assert tested["p_holm"] == pytest.approx(tested["p"])  # a family of one test: Holm leaves it as it is
    ordering, = [x for x in lines if "vat < rpt" in x]
    assert ordering.endswith("not decided: all 4 differences equal.") and "[" not in ordering, ordering
    report = path.read_text()
    line, = [x for x in report.splitlines() if x.startswith("- vat - rpt: ")]  # the answer's paired comparison
    assert "no test: all 4 differences equal" in line and "e+1" not in line and "e-1" not in line and "p =" not in line
    assert "None" not in report
    compared = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert compared["p"].isna().sum() == 2 and (compared["note"] == "all 4 differences equal").sum() == 2
    assert any("no test (all 4 differences equal)" in t and "p =" not in t for t in titles), titles


def test_paired_tests_need_three_seeds_and_spread():
    """n = 2: the CI (wide) but no t-test; n = 3 with spread: scipy's paired t-test; equal
    differences: nothing; Holm over the tests that exist."""
    from vat_study.analysis.data import paired_test, untestable

    two = paired_test([0.10, 0.12], [0.08, 0.11])
    assert two["note"] == "n = 2: too few seeds to test" and np.isnan(two["p"]) and np.isfinite(two["ci_low"])
    a, b = np.array([0.10, 0.12, 0.15]), np.array([0.08, 0.11, 0.11])
    three = paired_test(a, b)
    ref = stats.ttest_rel(b, a)
    assert three["note"] == "" and three["p"] == pytest.approx(ref.pvalue) and three["t"] == pytest.approx(ref.statistic)
    assert paired_test([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])["note"] == "all 3 differences equal"
    assert untestable([1.0, 1.0 + 1e-15, 1.0]) == "all 3 differences equal" and untestable([1.0, 1.002, 1.0]) == ""
    assert holm([0.01, float("nan"), 0.04]) == pytest.approx([0.02, float("nan"), 0.04], nan_ok=True)
