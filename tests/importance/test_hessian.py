"""Optimal Brain Damage: Fisher and Hutchinson diagonals against explicit references."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.importance import obd
from tests.importance.helpers import (
    NAMES, D, _init, batches, flat_loss, flat_weights, mlp_case, mlp_layers, relative_error, scoring, tiny_mlp,
    unflatten,
)


def test_obd_fisher_is_mean_squared_per_example_gradient():
    model, data, layers, weights = mlp_case()
    fisher = [torch.zeros_like(w) for w in weights]
    count = 0
    for x, y, _ in data:
        for i in range(len(x)):
            grads = torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), weights)
            for acc, g in zip(fisher, grads):
                acc += g.square()
            count += 1
    scores = obd(model, layers, scoring(data, num_batches=2), estimator="fisher")
    for name, f, w in zip(layers, fisher, weights):
        torch.testing.assert_close(scores[name], (0.5 * f / count * w.square()).detach(), rtol=1e-12, atol=1e-15)


def test_obd_hutchinson_approaches_explicit_hessian_diagonal():
    model, data = tiny_mlp(seed=2), batches(count=1, n=16)
    layers = mlp_layers(model)
    x, y, _ = data[0]
    theta = flat_weights(model, NAMES)
    hessian = torch.autograd.functional.hessian(lambda f: flat_loss(model, NAMES, f, x, y), theta)
    expected = unflatten(0.5 * hessian.diagonal().clamp(min=0) * theta.square(), layers)
    scores = obd(model, layers, scoring(data, generator=torch.Generator().manual_seed(0)), samples=4000)
    assert relative_error(scores, expected) < 0.1


def test_obd_hutchinson_is_exact_for_a_diagonal_quadratic():
    """MSE of a linear layer on orthogonal inputs: H is diagonal, so z ⊙ Hz = diag(H) for any sign vector z."""
    layer = _init(nn.Linear(4, 3, bias=False).to(D), 7)
    scales = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=D)
    x, y = torch.diag(scales), torch.randn(4, 3, dtype=D, generator=torch.Generator().manual_seed(0))
    scores = obd(layer, {"w": layer}, scoring([(x, y)], loss_fn=F.mse_loss, generator=torch.Generator()), samples=1)
    n, outputs = 4, 3
    hessian_diagonal = 2 * scales.square() / (n * outputs)  # d²/dw_oi² of mean((x w_o - y)²), the same for every o
    expected = 0.5 * hessian_diagonal[None, :] * layer.weight.detach().square()
    torch.testing.assert_close(scores["w"], expected, rtol=1e-14, atol=0)


def test_obd_rejects_unknown_estimator():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="estimator"):
        obd(model, mlp_layers(model), scoring(batches()), estimator="exact")
