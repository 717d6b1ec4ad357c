"""The method registry: each entry's regularizer is the paper's loss from ``regularizers`` (the
functions the Hessian tests check), and the attributes the config and analyses ask for."""

import math

import pytest
import torch
import torch.nn.functional as F

from vat_study.science import methods
from vat_study.science.config import TrialConfig
from vat_study.science.models import build_model
from vat_study.science.regularizers import adversarial_loss, entropy_loss, lds, virtual_adversarial_direction
from vat_study.platform.results import trial_config, trials_frame


def test_attributes():
    assert methods.METHOD_NAMES == ("baseline", "rpt", "vat", "vat_entmin", "at_l2", "at_linf",
                                    "pi_model", "mean_teacher", "pseudo_label")
    assert methods.names(family="consistency") == ("pi_model", "mean_teacher", "pseudo_label")
    assert methods.names(uses_direction=True) == ("vat", "vat_entmin")
    assert methods.names(family="virtual_adversarial") == ("rpt", "vat", "vat_entmin")
    assert methods.names(uses_implementation=False) == ("baseline", "at_l2", "at_linf", "pi_model", "mean_teacher",
                                                        "pseudo_label")
    assert methods.get("rpt").k(5) == 0 and methods.get("vat").k(5) == 5
    assert TrialConfig.from_mapping({"method": "rpt", "power_iterations": 3}).k == 0
    with pytest.raises(ValueError, match="method must be one of"):
        methods.get("vatt")


@pytest.mark.parametrize("name", methods.names(family="none") + methods.names(family="virtual_adversarial")
                         + methods.names(family="adversarial"))
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


# ----------------------------------------------------------------- the consistency family's entries

def _family_step(name: str, model, x_u, **settings):
    cfg = TrialConfig.from_mapping({"method": {"name": name, **settings}, "mode": "semi_supervised"})
    entry = methods.get(name)
    state = entry.init_state(cfg.method, model) if entry.init_state is not None else None
    x_l, y_l = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
    return entry, methods.Step(settings=cfg.method, model=model, x_l=x_l, y_l=y_l, logits_l=model(x_l), x_reg=x_u,
                               state=state)


def test_pseudo_label_entry_is_the_thresholded_cross_entropy_of_its_own_pass():
    from vat_study.science.consistency import pseudo_label_loss

    torch.manual_seed(0)
    model = build_model("mlp", [1, 8, 8], 10, hidden=[16], batch_norm=False).train()
    x_u = torch.rand(16, 1, 8, 8) * 4
    entry, s = _family_step("pseudo_label", model, x_u, threshold=0.2)
    got = entry.regularizer(s)
    with torch.no_grad():
        want = pseudo_label_loss(model(x_u), 0.2).mean().view(1)
    assert 0 < want.item()
    torch.testing.assert_close(got, want)


def test_pi_model_entry_is_the_softmax_mse_of_two_noisy_passes():
    from vat_study.science.consistency import softmax_mse

    torch.manual_seed(0)
    noisy = build_model("mlp", [1, 8, 8], 10, hidden=[16], batch_norm=False, noise_sigma=0.5).train()
    x_u = torch.rand(16, 1, 8, 8)
    entry, s = _family_step("pi_model", noisy, x_u)
    torch.manual_seed(7)
    got = entry.regularizer(s)
    torch.manual_seed(7)
    with torch.no_grad():
        a, b = noisy(x_u), noisy(x_u)
    torch.testing.assert_close(got, softmax_mse(a, b).mean().view(1))
    assert got.item() > 0
    plain = build_model("mlp", [1, 8, 8], 10, hidden=[16], batch_norm=False).train()
    entry, s = _family_step("pi_model", plain, x_u)
    assert entry.regularizer(s).item() == 0  # no noise, no dropout: both passes are one function


def test_mean_teacher_entry_compares_to_its_ema_teacher_and_after_update_moves_it():
    from vat_study.science.consistency import softmax_mse

    torch.manual_seed(0)
    model = build_model("mlp", [1, 8, 8], 10, hidden=[16], batch_norm=False).train()
    x_u = torch.rand(16, 1, 8, 8)
    entry, s = _family_step("mean_teacher", model, x_u, ema_decay=0.75)
    teacher = s.state["teacher"]
    assert all(not p.requires_grad for p in teacher.parameters())
    assert entry.regularizer(s).item() == 0  # theta'_0 = theta_0
    before = [p.detach().clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    with torch.no_grad():
        want = softmax_mse(model(x_u), teacher(x_u)).mean().view(1)
    torch.testing.assert_close(entry.regularizer(s), want)
    entry.after_update(s)  # theta'_1 = 0.75 theta'_0 + 0.25 theta_1 (Tarvainen & Valpola 2017, Eq. 1)
    for t0, t1, p in zip(before, teacher.parameters(), model.parameters()):
        torch.testing.assert_close(t1, 0.75 * t0 + 0.25 * p.detach())


def test_the_family_weight_ramps_alpha_up_and_then_is_exactly_alpha():
    cfg = TrialConfig.from_mapping({"method": {"name": "pi_model", "alpha": 10.0, "alpha_rampup": 100}})
    entry = methods.get("pi_model")

    def weight(step):
        return entry.weight_at(methods.Step(settings=cfg.method, model=None, x_l=None, y_l=None, logits_l=None,
                                            x_reg=None, step=step))

    assert weight(0) == pytest.approx(10 * math.exp(-5))
    assert weight(50) == pytest.approx(10 * math.exp(-5 * 0.25))
    assert weight(100) == 10.0 and weight(5000) == 10.0
    assert methods.get("vat").weight_at(methods.Step(settings=TrialConfig.from_mapping({"method": "vat"}).method,
                                                     model=None, x_l=None, y_l=None, logits_l=None, x_reg=None,
                                                     step=1)) == 1.0  # VAT: alpha itself, no ramp
