import pytest
import torch
from torch import nn

from slimkit.importance import get_criterion, magnitude
from slimkit.structured.graph import build_graph
from slimkit.structured.importance import taylor_gradients, unit_scores
from slimkit.structured.select import select_units


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(1, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 16, 1, bias=False)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.bn(self.a(x))))))


def _model():
    torch.manual_seed(0)
    model = TwoLayers()
    with torch.no_grad():
        model.a.weight.copy_(torch.arange(1.0, 9.0).reshape(8, 1, 1, 1))
        model.b.weight.fill_(0.0)
        model.bn.weight.copy_(torch.arange(8.0, 0.0, -1.0))
    return model


def _group(graph, qualname):
    return next(g for g in graph.groups() if any(k[0] == qualname and k[1] == 0 for k in g.members))


def test_l1_sums_every_member_and_bn_gamma_uses_scales_only():
    model = _model()
    graph = build_graph(model, (1, 2, 2))
    units = _group(graph, "a.weight").units
    l1 = unit_scores(graph, "l1")[units]
    root_of = graph.uf.roots(graph.tensors[("a.weight", 0)])
    expected = torch.arange(1.0, 9.0) + torch.arange(8.0, 0.0, -1.0)  # |w_a| + |gamma|; beta and w_b are 0
    by_root = dict(zip(root_of.tolist(), expected.tolist()))
    assert torch.allclose(l1, torch.tensor([by_root[u] for u in units.tolist()], dtype=l1.dtype))
    gamma = unit_scores(graph, "bn_gamma")[units]
    assert sorted(gamma.tolist()) == list(range(1, 9))


def test_local_global_caps_and_round_to():
    graph = build_graph(_model(), (1, 2, 2))
    groups = graph.groups()
    scores = unit_scores(graph, "random", seed=1)
    assert {g.units.numel() for g in groups} == {8, 16}
    local = select_units(groups, scores, 0.5)
    assert sorted(local.kept.values()) == [(4, 8), (8, 16)]
    capped = select_units(groups, scores, 0.9, min_keep_fraction=0.5)
    assert sorted(capped.kept.values()) == [(4, 8), (8, 16)]
    rounded = select_units(groups, scores, 0.5, round_to=6)
    assert sorted(rounded.kept.values()) == [(6, 8), (12, 16)]
    glob = select_units(groups, scores, 0.5, scope="global", normalize=False)
    assert sum(16 - k if n == 16 else 8 - k for k, n in glob.kept.values()) == 12
    with pytest.raises(ValueError, match="prune_ratio"):
        select_units(groups, scores, 0.0)


def test_global_never_empties_a_group():
    graph = build_graph(_model(), (1, 2, 2))
    scores = unit_scores(graph, "random")
    groups = graph.groups()
    small = _group(graph, "a.weight").units
    scores[small] = -1.0  # every unit of one group below every other
    selection = select_units(groups, scores, 0.4, scope="global", normalize=False)
    assert min(k for k, _ in selection.kept.values()) >= 1


def test_taylor_needs_and_uses_gradients():
    model = _model()
    graph = build_graph(model, (1, 2, 2))
    with pytest.raises(ValueError, match="gradients"):
        unit_scores(graph, "taylor")
    x, y = torch.randn(4, 1, 2, 2), torch.randint(0, 2, (4, 2, 2))
    taylor_gradients(model, (x, y))
    scores = unit_scores(graph, "taylor")
    assert torch.isfinite(scores).all() and scores.sum() > 0


def _reduce_per_unit(graph, scores_of):
    """Sum each parameter's weight-level scores over the slices every unit owns (buffers carry none)."""
    params = dict(graph.model.named_parameters())
    total = torch.zeros(len(graph.uf.parent), dtype=torch.float64)
    for (qualname, dim), ids in graph.tensors.items():
        if qualname not in params:
            continue
        owner_name = qualname.rpartition(".")[0]
        scores = scores_of(owner_name, qualname)
        if scores is None:
            continue
        others = [d for d in range(scores.ndim) if d != dim]
        total.index_add_(0, graph.uf.roots(ids), (scores.sum(dim=others) if others else scores).double())
    return total


def test_channel_scores_are_weight_level_scores_reduced_per_unit():
    model = _model()
    with torch.no_grad():
        model.bn.bias.copy_(torch.linspace(-1.0, 1.0, 8))
        model.b.weight.copy_(torch.randn(16, 8, 1, 1, generator=torch.Generator().manual_seed(3)))
        model.head.bias.zero_()  # the weight-level criteria score `.weight` tensors; biases count too in l1
    graph = build_graph(model, (1, 2, 2))
    owners = dict(model.named_modules())

    def magnitude_of(owner_name, qualname):
        if qualname.endswith(".bias"):
            return model.get_parameter(qualname).detach().abs()
        return magnitude(model, {owner_name: owners[owner_name]})[owner_name]

    assert torch.equal(unit_scores(graph, "l1"), _reduce_per_unit(graph, magnitude_of))

    def norm_scale_magnitude(owner_name, qualname):
        owner = owners[owner_name]
        return magnitude(model, {owner_name: owner})[owner_name] if isinstance(owner, nn.BatchNorm2d) and \
            qualname.endswith(".weight") else None

    assert torch.equal(unit_scores(graph, "bn_gamma"), _reduce_per_unit(graph, norm_scale_magnitude))
    squares = _reduce_per_unit(graph, lambda o, q: magnitude_of(o, q).square())
    assert torch.equal(unit_scores(graph, "l2"), squares.sqrt())


def test_channel_taylor_is_the_taylor_rule_reduced_per_unit():
    model = _model()
    graph = build_graph(model, (1, 2, 2))
    x, y = torch.randn(4, 1, 2, 2), torch.randint(0, 2, (4, 2, 2))
    taylor_gradients(model, (x, y))
    rule = get_criterion("taylor").per_tensor
    expected = _reduce_per_unit(graph, lambda o, q: rule(model.get_parameter(q).detach(), model.get_parameter(q).grad))
    assert torch.equal(unit_scores(graph, "taylor"), expected)


def test_a_registered_per_tensor_criterion_prunes_channels():
    """A user criterion with a per-tensor rule works by name in channel pruning, summed per unit."""
    from slimkit.importance import register_criterion, unregister_criterion
    from slimkit.structured import prune_channels

    @register_criterion("squared_weight", per_tensor=lambda weight, grad: weight.square())
    def squared_weight(model, layers, inputs):
        return {name: layer.weight.detach().square() for name, layer in layers.items()}

    try:
        model = _model()
        graph = build_graph(model, (1, 4, 4))
        by_square = unit_scores(graph, "squared_weight")
        assert not torch.equal(by_square, unit_scores(graph, "l1"))
        pruned = prune_channels(model, (1, 4, 4), 0.5, criterion="squared_weight")
        assert pruned.a.out_channels == 4
        # unit i sums w_a[i]^2 + gamma[i]^2 = (i + 1)^2 + (8 - i)^2 (l1 ties every unit at 9):
        # the outer channels 0, 1, 6, 7 score highest
        torch.testing.assert_close(pruned.a.weight.flatten(), torch.tensor([1.0, 2.0, 7.0, 8.0]))
    finally:
        unregister_criterion("squared_weight")
    with pytest.raises(ValueError, match="unknown channel criterion 'squared_weight'"):
        prune_channels(_model(), (1, 4, 4), 0.5, criterion="squared_weight")


def _groups(*sizes):
    from slimkit.structured.channels import ChannelGroup

    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [ChannelGroup(torch.arange(start, start + size), ((f"layer{i}.weight", 0),))
            for i, (start, size) in enumerate(zip(starts, sizes))]


def test_global_ties_at_the_threshold_are_shared_in_proportion():
    """Units below the threshold all go; the ones tied at it share the rest of the budget by
    group size, instead of all of them going (which emptied whole layers)."""
    groups = _groups(8, 16, 8)
    scores = torch.cat([torch.full((8,), 1.0), torch.full((16,), 1.0), torch.arange(2.0, 10.0)])
    scores[0] = 0.5  # one unit strictly below the tie
    selection = select_units(groups, scores, 0.5, scope="global", normalize=False)
    removed = {i: n - k for i, (k, n) in selection.kept.items()}
    assert sum(removed.values()) == 16  # exactly half of the 32 units
    assert removed[2] == 0  # every score of the third group is above the threshold
    assert removed == {0: 1 + 5, 1: 10, 2: 0}  # 15 tied slots split 7:15 by tied count (largest remainder)
    assert 0 in selection.removed  # the unit below the tie goes first


def test_global_untied_scores_remove_exactly_the_lowest():
    groups = _groups(8, 16, 8)
    scores = torch.randperm(32, generator=torch.Generator().manual_seed(0)).double()
    selection = select_units(groups, scores, 0.5, scope="global", normalize=False)
    assert selection.removed == set(torch.argsort(scores)[:16].tolist())
