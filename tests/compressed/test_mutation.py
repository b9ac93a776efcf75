"""Mutation of compressed layers: values and optimizer state follow the survivors, grown units
start at zero, and the scheme's units stay whole (pattern kernels, row segments)."""

import pytest
import torch
from torch import nn

from slimkit.compressed import apply_mutation, choose_mutation, compress, compressed_layers, importance_of
from slimkit.sparse.masking import apply_masks
from slimkit.sparse.schemes import BlockScheme, PatternScheme

from tests.compressed.helpers import make_mest, train_compressed_dst

SHAPE = (6, 10, 3, 3)


def _compressed_linear(density=0.3, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(30, 20))
    apply_masks(model, {"0": torch.rand(20, 30) < density})
    layer = compress(model)["0"]
    return model, layer


def test_apply_mutation_moves_values_and_optimizer_state():
    model, layer = _compressed_linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(8, 30)).sum().backward()
    optimizer.step()
    before_positions = layer.linear_indices()
    before_values = layer.values.detach().clone()
    before_momentum = optimizer.state[layer.values]["momentum_buffer"].clone()
    importance = layer.values.detach().abs()
    keep = layer.nnz - 10
    survivors, grown = choose_mutation(before_positions, importance, keep, layer.nnz, layer.weight_numel, torch.Generator())
    apply_mutation(layer, survivors, grown, optimizer)

    after = layer.linear_indices()
    assert layer.nnz == len(before_positions)
    assert torch.all(after[1:] > after[:-1])
    momentum = optimizer.state[layer.values]["momentum_buffer"]
    assert momentum.shape == layer.values.shape
    slot = {int(p): i for i, p in enumerate(after)}
    for old_slot in survivors.tolist():
        new_slot = slot[int(before_positions[old_slot])]
        assert layer.values[new_slot] == before_values[old_slot]
        assert momentum[new_slot] == before_momentum[old_slot]
    for position in grown.tolist():
        assert layer.values[slot[position]] == 0 and momentum[slot[position]] == 0
    # the rebuilt layer still trains: its gradient has the new size
    model(torch.randn(4, 30)).sum().backward()
    assert layer.values.grad.shape == layer.values.shape
    optimizer.step()


def _pattern_layer(density=0.2, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(10, 6, 3, padding=1))
    scheme = PatternScheme()
    apply_masks(model, {"0": scheme.make_mask(torch.randn(SHAPE), density)})
    layer = compress(model, scheme=scheme)["0"]
    return model, layer, scheme


def test_compressing_under_a_scheme_takes_its_units():
    _, layer, scheme = _pattern_layer()
    ids = layer.units()
    assert torch.equal(layer.unit_view.positions(ids), layer.linear_indices())
    assert layer.unit_size == 4 and layer.unit_count == 6 * 10 * len(scheme.patterns)
    assert layer.kept_units(0.2) * 4 == int(scheme.make_mask(torch.randn(SHAPE), 0.2).sum())


def test_pattern_mutation_keeps_the_scheme_valid():
    model, layer, scheme = _pattern_layer()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        units = layer.units()
        survivors, grown = layer.unit_view.choose(units, importance_of(layer, 0.0), units.numel() - 12, units.numel(), g)
        apply_mutation(layer, survivors, grown)
        scheme.validate(layer.dense_mask())
    assert layer.nnz == layer.kept_units(0.2) * 4


def test_masks_that_do_not_fit_the_schemes_units_are_clear_errors():
    model = nn.Sequential(nn.Conv2d(10, 6, 3))
    mask = PatternScheme().make_mask(torch.randn(SHAPE), 0.2)
    mask[0, 0] = True  # a full 3x3 kernel is not a pattern
    apply_masks(model, {"0": mask})
    with pytest.raises(ValueError, match="layer '0'.*4-tap kernels|layer '0'.*patterns"):
        compress(model, scheme=PatternScheme())
    model = nn.Sequential(nn.Linear(10, 4))
    apply_masks(model, {"0": torch.rand(4, 10) < 0.5})
    with pytest.raises(ValueError, match="not a multiple of the segment length 4"):
        compress(model, scheme=BlockScheme(block=(4, 4)))
    model = nn.Sequential(nn.Linear(8, 4))
    half_segment = torch.zeros(4, 8, dtype=torch.bool)
    half_segment[0, 2:6] = True  # 4 weights, but across two segments
    apply_masks(model, {"0": half_segment})
    with pytest.raises(ValueError, match="whole, aligned 1x4 row segments"):
        compress(model, scheme=BlockScheme(block=(4, 4)))
    with pytest.raises(ValueError, match="units apply to the csr layout"):
        compress(model, layout="channel0", scheme=BlockScheme())
    assert not compressed_layers(model)


@pytest.mark.parametrize("method", ["mest", "mest-ems"])
def test_dynamic_sparse_training_under_the_pattern_scheme_in_compressed_storage(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 4))
    common = dict(scheme="pattern", update_every=2, seed=0, dense_layers=["0"])
    dst = make_mest(method, model, 0.8, **common)
    dst.bind(None, total_steps=20)
    assert dst.use_compressed_storage() == ["2", "4"]  # "0" stays dense; the Linear has no 3x3 kernels
    moved = train_compressed_dst(model, dst)
    assert dst.updates >= 3 and moved > 0
    target = dst.densities(0.8)
    for name, layer in compressed_layers(model).items():
        dst.scheme.validate(layer.dense_mask())
        assert layer.nnz == layer.kept_units(target[name]) * 4
