"""Shared by the compressed-layer tests: a short dynamic-sparse-training loop on random images."""

import torch
from torch import nn

from slimkit.compressed import compressed_layers
from slimkit.methods import MEST, PhasedMEST, soft_memory_bound_phases


def make_mest(method: str, model: nn.Module, sparsity: float, **common):
    """Vanilla MEST (mutation rate 0.3) or MEST+EM&S at `sparsity`, with the shared settings `common`."""
    if method == "mest":
        return MEST(model, sparsity=sparsity, mutation_rate=0.3, **common)
    return PhasedMEST(model, sparsity=sparsity, phases=soft_memory_bound_phases(sparsity), **common)


def train_compressed_dst(model: nn.Module, dst, steps: int = 20, classes: int = 4) -> int:
    """Train `model` with `dst` (already bound and compressed) for `steps` steps of 8 random 6x6
    one-channel images; returns how many units the compressed layers grew in all."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dst.bind(optimizer, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    moved = 0
    for _ in range(steps):
        x, y = torch.randn(8, 1, 6, 6, generator=g), torch.randint(classes, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        before = {n: layer.units().clone() for n, layer in compressed_layers(model).items()}
        dst.step()
        moved += sum(int((~torch.isin(layer.units(), before[n])).sum()) for n, layer in compressed_layers(model).items())
    return moved
