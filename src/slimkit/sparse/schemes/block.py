"""The block scheme: row (or column) segments of the blocks of the 2-D view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from slimkit.sparse.schemes.base import Scheme, Shape, _columns, _rank
from slimkit.sparse.units import SegmentUnits, UnitView


def _keep_top_units(unit_scores: Tensor, unit_sizes: Tensor, target: int) -> Tensor:
    """Keep the best-scoring units whose total size is closest to `target` (at least one unit).

    Taking a prefix of the ranking keeps the highest-scoring units; each step adds at most the
    largest unit, so the closest prefix is within one unit of the target.
    """
    order = _rank(unit_scores.flatten())
    kept_sizes = unit_sizes.flatten().to(order.device)[order].cumsum(0)
    count = int((kept_sizes - target).abs().argmin()) + 1
    keep = torch.zeros(order.numel(), dtype=torch.bool, device=order.device)
    keep[order[:count]] = True
    return keep.reshape(unit_scores.shape)


def _segment_sums(rows: Tensor, length: int) -> Tensor:
    """Sums over consecutive `length`-long segments of each row; the last may be shorter."""
    padded = F.pad(rows, (0, -rows.shape[1] % length))
    return padded.reshape(rows.shape[0], -1, length).sum(-1)


def _segment_sizes(columns: int, length: int, device: torch.device) -> Tensor:
    """Lengths of the segments `_segment_sums` forms: `length`, except a shorter last one."""
    starts = torch.arange(0, columns, length, device=device)
    return (columns - starts).clamp(max=length)


def _expand_segments(keep: Tensor, length: int, columns: int) -> Tensor:
    """Per-segment keep flags (rows, segments) back to per-weight flags (rows, columns)."""
    return keep.repeat_interleave(length, dim=1)[:, :columns]


@dataclass
class BlockScheme(Scheme):
    """Per block of the 2-D view, whole row (or column) segments go: regular for GEMM tiles.

    prune="rows": a unit is a 1 x block[1] row segment of one block; prune="cols": a
    block[0] x 1 column segment. Edge blocks are smaller when the view's dims are not
    multiples of the block. Units are ranked across the whole layer by mean score, so how
    many survive differs per block.
    """

    block: tuple[int, int] = (4, 4)
    prune: str = "rows"
    name: ClassVar[str] = "block"

    def __post_init__(self) -> None:
        block = tuple(self.block)
        if len(block) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block):
            raise ValueError(f"block must be two positive ints (rows, cols), got {self.block!r}")
        if self.prune not in ("rows", "cols"):
            raise ValueError(f"block scheme prunes 'rows' or 'cols', got prune={self.prune!r}")
        self.block = block

    def _segment_length(self) -> int:
        return self.block[1] if self.prune == "rows" else self.block[0]

    def _lines(self, tensor: Tensor) -> Tensor:
        """The 2-D view oriented so that units are segments along dim 1."""
        view = tensor.reshape(tensor.shape[0], -1)
        return view if self.prune == "rows" else view.T

    def unit_size(self, weight_shape: Shape) -> int:
        along = _columns(weight_shape) if self.prune == "rows" else weight_shape[0]
        return min(self._segment_length(), along)

    def units_problem(self) -> str | None:
        if self.prune != "rows":
            return "prune='cols' segments run down the columns of the 2-D view, across rows"
        return None

    def _units_view(self, shape: tuple[int, ...]) -> UnitView:
        return SegmentUnits(shape, self.block[1])

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        lines = self._lines(scores)
        length = self._segment_length()
        sizes = _segment_sizes(lines.shape[1], length, scores.device)
        means = _segment_sums(lines, length) / sizes
        keep = _keep_top_units(means, sizes.expand_as(means), round(density * scores.numel()))
        kept_lines = _expand_segments(keep, length, lines.shape[1])
        return (kept_lines if self.prune == "rows" else kept_lines.T).reshape(scores.shape).contiguous()

    def _check_mask(self, mask: Tensor) -> None:
        lines = self._lines(mask).long()
        length = self._segment_length()
        kept = _segment_sums(lines, length)
        sizes = _segment_sizes(lines.shape[1], length, mask.device)
        partial = ((kept != 0) & (kept != sizes)).nonzero()
        if partial.numel():
            line, segment = (int(i) for i in partial[0])
            start, stop = segment * length, min((segment + 1) * length, lines.shape[1])
            if self.prune == "rows":
                where = f"row {line}, columns {start}:{stop}"
            else:
                where = f"column {line}, rows {start}:{stop}"
            raise ValueError(f"block scheme: segment at {where} of the 2-D view is partly kept")
