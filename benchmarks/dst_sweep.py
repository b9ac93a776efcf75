"""Dynamic sparse training on Fashion-MNIST (issue: dynamic sparse training): SET and the MEST
family against dense and static random sparse training, per sparsity and allocation.

    python benchmarks/dst_sweep.py --model lenet5 --epochs 20 --sparsities 0.9 0.95 0.98 \\
        --allocations uniform erk --seeds 0 1 --workers 2

Final-epoch accuracy, mean ± std over seeds; training FLOPs relative to dense are the mean over
epochs of the masks' forward FLOPs (what the sparse network computes) over the dense forward FLOPs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std, read_metrics, run_jobs, write_section  # noqa: E402

RECIPES = {
    "lenet300": "recipes/dense_lenet300_fmnist.yaml",
    "lenet5": "recipes/dense_lenet5_fmnist.yaml",
    "resnet20": "recipes/dense_resnet20_fmnist.yaml",
}
METHODS = {
    "random": "static random (prune at init)",
    "set": "SET",
    "dsr": "DSR",
    "rigl": "RigL (dense gradient on update steps)",
    "mest": "MEST (vanilla)",
    "mest-em": "MEST+EM",
    "mest-ems": "MEST+EM&S",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(RECIPES), default="lenet5")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    parser.add_argument("--allocations", nargs="+", default=["uniform", "erk"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--device", default="cpu", help="torch device for every run (e.g. cuda)")
    parser.add_argument("--report-only", action="store_true", help="write the table from finished runs, run nothing")
    parser.add_argument("--out", default="runs/bench/dst")
    args = parser.parse_args()

    base = Path(args.out) / args.model
    recipe = ["--config", RECIPES[args.model], "--epochs", str(args.epochs), "--device", args.device]
    jobs = [(f"dense-s{seed}", ["train", *recipe, "--seed", str(seed)], base / f"dense-s{seed}") for seed in args.seeds]
    for seed in args.seeds:
        for allocation in args.allocations:
            for s in args.sparsities:
                for method in args.methods:
                    out = base / f"{method}-{allocation}-{s:g}-s{seed}"
                    jobs.append((out.name, ["train", *recipe, "--seed", str(seed), "--method", method,
                                            "--sparsity", str(s), "--allocation", allocation], out))
    if not args.report_only:
        run_jobs(jobs, args.workers)

    dense = [m for m in (read_metrics(base / f"dense-s{seed}") for seed in args.seeds) if m]
    columns = [(a, s) for a in args.allocations for s in args.sparsities]
    header = "| method | " + " | ".join(f"{s:.0%} {a}" for a, s in columns) + " |"
    rows = []
    for method, title in METHODS.items():
        cells = []
        for allocation, s in columns:
            found = [read_metrics(base / f"{method}-{allocation}-{s:g}-s{seed}") for seed in args.seeds]
            found = [m for m in found if m]
            flops = [m.get("train_flops_vs_dense", m["flops_sparse"] / m["flops_dense"]) for m in found]
            cell = mean_std([m["test_acc"] for m in found])
            cells.append(f"{cell} ({statistics.mean(flops):.2f}×)" if found else cell)
        rows.append(f"| {title} | " + " | ".join(cells) + " |")
    body = [
        f"## Dynamic sparse training on {args.model} (Fashion-MNIST)", "",
        f"Final-epoch test accuracy, mean ± std over seeds {', '.join(map(str, args.seeds))}, {args.epochs} epochs "
        f"with `{RECIPES[args.model]}`; in brackets, training FLOPs relative to dense. Dense, same epochs: "
        f"**{mean_std([m['test_acc'] for m in dense])}**. Unstructured; mutation every 3% of training (RigL: every 100 steps) until 75%.", "",
        header, "| --- |" + " --- |" * len(columns), *rows, "",
        f"`python benchmarks/dst_sweep.py --model {args.model} --epochs {args.epochs} --sparsities "
        f"{' '.join(f'{s:g}' for s in args.sparsities)} --allocations {' '.join(args.allocations)} --seeds "
        f"{' '.join(map(str, args.seeds))}"
        f"{f' --device {args.device}' if args.device != 'cpu' else ''} --workers {args.workers}` ({machine_line()}; one process per run, `OMP_NUM_THREADS=1`, "
        f"{args.workers} in parallel).",
    ]
    write_section(f"dst-{args.model}", "\n".join(body))


if __name__ == "__main__":
    main()
