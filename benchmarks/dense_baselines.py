"""Dense Fashion-MNIST baselines (issue: foundation). Trains each reference model with its recipe
and writes the table to BENCHMARKS.md. Final-epoch test accuracy is the result.

    python benchmarks/dense_baselines.py [--models lenet300 lenet5 resnet20] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_line, resume_command, run_slimkit, write_section  # noqa: E402

RECIPES = {
    "lenet300": "recipes/dense_lenet300_fmnist.yaml",
    "lenet5": "recipes/dense_lenet5_fmnist.yaml",
    "resnet20": "recipes/dense_resnet20_fmnist.yaml",
}
TARGETS = {"lenet300": 0.895, "lenet5": 0.905, "resnet20": 0.925}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--out", default="runs/bench/dense")
    parser.add_argument("--reuse", action="store_true", help="keep finished runs and continue interrupted ones instead of retraining")
    args = parser.parse_args()

    for model in args.models:
        for seed in args.seeds:
            out = Path(args.out) / f"{model}-s{seed}"
            if args.reuse and (ROOT / out / "metrics.json").exists():
                continue
            resumed = resume_command(["train"], ROOT / out) if args.reuse else None
            if resumed is None and (ROOT / out).exists():
                shutil.rmtree(ROOT / out)
            run_slimkit(resumed or ["train", "--config", RECIPES[model], "--seed", str(seed), "--out", str(out)])

    # The table covers every finished run under --out, so separate invocations compose.
    rows, commands = [], []
    for model in RECIPES:
        runs = sorted((ROOT / args.out).glob(f"{model}-s*/metrics.json"))
        if not runs:
            continue
        results = [json.loads(path.read_text()) for path in runs]
        accs = [m["test_acc"] for m in results]
        times = [m["train_time_s"] for m in results]
        metrics = results[0]
        for m in results:
            out = Path(args.out) / f"{model}-s{m['seed']}"
            commands.append(f"slimkit train --config {RECIPES[model]} --seed {m['seed']} --out {out}")
        spread = f" ± {statistics.stdev(accs):.2%}" if len(accs) > 1 else ""
        rows.append(
            f"| {model} | {metrics['epochs']} | {statistics.mean(accs):.2%}{spread} | "
            f"{', '.join(f'{a:.2%}' for a in accs)} | ≥ {TARGETS[model]:.1%} | {metrics['params_total']:,} | "
            f"{metrics['flops_dense']:,} | {statistics.median(times) / 60:.1f} min |"
        )
    body = "\n".join(
        [
            "## Dense Fashion-MNIST baselines",
            "",
            f"Machine: {machine_line()}. Final-epoch test accuracy (not best epoch), mean ± std over seeds.",
            "FLOPs are per example forward (2 × MACs). Training time is the median per run, evaluation excluded.",
            "",
            "| model | epochs | test acc | per seed | target | params | FLOPs | train time |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Each row comes from the commands below. `python benchmarks/dense_baselines.py [--models ...] "
            "[--seeds ...] [--reuse]` runs them and rebuilds this table from every finished run.",
            "",
            "```",
            *commands,
            "```",
        ]
    )
    write_section("dense-baselines", body)


if __name__ == "__main__":
    main()
