"""The implementation choices the paper leaves open (methods.Implementation): each setting does what
it says, checked against independent computations (hooks that watch each pass, hand-written
formulas, exact Hessians), and MNIST loads from its four standard files."""

import copy
import gzip

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import write_idx
from helpers import exact_hessian_eig, tanh_mlp
from vat_study.science.config import (LEGACY_IMPLEMENTATION, ConfigError, Implementation, TrialConfig, comparable_config,
                              upgrade_stored_config)
from vat_study.science.data import DataError, load_dataset
from vat_study.science.models import GaussianNoise, build_model
from vat_study.science.probes import rvadv_seeds
from vat_study.science.regularizers import (NOISE_FREE_PASSES, divergence, kl_divergence, regularizer_lds,
                                    virtual_adversarial_direction)
from vat_study.science.methods import join_per_lane


# --------------------------------------------------------------------------------------------
# Which passes have noise, and which BN statistics they use
# --------------------------------------------------------------------------------------------


def watched_mlp():
    """The paper's MLP (small) with noise; records, per forward pass, whether the noise layers
    were active and whether BN used batch statistics."""
    torch.manual_seed(0)
    model = build_model("mlp", [1, 8, 8], 10, hidden=[16, 12], noise_sigma=0.5).train()
    passes = []
    noise = [m for m in model.modules() if isinstance(m, GaussianNoise)][0]
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)][0]
    model.register_forward_pre_hook(lambda m, a: passes.append((noise.training, bn.training)))
    return model, passes


@pytest.mark.parametrize("clean,power,perturbed", [(False, False, False), (False, False, True), (True, False, True),
                                                   (True, True, True), (False, True, False)])
@pytest.mark.parametrize("bn", ["batch", "running"])
def test_each_pass_has_the_noise_and_bn_statistics_it_is_set_to(clean, power, perturbed, bn):
    model, passes = watched_mlp()
    x = torch.rand(32, 1, 8, 8)
    regularizer_lds(model, x, eps=1.0, power_iterations=2, implementation=Implementation(
        clean_stochastic=clean, power_iteration_stochastic=power, lds_stochastic=perturbed, bn=bn))
    batch_stats = bn == "batch"
    # clean pass; a reference pass in the iteration's mode when the modes differ; K = 2 iterations; LDS
    expected = [(clean, batch_stats)] + ([(power, batch_stats)] if power != clean else []) \
        + [(power, batch_stats)] * 2 + [(perturbed, batch_stats)]
    assert passes == expected
    assert model.training and all(m.training for m in model.modules())  # the caller's mode is restored


def test_running_bn_statistics_are_the_eval_mode_ones_and_are_never_updated():
    model, _ = watched_mlp()
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        model(torch.rand(64, 1, 8, 8) * 3)  # move the running statistics away from their start
    before = copy.deepcopy(model.state_dict())
    d0 = F.normalize(torch.randn_like(x).flatten(1), dim=1).view_as(x)
    got, logits = regularizer_lds(model, x, eps=1.0, implementation=NOISE_FREE_PASSES.model_copy(update={"bn": "running"}),
                                  d0=d0)
    ev = copy.deepcopy(model).eval()  # eval mode: running statistics, no noise, the reference
    ref, ref_logits = regularizer_lds(ev, x, eps=1.0, d0=d0)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(got, ref)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)


def test_stochastic_perturbed_pass_draws_noise_and_deterministic_one_does_not():
    model, _ = watched_mlp()
    x = torch.rand(32, 1, 8, 8)
    d0 = F.normalize(torch.randn_like(x).flatten(1), dim=1).view_as(x)
    def passes(noisy: bool):
        return NOISE_FREE_PASSES.model_copy(update={"lds_stochastic": noisy})

    a = [regularizer_lds(model, x, eps=1.0, power_iterations=0, d0=d0, implementation=passes(s))[0] for s in (False, False)]
    torch.testing.assert_close(a[0], a[1])  # one deterministic function of theta
    b = [regularizer_lds(model, x, eps=1.0, power_iterations=0, d0=d0, implementation=passes(True))[0] for _ in range(2)]
    assert not torch.allclose(b[0], b[1])
    # Noise in the perturbed pass alone adds a consistency term: LDS stays large even at r -> 0.
    small = regularizer_lds(model, x, eps=1e-4, power_iterations=0, d0=d0, implementation=passes(True))[0]
    zero = regularizer_lds(model, x, eps=1e-4, power_iterations=0, d0=d0, implementation=passes(False))[0]
    assert small.mean() > 100 * zero.mean()


# --------------------------------------------------------------------------------------------
# The divergence
# --------------------------------------------------------------------------------------------


def test_forward_and_reverse_kl_against_hand_written_formulas():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 7, generator=g, dtype=torch.float64), torch.randn(50, 7, generator=g, dtype=torch.float64)
    p, q = a.softmax(1), b.softmax(1)
    torch.testing.assert_close(divergence(a, b, "forward"), (p * (p.log() - q.log())).sum(1))
    torch.testing.assert_close(divergence(a, b, "reverse"), (q * (q.log() - p.log())).sum(1))
    with pytest.raises(ValueError, match="divergence must be one of"):
        divergence(a, b, "js")


def test_reverse_lds_is_the_reverse_kl_and_its_gradient_reaches_theta_through_both_terms():
    model = tanh_mlp().double()
    x = 0.3 * torch.randn(16, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d0 = F.normalize(torch.randn_like(x), dim=1)
    got, logits = regularizer_lds(model, x, eps=0.5, power_iterations=0, d0=d0,
                                  implementation=NOISE_FREE_PASSES.model_copy(update={"divergence": "reverse"}))
    q_logits = model(x + 0.5 * d0)
    torch.testing.assert_close(got, kl_divergence(q_logits, logits.detach()))
    (g,) = torch.autograd.grad(got.sum(), model[2].weight)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("method", ["finite_difference", "hvp"])
def test_reverse_kl_power_iteration_finds_the_same_dominant_eigenvector(method):
    """Both KLs have the Fisher information as Hessian at r = 0 (Eq. 9), so the direction is H's."""
    model = tanh_mlp().double()
    x = 0.3 * torch.randn(12, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    u = torch.stack([vecs[:, 0] for _, vecs in exact_hessian_eig(model, x)])
    d = virtual_adversarial_direction(model, x, xi=1e-4, power_iterations=8, method=method, divergence="reverse",
                                      generator=torch.Generator().manual_seed(0))
    assert (d * u).sum(1).abs().min() > 0.999


# --------------------------------------------------------------------------------------------
# The regularizer's batch, the settings in configs and stores
# --------------------------------------------------------------------------------------------


def test_labeled_and_unlabeled_batches_join_per_lane():
    a = torch.arange(2 * 3).view(6, 1).float()  # 2 seeds x 3 labeled
    b = 100 + torch.arange(2 * 4).view(8, 1).float()  # 2 seeds x 4 unlabeled
    j = join_per_lane(a, b, 2).flatten().tolist()
    assert j == [0, 1, 2, 100, 101, 102, 103, 3, 4, 5, 104, 105, 106, 107]


def test_joined_regularizer_batch_trains_on_both(monkeypatch):
    import vat_study.science.regularizers as T  # methods/paper.py imports it when a step runs

    seen = []
    real = T.regularizer_lds
    monkeypatch.setattr(T, "regularizer_lds", lambda model, x, **kw: seen.append(len(x)) or real(model, x, **kw))
    from vat_study import run_trial

    base = {"dataset": "digits", "hidden": [16], "steps": 2, "eval_every": 2, "batch": {"labeled": 8, "unlabeled": 24},
            "probes": {"rvadv": {"size": 20}}}
    run_trial(base)
    run_trial({**base, "implementation": {"regularizer_batch": "labeled_and_unlabeled"}})
    training = [n for n in seen if n in (24, 32)]  # the probes' passes have other sizes
    assert training == [24, 24, 32, 32]


def test_settings_are_validated_with_the_field_named():
    with pytest.raises(ConfigError, match=r"implementation.divergence: Input should be 'forward' or 'reverse'"):
        TrialConfig.from_mapping({"implementation": {"divergence": "js"}})
    with pytest.raises(ConfigError, match=r"implementation.bn"):
        TrialConfig.from_mapping({"implementation": {"bn": "mixed"}})
    with pytest.raises(ConfigError, match=r"implementation.lds_noise: unknown key"):
        TrialConfig.from_mapping({"implementation": {"lds_noise": True}})
    with pytest.raises(ConfigError, match=r"regularizer_batch: 'labeled_and_unlabeled' applies to mode"):
        TrialConfig.from_mapping({"mode": "supervised", "implementation": {"regularizer_batch": "labeled_and_unlabeled"}})
    import inspect

    params = inspect.signature(regularizer_lds).parameters  # the block reaches the regularizer whole
    assert "implementation" in params and not set(params) & set(Implementation.model_fields)


def _flat_without_implementation(nested: dict) -> dict:
    """A resolved config laid out as vat-study 0.1.0 stored it: flat, no implementation block."""
    method = {k: v for k, v in nested["method"].items() if k != "implementation"}
    return {**nested["task"], **method, "method": method.pop("name"), "probes": nested["probes"],
            "seed": nested["seed"], "seeds": nested["seeds"], "model_path": nested["model_path"]}


def test_configs_stored_by_older_versions_read_with_what_those_versions_did():
    new = TrialConfig.from_mapping({"noise_sigma": 0.5}).model_dump(mode="json")
    old = _flat_without_implementation(new)
    assert "implementation" not in old and old["method"] == "vat"
    assert upgrade_stored_config(old)["method"]["implementation"] == LEGACY_IMPLEMENTATION["semi_supervised"]
    sup = {**old, "mode": "supervised"}
    assert upgrade_stored_config(sup)["method"]["implementation"] == LEGACY_IMPLEMENTATION["supervised"]
    assert upgrade_stored_config(upgrade_stored_config(old)) == upgrade_stored_config(old)  # idempotent
    # With noise, an old VAT trial really was trained differently unless the defaults are the legacy ones ...
    legacy_now = {**new, "method": {**new["method"], "implementation": LEGACY_IMPLEMENTATION["semi_supervised"]}}
    assert comparable_config(old) == comparable_config(legacy_now)
    # ... but without dropout or noise layers the stochastic switches change nothing, and baseline
    # trains without any of the block: such old trials compare equal to today's.
    quiet = TrialConfig.from_mapping({"noise_sigma": 0.0}).model_dump(mode="json")
    if Implementation().divergence == "forward" and Implementation().bn == "batch":
        assert comparable_config(_flat_without_implementation(quiet)) == comparable_config(quiet)
    base = TrialConfig.from_mapping({"method": "baseline", "noise_sigma": 0.5}).model_dump(mode="json")
    old_base = {**_flat_without_implementation(base), "eps": 1.0, "alpha": 1.0, "xi": 0.01}  # stored, unused
    assert comparable_config(old_base) == comparable_config(base)
    assert upgrade_stored_config(old_base)["method"] == {"name": "baseline"}


def test_train_mode_rvadv_probe_sees_the_noise_the_eval_mode_probe_hides():
    model, _ = watched_mlp()
    x = torch.rand(64, 1, 8, 8)
    rng = torch.get_rng_state()
    # At a tiny eps the perturbation itself does nothing: what is left is the noise in the passes.
    quiet = NOISE_FREE_PASSES
    ev = rvadv_seeds(model, [x], eps=1e-3, xi=1e-2, seeds=[0])[0]
    calm = rvadv_seeds(model, [x], eps=1e-3, xi=1e-2, seeds=[0], chunk=64, train_mode=quiet)[0]
    noisy = rvadv_seeds(model, [x], eps=1e-3, xi=1e-2, seeds=[0], chunk=64, train_mode=quiet.model_copy(update={"lds_stochastic": True}))[0]
    assert torch.equal(rng, torch.get_rng_state())  # the training run's random stream is untouched
    assert model.training
    assert max(ev, calm) < 1e-4 and noisy > 1e-2


# --------------------------------------------------------------------------------------------
# MNIST from its four standard files
# --------------------------------------------------------------------------------------------


STEMS = {"train-images-idx3-ubyte": (20, 28, 28), "train-labels-idx1-ubyte": (20,),
         "t10k-images-idx3-ubyte": (10, 28, 28), "t10k-labels-idx1-ubyte": (10,)}


def write_mnist(folder, compress):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, shape in STEMS.items():
        hi = 256 if len(shape) == 3 else 10
        write_idx(folder / (stem + (".gz" if compress else "")), rng.integers(0, hi, shape).astype(np.uint8), compress)


@pytest.mark.parametrize("layout", ["", "mnist", "MNIST/raw"])
@pytest.mark.parametrize("compress", [True, False])
def test_mnist_loads_from_the_four_files_in_any_usual_folder(tmp_path, layout, compress):
    write_mnist(tmp_path / layout if layout else tmp_path, compress)
    ds = load_dataset("mnist", root=tmp_path)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert 0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1 and ds.n_classes == 10


def test_mnist_from_the_environment_and_missing_files_named(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist", True)
    monkeypatch.setenv("VAT_STUDY_DATA", str(tmp_path))
    assert len(load_dataset("mnist").y_train) == 20
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[.gz\].*data_root.*VAT_STUDY_DATA"):
        load_dataset("mnist")
    with gzip.open(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02")  # a header saying 3 labels, holding 2
    with pytest.raises(DataError, match="holds 2 values"):
        load_dataset("mnist")
