"""Data-free criteria: magnitude, random, SynFlow against hand-made references."""

import copy

import pytest
import torch
from torch import nn

from slimkit.importance import magnitude, random_scores, synflow, synflow_schedule
from tests.importance.helpers import D, _init, mlp_layers, scoring, tiny_mlp


def test_magnitude_is_absolute_weight():
    model = tiny_mlp()
    scores = magnitude(model, mlp_layers(model))
    for name, layer in mlp_layers(model).items():
        assert scores[name].shape == layer.weight.shape
        assert torch.equal(scores[name], layer.weight.abs())


def test_random_scores_are_seeded_uniform():
    model = tiny_mlp()
    layers = mlp_layers(model)
    first = random_scores(model, layers, scoring(generator=torch.Generator().manual_seed(3)))
    again = random_scores(model, layers, scoring(generator=torch.Generator().manual_seed(3)))
    other = random_scores(model, layers, scoring(generator=torch.Generator().manual_seed(4)))
    for name, layer in layers.items():
        assert first[name].shape == layer.weight.shape
        assert torch.equal(first[name], again[name])
        assert not torch.equal(first[name], other[name])
        assert 0 <= first[name].min() and first[name].max() < 1


# ----------------------------------------------------------------------------------------------


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
    scores = synflow(model, layers, scoring(input_shape=(3,)))
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


def test_synflow_schedule_starts_where_the_scheme_can():
    """From the densest masks a scheme allows (patterns: 4/9) down to the target, exponentially."""
    assert synflow_schedule(0.01, 2, start_density=1.0) == synflow_schedule(0.01, 2)
    schedule = synflow_schedule(0.1, 4, start_density=0.4)
    assert schedule[-1] == pytest.approx(0.1) and schedule[0] < 0.4
    ratios = [b / a for a, b in zip(schedule, schedule[1:])]
    assert ratios == pytest.approx([ratios[0]] * 3) and ratios[0] == pytest.approx(0.25 ** 0.25)
    with pytest.raises(ValueError, match="start_density"):
        synflow_schedule(0.5, 3, start_density=0.4)
