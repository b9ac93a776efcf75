"""Pruning criteria checked against hand-computed references on tiny float64 networks."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from slimkit.models.resnet_cifar import BasicBlock
from slimkit.sparse.criteria import (
    CRITERIA,
    bn_gamma,
    get_criterion,
    grasp,
    magnitude,
    obd,
    random_scores,
    snip,
    synflow,
    synflow_schedule,
    taylor,
)

D = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is much faster on a shared machine (conftest restores the count)."""
    torch.set_num_threads(1)


def _init(model: nn.Module, seed: int, scale: float = 0.7) -> nn.Module:
    """Seeded Gaussian parameters (without touching the global RNG)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(scale * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return model


def tiny_mlp(seed: int = 0, bias: bool = True) -> nn.Sequential:
    return _init(nn.Sequential(nn.Linear(4, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3, bias=bias)).to(D), seed)


def mlp_layers(model: nn.Sequential) -> dict[str, nn.Module]:
    return {"fc1": model[0], "fc2": model[2]}


def batches(count: int = 2, n: int = 6, features: int = 4, classes: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, features, generator=gen, dtype=D),
            torch.randint(0, classes, (n,), generator=gen),
            torch.arange(n),  # (inputs, targets, indices) batches are accepted too
        )
        for _ in range(count)
    ]


def flat_loss(model, names, flat, x, y, temperature=1.0):
    """Cross-entropy as a function of the named weights, flattened into one vector."""
    params, offset = {}, 0
    shapes = dict(model.named_parameters())
    for name in names:
        numel = shapes[name].numel()
        params[name] = flat[offset : offset + numel].view(shapes[name].shape)
        offset += numel
    return F.cross_entropy(torch.func.functional_call(model, params, (x,)) / temperature, y)


def flat_weights(model, names):
    shapes = dict(model.named_parameters())
    return torch.cat([shapes[name].detach().flatten() for name in names])


def unflatten(flat, layers):
    out, offset = {}, 0
    for name, layer in layers.items():
        numel = layer.weight.numel()
        out[name] = flat[offset : offset + numel].view(layer.weight.shape)
        offset += numel
    return out


def relative_error(actual: dict, expected: dict) -> float:
    a = torch.cat([actual[k].detach().flatten() for k in expected])
    e = torch.cat([expected[k].detach().flatten() for k in expected])
    return float((a - e).norm() / e.norm()) if e.norm() > 0 else float((a - e).norm())


NAMES = ["0.weight", "2.weight"]

# ----------------------------------------------------------------------------------------------
# data-free criteria


def test_magnitude_is_absolute_weight():
    model = tiny_mlp()
    scores = magnitude(model, mlp_layers(model))
    for name, layer in mlp_layers(model).items():
        assert scores[name].shape == layer.weight.shape
        assert torch.equal(scores[name], layer.weight.abs())


def test_random_scores_are_seeded_uniform():
    model = tiny_mlp()
    layers = mlp_layers(model)
    first = random_scores(model, layers, generator=torch.Generator().manual_seed(3))
    again = random_scores(model, layers, generator=torch.Generator().manual_seed(3))
    other = random_scores(model, layers, generator=torch.Generator().manual_seed(4))
    for name, layer in layers.items():
        assert first[name].shape == layer.weight.shape
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], other[name])
        assert 0 <= first[name].min() and first[name].max() < 1


# ----------------------------------------------------------------------------------------------
# gradient criteria


def test_snip_equals_hand_computed_gradient_times_weight():
    model, data = tiny_mlp(), batches()
    layers = mlp_layers(model)
    weights = [layer.weight for layer in layers.values()]
    grads = [torch.zeros_like(w) for w in weights]
    for x, y, _ in data:
        for acc, g in zip(grads, torch.autograd.grad(F.cross_entropy(model(x), y), weights)):
            acc += g / len(data)
    scores = snip(model, layers, data, num_batches=2)
    for (name, layer), g in zip(layers.items(), grads):
        torch.testing.assert_close(scores[name], (g * layer.weight).abs().detach(), rtol=1e-12, atol=1e-14)
    one_batch = snip(model, layers, data)  # num_batches defaults to 1
    g0 = torch.autograd.grad(F.cross_entropy(model(data[0][0]), data[0][1]), weights)
    torch.testing.assert_close(one_batch["fc1"], (g0[0] * weights[0]).abs().detach(), rtol=1e-12, atol=1e-14)


def test_taylor_averages_per_batch_magnitudes():
    model, data = tiny_mlp(), batches()
    layers = mlp_layers(model)
    weights = [layer.weight for layer in layers.values()]
    expected = [torch.zeros_like(w) for w in weights]
    for x, y, _ in data:
        for acc, g, w in zip(expected, torch.autograd.grad(F.cross_entropy(model(x), y), weights), weights):
            acc += (g * w).abs().detach() / len(data)
    scores = taylor(model, layers, data, num_batches=2)
    for name, e in zip(layers, expected):
        torch.testing.assert_close(scores[name], e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_matches_explicit_hessian_times_gradient(temperature):
    model, data = tiny_mlp(), batches()
    layers = mlp_layers(model)
    theta = flat_weights(model, NAMES)
    grad = torch.zeros_like(theta)
    for x, y, _ in data:
        grad += torch.func.grad(lambda f: flat_loss(model, NAMES, f, x, y, temperature))(theta) / len(data)
    hg = torch.zeros_like(theta)
    for x, y, _ in data:
        hessian = torch.autograd.functional.hessian(lambda f: flat_loss(model, NAMES, f, x, y, temperature), theta)
        hg += hessian @ grad / len(data)
    expected = unflatten(theta * hg, layers)  # = -S of the paper
    scores = grasp(model, layers, data, num_batches=2, temperature=temperature)
    assert relative_error(scores, expected) < 1e-8
    assert all(scores[k].shape == expected[k].shape for k in expected)


def test_grasp_rejects_bad_temperature():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="temperature"):
        grasp(model, mlp_layers(model), batches(), temperature=0.0)


def _synflow_objective(model: nn.Module, input_shape):
    """R(θ) of the |θ| network, as a function of one weight's entries (a hand-made reference)."""
    net = copy.deepcopy(model).to(D).eval()
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones((1, *input_shape), dtype=D)

    def objective(name, weight):
        with torch.no_grad():
            return torch.func.functional_call(net, {name: weight}, (ones,)).sum()

    return net, objective


def test_synflow_matches_finite_differences():
    model = _init(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), 5)
    layers = {"a": model[0], "b": model[2], "c": model[4]}
    scores = synflow(model, layers, input_shape=(3,))
    net, objective = _synflow_objective(model, (3,))
    step = 1e-5
    for name, qualified in zip(layers, ["0.weight", "2.weight", "4.weight"]):
        theta = dict(net.named_parameters())[qualified].detach()
        for index in [(0, 0), (1, 2), (theta.shape[0] - 1, theta.shape[1] - 1)]:
            plus, minus = theta.clone(), theta.clone()
            plus[index] += step
            minus[index] -= step
            derivative = (objective(qualified, plus) - objective(qualified, minus)) / (2 * step)
            expected = abs(float(theta[index] * derivative))
            assert float(scores[name][index]) == pytest.approx(expected, rel=1e-7)
        assert scores[name].dtype == D
    assert model[0].weight.dtype == torch.float32  # the caller's model keeps its dtype and signs


def test_synflow_schedule_is_exponential():
    assert synflow_schedule(0.01, 2) == pytest.approx([0.1, 0.01])
    assert synflow_schedule(0.5, 1) == [0.5]
    with pytest.raises(ValueError, match="final_density"):
        synflow_schedule(0.0, 3)
    with pytest.raises(ValueError, match="iterations"):
        synflow_schedule(0.1, 0)


def test_obd_fisher_is_mean_squared_per_example_gradient():
    model, data = tiny_mlp(), batches()
    layers = mlp_layers(model)
    weights = [layer.weight for layer in layers.values()]
    fisher = [torch.zeros_like(w) for w in weights]
    count = 0
    for x, y, _ in data:
        for i in range(len(x)):
            grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), weights)
            for acc, g in zip(fisher, grads):
                acc += g.square()
            count += 1
    scores = obd(model, layers, data, num_batches=2, estimator="fisher")
    for name, f, w in zip(layers, fisher, weights):
        torch.testing.assert_close(scores[name], (0.5 * f / count * w.square()).detach(), rtol=1e-12, atol=1e-15)


def test_obd_hutchinson_approaches_explicit_hessian_diagonal():
    model, data = tiny_mlp(seed=2), batches(count=1, n=16)
    layers = mlp_layers(model)
    x, y, _ = data[0]
    theta = flat_weights(model, NAMES)
    hessian = torch.autograd.functional.hessian(lambda f: flat_loss(model, NAMES, f, x, y), theta)
    expected = unflatten(0.5 * hessian.diagonal().clamp(min=0) * theta.square(), layers)
    scores = obd(model, layers, data, samples=4000, generator=torch.Generator().manual_seed(0))
    assert relative_error(scores, expected) < 0.1


def test_obd_hutchinson_is_exact_for_a_diagonal_quadratic():
    """MSE of a linear layer on orthogonal inputs: H is diagonal, so z ⊙ Hz = diag(H) for any sign vector z."""
    layer = _init(nn.Linear(4, 3, bias=False).to(D), 7)
    scales = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=D)
    x, y = torch.diag(scales), torch.randn(4, 3, dtype=D, generator=torch.Generator().manual_seed(0))
    scores = obd(layer, {"w": layer}, [(x, y)], loss_fn=F.mse_loss, samples=1, generator=torch.Generator())
    n, outputs = 4, 3
    hessian_diagonal = 2 * scales.square() / (n * outputs)  # d²/dw_oi² of mean((x w_o - y)²), the same for every o
    expected = 0.5 * hessian_diagonal[None, :] * layer.weight.detach().square()
    torch.testing.assert_close(scores["w"], expected, rtol=1e-14, atol=0)


def test_obd_rejects_unknown_estimator():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="estimator"):
        obd(model, mlp_layers(model), batches(), estimator="exact")


# ----------------------------------------------------------------------------------------------
# BatchNorm scaling factors


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


# ----------------------------------------------------------------------------------------------
# properties shared by every criterion


class Mask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


def _conv_net() -> nn.Sequential:
    return _init(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.0),
            nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
        ),
        seed=11,
        scale=0.3,
    )


def _conv_batches():
    gen = torch.Generator().manual_seed(2)
    return [(torch.randn(3, 3, 4, 4, generator=gen), torch.randint(0, 3, (3,), generator=gen)) for _ in range(2)]


def _kwargs(**extra):
    base = dict(batches=_conv_batches(), input_shape=(3, 4, 4), generator=torch.Generator().manual_seed(0))
    return {**base, **extra}


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

    scores = get_criterion(name)(model, layers, **_kwargs(**extra))

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
    scored_masked = criterion(masked, {"conv": masked[0], "fc": masked[5]}, **_kwargs(**extra))
    scored_plain = criterion(plain, {"conv": plain[0], "fc": plain[5]}, **_kwargs(**extra))

    for key in ("conv", "fc"):
        torch.testing.assert_close(scored_masked[key], scored_plain[key], rtol=1e-5, atol=1e-7)
    if name not in ("random", "bn_gamma"):  # value-based scores vanish where the weight is masked out
        assert (scored_masked["conv"][mask == 0] == 0).all()


def test_snip_on_a_parametrized_layer_uses_the_gradient_of_the_effective_weight():
    model = tiny_mlp()
    mask = torch.tensor([[1.0, 0.0, 2.0, 1.0]] * 5, dtype=D)
    parametrize.register_parametrization(model[0], "weight", Mask(mask))
    x, y, _ = batches(count=1)[0]
    weight = model[0].weight  # one evaluation of the parametrization, used in the forward below
    hidden = torch.tanh(F.linear(x, weight, model[0].bias))
    (grad,) = torch.autograd.grad(F.cross_entropy(model[2](hidden), y), weight)
    scores = snip(model, {"fc1": model[0]}, [(x, y)])
    torch.testing.assert_close(scores["fc1"], (grad * weight).abs().detach(), rtol=1e-12, atol=1e-14)


def test_criteria_registry_and_errors():
    assert set(CRITERIA) == {"magnitude", "random", "snip", "grasp", "synflow", "obd", "taylor", "bn_gamma"}
    assert get_criterion("snip") is snip and get_criterion("random") is random_scores
    with pytest.raises(ValueError, match="unknown criterion 'nope'.*magnitude"):
        get_criterion("nope")
    model, stranger = tiny_mlp(), nn.Linear(2, 2)
    with pytest.raises(ValueError, match="not a submodule"):
        magnitude(model, {"x": stranger})
    with pytest.raises(ValueError, match="empty"):
        snip(model, mlp_layers(model), [])
    with pytest.raises(ValueError, match="num_batches"):
        snip(model, mlp_layers(model), batches(), num_batches=0)
