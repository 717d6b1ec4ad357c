"""Batched seeded repeats: S seeds trained as one model must give each seed what its own run gives."""

from __future__ import annotations

import statistics

import pytest
import torch

from helpers import tiny
from vat_study import run_seeds, run_trial
from vat_study.science.batched import LaneBatch
from vat_study.platform.executors import run_local, run_ray
from vat_study.science.models import build_model
from vat_study.platform.spec import parse_spec
from vat_study.platform.store import Store
from vat_study.platform.results import trial_configs, trials_frame
from vat_study.platform.store.frames import metrics_frame

TASK = {"dataset": "digits", "hidden": [32, 16], "steps": 40, "eval_every": 10,
        "batch": {"labeled": 16, "unlabeled": 64}, "probes": {"rvadv": {"size": 60}}}


def _run(cfg):
    """run_seeds when the config names seeds (its per-seed metrics), else run_trial."""
    steps = []

    def report(seed, step, m):
        steps.append((seed, step, dict(m)))

    if "seeds" in cfg:
        cfg = dict(cfg)
        res = run_seeds(cfg, cfg.pop("seeds"), report)
        return {"seeds": res.metrics, "failed": res.failed}, steps
    return run_trial(cfg, lambda step, m: report(cfg.get("seed"), step, m)), steps


@pytest.mark.parametrize("method", ["vat", "rpt", "vat_entmin", "at_l2", "baseline"])
def test_batched_seeds_equal_separate_runs_where_determinism_allows(method):
    """No dropout or noise in this model: every random draw (init, splits, batches, d0) is per
    seed, so in float64 the batched run reproduces each separate run to rounding."""
    cfg = {**TASK, "method": method, "eps": 0.5, "dtype": "float64",
           "probes": {"rvadv": {"size": 60}, "fidelity": {"size": 10, "reference_iterations": 5},
                      "grad_variance": {"samples": 3, "batch": 16}}}
    batched, b_steps = _run({**cfg, "seeds": [0, 1, 2]})
    assert not batched["failed"] and batched["seeds"][1]["lanes"] == 3
    for seed in (0, 1, 2):
        alone, a_steps = _run({**cfg, "seed": seed})
        got = batched["seeds"][seed]
        for k in ("val_error", "test_error", "rvadv", "loss", "nll", "reg", "fidelity", "grad_sd_norm_k1"):
            assert got[k] == pytest.approx(alone[k], rel=1e-8, abs=1e-10), (seed, k)
        mine = [(st, m) for s, st, m in b_steps if s == seed]
        assert [st for st, _ in mine] == [st for _, st, _ in a_steps]
        for (_, m), (_, _, a) in zip(mine, a_steps):
            assert m["val_error"] == a["val_error"] and m["loss"] == pytest.approx(a["loss"], rel=1e-8)


def test_batched_float32_matches_within_rounding():
    batched, _ = _run({**TASK, "seeds": [0, 1]})
    for seed in (0, 1):
        alone, _ = _run({**TASK, "seed": seed})
        assert batched["seeds"][seed]["loss"] == pytest.approx(alone["loss"], rel=1e-3)
        # float32 sums in another order (bmm vs mm) and 40 updates amplify it: a few images of 259
        assert abs(batched["seeds"][seed]["val_error"] - alone["val_error"]) <= 0.02


def test_with_noise_layers_batched_seeds_agree_with_separate_runs_over_seeds():
    """Gaussian noise is drawn per seed from one stream, so single runs differ; over 6 seeds the
    two ways of training give the same error within the seed-to-seed spread."""
    cfg = {**TASK, "noise_sigma": 0.3, "steps": 60, "method": "vat", "eps": 0.5}
    seeds = list(range(6))
    batched = run_seeds(cfg, seeds).metrics
    b = [batched[s]["val_error"] for s in seeds]
    a = [run_trial({**cfg, "seed": s})["val_error"] for s in seeds]
    sd = statistics.stdev(a + b)
    assert abs(statistics.fmean(a) - statistics.fmean(b)) <= 2 * sd / len(seeds) ** 0.5 + 1e-3, (a, b)


@pytest.mark.parametrize("name,shape", [("mlp", [1, 8, 8]), ("conv_small_svhn", [3, 32, 32])])
def test_seed_batch_forward_is_each_networks_own(name, shape):
    """BN normalizes each seed's block alone and updates only that seed's statistics."""
    models = []
    for s in range(3):
        torch.manual_seed(s)
        models.append(build_model(name, shape, 10, hidden=[16], dropout=0.0).double())
    batch = LaneBatch([m for m in models])
    x = torch.randn(3 * 5, *shape, dtype=torch.float64)
    out = batch(x)
    for i, m in enumerate(models):
        torch.testing.assert_close(out[5 * i:5 * (i + 1)], m(x[5 * i:5 * (i + 1)]))
        for k, v in m.state_dict().items():
            torch.testing.assert_close(batch.lane_state_dict(i)[k], v)  # the running statistics too
    batch.eval()
    for m in models:
        m.eval()
    torch.testing.assert_close(batch(x)[5:10], models[1](x[5:10]))
    assert len(list(batch.parameters())) == len(list(models[0].parameters()))  # stacked, not copied


def _study(url, batch_seeds, kind="local", **extra):
    spec = tiny("batched", url, seeds=[0, 1, 2], executor={"kind": kind, "per_trial": {"cpu": 1},
                                                           "batch_seeds": batch_seeds},
                search={"grid": [{"method": ["baseline"]}, {"method": ["vat"], "eps": [0.5, 2.0]}]})
    spec["task"].update(dtype="float64", steps=12, eval_every=4)
    spec.update(extra)
    return spec


def _contents(url):
    store = Store(url)
    df = trials_frame(store, "batched").sort_values("key").reset_index(drop=True)
    m = metrics_frame(store, "batched").merge(df[["trial_id", "key"]], on="trial_id")
    m = m[m.name != "train_seconds"].sort_values(["key", "step", "name"]).reset_index(drop=True)
    return df, m


@pytest.mark.parametrize("kind", ["local", pytest.param("ray", marks=pytest.mark.platform)])
def test_a_batched_study_stores_ordinary_trials_equal_to_an_unbatched_one(tmp_path, kind):
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    s1 = run_local(parse_spec(_study(a, 1)), progress=False)
    runner = run_ray if kind == "ray" else run_local
    s2 = runner(parse_spec(_study(b, 3, kind)), progress=False)
    assert (s1.ran, s1.failed, s2.ran, s2.failed) == (9, 0, 9, 0)
    ta, ma = _contents(a)
    tb, mb = _contents(b)
    assert list(ta.key) == list(tb.key) and set(tb.status) == {"COMPLETE"}
    assert ta.batch_group.isna().all()
    assert tb.groupby("config_key").batch_group.nunique().eq(1).all() and tb.batch_group.nunique() == 3
    for col in ("val_error", "test_error", "rvadv", "loss"):
        assert tb[col].tolist() == pytest.approx(ta[col].tolist(), rel=1e-8), col
    assert ma[["key", "step", "name"]].equals(mb[["key", "step", "name"]])
    assert mb.value.tolist() == pytest.approx(ma.value.tolist(), rel=1e-8, abs=1e-12)
    again = runner(parse_spec(_study(b, 3, kind)), progress=False)
    assert again.ran == 0 and again.skipped == 9


def test_batched_groups_only_the_seeds_still_to_run_and_save_each_seeds_weights(tmp_path):
    from vat_study.science.objective import load_trained

    url = f"sqlite:///{tmp_path}/c.db"
    first = run_local(parse_spec(_study(url, 3, seeds=[0], save_models=True,
                                        models_dir=str(tmp_path / "models"))), progress=False)
    assert first.ran == 3
    grown = run_local(parse_spec(_study(url, 3, seeds=[0, 1, 2], save_models=True,
                                        models_dir=str(tmp_path / "models"))), progress=False)
    assert (grown.ran, grown.skipped, grown.failed) == (6, 3, 0)
    df = trials_frame(Store(url), "batched")
    assert df[df.seed == 0].batch_group.isna().all() and df[df.seed > 0].batch_group.notna().all()
    for row in df.itertuples():
        cfg = trial_configs(Store(url), Store(url).study_id("batched"))[row.key][2]
        model, data = load_trained(cfg)
        wrong = (model(data.x_test).argmax(1) != data.y_test).double().mean().item()
        assert wrong == pytest.approx(row.test_error)  # each file holds that seed's own network


def test_an_optuna_study_trains_each_points_seeds_batched(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path}/o.db"
    spec = _study(url, 2, search={"optuna": {"sampler": "random", "n_trials": 2, "seed": 0, "space": {
        "eps": {"type": "uniform", "low": 0.5, "high": 2.0}}}})
    summary = run_local(parse_spec(spec), progress=False)
    assert (summary.ran, summary.failed) == (2, 0)
    df = trials_frame(Store(url), "batched")
    assert len(df) == 6 and set(df.status) == {"COMPLETE"}
    for _, g in df.groupby("config_key"):  # seeds 0 and 1 trained together, seed 2 alone
        assert g.batch_group.nunique() == 1 and g[g.seed == 2].batch_group.isna().all()
    study = optuna.load_study(study_name="batched", storage=url)
    for t in study.trials:
        assert t.value == pytest.approx(df[df["param.eps"] == t.params["eps"]]["val_error"].mean())


def test_run_trial_trains_one_seed_and_says_where_several_go():
    from vat_study.science.config import ConfigError

    with pytest.raises(ConfigError, match="seeds: run_trial trains one seed.*run_seeds"):
        run_trial({**TASK, "seeds": [0, 1]})
