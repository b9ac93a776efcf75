"""What a CSR layer's mutation keeps, drops and grows together, without building dense tensors.

A *unit rule* maps a CSR layer's kept positions to unit ids and back, so that prune-and-grow can
work on ids (`slimkit.compressed.mutation`) while the scheme's structure holds:

- `SegmentUnits(1)`: single weights (the unstructured scheme);
- `SegmentUnits(L)`: aligned 1 x L row segments of the 2-D view (the block scheme, prune="rows");
- `PatternUnits(patterns)`: 3x3 kernels, each keeping one 4-tap pattern of the library, the same
  number of kernels in every filter (the pattern scheme). A unit id is kernel * P + pattern, so
  the id says which taps it keeps; growth picks absent kernels per filter and a random pattern.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from slimkit.compressed.structure import choose_mutation


def closest_unit_count(target: int, unit_size: int, units: int) -> int:
    """Whole units closest to `target` weights (ties: fewer), between 1 and `units`: how the
    schemes count when every unit has the same size."""
    fewer = target // unit_size
    count = fewer + 1 if (fewer + 1) * unit_size - target < target - fewer * unit_size else fewer
    return min(max(count, 1), units)


class SegmentUnits:
    """Aligned runs of `length` consecutive weights in a row; length 1 is single weights."""

    def __init__(self, length: int = 1) -> None:
        self.length = length

    @property
    def size(self) -> int:
        """Weights per unit."""
        return self.length

    def check(self, linear: Tensor, shape: tuple[int, ...]) -> None:
        """Raise unless the kept positions `linear` form whole units of this rule."""
        cols = math.prod(shape[1:])
        if self.length < 1 or cols % self.length:
            raise ValueError(f"{cols} columns per row are not a multiple of the segment length {self.length}")
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

    def count(self, numel: int, shape: tuple[int, ...]) -> int:
        return numel // self.length

    def kept(self, density: float, numel: int, shape: tuple[int, ...]) -> int:
        return closest_unit_count(round(density * numel), self.length, numel // self.length)

    def choose(self, ids: Tensor, importance: Tensor, keep: int, total: int, shape: tuple[int, ...],
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return choose_mutation(ids, importance, keep, total, math.prod(shape) // self.length, generator)


class PatternUnits:
    """3x3 kernels keeping one of `patterns` ((P, 3, 3) bool, 4 taps each), balanced per filter."""

    size = 4

    def __init__(self, patterns: Tensor) -> None:
        taps = patterns.reshape(len(patterns), 9)
        if not bool((taps.sum(1) == 4).all()):
            raise ValueError("pattern units need patterns of exactly 4 taps")
        self.count_patterns = len(patterns)
        self.taps = torch.stack([row.nonzero().flatten() for row in taps])  # (P, 4) sorted tap offsets
        codes = (taps.long() << torch.arange(9)).sum(1)
        self.pattern_of_code = torch.full((512,), -1, dtype=torch.long)
        self.pattern_of_code[codes] = torch.arange(len(patterns))

    def _kernels(self, shape: tuple[int, ...]) -> tuple[int, int]:
        if len(shape) != 4 or tuple(shape[2:]) != (3, 3):
            raise ValueError(f"pattern units need a 3x3 conv weight, got shape {tuple(shape)}")
        return shape[0], shape[1]

    def check(self, linear: Tensor, shape: tuple[int, ...]) -> None:
        out_channels, _ = self._kernels(shape)
        ids = self.ids(linear)  # raises on kernels that are not library patterns
        counts = torch.bincount(ids // self.count_patterns // shape[1], minlength=out_channels)
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

    def count(self, numel: int, shape: tuple[int, ...]) -> int:
        return numel // 9 * self.count_patterns

    def kept(self, density: float, numel: int, shape: tuple[int, ...]) -> int:
        """The pattern scheme's count: round(density / (4/9) * in) kernels in every filter."""
        out_channels, in_channels = self._kernels(shape)
        per_filter = min(max(round(density / (4 / 9) * in_channels), 1), in_channels)  # as PatternScheme rounds
        return per_filter * out_channels

    def choose(self, ids: Tensor, importance: Tensor, keep: int, total: int, shape: tuple[int, ...],
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Per filter: keep the most important kernels, grow random absent ones (never one it
        held before this mutation) with a random pattern each."""
        out_channels, in_channels = self._kernels(shape)
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
