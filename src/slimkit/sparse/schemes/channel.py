"""The channel scheme: whole output filters/neurons or input channels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from slimkit.sparse.schemes.base import Scheme, Shape, _rank
from slimkit.sparse.units import ChannelUnits, UnitView, closest_unit_count


@dataclass
class ChannelScheme(Scheme):
    """Whole output filters/neurons (dim=0) or input channels (dim=1): the layer really shrinks."""

    dim: int = 0
    name: ClassVar[str] = "channel"

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim not in (0, 1):
            raise ValueError(f"channel scheme prunes dim 0 (outputs) or 1 (inputs), got dim={self.dim!r}")

    def unit_size(self, weight_shape: Shape) -> int:
        return math.prod(weight_shape) // weight_shape[self.dim]

    def _units_view(self, shape: tuple[int, ...]) -> UnitView:
        return ChannelUnits(shape, self.dim)

    def _units(self, tensor: Tensor) -> Tensor:
        """(channels, weights per channel) view: one row per removable unit."""
        return tensor.movedim(self.dim, 0).reshape(tensor.shape[self.dim], -1)

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        units = self._units(scores)
        count = closest_unit_count(round(density * scores.numel()), units.shape[1], units.shape[0])
        keep = torch.zeros(units.shape[0], dtype=torch.bool, device=scores.device)
        keep[_rank(units.mean(1))[:count]] = True
        shape = [1] * scores.dim()
        shape[self.dim] = -1
        return keep.reshape(shape).expand(scores.shape).clone()

    def _check_mask(self, mask: Tensor) -> None:
        kept = self._units(mask).sum(1)
        partial = ((kept != 0) & (kept != self._units(mask).shape[1])).nonzero()
        if partial.numel():
            what = "output" if self.dim == 0 else "input"
            raise ValueError(f"channel scheme: {what} channel {int(partial[0])} is partly kept")
