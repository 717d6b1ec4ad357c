"""Seeded comparisons that decide: the group-sequential paired t-test (vat_study.platform.group_sequential),
checked by simulation (no training), the study-file block, and the scheduler on digits."""

import numpy as np
import pandas as pd
import pytest

from vat_study.platform.group_sequential import (
    DECIDED_A,
    DECIDED_B,
    NO_DIFFERENCE,
    RUNNING,
    Design,
    decide,
    describe,
    nominal_level,
    peeking_rate,
)
from vat_study.platform.spec import SpecError, parse_spec
from vat_study.platform.results import trials_frame

DESIGN = Design(min_seeds=3, max_seeds=20, batch=2, alpha=0.05)


def _studies(effect: float, n: int, rng, noise=None) -> list:
    noise = noise or (lambda size: rng.standard_normal(size))
    return [decide(effect + noise(DESIGN.max_seeds), DESIGN) for _ in range(n)]


def test_the_false_positive_rate_over_all_looks_is_alpha_for_a_true_difference_of_zero():
    rng = np.random.default_rng(2025)
    outs = _studies(0.0, 2000, rng)
    fpr = np.mean([o.state != NO_DIFFERENCE for o in outs])
    assert fpr <= DESIGN.alpha + 0.01, fpr
    assert fpr >= DESIGN.alpha - 0.02  # and not needlessly conservative
    assert peeking_rate(DESIGN) > 0.15  # what a plain t-test at every look would have done


def test_the_rate_holds_with_heavy_tailed_differences_too():
    rng = np.random.default_rng(7)
    outs = _studies(0.0, 2000, rng, noise=lambda size: rng.standard_t(3, size))
    assert np.mean([o.state != NO_DIFFERENCE for o in outs]) <= DESIGN.alpha + 0.01


def test_a_large_difference_stops_at_min_and_a_small_one_uses_more_seeds():
    rng = np.random.default_rng(3)
    large = _studies(-30.0, 200, rng)  # b much lower: b better
    assert all(o.n == DESIGN.min_seeds and o.state == DECIDED_B for o in large)
    small = _studies(0.8, 300, rng)  # b higher by 0.8 SD: a better, usually decided later
    assert np.mean([o.n for o in small]) > DESIGN.min_seeds + 4
    assert np.mean([o.state == DECIDED_A for o in small]) > 0.6
    assert np.mean([o.state == DECIDED_B for o in small]) < 0.01  # the wrong direction, almost never


def test_looks_are_replayed_from_the_values_and_ask_for_the_next_batch():
    o = decide([0.1, -0.2, 0.05], DESIGN)
    assert o.state == RUNNING and o.next_n == 5 and [lk.n for lk in o.looks] == [3]
    level = nominal_level(DESIGN)
    assert 0.005 < level < 0.02 and o.level == level
    lk = o.looks[0]
    assert lk.ci_low < lk.mean_diff < lk.ci_high and lk.ci_low < 0 < lk.ci_high  # the repeated CI
    assert decide([0.1, -0.2, 0.05, 0.3, -0.1], DESIGN).next_n == 7
    assert DESIGN.looks == (3, 5, 7, 9, 11, 13, 15, 17, 19, 20)
    with pytest.raises(ValueError, match="design"):
        Design(1, 5, 1, 0.05)


def test_equal_differences_and_two_seeds_decide_nothing():
    """Finding 2 of issue 31 for the sequential looks: every seed's difference one step of the
    metric (-3 of 500 test images, equal up to float rounding) gave p = 0 and a decision; two
    seeds are no test either. Now such a look tests nothing and says why."""
    import warnings

    same = [(47 + 3 * s) / 500 - (50 + 3 * s) / 500 for s in range(20)]
    assert np.std(same) > 0  # rounding, not the data, makes them differ
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = decide(same, DESIGN)
    assert o.state == NO_DIFFERENCE and all(np.isnan(lk.p) and np.isnan(lk.ci_low) for lk in o.looks)
    assert o.looks[-1].note == "all 20 differences equal"
    assert describe(o, "rpt", "vat") == "not testable at max_seeds (all 20 differences equal)"
    two = Design(min_seeds=2, max_seeds=4, batch=1, alpha=0.05)
    first = decide([-5.0, -5.1], two)
    assert first.state == RUNNING and first.looks[0].note == "n = 2: too few seeds to test" and np.isnan(first.looks[0].p)


def test_the_study_block_is_checked_field_by_field():
    base = {"name": "s", "task": {"dataset": "digits", "steps": 10},
            "search": {"grid": [{"method": ["baseline", "vat"]}]}, "seeds": [0, 1, 2]}
    spec = parse_spec({**base, "sequential": {"compare": [["baseline", "vat"]], "max_seeds": 6, "batch": 2}})
    assert spec.seed_sequence() == [0, 1, 2, 3, 4, 5]
    bad = [({"compare": [["vat", "vat"]]}, "compare[0]: must be a pair of two different"),
           ({"compare": [["rpt", "vat"]]}, "sequential.compare[0]: 'rpt' is not a method this study runs"),
           ({"compare": [["baseline", "vat"]], "metric": "acc"}, "sequential.metric: 'acc'"),
           ({"compare": [["baseline", "vat"]], "max_seeds": 2}, "give 2 to max_seeds (2) of them, got 3"),
           ({"compare": [["baseline", "vat"]], "alpha": 0.7}, "alpha")]
    for block, msg in bad:
        with pytest.raises(SpecError, match=msg.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                           .replace(")", r"\)")):
            parse_spec({**base, "sequential": block})
    with pytest.raises(SpecError, match="needs a grid study"):
        parse_spec({**base, "search": {"optuna": {"n_trials": 2, "space": {"eps": {"type": "uniform", "low": 0.1,
                                                                                     "high": 1}}}},
                    "sequential": {"compare": [["baseline", "vat"]]}})


def test_a_study_adds_paired_seeds_until_decided_and_resumes_without_retraining(tmp_path):
    """Real (tiny) training on digits, local executor, lanes: seeds are added only to the compared
    configurations, as the looks ask; a rerun trains nothing."""
    from vat_study.platform.executors import run_local
    from vat_study.platform.executors.looks import study_comparisons
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/s.db"
    spec = parse_spec({
        "name": "seq", "storage": url,
        "task": {"dataset": "digits", "hidden": [32], "steps": 150, "eval_every": 150, "n_labeled": 30,
                 "batch": {"labeled": 16, "unlabeled": 64}},
        "method": {"name": "vat", "eps": 1.0}, "probes": {"rvadv": {"size": 20}},
        "search": {"grid": [{"method": ["baseline", "vat", "rpt"]}]}, "seeds": [0, 1, 2],
        "sequential": {"compare": [["baseline", "vat"]], "max_seeds": 7, "batch": 2},
        "executor": {"kind": "local", "lanes": 4}})
    summary = run_local(spec, progress=False)
    store = Store(url)
    [c] = study_comparisons(spec, store)
    assert c.outcome.state in (DECIDED_B, NO_DIFFERENCE, DECIDED_A)
    n_trials = len(trials_frame(store, "seq"))
    assert n_trials == 9 + 2 * (c.outcome.n - 3)  # only the compared configurations got more seeds
    assert summary.ran == n_trials and not summary.errors
    import optuna

    from vat_study.platform.store.twin import twin_disagreements

    twins = {t.params["method"]: t for t in optuna.load_study(study_name="seq", storage=url).get_trials()}
    assert len(twins["vat"].user_attrs["seeds"]) == c.outcome.n == len(twins["baseline"].user_attrs["seeds"])
    assert twin_disagreements(store, "seq", spec.model_dump(mode="json"), trials_frame(store, "seq")) == []
    again = run_local(spec, progress=False)
    assert again.ran == 0 and len(trials_frame(store, "seq")) == n_trials
    # the report: the fixed-n test of the sequentially compared pair says it does not hold the error
    # rate (the sequential decision does); a pair outside the sequential block keeps a plain p
    from vat_study.analysis.report import write_report

    report, _ = write_report(url, "seq", tmp_path / "report")
    text = report.read_text()
    head = text.split("## What was run")[0]
    [seq_line] = [line for line in head.splitlines() if line.startswith("- vat - baseline:")]
    assert "as if n had been fixed (n was set by the sequential stopping rule" in seq_line
    assert "**Sequential decisions**" in head
    others = [line for line in head.splitlines() if line.startswith(("- rpt - ", "- vat - rpt", "- baseline - rpt"))]
    assert others and not any("as if n had been fixed" in line for line in others)
    comparisons = text.split("## Method comparisons")[1].split("\n## ")[0]
    assert "The n of vat - baseline was set by the study's `sequential:` stopping rule" in comparisons
    table = pd.read_csv(tmp_path / "report" / "comparisons.csv")
    best = table[table.scope == "best vs best"].set_index("comparison")
    assert best.n_set_by["vat - baseline"] == "sequential stopping rule"
    assert (best.drop(index="vat - baseline").n_set_by == "study seeds").all()


@pytest.mark.platform
def test_on_ray_the_added_seeds_train_as_tune_trials_and_a_rerun_trains_nothing(tmp_path):
    from vat_study.platform.executors import run_ray
    from vat_study.platform.executors.looks import study_comparisons
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/r.db"
    spec = parse_spec({
        "name": "seq_ray", "storage": url,
        "task": {"dataset": "digits", "hidden": [16], "steps": 40, "eval_every": 40, "n_labeled": 30,
                 "batch": {"labeled": 16, "unlabeled": 32}},
        "method": {"name": "vat", "eps": 1.0}, "probes": {"rvadv": {"size": 10}},
        "search": {"grid": [{"method": ["vat", "vat_entmin"]}]}, "seeds": [0, 1],
        "sequential": {"compare": [["vat", "vat_entmin"]], "max_seeds": 4, "batch": 2},
        "executor": {"kind": "ray", "per_trial": {"cpu": 1}, "lanes": 4}})
    summary = run_ray(spec, progress=False)
    [c] = study_comparisons(spec, Store(url))
    df = trials_frame(Store(url), "seq_ray")
    assert (df["status"] == "COMPLETE").all() and len(df) == 2 * c.outcome.n and c.outcome.state != RUNNING
    assert summary.ran == len(df)
    assert run_ray(spec, progress=False).ran == 0
