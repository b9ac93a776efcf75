"""Network Slimming's sparsity training as a Trainer callback: the L1 penalty on BatchNorm scales
(Liu et al. 2017) after each backward pass, and the share of near-zero scales in the history."""

from __future__ import annotations

from typing import Any

import torch

from slimkit.structured.netslim import BATCHNORMS, update_bn
from slimkit.train.callbacks import Callback, StepState


class SlimmingL1(Callback):
    """Trainer callback: the sparsity-inducing L1 penalty on BN scales, applied after each backward."""

    def __init__(self, s: float = 1e-4) -> None:
        if s < 0:
            raise ValueError(f"sparsity strength s must be >= 0, got {s}")
        self.s = s

    def on_after_backward(self, trainer, step: StepState) -> None:
        update_bn(trainer.model, self.s)

    def on_epoch_end(self, trainer, epoch: int, row: dict[str, Any]) -> None:
        gammas = [m.weight.detach().abs() for m in trainer.model.modules() if isinstance(m, BATCHNORMS)
                  and m.weight is not None]
        if gammas:
            row["bn_gamma_below_1e-2"] = float((torch.cat(gammas) < 1e-2).float().mean())
