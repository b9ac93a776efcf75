"""Sparsity schemes side by side under dynamic sparse training (issue: dynamic sparse training):
unstructured vs block vs pattern vs channel, same method, sparsity and budget.

    python benchmarks/dst_schemes.py --model resnet20 --epochs 10 --sparsity 0.9 --seeds 0 1 --device cuda

The unstructured runs are the ones `dst_sweep.py` writes (same folder, same name), so they are
reused when that sweep already ran. Pattern-based sparsity applies to 3x3 convolutions, so the
comparison needs a model made of them (resnet20); other layers fall back to unstructured masks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, read_metrics, run_jobs, write_section  # noqa: E402
from dst_sweep import METHODS, RECIPES  # noqa: E402

SCHEMES = {
    "unstructured": ("unstructured", "{}"),
    "block": ("block 8×1 segments, whole columns pruned per block", "{block: [8, 1], prune: cols}"),
    "pattern": ("pattern (4-weight kernels from 8 patterns) + connectivity", "{}"),
    "channel": ("channel (whole output filters)", "{}"),
}


def run_folder(base: Path, method: str, scheme: str, sparsity: float, seed: int) -> Path:
    """Where one run lives; unstructured runs share `dst_sweep.py`'s names."""
    infix = "" if scheme == "unstructured" else f"{scheme}-"
    return base / f"{method}-{infix}uniform-{sparsity:g}-s{seed}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(RECIPES), default="resnet20")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--method", choices=list(METHODS), default="mest-em")
    parser.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=list(SCHEMES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device for every run (e.g. cuda)")
    parser.add_argument("--report-only", action="store_true", help="write the table from finished runs, run nothing")
    parser.add_argument("--out", default="runs/bench/dst")
    args = parser.parse_args()

    base = Path(args.out) / args.model
    recipe = ["--config", RECIPES[args.model], "--epochs", str(args.epochs), "--device", args.device]
    jobs = []
    for seed in args.seeds:
        for scheme in args.schemes:
            out = run_folder(base, args.method, scheme, args.sparsity, seed)
            jobs.append((out.name, ["train", *recipe, "--seed", str(seed), "--method", args.method,
                                    "--sparsity", str(args.sparsity), "--scheme", scheme,
                                    "--scheme-options", SCHEMES[scheme][1]], out))
    if not args.report_only:
        run_jobs(jobs, args.workers)

    rows = []
    for scheme in args.schemes:
        found = [read_metrics(run_folder(base, args.method, scheme, args.sparsity, seed)) for seed in args.seeds]
        found = [m for m in found if m]
        sparsity = mean_std([m["sparsity"] for m in found])
        flops = f"{statistics.mean(m['flops_sparse'] / m['flops_dense'] for m in found):.2f}×" if found else "–"
        rows.append(f"| {SCHEMES[scheme][0]} | {mean_std([m['test_acc'] for m in found])} | {sparsity} | {flops} |")
    body = [
        f"## Sparsity schemes under {METHODS[args.method]} on {args.model} (Fashion-MNIST)", "",
        f"Final-epoch test accuracy, mean ± std over seeds {', '.join(map(str, args.seeds))}, {args.epochs} epochs "
        f"with `{RECIPES[args.model]}`, target sparsity {args.sparsity:.0%}, uniform allocation. 'Sparsity' is the "
        "measured fraction of zeros over all weights (channel pruning rounds to whole filters); FLOPs are the final "
        "masks' forward FLOPs relative to dense.", "",
        "| scheme | test acc | sparsity | FLOPs |", "| --- | --- | --- | --- |", *rows, "",
        f"`python benchmarks/dst_schemes.py --model {args.model} --epochs {args.epochs} --sparsity {args.sparsity:g} "
        f"--method {args.method} --seeds {' '.join(map(str, args.seeds))}"
        f"{f' --device {args.device}' if args.device != 'cpu' else ''} --workers {args.workers}` ({machine_line()}; "
        f"one process per run, {args.workers} in parallel).",
    ]
    write_section(f"dst-schemes-{args.model}", "\n".join(body))


if __name__ == "__main__":
    main()
