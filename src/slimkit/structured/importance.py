"""Channel importance: one score per unit of a ChannelGraph.

A unit's score is a weight-level criterion of `slimkit.importance`, reduced over every tensor
slice the unit owns (conv/linear rows and columns, norm scales), so coupled channels (a residual
stream, a depthwise block) are judged as one. `slimkit.structured.select` picks the units to remove.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from slimkit.importance import get_criterion
from slimkit.structured.graph import ChannelGraph


@dataclass(frozen=True)
class ChannelCriterion:
    """A channel criterion as a reduction of a weight-level criterion's per-tensor rule."""

    weight_criterion: str  # the registry name whose per-tensor rule scores each tensor
    norm_scales_only: bool = False  # score only the scales (weights) of normalisation layers
    root_sum_squares: bool = False  # sqrt of the summed squares instead of the sum
    needs_grad: bool = False


BUILT_IN = {
    "l1": ChannelCriterion("magnitude"),
    "l2": ChannelCriterion("magnitude", root_sum_squares=True),
    "bn_gamma": ChannelCriterion("magnitude", norm_scales_only=True),
    "taylor": ChannelCriterion("taylor", needs_grad=True),
}
CHANNEL_CRITERIA: tuple[str, ...] = (*BUILT_IN, "random")  # random: one draw per unit, no tensors
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def channel_criterion(name: str) -> ChannelCriterion | None:
    """How channel criterion `name` scores units (None for random): a built-in one, or a criterion
    registered in `slimkit.importance` with a per-tensor rule, summed per unit."""
    if name == "random":
        return None
    if name in BUILT_IN:
        return BUILT_IN[name]
    try:
        registered = get_criterion(name)
    except ValueError:
        registered = None
    if registered is None or registered.per_tensor is None:
        raise ValueError(f"unknown channel criterion '{name}'; choose one of {', '.join(CHANNEL_CRITERIA)}, or a "
                         "criterion registered in slimkit.importance with a per_tensor rule")
    return ChannelCriterion(name, needs_grad="batches" in registered.needs)


def _is_norm_scale(graph: ChannelGraph, qualname: str) -> bool:
    owner = graph.model.get_submodule(qualname.rpartition(".")[0])
    return isinstance(owner, _NORMS) and qualname.endswith("weight")


def _per_index(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over every dim but `dim`: one number per index along `dim`."""
    if values.ndim <= 1:
        return values.reshape(-1).double()
    return values.sum(dim=[d for d in range(values.ndim) if d != dim]).double()


def taylor_gradients(
    model: nn.Module, batch: Sequence[torch.Tensor], loss_fn: Callable[..., torch.Tensor] | None = None
) -> None:
    """Fill `.grad` with the loss gradient on one batch (inputs, targets), for the Taylor criterion."""
    if len(batch) < 2:
        raise ValueError("the taylor criterion needs a batch of (inputs, targets)")
    inputs, targets = batch[0], batch[1]
    model.zero_grad(set_to_none=True)
    loss = (loss_fn or nn.functional.cross_entropy)(model(inputs), targets)
    loss.backward()


def unit_scores(graph: ChannelGraph, criterion: str, *, seed: int = 0) -> torch.Tensor:
    """One score per union-find id (only roots are meaningful): higher = more important.

    Every parameter slice a unit owns is scored by the weight-level criterion's per-tensor rule
    (l1, l2, bn_gamma: magnitude; taylor: |w * grad|, gradients from `taylor_gradients`) and summed
    per unit (l2: square root of the summed squares). Buffers carry no importance.
    """
    spec = channel_criterion(criterion)
    if spec is None:
        return torch.rand(len(graph.uf.parent), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rule = get_criterion(spec.weight_criterion).per_tensor
    if rule is None:
        raise ValueError(f"criterion '{spec.weight_criterion}' has no per-tensor rule to score channels with")
    scores = torch.zeros(len(graph.uf.parent), dtype=torch.float64)
    params = {name for name, _ in graph.model.named_parameters()}
    for (qualname, dim), ids in graph.tensors.items():
        if qualname not in params or (spec.norm_scales_only and not _is_norm_scale(graph, qualname)):
            continue
        tensor = graph.tensor(qualname)
        if spec.needs_grad and tensor.grad is None:
            raise ValueError(f"the {criterion} criterion needs gradients, but '{qualname}' has none; pass batch=")
        values = rule(tensor.detach(), tensor.grad)
        per_index = _per_index(values.pow(2) if spec.root_sum_squares else values, dim)
        roots = graph.uf.roots(ids)
        if per_index.numel() != roots.numel():
            raise ValueError(f"'{qualname}' has {per_index.numel()} slices along dim {dim}, graph says {roots.numel()}")
        scores.index_add_(0, roots, per_index)
    return scores.sqrt() if spec.root_sum_squares else scores
