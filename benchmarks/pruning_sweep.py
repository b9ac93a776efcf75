"""Accuracy vs sparsity for pruning methods on Fashion-MNIST (issue: sparsity core).

Runs every (method, sparsity, seed) job as its own `slimkit` process (OMP_NUM_THREADS=1, --workers
in parallel, so small models use the 2 cores fully), skips finished runs, and rebuilds the
BENCHMARKS.md tables from every finished run. Final-epoch accuracies, mean ± std over seeds.

    python benchmarks/pruning_sweep.py --model lenet300 --epochs 20 --seeds 0 1 --workers 2
    python benchmarks/pruning_sweep.py --model lenet5 --schemes-only --sparsities 0.9
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line, mean_std as fmt, read_metrics as metrics, run_jobs, write_section  # noqa: E402

RECIPES = {"lenet300": "recipes/dense_lenet300_fmnist.yaml", "lenet5": "recipes/dense_lenet5_fmnist.yaml"}
PAI = ["snip", "grasp", "synflow", "random"]
SCHEMES = {
    "unstructured": [],
    "block 8x1 cols": ["--scheme", "block", "--scheme-options", '{"block": [8, 1], "prune": "cols"}'],
    "channel": ["--scheme", "channel"],
    "2:4 (N:M)": ["--scheme", "nm", "--scheme-options", '{"n": 2, "m": 4}'],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(RECIPES), default="lenet300")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95, 0.98])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rewind-epoch", type=int, default=1)
    parser.add_argument("--schemes-only", action="store_true", help="only the scheme comparison (gmp)")
    parser.add_argument("--out", default="runs/bench/pruning")
    args = parser.parse_args()

    base = Path(args.out) / args.model
    recipe = ["--config", RECIPES[args.model], "--epochs", str(args.epochs)]
    sp = lambda s: f"{s:g}"
    dense = {seed: base / f"dense-s{seed}" for seed in args.seeds}
    first: list[tuple[str, list[str], Path]] = [
        (f"dense s{seed}", ["train", *recipe, "--seed", str(seed)], dense[seed]) for seed in args.seeds
    ]
    jobs: list[tuple[str, list[str], Path]] = []
    if args.schemes_only:
        for name, flags in SCHEMES.items():
            for s in args.sparsities:
                s = 0.5 if name.startswith("2:4") else s
                for seed in args.seeds:
                    out = base / f"gmp-{name.split()[0].replace(':', '-')}-{sp(s)}-s{seed}"
                    jobs.append((out.name, ["train", *recipe, "--seed", str(seed), "--method", "gmp",
                                            "--sparsity", str(s), *flags], out))
    else:
        for seed in args.seeds:
            for s in args.sparsities:
                for method in PAI + ["gmp"]:
                    out = base / f"{method}-{sp(s)}-s{seed}"
                    jobs.append((out.name, ["train", *recipe, "--seed", str(seed), "--method", method, "--sparsity", str(s)], out))
                out = base / f"oneshot-magnitude-{sp(s)}-s{seed}"
                jobs.append((out.name, ["prune", "--from", str(dense[seed]), "--method", "magnitude", "--sparsity", str(s),
                                        "--finetune-epochs", str(args.finetune_epochs), "--seed", str(seed)], out))
            for reinit in ("rewind", "random"):
                out = base / f"imp-{reinit}-s{seed}"
                jobs.append((out.name, ["train", *recipe, "--seed", str(seed), "--method", "imp",
                                        "--sparsity", sp(args.sparsities[-1]),
                                        "--imp-sparsities", *map(sp, args.sparsities),
                                        "--rewind-epoch", str(args.rewind_epoch), "--imp-reinit", reinit], out))
    run_jobs(first, args.workers)  # the dense runs that one-shot pruning starts from
    run_jobs(jobs, args.workers)
    write_tables(args, base, dense)


def write_tables(args, base: Path, dense: dict[int, Path]) -> None:
    sp = lambda s: f"{s:g}"
    dense_acc = [m["test_acc"] for m in filter(None, (metrics(p) for p in dense.values()))]
    header = "| method | " + " | ".join(f"{s:.0%}" for s in args.sparsities) + " |"
    rule = "| --- |" + " --- |" * len(args.sparsities)
    command = (
        f"python benchmarks/pruning_sweep.py --model {args.model} --epochs {args.epochs} "
        f"--finetune-epochs {args.finetune_epochs} --rewind-epoch {args.rewind_epoch} "
        f"--sparsities {' '.join(map(sp, args.sparsities))} --seeds {' '.join(map(str, args.seeds))}"
    )
    if args.schemes_only:
        rows = []
        for name in SCHEMES:
            cells = []
            for s in args.sparsities:
                s_run = 0.5 if name.startswith("2:4") else s
                found = [metrics(base / f"gmp-{name.split()[0].replace(':', '-')}-{sp(s_run)}-s{seed}") for seed in args.seeds]
                found = [m for m in found if m]
                cell = fmt([m["test_acc"] for m in found])
                if found and name.startswith("2:4"):
                    cell += f" (at {found[0]['sparsity_pruned_layers']:.0%})"
                cells.append(cell)
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
        body = [
            f"## Sparsity schemes on {args.model} (gradual magnitude pruning, Fashion-MNIST)", "",
            f"Dense {args.model}, same {args.epochs} epochs: {fmt(dense_acc)}. Pattern-based sparsity needs 3×3 "
            f"kernels; {args.model} has none, so it is not in this table. N:M fixes sparsity at 1 − N/M.", "",
            header.replace("method", "scheme"), rule, *rows, "",
            f"`{command} --schemes-only` ({machine_line()}).",
        ]
        write_section(f"schemes-{args.model}", "\n".join(body))
        return

    rows = []
    names = {"oneshot-magnitude": "magnitude one-shot + fine-tune", "gmp": "gradual magnitude (Zhu & Gupta)",
             "imp-rewind": f"IMP, rewind to epoch {args.rewind_epoch}", "imp-random": "IMP, random re-init (control)",
             "snip": "SNIP at init", "grasp": "GraSP at init", "synflow": "SynFlow at init", "random": "random at init"}
    for key, title in names.items():
        cells = []
        for s in args.sparsities:
            if key.startswith("imp"):
                accs = []
                for seed in args.seeds:
                    m = metrics(base / f"{key}-s{seed}")
                    if m:
                        accs += [r["test_acc"] for r in m["rounds"] if abs(r["sparsity"] - s) < 0.005]
            else:
                accs = [m["test_acc"] for m in (metrics(base / f"{key}-{sp(s)}-s{seed}") for seed in args.seeds) if m]
            cells.append(fmt(accs))
        rows.append(f"| {title} | " + " | ".join(cells) + " |")
    body = [
        f"## Accuracy vs sparsity on {args.model} (Fashion-MNIST)", "",
        f"Final-epoch test accuracy, mean ± std over seeds {', '.join(map(str, args.seeds))}; uniform allocation over "
        f"all layers, unstructured. Every run trains {args.epochs} epochs with the recipe `{RECIPES[args.model]}`; "
        f"one-shot magnitude prunes the dense run and fine-tunes {args.finetune_epochs} epochs at a tenth of the "
        f"learning rate; IMP trains {args.epochs} epochs per round (each round after the first from epoch "
        f"{args.rewind_epoch}). Dense, same {args.epochs} epochs: **{fmt(dense_acc)}**.", "",
        header, rule, *rows, "",
        f"`{command}` ({machine_line()}; one process per run, `OMP_NUM_THREADS=1`, {args.workers} in parallel).",
        "Each run's exact `slimkit` command is its `config.yaml` under "
        f"`{base}/` (`slimkit train --config ...` reruns it).",
    ]
    write_section(f"pruning-{args.model}", "\n".join(body))


if __name__ == "__main__":
    main()
