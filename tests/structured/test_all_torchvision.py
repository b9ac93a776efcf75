"""Acceptance (issue 6): every torchvision classifier prunes to a really smaller model. Slow: about
3 minutes single-threaded for the ~80 models (random weights, the smallest input each accepts)."""

import pytest
import torch
import torchvision
from torch import nn

from slimkit.models.torchvision_models import _input_size_and_kwargs
from slimkit.structured import prune_channels

NAMES = sorted(torchvision.models.list_models(module=torchvision.models))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_torchvision_classifier_prunes(name):
    size, kwargs = _input_size_and_kwargs(name, 32)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs).eval()
    before = sum(p.numel() for p in model.parameters())
    pruned = prune_channels(model, (3, size, size), 0.5, inplace=True).eval()  # no copy of the big ones
    with torch.no_grad():
        out = pruned(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    after = sum(p.numel() for p in pruned.parameters())
    assert after <= 0.7 * before, f"{name}: only {1 - after / before:.0%} of parameters removed"
    for module in pruned.modules():  # widths really changed, not masked: attributes match tensors
        if isinstance(module, nn.Conv2d):
            assert module.weight.shape[:2] == (module.out_channels, module.in_channels // module.groups)
        elif isinstance(module, nn.Linear):
            assert module.weight.shape == (module.out_features, module.in_features)
