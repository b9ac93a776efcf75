"""The efficiency callbacks a run configuration asks for (`data_efficient`, `forgetting_stats`)."""

from __future__ import annotations

from typing import Any

from slimkit.efficiency.forgetting import ForgettingTracker
from slimkit.efficiency.two_phase import TwoPhaseTraining
from slimkit.train import Callback


def efficiency_callbacks(config: Any, num_examples: int) -> list[Callback]:
    """[] for plain runs; [tracker] for the all-epochs statistics; [tracker, two-phase switch] for
    data-efficient training. `config` is a `RunConfig` (validated there); `num_examples` is the size
    of the training split."""
    if config.data_efficient:
        tracker = ForgettingTracker(num_examples, stop_epoch=config.stats_epochs)
        return [tracker, TwoPhaseTraining(
            tracker, stats_epochs=config.stats_epochs, remove_forgetting_le=config.remove_forgetting_le,
            remove_fraction=config.remove_fraction, seed=config.seed,
        )]
    if config.forgetting_stats:
        return [ForgettingTracker(num_examples)]
    return []
