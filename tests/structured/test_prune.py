import pytest
import torch
import torchvision
from torch import nn

from slimkit.data import DatasetInfo
from slimkit.models import build_model
from slimkit.structured import ChannelGraphError, prune_channels
from tests.structured.helpers import prune_and_compare, randomize_norms

TV_MODELS = {  # name: (input side, extra kwargs)
    "resnet18": (16, {}),
    "mobilenet_v2": (16, {}),
    "shufflenet_v2_x0_5": (16, {}),
    "googlenet": (16, {"aux_logits": False, "init_weights": False}),
    "vgg11_bn": (32, {}),
    "regnet_y_400mf": (32, {}),  # grouped convs + squeeze-excitation
    "efficientnet_b0": (32, {}),  # depthwise + squeeze-excitation + stochastic depth
}


@pytest.mark.parametrize("name", sorted(TV_MODELS))
def test_torchvision_models_prune_exactly(name):
    side, kwargs = TV_MODELS[name]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10, **kwargs)
    if name.startswith("vgg"):  # the same flatten-into-Linear, with a narrower 102M -> 1.6M classifier
        model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))
    randomize_norms(model)
    pruned, ratio = prune_and_compare(model, torch.randn(2, 3, side, side))
    assert ratio < 0.7, f"{name}: only {1 - ratio:.0%} of parameters removed"
    assert all(type(m).__module__.startswith(("torch", "torchvision")) for m in pruned.modules())


@pytest.mark.parametrize("name", ["lenet5", "vgg11", "resnet20"])
def test_slimkit_models_prune_exactly(name):
    torch.manual_seed(0)
    model = build_model(name, DatasetInfo("t", (1, 28, 28), 10))
    randomize_norms(model)
    _, ratio = prune_and_compare(model, torch.randn(2, 1, 28, 28))
    assert ratio < 0.75


def test_original_untouched_and_classifier_kept():
    model = torchvision.models.resnet18(num_classes=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = prune_channels(model, (3, 32, 32), 0.5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert pruned.fc.out_features == 7 and pruned.conv1.in_channels == 3
    assert pruned.conv1.out_channels == 32


def test_inplace_prunes_the_model_itself():
    model = torchvision.models.resnet18(num_classes=7)
    assert prune_channels(model, (3, 32, 32), 0.5, inplace=True) is model
    assert model.conv1.out_channels == 32


class CascadedConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(14, 4, 1)
        self.bn = nn.BatchNorm2d(18)
        self.head = nn.Linear(18 * 4 * 4, 5)

    def forward(self, x):
        ab = torch.cat([self.a(x), self.b(x)], 1)
        abc = torch.cat([ab, self.c(ab)], dim=1)
        return self.head(torch.flatten(torch.relu(self.bn(abc)), 1))


class SplitConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 1)
        self.left, self.right = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        s = self.stem(x)
        l, r = s.split(s.shape[1] // 2, dim=1)
        y = torch.cat([self.left(l), self.right(r)], 1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)  # channel shuffle
        return self.out(y).mean([2, 3])


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(2, 8, 1)
        self.one = nn.Conv2d(8, 1, 1)  # a conv with one output channel
        self.mid = nn.Conv2d(1, 6, 1)
        self.gn = nn.GroupNorm(3, 6)
        self.scale = nn.Parameter(torch.rand(6, 1, 1) + 0.5)  # an unwrapped parameter
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x, y):
        s = torch.relu(self.a(x) + self.b(y))
        z = self.gn(self.mid(self.one(s))) * self.scale
        return self.head(z), self.one(s)


class Swish(nn.Module):  # a customised, parameter-free layer
    def forward(self, x):
        return x * torch.sigmoid(x)


class NonFeatureCat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
        self.act = Swish()
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=2)  # along height: channels of a and b are tied
        return self.c(self.act(y))


def test_cascaded_concat():
    pruned, ratio = prune_and_compare(CascadedConcat(), torch.randn(2, 3, 4, 4))
    assert pruned.bn.num_features == pruned.a.out_channels + pruned.b.out_channels + pruned.c.out_channels
    assert pruned.head.in_features == pruned.bn.num_features * 16 and ratio < 0.7


def test_split_concat_shuffle_and_depthwise():
    pruned, _ = prune_and_compare(SplitConcat(), torch.randn(2, 3, 6, 6))
    assert pruned.right.groups == pruned.right.out_channels == pruned.right.in_channels
    assert pruned.stem.out_channels == pruned.left.in_channels + pruned.right.in_channels < 16


def test_multiple_inputs_outputs_one_channel_conv_groupnorm_and_parameter():
    model = TwoInTwoOut()
    inputs = (torch.randn(2, 3, 5, 5), torch.randn(2, 2, 5, 5))
    graph_outputs = model(*inputs)
    pruned = prune_channels(model, inputs, 0.5)
    out = pruned(*inputs)
    assert [o.shape for o in out] == [o.shape for o in graph_outputs]
    assert pruned.one.out_channels == 1  # never emptied
    assert pruned.a.out_channels == pruned.b.out_channels == 4
    assert pruned.gn.num_groups == 2 and pruned.scale.shape == (4, 1, 1) and pruned.mid.out_channels == 4


def test_custom_layer_and_non_feature_concat():
    pruned, _ = prune_and_compare(NonFeatureCat(), torch.randn(2, 3, 4, 4))
    assert pruned.a.out_channels == pruned.b.out_channels == pruned.c.in_channels == 4


def test_round_to_and_global_scope():
    model = torchvision.models.vgg11_bn(num_classes=10)
    model.classifier = nn.Linear(512 * 7 * 7, 10)
    pruned = prune_channels(model, (3, 32, 32), 0.3, round_to=8, scope="global")
    widths = [m.out_channels for m in pruned.features if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and sum(widths) < sum(
        m.out_channels for m in model.features if isinstance(m, nn.Conv2d))


def test_bad_inputs_raise_clear_errors():
    model = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(ValueError, match="prune_ratio"):
        prune_channels(model, (3, 32, 32), 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        prune_channels(model, (5, 32, 32), 0.5)
    with pytest.raises(ValueError, match="criterion"):
        prune_channels(model, (3, 32, 32), 0.5, criterion="nope")
    with pytest.raises(ValueError, match="ignored layer"):
        prune_channels(model, (3, 32, 32), 0.5, ignored_layers=["nope"])

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return torch.fft.fft2(self.conv(x)).real

    with pytest.raises(ChannelGraphError, match="fft2"):
        prune_channels(Odd(), (3, 8, 8), 0.5)


def test_leaf_module_keeps_its_channels():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            return torch.fft.fft2(self.conv(x)).real

    model = nn.Sequential(nn.Conv2d(3, 8, 1), Block(), nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    pruned = prune_channels(model, (3, 4, 4), 0.5, leaf_modules=["1"])
    assert pruned[0].out_channels == 8 and pruned[1].conv.out_channels == 8 and pruned[2].out_channels == 4


def test_ignored_layers_keep_width():
    model = torchvision.models.resnet18(num_classes=10)
    pruned = prune_channels(model, (3, 32, 32), 0.5, ignored_layers=["layer4.0.conv1"])
    assert pruned.layer4[0].conv1.out_channels == 512 and pruned.layer4[1].conv1.out_channels == 256


def test_taylor_and_random_criteria_leave_the_model_alone():
    torch.manual_seed(0)
    model = build_model("lenet5", DatasetInfo("t", (1, 28, 28), 10))
    batch = (torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    with pytest.raises(ValueError, match="needs batch"):
        prune_channels(model, (1, 28, 28), 0.5, criterion="taylor")
    pruned = prune_channels(model, (1, 28, 28), 0.5, criterion="taylor", batch=batch)
    assert all(p.grad is None for p in model.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    a = prune_channels(model, (1, 28, 28), 0.5, criterion="random", seed=1)
    b = prune_channels(model, (1, 28, 28), 0.5, criterion="random", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_pruned_model_that_no_longer_fits_together_is_reported():
    """The last guard of prune_channels: a graph that missed a dependency gives a clear error."""
    from slimkit.structured import build_graph
    from slimkit.structured.channels import ChannelGraphError
    from slimkit.structured.importance import unit_scores
    from slimkit.structured.select import select_units
    from slimkit.structured.prune import check_runs, remove_units

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    graph = build_graph(model, (4,))
    del graph.tensors[("2.weight", 1)]  # as if the graph had not seen the second Linear read the channels
    pruned = remove_units(model, graph, select_units(graph.groups(), unit_scores(graph, "l1"), 0.5).removed)
    with pytest.raises(ChannelGraphError, match="pruned Sequential is inconsistent"):
        check_runs(pruned, graph, (4,))
    check_runs(model, graph, (4,))  # the intact model passes
