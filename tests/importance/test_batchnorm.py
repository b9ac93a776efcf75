"""bn_gamma: pairing each layer with the BatchNorm that consumes its output."""

import pytest
import torch
from torch import nn

from slimkit.importance import bn_gamma
from slimkit.models.resnet_cifar import BasicBlock


def _set_gammas(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(torch.randn(module.num_features, generator=gen))


def _expect_gamma(scores, name, layer, bn):
    expected = bn.weight.detach().abs().view(-1, *[1] * (layer.weight.dim() - 1)).expand_as(layer.weight)
    assert torch.equal(scores[name], expected), name


def test_bn_gamma_on_conv_bn_chain_falls_back_to_magnitude_without_bn():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2),
    )
    _set_gammas(model)
    layers = {"conv1": model[0], "conv2": model[3], "fc": model[8]}
    scores = bn_gamma(model, layers)
    _expect_gamma(scores, "conv1", model[0], model[1])
    _expect_gamma(scores, "conv2", model[3], model[4])
    assert torch.equal(scores["fc"], model[8].weight.abs())


class SwappedRegistration(nn.Module):
    """BNs registered after both convs: registration order alone would pair conv2 with bn1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
        self.bn1, self.bn2 = nn.BatchNorm2d(4), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def test_bn_gamma_follows_the_dataflow_not_the_registration_order():
    model = SwappedRegistration()
    _set_gammas(model)
    scores = bn_gamma(model, {"c1": model.conv1, "c2": model.conv2})
    _expect_gamma(scores, "c1", model.conv1, model.bn1)
    _expect_gamma(scores, "c2", model.conv2, model.bn2)


def test_bn_gamma_on_a_resnet_block_with_projection_shortcut():
    block = BasicBlock(4, 8, stride=2, shortcut="B")
    _set_gammas(block)
    layers = {"conv1": block.conv1, "conv2": block.conv2, "proj": block.shortcut[0]}
    scores = bn_gamma(block, layers)
    _expect_gamma(scores, "conv1", block.conv1, block.bn1)
    _expect_gamma(scores, "conv2", block.conv2, block.bn2)
    _expect_gamma(scores, "proj", block.shortcut[0], block.shortcut[1])


class Untraceable(nn.Module):
    """Data-dependent control flow defeats torch.fx; the registration-order fallback pairs the layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.fc, self.bn1d = nn.Linear(4, 6), nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if x.sum() > 0:
            x = -x
        return self.head(self.bn1d(self.fc(x.mean(dim=(2, 3)))))


def test_bn_gamma_falls_back_to_registration_order_when_tracing_fails():
    model = Untraceable()
    _set_gammas(model)
    with pytest.raises(Exception):
        torch.fx.symbolic_trace(model)
    scores = bn_gamma(model, {"conv": model.conv, "fc": model.fc, "head": model.head})
    _expect_gamma(scores, "conv", model.conv, model.bn)
    _expect_gamma(scores, "fc", model.fc, model.bn1d)
    assert torch.equal(scores["head"], model.head.weight.abs())
