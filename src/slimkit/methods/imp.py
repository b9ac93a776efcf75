"""Iterative magnitude pruning with rewinding: lottery tickets (Frankle & Carbin 2019; rewinding
to an early epoch, Frankle et al. 2020).

Round 0 trains the dense network. Each later round prunes the lowest-magnitude weights of the
previous round's final weights, so that after `rounds` prunings the sparsity is the target
(the kept fraction shrinks geometrically: 1 - s_r = (1 - s)^(r / rounds)), rewinds the surviving
weights to their values at `rewind_epoch` of round 0 (0 = initialisation), and trains again from
that epoch. The control re-initialises the surviving weights randomly instead of rewinding.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.importance import magnitude
from slimkit.sparse.allocation import Allocation, allocate, check_sparsity
from slimkit.sparse.schemes import Scheme


def round_sparsity(final_sparsity: float, round_index: int, rounds: int) -> float:
    """Sparsity after `round_index` prunings of `rounds` (round 0 is dense)."""
    check_sparsity(final_sparsity)
    if rounds < 1:
        raise ValueError(f"imp needs at least one pruning round, got {rounds}")
    if not 0 <= round_index <= rounds:
        raise ValueError(f"round {round_index} is outside 0..{rounds}")
    return 1.0 - (1.0 - final_sparsity) ** (round_index / rounds)


@torch.no_grad()
def magnitude_masks(
    model: nn.Module, layers: dict[str, nn.Module], sparsity: float, scheme: Scheme, allocation: Allocation,
    dense_layers: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Masks keeping the largest-magnitude effective weights of `layers` at `sparsity`."""
    scores = magnitude(model, layers)
    densities = allocate(layers, sparsity, allocation, scheme=scheme, scores=scores, dense_layers=dense_layers)
    return {
        name: torch.ones_like(scores[name], dtype=torch.bool) if densities[name] >= 1.0
        else scheme.make_mask(scores[name], densities[name])
        for name in layers
    }
