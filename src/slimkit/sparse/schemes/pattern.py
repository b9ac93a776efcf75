"""The pattern scheme: 3x3 kernels keep one 4-tap pattern of a small library, or go entirely."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from slimkit.sparse.schemes.base import Scheme, Shape, _rank, _shape_str
from slimkit.sparse.units import PATTERN_DENSITY, PatternUnits, UnitView, kernels_per_filter


def _build_patterns() -> Tensor:
    """The 8 four-tap 3x3 patterns; all keep the centre, the tap a kernel relies on most."""
    up, down, left, right = (0, 1), (2, 1), (1, 0), (1, 2)
    cells_per_pattern = [
        (left, down, right),  # centre + 3 of the 4 orthogonal neighbours (up missing)
        (up, down, left),  # right missing
        (up, left, right),  # down missing
        (up, down, right),  # left missing
        (up, right, (0, 2)),  # centre + two adjacent neighbours + the corner between them
        (right, down, (2, 2)),
        (down, left, (2, 0)),
        (left, up, (0, 0)),
    ]
    patterns = torch.zeros(len(cells_per_pattern), 3, 3, dtype=torch.bool)
    for index, cells in enumerate(cells_per_pattern):
        for row, col in ((1, 1), *cells):
            patterns[index, row, col] = True
    return patterns


PATTERNS: Tensor = _build_patterns()
"""(8, 3, 3) bool: the pattern library of PatternScheme, in the order num_patterns takes them."""


@dataclass
class PatternScheme(Scheme):
    """3x3 kernels keep one 4-tap pattern from a small library, or are removed entirely.

    Kernel removal (connectivity pruning) is balanced: every output filter keeps the same
    number n of kernels, so compiled code has uniform work per filter. Density is therefore
    realised as (4/9) * n / in_channels.
    """

    num_patterns: int = 8
    name: ClassVar[str] = "pattern"

    def __post_init__(self) -> None:
        count = self.num_patterns
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= len(PATTERNS):
            raise ValueError(f"pattern scheme needs 1 <= num_patterns <= {len(PATTERNS)}, got {count!r}")

    @property
    def patterns(self) -> Tensor:
        """The (num_patterns, 3, 3) library this scheme chooses from."""
        return PATTERNS[: self.num_patterns]

    def max_density(self, weight_shape: Shape) -> float:
        return PATTERN_DENSITY

    def unit_size(self, weight_shape: Shape) -> int:
        return 4 * weight_shape[0]  # one more kernel in every filter

    def _units_view(self, shape: tuple[int, ...]) -> UnitView:
        return PatternUnits(shape, self.patterns)

    def _shape_problem(self, shape: Shape) -> str | None:
        if len(shape) != 4 or tuple(shape[2:]) != (3, 3):
            kernel = "x".join(str(int(size)) for size in shape[2:]) or "no kernel"
            return f"needs 3x3 conv kernels, got {kernel} (weight shape {_shape_str(shape)})"
        return super()._shape_problem(shape)

    def _layer_problem(self, module: nn.Module) -> str | None:
        if not isinstance(module, nn.Conv2d):
            return f"needs a Conv2d with 3x3 kernels, got a {type(module).__name__}"
        return super()._layer_problem(module)

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        out_channels, in_channels = scores.shape[:2]
        patterns = self.patterns.to(scores.device)
        taps = patterns.reshape(len(patterns), 9).to(scores.dtype)
        retained = (scores.reshape(out_channels, in_channels, 9) ** 2) @ taps.T  # (out, in, patterns)
        best = retained.argmax(-1)  # first maximum on ties
        kernel_scores = retained.gather(-1, best.unsqueeze(-1)).squeeze(-1)
        kernels = kernels_per_filter(density, in_channels)
        keep = torch.zeros(out_channels, in_channels, dtype=torch.bool, device=scores.device)
        keep.scatter_(1, _rank(kernel_scores, dim=1)[:, :kernels], True)
        return patterns[best] & keep[..., None, None]

    def _check_mask(self, mask: Tensor) -> None:
        out_channels, in_channels = mask.shape[:2]
        kernels = mask.reshape(out_channels, in_channels, 1, 9)
        library = self.patterns.to(mask.device).reshape(1, 1, -1, 9)
        nonzero = kernels.any(-1).squeeze(-1)
        matches = (kernels == library).all(-1).any(-1)
        bad = (nonzero & ~matches).nonzero()
        if bad.numel():
            out, inp = (int(i) for i in bad[0])
            raise ValueError(f"pattern scheme: kernel ({out}, {inp}) is not one of the {self.num_patterns} patterns")
        counts = nonzero.sum(1)
        if bool((counts != counts[0]).any()):
            raise ValueError(f"pattern scheme: filters keep different numbers of kernels: {counts.tolist()}")
