"""The method registry: each entry's regularizer is the paper's loss from ``regularizers`` (the
functions the Hessian tests check), and the attributes the config and analyses ask for."""

import pytest
import torch
import torch.nn.functional as F

from vat_study.science import methods
from vat_study.science.config import TrialConfig
from vat_study.science.models import build_model
from vat_study.science.regularizers import adversarial_loss, entropy_loss, lds, virtual_adversarial_direction
from vat_study.platform.results import trial_config, trials_frame


def test_attributes():
    assert methods.METHOD_NAMES == ("baseline", "rpt", "vat", "vat_entmin", "at_l2", "at_linf")
    assert methods.names(uses_direction=True) == ("vat", "vat_entmin")
    assert methods.names(family="virtual_adversarial") == ("rpt", "vat", "vat_entmin")
    assert methods.names(uses_implementation=False) == ("baseline", "at_l2", "at_linf")
    assert methods.get("rpt").k(5) == 0 and methods.get("vat").k(5) == 5
    assert TrialConfig.from_mapping({"method": "rpt", "power_iterations": 3}).k == 0
    with pytest.raises(ValueError, match="method must be one of"):
        methods.get("vatt")


@pytest.mark.parametrize("name", methods.METHOD_NAMES)
def test_each_entry_computes_the_papers_loss(name):
    torch.manual_seed(0)
    model = build_model("mlp", [1, 8, 8], 10, hidden=[16]).train()  # no noise: one deterministic function
    cfg = TrialConfig.from_mapping({"method": name, "eps": 0.7, "power_iterations": 2, "mode": "semi_supervised"})
    x_l, y_l, x_u = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,)), torch.rand(16, 1, 8, 8)
    d0 = F.normalize(torch.randn_like(x_u).flatten(1), dim=1).view_as(x_u)
    logits_l = model(x_l)
    got = methods.get(name).regularizer(methods.Step(settings=cfg.method, model=model, x_l=x_l, y_l=y_l,
                                                     logits_l=logits_l, x_reg=x_u, random_start=lambda x: d0))
    with torch.no_grad():
        clean = model(x_u)
    if name == "baseline":
        want = torch.zeros(1)
    elif name.startswith("at_"):
        want = adversarial_loss(model, x_l, y_l, eps=0.7, norm=name[3:]).view(1)
    else:
        d = virtual_adversarial_direction(model, x_u, clean, d0=d0, power_iterations=cfg.k,
                                          xi=getattr(cfg.method, "xi", 1e-2))  # RPT (K = 0) has none
        want = lds(model, x_u, 0.7 * d, clean).mean().view(1)
        if name == "vat_entmin":
            want = want + entropy_loss(clean)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_new_method_is_one_registry_entry_and_runs_in_a_study_and_a_report(tmp_path):
    """A toy method, an L2 input-gradient penalty R = mean ||grad_x CE(x_l)||^2 (double
    back-propagation), registered here alone with its own settings (alpha, the weight of Eq. 8):
    configs accept it, a study trains it (in-process executor), the store records it and the
    report lists it; no other module is edited."""
    from vat_study.analysis.report import write_report
    from vat_study.platform.executors import run_local
    from vat_study.platform.spec import parse_spec
    from vat_study.platform.store import Store

    def input_gradient_penalty(s: methods.Step) -> torch.Tensor:
        x = s.x_l.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(s.model(x), s.y_l, reduction="sum"), x, create_graph=True)
        return methods.per_lane(g.flatten(1).pow(2).sum(1), s.n_lanes)

    class InputGradient(methods.MethodSettings):
        alpha: float = 1.0
        norm_power: int = 2  # a setting no other method has: it gets its own trials_frame column

    toy = methods.register(methods.Method("input_grad_l2", "adversarial", "L2 input-gradient penalty",
                                          input_gradient_penalty, InputGradient))
    try:
        with pytest.raises(ValueError, match="already registered"):
            methods.register(toy)
        url = f"sqlite:///{tmp_path}/toy.db"
        spec = {"name": "toy", "task": {"dataset": "digits", "hidden": [32], "steps": 20, "eval_every": 10,
                                         "batch": {"labeled": 16, "unlabeled": 32}},
                "method": {"name": "vat", "alpha": 0.5}, "probes": {"rvadv": {"size": 20}},
                "search": {"grid": [{"method": ["baseline", "input_grad_l2"]}]}, "seeds": [0, 1],
                "storage": url, "executor": {"kind": "local"}}
        summary = run_local(parse_spec(spec), progress=False)
        assert (summary.ran, summary.failed) == (4, 0)
        df = trials_frame(Store(url), "toy")
        toy_rows = df[df.method == "input_grad_l2"]
        assert len(toy_rows) == 2 and (toy_rows.reg > 0).all() and (df[df.method == "baseline"].reg == 0).all()
        assert (toy_rows.alpha == 0.5).all() and toy_rows.eps.isna().all()  # its own settings, from the shared block
        assert (toy_rows.norm_power == 2).all() and df[df.method == "baseline"].norm_power.isna().all()
        stored = trial_config(Store(url), int(toy_rows.trial_id.iloc[0]))
        assert stored["method"] == {"name": "input_grad_l2", "alpha": 0.5, "norm_power": 2}
        report, _ = write_report(url, "toy", tmp_path / "report")
        assert "input_grad_l2" in report.read_text()
    finally:
        methods.REGISTRY.pop("input_grad_l2", None)
    with pytest.raises(Exception, match="method.name: Input should be 'baseline'"):
        TrialConfig.from_mapping({"method": "input_grad_l2"})
