"""Unit rules of CSR layers: pattern kernels (pattern scheme) and row segments (block scheme)."""

import pytest
import torch
from torch import nn

from slimkit.compressed import compress, compressed_layers
from slimkit.compressed.units import PatternUnits, SegmentUnits
from slimkit.sparse.masking import apply_masks
from slimkit.sparse.schemes import PatternScheme

from tests.compressed.helpers import make_mest, train_compressed_dst

SHAPE = (6, 10, 3, 3)


def _pattern_layer(density=0.2, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(10, 6, 3, padding=1))
    scheme = PatternScheme()
    apply_masks(model, {"0": scheme.make_mask(torch.randn(SHAPE), density)})
    layer = compress(model, unit_rule=PatternUnits(scheme.patterns))["0"]
    return model, layer, scheme


def test_pattern_ids_and_positions_round_trip():
    _, layer, scheme = _pattern_layer()
    ids = layer.units()
    assert torch.equal(layer.unit_rule.positions(ids), layer.linear_indices())
    assert layer.unit_size == 4 and layer.unit_count == 6 * 10 * len(scheme.patterns)
    assert layer.kept_units(0.2) * 4 == int(scheme.make_mask(torch.randn(SHAPE), 0.2).sum())


def test_pattern_growth_is_balanced_per_filter_and_never_regrows_a_held_kernel():
    _, layer, scheme = _pattern_layer()
    ids = layer.units()
    held = set((ids // 8).tolist())
    per_filter = ids.numel() // 6
    keep, total = ids.numel() - 6, ids.numel()  # one kernel per filter moves
    survivors, grown = layer.choose_units(layer.unit_importance(0.0), keep, total, torch.Generator().manual_seed(3))
    assert survivors.numel() == keep and grown.numel() == 6
    assert sorted((grown // 8 // 10).tolist()) == list(range(6))  # one new kernel in every filter
    assert not set((grown // 8).tolist()) & held
    kept_rows = (ids[survivors] // 8 // 10).bincount(minlength=6)
    assert torch.all(kept_rows == per_filter - 1)


def test_pattern_mutation_keeps_the_scheme_valid():
    model, layer, scheme = _pattern_layer()
    from slimkit.compressed import apply_mutation

    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        survivors, grown = layer.choose_units(layer.unit_importance(0.0), layer.nnz // 4 - 12, layer.nnz // 4, g)
        apply_mutation(layer, survivors, grown)
        scheme.validate(layer.dense_mask())
    assert layer.nnz == layer.kept_units(0.2) * 4


def test_masks_that_do_not_fit_a_unit_rule_are_clear_errors():
    model = nn.Sequential(nn.Conv2d(10, 6, 3))
    mask = PatternScheme().make_mask(torch.randn(SHAPE), 0.2)
    mask[0, 0] = True  # a full 3x3 kernel is not a pattern
    apply_masks(model, {"0": mask})
    with pytest.raises(ValueError, match="layer '0'.*4-tap kernels|layer '0'.*patterns"):
        compress(model, unit_rule=PatternUnits(PatternScheme().patterns))
    model = nn.Sequential(nn.Linear(10, 4))
    apply_masks(model, {"0": torch.rand(4, 10) < 0.5})
    with pytest.raises(ValueError, match="not a multiple of the segment length 4"):
        compress(model, unit_rule=SegmentUnits(4))
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
