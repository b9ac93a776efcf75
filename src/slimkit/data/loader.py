"""A batch loader for in-memory splits.

Why not torch's DataLoader: with the data already in RAM, per-example Python transforms dominate
the cost on a 2-core CPU. This loader augments whole batches with tensor ops, yields each
example's index (needed by forgetting statistics and subset training), shards global batches
across DDP ranks, and draws its randomness from generators seeded by (seed, epoch) so a resumed
run sees exactly the same batches as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F

from slimkit.data.base import DatasetInfo, TensorSplit, to_unit_float


class Batch(NamedTuple):
    inputs: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor  # positions in the split, for per-example bookkeeping


@dataclass(frozen=True)
class Augmentation:
    """Light augmentation: random crop after zero padding, and random horizontal flip."""

    crop_padding: int = 0
    hflip: bool = False

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip


def augment_batch(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Apply `aug` to an image batch (B, C, H, W) of floats in [0, 1]."""
    if x.dim() != 4:
        return x
    batch, _, height, width = x.shape
    if aug.crop_padding > 0:
        p = aug.crop_padding
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (batch,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (batch,), generator=gen)
        rows = (dy[:, None] + torch.arange(height))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx[:, None] + torch.arange(width))[:, None, None, :]  # (B, 1, 1, W)
        b = torch.arange(batch)[:, None, None, None]
        c = torch.arange(x.shape[1])[None, :, None, None]
        x = padded[b, c, rows, cols]
    if aug.hflip:
        flip = torch.rand(batch, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003) + epoch) * 7 + stream)


class BatchLoader:
    """Iterates (inputs, targets, indices) batches over a `TensorSplit`.

    `batch_size` is per process; with `world_size > 1` every global batch of
    `batch_size * world_size` examples is cut into equal consecutive chunks, one per rank, so the
    averaged DDP gradient equals the single-process gradient of the same global batch.
    `indices` restricts iteration to a subset of the split (e.g. two-phase data-efficient training).
    """

    def __init__(
        self,
        split: TensorSplit,
        info: DatasetInfo,
        batch_size: int,
        *,
        shuffle: bool = False,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        drop_last: bool = False,
        indices: torch.Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.split = split
        self.info = info
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augmentation = augmentation or Augmentation()
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.indices = torch.arange(len(split)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        shape = (1, -1) + (1,) * (len(info.input_shape) - 1)
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(shape)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(shape)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle order and augmentation draws of `epoch` (0-based)."""
        self.epoch = epoch

    def set_indices(self, indices: torch.Tensor) -> None:
        self.indices = torch.as_tensor(indices, dtype=torch.long)

    @property
    def num_examples(self) -> int:
        return int(self.indices.numel())

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        n, g = self.num_examples, self.global_batch_size
        return n // g if self.drop_last else -(-n // g)

    def _order(self) -> torch.Tensor:
        if not self.shuffle:
            return self.indices
        perm = torch.randperm(self.num_examples, generator=_epoch_generator(self.seed, self.epoch, 0))
        return self.indices[perm]

    def __iter__(self) -> Iterator[Batch]:
        order = self._order()
        aug_gen = _epoch_generator(self.seed, self.epoch, 1 + self.rank)
        use_aug = self.shuffle and self.augmentation.enabled
        for b in range(len(self)):
            global_idx = order[b * self.global_batch_size : (b + 1) * self.global_batch_size]
            idx = global_idx.tensor_split(self.world_size)[self.rank]
            x = to_unit_float(self.split.inputs[idx])
            if use_aug:
                x = augment_batch(x, self.augmentation, aug_gen)
            yield Batch((x - self._mean) / self._std, self.split.targets[idx], idx)
