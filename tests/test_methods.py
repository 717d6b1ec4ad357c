"""The method registry: each entry's regularizer is the paper's loss from ``regularizers`` (the
functions the Hessian tests check), and the attributes the config and analyses ask for."""

import pytest
import torch
import torch.nn.functional as F

from vat_study import methods
from vat_study.config import TrialConfig
from vat_study.models import build_model
from vat_study.regularizers import adversarial_loss, entropy_loss, lds, virtual_adversarial_direction


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
    got = methods.get(name).regularizer(methods.Step(cfg, model, x_l, y_l, logits_l, x_u, 1, lambda x: d0))
    with torch.no_grad():
        clean = model(x_u)
    if name == "baseline":
        want = torch.zeros(1)
    elif name.startswith("at_"):
        want = adversarial_loss(model, x_l, y_l, eps=0.7, norm=name[3:]).view(1)
    else:
        d = virtual_adversarial_direction(model, x_u, clean, d0=d0, power_iterations=cfg.k, xi=cfg.xi)
        want = lds(model, x_u, 0.7 * d, clean).mean().view(1)
        if name == "vat_entmin":
            want = want + entropy_loss(clean)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
