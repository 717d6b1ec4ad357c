import math
import subprocess
import sys

import pytest
import torch

from vat_study import run_trial

TINY = dict(dataset="digits", hidden=[64, 32], steps=60, eval_every=20,
            batch=dict(labeled=32, unlabeled=64), probes=dict(rvadv=dict(size=100)))


def test_run_trial_on_digits_end_to_end_and_reports():
    seen = []
    m = run_trial(TINY, report=lambda step, metrics: seen.append((step, dict(metrics))))
    for key in ("val_error", "test_error", "rvadv", "train_seconds", "steps"):
        assert key in m
    assert m["steps"] == 60 and 0 <= m["test_error"] < 0.5 and m["rvadv"] > 0
    assert [s for s, _ in seen] == [20, 40, 60]
    assert all(math.isfinite(v) for _, metrics in seen for v in metrics.values())


def test_identical_seeds_give_identical_metrics_and_other_seeds_do_not():
    strip = lambda m: {k: v for k, v in m.items() if "seconds" not in k}  # noqa: E731
    state = torch.random.get_rng_state()
    a, b = strip(run_trial(dict(TINY, seed=7))), strip(run_trial(dict(TINY, seed=7)))
    assert a == b
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert strip(run_trial(dict(TINY, seed=8))) != a


@pytest.mark.parametrize("method", ["baseline", "rpt", "vat", "vat_entmin", "at_l2", "at_linf"])
@pytest.mark.parametrize("mode", ["supervised", "semi_supervised"])
def test_every_method_and_mode_trains(method, mode):
    cfg = dict(TINY, method=method, mode=mode, steps=20, eval_every=20, eps=0.5 if "at" not in method else 0.05)
    if mode == "supervised":
        cfg["n_labeled"] = None
    m = run_trial(cfg)
    assert math.isfinite(m["test_error"]) and m["test_error"] < 0.9


def test_probes_do_not_change_training_and_measure_what_they_claim():
    base = run_trial(dict(TINY, steps=40))
    probed = run_trial(dict(TINY, steps=40, probes=dict(
        rvadv=dict(size=100), fidelity=dict(size=20, reference_iterations=30),
        grad_variance=dict(power_iterations=[0, 1], samples=8))))
    assert probed["test_error"] == base["test_error"] and probed["val_error"] == base["val_error"]
    assert 0.3 < probed["fidelity"] <= 1.0 + 1e-6  # K = 1 with the default xi
    assert probed["grad_sd_norm_k0"] > 0 and probed["grad_sd_norm_k1"] > 0
    rpt = run_trial(dict(TINY, steps=40, method="rpt", probes=dict(fidelity=dict(size=20), rvadv=dict(size=100))))
    assert rpt["fidelity"] < 0.5  # K = 0: a random direction in 64-D


def test_fidelity_probe_rises_with_k_and_fd_matches_hvp():
    from vat_study.science import probes
    from vat_study.science.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", [64], 10, hidden=[64, 32])
    x = torch.rand(40, 64)
    fid = {k: probes.power_iteration_fidelity(model, x, xi=1e-2, power_iterations=k, reference_iterations=200)
           for k in (0, 1, 3, 30)}
    assert fid[0] < 0.3 < fid[1] < fid[3] <= fid[30] + 1e-3 and fid[30] > 0.95, fid
    hvp = probes.power_iteration_fidelity(model, x, xi=1e-2, power_iterations=3, method="hvp", reference_iterations=200)
    assert abs(hvp - fid[3]) < 0.03


def test_grad_sd_norm_matches_a_direct_estimate():
    """Eq. 21 against per-sample gradients stacked and reduced with torch.var / torch.mean."""
    from vat_study.science import probes
    from vat_study.science.models import build_model
    from vat_study.science.regularizers import lds, virtual_adversarial_direction

    torch.manual_seed(0)
    model = build_model("mlp", [8], 3, hidden=[16], batch_norm=False)
    pool = torch.rand(50, 8)
    ours = probes.grad_sd_norm(model, pool, eps=0.5, power_iterations=0, xi=1e-2, batch=10, samples=6,
                               generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    grads = []
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
        for _ in range(6):
            xb = pool[torch.randperm(50, generator=gen)[:10]]
            d = virtual_adversarial_direction(model, xb, power_iterations=0)
            g = torch.autograd.grad(lds(model, xb, 0.5 * d).mean(), list(model.parameters()))
            grads.append(torch.cat([t.flatten() for t in g]).double())
    g = torch.stack(grads)
    direct = float(g.var(0, unbiased=True).sum().sqrt() / g.mean(0).norm())
    assert ours == pytest.approx(direct, rel=1e-6)


def test_linear_schedule_and_beta1_switch():
    from vat_study.science.config import TrialConfig
    from vat_study.science.train import learning_rate

    cfg = TrialConfig.from_mapping(dict(steps=100, optimizer=dict(lr=1.0, decay=dict(kind="linear", beta1_after=0.5))))
    assert learning_rate(cfg, 0) == (1.0, 0.9) and learning_rate(cfg, 49) == (1.0, 0.9)
    assert learning_rate(cfg, 50) == (1.0, 0.5) and learning_rate(cfg, 75)[0] == pytest.approx(0.5)
    exp = TrialConfig.from_mapping(dict(optimizer=dict(lr=1.0)))
    assert learning_rate(exp, 599)[0] == 1.0 and learning_rate(exp, 600)[0] == pytest.approx(0.9)


def test_moons_semi_supervised_vat_clearly_beats_the_baseline():
    """Fig. 1 in miniature: 8 labeled points, 1,000 unlabeled; same seeds for both methods."""
    def error(method, seed):
        return run_trial(dict(dataset="moons", n_labeled=8, validation=0, method=method, eps=0.15, seed=seed,
                              steps=1500, eval_every=1500, batch=dict(labeled=8, unlabeled=256),
                              optimizer=dict(lr=0.01, decay=dict(kind="none")),
                              probes=dict(rvadv=dict(eps=0.15, size=200))))["test_error"]

    seeds = [0, 1, 2]
    vat = [error("vat", s) for s in seeds]
    base = [error("baseline", s) for s in seeds]
    assert all(v < b for v, b in zip(vat, base)), (vat, base)
    assert sum(vat) / 3 < 0.02 and sum(base) / 3 - sum(vat) / 3 > 0.05, (vat, base)


def test_cli_trial_and_bad_flags(tmp_path):
    cli = [sys.executable, "-m", "vat_study.platform.cli"]
    ok = subprocess.run(cli + ["trial", "--json", "--set", "steps=5", "--set", "eval_every=5", "--set", "hidden=[16]"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '"test_error"' in ok.stdout
    bad = subprocess.run(cli + ["trial", "--set", "optimizer.lr=-1", "--set", "colour=red"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "optimizer.lr" in bad.stderr and "colour" in bad.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("- not a mapping\n")
    bad = subprocess.run(cli + ["trial", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "mapping" in bad.stderr


def test_one_thread_policy_for_the_api_and_the_executors(tmp_path, monkeypatch):
    """Finding 5 of issue 31: the README's run_trial trained with torch's default threads (20x
    slower on a loaded machine) while the CLI set one. Now run_trial, run_seeds and run_lanes
    train with ``threads``, else VAT_STUDY_THREADS, else 1, and give the caller's count back; the
    local executor trains with executor.per_trial.cpu. The count is read inside training."""
    from helpers import TINY_TASK, tiny
    from vat_study.science import objective
    from vat_study import run_lanes, run_seeds
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import parse_spec
    from vat_study.surface import ConfigError

    seen = []
    real = objective.train_lanes

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(objective, "train_lanes", counting)
    monkeypatch.delenv("VAT_STUDY_THREADS", raising=False)
    cfg = {"task": {k: v for k, v in TINY_TASK.items() if k != "probes"}, "method": {"name": "vat"}}
    before = torch.get_num_threads()
    torch.set_num_threads(3)  # the caller's (a notebook's) own setting
    try:
        run_trial(cfg)
        run_trial(cfg, threads=2)
        monkeypatch.setenv("VAT_STUDY_THREADS", "2")
        run_seeds(cfg, [0, 1])
        run_lanes([cfg, {**cfg, "seed": 1}], threads=1)
        assert torch.get_num_threads() == 3  # given back after every call
        monkeypatch.setenv("VAT_STUDY_THREADS", "many")
        with pytest.raises(ConfigError, match="VAT_STUDY_THREADS='many': must be a positive integer"):
            run_trial(cfg)
        monkeypatch.delenv("VAT_STUDY_THREADS")
        run_local(parse_spec(tiny("thr", f"sqlite:///{tmp_path}/t.db", seeds=[0], search=None,
                                  executor={"kind": "local", "per_trial": {"cpu": 2}})), progress=False)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2, 2, 1, 2], seen
