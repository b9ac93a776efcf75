"""Attention layers prune per-head dimensions consistently, and exactly: removing channels that were
zero leaves the output unchanged (LayerNorms are swapped for Identity where present, since a
LayerNorm's statistics do change when channels go)."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.maxvit import RelativePositionalMultiHeadAttention
from torchvision.models.swin_transformer import ShiftedWindowAttention, ShiftedWindowAttentionV2

from slimkit.structured import build_graph, prune_channels
from slimkit.structured.trace.registry import WIDTH_ATTRIBUTES
from slimkit.structured.importance import unit_scores
from slimkit.structured.select import select_units
from slimkit.structured.prune import remove_units
from tests.structured.helpers import prune_and_compare, zero_units


class SelfAttentionNet(nn.Module):
    def __init__(self, batch_first: bool = True, cross: bool = False):
        super().__init__()
        self.batch_first, self.cross = batch_first, cross
        self.embed = nn.Linear(4, 16)
        self.memory = nn.Linear(4, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        h = self.embed(x)
        if not self.batch_first:
            h = h.transpose(0, 1)
        if self.cross:
            m = self.memory(x)
            m = m if self.batch_first else m.transpose(0, 1)
            out = self.attn(query=h, key=m, value=m, need_weights=False)[0]
        else:
            out = self.attn(h, h, h)[0]
        h = h + out
        h = h + self.mlp(h)
        if not self.batch_first:
            h = h.transpose(0, 1)
        return self.head(h.mean(1))


@pytest.mark.parametrize("batch_first,cross", [(True, False), (False, False), (True, True)])
def test_multihead_attention_prunes_head_dims_exactly(batch_first, cross):
    torch.manual_seed(0)
    model = SelfAttentionNet(batch_first, cross)
    pruned, ratio = prune_and_compare(model, torch.randn(2, 5, 4), atol=1e-5)
    attn = pruned.attn
    assert attn.embed_dim < 16 and attn.embed_dim % attn.num_heads == 0
    assert attn.head_dim == attn.embed_dim // 4 and attn.in_proj_weight.shape == (3 * attn.embed_dim, attn.embed_dim)
    assert attn.out_proj.in_features == attn.out_proj.out_features == attn.embed_dim
    assert ratio < 0.7


def test_dimension_j_of_every_head_is_one_unit():
    model = SelfAttentionNet()
    graph = build_graph(model, torch.randn(2, 5, 4))
    roots = graph.uf.roots(graph.tensors[("attn.in_proj_weight", 1)]).reshape(4, 4)  # (head, dim)
    assert all(torch.equal(roots[0], roots[h]) for h in range(4))
    assert len(set(roots[0].tolist())) == 4  # the dims within a head stay separate units


def _window_net(attention_type):
    class WindowNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 16)
            self.attn = attention_type(16, window_size=[4, 4], shift_size=[2, 2], num_heads=2)
            self.head = nn.Linear(16, 5)

        def forward(self, x):  # x: (B, H, W, 3)
            h = self.embed(x)
            h = h + self.attn(h)
            return self.head(h.mean((1, 2)))

    return WindowNet()


@pytest.mark.parametrize("attention_type", [ShiftedWindowAttention, ShiftedWindowAttentionV2])
def test_swin_window_attention_prunes_exactly(attention_type):
    torch.manual_seed(0)
    model = _window_net(attention_type)
    pruned, _ = prune_and_compare(model, torch.randn(2, 8, 8, 3), atol=1e-5)
    assert pruned.attn.qkv.in_features == 8 and pruned.attn.qkv.out_features == 24 and pruned.attn.proj.out_features == 8


def test_maxvit_attention_prunes_exactly():
    class GridNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 16)
            self.attn = RelativePositionalMultiHeadAttention(16, head_dim=4, max_seq_len=16)
            self.head = nn.Linear(16, 5)

        def forward(self, x):  # x: (B, G, P, 3), P = 16 positions per window
            h = self.embed(x)
            h = h + self.attn(h)
            return self.head(h.mean((1, 2)))

    torch.manual_seed(0)
    model = _sharpen(GridNet())
    pruned, _ = prune_and_compare(model, torch.randn(2, 3, 16, 3), atol=1e-5)
    assert pruned.attn.n_heads == 4 and pruned.attn.head_dim == 2 and pruned.attn.merge.in_features == 8


@torch.no_grad()
def _sharpen(model: nn.Module) -> nn.Module:
    """Unit-variance projections (torchvision's tiny init makes attention uniform and zeroes ViT's head)."""
    for name, param in model.named_parameters():
        if param.ndim == 2:
            param.normal_(0, param.shape[1] ** -0.5)
    return model


def _without_layernorm(model: nn.Module) -> nn.Module:
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.LayerNorm):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, nn.Identity())
    return model


def test_vision_transformer_embedding_and_heads_prune_exactly():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    pruned, ratio = prune_and_compare(_sharpen(_without_layernorm(vit)), torch.randn(2, 3, 32, 32), atol=1e-4)
    assert pruned.hidden_dim == pruned.conv_proj.out_channels == 16  # the reshape's width followed pruning
    assert vit.hidden_dim == 32 and type(vit.hidden_dim) is int  # the original keeps a plain int
    assert all(layer.self_attention.embed_dim == 16 for layer in pruned.encoder.layers)
    assert ratio < 0.4


def test_maxvit_prunes_exactly():
    torch.manual_seed(0)
    maxvit = torchvision.models.maxvit_t(num_classes=10)
    pruned, ratio = prune_and_compare(_sharpen(_without_layernorm(maxvit)), torch.randn(2, 3, 224, 224), atol=1e-4)
    assert ratio < 0.4


def test_swin_transformer_prunes_exactly():
    torch.manual_seed(0)
    swin = torchvision.models.swin_t(num_classes=10)
    pruned, ratio = prune_and_compare(_sharpen(_without_layernorm(swin)), torch.randn(2, 3, 32, 32), atol=1e-4)
    assert pruned.features[1][0].attn.qkv.in_features == 48  # stage 1: 96 -> 48 channels
    assert ratio < 0.4


def test_pruned_vision_transformer_still_runs_with_layernorm():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    pruned = prune_channels(vit, (3, 32, 32), 0.5)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert pruned.encoder.ln.normalized_shape == (16,)


def test_attention_over_a_non_channel_dim_is_kept_whole():
    """Conv channels in dim 1, attention embedding = the length dim: nothing to tie, so kept as is."""

    class ConvThenAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 8, 3, padding=1)
            self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
            self.head = nn.Linear(8 * 6, 3)

        def forward(self, x):  # (N, 2, 6) -> (N, 8, 6): a "sequence" of 8 conv channels, embedding 6
            h = self.conv(x)
            return self.head((h + self.attn(h, h, h)[0]).flatten(1))

    pruned = prune_channels(ConvThenAttention(), (2, 6), 0.5)
    assert pruned.attn.embed_dim == 6 and pruned(torch.randn(2, 2, 6)).shape == (2, 3)


def test_load_pruned_model_rebuilds_a_head_pruned_vision_transformer():
    from slimkit.structured.netslim import load_pruned_model

    def build():
        return torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10
        ).eval()

    torch.manual_seed(0)
    pruned = prune_channels(_sharpen(build()), (3, 32, 32), 0.5).eval()
    loaded = load_pruned_model(build(), pruned.state_dict()).eval()
    assert loaded.hidden_dim == 16 and loaded.encoder.layers[0].self_attention.head_dim == 4
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), pruned(x), atol=1e-6)


# ---- attention written inline in a model's forward --------------------------------------------


class FusedQKVAttention(nn.Module):
    """timm's ViT attention: one qkv Linear, heads by reshape + permute, explicit scale or SDPA."""

    def __init__(self, dim: int, num_heads: int, sdpa: bool, index: bool = False):
        super().__init__()
        self.num_heads, self.sdpa, self.index = num_heads, sdpa, index
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = (qkv[0], qkv[1], qkv[2]) if self.index else qkv.unbind(0)
        if self.sdpa:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: split into q, k, v by the embedding width, heads from `C // n_head`."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class InlineBlock(nn.Module):
    def __init__(self, attention: nn.Module, dim: int = 32):
        super().__init__()
        self.embed = nn.Linear(6, dim)
        self.attn = attention
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 5)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.attn(h)
        h = h + self.mlp(h)
        return self.head(h.mean(1))


@pytest.mark.parametrize("sdpa,index", [(False, False), (True, False), (False, True)])
def test_fused_qkv_attention_written_inline_prunes_head_dims_exactly(sdpa, index):
    torch.manual_seed(0)
    model = _sharpen(InlineBlock(FusedQKVAttention(32, 4, sdpa=sdpa, index=index)))
    pruned, ratio = prune_and_compare(model, torch.randn(2, 7, 6), atol=1e-5)
    assert pruned.attn.qkv.weight.shape == (48, 16) and pruned.attn.proj.weight.shape == (16, 16)
    assert ratio < 0.35
    graph = build_graph(model, torch.randn(2, 7, 6))
    roots = graph.uf.roots(graph.tensors[("attn.qkv.weight", 0)]).reshape(3, 4, 8)  # (q/k/v, head, dim)
    assert (roots == roots[:1, :1]).all()  # dimension j of q, k and v in every head is one unit
    assert len(set(roots[0, 0].tolist())) == 8
    assert len(graph.query_scales) == int(sdpa)


def test_sdpa_scale_follows_the_pruned_width():
    """SDPA divides by sqrt of the new head width: without rescaled queries the scores would change."""
    torch.manual_seed(0)
    model = _sharpen(InlineBlock(FusedQKVAttention(32, 4, sdpa=True))).eval()
    graph = build_graph(model, torch.randn(2, 7, 6))
    graph.query_scales.clear()
    selection = select_units(graph.groups(), unit_scores(graph, "l1"), 0.5)
    reference = zero_units(model, graph, selection.removed).eval()
    pruned = remove_units(model, graph, selection.removed).eval()
    x = torch.randn(2, 7, 6)
    with torch.no_grad():
        assert (pruned(x) - reference(x)).abs().max() > 1e-2


def test_nanogpt_attention_prunes_with_its_width_attribute_registered(monkeypatch):
    monkeypatch.setitem(WIDTH_ATTRIBUTES, CausalSelfAttention, {"n_embd": "c_proj.weight"})
    torch.manual_seed(0)
    model = _sharpen(InlineBlock(CausalSelfAttention(32, 4)))
    pruned, ratio = prune_and_compare(model, torch.randn(2, 7, 6), atol=1e-5)
    assert pruned.attn.n_embd == 16 and type(model.attn.n_embd) is int and model.attn.n_embd == 32
    assert pruned.attn.c_attn.weight.shape == (48, 16) and ratio < 0.35


def test_nanogpt_attention_without_the_attribute_keeps_its_width():
    """`split(self.n_embd)` is a literal size unless registered: the embedding is kept, the MLP pruned."""
    pruned = prune_channels(InlineBlock(CausalSelfAttention(32, 4)), (7, 6), 0.5)
    assert pruned.attn.c_attn.weight.shape == (96, 32) and pruned.mlp[0].out_features == 32
    assert pruned(torch.randn(2, 7, 6)).shape == (2, 5)


def test_matmul_with_a_weight_matrix_follows_its_columns():
    """x @ W: x's channels meet W's rows, which the graph does not slice, so x keeps them; the
    output's channels are W's columns and prune with the layer that reads them."""

    class MatrixNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(6, 8)
            self.weight = nn.Parameter(torch.randn(8, 12))
            self.head = nn.Linear(12, 3)

        def forward(self, x):
            return self.head(torch.relu(self.embed(x) @ self.weight))

    torch.manual_seed(0)
    pruned, _ = prune_and_compare(MatrixNet(), torch.randn(2, 6), atol=1e-5)
    assert pruned.weight.shape == (8, 6) and pruned.embed.out_features == 8 and pruned.head.in_features == 6
