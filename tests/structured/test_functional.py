"""Functional ops in the channel graph: spatial rolls and tiling leave channels prunable (and exact),
F.linear on raw parameters slices the weight's columns, F.group_norm keeps its group count."""

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.structured import build_graph, prune_channels
from tests.structured.helpers import prune_and_compare


class SpatialShuffles(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.roll(h, shifts=(1, 2), dims=(2, 3))
        h = h.repeat(1, 1, 2, 1).repeat_interleave(2, dim=3).cumsum(dim=2)
        h = torch.relu(self.conv2(h))
        return self.head(h.mean((2, 3)))


def test_roll_repeat_and_cumsum_over_space_prune_exactly():
    torch.manual_seed(0)
    pruned, ratio = prune_and_compare(SpatialShuffles(), torch.randn(2, 3, 6, 6), atol=1e-5)
    assert pruned.conv1.out_channels == pruned.conv2.out_channels == 4 and ratio < 0.6


def test_roll_over_channels_keeps_them():
    class ChannelRoll(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 5, 1)

        def forward(self, x):
            return self.conv2(torch.roll(self.conv1(x), 1, dims=1))

    graph = build_graph(ChannelRoll(), (3, 4, 4))
    assert graph.uf.is_pinned(graph.tensors[("conv1.weight", 0)][0].item())


class RawLinear(nn.Module):
    """F.linear on parameters held directly: the graph slices the weight's columns only."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 12)
        self.weight = nn.Parameter(torch.randn(6, 12) / 12**0.5)
        self.bias = nn.Parameter(torch.randn(6))
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(torch.relu(F.linear(torch.relu(self.embed(x)), self.weight, self.bias)))


def test_functional_linear_slices_the_weight_columns_exactly():
    torch.manual_seed(0)
    pruned, _ = prune_and_compare(RawLinear(), torch.randn(2, 5), atol=1e-5)
    assert pruned.embed.out_features == 6 and pruned.weight.shape == (6, 6) and pruned.bias.shape == (6,)


class GroupNormed(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)
        self.gamma, self.beta = nn.Parameter(torch.ones(8)), nn.Parameter(torch.zeros(8))

    def forward(self, x):
        h = F.group_norm(self.conv1(x), self.groups, self.gamma, self.beta)
        return self.conv2(torch.relu(h)).mean((2, 3))


def test_functional_group_norm_keeps_grouped_channels_and_prunes_one_group_like_layernorm():
    """num_groups is written in the code: whole groups cannot go, and channels inside a group set
    its statistics. One group is a LayerNorm over the channels and prunes like one (not exactly)."""
    torch.manual_seed(0)
    assert prune_channels(GroupNormed(2), (3, 8, 8), 0.5).conv1.out_channels == 8
    pruned = prune_channels(GroupNormed(1), (3, 8, 8), 0.5)
    assert pruned.conv1.out_channels == 4 and pruned.gamma.shape == (4,)
    assert pruned(torch.randn(2, 3, 8, 8)).shape == (2, 4)
