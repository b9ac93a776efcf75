"""What every sparsity scheme shares: the `Scheme` contract (make_mask, validate, units) with
its checks, and the ranking helpers the schemes use.

Shapes follow PyTorch: Linear weights are (out, in), Conv weights (out, in/groups, *kernel).
The "2-D view" is weight.reshape(out, -1), the im2col GEMM layout. Ties between equal scores
always go to the lower index, so the same scores always give the same mask.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from slimkit.sparse.units import UnitView

Shape = Sequence[int]

_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
_DENSITY_TOL = 1e-9  # slack for densities computed in floating point, e.g. 4/9 or n/m


# ---------------------------------------------------------------------------------------------
# helpers

def _shape_str(shape: Shape) -> str:
    return str(tuple(int(size) for size in shape))


def _columns(shape: Shape) -> int:
    """Column count of the 2-D view: in * kh * kw."""
    return math.prod(shape[1:])


def _float_scores(scores: Tensor) -> Tensor:
    """Scores as a float tensor precise enough to rank and average (half precision is not)."""
    scores = scores.detach()
    if not scores.is_floating_point() or scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    return scores


def _rank(values: Tensor, dim: int = -1) -> Tensor:
    """Indices from highest to lowest; the stable sort gives ties to the lower index."""
    return torch.sort(values, dim=dim, descending=True, stable=True).indices


class Scheme(ABC):
    """A family of valid masks; subclasses say which weights must be kept or removed together."""

    name: ClassVar[str]

    def supports(self, module: nn.Module) -> bool:
        """Whether this scheme can prune this layer's weight."""
        return self._layer_problem(module) is None

    def check_layer(self, name: str, module: nn.Module) -> None:
        """Fail early, naming the layer, instead of deep inside pruning."""
        problem = self._layer_problem(module)
        if problem is not None:
            raise ValueError(f"{self.name} scheme cannot prune layer {name!r}: {problem}")

    def fixed_density(self) -> float | None:
        """The only density the scheme can produce, or None when any density works."""
        return None

    def max_density(self, weight_shape: Shape) -> float:
        """Highest density a mask of this scheme can have."""
        return 1.0

    @abstractmethod
    def unit_size(self, weight_shape: Shape) -> int:
        """Weights in one removable unit: how far make_mask may miss the requested count."""

    def units_problem(self) -> str | None:
        """Why this scheme has no units view (see `units`), or None when it has one."""
        return None

    def units(self, weight_shape: Shape) -> UnitView:
        """The units of a weight of this shape and how many a density keeps: the same rounding as
        make_mask, without building a dense tensor (what mutation and compressed layers work on)."""
        problem = self.units_problem()
        if problem is not None:
            raise ValueError(f"the {self.name} scheme has no units view: {problem}")
        self._check_shape(tuple(weight_shape), "weight")
        return self._units_view(tuple(int(s) for s in weight_shape))

    def _units_view(self, shape: tuple[int, ...]) -> UnitView:
        """The view of a scheme whose `units_problem()` is None; schemes without a view never get here."""
        raise NotImplementedError(f"the {self.name} scheme says it has a units view but does not define one")

    def make_mask(self, scores: Tensor, density: float | None) -> Tensor:
        """Bool keep-mask shaped like `scores`, keeping ~density of it in the highest-scoring units.

        The kept count is round(density * numel) to within one unit_size, and at least one
        unit is kept so a layer is never cut off entirely.
        """
        shape = tuple(scores.shape)
        self._check_shape(shape, "scores")
        if scores.is_floating_point() and bool(torch.isnan(scores).any()):
            raise ValueError(f"{self.name} scheme: scores contain NaN, they cannot be ranked")
        density = self._resolve_density(density, shape)
        return self._mask(_float_scores(scores), density)

    def validate(self, mask: Tensor) -> None:
        """Raise ValueError if `mask` is not a mask this scheme could have produced."""
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"{self.name} scheme: a mask must be a bool tensor, got {got}")
        self._check_shape(tuple(mask.shape), "mask")
        self._check_mask(mask)

    # -- for subclasses -----------------------------------------------------------------------

    @abstractmethod
    def _mask(self, scores: Tensor, density: float) -> Tensor:
        """make_mask on checked float scores and a checked density."""

    @abstractmethod
    def _check_mask(self, mask: Tensor) -> None:
        """validate on a bool mask of a supported shape."""

    def _shape_problem(self, shape: Shape) -> str | None:
        """Why a weight of this shape cannot be pruned by the scheme, or None if it can."""
        if len(shape) < 2:
            return f"needs a weight with at least 2 dims (out, in, ...), got {_shape_str(shape)}"
        if 0 in shape:
            return f"weight of shape {_shape_str(shape)} is empty"
        return None

    def _layer_problem(self, module: nn.Module) -> str | None:
        if not isinstance(module, _PRUNABLE):
            return f"{type(module).__name__} is not a Linear or Conv layer"
        return self._shape_problem(tuple(module.weight.shape))

    def _check_shape(self, shape: Shape, what: str) -> None:
        problem = self._shape_problem(shape)
        if problem is not None:
            raise ValueError(f"{self.name} scheme cannot handle {what} of shape {_shape_str(shape)}: {problem}")

    def _resolve_density(self, density: float | None, shape: Shape) -> float:
        fixed = self.fixed_density()
        if density is None:
            if fixed is None:
                raise ValueError(f"{self.name} scheme needs a density, got None")
            return fixed
        try:
            density = float(density)
        except (TypeError, ValueError):
            raise ValueError(f"density must be a number in (0, 1], got {density!r}") from None
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        if fixed is not None and not math.isclose(density, fixed, rel_tol=0.0, abs_tol=_DENSITY_TOL):
            raise ValueError(f"{self!r} keeps exactly {fixed:g} of the weights, got density {density}")
        highest = self.max_density(shape)
        if density > highest + _DENSITY_TOL:
            raise ValueError(f"{self.name} scheme keeps at most {highest:.4g} of the weights, got density {density}")
        return density
