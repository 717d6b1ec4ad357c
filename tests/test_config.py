import pytest

from vat_study import ConfigError, TrialConfig, run_trial
from vat_study.science.config import is_flat, nest, param_path
from vat_study.science.objective import resolve_config
from vat_study.platform.spec import parse_set


def problems(config):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_mapping(config)
    return "\n".join(info.value.problems)


def test_defaults_are_the_offline_digits_trial():
    cfg = TrialConfig.from_mapping({})
    t = cfg.task
    assert (t.dataset, t.mode, t.n_labeled, t.model, cfg.method.name) == ("digits", "semi_supervised", 100, "mlp", "vat")
    m = cfg.method
    assert m.xi == 1e-2 and m.power_iterations == 1 and m.direction == "finite_difference" and cfg.k == 1


def test_the_config_is_nested_as_a_study_file_is_written():
    """task / method / probes / seed, and each method holds exactly its own settings."""
    cfg = resolve_config({"task": {"steps": 30}, "method": {"name": "rpt", "eps": 2.0}, "seed": 3})
    assert set(cfg) == {"task", "method", "probes", "seed", "seeds", "model_path"}
    assert cfg["task"]["steps"] == 30 and cfg["seed"] == 3
    assert set(cfg["method"]) == {"name", "eps", "alpha", "implementation"}  # RPT: no K, xi, direction
    assert set(resolve_config({"method": {"name": "baseline"}})["method"]) == {"name"}
    assert set(resolve_config({"method": {"name": "at_l2"}})["method"]) == {"name", "eps", "alpha"}
    assert set(resolve_config({})["method"]) == {"name", "eps", "alpha", "xi", "power_iterations", "direction",
                                                 "implementation", "alpha_rampup"}


def test_the_flat_vocabulary_reads_the_same_nested():
    flat = {"method": "vat", "eps": 2.0, "steps": 30, "optimizer": {"lr": 0.001}, "implementation": {"bn": "running"},
            "probes": {"rvadv": {"size": 10}}, "seed": 2}
    nested = {"task": {"steps": 30, "optimizer": {"lr": 0.001}},
              "method": {"name": "vat", "eps": 2.0, "implementation": {"bn": "running"}},
              "probes": {"rvadv": {"size": 10}}, "seed": 2}
    assert is_flat(flat) and not is_flat(nested)
    assert nest(flat) == nested and nest(nested) == nested
    assert resolve_config(flat) == resolve_config(nested)
    # a flat setting given beside its section goes into it, whatever the order
    assert nest({"eps": 3.0, "method": {"name": "rpt"}}) == {"method": {"name": "rpt", "eps": 3.0}}


@pytest.mark.parametrize("key,path", [
    ("eps", "method.eps"), ("method", "method.name"), ("power_iterations", "method.power_iterations"),
    ("implementation.bn", "method.implementation.bn"), ("steps", "task.steps"), ("optimizer.lr", "task.optimizer.lr"),
    ("task.steps", "task.steps"), ("method.xi", "method.xi"), ("probes.rvadv.eps", "probes.rvadv.eps"),
    ("seed", "seed"), ("epsilon", None), ("foo.bar", None)])
def test_a_search_key_is_a_path_whose_section_may_be_left_out(key, path):
    assert param_path(key) == path


def test_a_method_block_drops_other_methods_settings_and_refuses_unknown_keys():
    shared = {"eps": 2.0, "alpha": 0.5, "xi": 1e-3, "power_iterations": 2, "direction": "hvp",
              "implementation": {"bn": "running"}}
    assert resolve_config({"method": {"name": "baseline", **shared}})["method"] == {"name": "baseline"}
    assert resolve_config({"method": {"name": "at_linf", **shared}})["method"] == {"name": "at_linf", "eps": 2.0,
                                                                                   "alpha": 0.5}
    assert problems({"method": {"name": "baseline", "epsilon": 1.0}}) == (
        "method.epsilon: unknown key (not a setting); did you mean method.eps?")
    assert problems({"method": {"name": "baseline", "zzz": 1.0}}) == (
        "method.zzz: unknown key (not a setting; check its spelling)")  # nothing close: no guess
    assert resolve_config({"method": {"name": "baseline", "eps": "x"}})["method"] == {"name": "baseline"}  # not its setting
    assert "method: must be a mapping" in problems({"method": 3})
    assert problems({"task": {"implementation": {}}}).startswith("task.implementation: a setting of the method")


@pytest.mark.parametrize(
    "config,field",
    [
        ({"epsilon": 1.0}, "epsilon: unknown key"),
        ({"eps": -1}, "eps:"),
        ({"eps": float("nan")}, "eps:"),
        ({"xi": 0}, "xi:"),
        ({"power_iterations": -2}, "power_iterations:"),
        ({"method": "mixup"}, "method.name: Input should be 'baseline'"),
        ({"method": {"name": "vat", "eps": -1}}, "method.eps:"),
        ({"task": {"steps": 0}}, "task.steps:"),
        ({"dataset": "imagenet"}, "dataset:"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr:"),
        ({"optimizer": {"decay": {"kind": "cosine"}}}, "optimizer.decay.kind:"),
        ({"batch": {"labled": 32}}, "batch.labled: unknown key"),
        ({"probes": {"rvadv": {"eps": 0}}}, "probes.rvadv.eps:"),
        ({"probes": {"grad_variance": {"power_iterations": []}}}, "probes.grad_variance.power_iterations:"),
        ({"device": "tpu"}, "device:"),
        ({"dataset": "digits", "model": "conv_large"}, "task.model: 'conv_large' needs 32x32 images"),
        ({"hidden": []}, "hidden:"),
    ],
)
def test_each_bad_value_names_its_field(config, field):
    assert field in problems(config)


def test_rpt_is_k0_whatever_power_iterations_says():
    cfg = TrialConfig.from_mapping({"method": "rpt", "power_iterations": 2})
    assert cfg.k == 0 and "power_iterations" not in cfg.method.model_dump()


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
    assert parse_set(["eps=2", "optimizer.lr=1e-3", "hidden=[64, 32]", "probes.rvadv.eps=0.5"]) == {
        "eps": 2, "optimizer.lr": 1e-3, "hidden": [64, 32], "probes.rvadv.eps": 0.5}
    with pytest.raises(ValueError, match="key=value"):
        parse_set(["eps"])


def test_defaults_command_prints_one_methods_settings():
    import yaml
    from typer.testing import CliRunner

    from vat_study.platform.cli import app

    r = CliRunner().invoke(app, ["defaults", "--method", "rpt"])
    assert r.exit_code == 0
    shown = yaml.safe_load(r.stdout)
    assert shown == resolve_config({"method": {"name": "rpt"}}) and "power_iterations" not in shown["method"]
    bad = CliRunner().invoke(app, ["defaults", "--method", "vatt"])
    assert bad.exit_code == 2 and "--method: Input should be 'baseline'" in bad.output


def test_an_unknown_key_gets_the_closest_known_one():
    """Issue 31, point 7: `task.stpes` said only "unknown key"; now the key most likely meant, at
    every level of a trial config and a study file."""
    from vat_study.platform.spec import SpecError, parse_spec

    assert problems({"task": {"stpes": 5}}) == "task.stpes: unknown key (not a setting); did you mean task.steps?"
    assert "task.batch.labled: unknown key (not a setting); did you mean task.batch.labeled?" in problems(
        {"task": {"batch": {"labled": 32}}})
    assert "method.implementation.bnn: unknown key (not a setting); did you mean method.implementation.bn?" in \
        problems({"method": {"name": "vat", "implementation": {"bnn": "running"}}})
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "s", "seedz": [0], "executor": {"kind": "local", "lannes": 2}})
    assert "seedz: unknown key (not a setting); did you mean seeds?" in e.value.problems
    assert "executor.lannes: unknown key (not a setting); did you mean executor.lanes?" in e.value.problems


def test_a_resolved_config_pickles_as_ray_workers_and_trial_processes_receive_it():
    """The probes: block's model is built from the probe registry at run time; a resolved config
    still crosses a process boundary whole (pickle), its probes included."""
    import pickle

    cfg = TrialConfig.from_mapping({"method": "vat", "probes": {"rvadv": {"size": 20}, "test_curve": True}})
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and back.probes.rvadv.size == 20 and back.probes.test_curve is True
