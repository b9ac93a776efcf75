"""The callback contract. Every compression method plugs into the one training loop through
these points; none of them forks the loop.

Order within one training step:
    forward -> on_after_forward (may replace step.loss, e.g. distillation)
    -> backward -> on_after_backward (may edit gradients, e.g. Network Slimming's L1 on BN)
    -> optimizer.step() -> on_step_end (e.g. re-apply masks, mutate, record statistics)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from slimkit.train.loop import Trainer


@dataclass
class StepState:
    """What one training step saw. `outputs` are the logits computed before the update."""

    epoch: int  # 0-based
    batch_index: int  # within the epoch
    global_step: int  # steps completed before this one
    inputs: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor | None
    outputs: torch.Tensor | None = None
    loss: torch.Tensor | None = None


class Callback:
    """Base class: override the points you need. `state_dict`/`load_state_dict` make a callback's
    state part of the checkpoint, so a resumed run continues exactly."""

    def on_train_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_after_forward(self, trainer: Trainer, step: StepState) -> None: ...

    def on_after_backward(self, trainer: Trainer, step: StepState) -> None: ...

    def on_step_end(self, trainer: Trainer, step: StepState) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, row: dict[str, Any]) -> None:
        """`row` is this epoch's history line; add columns to it to log them in history.csv."""

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @property
    def key(self) -> str:
        """Name of this callback's entry in the checkpoint."""
        return type(self).__name__
