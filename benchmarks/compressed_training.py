"""End to end: MEST+EM&S at 90% on the MLP 784-4096-4096-10, masked vs compressed storage.

    python benchmarks/compressed_training.py --epochs 5
    python benchmarks/compressed_training.py --model resnet20 --scheme channel --sparsity 0.75 --epochs 1

The second form trains ResNet-20 under the channel scheme, whose compressed layers are physically
smaller convolutions; it writes its own BENCHMARKS.md section.

The same seeded run twice, one after the other (never side by side: each run's peak memory and
wall time must be its own), through `slimkit train`. Peak memory is the process's peak resident
set during training (VmHWM reset when training starts); training time excludes evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, read_metrics, run_job, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--method", default="mest-ems")
    parser.add_argument("--model", default="mlp", choices=["mlp", "resnet20", "vgg11"])
    parser.add_argument("--scheme", default="unstructured", choices=["unstructured", "channel"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench/compressed")
    args = parser.parse_args()

    common = ["train", "--model", args.model, "--data", "fashion-mnist", "--epochs", str(args.epochs), "--batch-size", "256",
              "--lr", "0.05", "--method", args.method, "--sparsity", str(args.sparsity), "--scheme", args.scheme,
              "--no-augment"]
    tag = "" if (args.model, args.scheme) == ("mlp", "unstructured") else f"{args.model}-{args.scheme}-"
    runs = {}
    for storage in ("masked", "compressed"):
        out = Path(args.out) / f"{tag}{args.method}-{args.sparsity:g}-{storage}"
        run_job((out.name, [*common, "--storage", storage], out), threads=args.threads, resume=False)
        runs[storage] = read_metrics(out)
    masked, compressed = runs["masked"], runs["compressed"]
    rows = [
        f"| {storage} | {m['test_acc']:.2%} | {m['sparsity']:.2%} | {m['train_time_s']:.0f} | {m['peak_mem_bytes'] / 2**20:.0f} "
        f"| {m['train_state_bytes'] / 2**20:.1f} | {m['model_file_bytes'] / 2**20:.1f} | {m['latency_ms']:.2f} |"
        for storage, m in runs.items()
    ]
    title = "MLP 784-4096-4096-10" if not tag else f"{args.model}, {args.scheme} scheme"
    body = [
        f"## Compressed execution end to end: {args.method} at {args.sparsity:.0%}, {title}", "",
        f"Fashion-MNIST, {args.epochs} epochs, batch 256, lr 0.05 cosine, no augmentation, seed 0; the two runs one after "
        f"the other with {args.threads} thread(s). Peak memory: the training process's peak RSS (includes about 0.8 GB of Python/torch "
        "runtime and the in-memory dataset); training state: weights + gradients + momentum + indices after training.", "",
        "| storage | test acc | sparsity | train s | peak RSS MiB | training state MiB | model file MiB | latency ms (b1) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows, "",
        f"Compressed / masked: accuracy {100 * (compressed['test_acc'] - masked['test_acc']):+.2f} pt, training time "
        f"**{compressed['train_time_s'] / masked['train_time_s']:.2f}×**, peak RSS "
        f"**{compressed['peak_mem_bytes'] / masked['peak_mem_bytes']:.2f}×**, training state "
        f"**{compressed['train_state_bytes'] / masked['train_state_bytes']:.2f}×**.", "",
        f"`python benchmarks/compressed_training.py {' '.join(sys.argv[1:])}` ({machine_line()}).",
    ]
    write_section("compressed-training" + (f"-{args.model}-{args.scheme}" if tag else ""), "\n".join(body))


if __name__ == "__main__":
    main()
