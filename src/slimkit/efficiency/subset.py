"""Which training examples phase 2 of data-efficient training leaves out.

Two rules: drop every learned example forgotten at most `k` times, or drop a fixed fraction of
the least-forgotten examples. Examples never learned sort as the most forgotten and are the last
to go. Ties in the forgetting count are broken by the epoch an example was first learned (earlier
= easier = removed first), then by a seeded random draw rather than by index, so the removed set
does not depend on the dataset's storage order.
"""

from __future__ import annotations

import numpy as np
import torch


def select_removed(
    scores: torch.Tensor,
    first_learned: torch.Tensor,
    *,
    forgetting_le: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Boolean mask over the training split: True = removed for phase 2.

    `scores` are forgetting counts with never-learned examples at the maximum (see
    `ForgettingTracker.scores`); `first_learned` is the 0-based epoch of the first correct
    presentation (-1: never). Exactly one of `forgetting_le` / `fraction` must be given.
    """
    if (forgetting_le is None) == (fraction is None):
        raise ValueError("give exactly one of remove_forgetting_le and remove_fraction")
    if scores.shape != first_learned.shape or scores.dim() != 1:
        raise ValueError("scores and first_learned must be 1-D and of equal length")
    learned = first_learned >= 0
    if forgetting_le is not None:
        if forgetting_le < 0:
            raise ValueError(f"remove_forgetting_le must be >= 0, got {forgetting_le}")
        removed = learned & (scores <= forgetting_le)
    else:
        if not 0 < fraction < 1:
            raise ValueError(f"remove_fraction must be in (0, 1), got {fraction}")
        n = scores.numel()
        count = int(fraction * n)
        tiebreak = np.random.default_rng(seed).random(n)
        epoch = torch.where(learned, first_learned, torch.full_like(first_learned, torch.iinfo(torch.int32).max))
        order = np.lexsort((tiebreak, epoch.numpy(), scores.numpy()))  # last key sorts first
        removed = torch.zeros(n, dtype=torch.bool)
        removed[torch.from_numpy(order[:count])] = True
    if bool(removed.all()):
        raise ValueError(
            f"the removal rule would remove all {scores.numel()} training examples; "
            "lower remove_forgetting_le or remove_fraction"
        )
    return removed
