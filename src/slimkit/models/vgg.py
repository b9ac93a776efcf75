"""VGG with BatchNorm in the CIFAR form used by Network Slimming (Liu et al. 2017): the conv stack
of Simonyan & Zisserman, then global average pooling and one linear classifier.

Max-pools that would shrink the feature map below 1x1 are skipped, so 28x28 or 8x8 inputs work.
"""

from __future__ import annotations

import torch
from torch import nn

CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: str, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        channels, size = input_shape[0], min(input_shape[1:])
        layers: list[nn.Module] = []
        for item in CONFIGS[config]:
            if item == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False), nn.BatchNorm2d(int(item)), nn.ReLU()]
            channels = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))
