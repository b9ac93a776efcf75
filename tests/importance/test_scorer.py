"""Properties every registered criterion shares: the caller's model is untouched, effective weights are scored."""

import pytest
import torch
from torch.nn.utils import parametrize

from slimkit.importance import CRITERIA, get_criterion
from tests.importance.helpers import Mask, _conv_batches, _conv_net, scoring


def _inputs():
    return scoring(_conv_batches(), input_shape=(3, 4, 4), generator=torch.Generator().manual_seed(0))


CASES = [(name, {}) for name in CRITERIA] + [("obd", {"estimator": "fisher"})]


@pytest.mark.parametrize("name,extra", CASES, ids=[f"{n}{'-' + '-'.join(e.values()) if e else ''}" for n, e in CASES])
def test_criterion_leaves_the_model_as_it_found_it(name, extra):
    model = _conv_net()
    parametrize.register_parametrization(model[0], "weight", Mask((torch.rand(4, 3, 3, 3) > 0.3).float()))
    model.train()
    model[3].eval()  # a mixed-mode model: each module's own flag must survive
    model[5].bias.requires_grad_(False)
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    modes = {k: m.training for k, m in model.named_modules()}
    layers = {"conv": model[0], "fc": model[5]}

    scores = get_criterion(name)(model, layers, _inputs(), **extra)

    assert set(scores) == set(layers)
    for key, layer in layers.items():
        assert scores[key].shape == layer.weight.shape
        assert torch.isfinite(scores[key]).all()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]) and value.dtype == state[key].dtype, key
    for key, param in model.named_parameters():
        assert torch.equal(param.grad, grads[key]) and param.requires_grad == flags[key], key
    assert {k: m.training for k, m in model.named_modules()} == modes
    assert parametrize.is_parametrized(model[0], "weight")


@pytest.mark.parametrize("keep_value", [1.0, 1.5], ids=["mask", "mask-and-scale"])
@pytest.mark.parametrize("name,extra", CASES, ids=[f"{n}{'-' + '-'.join(e.values()) if e else ''}" for n, e in CASES])
def test_parametrized_weights_are_scored_by_their_effective_value(name, extra, keep_value):
    """A parametrized model scores like a plain copy whose weights are the effective (masked) ones."""
    masked = _conv_net().eval()
    mask = (torch.rand(4, 3, 3, 3, generator=torch.Generator().manual_seed(5)) > 0.4).float() * keep_value
    parametrize.register_parametrization(masked[0], "weight", Mask(mask))
    plain = _conv_net().eval()  # deepcopy + remove_parametrizations would strip the class shared with `masked`
    with torch.no_grad():
        plain[0].weight.copy_(masked[0].weight)
    assert not torch.equal(masked[0].weight, masked[0].parametrizations.weight.original)

    criterion = get_criterion(name)
    scored_masked = criterion(masked, {"conv": masked[0], "fc": masked[5]}, _inputs(), **extra)
    scored_plain = criterion(plain, {"conv": plain[0], "fc": plain[5]}, _inputs(), **extra)

    for key in ("conv", "fc"):
        torch.testing.assert_close(scored_masked[key], scored_plain[key], rtol=1e-5, atol=1e-7)
    if name not in ("random", "bn_gamma"):  # value-based scores vanish where the weight is masked out
        assert (scored_masked["conv"][mask == 0] == 0).all()
