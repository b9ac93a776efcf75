"""The run-config section of dynamic sparse training (`method`: mest, mest-em, mest-ems, set, dsr,
rigl). The keys are the methods' keyword arguments: `MEST(mutation_rate=, mutation_stop=,
grad_weight=, update_every=)`, `SET(zeta=)`, `RigL(zeta=)`."""

from __future__ import annotations

from pydantic import Field

from slimkit.train.config import StrictModel


class DSTSettings(StrictModel):
    """Mutation schedule of dynamic sparse training."""

    update_every: int | None = Field(
        None, ge=1, description="dynamic sparse training: steps between mask updates (default: 3% of training)"
    )
    mutation_rate: float = Field(0.2, gt=0, lt=1, description="mest, dsr: fraction of active weights mutated per update")
    zeta: float = Field(
        0.3, gt=0, lt=1, description="set, rigl: initial fraction of active weights mutated (cosine-decayed)"
    )
    grad_weight: float = Field(0.0, ge=0, description="mest: importance = |w| + grad_weight * |grad| (active weights)")
    mutation_stop: float = Field(0.75, gt=0, le=1, description="mest, set, rigl, dsr: fraction of training where mutation stops")
