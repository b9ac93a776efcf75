"""The unstructured scheme: any single weight can go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from slimkit.sparse.schemes.base import Scheme, Shape, _rank
from slimkit.sparse.units import SegmentUnits, UnitView, kept_count


@dataclass
class UnstructuredScheme(Scheme):
    """Any single weight can go: best accuracy per weight removed, but only saves storage."""

    name: ClassVar[str] = "unstructured"

    def unit_size(self, weight_shape: Shape) -> int:
        return 1

    def _units_view(self, shape: tuple[int, ...]) -> UnitView:
        return SegmentUnits(shape, 1)

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        count = kept_count(density, scores.numel())
        keep = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
        keep[_rank(scores.flatten())[:count]] = True
        return keep.reshape(scores.shape)

    def _check_mask(self, mask: Tensor) -> None:
        return None  # every bool mask is an unstructured mask
