"""One-shot pruning of a trained model without fine-tuning: magnitude vs OBD vs OBS (issue:
sparsity core). Prunes the dense runs of `pruning_sweep.py` and reports the accuracy right after
pruning (`test_acc_before_finetune`), plus after one fine-tuning epoch.

    python benchmarks/oneshot_compare.py --model lenet300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, read_metrics, run_jobs, write_section  # noqa: E402

# run-folder key: (title, slimkit prune flags)
METHODS = {
    "magnitude": ("magnitude", ["--method", "magnitude"]),
    "obd": ("OBD (Hutchinson)", ["--method", "obd"]),
    "obd-fisher": ("OBD (empirical Fisher)", ["--method", "obd", "--obd-estimator", "fisher"]),
    "obs": ("OBS (OBC / SparseGPT)", ["--method", "obs"]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lenet300")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dense", default="runs/bench/pruning", help="folder of pruning_sweep.py's runs")
    parser.add_argument("--out", default="runs/bench/oneshot")
    args = parser.parse_args()

    base = Path(args.out) / args.model
    jobs = []
    for seed in args.seeds:
        dense = Path(args.dense) / args.model / f"dense-s{seed}"
        if read_metrics(dense) is None:
            raise SystemExit(f"{dense} is missing: run benchmarks/pruning_sweep.py --model {args.model} first")
        for method, (_, flags) in METHODS.items():
            for s in args.sparsities:
                out = base / f"{method}-{s:g}-s{seed}"
                jobs.append((out.name, ["prune", "--from", str(dense), *flags, "--sparsity", str(s),
                                        "--finetune-epochs", "1", "--prune-batches", str(args.calibration_batches)], out))
    run_jobs(jobs, args.workers)

    dense_acc = [m["test_acc"] for m in (read_metrics(Path(args.dense) / args.model / f"dense-s{s}") for s in args.seeds) if m]
    rows = []
    for method, (title, _) in METHODS.items():
        cells = []
        for s in args.sparsities:
            found = [m for m in (read_metrics(base / f"{method}-{s:g}-s{seed}") for seed in args.seeds) if m]
            cells.append(f"{mean_std([m['test_acc_before_finetune'] for m in found])} → "
                         f"{mean_std([m['test_acc'] for m in found])}")
        rows.append(f"| {title} | " + " | ".join(cells) + " |")
    body = [
        f"## One-shot pruning without fine-tuning on {args.model} (Fashion-MNIST)", "",
        f"The trained dense runs of the sweep above ({mean_std(dense_acc)}) pruned once, uniform allocation, "
        f"unstructured. Each cell: test accuracy right after pruning → after one fine-tuning epoch at a tenth of "
        f"the learning rate. OBD and OBS use {args.calibration_batches} calibration batches of 128; OBS also "
        "updates the surviving weights.", "",
        "| criterion | " + " | ".join(f"{s:.0%}" for s in args.sparsities) + " |",
        "| --- |" + " --- |" * len(args.sparsities), *rows, "",
        f"`python benchmarks/oneshot_compare.py --model {args.model} --sparsities "
        f"{' '.join(f'{s:g}' for s in args.sparsities)} --seeds {' '.join(map(str, args.seeds))}` ({machine_line()}).",
    ]
    write_section(f"oneshot-{args.model}", "\n".join(body))


if __name__ == "__main__":
    main()
