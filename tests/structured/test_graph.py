import pytest
import torch
import torchvision
from torch import nn

from slimkit.structured.graph import ChannelGraphError, build_graph


def _roots(graph, key):
    return graph.uf.roots(graph.tensors[key]).tolist()


def test_residual_stream_is_one_group():
    graph = build_graph(torchvision.models.resnet18(num_classes=10), (3, 32, 32))
    stem = _roots(graph, ("conv1.weight", 0))
    assert stem == _roots(graph, ("layer1.0.conv2.weight", 0)) == _roots(graph, ("layer1.1.bn2.weight", 0))
    assert stem == _roots(graph, ("layer2.0.downsample.0.weight", 1))
    assert stem != _roots(graph, ("layer1.0.conv1.weight", 0))
    assert all(not graph.uf.is_pinned(r) for r in stem)
    assert all(graph.uf.is_pinned(r) for r in _roots(graph, ("fc.weight", 0)))  # classifier outputs
    assert all(graph.uf.is_pinned(r) for r in _roots(graph, ("conv1.weight", 1)))  # image channels


def test_depthwise_ties_input_and_output_channels():
    graph = build_graph(torchvision.models.mobilenet_v2(num_classes=10), (3, 32, 32))
    expand = _roots(graph, ("features.2.conv.0.0.weight", 0))
    assert expand == _roots(graph, ("features.2.conv.1.0.weight", 0)) == _roots(graph, ("features.2.conv.2.weight", 1))


def test_channel_shuffle_permutes_ids():
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            y = self.a(x)
            n, c, h, w = y.shape
            return self.b(y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w))

    graph = build_graph(Shuffle(), (3, 2, 2))
    a_out, b_in = _roots(graph, ("a.weight", 0)), _roots(graph, ("b.weight", 1))
    # shuffled order [0, 2, 1, 3]; the literal 2 groups tie channel j with channel j + 2
    assert b_in == [a_out[0], a_out[2], a_out[1], a_out[3]]
    assert a_out[0] == a_out[2] and a_out[1] == a_out[3] and a_out[0] != a_out[1]


def test_literal_split_sizes_are_pinned_and_prune_still_runs():
    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(5, 2, 1)

        def forward(self, x):
            left, right = self.a(x).split([3, 5], dim=1)
            return self.b(right) + left.sum(1, keepdim=True)

    from slimkit.structured import prune_channels

    model = Split()
    pruned = prune_channels(model, (3, 4, 4), 0.5)
    assert pruned.a.out_channels == 8
    assert pruned(torch.randn(2, 3, 4, 4)).shape == (2, 2, 4, 4)


def test_flatten_into_linear_maps_each_channel_to_its_columns():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.Flatten(), nn.Linear(3 * 4, 2))
    graph = build_graph(model, (1, 2, 2))
    conv, lin = _roots(graph, ("0.weight", 0)), _roots(graph, ("2.weight", 1))
    assert lin == [r for r in conv for _ in range(4)]


def test_untraceable_model_names_the_problem():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.conv(x)
            return y if y.sum() > 0 else -y  # control flow on tensor values

    with pytest.raises(ChannelGraphError, match="cannot trace Dynamic"):
        build_graph(Dynamic(), (3, 4, 4))
