"""Which units of a ChannelGraph to remove, given their scores: local (the same ratio in every
group) or global (one threshold across groups), always capped so no group is emptied."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from slimkit.structured.graph import ChannelGroup


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
        keep = keep_count(n, want, min_keep, min_keep_fraction, round_to)
        order = torch.argsort(s, stable=True)
        removed.update(group.units[order[: n - keep]].tolist())
        kept[i] = (keep, n)
    return Selection(removed, kept)
