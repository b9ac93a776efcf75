"""A scheme's units: how a layer's weight decomposes into the groups of weights the scheme keeps
or drops together, and how many of them a density means.

`Scheme.units(weight_shape)` gives the view of one layer; every storage mutates through it, so a
scheme's counting rules live here and in `schemes.py` only:

- `SegmentUnits(shape, 1)`: single weights (the unstructured scheme);
- `SegmentUnits(shape, L)`: aligned 1 x L row segments of the 2-D view (block scheme, prune="rows");
- `PatternUnits(shape, patterns)`: 3x3 kernels keeping one 4-tap pattern of the library, the same
  number of kernels in every filter (pattern scheme). A unit id is kernel * P + pattern, so the
  id says which taps it keeps; growth picks absent kernels per filter and a random pattern;
- `ChannelUnits(shape, dim)`: whole output (dim 0) or input (dim 1) channels (channel scheme).

Units are handled as sorted int64 ids and mapped to and from *linear positions* (sorted int64
indices into the flattened weight), so nothing here builds a tensor of the dense weight's size.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

PATTERN_DENSITY = 4 / 9  # a pattern keeps 4 of the 9 taps of a 3x3 kernel


# ---------------------------------------------------------------------------------------------
# counting rules


def closest_unit_count(target: int, unit_size: int, units: int) -> int:
    """Whole units closest to `target` weights (ties: fewer), between 1 and `units`: how the
    schemes count when every unit has the same size."""
    fewer = target // unit_size
    count = fewer + 1 if (fewer + 1) * unit_size - target < target - fewer * unit_size else fewer
    return min(max(count, 1), units)


def kept_count(density: float, numel: int) -> int:
    """Weights kept at `density`: the unstructured scheme's rounding (at least one)."""
    return closest_unit_count(round(density * numel), 1, numel)


def kernels_per_filter(density: float, in_channels: int) -> int:
    """Kernels every filter keeps under the pattern scheme: round(density / (4/9) * in), at least one."""
    return min(max(round(density / PATTERN_DENSITY * in_channels), 1), in_channels)


# ---------------------------------------------------------------------------------------------
# choosing survivors and growth among uniform units


def first_occurrences(values: Tensor) -> Tensor:
    """`values` without repeats, in order of first appearance (an unbiased de-duplication)."""
    if values.numel() == 0:
        return values
    unique, inverse = torch.unique(values, return_inverse=True)
    positions = torch.arange(values.numel(), device=values.device)
    first = torch.full((unique.numel(),), values.numel(), dtype=torch.long, device=values.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return values[first.sort().values]


def sample_absent(count: int, numel: int, exclude: Tensor, generator: torch.Generator) -> Tensor:
    """`count` distinct ids in [0, numel) not in `exclude` (sorted int64), uniformly at random.

    Rejection sampling in batches: memory is O(count + len(exclude)), never O(numel), which is
    what lets growth run on compressed layers. Raises if there are not enough free ids.
    """
    free = numel - exclude.numel()
    if count > free:
        raise ValueError(f"cannot grow {count} weights: only {free} of {numel} positions are free")
    taken = exclude.to(generator.device)  # draws come from the (CPU) generator, whatever the layer's device
    chosen = torch.empty(0, dtype=torch.long, device=generator.device)
    while chosen.numel() < count:
        missing = count - chosen.numel()
        draws = torch.randint(numel, (2 * missing + 16,), generator=generator, device=generator.device)
        draws = first_occurrences(draws)
        draws = draws[~torch.isin(draws, taken) & ~torch.isin(draws, chosen)]
        chosen = torch.cat([chosen, draws[:missing]])
    return chosen.to(exclude.device)


def choose_mutation(ids: Tensor, importance: Tensor, keep: int, total: int, numel: int,
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(survivor slots, grown ids) for sorted kept `ids` (out of `numel` units) with per-unit
    `importance`: keep the `keep` most important (ties: lower slot), grow random absent ones.

    Growth only fills units that were absent before this mutation, so a dense layer (ERK keeps
    small layers at density 0.8 or 1) swaps at most as many units as it has absent ones: the
    rest of the would-be-dropped units stay.
    """
    inactive = numel - ids.numel()
    keep = min(max(keep, total - inactive), ids.numel())
    ranking = torch.argsort(importance.detach().cpu(), descending=True, stable=True)
    survivors = ranking[:keep].sort().values.to(ids.device)
    grown = sample_absent(max(total - keep, 0), numel, ids, generator)
    return survivors, grown


# ---------------------------------------------------------------------------------------------
# views


class UnitView(ABC):
    """One layer's weight (of `shape`) as the units its scheme keeps or drops together."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.numel = math.prod(self.shape)

    @property
    @abstractmethod
    def size(self) -> int:
        """Weights per unit."""

    @property
    @abstractmethod
    def count(self) -> int:
        """Units in the full weight."""

    @abstractmethod
    def kept(self, density: float) -> int:
        """Units kept at `density`: the scheme's own rounding."""

    @abstractmethod
    def ids(self, linear: Tensor) -> Tensor:
        """Sorted unit ids of sorted kept positions that form whole units."""

    @abstractmethod
    def positions(self, ids: Tensor) -> Tensor:
        """Sorted linear positions of the weights of sorted unit `ids`."""

    def unit_rows(self, per_weight: Tensor) -> Tensor:
        """A tensor over kept weights in position order as (kept units, weights per unit)."""
        return per_weight.view(-1, self.size)

    def check(self, linear: Tensor) -> None:
        """Raise ValueError unless the kept positions `linear` form whole units."""
        if not torch.equal(self.positions(self.ids(linear)), linear):
            raise ValueError(f"the kept weights do not form whole units of {type(self).__name__}")

    def choose(self, ids: Tensor, importance: Tensor, keep: int, total: int,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(survivor slots into `ids`, grown unit ids): keep the `keep` most important units and
        grow random absent ones up to `total`."""
        return choose_mutation(ids, importance, keep, total, self.count, generator)


class SegmentUnits(UnitView):
    """Aligned runs of `length` consecutive weights in a row of the 2-D view; length 1 is single weights."""

    def __init__(self, shape: tuple[int, ...], length: int = 1) -> None:
        super().__init__(shape)
        cols = math.prod(self.shape[1:])
        if length < 1 or cols % length:
            raise ValueError(f"{cols} columns per row are not a multiple of the segment length {length}")
        self.length = length

    @property
    def size(self) -> int:
        return self.length

    @property
    def count(self) -> int:
        return self.numel // self.length

    def kept(self, density: float) -> int:
        return closest_unit_count(round(density * self.numel), self.length, self.count)

    def check(self, linear: Tensor) -> None:
        if linear.numel() % self.length:
            raise ValueError(f"the kept weights do not form whole, aligned 1x{self.length} row segments")
        groups = linear.view(-1, self.length)
        offsets = torch.arange(self.length, device=linear.device)
        if not bool(((groups[:, :1] % self.length == 0) & (groups == groups[:, :1] + offsets)).all()):
            raise ValueError(f"the kept weights do not form whole, aligned 1x{self.length} row segments")

    def ids(self, linear: Tensor) -> Tensor:
        return linear if self.length == 1 else linear[:: self.length] // self.length

    def positions(self, ids: Tensor) -> Tensor:
        if self.length == 1:
            return ids
        return (ids[:, None] * self.length + torch.arange(self.length, device=ids.device)).flatten()


class PatternUnits(UnitView):
    """3x3 kernels keeping one of `patterns` ((P, 3, 3) bool, 4 taps each), balanced per filter."""

    size = 4

    def __init__(self, shape: tuple[int, ...], patterns: Tensor) -> None:
        super().__init__(shape)
        if len(self.shape) != 4 or self.shape[2:] != (3, 3):
            raise ValueError(f"pattern units need a 3x3 conv weight, got shape {self.shape}")
        taps = patterns.reshape(len(patterns), 9)
        if not bool((taps.sum(1) == 4).all()):
            raise ValueError("pattern units need patterns of exactly 4 taps")
        self.out_channels, self.in_channels = self.shape[:2]
        self.count_patterns = len(patterns)
        self.taps = torch.stack([row.nonzero().flatten() for row in taps])  # (P, 4) sorted tap offsets
        codes = (taps.long() << torch.arange(9)).sum(1)
        self.pattern_of_code = torch.full((512,), -1, dtype=torch.long)
        self.pattern_of_code[codes] = torch.arange(len(patterns))

    @property
    def count(self) -> int:
        return self.numel // 9 * self.count_patterns

    def kept(self, density: float) -> int:
        return kernels_per_filter(density, self.in_channels) * self.out_channels

    def check(self, linear: Tensor) -> None:
        ids = self.ids(linear)  # raises on kernels that are not library patterns
        counts = torch.bincount(ids // self.count_patterns // self.in_channels, minlength=self.out_channels)
        if bool((counts != counts[0]).any()):
            raise ValueError(f"filters keep different numbers of kernels: {counts.tolist()}")

    def ids(self, linear: Tensor) -> Tensor:
        if linear.numel() % 4:
            raise ValueError("the kept weights do not form whole 4-tap kernels")
        groups = linear.view(-1, 4)
        kernel = groups[:, 0] // 9
        if not bool((groups // 9 == kernel[:, None]).all()):
            raise ValueError("the kept weights do not form whole 4-tap kernels")
        codes = ((1 << (groups % 9)).sum(1)).cpu()
        pattern = self.pattern_of_code[codes]
        if bool((pattern < 0).any()):
            raise ValueError("a kept kernel is not one of the library's patterns")
        return kernel * self.count_patterns + pattern.to(linear.device)

    def positions(self, ids: Tensor) -> Tensor:
        kernel, pattern = ids // self.count_patterns, ids % self.count_patterns
        return (kernel[:, None] * 9 + self.taps.to(ids.device)[pattern]).flatten()

    def choose(self, ids: Tensor, importance: Tensor, keep: int, total: int,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Per filter: keep the most important kernels, grow random absent ones (never one it
        held before this mutation) with a random pattern each."""
        out_channels, in_channels = self.out_channels, self.in_channels
        held = ids.numel() // out_channels
        keep_each, total_each = keep // out_channels, total // out_channels
        keep_each = min(max(keep_each, total_each - (in_channels - held)), held)
        ranking = torch.argsort(importance.detach().view(out_channels, held).cpu(), dim=1, descending=True, stable=True)
        offsets = torch.arange(out_channels)[:, None] * held
        survivors = (ranking[:, :keep_each] + offsets).flatten().sort().values.to(ids.device)
        grow_each = max(total_each - keep_each, 0)
        device = generator.device
        scores = torch.rand(out_channels, in_channels, generator=generator, device=device)
        kernels = (ids // self.count_patterns).to(device)
        scores.view(-1)[kernels] = -1.0  # held before this mutation: never regrown now
        columns = scores.topk(grow_each, dim=1).indices
        new_kernels = (columns + torch.arange(out_channels, device=device)[:, None] * in_channels).flatten()
        patterns = torch.randint(self.count_patterns, (new_kernels.numel(),), generator=generator, device=device)
        return survivors, (new_kernels * self.count_patterns + patterns).to(ids.device)


class ChannelUnits(UnitView):
    """Whole output filters/neurons (dim 0) or input channels (dim 1)."""

    def __init__(self, shape: tuple[int, ...], dim: int = 0) -> None:
        super().__init__(shape)
        if dim not in (0, 1):
            raise ValueError(f"channel units are output (dim 0) or input (dim 1) channels, got dim={dim!r}")
        self.dim = dim
        self.inner = math.prod(self.shape[2:])  # weights per (output, input) channel pair

    @property
    def size(self) -> int:
        return self.numel // self.shape[self.dim]

    @property
    def count(self) -> int:
        return self.shape[self.dim]

    def kept(self, density: float) -> int:
        """The whole channels closest to round(density * numel)."""
        return closest_unit_count(round(density * self.numel), self.size, self.count)

    def unit_rows(self, per_weight: Tensor) -> Tensor:
        if self.dim == 0:
            return per_weight.view(-1, self.size)
        return per_weight.view(self.shape[0], -1, self.inner).transpose(0, 1).reshape(-1, self.size)

    def ids(self, linear: Tensor) -> Tensor:
        if self.dim == 0:
            return linear[:: self.size] // self.size
        first_row = linear[: linear.numel() // self.shape[0]]
        return first_row[:: self.inner] // self.inner

    def positions(self, ids: Tensor) -> Tensor:
        if self.dim == 0:
            return (ids[:, None] * self.size + torch.arange(self.size, device=ids.device)).flatten()
        cols = self.numel // self.shape[0]
        rows = torch.arange(self.shape[0], device=ids.device)[:, None, None] * cols
        starts = (ids * self.inner)[None, :, None]
        return (rows + starts + torch.arange(self.inner, device=ids.device)).flatten()
