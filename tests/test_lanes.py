"""Lanes: trials that differ only in seed, eps, alpha, xi (and noise SD) trained as one batched
model must give each lane exactly what its own run gives (float64, no dropout / noise draws)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vat_study import ConfigError, run_lanes, run_trial
from vat_study.science.config import LANE_SETTINGS, lane_structure
from vat_study.science.objective import resolve_config
from vat_study.platform.results import trial_configs, trials_frame
from vat_study.platform.store.frames import metrics_frame

TASK = {"dataset": "digits", "hidden": [32, 16], "steps": 30, "eval_every": 10, "dtype": "float64",
        "batch": {"labeled": 16, "unlabeled": 64}, "probes": {"rvadv": {"size": 40}}}

# Lanes of one group: seeds repeat, eps / alpha / xi all differ between lanes.
LANES = [{"seed": 0, "eps": 0.3, "alpha": 1.0, "xi": 1e-2},
         {"seed": 1, "eps": 2.0, "alpha": 0.5, "xi": 1e-1},
         {"seed": 0, "eps": 1.0, "alpha": 2.0, "xi": 1e-3}]
KEYS = ("val_error", "test_error", "rvadv", "rvadv_train", "loss", "nll", "reg")


def _lanes(cfg, lanes):
    steps = []
    res = run_lanes([{**cfg, **lane} for lane in lanes], lambda lane, step, m: steps.append((lane, step, dict(m))))
    return res, steps


@pytest.mark.parametrize("method", ["vat", "rpt", "vat_entmin", "at_l2", "at_linf", "baseline", "pi_model",
                                    "mean_teacher", "pseudo_label"])
def test_each_lane_equals_its_separate_run(method):
    cfg = {**TASK, "method": method}
    res, steps = _lanes(cfg, LANES)
    assert not res.failed and all(m["lanes"] == 3 for m in res.metrics)
    for i, lane in enumerate(LANES):
        alone_steps = []
        alone = run_trial({**cfg, **lane}, lambda step, m, out=alone_steps: out.append((step, dict(m))))
        got = res.metrics[i]
        for k in KEYS:
            assert got[k] == pytest.approx(alone[k], rel=1e-9, abs=1e-12), (i, k)
        mine = [(st, m) for j, st, m in steps if j == i]
        assert [st for st, _ in mine] == [st for st, _ in alone_steps]
        for (_, m), (_, a) in zip(mine, alone_steps):
            assert m["loss"] == pytest.approx(a["loss"], rel=1e-9) and m["val_error"] == a["val_error"]


def test_lane_probes_use_each_lanes_own_eps_and_xi():
    """Fidelity (xi) and gradient variance (eps, defaulting to the trial's) per lane."""
    cfg = {**TASK, "steps": 10, "probes": {"rvadv": {"size": 20}, "fidelity": {"size": 8, "reference_iterations": 5},
                                           "grad_variance": {"samples": 3, "batch": 16}}}
    res, _ = _lanes(cfg, LANES[:2])
    for i, lane in enumerate(LANES[:2]):
        alone = run_trial({**cfg, **lane})
        for k in ("fidelity", "grad_sd_norm_k1", "rvadv"):
            assert res.metrics[i][k] == pytest.approx(alone[k], rel=1e-8), (i, k)  # as test_batched


def test_lanes_with_different_noise_sd_draw_each_lanes_own_noise():
    """noise_sigma is a lane setting: each network's noise layer uses its lane's SD."""
    from vat_study.science.batched import LaneBatch
    from vat_study.science.models import build_model

    from vat_study.science.models import GaussianNoise

    batch = LaneBatch([nn.Sequential(nn.Identity(), GaussianNoise(s)).double() for s in (0.1, 1.0, 3.0)]).train()
    x = torch.randn(3 * 4000, 5, dtype=torch.float64)
    noise = (batch(x) - x).view(3, -1)
    assert [float(v) for v in noise.std(1)] == pytest.approx([0.1, 1.0, 3.0], rel=0.03)
    assert float(batch.lane_model(2)[1].sigma_t) == 3.0 and set(batch.lane_state_dict(2)) == set()
    models = []
    for sigma in (0.1, 1.0):
        torch.manual_seed(0)
        models.append(build_model("mlp", [1, 8, 8], 10, hidden=[16], noise_sigma=sigma).double())
    assert LaneBatch(models).lane_state_dict(1).keys() == models[1].state_dict().keys()  # loadable as saved
    res = run_lanes([{**TASK, "dtype": "float32", "noise_sigma": s, "steps": 10} for s in (0.1, 0.5)])
    assert not res.failed and len(res.metrics) == 2


def test_a_diverging_lane_fails_alone():
    """A huge alpha makes one lane's loss overflow; the other lanes train on to the end and
    equal their separate runs."""
    cfg = {**TASK, "method": "vat", "steps": 20, "optimizer": {"lr": 0.002}}
    lanes = [LANES[0], {"seed": 1, "eps": 1.0, "alpha": 1e308}, LANES[1]]
    res = run_lanes([{**cfg, **lane} for lane in lanes])
    assert set(res.failed) == {1} and res.metrics[1] is None and "diverged" in res.failed[1]
    for i in (0, 2):
        alone = run_trial({**cfg, **lanes[i]})
        assert res.metrics[i]["val_error"] == pytest.approx(alone["val_error"], abs=1e-12)
        assert res.metrics[i]["loss"] == pytest.approx(alone["loss"], rel=1e-9)


def test_lanes_that_differ_structurally_are_refused_naming_the_setting():
    with pytest.raises(ConfigError, match=r"configs\[1\]\.method\.name: lanes may differ only in seed, method\.eps"):
        run_lanes([{**TASK, "method": "vat"}, {**TASK, "method": "rpt"}])
    with pytest.raises(ConfigError, match=r"configs\[1\]\.method\.power_iterations"):
        run_lanes([{**TASK, "power_iterations": 1}, {**TASK, "power_iterations": 2}])
    with pytest.raises(ConfigError, match=r"configs\[1\]\.noisy"):  # a noise layer or none
        run_lanes([{**TASK, "noise_sigma": 0.0}, {**TASK, "noise_sigma": 0.3}])
    with pytest.raises(ConfigError, match=r"configs\[0\]\.seeds"):
        run_lanes([{**TASK, "seeds": [0, 1]}])
    with pytest.raises(ConfigError, match="at least one"):
        run_lanes([])
    with pytest.raises(ConfigError, match="eps"):  # each lane's values are validated like any config
        run_lanes([TASK, {**TASK, "eps": -1.0}])


def test_lane_structure_ignores_exactly_the_lane_settings():
    a = resolve_config({**TASK, "seed": 0, "eps": 1.0, "alpha": 1.0, "xi": 1e-2, "noise_sigma": 0.2})
    b = resolve_config({**TASK, "seed": 5, "eps": 3.0, "alpha": 0.1, "xi": 1e-4, "noise_sigma": 0.7})
    assert lane_structure(a) == lane_structure(b)
    assert set(LANE_SETTINGS) == {"seed", "method.eps", "method.alpha", "method.xi", "task.noise_sigma"}
    for k, v in {"steps": 31, "power_iterations": 2, "hidden": [32, 8], "method": "rpt", "dtype": "float32"}.items():
        assert lane_structure(resolve_config({**TASK, k: v})) != lane_structure(resolve_config(TASK)), k


# ------------------------------------------------------------------------------ lanes in studies


def _lane_study(url, lanes=1, kind="local", **extra):
    from helpers import tiny

    spec = tiny("lanes", url, seeds=[0, 1, 2], executor={"kind": kind, "per_trial": {"cpu": 1}, "lanes": lanes},
                search={"grid": [{"method": ["baseline"]},
                                 {"method": ["vat"], "eps": [0.5, 2.0], "alpha": [0.5, 1.0]}]})
    spec["task"].update(dtype="float64", steps=12, eval_every=4)
    spec.update(extra)
    return spec


def _stored(url):
    from vat_study.platform.store import Store

    store = Store(url)
    df = trials_frame(store, "lanes").sort_values("key").reset_index(drop=True)
    m = metrics_frame(store, "lanes").merge(df[["trial_id", "key"]], on="trial_id")
    m = m[m.name != "train_seconds"].sort_values(["key", "step", "name"]).reset_index(drop=True)
    configs = trial_configs(store, store.study_id("lanes"))
    return df, m, configs


@pytest.mark.parametrize("kind", ["local", pytest.param("ray", marks=pytest.mark.platform)])
def test_a_lane_study_stores_the_same_trials_as_without_lanes(tmp_path, kind):
    from vat_study.platform.executors import run_local, run_ray
    from vat_study.platform.spec import parse_spec

    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    s1 = run_local(parse_spec(_lane_study(a)), progress=False)
    runner = run_ray if kind == "ray" else run_local
    s2 = runner(parse_spec(_lane_study(b, lanes=8, kind=kind)), progress=False)
    assert (s1.ran, s1.failed, s2.ran, s2.failed) == (15, 0, 15, 0)
    ta, ma, ca = _stored(a)
    tb, mb, cb = _stored(b)
    assert list(ta.key) == list(tb.key) and set(tb.status) == {"COMPLETE"} and ta.batch_group.isna().all()
    assert {k: v[2] for k, v in ca.items()} == {k: v[2] for k, v in cb.items()}  # the same resolved configs
    # 12 VAT trials (4 points x 3 seeds) in lane groups of at most 8; the 3 baseline seeds in one
    sizes = sorted(tb.groupby("batch_group").size().tolist())
    assert sizes == [3, 4, 8]
    assert tb.groupby("batch_group").method.nunique().eq(1).all()
    for col in ("val_error", "test_error", "rvadv", "loss"):
        assert tb[col].tolist() == pytest.approx(ta[col].tolist(), rel=1e-8), col
    assert ma[["key", "step", "name"]].equals(mb[["key", "step", "name"]])
    assert mb.value.tolist() == pytest.approx(ma.value.tolist(), rel=1e-8, abs=1e-12)
    again = runner(parse_spec(_lane_study(b, lanes=8, kind=kind)), progress=False)
    assert again.ran == 0 and again.skipped == 15


def test_lanes_and_batch_seeds_together_are_refused():
    from vat_study.platform.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="executor.lanes: set either lanes .* or batch_seeds"):
        parse_spec(_lane_study("sqlite:///x.db", lanes=4, executor={"kind": "local", "lanes": 4, "batch_seeds": 2}))


@pytest.mark.parametrize("kind", ["local", pytest.param("ray", marks=pytest.mark.platform)])
def test_optuna_with_lanes_asks_a_group_at_once_and_tells_each_point(tmp_path, kind):
    import optuna

    from vat_study.platform.executors import run_local, run_ray
    from vat_study.platform.spec import parse_spec
    from vat_study.platform.store import Store

    url = f"sqlite:///{tmp_path}/o.db"
    spec = _lane_study(url, lanes=6, kind=kind, search={"optuna": {"sampler": "random", "n_trials": 4, "seed": 0, "space": {
        "eps": {"type": "uniform", "low": 0.5, "high": 2.0}, "alpha": {"type": "uniform", "low": 0.5, "high": 2.0}}}})
    if kind == "ray":
        spec["executor"]["max_concurrent"] = 1  # one lane group per Tune run: 2 rounds of 2 points
    summary = (run_ray if kind == "ray" else run_local)(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (4, 0)
    df = trials_frame(Store(url), "lanes")
    assert len(df) == 12 and set(df.status) == {"COMPLETE"}
    # 6 lanes / 3 seeds: two points per ask, their 6 trials in one batched model
    assert sorted(df.groupby("batch_group").size().tolist()) == [6, 6]
    assert df.groupby("batch_group").optuna_number.nunique().eq(2).all()
    study = optuna.load_study(study_name="lanes", storage=url)
    assert len({(t.params["eps"], t.params["alpha"]) for t in study.trials}) == 4
    for t in study.trials:
        mine = df[df.optuna_number == t.number]
        assert len(mine) == 3 and mine["param.eps"].eq(t.params["eps"]).all()
        assert t.value == pytest.approx(mine.val_error.mean())


def test_dry_run_shows_the_lane_groups_and_writes_nothing(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from vat_study.platform.cli import app

    path = tmp_path / "lanes.yaml"
    path.write_text(yaml.safe_dump(_lane_study(f"sqlite:///{tmp_path}/l.db", lanes=8)))
    r = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "15 trials (5 configurations x 3 seeds), trained as 3 batched models (executor.lanes: 8; sizes " \
           "[3, 8, 4])" in " ".join(r.output.split())
    assert not (tmp_path / "l.db").exists()


def test_lane_groups_split_by_structure_and_by_seed_under_zca():
    """Trials whose structure differs (K here) never share a group; with zca (fitted on each
    seed's own pool) neither do different seeds; groups hold at most ``lanes`` trials."""
    from vat_study.platform.executors.planning import lane_groups
    from vat_study.platform.spec import parse_spec

    spec = parse_spec(_lane_study("sqlite:///unused.db", lanes=4, search={"grid": [
        {"method": ["vat"], "eps": [0.5, 1.0], "power_iterations": [1, 2]}]}))
    groups = lane_groups(spec.expand(), spec)
    assert sorted(len(g) for g in groups) == [2, 2, 4, 4]  # 2 K x (6 trials -> 4 + 2)
    for g in groups:
        assert len({t.params["power_iterations"] for t in g}) == 1
    raw = _lane_study("sqlite:///unused.db", lanes=8, search={"grid": [{"eps": [0.5, 1.0]}]})
    raw["task"]["zca"] = True
    zca = parse_spec(raw)
    groups = lane_groups(zca.expand(), zca)
    assert sorted(len(g) for g in groups) == [2, 2, 2] and all(len({t.seed for t in g}) == 1 for g in groups)


@pytest.mark.parametrize("mode", ["semi_supervised", "supervised"])
def test_augmented_lanes_draw_each_lanes_batches_in_its_own_order(mode):
    """With augmentation (random translation and flips of the 8x8 digits) each lane draws its
    batch, its augmentation and the next batch from its own generator, as its own run does."""
    cfg = {**TASK, "method": "vat", "steps": 12, "eval_every": 6, "mode": mode, "augment": {"translate": 1, "flip": True}}
    lanes = LANES[:2]
    res, _ = _lanes(cfg, lanes)
    assert not res.failed
    for i, lane in enumerate(lanes):
        alone = run_trial({**cfg, **lane})
        for k in ("val_error", "test_error", "loss", "nll", "reg"):
            assert res.metrics[i][k] == pytest.approx(alone[k], rel=1e-9, abs=1e-12), (i, k)
    plain = run_trial({**cfg, **lanes[0], "augment": {"translate": 0, "flip": False}})
    assert plain["loss"] != pytest.approx(res.metrics[0]["loss"], rel=1e-9)  # the augmentation did something
