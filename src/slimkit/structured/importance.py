"""Channel importance and selection: which units of a ChannelGraph to remove.

A unit's score is a weight-level criterion of `slimkit.importance`, reduced over every tensor
slice the unit owns (conv/linear rows and columns, norm scales), so coupled channels (a residual
stream, a depthwise block) are judged as one. Selection is local (the same ratio in every group) or
global (one threshold across groups), always capped so no group is emptied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from slimkit.importance import get_criterion
from slimkit.structured.graph import ChannelGraph, ChannelGroup


@dataclass(frozen=True)
class _ChannelCriterion:
    """A channel criterion as a reduction of a weight-level criterion's per-tensor rule."""

    weight_criterion: str  # the registry name whose per-tensor rule scores each tensor
    norm_scales_only: bool = False  # score only the scales (weights) of normalisation layers
    root_sum_squares: bool = False  # sqrt of the summed squares instead of the sum
    needs_grad: bool = False


_CHANNEL_CRITERIA = {
    "l1": _ChannelCriterion("magnitude"),
    "l2": _ChannelCriterion("magnitude", root_sum_squares=True),
    "bn_gamma": _ChannelCriterion("magnitude", norm_scales_only=True),
    "taylor": _ChannelCriterion("taylor", needs_grad=True),
}
Criterion = Literal["l1", "l2", "bn_gamma", "taylor", "random"]
CRITERIA: tuple[str, ...] = (*_CHANNEL_CRITERIA, "random")  # random: one draw per unit, no tensors
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


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
    if criterion not in CRITERIA:
        raise ValueError(f"unknown channel criterion '{criterion}'; choose one of {', '.join(CRITERIA)}")
    if criterion == "random":
        return torch.rand(len(graph.uf.parent), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spec = _CHANNEL_CRITERIA[criterion]
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


@dataclass
class Selection:
    """The units to remove and, per group, how many were kept (for reports)."""

    removed: set[int]
    kept: dict[int, tuple[int, int]]  # group index -> (kept units, total units)


def _keep_count(n: int, remove: int, min_keep: int, min_keep_fraction: float, round_to: int) -> int:
    keep = max(n - remove, min_keep, math.ceil(min_keep_fraction * n), 1)
    if round_to > 1:
        keep = math.ceil(keep / round_to) * round_to
    return min(keep, n)


def select_units(
    groups: Sequence[ChannelGroup],
    scores: torch.Tensor,
    prune_ratio: float,
    *,
    scope: Literal["local", "global"] = "local",
    normalize: bool = True,
    min_keep: int = 1,
    min_keep_fraction: float = 0.0,
    round_to: int = 1,
) -> Selection:
    """Lowest-scored units: `prune_ratio` of each group (local) or of all units (global threshold).

    Global scores are divided by their group's mean when `normalize` (so wide or deep-summed groups
    are not favoured); BN-gamma, Network Slimming's criterion, is compared raw.
    """
    if not 0 < prune_ratio < 1:
        raise ValueError(f"prune_ratio must be in (0, 1), got {prune_ratio}")
    if scope not in ("local", "global"):
        raise ValueError(f"scope must be 'local' or 'global', got {scope!r}")
    if round_to < 1 or min_keep < 1 or not 0 <= min_keep_fraction < 1:
        raise ValueError("round_to and min_keep must be >= 1 and min_keep_fraction in [0, 1)")
    per_group = [scores[g.units] for g in groups]
    if scope == "global":
        normed = [s / s.mean().clamp_min(1e-12) if normalize else s for s in per_group]
        flat = torch.cat(normed) if normed else torch.zeros(0)
        k = int(prune_ratio * flat.numel())
        threshold = flat.kthvalue(k).values if k > 0 else -math.inf
        wanted = [int((s <= threshold).sum()) for s in normed]
    else:
        wanted = [int(prune_ratio * len(g.units)) for g in groups]
    removed: set[int] = set()
    kept: dict[int, tuple[int, int]] = {}
    for i, (group, s, want) in enumerate(zip(groups, per_group, wanted)):
        n = len(group.units)
        keep = _keep_count(n, want, min_keep, min_keep_fraction, round_to)
        order = torch.argsort(s, stable=True)
        removed.update(group.units[order[: n - keep]].tolist())
        kept[i] = (keep, n)
    return Selection(removed, kept)
