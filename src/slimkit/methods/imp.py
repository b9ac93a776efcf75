"""Iterative magnitude pruning with rewinding: lottery tickets (Frankle & Carbin 2019; rewinding
to an early epoch, Frankle et al. 2020).

Round 0 trains the dense network. Each later round prunes the lowest-magnitude weights of the
previous round's final weights, so that after `rounds` prunings the sparsity is the target
(the kept fraction shrinks geometrically: 1 - s_r = (1 - s)^(r / rounds)), rewinds the surviving
weights to their values at `rewind_epoch` of round 0 (0 = initialisation), and trains again from
that epoch. The control re-initialises the surviving weights randomly instead of rewinding.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from slimkit.importance import magnitude
from slimkit.sparse.allocation import Allocation, allocate, check_sparsity
from slimkit.sparse.schemes import Scheme
from slimkit.train.config import StrictModel


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


class IMPSettings(StrictModel):
    """The run-config section of iterative magnitude pruning (`method: imp`)."""

    imp_rounds: int = Field(5, ge=1, description="imp: pruning rounds after the dense round")
    imp_sparsities: list[float] = Field(
        [], description="imp: the sparsity after each round (overrides the geometric schedule; last = sparsity)"
    )
    rewind_epoch: int = Field(0, ge=0, description="imp: epoch of round 0 whose weights later rounds rewind to")
    imp_reinit: Literal["rewind", "random"] = Field("rewind", description="imp: rewind, or random re-init (control)")

    @model_validator(mode="after")
    def _schedule_increases(self) -> IMPSettings:
        steps = self.imp_sparsities
        if steps and (steps != sorted(set(steps)) or not 0 < steps[0] or not steps[-1] < 1):
            raise ValueError(f"imp_sparsities must increase from above 0 to below 1 (the target sparsity), got {steps}")
        return self
