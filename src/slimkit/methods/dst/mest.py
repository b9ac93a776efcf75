"""MEST (Yuan et al., NeurIPS 2021, "MEST: Accurate and Fast Memory-Economic Sparse Training
Framework on the Edge") and its phase schedules.

- MEST: random sparse init; every update, drop the active weights with the lowest |w| + λ|g|
  (gradients of active weights only) and grow as many at random positions, new weights starting
  at zero. No dense information is ever used.
- MEST+EM (Elastic Mutation): the mutation rate decays: at target sparsity s (density d = 1 - s),
  prune to s + 0.2d and regrow to s until 56% of training, then s + 0.1d -> s until 75%, then stop
  mutating (at s = 90%: 92% then 91%, the paper's ResNet-32 recipe).
- MEST+EM&S (soft memory bound): grow first, train the grown weights, then prune back including
  them: the network trains at s-5% until 56%, s-2.5% until 75%, and each update prunes to s
  before growing again; from 75% on it stays exactly at s.
"""

from __future__ import annotations

from torch import nn

from slimkit.methods.dst.base import DynamicSparseTraining, check_fraction
from slimkit.methods.dst.schedules import Phase, RateSchedule, check_phases, phase_targets
from slimkit.utils.renamed import take_renamed


class MEST(RateSchedule):
    """Vanilla MEST: a constant mutation rate (fraction of active weights) until `mutation_stop`."""

    def __init__(
        self, model: nn.Module, *, sparsity: float, mutation_rate: float = 0.2, mutation_stop: float = 0.75, **kw
    ):
        mutation_stop = take_renamed(kw, "stop", "mutation_stop", mutation_stop, 0.75, type(self).__name__)
        check_fraction("mutation_rate", mutation_rate)
        self.mutation_rate = mutation_rate
        super().__init__(model, sparsity=sparsity, mutation_stop=mutation_stop, **kw)

    def rate_at(self, fraction: float) -> float:
        return self.mutation_rate


class PhasedMEST(DynamicSparseTraining):
    """MEST with a phase schedule (Elastic Mutation, soft memory bound)."""

    def __init__(self, model: nn.Module, *, sparsity: float, phases: list[Phase], **kw):
        check_phases(phases)
        self.phases = phases
        super().__init__(model, sparsity=sparsity, **kw)

    def targets(self, fraction: float) -> tuple[float, float] | None:
        return phase_targets(self.phases, fraction)
