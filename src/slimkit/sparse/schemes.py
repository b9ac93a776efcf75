"""Sparsity schemes: which weights of a layer may be removed together.

A scheme turns importance scores (same shape as the weight; higher = more important = keep)
and a target density (fraction of weights kept) into a boolean keep-mask that respects its
structure, and checks masks built elsewhere. The structure is what makes sparsity pay off:
whole channels shrink the layer, blocks and N:M groups map onto sparse GEMM kernels, 3x3
patterns onto compiler-generated conv code; unstructured sparsity only saves storage.

Shapes follow PyTorch: Linear weights are (out, in), Conv weights (out, in/groups, *kernel).
The "2-D view" is weight.reshape(out, -1), the im2col GEMM layout. Ties between equal scores
always go to the lower index, so the same scores always give the same mask.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Shape = Sequence[int]

_PRUNABLE = (nn.Linear, nn.modules.conv._ConvNd)
_DENSITY_TOL = 1e-9  # slack for densities computed in floating point, e.g. 4/9 or n/m
PATTERN_DENSITY = 4 / 9  # a pattern keeps 4 of the 9 taps of a 3x3 kernel


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


# ---------------------------------------------------------------------------------------------
# schemes


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


@dataclass
class UnstructuredScheme(Scheme):
    """Any single weight can go: best accuracy per weight removed, but only saves storage."""

    name: ClassVar[str] = "unstructured"

    def unit_size(self, weight_shape: Shape) -> int:
        return 1

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        count = min(max(round(density * scores.numel()), 1), scores.numel())
        keep = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
        keep[_rank(scores.flatten())[:count]] = True
        return keep.reshape(scores.shape)

    def _check_mask(self, mask: Tensor) -> None:
        return None  # every bool mask is an unstructured mask


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

    def _units(self, tensor: Tensor) -> Tensor:
        """(channels, weights per channel) view: one row per removable unit."""
        return tensor.movedim(self.dim, 0).reshape(tensor.shape[self.dim], -1)

    def _mask(self, scores: Tensor, density: float) -> Tensor:
        units = self._units(scores)
        sizes = torch.full((units.shape[0],), units.shape[1], dtype=torch.long)
        keep = _keep_top_units(units.mean(1), sizes, round(density * scores.numel()))
        shape = [1] * scores.dim()
        shape[self.dim] = -1
        return keep.reshape(shape).expand(scores.shape).clone()

    def _check_mask(self, mask: Tensor) -> None:
        kept = self._units(mask).sum(1)
        partial = ((kept != 0) & (kept != self._units(mask).shape[1])).nonzero()
        if partial.numel():
            what = "output" if self.dim == 0 else "input"
            raise ValueError(f"channel scheme: {what} channel {int(partial[0])} is partly kept")


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
        kernels = min(max(round(density / PATTERN_DENSITY * in_channels), 1), in_channels)
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


SCHEMES: dict[str, type[Scheme]] = {
    scheme.name: scheme for scheme in (UnstructuredScheme, ChannelScheme, BlockScheme, PatternScheme, NMScheme)
}


def make_scheme(name: str, **options: object) -> Scheme:
    """Build a scheme from its config name, with clear errors for typos in names or options."""
    if name not in SCHEMES:
        raise ValueError(f"unknown sparsity scheme {name!r}; choose one of: {', '.join(sorted(SCHEMES))}")
    scheme = SCHEMES[name]
    try:
        inspect.signature(scheme).bind(**options)
    except TypeError as error:
        raise ValueError(f"bad options for the {name} scheme: {error}") from None
    return scheme(**options)
