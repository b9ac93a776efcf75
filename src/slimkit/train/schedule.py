"""Learning-rate schedules as pure functions of training progress.

The factor depends only on how far training has got (a fraction of the epoch budget), not on a
step counter, so it survives resume and a change of dataset size mid-run (subset training).
"""

from __future__ import annotations

import math


def lr_factor(
    progress: float,
    *,
    schedule: str,
    warmup_fraction: float = 0.0,
    milestones: tuple[float, ...] | list[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1] of training."""
    if warmup_fraction > 0 and progress < warmup_fraction:
        return max(progress / warmup_fraction, 1e-3)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** sum(progress >= m for m in milestones)
    if schedule == "cosine":
        span = max(1.0 - warmup_fraction, 1e-12)
        t = min(max((progress - warmup_fraction) / span, 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule '{schedule}'; use cosine, step or constant")
