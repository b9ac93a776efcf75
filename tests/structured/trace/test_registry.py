"""The public op registry: a user's own module class and function get handlers and prune exactly."""

import pytest
import torch
from torch import nn

from slimkit.structured import build_graph, prune_channels, register_function_handler, register_module_handler
from slimkit.structured.channels import Chan
from tests.structured.helpers import prune_and_compare, randomize_norms


class EinsumScale(nn.Module):
    """A per-channel scale written with einsum, which the graph cannot follow op by op."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.rand(channels) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,c->nchw", x, self.scale)


def scale_handler(prop, node, module: EinsumScale):
    """Channels pass through, and each owns its slice of `scale`."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "EinsumScale")
    prop.record(f"{node.target}.scale", 0, ids)
    prop.record_module(str(node.target), ids, ids)
    return Chan(1, ids)


def channel_gate(x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(gate)[None, :, None, None]


torch.fx.wrap("channel_gate")  # traced as one call, which the graph does not know


def gate_handler(prop, node):
    """The gate's entries meet x's channels one to one."""
    x = prop.chan(node, node.args[0])
    ids = prop.channel_dim(node, x, 1, "channel_gate")
    prop.uf.union(ids, prop.chan(node, node.args[1]).ids)
    return x


class Net(nn.Module):
    def __init__(self, middle: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.middle = middle or EinsumScale(8)
        self.gate = nn.Parameter(torch.randn(8))
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = channel_gate(self.middle(torch.relu(self.bn1(self.conv1(x)))), self.gate)
        return self.head(torch.relu(self.conv2(h)).mean((2, 3)))


def _model() -> Net:
    torch.manual_seed(0)
    model = Net()
    randomize_norms(model)
    return model.eval()


def test_unknown_module_and_function_keep_their_channels():
    """Without handlers, the einsum and the wrapped function are opaque: conv1's channels stay."""
    graph = build_graph(_model(), (3, 8, 8))
    assert any("einsum" in name for name in graph.opaque) and any("channel_gate" in name for name in graph.opaque)
    pruned = prune_channels(_model(), (3, 8, 8), 0.5)
    assert pruned.conv1.out_channels == 8 and pruned.conv2.out_channels == 3


class EinsumScaleSubclass(EinsumScale):
    pass


@pytest.fixture
def registered():
    register_module_handler(EinsumScale, scale_handler)
    register_function_handler(channel_gate, gate_handler)
    yield
    from slimkit.structured.trace import registry

    registry._MODULE_HANDLERS.pop(EinsumScale)
    registry._LEAF_TYPES.pop(EinsumScale)
    registry._FUNCTION_HANDLERS.pop(channel_gate)


def test_registered_module_and_function_prune_exactly(registered):
    model = _model()
    graph = build_graph(model, (3, 8, 8))
    assert ("middle.scale", 0) in graph.tensors and not graph.opaque  # a leaf, followed by its handler
    pruned, _ = prune_and_compare(model, torch.randn(2, 3, 8, 8), atol=1e-5)
    assert pruned.conv1.out_channels == 4 and pruned.middle.scale.shape == (4,) and pruned.gate.shape == (4,)
    assert pruned.conv2.in_channels == 4


def test_a_subclass_inherits_the_handler(registered):
    model = _model()
    model.middle = EinsumScaleSubclass(8)
    assert prune_channels(model, (3, 8, 8), 0.5).middle.scale.shape == (4,)


@pytest.mark.parametrize("call", [
    lambda: register_module_handler(int, scale_handler),
    lambda: register_module_handler(EinsumScale, "not a function"),
    lambda: register_function_handler(3, gate_handler),
    lambda: register_function_handler("", gate_handler),
])
def test_bad_registrations_name_the_problem(call):
    with pytest.raises(TypeError, match="handler|nn.Module|method name"):
        call()
