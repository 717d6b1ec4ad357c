import pytest
import torch
from torch import nn

from vat_study.science.models import GaussianNoise, build_model


def test_mlp_is_the_paper_architecture():
    m = build_model("mlp", [1, 28, 28], 10)
    widths = [l.out_features for l in m.modules() if isinstance(l, nn.Linear)]
    assert widths == [1200, 600, 300, 150, 10]
    assert sum(isinstance(l, nn.BatchNorm1d) for l in m.modules()) == 5
    assert m(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_gaussian_noise_only_in_training():
    m = build_model("mlp", [4], 3, hidden=[8], noise_sigma=0.5)
    assert any(isinstance(l, GaussianNoise) for l in m.modules())
    x = torch.rand(16, 4)
    m.train()
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


@pytest.mark.parametrize("name,width", [("conv_small_svhn", 128), ("conv_small_cifar10", 192), ("conv_large", 128)])
def test_conv_nets_follow_table7(name, width):
    m = build_model(name, [3, 32, 32], 10, top_bn=(name != "conv_small_cifar10"))
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    assert len(convs) == 9 and convs[6].padding == (0, 0)  # the valid 3x3 conv: 8x8 -> 6x6
    assert all(isinstance(l, nn.LeakyReLU) and l.negative_slope == 0.1 for l in m.modules() if isinstance(l, nn.LeakyReLU))
    assert sum(isinstance(l, nn.Dropout) for l in m.modules()) == 2
    assert [l for l in m.modules() if isinstance(l, nn.Linear)][0].in_features == width
    assert (name != "conv_small_cifar10") == isinstance(list(m.net)[-1], nn.BatchNorm1d)
    assert m.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_bad_model_requests():
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("resnet", [3, 32, 32], 10)
    with pytest.raises(ValueError, match="H, W >= 12"):
        build_model("conv_large", [1, 8, 8], 10)
