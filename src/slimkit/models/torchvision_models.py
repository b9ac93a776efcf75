"""Any torchvision classifier as `tv:<name>`, adapted to the dataset (random init, never downloaded).

The wrapped network is the unmodified torchvision module (so structured pruning and export see the
real architecture); the wrapper only repeats grey channels to RGB and resizes inputs to a size the
architecture accepts (at least 32 px; 64 for AlexNet; 75 for Inception-v3; 224 for MaxViT's fixed window grid).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _input_size_and_kwargs(name: str, side: int) -> tuple[int, dict]:
    size, kwargs = max(32, side), {}
    if name.startswith("vit_"):
        patch = int(name.rsplit("_", 1)[1])
        size = math.ceil(size / patch) * patch
        kwargs["image_size"] = size
    elif name == "inception_v3":
        size = max(size, 75)
        kwargs.update(aux_logits=False, init_weights=False)
    elif name == "googlenet":
        kwargs.update(aux_logits=False, init_weights=False)
    elif name == "alexnet":
        size = max(size, 64)  # its 11x11/4 stem and three pools need 63 px
    elif name.startswith("maxvit"):
        size = 224
    return size, kwargs


class TorchvisionClassifier(nn.Module):
    def __init__(self, name: str, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        import torchvision

        if name not in classification_models():
            raise ValueError(
                f"unknown torchvision classifier '{name}'; see torchvision.models.list_models(module=torchvision.models)"
            )
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise ValueError(f"tv:{name} needs 1- or 3-channel images, got input shape {input_shape}")
        self.name = name
        self.in_channels = input_shape[0]
        self.size, kwargs = _input_size_and_kwargs(name, max(input_shape[1:]))
        self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net(x)
