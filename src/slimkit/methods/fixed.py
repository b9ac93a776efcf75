"""Train with masks given up front (lottery-ticket rounds, masks loaded from elsewhere)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimkit.methods.base import SparsityMethod


class FixedMasks(SparsityMethod):
    compressed_storage = True  # masks never change after the first step

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor], **kwargs: Any) -> None:
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        super().__init__(model, sparsity=1.0 - kept / total, layers=list(masks), **kwargs)
        self.given = masks

    def initialize(self) -> None:
        self.set_masks(self.given)
