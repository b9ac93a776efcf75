"""Model registry: build a named architecture sized for a dataset."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from slimkit.data.base import DatasetInfo
from slimkit.models.lenet import MLP, LeNet5, LeNet300
from slimkit.models.resnet_cifar import CifarResNet
from slimkit.models.torchvision_models import TorchvisionClassifier
from slimkit.models.vgg import VGG

Builder = Callable[..., nn.Module]  # builder(input_shape, num_classes, **options)

MODELS: dict[str, tuple[Builder, str, bool]] = {
    # name: (builder, description, needs 2-D images)
    "lenet300": (LeNet300, "LeNet-300-100 MLP (266k params on 28x28)", False),
    "mlp": (MLP, "ReLU MLP, hidden widths from model_options {hidden: [...]}, default 4096-4096 (20M)", False),
    "lenet5": (LeNet5, "LeNet-5 conv net (61k params on 28x28)", True),
    "resnet20": (lambda s, k, **o: CifarResNet(20, s, k, **o), "CIFAR ResNet-20, option-A shortcuts (0.27M)", True),
    "resnet32": (lambda s, k, **o: CifarResNet(32, s, k, **o), "CIFAR ResNet-32, option-A shortcuts (0.46M)", True),
    "resnet56": (lambda s, k, **o: CifarResNet(56, s, k, **o), "CIFAR ResNet-56, option-A shortcuts (0.85M)", True),
    "vgg11": (lambda s, k, **o: VGG("vgg11", s, k, **o), "VGG-11 with BatchNorm, CIFAR form (9.2M)", True),
    "vgg16": (lambda s, k, **o: VGG("vgg16", s, k, **o), "VGG-16 with BatchNorm, CIFAR form (14.7M)", True),
}


def available_models() -> list[str]:
    return sorted(MODELS) + ["tv:<name> (any torchvision classifier)"]


def build_model(name: str, info: DatasetInfo, **options: Any) -> nn.Module:
    """Build `name` for inputs of `info.input_shape` and `info.num_classes` outputs."""
    if name.startswith("tv:"):
        return TorchvisionClassifier(name[3:], info.input_shape, info.num_classes, **options)
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(available_models())}")
    builder, _, needs_image = MODELS[name]
    if needs_image and not info.is_image:
        raise ValueError(
            f"model '{name}' needs 2-D images (C, H, W) but dataset '{info.name}' gives inputs of shape "
            f"{info.input_shape}; use an MLP such as lenet300"
        )
    return builder(info.input_shape, info.num_classes, **options)
