"""Compressed vs masked-dense vs dense training steps (issue: compressed sparse execution).

    python benchmarks/compressed_step.py

An MLP 784-4096-4096-10 on real Fashion-MNIST batches of 256: one full training step (forward,
backward, SGD-momentum step; masked storage also re-applies its masks, as slimkit's methods do)
at each sparsity, the three storages timed round-robin in one process so machine noise hits all
of them alike; medians. Memory is parameters + gradients + optimizer state + index buffers, read
from the tensors after a step. Inference: batch 1 and 64, no grad.
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

STORAGES = ("dense", "masked", "compressed")


def build(storage: str, sparsity: float, info, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = build_model("mlp", info)
    if storage != "dense":
        generator = torch.Generator().manual_seed(seed)
        masks = {
            name: torch.rand(m.weight.shape, generator=generator) >= sparsity
            for name, m in model.named_modules() if isinstance(m, nn.Linear)
        }
        apply_masks(model, masks)
        if storage == "compressed":
            compress(model)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, masked: bool) -> None:
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if masked:
        enforce_masks(model)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(sparsity: float, info, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    built = {s: build(s, sparsity, info) for s in STORAGES}
    for storage, (model, optimizer) in built.items():  # warm-up; also creates momentum buffers
        for _ in range(2):
            train_step(model, optimizer, x, y, storage == "masked")
    step = {s: [] for s in STORAGES}
    for _ in range(repeats):
        for storage, (model, optimizer) in built.items():
            step[storage].append(timed(lambda: train_step(model, optimizer, x, y, storage == "masked")))
    result = {"step": {s: statistics.median(v) for s, v in step.items()}}
    result["memory"] = {s: training_state_bytes(m, o) for s, (m, o) in built.items()}
    for batch in (1, 64):
        inputs = x[:batch]
        times = {s: [] for s in STORAGES}
        with torch.no_grad():
            for storage, (model, _) in built.items():
                model.eval()
                model(inputs)
            for _ in range(repeats * 3):
                for storage, (model, _) in built.items():
                    times[storage].append(timed(lambda: model(inputs)))
        result[f"infer{batch}"] = {s: statistics.median(v) for s, v in times.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.0, 0.8, 0.9, 0.95, 0.98, 0.99])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("fashion-mnist")
    x, y = next(iter(make_loaders(splits, args.batch_size, augment=False).train))[:2]  # normalised, as in training

    rows = []
    for sparsity in args.sparsities:
        r = measure(sparsity, splits.info, x, y, args.repeats)
        step, memory = r["step"], r["memory"]
        print(f"{sparsity:.0%}: " + ", ".join(f"{s} {1e3 * t:.1f} ms" for s, t in step.items()), flush=True)
        rows.append(
            f"| {sparsity:.0%} | {1e3 * step['dense']:.1f} | {1e3 * step['masked']:.1f} | {1e3 * step['compressed']:.1f} "
            f"| **{step['compressed'] / step['dense']:.2f}×** | {step['compressed'] / step['masked']:.2f}× "
            f"| {memory['dense'] / 2**20:.0f} / {memory['masked'] / 2**20:.0f} / {memory['compressed'] / 2**20:.0f} "
            f"| **{memory['compressed'] / memory['dense']:.2f}×** "
            f"| {r['infer1']['compressed'] / r['infer1']['dense']:.2f}× | {r['infer64']['compressed'] / r['infer64']['dense']:.2f}× |"
        )
    command = "python benchmarks/compressed_step.py" + (
        f" --sparsities {' '.join(f'{s:g}' for s in args.sparsities)}" if args.sparsities != parser.get_default("sparsities") else ""
    )
    body = [
        "## Compressed execution: one training step of an MLP 784-4096-4096-10", "",
        f"Fashion-MNIST batch of {args.batch_size}; forward + backward + SGD-momentum step (masked storage also "
        "re-applies its masks). Median of "
        f"{args.repeats} steps, the three storages interleaved in one process. Memory: parameters + gradients + "
        "momentum + index buffers (dense / masked / compressed, MiB). Inference columns: compressed / dense latency.", "",
        "| sparsity | dense ms | masked ms | compressed ms | compressed / dense | compressed / masked "
        "| memory MiB | memory compressed / dense | infer b1 | infer b64 |",
        "| --- |" + " --- |" * 9,
        *rows, "",
        f"`{command}` ({machine_line()}).",
    ]
    write_section("compressed-step", "\n".join(body))


if __name__ == "__main__":
    main()
