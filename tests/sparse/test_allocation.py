import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from slimkit.models import build_model
from slimkit.data.base import DatasetInfo
from slimkit.metrics import prunable_layers
from slimkit.sparse.allocation import allocate, erk_share, reachable_density

LENET5 = prunable_layers(build_model("lenet5", DatasetInfo("x", (1, 28, 28), 10)))
RESNET = prunable_layers(build_model("resnet20", DatasetInfo("x", (1, 28, 28), 10)))


def _global_density(layers, densities):
    total = sum(m.weight.numel() for m in layers.values())
    return sum(densities[n] * m.weight.numel() for n, m in layers.items()) / total


@settings(max_examples=40, deadline=None)
@given(sparsity=st.floats(0.0, 0.99), kind=st.sampled_from(["uniform", "erk"]), net=st.sampled_from([LENET5, RESNET]))
def test_global_density_is_exact(sparsity, kind, net):
    densities = allocate(net, sparsity, kind)
    assert _global_density(net, densities) == pytest.approx(1 - sparsity, rel=1e-9)
    assert all(0 < d <= 1 + 1e-12 for d in densities.values())


def test_erk_gives_small_layers_more_density_and_caps_at_one():
    densities = allocate(LENET5, 0.5, "erk")
    assert densities["conv1"] == 1.0  # 150 weights: ERK would exceed 1, so it is capped
    assert densities["fc1"] < densities["fc3"]
    assert erk_share((6, 1, 5, 5)) == pytest.approx((6 + 1 + 5 + 5) / 150)


def test_uniform_with_dense_layers_resolves_the_rest():
    densities = allocate(LENET5, 0.9, "uniform", dense_layers=["conv1", "fc3"])
    assert densities["conv1"] == densities["fc3"] == 1.0
    assert _global_density(LENET5, densities) == pytest.approx(0.1)
    assert densities["fc1"] == pytest.approx(densities["conv2"])


def test_global_ranking_follows_scores():
    layers = {"a": nn.Linear(10, 10), "b": nn.Linear(10, 10)}
    scores = {"a": torch.full((10, 10), 2.0), "b": torch.ones(10, 10)}
    densities = allocate(layers, 0.5, "global", scores=scores)
    assert densities == {"a": 1.0, "b": 0.01}  # b keeps one weight so no layer is emptied


def test_bad_inputs():
    for sparsity in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="sparsity must be in"):
            allocate(LENET5, sparsity)
    with pytest.raises(ValueError, match="no prunable layer"):
        allocate({}, 0.5)
    with pytest.raises(ValueError, match="unknown allocation"):
        allocate(LENET5, 0.5, "magic")
    with pytest.raises(ValueError, match="pass scores"):
        allocate(LENET5, 0.5, "global")
    with pytest.raises(ValueError, match="cannot be reached"):
        allocate(LENET5, 0.5, "uniform", dense_layers=list(LENET5)[:-1])


def test_reachable_density_is_what_the_scheme_can_hold():
    from slimkit.sparse.schemes import make_scheme

    layers = {"a": nn.Conv2d(4, 8, 3), "b": nn.Conv2d(8, 8, 3)}
    pattern = make_scheme("pattern")
    assert reachable_density(layers) == 1.0
    assert reachable_density(layers, pattern) == pytest.approx(4 / 9)
    with_dense = reachable_density(layers, pattern, dense_layers=["a"])
    assert with_dense == pytest.approx((288 + 576 * 4 / 9) / 864)
    allocate(layers, 1 - with_dense + 1e-9, scheme=pattern, dense_layers=["a"])  # reachable ...
    with pytest.raises(ValueError, match="cannot be reached"):
        allocate(layers, 1 - with_dense - 1e-3, scheme=pattern, dense_layers=["a"])  # ... and no more
