"""Sparsity schemes: valid masks at the requested density, highest scores kept, clear errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from slimkit.sparse.schemes import (
    PATTERN_DENSITY,
    PATTERNS,
    BlockScheme,
    ChannelScheme,
    NMScheme,
    PatternScheme,
    Scheme,
    UnstructuredScheme,
    make_scheme,
)

PROPERTY = settings(max_examples=50, deadline=None)

# --- strategies ------------------------------------------------------------------------------

linear_shapes = st.tuples(st.integers(1, 12), st.integers(1, 20))
conv_shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4))
conv1d_shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 5))
any_shapes = st.one_of(linear_shapes, conv_shapes, conv1d_shapes)
pattern_shapes = st.tuples(st.integers(1, 6), st.integers(1, 7)).map(lambda s: (*s, 3, 3))
densities = st.one_of(st.floats(0.001, 1.0), st.sampled_from([1e-6, 0.5, 1.0]))

general_schemes = st.one_of(
    st.just(UnstructuredScheme()),
    st.sampled_from([0, 1]).map(lambda dim: ChannelScheme(dim=dim)),
    st.builds(
        BlockScheme,
        block=st.tuples(st.integers(1, 5), st.integers(1, 5)),
        prune=st.sampled_from(["rows", "cols"]),
    ),
)
nm_schemes = st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8), (5, 8)]).map(lambda nm: NMScheme(*nm))


@st.composite
def nm_cases(draw):
    """An N:M scheme and a weight shape whose 2-D view width is a multiple of M."""
    scheme = draw(nm_schemes)
    out, groups = draw(st.integers(1, 8)), draw(st.integers(1, 5))
    layout = draw(st.sampled_from(["linear", "conv"]))
    shape = (out, groups * scheme.m) if layout == "linear" else (out, groups, 1, scheme.m)
    return scheme, shape


@st.composite
def scores_of(draw, shape):
    """Random float64 scores; sometimes a few distinct values only, to exercise ties."""
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if draw(st.booleans()):
        return torch.randint(0, 3, shape, generator=generator).double()
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def check_mask(scheme: Scheme, scores: torch.Tensor, density: float | None) -> torch.Tensor:
    """The properties every scheme's make_mask must have; returns the mask for further checks."""
    mask = scheme.make_mask(scores, density)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    scheme.validate(mask)
    target = round((density if density is not None else scheme.fixed_density()) * scores.numel())
    assert abs(int(mask.sum()) - target) <= scheme.unit_size(scores.shape)
    assert mask.any()
    return mask


def assert_ranked(kept: list[float], dropped: list[float]) -> None:
    if kept and dropped:
        assert min(kept) >= max(dropped) - 1e-9


# --- valid masks at the requested density ----------------------------------------------------


@PROPERTY
@given(data=st.data(), scheme=general_schemes, shape=any_shapes, density=densities)
def test_general_schemes_make_valid_masks(data, scheme, shape, density):
    check_mask(scheme, data.draw(scores_of(shape)), density)


@PROPERTY
@given(data=st.data(), shape=pattern_shapes, fraction=st.floats(0.001, 1.0), patterns=st.integers(1, 8))
def test_pattern_masks_are_valid(data, shape, fraction, patterns):
    scheme = PatternScheme(num_patterns=patterns)
    density = fraction * 4 / 9
    mask = check_mask(scheme, data.draw(scores_of(shape)), density)
    kernels = mask.reshape(-1, 3, 3)
    library = PATTERNS[:patterns]
    for kernel in kernels[kernels.any(-1).any(-1)]:
        assert any(torch.equal(kernel, pattern) for pattern in library)
    per_filter = mask.any(-1).any(-1).sum(1)
    assert (per_filter == per_filter[0]).all()
    # kernels per filter = round(density / (4/9) * in_channels), in the scheme's float arithmetic
    # (fraction * 4/9 / (4/9) can land just above a .5 tie that round(fraction * in) would break down)
    expected = min(max(round(density / PATTERN_DENSITY * shape[1]), 1), shape[1])
    assert int(per_filter[0]) == expected


@PROPERTY
@given(data=st.data(), case=nm_cases(), explicit=st.booleans())
def test_nm_masks_keep_exactly_n_per_group(data, case, explicit):
    scheme, shape = case
    scores = data.draw(scores_of(shape))
    mask = check_mask(scheme, scores, scheme.n / scheme.m if explicit else None)
    groups = mask.reshape(shape[0], -1, scheme.m)
    assert (groups.sum(-1) == scheme.n).all()
    assert int(mask.sum()) == scores.numel() * scheme.n // scheme.m
    score_groups = scores.reshape(shape[0], -1, scheme.m)
    for keep, values in zip(groups.reshape(-1, scheme.m), score_groups.reshape(-1, scheme.m)):
        assert_ranked(values[keep].tolist(), values[~keep].tolist())


# --- the highest-scoring units are the ones kept ---------------------------------------------


@PROPERTY
@given(data=st.data(), shape=any_shapes, density=densities)
def test_unstructured_keeps_top_scores(data, shape, density):
    scores = data.draw(scores_of(shape))
    mask = UnstructuredScheme().make_mask(scores, density)
    assert int(mask.sum()) == min(max(round(density * scores.numel()), 1), scores.numel())
    assert_ranked(scores[mask].tolist(), scores[~mask].tolist())


@PROPERTY
@given(data=st.data(), dim=st.sampled_from([0, 1]), shape=any_shapes, density=densities)
def test_channel_keeps_top_channels(data, dim, shape, density):
    scores = data.draw(scores_of(shape))
    mask = ChannelScheme(dim=dim).make_mask(scores, density)
    units = mask.movedim(dim, 0).reshape(shape[dim], -1)
    assert (units.all(1) | ~units.any(1)).all()  # whole channels only
    means = scores.movedim(dim, 0).reshape(shape[dim], -1).mean(1)
    kept = units.all(1)
    assert_ranked(means[kept].tolist(), means[~kept].tolist())


def block_units(shape, block, prune):
    """Every unit of a BlockScheme as (rows slice, cols slice) of the 2-D view, by brute force."""
    rows, cols = shape[0], math.prod(shape[1:])
    if prune == "rows":
        return [(slice(r, r + 1), slice(c, c + block[1])) for r in range(rows) for c in range(0, cols, block[1])]
    return [(slice(r, r + block[0]), slice(c, c + 1)) for c in range(cols) for r in range(0, rows, block[0])]


@PROPERTY
@given(
    data=st.data(),
    shape=any_shapes,
    block=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    prune=st.sampled_from(["rows", "cols"]),
    density=densities,
)
def test_block_keeps_whole_top_segments(data, shape, block, prune, density):
    scores = data.draw(scores_of(shape))
    mask = BlockScheme(block=block, prune=prune).make_mask(scores, density)
    view, scores_2d = mask.reshape(shape[0], -1), scores.reshape(shape[0], -1)
    kept, dropped = [], []
    for rows, cols in block_units(shape, block, prune):
        unit = view[rows, cols]
        assert unit.all() or not unit.any()
        (kept if unit.all() else dropped).append(float(scores_2d[rows, cols].mean()))
    assert_ranked(kept, dropped)


@PROPERTY
@given(data=st.data(), shape=pattern_shapes, fraction=st.floats(0.001, 1.0))
def test_pattern_keeps_best_pattern_and_kernels(data, shape, fraction):
    scores = data.draw(scores_of(shape))
    mask = PatternScheme().make_mask(scores, fraction * 4 / 9)
    retained = (scores.reshape(*shape[:2], 1, 9) ** 2 * PATTERNS.reshape(1, 1, 8, 9)).sum(-1)
    best = retained.max(-1).values
    chosen = (scores**2 * mask).sum((-1, -2))
    kept = mask.any(-1).any(-1)
    assert torch.allclose(chosen[kept], best[kept])  # each kept kernel has its best pattern
    for row in range(shape[0]):  # and each filter keeps its best kernels
        assert_ranked(best[row][kept[row]].tolist(), best[row][~kept[row]].tolist())


def test_pattern_maximises_squared_not_absolute_score():
    kernel = torch.zeros(3, 3)
    kernel[0, 0] = -5.0  # only pattern 7 (centre, left, up, top-left) reaches this tap: 25
    kernel[2, 1] = kernel[1, 2] = 3.0  # down + right: 18 squared, but 6 > 5 in absolute terms
    mask = PatternScheme().make_mask(kernel.reshape(1, 1, 3, 3), 4 / 9)
    assert torch.equal(mask[0, 0], PATTERNS[7])


def test_pattern_library_shape():
    assert PATTERNS.shape == (8, 3, 3) and PATTERNS.dtype == torch.bool
    assert (PATTERNS.sum((1, 2)) == 4).all() and PATTERNS[:, 1, 1].all()
    assert len({tuple(p.flatten().tolist()) for p in PATTERNS}) == 8


def test_nm_2_4_on_linear_by_hand():
    layer = nn.Linear(8, 4)
    scheme = make_scheme("nm", n=2, m=4)
    scheme.check_layer("fc", layer)
    scores = torch.tensor([[1.0, 4.0, 2.0, 3.0, 0.0, 0.0, 9.0, 9.0]]).repeat(4, 1)
    mask = scheme.make_mask(scores, None)
    expected = torch.tensor([[False, True, False, True, False, False, True, True]]).repeat(4, 1)
    assert torch.equal(mask, expected)
    assert torch.equal(scheme.make_mask(scores, 0.5), expected)


def test_block_8x1_cols_segments():
    scheme = make_scheme("block", block=(8, 1), prune="cols")
    shape = (16, 6)
    assert scheme.unit_size(shape) == 8
    mask = scheme.make_mask(torch.randn(shape, generator=torch.Generator().manual_seed(0)), 0.5)
    assert int(mask.sum()) == 48
    for top in (0, 8):
        segments = mask[top : top + 8]
        assert (segments.all(0) | ~segments.any(0)).all()


def test_block_handles_edge_blocks():
    scheme = BlockScheme(block=(4, 4), prune="rows")
    scores = torch.zeros(2, 6)
    scores[:, 4:] = 1.0  # the 2-wide edge segments score best
    mask = scheme.make_mask(scores, 4 / 12)
    assert torch.equal(mask, scores.bool())


# --- validate rejects masks that break the scheme's constraint -------------------------------


def bad_masks():
    channel = torch.ones(4, 3, dtype=torch.bool)
    channel[2, 1] = False  # output channel 2 partly kept
    channel_in = torch.ones(4, 3, dtype=torch.bool)
    channel_in[0, 2] = False  # input channel 2 partly kept
    rows = torch.ones(4, 8, dtype=torch.bool)
    rows[1, 5] = False  # row segment (1, 4:8) partly kept
    edge = torch.ones(2, 6, dtype=torch.bool)
    edge[0, 5] = False  # segment of the narrow edge block
    cols = torch.ones(8, 2, dtype=torch.bool)
    cols[3, 1] = False  # column segment (0:4, 1) partly kept
    no_centre = torch.zeros(2, 2, 3, 3, dtype=torch.bool)
    no_centre[:, :, 0, :] = True
    no_centre[:, :, 1, 0] = True  # 4 taps but no centre
    five_taps = PATTERNS[0].expand(2, 2, 3, 3).clone()
    five_taps[1, 1, 0, 0] = True
    unbalanced = PATTERNS[0].expand(2, 2, 3, 3).clone()
    unbalanced[1, 0] = False  # filter 1 keeps one kernel, filter 0 two
    outside_library = PATTERNS[7].expand(1, 2, 3, 3).clone()
    three_of_four = torch.tensor([[True, True, True, False, True, True, False, False]])
    one_of_four = torch.tensor([[True, False, False, False, True, True, False, False]])
    return [
        (UnstructuredScheme(), torch.ones(3, 3)),  # not bool
        (UnstructuredScheme(), torch.ones(3, dtype=torch.bool)),  # not a weight shape
        (ChannelScheme(dim=0), channel),
        (ChannelScheme(dim=1), channel_in),
        (BlockScheme(block=(4, 4), prune="rows"), rows),
        (BlockScheme(block=(4, 4), prune="rows"), edge),
        (BlockScheme(block=(4, 1), prune="cols"), cols),
        (PatternScheme(), no_centre),
        (PatternScheme(), five_taps),
        (PatternScheme(), unbalanced),
        (PatternScheme(), torch.ones(2, 2, 5, 5, dtype=torch.bool)),
        (PatternScheme(num_patterns=4), outside_library),
        (NMScheme(2, 4), three_of_four),
        (NMScheme(2, 4), one_of_four),
        (NMScheme(2, 4), torch.ones(2, 6, dtype=torch.bool)),  # width not divisible by 4
    ]


@pytest.mark.parametrize(("scheme", "mask"), bad_masks())
def test_validate_rejects_bad_masks(scheme, mask):
    with pytest.raises(ValueError):
        scheme.validate(mask)


def test_validate_accepts_good_hand_masks():
    ChannelScheme(dim=0).validate(torch.tensor([[True, True], [False, False]]))
    BlockScheme(block=(4, 4)).validate(torch.tensor([[True] * 4 + [False] * 2, [False] * 4 + [True] * 2]))
    PatternScheme().validate(torch.stack([PATTERNS[0], torch.zeros(3, 3, dtype=torch.bool)]).expand(3, 2, 3, 3))
    NMScheme(2, 4).validate(torch.tensor([[True, False, True, False]]))


# --- properties of the schemes and layer checks ----------------------------------------------


def test_scheme_properties():
    shape = (6, 4, 3, 3)
    assert UnstructuredScheme().unit_size(shape) == 1
    assert ChannelScheme(dim=0).unit_size(shape) == 36
    assert ChannelScheme(dim=1).unit_size(shape) == 54
    assert BlockScheme(block=(4, 4), prune="rows").unit_size(shape) == 4
    assert BlockScheme(block=(8, 1), prune="cols").unit_size(shape) == 6  # only 6 rows
    assert PatternScheme().unit_size(shape) == 24
    assert NMScheme(2, 4).unit_size(shape) == 1
    assert PatternScheme().max_density(shape) == pytest.approx(4 / 9)
    assert UnstructuredScheme().max_density(shape) == 1.0
    assert NMScheme(1, 4).fixed_density() == 0.25
    assert ChannelScheme().fixed_density() is None
    assert [make_scheme(name).name for name in ("unstructured", "channel", "block", "pattern", "nm")] == [
        "unstructured",
        "channel",
        "block",
        "pattern",
        "nm",
    ]


def test_supports():
    conv3, conv5, linear = nn.Conv2d(2, 4, 3), nn.Conv2d(2, 4, 5), nn.Linear(8, 3)
    for scheme in (UnstructuredScheme(), ChannelScheme(), BlockScheme()):
        assert scheme.supports(conv3) and scheme.supports(conv5) and scheme.supports(linear)
        assert scheme.supports(nn.Conv1d(2, 4, 3)) and scheme.supports(nn.Conv2d(4, 4, 3, groups=2))
        assert not scheme.supports(nn.BatchNorm2d(4)) and not scheme.supports(nn.ReLU())
    assert PatternScheme().supports(conv3)
    assert not PatternScheme().supports(conv5) and not PatternScheme().supports(linear)
    assert NMScheme(2, 4).supports(linear) and NMScheme(2, 4).supports(nn.Conv2d(4, 4, 3))  # 36 columns
    assert not NMScheme(2, 4).supports(conv3)  # 2*3*3 = 18 columns
    assert not NMScheme(2, 4).supports(nn.Linear(6, 3))


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("density", [0.0, 1.5, -0.2, float("nan"), None, "half"])
@pytest.mark.parametrize("scheme", [UnstructuredScheme(), ChannelScheme(), BlockScheme(), PatternScheme()])
def test_bad_density(scheme, density):
    with pytest.raises(ValueError, match="density"):
        scheme.make_mask(torch.rand(4, 4, 3, 3), density)


def test_pattern_rejects_density_above_four_ninths():
    with pytest.raises(ValueError, match="at most"):
        PatternScheme().make_mask(torch.rand(4, 4, 3, 3), 0.5)


def test_nm_rejects_other_densities():
    for density in (0.0, 0.25, 0.75, 1.5):
        with pytest.raises(ValueError, match="density"):
            NMScheme(2, 4).make_mask(torch.rand(2, 8), density)


def test_pattern_rejects_non_3x3_layers():
    with pytest.raises(ValueError, match=r"conv1.*3x3.*5x5"):
        PatternScheme().check_layer("conv1", nn.Conv2d(3, 8, 5))
    with pytest.raises(ValueError, match=r"fc.*Linear"):
        PatternScheme().check_layer("fc", nn.Linear(4, 4))
    with pytest.raises(ValueError, match="3x3"):
        PatternScheme().make_mask(torch.rand(4, 4, 5, 5), 0.3)
    with pytest.raises(ValueError, match="3x3"):
        PatternScheme().make_mask(torch.rand(4, 4), 0.3)
    PatternScheme().check_layer("conv2", nn.Conv2d(3, 8, 3))


@pytest.mark.parametrize(("n", "m"), [(4, 4), (5, 4), (0, 4), (-1, 2)])
def test_nm_needs_n_below_m(n, m):
    with pytest.raises(ValueError, match=f"N < M, got {n}:{m}"):
        NMScheme(n, m)
    with pytest.raises(ValueError, match="N < M"):
        make_scheme("nm", n=n, m=m)


def test_nm_needs_width_divisible_by_m():
    with pytest.raises(ValueError, match=r"fc2.*divisible by 4"):
        NMScheme(2, 4).check_layer("fc2", nn.Linear(10, 3))
    with pytest.raises(ValueError, match="divisible by 4"):
        NMScheme(2, 4).make_mask(torch.rand(3, 10), None)
    NMScheme(2, 4).check_layer("conv", nn.Conv2d(4, 8, 3))  # 4*3*3 = 36 columns


def test_check_layer_rejects_non_weight_layers():
    with pytest.raises(ValueError, match=r"bn1.*BatchNorm2d"):
        UnstructuredScheme().check_layer("bn1", nn.BatchNorm2d(4))


def test_make_scheme_errors():
    names = "block, channel, nm, pattern, unstructured"
    with pytest.raises(ValueError, match=rf"unknown sparsity scheme 'sparse'.*{names}"):
        make_scheme("sparse")
    with pytest.raises(ValueError, match="blok"):
        make_scheme("block", blok=(4, 4))
    with pytest.raises(ValueError, match="prune"):
        make_scheme("block", prune="diagonal")
    with pytest.raises(ValueError, match="block"):
        make_scheme("block", block=(0, 4))
    with pytest.raises(ValueError, match="dim"):
        make_scheme("channel", dim=2)
    with pytest.raises(ValueError, match="num_patterns"):
        make_scheme("pattern", num_patterns=9)
    with pytest.raises(ValueError, match="NaN"):
        UnstructuredScheme().make_mask(torch.tensor([[float("nan"), 1.0]]), 0.5)


# --- determinism -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "density"),
    [
        (UnstructuredScheme(), 0.3),
        (ChannelScheme(dim=0), 0.5),
        (ChannelScheme(dim=1), 0.5),
        (BlockScheme(block=(2, 2), prune="rows"), 0.5),
        (BlockScheme(block=(2, 2), prune="cols"), 0.5),
        (PatternScheme(), 2 / 9),
        (NMScheme(2, 4), None),
    ],
)
def test_equal_scores_give_the_same_mask(scheme, density):
    first = scheme.make_mask(torch.ones(4, 4, 3, 3), density)
    second = scheme.make_mask(torch.ones(4, 4, 3, 3), density)
    assert torch.equal(first, second)
    scheme.validate(first)


def test_ties_go_to_the_lower_index():
    mask = UnstructuredScheme().make_mask(torch.ones(2, 4), 0.5)
    assert torch.equal(mask, torch.tensor([[True] * 4, [False] * 4]))
    channels = ChannelScheme(dim=0).make_mask(torch.ones(4, 2), 0.5)
    assert channels[:2].all() and not channels[2:].any()
