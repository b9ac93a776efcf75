import pytest
import torch
from torch import nn

from slimkit.data import DatasetInfo
from slimkit.models import build_model
from slimkit.methods.slimming import SlimmingL1
from slimkit.structured.netslim import load_pruned_model, prune, reinitialize, update_bn


def _vgg():
    torch.manual_seed(0)
    return build_model("vgg11", DatasetInfo("t", (1, 16, 16), 10))


def test_update_bn_adds_l1_subgradient():
    model = _vgg()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn.weight[:2] = torch.tensor([0.5, -0.25])
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    grad = bn.weight.grad.clone()
    update_bn(model, s=0.01)
    assert torch.allclose(bn.weight.grad - grad, 0.01 * torch.sign(bn.weight.detach()), atol=1e-5)
    with pytest.raises(ValueError, match="s must be"):
        update_bn(model, s=-1)


def test_prune_uses_global_bn_threshold_and_load_pruned_model_round_trips():
    model = _vgg()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():  # first BN: 3/4 of its gammas tiny; last BN: all large
        bns[0].weight.fill_(1.0)
        bns[0].weight[: bns[0].num_features * 3 // 4] = 1e-3
        for bn in bns[1:]:
            bn.weight.uniform_(0.5, 1.0)
    total = sum(bn.num_features for bn in bns)
    ratio = bns[0].num_features * 3 / 4 / total  # exactly the tiny ones
    pruned = prune(model, (1, 16, 16), prune_ratio=ratio)
    new_bns = [m for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]
    assert new_bns[0].num_features == bns[0].num_features // 4
    assert [b.num_features for b in new_bns[1:]] == [b.num_features for b in bns[1:]]
    assert bool((new_bns[0].weight > 0.5).all())

    rebuilt = load_pruned_model(_vgg(), pruned.state_dict())
    x = torch.randn(3, 1, 16, 16)
    assert torch.equal(rebuilt.eval()(x), pruned.eval()(x))
    with pytest.raises(ValueError, match="does not shrink"):
        load_pruned_model(pruned, model.state_dict())


def test_residual_bns_are_prunable():
    model = build_model("resnet20", DatasetInfo("t", (1, 16, 16), 10))
    pruned = prune(model, (1, 16, 16), 0.5)
    widths = [m.num_features for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]
    assert sum(widths) < 0.6 * sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert pruned(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_slimming_callback_and_reinitialize():
    model = _vgg()
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.weight.grad.clone()

    class FakeTrainer:
        pass

    trainer = FakeTrainer()
    trainer.model = model
    SlimmingL1(1e-2).on_after_backward(trainer, None)
    assert not torch.equal(before, bn.weight.grad)
    old = model.features[0].weight.clone() if hasattr(model, "features") else next(model.parameters()).clone()
    reinitialize(model, seed=1)
    new = model.features[0].weight if hasattr(model, "features") else next(model.parameters())
    assert not torch.equal(old, new)
