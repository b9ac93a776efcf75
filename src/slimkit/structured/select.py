"""Which units of a ChannelGraph to remove, given their scores: local (the same ratio in every
group) or global (one threshold across groups), always capped so no group is emptied."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from slimkit.structured.graph import ChannelGroup

log = logging.getLogger("slimkit")


@dataclass
class Selection:
    """The units to remove and, per group, how many were kept (for reports)."""

    removed: set[int]
    kept: dict[int, tuple[int, int]]  # group index -> (kept units, total units)


def keep_count(n: int, remove: int, min_keep: int, min_keep_fraction: float, round_to: int) -> int:
    keep = max(n - remove, min_keep, math.ceil(min_keep_fraction * n), 1)
    if round_to > 1:
        keep = math.ceil(keep / round_to) * round_to
    return min(keep, n)


def _rank_only_groups(per_group: Sequence[torch.Tensor]) -> bool:
    """Whether the scores are constant within every group of two or more units (and such a
    group exists): they then tell groups apart, never channels. A fresh network's BatchNorm
    scales are all 1, and a group's score sums its coupled norms, so one global threshold
    would remove every channel of every single-norm group and none of the residual ones."""
    wide = [s for s in per_group if s.numel() >= 2]
    return bool(wide) and all(bool((s == s[0]).all()) for s in wide)


def _global_counts(normed: Sequence[torch.Tensor], k: int) -> list[int]:
    """How many units each group gives up so that the k lowest scores overall go.

    Units strictly below the k-th smallest score all go. Units tied at it share what is left of k
    in proportion to each group's tied count (largest remainder), so tied scores (a fresh
    network's BatchNorm scales, all 1) take the same fraction of every group instead of every
    tied unit going and whole layers shrinking to `min_keep`. Without ties at the threshold this
    is exactly the units <= threshold.
    """
    if k <= 0:
        return [0] * len(normed)
    threshold = torch.cat(list(normed)).kthvalue(k).values
    below = [int((s < threshold).sum()) for s in normed]
    tied = [int((s == threshold).sum()) for s in normed]
    quota, total_tied = k - sum(below), sum(tied)
    if quota >= total_tied:  # no tie to break: every unit at the threshold goes
        return [b + t for b, t in zip(below, tied)]
    shares = [quota * t / total_tied for t in tied]
    taken = [math.floor(share) for share in shares]
    by_remainder = sorted(range(len(shares)), key=lambda i: taken[i] - shares[i])  # stable: group order
    for i in by_remainder[: quota - sum(taken)]:
        taken[i] += 1
    return [b + t for b, t in zip(below, taken)]


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
    local = [int(prune_ratio * len(g.units)) for g in groups]
    if scope == "global" and _rank_only_groups(per_group):
        log.warning(
            "the scores never differ within a channel group (an untrained network's BatchNorm scales are "
            "all equal), so they cannot rank channels: removing %g of every group instead of one global "
            "threshold", prune_ratio,
        )
        wanted = local
    elif scope == "global":
        normed = [s / s.mean().clamp_min(1e-12) if normalize else s for s in per_group]
        wanted = _global_counts(normed, int(prune_ratio * sum(s.numel() for s in normed)))
    else:
        wanted = local
    removed: set[int] = set()
    kept: dict[int, tuple[int, int]] = {}
    for i, (group, s, want) in enumerate(zip(groups, per_group, wanted)):
        n = len(group.units)
        keep = keep_count(n, want, min_keep, min_keep_fraction, round_to)
        order = torch.argsort(s, stable=True)
        removed.update(group.units[order[: n - keep]].tolist())
        kept[i] = (keep, n)
    if scope == "global":
        _warn_collapsed(groups, wanted, kept)
    return Selection(removed, kept)


def _warn_collapsed(groups: Sequence[ChannelGroup], wanted: list[int], kept: dict[int, tuple[int, int]]) -> None:
    """Say which groups the global threshold would have emptied: they keep only the floor
    (min_keep / min_keep_fraction), which usually means the scores were not trained to be
    compared (Network Slimming needs the L1 term on the BatchNorm scales first)."""
    collapsed = [
        f"{_group_name(group)} ({kept[i][0]} of {kept[i][1]})"
        for i, group in enumerate(groups) if kept[i][1] > 1 and wanted[i] >= kept[i][1]
    ]
    if collapsed:
        log.warning(
            "the global threshold removes every channel of %d group(s), which keep only their minimum: %s. "
            "Train with the sparsity term first, use scope='local', or raise min_keep_fraction.",
            len(collapsed), "; ".join(collapsed),
        )


def _group_name(group: ChannelGroup) -> str:
    """The modules whose channels the group holds (`layer1.0.bn1, layer1.0.conv1`)."""
    modules = sorted({name.rpartition(".")[0] or name for name, _ in group.members})
    return ", ".join(modules[:4]) + (f" and {len(modules) - 4} more" if len(modules) > 4 else "")
