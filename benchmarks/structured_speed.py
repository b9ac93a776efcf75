"""Does channel pruning make torchvision models faster on this CPU? (issue 6: structured pruning)

Side by side in one process: params, FLOPs (slimkit.metrics.count_flops, 2 x MACs) and median CPU
latency (PyTorch eager, 2 threads, batch 1 and 32) before and after removing 50% of the prunable
channels (L1, local ratio). Random weights: speed does not depend on their values.

    python benchmarks/structured_speed.py --size 224
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, write_section  # noqa: E402

from slimkit.metrics import count_flops, count_params, measure_latency  # noqa: E402
from slimkit.structured import prune_channels  # noqa: E402

MODELS = ["resnet18", "mobilenet_v2", "vgg11_bn"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--size", type=int, default=224, help="input side (default: 224)")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    shape = (3, args.size, args.size)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        dense = torchvision.models.get_model(name, weights=None).eval()
        start = time.perf_counter()
        pruned = prune_channels(dense, shape, args.ratio).eval()
        prune_s = time.perf_counter() - start
        flops = [count_flops(m, shape).dense for m in (dense, pruned)]
        params = [count_params(m)[0] for m in (dense, pruned)]
        latency = {}
        for batch in args.batches:
            repeats = args.repeats if batch == 1 else max(3, args.repeats // 3)
            latency[batch] = [measure_latency(m, shape, batch, warmup=2, repeats=repeats).median_s * 1e3
                              for m in (dense, pruned)]
        rows.append((name, params, flops, latency, prune_s))
        print(name, params, flops, latency, f"prune {prune_s:.1f}s", flush=True)
    command = "python benchmarks/" + Path(__file__).name + " " + shlex.join(sys.argv[1:])
    lines = [
        f"## Channel pruning speed in PyTorch eager (CPU, {args.size}x{args.size}, {args.ratio:.0%} of channels)",
        "",
        f"`{command.strip()}` — {machine_line()}. Latency = median ms per forward pass; speedup = dense / pruned.",
        "",
        "| model | params dense → pruned | GFLOPs dense → pruned (reduction) | "
        + " | ".join(f"batch {b} ms dense → pruned (speedup)" for b in args.batches) + " | prune time |",
        "| --- | --- | --- | " + " | ".join("---" for _ in args.batches) + " | --- |",
    ]
    for name, params, flops, latency, prune_s in rows:
        cells = [f"{latency[b][0]:.1f} → {latency[b][1]:.1f} ({latency[b][0] / latency[b][1]:.2f}x)"
                 for b in args.batches]
        lines.append(
            f"| {name} | {params[0] / 1e6:.2f}M → {params[1] / 1e6:.2f}M | {flops[0] / 1e9:.2f} → {flops[1] / 1e9:.2f} "
            f"({flops[0] / flops[1]:.2f}x) | " + " | ".join(cells) + f" | {prune_s:.1f} s |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    ratios = [latency[b][0] / latency[b][1] / (flops[0] / flops[1]) for _, _, flops, latency, _ in rows for b in latency]
    lines += ["", f"Target: measured speedup >= 0.8x the FLOPs reduction; here {min(ratios):.2f}-{max(ratios):.2f}x "
              f"of it. Load average (1, 5, 15 min) when the measurement ended: {load}."]
    write_section("structured-speed", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
