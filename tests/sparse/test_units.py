"""A scheme's units view: the same counts as its make_mask, ids and positions that round-trip,
and the survivor / growth choice every storage's mutation uses."""

import pytest
import torch

from slimkit.sparse.schemes import BlockScheme, ChannelScheme, NMScheme, PatternScheme, UnstructuredScheme
from slimkit.sparse.units import (
    PatternUnits, SegmentUnits, choose_mutation, first_occurrences, kept_count, sample_absent,
)

DENSITIES = (0.01, 0.05, 0.1, 0.2, 0.25, 1 / 3, 0.4, 0.5, 0.77, 0.9, 1.0)
CASES = [  # (scheme, weight shapes it has a units view for)
    (UnstructuredScheme(), [(20, 30), (12, 7, 3, 3), (5, 1)]),
    (ChannelScheme(dim=0), [(20, 30), (12, 7, 3, 3), (1, 9)]),
    (ChannelScheme(dim=1), [(20, 30), (12, 7, 3, 3)]),
    (BlockScheme(block=(4, 4), prune="rows"), [(20, 32), (12, 8, 1, 1), (3, 4)]),
    (BlockScheme(block=(2, 3), prune="rows"), [(10, 9, 3, 3), (4, 6)]),
    (PatternScheme(), [(12, 7, 3, 3), (6, 10, 3, 3)]),
    (PatternScheme(num_patterns=3), [(4, 5, 3, 3)]),
]


def _linear(mask):
    return torch.nonzero(mask.flatten()).flatten()


@pytest.mark.parametrize("scheme, shapes", CASES, ids=lambda c: repr(c) if not isinstance(c, list) else "")
def test_the_units_view_counts_what_make_mask_keeps(scheme, shapes):
    """The seam every storage shares: how many units a density keeps, and which weights a unit
    holds, are the scheme's make_mask rules (masked layers), for compressed layers too."""
    g = torch.Generator().manual_seed(0)
    for shape in shapes:
        view = scheme.units(shape)
        for density in DENSITIES:
            density = min(density, scheme.max_density(shape))
            mask = scheme.make_mask(torch.rand(shape, generator=g), density)
            linear = _linear(mask)
            assert view.kept(density) * view.size == linear.numel(), (shape, density)
            ids = view.ids(linear)
            assert ids.numel() == view.kept(density)
            assert bool((ids[1:] > ids[:-1]).all()) and int(ids.max()) < view.count
            assert torch.equal(view.positions(ids), linear)
            view.check(linear)


def test_channel_units_group_values_by_channel():
    view = ChannelScheme(dim=1).units((3, 4, 2))
    ids = torch.tensor([1, 3])
    values = torch.arange(view.positions(ids).numel())  # in position order: row by row
    assert view.unit_rows(values).tolist() == [[0, 1, 4, 5, 8, 9], [2, 3, 6, 7, 10, 11]]


@pytest.mark.parametrize("scheme, message", [
    (NMScheme(), "nm scheme has no units view"),
    (BlockScheme(prune="cols"), "block scheme has no units view"),
])
def test_schemes_without_units_say_so(scheme, message):
    with pytest.raises(ValueError, match=message):
        scheme.units((8, 8))


def test_shapes_that_do_not_split_into_units_are_clear_errors():
    with pytest.raises(ValueError, match="10 columns per row are not a multiple of the segment length 4"):
        BlockScheme(block=(4, 4)).units((4, 10))
    with pytest.raises(ValueError, match="3x3"):
        PatternScheme().units((4, 4, 5, 5))
    with pytest.raises(ValueError, match="not a multiple"):
        SegmentUnits((4, 10), 4)


def test_kept_count_matches_unstructured_rounding():
    assert kept_count(0.1, 1000) == 100
    assert kept_count(1e-9, 1000) == 1
    assert kept_count(1.0, 7) == 7


def test_first_occurrences_keeps_draw_order():
    assert first_occurrences(torch.tensor([5, 3, 5, 1, 3, 7])).tolist() == [5, 3, 1, 7]


def test_sample_absent_is_distinct_free_and_uniform():
    exclude = torch.arange(0, 100, 2)  # even positions taken
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(100)
    for _ in range(400):
        grown = sample_absent(10, 100, exclude, g)
        assert len(grown) == 10 and len(set(grown.tolist())) == 10
        assert not torch.isin(grown, exclude).any()
        counts[grown] += 1
    odd = counts[1::2]
    assert counts[0::2].sum() == 0
    assert odd.min() > 40 and odd.max() < 120  # expected 80 each


def test_sample_absent_refuses_impossible_growth():
    with pytest.raises(ValueError, match="only 2 of 10"):
        sample_absent(3, 10, torch.arange(8), torch.Generator())


def test_choose_mutation_keeps_the_most_important_and_never_regrows_dropped():
    positions = torch.tensor([2, 5, 7, 11, 13])
    importance = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.3])
    survivors, grown = choose_mutation(positions, importance, keep=3, total=5, numel=16, generator=torch.Generator())
    assert positions[survivors].tolist() == [2, 7, 13]
    assert len(grown) == 2 and not torch.isin(grown, positions).any()  # dropped 5 and 11 are excluded too


def test_ties_break_by_position():
    positions = torch.arange(6)
    survivors, _ = choose_mutation(positions, torch.zeros(6), keep=2, total=2, numel=6, generator=torch.Generator())
    assert survivors.tolist() == [0, 1]


def test_a_nearly_dense_layer_swaps_at_most_its_inactive_positions():
    """ERK leaves small layers nearly dense: 120 of 150 kept, asked to drop 36 and regrow 36."""
    positions = torch.arange(120)
    survivors, grown = choose_mutation(positions, torch.rand(120), keep=84, total=120, numel=150,
                                       generator=torch.Generator().manual_seed(0))
    assert survivors.numel() == 90 and grown.numel() == 30
    assert set(grown.tolist()) == set(range(120, 150))


def _pattern_view_and_ids(density=0.2, seed=0):
    shape = (6, 10, 3, 3)
    scheme = PatternScheme()
    torch.manual_seed(seed)
    view = scheme.units(shape)
    return view, view.ids(_linear(scheme.make_mask(torch.randn(shape), density)))


def test_pattern_growth_is_balanced_per_filter_and_never_regrows_a_held_kernel():
    view, ids = _pattern_view_and_ids()
    assert isinstance(view, PatternUnits) and view.size == 4 and view.count == 6 * 10 * 8
    held = set((ids // 8).tolist())
    per_filter = ids.numel() // 6
    keep, total = ids.numel() - 6, ids.numel()  # one kernel per filter moves
    survivors, grown = view.choose(ids, torch.rand(ids.numel()), keep, total, torch.Generator().manual_seed(3))
    assert survivors.numel() == keep and grown.numel() == 6
    assert sorted((grown // 8 // 10).tolist()) == list(range(6))  # one new kernel in every filter
    assert not set((grown // 8).tolist()) & held
    kept_rows = (ids[survivors] // 8 // 10).bincount(minlength=6)
    assert torch.all(kept_rows == per_filter - 1)


def test_pattern_positions_that_are_not_library_kernels_are_refused():
    view, ids = _pattern_view_and_ids()
    linear = view.positions(ids)
    with pytest.raises(ValueError, match="4-tap kernels"):
        view.check(linear[1:])
    full_kernel = torch.cat([linear, torch.arange(9) + 9 * 59]).unique()
    with pytest.raises(ValueError, match="4-tap kernels|patterns"):
        view.check(full_kernel)
