"""Plain containers for in-memory datasets: every slimkit dataset fits in RAM, which keeps
loading, augmentation and index bookkeeping (forgetting statistics, subsets) simple and fast."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message lists them and says how to get them."""


class DatasetFileError(ValueError):
    """A dataset file exists but cannot be used (unreadable, truncated, malformed, labels out of
    range). A ValueError, so the CLI prints its one-line message, which names the file."""


def check_labels(labels: np.ndarray | torch.Tensor, num_classes: int, origin: str) -> None:
    """Refuse labels outside 0..num_classes-1 at load time: later they would index past the
    model's outputs (an IndexError or a CUDA assert deep in training) or silently mean nothing."""
    values = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    bad = np.flatnonzero((values < 0) | (values >= num_classes))
    if bad.size:
        first = int(bad[0])
        raise DatasetFileError(
            f"{origin}: label {values[first]} of example {first} is outside 0..{num_classes - 1} "
            f"({bad.size} such labels); this dataset has {num_classes} classes"
        )


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data."""

    name: str
    input_shape: tuple[int, ...]  # (C, H, W) for images, (C, L) for 1-D signals
    num_classes: int
    mean: tuple[float, ...] = field(default=(0.0,))  # per channel, of inputs scaled to [0, 1]
    std: tuple[float, ...] = field(default=(1.0,))

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


@dataclass
class TensorSplit:
    """One split held in memory. `inputs` is uint8 (pixels 0..255) or float32 (already scaled)."""

    inputs: torch.Tensor
    targets: torch.Tensor  # int64, shape (N,)

    def __post_init__(self) -> None:
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ValueError(
                f"inputs have {self.inputs.shape[0]} examples but targets have {self.targets.shape[0]}"
            )
        self.targets = self.targets.long()

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, indices: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.inputs[indices], self.targets[indices])

    def as_float(self) -> torch.Tensor:
        """Inputs scaled to [0, 1] as float32."""
        return to_unit_float(self.inputs)


@dataclass
class DataSplits:
    info: DatasetInfo
    train: TensorSplit
    test: TensorSplit
    val: TensorSplit | None = None


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def channel_stats(split: TensorSplit) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a split's inputs in [0, 1] (computed in float64 chunks)."""
    channels = split.inputs.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(split), 8192):
        chunk = to_unit_float(split.inputs[start : start + 8192]).double()
        per_channel = chunk.transpose(0, 1).reshape(channels, -1)
        total += per_channel.sum(dim=1)
        total_sq += (per_channel**2).sum(dim=1)
        count += per_channel.shape[1]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
