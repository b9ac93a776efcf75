"""Batch-norm folding: Conv -> BatchNorm becomes one Conv with adjusted weight and bias.

    w' = w * gamma / sqrt(var + eps)        b' = (b - mean) * gamma / sqrt(var + eps) + beta

QAT folds once, before training, using the BN running statistics, and replaces the BN with
`nn.Identity`; the folded conv then trains with quantized, folded weights, which is what the int8
model runs (Krishnamoorthi 2018, sec. 3.2, "freeze BN statistics" variant). Pairs are found on a
`torch.fx` trace, so only a BN whose sole input is a conv's output (used nowhere else) is folded.
"""

from __future__ import annotations

import torch
from torch import fx, nn


def _fold_into(conv: nn.modules.conv._ConvNd, bn: nn.modules.batchnorm._BatchNorm) -> None:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
        beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
        factor = gamma / std
        shape = [-1] + [1] * (conv.weight.dim() - 1)
        if conv.transposed:  # ConvTranspose weights are (in, out/groups, ...)
            raise ValueError("folding BatchNorm into a transposed convolution is not supported")
        conv.weight.mul_(factor.reshape(shape))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(std)
        new_bias = (bias - bn.running_mean) * factor + beta
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.copy_(new_bias)


def fold_batchnorm(model: nn.Module) -> list[tuple[str, str]]:
    """Fold every Conv -> BN pair of `model` in place; returns the (conv, bn) names folded."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable control flow
        raise ValueError(f"cannot trace {type(model).__name__} with torch.fx to find Conv->BN pairs: {exc}") from exc
    modules = dict(model.named_modules())
    folded = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or source.op != "call_module" or len(source.users) != 1:
            continue
        conv = modules.get(source.target)
        if isinstance(conv, nn.modules.conv._ConvNd) and not conv.transposed:
            _fold_into(conv, modules[node.target])
            parent_name, _, child = node.target.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.Identity())
            folded.append((source.target, node.target))
    return folded
