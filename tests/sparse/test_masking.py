import pytest
import torch
from torch import nn

from slimkit.sparse.masking import (
    apply_masks, enforce_masks, get_masks, original_weight, remove_masks, sparsity_report,
)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def _random_masks(model, density=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.rand(m.weight.shape, generator=gen) < density for name, m in model.named_children() if isinstance(m, nn.Linear)}


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ],
)
def test_pruned_weights_stay_exactly_zero_through_training(make_opt):
    model = _net()
    opt = make_opt(model.parameters())
    # build optimizer state while dense, so stale momentum/moments exist when masks arrive
    for _ in range(3):
        model(torch.randn(8, 12)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    masks = _random_masks(model)
    apply_masks(model, masks, opt)
    for _ in range(50):
        model(torch.randn(8, 12)).pow(2).mean().backward()
        for name, mask in masks.items():
            assert torch.all(original_weight(getattr(model, name)).grad[~mask] == 0)
        opt.step()
        opt.zero_grad()
        enforce_masks(model)
        for name, mask in masks.items():
            layer = getattr(model, name)
            assert torch.all(layer.weight[~mask] == 0) and torch.all(original_weight(layer)[~mask] == 0)
            assert torch.any(layer.weight[mask] != 0)


def test_regrown_weights_start_at_zero_with_fresh_state():
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masks = _random_masks(model)
    apply_masks(model, masks, opt)
    model(torch.randn(8, 12)).pow(2).mean().backward()
    opt.step()
    grown = {name: torch.ones_like(m) for name, m in masks.items()}
    apply_masks(model, grown, opt)
    for name, mask in masks.items():
        weight = original_weight(getattr(model, name))
        assert torch.all(weight[~mask] == 0)
        assert torch.all(opt.state[weight]["momentum_buffer"][~mask] == 0)


def test_bad_masks_change_nothing():
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = {"0": torch.ones(16, 12, dtype=torch.bool), "2": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="mask for '2' has shape"):
        apply_masks(model, bad)
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        apply_masks(model, {"fc9": torch.ones(1)})
    with pytest.raises(ValueError, match="has no weight"):
        apply_masks(model, {"1": torch.ones(1)})
    assert get_masks(model) == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_report_and_remove():
    model = _net()
    masks = _random_masks(model, density=0.25)
    apply_masks(model, masks)
    report = sparsity_report(model)
    kept = sum(int(m.sum()) for m in masks.values())
    assert report.nonzero == kept and report.numel == 12 * 16 + 16 * 4
    assert "global" in str(report)
    x = torch.randn(5, 12)
    expected = model(x)
    remove_masks(model)
    assert get_masks(model) == {} and type(model[0]) is nn.Linear
    assert torch.equal(model(x), expected)
    assert sparsity_report(model).nonzero == kept


def test_baking_a_deep_copy_leaves_the_original_masked():
    import copy

    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    masks = _random_masks(model)
    apply_masks(model, masks)
    twin = remove_masks(copy.deepcopy(model))
    assert get_masks(twin) == {} and set(get_masks(model)) == set(masks)
    assert torch.equal(twin[0].weight, model[0].weight)
    params = {id(p) for p in model.parameters()}
    remove_masks(model)
    assert {id(p) for p in model.parameters()} == params  # the optimizer's tensors are still the model's
    assert all(id(p) in params for group in opt.param_groups for p in group["params"])
