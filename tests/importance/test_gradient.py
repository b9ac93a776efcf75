"""Gradient criteria: SNIP, Taylor, GraSP against hand-computed gradients and explicit Hessians."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from slimkit.importance import grasp, snip, taylor
from tests.importance.helpers import (
    NAMES, D, Mask, batches, flat_loss, flat_weights, mlp_case, mlp_layers, relative_error, scoring, tiny_mlp,
    unflatten,
)


def test_snip_equals_hand_computed_gradient_times_weight():
    model, data, layers, weights = mlp_case()
    grads = [torch.zeros_like(w) for w in weights]
    for x, y, _ in data:
        for acc, g in zip(grads, torch.autograd.grad(F.cross_entropy(model(x), y), weights)):
            acc += g / len(data)
    scores = snip(model, layers, scoring(data, num_batches=2))
    for (name, layer), g in zip(layers.items(), grads):
        torch.testing.assert_close(scores[name], (g * layer.weight).abs().detach(), rtol=1e-12, atol=1e-14)
    one_batch = snip(model, layers, scoring(data))  # num_batches defaults to 1
    g0 = torch.autograd.grad(F.cross_entropy(model(data[0][0]), data[0][1]), weights)
    torch.testing.assert_close(one_batch["fc1"], (g0[0] * weights[0]).abs().detach(), rtol=1e-12, atol=1e-14)


def test_taylor_averages_per_batch_magnitudes():
    model, data, layers, weights = mlp_case()
    expected = [torch.zeros_like(w) for w in weights]
    for x, y, _ in data:
        for acc, g, w in zip(expected, torch.autograd.grad(F.cross_entropy(model(x), y), weights), weights):
            acc += (g * w).abs().detach() / len(data)
    scores = taylor(model, layers, scoring(data, num_batches=2))
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
    scores = grasp(model, layers, scoring(data, num_batches=2), temperature=temperature)
    assert relative_error(scores, expected) < 1e-8
    assert all(scores[k].shape == expected[k].shape for k in expected)


def test_grasp_rejects_bad_temperature():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="temperature"):
        grasp(model, mlp_layers(model), scoring(batches()), temperature=0.0)


def test_snip_on_a_parametrized_layer_uses_the_gradient_of_the_effective_weight():
    model = tiny_mlp()
    mask = torch.tensor([[1.0, 0.0, 2.0, 1.0]] * 5, dtype=D)
    parametrize.register_parametrization(model[0], "weight", Mask(mask))
    x, y, _ = batches(count=1)[0]
    weight = model[0].weight  # one evaluation of the parametrization, used in the forward below
    hidden = torch.tanh(F.linear(x, weight, model[0].bias))
    (grad,) = torch.autograd.grad(F.cross_entropy(model[2](hidden), y), weight)
    scores = snip(model, {"fc1": model[0]}, scoring([(x, y)]))
    torch.testing.assert_close(scores["fc1"], (grad * weight).abs().detach(), rtol=1e-12, atol=1e-14)
