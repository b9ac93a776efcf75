"""LeNet-300-100 and LeNet-5, the classic pruning benchmarks (LeCun et al. 1998; Han et al. 2015)."""

from __future__ import annotations

import math

import torch
from torch import nn


class LeNet300(nn.Module):
    """LeNet-300-100: a 784-300-100-10 MLP on MNIST-sized inputs; any input shape is flattened."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc3(self.relu(self.fc2(x)))


class MLP(nn.Module):
    """A plain ReLU MLP with the given hidden widths (default 4096-4096: the compressed-execution
    benchmark's model, wide enough for sparse kernels to beat dense ones)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: list[int] | None = None) -> None:
        super().__init__()
        widths = [math.prod(input_shape), *(hidden if hidden is not None else [4096, 4096]), num_classes]
        if any(int(w) < 1 for w in widths):
            raise ValueError(f"MLP widths must be positive, got hidden={hidden}")
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(int(a), int(b)))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LeNet5(nn.Module):
    """LeNet-5 as used in the pruning literature: conv(6,5x5,pad 2) - pool - conv(16,5x5) - pool -
    fc 120 - fc 84 - fc classes, ReLU activations and max pooling.

    Inputs smaller than 16 px (scikit-learn digits, 8x8) pad the second conv too so it still fits.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        after_pool1 = min(height, width) // 2
        pad2 = 0 if after_pool1 >= 5 else 2
        self.conv1 = nn.Conv2d(channels, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad2)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        h = (height // 2 + 2 * pad2 - 4) // 2
        w = (width // 2 + 2 * pad2 - 4) // 2
        if h < 1 or w < 1:
            raise ValueError(f"lenet5 needs images of at least 8x8 pixels, got {height}x{width}")
        self.fc1 = nn.Linear(16 * h * w, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(self.flatten(x)))
        return self.fc3(self.relu(self.fc2(x)))
