"""Shared test helpers: a pruning check that fails if any removed channel still mattered."""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimkit.structured.graph import ChannelGraph, build_graph
from slimkit.structured.importance import unit_scores
from slimkit.structured.select import select_units
from slimkit.structured.prune import remove_units


@torch.no_grad()
def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Random BN statistics and affine values, so BN is not the identity in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


@torch.no_grad()
def zero_units(model: nn.Module, graph: ChannelGraph, removed: set[int]) -> nn.Module:
    """A copy of `model` where every slice owned by a removed unit is zero (variances stay 1)."""
    out = copy.deepcopy(model)
    for (qualname, dim), ids in graph.tensors.items():
        roots = graph.uf.roots(ids).tolist()
        gone = torch.tensor([i for i, r in enumerate(roots) if r in removed], dtype=torch.long)
        if gone.numel() == 0:
            continue
        module_name, _, attr = qualname.rpartition(".")
        tensor = getattr(out.get_submodule(module_name), attr)
        tensor.index_fill_(dim, gone, 1.0 if attr == "running_var" else 0.0)
    return out


def prune_and_compare(model: nn.Module, inputs: torch.Tensor, ratio: float = 0.5, criterion: str = "l1",
                      atol: float = 1e-4, **graph_kwargs) -> tuple[nn.Module, float]:
    """Prune `ratio` of channels; the pruned model must equal the zeroed original. Returns (pruned, param ratio)."""
    model.eval()
    graph = build_graph(model, inputs, **graph_kwargs)
    selection = select_units(graph.groups(), unit_scores(graph, criterion), ratio)
    assert selection.removed, "nothing was selected for removal"
    reference = zero_units(model, graph, selection.removed).eval()
    pruned = remove_units(model, graph, selection.removed).eval()
    with torch.no_grad():
        expected, got = reference(inputs), pruned(inputs)
    assert got.shape == expected.shape
    diff = (got - expected).abs().max().item()
    assert diff < atol * max(1.0, expected.abs().max().item()), f"pruned output differs by {diff}"
    before = sum(p.numel() for p in model.parameters())
    after = sum(p.numel() for p in pruned.parameters())
    return pruned, after / before
