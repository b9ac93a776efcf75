"""Tiny float64 networks, batches and brute-force references shared by the criteria tests."""

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.importance import ScoringInputs

D = torch.float64


def _init(model: nn.Module, seed: int, scale: float = 0.7) -> nn.Module:
    """Seeded Gaussian parameters (without touching the global RNG)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(scale * torch.randn(param.shape, generator=gen, dtype=param.dtype))
    return model


def tiny_mlp(seed: int = 0, bias: bool = True) -> nn.Sequential:
    return _init(nn.Sequential(nn.Linear(4, 5, bias=bias), nn.Tanh(), nn.Linear(5, 3, bias=bias)).to(D), seed)


def mlp_layers(model: nn.Sequential) -> dict[str, nn.Module]:
    return {"fc1": model[0], "fc2": model[2]}


def batches(count: int = 2, n: int = 6, features: int = 4, classes: int = 3, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, features, generator=gen, dtype=D),
            torch.randint(0, classes, (n,), generator=gen),
            torch.arange(n),  # (inputs, targets, indices) batches are accepted too
        )
        for _ in range(count)
    ]


def mlp_case():
    """The tiny MLP, two calibration batches, its scored layers and their weights."""
    model = tiny_mlp()
    layers = mlp_layers(model)
    return model, batches(), layers, [layer.weight for layer in layers.values()]


def flat_loss(model, names, flat, x, y, temperature=1.0):
    """Cross-entropy as a function of the named weights, flattened into one vector."""
    params, offset = {}, 0
    shapes = dict(model.named_parameters())
    for name in names:
        numel = shapes[name].numel()
        params[name] = flat[offset : offset + numel].view(shapes[name].shape)
        offset += numel
    return F.cross_entropy(torch.func.functional_call(model, params, (x,)) / temperature, y)


def flat_weights(model, names):
    shapes = dict(model.named_parameters())
    return torch.cat([shapes[name].detach().flatten() for name in names])


def unflatten(flat, layers):
    out, offset = {}, 0
    for name, layer in layers.items():
        numel = layer.weight.numel()
        out[name] = flat[offset : offset + numel].view(layer.weight.shape)
        offset += numel
    return out


def relative_error(actual: dict, expected: dict) -> float:
    a = torch.cat([actual[k].detach().flatten() for k in expected])
    e = torch.cat([expected[k].detach().flatten() for k in expected])
    return float((a - e).norm() / e.norm()) if e.norm() > 0 else float((a - e).norm())


NAMES = ["0.weight", "2.weight"]


class Mask(nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


def _conv_net() -> nn.Sequential:
    return _init(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.0),
            nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
        ),
        seed=11,
        scale=0.3,
    )


def _conv_batches():
    gen = torch.Generator().manual_seed(2)
    return [(torch.randn(3, 3, 4, 4, generator=gen), torch.randint(0, 3, (3,), generator=gen)) for _ in range(2)]


def scoring(batches=None, **shared) -> ScoringInputs:
    """The shared scoring inputs of a test: `batches` and any other ScoringInputs field."""
    return ScoringInputs(batches=batches, **shared)
