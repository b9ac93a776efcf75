"""The N:M scheme: exactly n of every m consecutive weights along the input dim."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from slimkit.sparse.schemes.base import Scheme, Shape, _columns, _rank


@dataclass
class NMScheme(Scheme):
    """Exactly n of every m consecutive weights along the input dim: sparse tensor-core format."""

    n: int = 2
    m: int = 4
    name: ClassVar[str] = "nm"

    def __post_init__(self) -> None:
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (self.n, self.m))
        if not ints or not 0 < self.n < self.m:
            raise ValueError(f"N:M needs 0 < N < M, got {self.n}:{self.m}")

    def fixed_density(self) -> float:
        return self.n / self.m

    def unit_size(self, weight_shape: Shape) -> int:
        return 1

    def units_problem(self) -> str | None:
        return "every group keeps exactly n weights, so mutation swaps weights within groups of a mask"

    def _shape_problem(self, shape: Shape) -> str | None:
        problem = super()._shape_problem(shape)
        if problem is None and _columns(shape) % self.m:
            return f"{self.n}:{self.m} needs the input width (in*kh*kw = {_columns(shape)}) divisible by {self.m}"
        return problem

    def _groups(self, tensor: Tensor) -> Tensor:
        return tensor.reshape(tensor.shape[0], -1, self.m)

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        groups = self._groups(scores)
        keep = torch.zeros(groups.shape, dtype=torch.bool, device=scores.device)
        keep.scatter_(-1, _rank(groups)[..., : self.n], True)
        return keep.reshape(scores.shape)

    def _check_mask(self, mask: Tensor) -> None:
        kept = self._groups(mask).sum(-1)
        bad = (kept != self.n).nonzero()
        if bad.numel():
            row, group = (int(i) for i in bad[0])
            start = group * self.m
            raise ValueError(
                f"{self.n}:{self.m} scheme: row {row}, columns {start}:{start + self.m} of the 2-D view "
                f"keep {int(kept[row, group])} weights, not {self.n}"
            )
