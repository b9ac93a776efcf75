"""Models written to trip the channel graph (attention variants, widths read from shapes, shared
weights, constants). Each must either prune exactly (the pruned model equals the original with the
removed channels zeroed) or keep the channels in question whole; it must never break the model."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.structured import build_graph
from slimkit.structured.trace.registry import WIDTH_ATTRIBUTES
from slimkit.structured.importance import unit_scores
from slimkit.structured.select import select_units
from slimkit.structured.prune import remove_units
from tests.structured.helpers import randomize_norms, zero_units
from tests.structured.test_functional import GroupNormed
from tests.structured.test_attention import _sharpen


def check_exact_or_whole(model: nn.Module, x: torch.Tensor, ratio: float = 0.5) -> int:
    """Prune `ratio` of the units; the pruned model must equal the zeroed original. Returns the
    number of units removed (0 when everything had to stay)."""
    model.eval()
    graph = build_graph(model, x)
    removed = select_units(graph.groups(), unit_scores(graph, "l1"), ratio).removed
    if removed:
        reference, pruned = zero_units(model, graph, removed).eval(), remove_units(model, graph, removed).eval()
        with torch.no_grad():
            expected, got = reference(x), pruned(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())
    return len(removed)


class Residual(nn.Module):
    """embed -> x + attention(x) -> head; no LayerNorm, so pruning zero channels must be exact."""

    def __init__(self, attention: nn.Module, dim: int = 16):
        super().__init__()
        self.embed, self.attn, self.head = nn.Linear(6, dim), attention, nn.Linear(dim, 5)

    def forward(self, x):
        h = self.embed(x)
        return self.head((h + self.attn(h)).mean(1))


class Projections(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def split(self, t: torch.Tensor) -> torch.Tensor:
        B, N, C = t.shape
        return t.view(B, N, self.heads, C // self.heads).transpose(1, 2)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        return self.o(y.transpose(1, 2).flatten(2))


class LiteralHeadWidth(Projections):  # HF style: view(B, N, -1, head_dim) with head_dim written in
    def forward(self, x):
        B, N, _ = x.shape
        q, k, v = (t.view(B, N, -1, 4).transpose(1, 2) for t in (self.q(x), self.k(x), self.v(x)))
        return self.merge(((q @ k.transpose(-2, -1)) * 0.5).softmax(-1) @ v)


class InferredHeadCount(Projections):  # view(B, N, -1, C // H): the head count is inferred
    def forward(self, x):
        B, N, C = x.shape
        q, k, v = (t.view(B, N, -1, C // self.heads).transpose(1, 2) for t in (self.q(x), self.k(x), self.v(x)))
        return self.merge(F.scaled_dot_product_attention(q, k, v))


class QueryBias(Projections):  # the queries are not a plain projection: SDPA's scale cannot be fixed
    def __init__(self):
        super().__init__()
        self.q_bias = nn.Parameter(torch.randn(16))

    def forward(self, x):
        q = self.split(self.q(x) + self.q_bias)
        return self.merge(F.scaled_dot_product_attention(q, self.split(self.k(x)), self.split(self.v(x))))


class QueryNonlinear(Projections):
    def forward(self, x):
        q = self.split(F.gelu(self.q(x)))
        return self.merge(F.scaled_dot_product_attention(q, self.split(self.k(x)), self.split(self.v(x))))


class SharedQueryKey(Projections):  # the same tensor is query and key
    def forward(self, x):
        qk = self.split(self.q(x))
        return self.merge(F.scaled_dot_product_attention(qk, qk, self.split(self.v(x))))


class InputAsQuery(Projections):  # the block input itself is the query: its producer feeds the residual
    def forward(self, x):
        return self.merge(F.scaled_dot_product_attention(self.split(x), self.split(self.k(x)), self.split(self.v(x))))


class QueryTwice(Projections):
    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        return self.merge(F.scaled_dot_product_attention(q, k, v) + F.scaled_dot_product_attention(q, v, k))


class QueryBatchNorm(Projections):  # a non-affine BatchNorm between the projection and SDPA
    def __init__(self):
        super().__init__()
        self.q_bn = nn.BatchNorm1d(16, affine=False)

    def forward(self, x):
        q = self.split(self.q_bn(self.q(x).transpose(1, 2)).transpose(1, 2))
        return self.merge(F.scaled_dot_product_attention(q, self.split(self.k(x)), self.split(self.v(x))))


class ScaleFromShape(Projections):  # single head, scale read from the query's width
    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        return self.o(((q @ k.mT) * q.shape[-1] ** -0.5).softmax(-1) @ v)


class ScaleArgFromShape(Projections):
    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        return self.merge(F.scaled_dot_product_attention(q, k, v, scale=q.size(-1) ** -0.5))


class WidthUsedTwice(Projections):  # head_dim registered; v's width is pinned by a normalisation over it
    def __init__(self):
        super().__init__()
        self.head_dim = 4

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = (t.reshape(B, N, self.heads, self.head_dim).transpose(1, 2)
                   for t in (self.q(x), self.k(x), F.normalize(self.v(x), dim=-1)))
        return self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, -1))


class WidthInArithmetic(nn.Module):  # the scale is computed from a registered width in forward
    def __init__(self, dim: int = 16, heads: int = 4):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv, self.o = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, scale=self.head_dim ** -0.5)
        return self.o(y.transpose(1, 2).reshape(B, N, C))


ATTENTION_CASES = {
    "literal head width": LiteralHeadWidth,
    "inferred head count": InferredHeadCount,
    "query bias": QueryBias,
    "query through gelu": QueryNonlinear,
    "shared query and key": SharedQueryKey,
    "input as query": InputAsQuery,
    "query used twice": QueryTwice,
    "non-affine batchnorm on queries": QueryBatchNorm,
    "scale from the query's shape": ScaleFromShape,
    "scale argument from the query's shape": ScaleArgFromShape,
    "width used twice": WidthUsedTwice,
    "width in arithmetic": WidthInArithmetic,
}


@pytest.mark.parametrize("name", list(ATTENTION_CASES))
def test_attention_variants_prune_exactly_or_stay_whole(name, monkeypatch):
    cls = ATTENTION_CASES[name]
    monkeypatch.setitem(WIDTH_ATTRIBUTES, WidthUsedTwice, {"head_dim": lambda m: m.q.out_features // m.heads})
    monkeypatch.setitem(WIDTH_ATTRIBUTES, WidthInArithmetic, {"head_dim": lambda m: m.qkv.out_features // (3 * m.heads)})
    torch.manual_seed(0)
    model = _sharpen(Residual(cls()))
    randomize_norms(model)
    with torch.no_grad():  # uneven heads: no two heads lose the same channels by chance
        for name_, param in model.named_parameters():
            if name_.startswith("attn.") and param.ndim == 2:
                param[: param.shape[0] // 4] *= 0.01
    check_exact_or_whole(model, torch.randn(2, 7, 6))


def test_weight_shared_by_a_module_and_f_linear_keeps_its_rows():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 8), nn.Linear(6, 8)
            self.proj = nn.Linear(8, 8, bias=False)
            self.h1, self.h2 = nn.Linear(8, 3), nn.Linear(8, 3)

        def forward(self, x):
            u = torch.relu(self.proj(torch.relu(self.a(x))))
            v = F.linear(torch.relu(self.b(x)), self.proj.weight) + torch.relu(self.b(x)) @ self.proj.weight.t()
            return self.h1(u) + self.h2(v)

    torch.manual_seed(0)
    assert check_exact_or_whole(Shared(), torch.randn(2, 6)) > 0


def test_constants_made_in_forward_keep_their_sizes():
    class Constants(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2 = nn.Linear(6, 8), nn.Linear(8, 3)

        def forward(self, x):  # x: (B, N, 6)
            h = torch.relu(self.l1(x)) + torch.full((x.shape[0], 1, 8), 0.5) + torch.ones(1, 1, 8)
            return self.l2(h.unflatten(-1, (2, 4)).flatten(-2)).mean(1)

    torch.manual_seed(0)
    check_exact_or_whole(Constants(), torch.randn(2, 5, 6))


def test_elementwise_scale_read_from_the_channel_width():
    class ShapeScaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)

        def forward(self, x):
            h = self.conv1(x)
            return self.conv2(h * h.shape[1] ** -0.5).mean((2, 3))

    torch.manual_seed(0)
    check_exact_or_whole(ShapeScaled(), torch.randn(2, 3, 8, 8))


def test_functional_group_norm_prunes_exactly_or_stays():
    torch.manual_seed(0)
    model = GroupNormed(2)
    with torch.no_grad():
        model.gamma.uniform_(0.5, 1.5)
        model.beta.normal_(0, 0.1)
    assert check_exact_or_whole(model, torch.randn(2, 3, 8, 8)) == 0


class SqueezeExcite(nn.Module):
    def __init__(self, whole_shape: bool):
        super().__init__()
        self.whole_shape = whole_shape
        self.stem, self.body = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.fc1, self.fc2, self.head = nn.Linear(16, 4), nn.Linear(4, 16), nn.Conv2d(16, 5, 1)

    def forward(self, x):
        x = torch.relu(self.body(torch.relu(self.stem(x))))
        b, c, h, w = x.size()
        y = torch.sigmoid(self.fc2(torch.relu(self.fc1(F.adaptive_avg_pool2d(x, 1).view(b, c))))).view(b, c, 1, 1)
        return self.head(x * (y.expand(x.size()) if self.whole_shape else y.expand(b, c, h, w))).mean((2, 3))


class ChannelMatmul(nn.Module):  # conv maps multiplied channel by channel: channels are a batch dim
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 5, 1)

    def forward(self, x):
        return self.head(torch.matmul(self.a(x), self.b(x).transpose(-1, -2))).mean((2, 3))


class GatedSplit(nn.Module):  # GLU gate split by another tensor's width
    def __init__(self):
        super().__init__()
        self.a, self.g, self.h = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 5, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        p, q = self.g(y).split(y.size(1), dim=1)
        return self.h(y + p * torch.sigmoid(q)).mean((2, 3))


class ReshapeToOtherShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.h = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1), nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return self.h(torch.relu(self.b(torch.relu(self.a(x)))).reshape(x.shape)).mean((2, 3))


class SplitByOtherSizes(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.h1, self.h2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(3, 5, 1), nn.Conv2d(3, 5, 1)

    def forward(self, x):
        p, q = torch.split(torch.relu(self.a(x)), [x.size(1), x.size(1)], dim=1)
        return (self.h1(p) + self.h2(q)).mean((2, 3))


@pytest.mark.parametrize("model,prunes", [
    (SqueezeExcite(whole_shape=False), True), (SqueezeExcite(whole_shape=True), True), (ChannelMatmul(), True),
    (GatedSplit(), True), (ReshapeToOtherShape(), True), (SplitByOtherSizes(), False),
], ids=["se expand(b, c, h, w)", "se expand(x.size())", "channel matmul", "gated split", "reshape(x.shape)",
        "split by other sizes"])
def test_convnet_size_patterns_prune_exactly(model, prunes):
    torch.manual_seed(0)
    assert (check_exact_or_whole(model, torch.randn(2, 3, 8, 8)) > 0) == prunes


class QueryKeyFromOneLinear(Projections):  # the query projection is called again for the keys
    def forward(self, x):
        q, k = self.split(self.q(x)), self.split(self.q(x))
        return self.merge(F.scaled_dot_product_attention(q, k, self.split(self.v(x))))


def test_a_projection_called_twice_is_not_rescaled_as_queries():
    torch.manual_seed(0)
    check_exact_or_whole(_sharpen(Residual(QueryKeyFromOneLinear())), torch.randn(2, 7, 6))


def test_outputs_as_tuples_and_timm_qk_norm_prune():
    from timm.models.vision_transformer import VisionTransformer

    from slimkit.structured import prune_channels

    class Chunks(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))).chunk(2, dim=1)

    assert prune_channels(Chunks(), (3, 8, 8), 0.5).a.out_channels == 4
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5, qk_norm=True)
    assert prune_channels(vit, (3, 32, 32), 0.5)(torch.randn(2, 3, 32, 32)).shape == (2, 5)
