"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").

Sparsity rises from `initial_sparsity` to `sparsity` along the cubic schedule
    s(t) = s_f + (s_i - s_f) * (1 - (t - t_start) / (t_end - t_start))^3
with masks recomputed from weight magnitudes every `prune_every` steps between `gmp_start` and `gmp_end`
(fractions of training), then held fixed while training finishes.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from torch import nn

from slimkit.importance import magnitude
from slimkit.methods.base import SparsityMethod
from slimkit.sparse.allocation import check_sparsity
from slimkit.train.config import StrictModel
from slimkit.utils.renamed import take_renamed


class GradualMagnitude(SparsityMethod):
    def __init__(
        self,
        model: nn.Module,
        *,
        sparsity: float,
        initial_sparsity: float = 0.0,
        gmp_start: float = 0.0,
        gmp_end: float = 0.75,
        prune_every: int = 100,
        **kwargs: Any,
    ) -> None:
        start = take_renamed(kwargs, "start", "gmp_start", gmp_start, 0.0, "GradualMagnitude")
        end = take_renamed(kwargs, "end", "gmp_end", gmp_end, 0.75, "GradualMagnitude")
        check_sparsity(initial_sparsity)
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"gradual pruning needs 0 <= gmp_start < gmp_end <= 1, got {start} and {end}")
        if prune_every < 1:
            raise ValueError(f"prune_every must be >= 1 step, got {prune_every}")
        if initial_sparsity > sparsity:
            raise ValueError(f"initial_sparsity {initial_sparsity} exceeds the final sparsity {sparsity}")
        super().__init__(model, sparsity=sparsity, **kwargs)
        self.initial_sparsity, self.start, self.end, self.prune_every = initial_sparsity, start, end, prune_every
        self.applied = 0.0

    def target(self, fraction: float) -> float:
        if fraction <= self.start:
            return self.initial_sparsity
        t = min((fraction - self.start) / (self.end - self.start), 1.0)
        return self.sparsity + (self.initial_sparsity - self.sparsity) * (1.0 - t) ** 3

    def initialize(self) -> None:
        if self.total_steps is None:
            raise ValueError("gradual pruning needs the run length: bind(optimizer, total_steps=...)")
        if self.initial_sparsity > 0:
            self._prune(self.initial_sparsity)

    def update(self) -> None:
        target = self.target(self.training_fraction)
        due = self.steps_done % self.prune_every == 0 or self.training_fraction >= self.end
        if due and target > self.applied:
            self._prune(target)

    def _prune(self, sparsity: float) -> None:
        self.prune_to(sparsity, magnitude(self.model, self.layers))
        self.applied = sparsity

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "applied": self.applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.applied = float(state["applied"])


class GradualSettings(StrictModel):
    """The run-config section of gradual magnitude pruning (`method: gmp`)."""

    gmp_start: float = Field(0.0, ge=0, lt=1, description="gmp: fraction of training where pruning starts")
    gmp_end: float = Field(0.75, gt=0, le=1, description="gmp: fraction of training where the final sparsity is reached")
    prune_every: int = Field(100, ge=1, description="gmp: steps between mask updates")

    @model_validator(mode="after")
    def _start_before_end(self) -> GradualSettings:
        if self.gmp_start >= self.gmp_end:
            raise ValueError(f"gmp_start ({self.gmp_start}) must come before gmp_end ({self.gmp_end})")
        return self
