"""Compressed vs masked training steps of conv nets under each sparsity scheme.

    python benchmarks/compressed_schemes.py [--models resnet20 vgg11] [--sparsities 0.5 0.75 0.9]

One training step (forward, backward, SGD-momentum step; masked storage also re-applies its
masks) on a real Fashion-MNIST batch, every storage timed round-robin in one process so machine
noise hits all alike; medians. Every Conv2d/Linear except the first conv and the classifier is
pruned with random scores under the scheme. Compressed layouts: CSR for unstructured, block and
pattern masks (the same kernels; those schemes' structure is not exploited further), and the
channel layout (a physically smaller dense layer) for the channel scheme. Memory is parameters +
gradients + momentum + index buffers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, write_section  # noqa: E402

from slimkit.compressed import compress  # noqa: E402
from slimkit.data import load_dataset, make_loaders  # noqa: E402
from slimkit.metrics import training_state_bytes  # noqa: E402
from slimkit.models import build_model  # noqa: E402
from slimkit.sparse.masking import apply_masks, enforce_masks  # noqa: E402
from slimkit.sparse.schemes import make_scheme  # noqa: E402

# (label, scheme, layout of the compressed variant)
VARIANTS = (
    ("unstructured", "unstructured", "csr"),
    ("channel (out)", "channel", "channel0"),
    ("block 1x4 rows", "block", "csr"),
    ("pattern + connectivity", "pattern", "csr"),
)


def pruned_layers(model: nn.Module) -> list[str]:
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and getattr(m, "groups", 1) == 1]
    return layers[1:-1]  # the first conv and the classifier stay dense


def build(model_name: str, info, scheme: str | None, sparsity: float, layout: str | None):
    torch.manual_seed(0)
    model = build_model(model_name, info)
    if scheme is not None:
        make = make_scheme(scheme, **({"block": (1, 4)} if scheme == "block" else {}))
        generator = torch.Generator().manual_seed(0)
        modules = dict(model.named_modules())
        masks = {}
        for name in pruned_layers(model):
            weight = modules[name].weight
            if make.supports(modules[name]):
                density = min(1.0 - sparsity, make.max_density(tuple(weight.shape)))
                masks[name] = make.make_mask(torch.rand(weight.shape, generator=generator), density)
        apply_masks(model, masks)
        if layout is not None:
            compress(model, list(masks), layout=layout)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    enforce_masks(model)


def measure(model_name: str, info, sparsity: float, x, y, repeats: int) -> dict[str, tuple[float, int]]:
    """{variant: (median step seconds, training-state bytes)}."""
    built = {"dense": build(model_name, info, None, 0.0, None), "masked": build(model_name, info, "unstructured", sparsity, None)}
    for label, scheme, layout in VARIANTS:
        built[label] = build(model_name, info, scheme, sparsity, layout)
    for model, optimizer in built.values():  # warm-up; also creates momentum buffers
        model.train()
        for _ in range(2):
            train_step(model, optimizer, x, y)
    times: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(repeats):
        for name, (model, optimizer) in built.items():
            start = time.perf_counter()
            train_step(model, optimizer, x, y)
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), training_state_bytes(*built[name])) for name in built}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet20", "vgg11"])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("fashion-mnist")
    x, y = next(iter(make_loaders(splits, args.batch_size, augment=False).train))[:2]
    header = ["dense", "masked"] + [label for label, _, _ in VARIANTS]
    body = [
        "## Compressed execution under each scheme: conv-net training steps", "",
        f"Fashion-MNIST batch of {args.batch_size}; forward + backward + SGD-momentum step, median of {args.repeats}, "
        "all storages interleaved in one process. Every Conv2d/Linear except the first conv and the classifier is "
        "pruned (random scores). Cells: step time relative to the dense step (memory: training state relative to "
        "dense). Compressed layouts: CSR for unstructured, block and pattern; channel layers for the channel scheme.", "",
    ]
    for model_name in args.models:
        body += [f"| {model_name} | dense ms | masked | " + " | ".join(f"compressed {h}" for h in header[2:]) + " |",
                 "| --- |" + " --- |" * len(header)]
        for sparsity in args.sparsities:
            r = measure(model_name, splits.info, sparsity, x, y, args.repeats)
            dense_time, dense_bytes = r["dense"]
            cells = [f"{r[h][0] / dense_time:.2f}× ({r[h][1] / dense_bytes:.2f}×)" for h in header[1:]]
            body.append(f"| {sparsity:.0%} | {1e3 * dense_time:.0f} | " + " | ".join(cells) + " |")
            print(body[-1], flush=True)
        body.append("")
    command = "python benchmarks/compressed_schemes.py " + " ".join(sys.argv[1:])
    body.append(f"`{command.strip()}` ({machine_line()}).")
    write_section("compressed-schemes", "\n".join(body))


if __name__ == "__main__":
    main()
