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
    # A fresh model (every gamma 1): each coupled group, the residual streams included, loses
    # channels. (This asserted sum(widths) < 0.6 * before, which held only because tied scores
    # emptied every non-residual layer to one channel and left the residual ones whole.)
    widths = [m.num_features for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(1 < after < full for after, full in zip(widths, before)), (before, widths)
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


def _bn_widths(model):
    return [m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def test_tied_gammas_take_the_ratio_from_every_layer(caplog):
    """A freshly built network's BatchNorm scales are all 1: the tie at the threshold is shared
    out in proportion, so every layer loses half its channels (it used to remove every tied
    channel, and the later layers shrank to one channel each)."""
    model = _vgg()
    assert all(bool((m.weight == 1).all()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with caplog.at_level("WARNING", logger="slimkit"):
        pruned = prune(model, (1, 16, 16), prune_ratio=0.5)
    for before, after in zip(_bn_widths(model), _bn_widths(pruned)):
        assert abs(after - before / 2) <= 1, (before, after)
    assert sum(_bn_widths(pruned)) == sum(_bn_widths(model)) - int(0.5 * sum(_bn_widths(model)))
    assert not [r for r in caplog.records if "removes every channel" in r.getMessage()]


def test_layers_emptied_by_the_global_threshold_are_named(caplog):
    model = _vgg()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.0)
        bns[0].weight.fill_(1e-3)  # far below every other layer's scales
    name = next(n for n, m in model.named_modules() if m is bns[0])
    with caplog.at_level("WARNING", logger="slimkit"):
        pruned = prune(model, (1, 16, 16), prune_ratio=bns[0].num_features / sum(_bn_widths(model)))
    assert _bn_widths(pruned)[0] == 1
    messages = [r.getMessage() for r in caplog.records if "removes every channel" in r.getMessage()]
    assert len(messages) == 1 and name in messages[0] and f"(1 of {bns[0].num_features})" in messages[0]
