import pytest

from vat_study import ConfigError, TrialConfig, run_trial
from vat_study.cli import parse_overrides


def problems(config):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_mapping(config)
    return "\n".join(info.value.problems)


def test_defaults_are_the_offline_digits_trial():
    cfg = TrialConfig.from_mapping({})
    assert (cfg.dataset, cfg.mode, cfg.n_labeled, cfg.model, cfg.method) == ("digits", "semi_supervised", 100, "mlp", "vat")
    assert cfg.xi == 1e-2 and cfg.power_iterations == 1 and cfg.direction == "finite_difference"


@pytest.mark.parametrize(
    "config,field",
    [
        ({"epsilon": 1.0}, "epsilon: unknown key"),
        ({"eps": -1}, "eps:"),
        ({"eps": float("nan")}, "eps:"),
        ({"xi": 0}, "xi:"),
        ({"power_iterations": -2}, "power_iterations:"),
        ({"method": "mixup"}, "method:"),
        ({"dataset": "imagenet"}, "dataset:"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr:"),
        ({"optimizer": {"decay": {"kind": "cosine"}}}, "optimizer.decay.kind:"),
        ({"batch": {"labled": 32}}, "batch.labled: unknown key"),
        ({"probes": {"rvadv": {"eps": 0}}}, "probes.rvadv.eps:"),
        ({"probes": {"grad_variance": {"power_iterations": []}}}, "probes.grad_variance.power_iterations:"),
        ({"device": "tpu"}, "device:"),
        ({"dataset": "digits", "model": "conv_large"}, "model:"),
        ({"hidden": []}, "hidden:"),
    ],
)
def test_each_bad_value_names_its_field(config, field):
    assert field in problems(config)


def test_rpt_is_k0_whatever_power_iterations_says():
    assert TrialConfig.from_mapping({"method": "rpt", "power_iterations": 2}).power_iterations == 0


def test_all_problems_are_reported_at_once():
    text = problems({"eps": -1, "alpha": -1, "bogus": 1})
    assert "eps:" in text and "alpha:" in text and "bogus:" in text


def test_run_trial_rejects_bad_config_before_training():
    calls = []
    with pytest.raises(ConfigError, match="steps"):
        run_trial({"steps": 0}, report=lambda s, m: calls.append(s))
    with pytest.raises(ConfigError, match="config must be a mapping"):
        run_trial([("eps", 1.0)])
    with pytest.raises(ConfigError, match="n_labeled"):
        run_trial({"n_labeled": 5000})
    assert calls == []


def test_set_overrides_parse_yaml_values_and_dotted_keys():
    assert parse_overrides(["eps=2", "optimizer.lr=1e-3", "hidden=[64, 32]", "probes.rvadv.eps=0.5"]) == {
        "eps": 2, "optimizer": {"lr": 1e-3}, "hidden": [64, 32], "probes": {"rvadv": {"eps": 0.5}}}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["eps"])
